//! The fine-tuning loop: Adam/AdamW on burn's autodiff device, StepLR or cosine with warm-up,
//! global gradient-norm clipping (as `torch.nn.utils.clip_grad_norm_`), plain or class-weighted
//! cross-entropy, an optional class-balanced sampler, early stopping on validation loss, the
//! best model kept, and exact resume.
//!
//! What trains is what has `require_grad`: burn's optimizer skips frozen parameters (no gradient,
//! no state). The model side is [`CellClassifier`], so any model with a classification head and a
//! cell embedding trains here.
//!
//! Resume: after every epoch, `OUT/checkpoint/` holds the model (`model.bpk`, burnpack, with the
//! parameter ids the optimizer state is keyed by), the optimizer state (`optimizer.bpk`), the best
//! model so far (`best.bpk`) and `state.json` (epoch, step, best loss, patience counter, RNG
//! state, the log so far). It is written to `checkpoint.tmp/` and renamed into place, so an
//! interruption leaves the previous epoch's checkpoint. Dropout is re-seeded from the seed and the
//! epoch number at the start of each epoch, so a resumed run repeats the remaining epochs exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use scllm_models::scgpt::{BatchInput, ScGpt};
use scllm_tokenize::{pad_batch, TokenizedCell};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result, TrainError};
use crate::sampler::{class_counts, class_weights, epoch_batches, SplitMix64, WeightedSampler};

/// Logits and cell embedding of one batch.
pub struct Classified {
    /// `[B, n_classes]`
    pub logits: Tensor<2>,
    /// `[B, d]`
    pub cell_emb: Tensor<2>,
}

/// A model that classifies cells: the only thing the trainer and [`crate::predict`] need from it.
pub trait CellClassifier: Module + Sized {
    fn classify(&self, batch: &BatchInput, dev: &Device) -> Result<Classified>;
}

impl CellClassifier for ScGpt {
    fn classify(&self, b: &BatchInput, dev: &Device) -> Result<Classified> {
        let no_head = || {
            invalid(
                "the model has no classification head (cls_decoder): load it with \
                 LoadOptions { n_cls: <number of classes>, .. }",
            )
        };
        if !dev.is_autodiff() {
            // inference: only `<cls>` is read, so `encode_cls` (the last layer computes `<cls>`
            // alone; padding skipped in attention on flex) gives the same embedding for less
            let cell_emb = self.encode_cls(b, dev);
            let head = self.cls_decoder.as_ref().ok_or_else(no_head)?;
            return Ok(Classified {
                logits: head.forward(cell_emb.clone()),
                cell_emb,
            });
        }
        let (genes, values, mask) = self.inputs(b, dev);
        let out = self.forward(genes, values, mask);
        let logits = out.cls_output.ok_or_else(no_head)?;
        Ok(Classified {
            logits,
            cell_emb: out.cell_emb,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// `torch.optim.Adam` (no weight decay), as both references.
    Adam,
    /// Decoupled weight decay.
    AdamW { weight_decay: f32 },
}

/// Learning rate over training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    Constant,
    /// `StepLR(step_size=1 epoch, gamma)`: `lr · gamma^epoch` (the references, gamma 0.9).
    StepLr {
        gamma: f64,
    },
    /// Linear warm-up over `warmup_ratio` of all steps, then cosine decay to `lr · min_ratio`.
    WarmupCosine {
        warmup_ratio: f64,
        min_ratio: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// Most cells × padded length in one batch (long cells make smaller batches).
    pub max_batch_tokens: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    /// Adam's epsilon (the references: 1e-4 with AMP, else 1e-8).
    pub eps: f32,
    pub schedule: Schedule,
    /// Clip the global gradient norm (1.0 in the references).
    pub grad_clip_norm: Option<f32>,
    /// Cross-entropy with `w_c = (1 - n_c/N)²` (scPEFT); plain cross-entropy otherwise.
    pub class_weighted_loss: bool,
    /// Counts for the class weights (scPEFT counts train+valid+test); default: the training cells.
    pub class_weight_counts: Option<Vec<usize>>,
    /// Draw each epoch's cells with `WeightedRandomSampler(1/count, #train, replacement=True)`.
    pub balanced_sampler: bool,
    /// Shuffle the training cells each epoch (ignored with the sampler, which is random anyway).
    pub shuffle: bool,
    /// Batch training cells of similar length together (within windows of 50 batches; batches
    /// shuffled): less padding, but off by default because a cell's length (its expressed genes)
    /// tracks its type, so length-sorted batches hold mostly one type and training stalls
    /// (pancreas human → mouse: validation at chance for 10 epochs, where random batches, as the
    /// references use, reach 0.6; bench/RESULTS.md). Evaluation batches are always length-sorted.
    pub group_by_length: bool,
    /// Stop after this many epochs strictly worse than the best validation loss.
    pub patience: Option<usize>,
    pub seed: u64,
    /// `OUT`: `train_log.jsonl` and `checkpoint/` go here. `None`: nothing is written.
    pub out_dir: Option<PathBuf>,
    /// Continue from `OUT/checkpoint/`.
    pub resume: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Stop (as if interrupted) after this many epochs in this call; for tests and time limits.
    pub stop_after_epochs: Option<usize>,
}

impl Default for TrainConfig {
    /// Full fine-tuning as `Tutorial_Annotation` (fp32, so Adam eps 1e-8), batch 32, 10 epochs.
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 32,
            eval_batch_size: 32,
            max_batch_tokens: 32 * 3001,
            lr: 1e-4,
            optimizer: OptimizerKind::Adam,
            eps: 1e-8,
            schedule: Schedule::StepLr { gamma: 0.9 },
            grad_clip_norm: Some(1.0),
            class_weighted_loss: false,
            class_weight_counts: None,
            balanced_sampler: false,
            shuffle: true,
            group_by_length: false,
            patience: None,
            seed: 0,
            out_dir: None,
            resume: false,
            progress: true,
            stop_after_epochs: None,
        }
    }
}

impl TrainConfig {
    /// Adapter training as scPEFT v2 (`PeftConfig(use_default_settings=True)`): lr 5e-5, batch 50,
    /// 20 epochs, patience 15, Adam eps 1e-4, StepLR 0.9, weighted loss and balanced sampler.
    pub fn scpeft() -> Self {
        TrainConfig {
            epochs: 20,
            batch_size: 50,
            eval_batch_size: 50,
            max_batch_tokens: 50 * 2001,
            lr: 5e-5,
            eps: 1e-4,
            class_weighted_loss: true,
            balanced_sampler: true,
            patience: Some(15),
            ..Default::default()
        }
    }

    /// The learning rate at `step` (0-based) of `epoch` (0-based), `total_steps` in the run.
    pub fn lr_at(&self, epoch: usize, step: usize, total_steps: usize) -> f64 {
        match &self.schedule {
            Schedule::Constant => self.lr,
            Schedule::StepLr { gamma } => self.lr * gamma.powi(epoch as i32),
            Schedule::WarmupCosine {
                warmup_ratio,
                min_ratio,
            } => {
                let total = total_steps.max(1) as f64;
                let warm = (warmup_ratio * total).round();
                let s = step as f64;
                if s < warm {
                    self.lr * (s + 1.0) / warm
                } else {
                    let p = ((s - warm) / (total - warm).max(1.0)).min(1.0);
                    let c = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
                    self.lr * (min_ratio + (1.0 - min_ratio) * c)
                }
            }
        }
    }
}

/// What the trainer reads: the cells, their labels, and which cells train and validate.
pub struct TrainData<'a> {
    pub cells: &'a [TokenizedCell],
    pub labels: &'a [u32],
    pub classes: &'a [String],
    pub train: &'a [usize],
    pub val: &'a [usize],
    pub pad_id: u32,
    pub pad_value: f32,
}

impl<'a> TrainData<'a> {
    pub fn new(data: &'a crate::AnnotationData, split: &'a crate::Split) -> Self {
        TrainData {
            cells: &data.cells,
            labels: &data.labels,
            classes: &data.classes,
            train: &split.train,
            val: &split.val,
            pad_id: data.pad_id,
            pad_value: data.pad_value,
        }
    }
}

/// One line of `train_log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    /// Learning rate at the epoch's first step.
    #[serde(deserialize_with = "de_f64_nan")]
    pub lr: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub train_acc: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub val_acc: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub val_macro_f1: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub seconds: f64,
    /// Training cells per second (forward + backward + step).
    #[serde(deserialize_with = "de_f64_nan")]
    pub cells_per_s: f64,
}

pub struct TrainOutcome<M> {
    /// The model with the lowest validation loss, on the inference device (`Module::valid`).
    pub best: M,
    /// The model after the last epoch run, on the training device.
    pub last: M,
    /// 1-based epoch of `best`.
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub history: Vec<EpochLog>,
    pub stopped_early: bool,
    /// Stopped by `stop_after_epochs` before `epochs` were done.
    pub interrupted: bool,
    /// Epochs already done in the checkpoint this run resumed from.
    pub resumed_from: Option<usize>,
}

/// Early stopping on validation loss as scPEFT (§2.8): the counter grows only when an epoch is
/// strictly worse than the best, resets on an improvement, and stops at `patience`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub patience: Option<usize>,
    /// Lowest validation loss so far (`inf` before the first epoch).
    #[serde(deserialize_with = "de_f64_inf")]
    pub best: f64,
    /// 1-based epoch of `best` (0: none yet).
    pub best_epoch: usize,
    /// Strictly worse epochs since the best.
    pub bad_epochs: usize,
}

/// What [`EarlyStopping::update`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// A new best: keep this model.
    pub improved: bool,
    pub stop: bool,
}

impl EarlyStopping {
    pub fn new(patience: Option<usize>) -> Self {
        EarlyStopping {
            patience,
            best: f64::INFINITY,
            best_epoch: 0,
            bad_epochs: 0,
        }
    }

    pub fn update(&mut self, val_loss: f64, epoch: usize) -> Verdict {
        let mut improved = false;
        if val_loss < self.best {
            self.best = val_loss;
            self.best_epoch = epoch;
            self.bad_epochs = 0;
            improved = true;
        } else if val_loss > self.best {
            self.bad_epochs += 1;
        }
        let stop = self.patience.is_some_and(|p| self.bad_epochs >= p);
        Verdict { improved, stop }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    version: u32,
    epochs_done: usize,
    step: usize,
    stopping: EarlyStopping,
    stopped_early: bool,
    rng: SplitMix64,
    n_train: usize,
    n_val: usize,
    n_classes: usize,
    history: Vec<EpochLog>,
}

const STATE_VERSION: u32 = 1;

// JSON has no NaN or infinity: serde_json writes them as null; read null back.
fn de_f64_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
fn de_f64_inf<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

fn build_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    // clipping is global (done before the step), not burn's per-parameter clipping
    match &cfg.optimizer {
        OptimizerKind::Adam => AdamConfig::new().with_epsilon(cfg.eps).init(),
        OptimizerKind::AdamW { weight_decay } => AdamWConfig::new()
            .with_epsilon(cfg.eps)
            .with_weight_decay(*weight_decay)
            .init(),
    }
}

fn mix(seed: u64, epoch: usize) -> u64 {
    let mut r = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    r.next_u64()
}

fn check(cfg: &TrainConfig, d: &TrainData) -> Result<()> {
    if cfg.batch_size == 0 || cfg.eval_batch_size == 0 {
        return Err(invalid("--batch-size must be at least 1"));
    }
    if cfg.epochs == 0 {
        return Err(invalid("--epochs must be at least 1"));
    }
    if cfg.lr.is_nan() || cfg.lr <= 0.0 {
        return Err(invalid(format!("--lr must be positive, got {}", cfg.lr)));
    }
    if d.train.is_empty() {
        return Err(invalid("the training set is empty"));
    }
    if d.val.is_empty() {
        return Err(invalid("the validation set is empty"));
    }
    if d.cells.len() != d.labels.len() {
        return Err(invalid("cells and labels differ in length"));
    }
    let k = d.classes.len();
    if let Some(&bad) = d.labels.iter().find(|&&l| l as usize >= k) {
        return Err(invalid(format!("label {bad} out of range ({k} classes)")));
    }
    if let Some(c) = &cfg.class_weight_counts {
        if c.len() != k {
            return Err(invalid(format!(
                "class_weight_counts has {} entries for {k} classes",
                c.len()
            )));
        }
    }
    Ok(())
}

fn to_vec(t: Tensor<2>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))
}

fn scalar(t: Tensor<1>) -> Result<f64> {
    let v = t
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))?;
    Ok(v[0] as f64)
}

/// Mean (weighted) cross-entropy on the device: `sum_i w_{y_i} nll_i / sum_i w_{y_i}`, as
/// `torch.nn.CrossEntropyLoss(weight=w)`.
fn ce_loss(logits: Tensor<2>, targets: &[u32], weights: Option<&[f32]>, dev: &Device) -> Tensor<1> {
    let b = targets.len();
    let logp = log_softmax(logits, 1);
    let idx = Tensor::<2, Int>::from_data(
        TensorData::new(
            targets.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [b, 1],
        ),
        dev,
    );
    let nll = logp.gather(1, idx).reshape([b]).neg();
    match weights {
        None => nll.mean(),
        Some(w) => {
            let wi: Vec<f32> = targets.iter().map(|&t| w[t as usize]).collect();
            let total: f32 = wi.iter().sum();
            let wt = Tensor::<1>::from_data(TensorData::new(wi, [b]), dev);
            (nll * wt).sum().div_scalar(total.max(f32::MIN_POSITIVE))
        }
    }
}

/// Host-side (weighted) cross-entropy and argmax of `[b, k]` logits.
fn host_ce(
    logits: &[f32],
    k: usize,
    targets: &[u32],
    weights: Option<&[f32]>,
) -> (f64, f64, Vec<u32>) {
    let mut num = 0.0;
    let mut den = 0.0;
    let mut pred = Vec::with_capacity(targets.len());
    for (r, &t) in targets.iter().enumerate() {
        let row = &logits[r * k..(r + 1) * k];
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        let w = weights.map(|w| w[t as usize] as f64).unwrap_or(1.0);
        num += w * (lse - row[t as usize] as f64);
        den += w;
        pred.push(argmax(row));
    }
    (num, den, pred)
}

/// scikit-learn's `f1_score(average="macro")`: over the classes present in the truth or the
/// predictions, an undefined F1 counted as 0.
pub fn macro_f1(truth: &[u32], pred: &[u32], n_classes: usize) -> f64 {
    let mut tp = vec![0usize; n_classes];
    let mut nt = vec![0usize; n_classes];
    let mut np = vec![0usize; n_classes];
    for (&t, &p) in truth.iter().zip(pred) {
        nt[t as usize] += 1;
        np[p as usize] += 1;
        if t == p {
            tp[t as usize] += 1;
        }
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for c in 0..n_classes {
        if nt[c] + np[c] == 0 {
            continue;
        }
        n += 1;
        sum += 2.0 * tp[c] as f64 / (nt[c] + np[c]) as f64;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

pub(crate) fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (j, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = j;
        }
    }
    best as u32
}

/// `clip_grad_norm_`: scale all gradients by `max / max(norm, max)` where `norm` is the L2 norm of
/// all gradients together.
pub(crate) fn clip_global_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> Result<f64> {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        acc: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(p.id) {
                let s = g.square().sum();
                self.acc = Some(match self.acc.take() {
                    None => s,
                    Some(a) => a + s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        coef: f32,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(p.id) {
                self.grads.register::<D>(p.id, g.mul_scalar(self.coef));
            }
        }
    }
    let mut n = Norm {
        grads: &*grads,
        acc: None,
    };
    model.visit(&mut n);
    let Some(acc) = n.acc else { return Ok(0.0) };
    let norm = scalar(acc)?.sqrt();
    let coef = max_norm as f64 / (norm + 1e-6);
    if coef < 1.0 {
        model.visit(&mut Scale {
            grads,
            coef: coef as f32,
        });
    }
    Ok(norm)
}

/// Validation loss, accuracy and macro F1 of `model` (on the inference device `dev`) on the
/// cells `idx`; `weights`: class weights of the loss (as in training), or plain cross-entropy.
pub fn evaluate<M: CellClassifier>(
    model: &M,
    d: &TrainData,
    idx: &[usize],
    cfg: &TrainConfig,
    weights: Option<&[f32]>,
    dev: &Device,
) -> Result<(f64, f64, f64)> {
    let lengths: Vec<usize> = d.cells.iter().map(|c| c.len()).collect();
    let mut rng = SplitMix64::new(0);
    let batches = epoch_batches(
        idx,
        &lengths,
        cfg.eval_batch_size,
        cfg.max_batch_tokens,
        true, // inference: grouping only saves padding
        &mut rng,
    );
    let (mut num, mut den) = (0.0, 0.0);
    let mut truth = Vec::with_capacity(idx.len());
    let mut preds = Vec::with_capacity(idx.len());
    let k = d.classes.len();
    for b in batches {
        let refs: Vec<(usize, &TokenizedCell)> = b.iter().map(|&i| (i, &d.cells[i])).collect();
        let pb = pad_batch(&refs, d.pad_id, d.pad_value);
        let input = BatchInput::of(&pb);
        let out = model.classify(&input, dev)?;
        let logits = to_vec(out.logits)?;
        let targets: Vec<u32> = b.iter().map(|&i| d.labels[i]).collect();
        let (n, w, p) = host_ce(&logits, k, &targets, weights);
        num += n;
        den += w;
        truth.extend(targets);
        preds.extend(p);
    }
    let acc = truth.iter().zip(&preds).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64;
    let f1 = macro_f1(&truth, &preds, k);
    Ok((num / den.max(f64::MIN_POSITIVE), acc, f1))
}

pub(crate) fn ck_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Save a module's parameters (with their ids) as burnpack at exactly `path`.
pub fn save_module<M: Module>(m: &M, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .overwrite(true);
    m.save_into(&mut store)
        .map_err(|e| ck_err(path, format!("{e:?}")))
}

/// Load parameters saved by [`save_module`] into `m` (ids restored; frozen flags kept); every
/// parameter of `m` must be in the file.
pub fn load_module<M: Module>(m: &mut M, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let r = m
        .load_from(&mut store)
        .map_err(|e| ck_err(path, format!("cannot read: {e:?}")))?;
    if !r.errors.is_empty() || !r.missing.is_empty() {
        return Err(ck_err(
            path,
            format!(
                "does not fit the model ({} missing, {} errors, e.g. {}): was it written for another model or adapter setup?",
                r.missing.len(),
                r.errors.len(),
                r.missing
                    .first()
                    .map(|m| m.0.clone())
                    .or_else(|| r.errors.first().map(|e| format!("{e:?}")))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// `OUT/checkpoint` (or what an interrupted save left: `checkpoint.old`).
pub fn checkpoint_dir(out: &Path) -> Option<PathBuf> {
    let ck = out.join("checkpoint");
    if ck.join("state.json").is_file() {
        return Some(ck);
    }
    let old = out.join("checkpoint.old");
    old.join("state.json").is_file().then_some(old)
}

fn save_checkpoint<M: Module>(
    out: &Path,
    model: &M,
    opt: &ModuleOptimizer,
    best: Option<&M>,
    best_changed: bool,
    st: &TrainState,
) -> Result<()> {
    let state = serde_json::to_string_pretty(st).unwrap();
    write_checkpoint(out, model, opt, &state, |tmp, ck| {
        let prev_best = ck.join("best.bpk");
        if let Some(b) = best {
            if best_changed || !prev_best.is_file() {
                save_module(b, &tmp.join("best.bpk"))?;
            } else {
                std::fs::copy(&prev_best, tmp.join("best.bpk"))
                    .map_err(|e| ck_err(&prev_best, e))?;
            }
        }
        Ok(())
    })
}

/// Write `OUT/checkpoint/`: the model and optimizer (burnpack), `state.json`, and whatever `extra`
/// adds (called with the new folder and the current one). Built in `checkpoint.tmp/` and swapped
/// in, the previous checkpoint kept as `checkpoint.old/` until the new one is in place, so an
/// interruption at any point leaves a whole checkpoint ([`checkpoint_dir`] finds it).
pub(crate) fn write_checkpoint<M: Module>(
    out: &Path,
    model: &M,
    opt: &ModuleOptimizer,
    state_json: &str,
    extra: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<()> {
    let ck = out.join("checkpoint");
    let tmp = out.join("checkpoint.tmp");
    let old = out.join("checkpoint.old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ck_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| ck_err(&tmp, e))?;
    save_module(model, &tmp.join("model.bpk"))?;
    let op = tmp.join("optimizer.bpk");
    opt.save(&op).map_err(|e| ck_err(&op, format!("{e:?}")))?;
    extra(&tmp, &ck)?;
    let sp = tmp.join("state.json");
    let mut f = std::fs::File::create(&sp).map_err(|e| ck_err(&sp, e))?;
    f.write_all(state_json.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| ck_err(&sp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| ck_err(&old, e))?;
    }
    if ck.exists() {
        std::fs::rename(&ck, &old).map_err(|e| ck_err(&ck, e))?;
    }
    std::fs::rename(&tmp, &ck).map_err(|e| ck_err(&tmp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| ck_err(&old, e))?;
    }
    Ok(())
}

fn write_log(path: &Path, lines: &[EpochLog], append: bool) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| ck_err(path, e))?;
    for l in lines {
        writeln!(f, "{}", serde_json::to_string(l).unwrap()).map_err(|e| ck_err(path, e))?;
    }
    Ok(())
}

/// Fine-tune `model` (on the autodiff device `dev`, frozen parts already frozen) on `data`.
///
/// Returns the best model (lowest validation loss) on the inference device, the last model, and
/// the per-epoch log. With `cfg.out_dir`, writes `train_log.jsonl` and a checkpoint per epoch;
/// with `cfg.resume`, continues from that checkpoint (the model passed in must be built the same
/// way: same architecture, adapters and frozen parts).
pub fn train<M: CellClassifier>(
    mut model: M,
    data: &TrainData,
    cfg: &TrainConfig,
    dev: &Device,
) -> Result<TrainOutcome<M>> {
    check(cfg, data)?;
    let inf_dev = dev.clone().without_autodiff();
    let k = data.classes.len();
    let train_labels: Vec<u32> = data.train.iter().map(|&i| data.labels[i]).collect();
    let weights: Option<Vec<f32>> = cfg.class_weighted_loss.then(|| {
        class_weights(
            cfg.class_weight_counts
                .as_deref()
                .unwrap_or(&class_counts(&train_labels, k)),
        )
    });
    let w = weights.as_deref();
    let sampler = cfg
        .balanced_sampler
        .then(|| WeightedSampler::balanced(data.train, data.labels, k));
    let mut opt = build_optimizer(cfg);
    let mut st = TrainState {
        version: STATE_VERSION,
        epochs_done: 0,
        step: 0,
        stopping: EarlyStopping::new(cfg.patience),
        stopped_early: false,
        rng: SplitMix64::new(cfg.seed),
        n_train: data.train.len(),
        n_val: data.val.len(),
        n_classes: k,
        history: Vec::new(),
    };
    let mut best: Option<M> = None;
    let mut resumed_from = None;
    let log_path = cfg.out_dir.as_ref().map(|o| o.join("train_log.jsonl"));
    if let Some(out) = &cfg.out_dir {
        std::fs::create_dir_all(out).map_err(|e| ck_err(out, e))?;
    }
    if cfg.resume {
        let out = cfg
            .out_dir
            .as_ref()
            .ok_or_else(|| invalid("resume needs the output folder of the interrupted run"))?;
        let ck = checkpoint_dir(out).ok_or_else(|| {
            ck_err(
                &out.join("checkpoint"),
                "no checkpoint to resume from (run without --resume to start afresh)",
            )
        })?;
        let sp = ck.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| ck_err(&sp, e))?;
        let s: TrainState = serde_json::from_str(&text).map_err(|e| ck_err(&sp, e))?;
        if s.version != STATE_VERSION
            || s.n_train != st.n_train
            || s.n_val != st.n_val
            || s.n_classes != k
        {
            return Err(ck_err(
                &sp,
                format!(
                    "written for another run ({} training / {} validation cells, {} classes; now {} / {} / {}): resume with the same data, split and options",
                    s.n_train, s.n_val, s.n_classes, st.n_train, st.n_val, k
                ),
            ));
        }
        load_module(&mut model, &ck.join("model.bpk"))?;
        let op = ck.join("optimizer.bpk");
        opt = opt.load(&op).map_err(|e| ck_err(&op, format!("{e:?}")))?;
        let bp = ck.join("best.bpk");
        if bp.is_file() {
            let mut b = model.valid();
            load_module(&mut b, &bp)?;
            best = Some(b);
        }
        st = s;
        resumed_from = Some(st.epochs_done);
        if let Some(lp) = &log_path {
            write_log(lp, &st.history, false)?;
        }
    } else if let Some(lp) = &log_path {
        write_log(lp, &[], false)?;
    }

    let lengths: Vec<usize> = data.cells.iter().map(|c| c.len()).collect();
    let steps_per_epoch = data.train.len().div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:25}] {pos}/{len} cells {per_sec} ETA {eta} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let start_epoch = st.epochs_done;
    let mut interrupted = false;
    for epoch in start_epoch..cfg.epochs {
        if st.stopped_early {
            break;
        }
        if let Some(n) = cfg.stop_after_epochs {
            if epoch - start_epoch >= n {
                interrupted = true;
                break;
            }
        }
        let t0 = Instant::now();
        dev.seed(mix(cfg.seed, epoch));
        let order: Vec<usize> = match &sampler {
            Some(s) => s.sample(data.train.len(), &mut st.rng),
            None => {
                let mut o = data.train.to_vec();
                if cfg.shuffle {
                    st.rng.shuffle(&mut o);
                }
                o
            }
        };
        let batches = epoch_batches(
            &order,
            &lengths,
            cfg.batch_size,
            cfg.max_batch_tokens,
            cfg.group_by_length,
            &mut st.rng,
        );
        let bar = if cfg.progress {
            let b = ProgressBar::new(order.len() as u64);
            b.set_style(style.clone());
            b.set_prefix(format!("epoch {}/{}", epoch + 1, cfg.epochs));
            b
        } else {
            ProgressBar::hidden()
        };
        let lr0 = cfg.lr_at(epoch, st.step, total_steps);
        let (mut loss_num, mut loss_den, mut correct, mut seen) = (0.0f64, 0.0f64, 0usize, 0usize);
        for b in &batches {
            let lr = cfg.lr_at(epoch, st.step, total_steps);
            let refs: Vec<(usize, &TokenizedCell)> =
                b.iter().map(|&i| (i, &data.cells[i])).collect();
            let pb = pad_batch(&refs, data.pad_id, data.pad_value);
            let input = BatchInput::of(&pb);
            let out = model.classify(&input, dev)?;
            let [_, kk] = out.logits.dims();
            if kk != k {
                return Err(invalid(format!(
                    "the model's classification head has {kk} outputs but the data have {k} classes; build the head with n_cls = {k}"
                )));
            }
            let targets: Vec<u32> = b.iter().map(|&i| data.labels[i]).collect();
            let logits_host = to_vec(out.logits.clone().detach())?;
            let loss = ce_loss(out.logits, &targets, w, dev);
            let (n, wsum, pred) = host_ce(&logits_host, k, &targets, w);
            loss_num += n;
            loss_den += wsum;
            correct += pred.iter().zip(&targets).filter(|(a, b)| a == b).count();
            seen += b.len();
            let grads = loss.backward();
            let mut gp = GradientsParams::from_grads(grads, &model);
            if let Some(c) = cfg.grad_clip_norm {
                clip_global_norm(&model, &mut gp, c)?;
            }
            model = opt.step(lr, model, gp);
            st.step += 1;
            bar.inc(b.len() as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.3}",
                loss_num / loss_den.max(f64::MIN_POSITIVE),
                correct as f64 / seen as f64
            ));
        }
        let train_secs = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let valid = model.valid();
        let (val_loss, val_acc, val_f1) = evaluate(&valid, data, data.val, cfg, w, &inf_dev)?;
        let verdict = st.stopping.update(val_loss, epoch + 1);
        let best_changed = verdict.improved;
        if best_changed {
            best = Some(valid);
        }
        st.stopped_early = verdict.stop;
        st.epochs_done = epoch + 1;
        let log = EpochLog {
            epoch: epoch + 1,
            lr: lr0,
            train_loss: loss_num / loss_den.max(f64::MIN_POSITIVE),
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_acc,
            val_macro_f1: val_f1,
            seconds: t0.elapsed().as_secs_f64(),
            cells_per_s: seen as f64 / train_secs.max(1e-9),
        };
        if cfg.progress {
            eprintln!(
                "epoch {}/{}: lr {:.3e} train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} macro-F1 {:.3}{} | {:.1} s, {:.1} cells/s",
                log.epoch,
                cfg.epochs,
                log.lr,
                log.train_loss,
                log.train_acc,
                log.val_loss,
                log.val_acc,
                log.val_macro_f1,
                if best_changed { " (best)" } else { "" },
                log.seconds,
                log.cells_per_s
            );
        }
        st.history.push(log.clone());
        if let Some(out) = &cfg.out_dir {
            save_checkpoint(out, &model, &opt, best.as_ref(), best_changed, &st)?;
            write_log(log_path.as_ref().unwrap(), &[log], true)?;
        }
    }
    let best = best.unwrap_or_else(|| model.valid());
    Ok(TrainOutcome {
        best,
        last: model,
        best_epoch: st.stopping.best_epoch,
        best_val_loss: st.stopping.best,
        history: st.history,
        stopped_early: st.stopped_early,
        interrupted,
        resumed_from,
    })
}
