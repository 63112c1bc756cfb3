//! CellPLM's transductive fine-tuning (`CellTypeAnnotationPipeline.fit`, docs/models/cellplm.md
//! §5): one optimizer step per attention set per epoch (sets in shuffled order), every cell of
//! a set through the cell attention but only its training cells in the cross-entropy (the loss
//! mask), 30 % of a set's cells dropped at random each step, the features of 75 % of the kept
//! cells masked at 25 %, gradient norm clipped at 2, AdamW with two groups (the embedder at 0.1×
//! the rate), a linear warm-up of the second group over the first 30 epochs, `ReduceLROnPlateau`
//! on the training loss stepped every step, and the model of the best validation macro-F1 kept
//! (stop when the best is more than 200 epochs old).
//!
//! It is not the mini-batch trainer ([`crate::trainer`]) because a CellPLM step reads a whole set
//! of cells that attend to each other, and which cells feed the loss is a mask over that set,
//! not the batch.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use scllm_models::cellplm::embed::set_input;
use scllm_models::cellplm::{CellPlm, SetInput};
use scllm_tokenize::TokenizedCell;

use crate::error::{ck_err, invalid, Result};
use crate::predict::{softmax_argmax, vecf, Prediction};
use crate::sampler::SplitMix64;
use crate::trainer::log::{write_log, EpochLog};
use crate::trainer::loss::{ce_loss, clip_global_norm, host_ce, macro_f1, scalar, to_vec};

/// What a CellPLM fine-tuning run is told (defaults: the reference pipeline's).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SetTrainConfig {
    /// `epochs` (2000).
    pub epochs: usize,
    /// `lr` of the encoder, latent and head (5e-3); the embedder gets `lr · embedder_lr_factor`.
    pub lr: f64,
    pub embedder_lr_factor: f64,
    /// `wd` (1e-7) and the embedder's 1e-10.
    pub weight_decay: f64,
    pub embedder_weight_decay: f64,
    /// Linear warm-up of the second group over this many epochs (30).
    pub warmup_epochs: usize,
    /// `ReduceLROnPlateau(mode='min', patience, factor)` on the training loss, every step.
    pub plateau_patience: usize,
    pub plateau_factor: f64,
    /// `clip_grad_norm_` (2.0).
    pub grad_clip_norm: f32,
    /// `es`: stop once the best validation macro-F1 is more than this many epochs old (200).
    pub early_stop: usize,
    /// `drop_node_rate` (0.3) and `max_batch_size` (70,000): the cells kept per step are
    /// `min(max, ⌊n·(1 − rate)⌋)`.
    pub drop_node_rate: f64,
    pub max_batch_size: usize,
    /// `mask_node_rate` (0.75) of the kept cells have each feature zeroed with probability
    /// `mask_feature_rate` (0.25; the reference's `mask_beta` never takes effect, §3.6).
    pub mask_node_rate: f64,
    pub mask_feature_rate: f64,
    pub seed: u64,
    pub progress: bool,
    /// Where `train_log.jsonl` goes.
    #[serde(skip)]
    pub out_dir: Option<PathBuf>,
}

impl Default for SetTrainConfig {
    fn default() -> Self {
        SetTrainConfig {
            epochs: 2000,
            lr: 5e-3,
            embedder_lr_factor: 0.1,
            weight_decay: 1e-7,
            embedder_weight_decay: 1e-10,
            warmup_epochs: 30,
            plateau_patience: 25,
            plateau_factor: 0.95,
            grad_clip_norm: 2.0,
            early_stop: 200,
            drop_node_rate: 0.3,
            max_batch_size: 70_000,
            mask_node_rate: 0.75,
            mask_feature_rate: 0.25,
            seed: 0,
            progress: true,
            out_dir: None,
        }
    }
}

/// The labelled cells of a file, their attention sets and the split.
pub struct SetTrainData<'a> {
    pub cells: &'a [TokenizedCell],
    pub labels: &'a [u32],
    pub n_classes: usize,
    /// Rows of `cells` attending to each other.
    pub sets: &'a [Vec<usize>],
    /// Rows whose labels feed the loss.
    pub train: &'a [usize],
    /// Rows the best model is chosen on.
    pub val: &'a [usize],
}

/// A finished run.
pub struct SetTrainOutcome {
    pub best: CellPlm,
    pub best_epoch: usize,
    pub best_val_f1: f64,
    pub history: Vec<EpochLog>,
    pub stopped_early: bool,
}

/// `torch.optim.lr_scheduler.ReduceLROnPlateau` in mode `min` with its defaults (relative
/// threshold 1e-4, no cooldown, min_lr 0, eps 1e-8).
struct Plateau {
    patience: usize,
    factor: f64,
    best: f64,
    bad: usize,
}

impl Plateau {
    /// Step on `metric`; whether the rates are to be reduced.
    fn step(&mut self, metric: f64) -> bool {
        if metric < self.best * (1.0 - 1e-4) {
            self.best = metric;
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        if self.bad > self.patience {
            self.bad = 0;
            true
        } else {
            false
        }
    }
    fn reduce(&self, lr: f64) -> f64 {
        let new = lr * self.factor;
        if lr - new > 1e-8 {
            new
        } else {
            lr
        }
    }
}

/// The first `k` of a random permutation of `0..n` (numpy's / torch's `perm[:k]` in law).
fn random_subset(n: usize, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut p);
    p.truncate(k);
    p
}

/// Move the gradients of `part`'s parameters out of `grads` into their own set.
fn take_grads<M: Module>(grads: &mut GradientsParams, part: &M) -> GradientsParams {
    struct Take<'a> {
        from: &'a mut GradientsParams,
        to: GradientsParams,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.from.remove::<D>(p.id) {
                self.to.register::<D>(p.id, g);
            }
        }
    }
    let mut t = Take {
        from: grads,
        to: GradientsParams::new(),
    };
    part.visit(&mut t);
    t.to
}

/// The set's cells after dropping and masking: `(kept rows, their values)`.
fn corrupt(
    rows: &[usize],
    cells: &[TokenizedCell],
    cfg: &SetTrainConfig,
    rng: &mut SplitMix64,
) -> (Vec<usize>, Vec<Vec<f32>>) {
    let n = rows.len();
    let keep_n = if cfg.drop_node_rate > 0.0 {
        cfg.max_batch_size
            .min((n as f64 * (1.0 - cfg.drop_node_rate)) as usize)
    } else {
        n
    };
    let kept: Vec<usize> = random_subset(n, keep_n, rng)
        .into_iter()
        .map(|i| rows[i])
        .collect();
    let n_mask = (cfg.mask_node_rate * kept.len() as f64) as usize;
    let mut masked = vec![false; kept.len()];
    if cfg.mask_feature_rate > 0.0 {
        for i in random_subset(kept.len(), n_mask, rng) {
            masked[i] = true;
        }
    }
    let values = kept
        .iter()
        .zip(&masked)
        .map(|(&r, &m)| {
            let v = &cells[r].values;
            if m {
                // `torch.rand(...) <= mask_feature_rate` zeroes the entry
                v.iter()
                    .map(|&x| {
                        if rng.uniform() <= cfg.mask_feature_rate {
                            0.0
                        } else {
                            x
                        }
                    })
                    .collect()
            } else {
                v.clone()
            }
        })
        .collect();
    (kept, values)
}

/// Validation loss, accuracy and macro-F1 of `model` (inference mode) on `rows`, every set in
/// whole; also each row's predicted class.
pub fn evaluate_sets(
    model: &CellPlm,
    data: &SetTrainData,
    rows: &[usize],
    dev: &Device,
) -> Result<(f64, f64, f64)> {
    let mut want = vec![false; data.cells.len()];
    for &r in rows {
        want[r] = true;
    }
    let k = data.n_classes;
    let (mut num, mut den) = (0.0, 0.0);
    let (mut truth, mut preds) = (Vec::new(), Vec::new());
    for set in data.sets {
        let pick: Vec<usize> = (0..set.len()).filter(|&i| want[set[i]]).collect();
        if pick.is_empty() {
            continue;
        }
        let input = set_input(data.cells, set);
        let (_, logits) = model.classify_set(&input, dev)?;
        let host = to_vec(logits)?;
        let sel: Vec<f32> = pick
            .iter()
            .flat_map(|&i| host[i * k..(i + 1) * k].iter().copied())
            .collect();
        let targets: Vec<u32> = pick.iter().map(|&i| data.labels[set[i]]).collect();
        let (n, w, p) = host_ce(&sel, k, &targets, None);
        num += n;
        den += w;
        truth.extend(targets);
        preds.extend(p);
    }
    if truth.is_empty() {
        return Err(invalid("no validation cell is in any attention set"));
    }
    let acc = truth.iter().zip(&preds).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64;
    Ok((num / den, acc, macro_f1(&truth, &preds, k)))
}

/// Fine-tune `model` (an annotation model with its strategy attached, in training mode) on
/// `data`; `dev` is the autodiff device.
pub fn train_sets(
    mut model: CellPlm,
    data: &SetTrainData,
    cfg: &SetTrainConfig,
    dev: &Device,
) -> Result<SetTrainOutcome> {
    if cfg.epochs == 0 {
        return Err(invalid("--epochs must be at least 1"));
    }
    if cfg.lr.is_nan() || cfg.lr <= 0.0 {
        return Err(invalid(format!("--lr must be positive, got {}", cfg.lr)));
    }
    if data.train.is_empty() || data.val.is_empty() {
        return Err(invalid(
            "fine-tuning needs training and validation cells (check the split)",
        ));
    }
    let k = model.n_classes();
    if k != data.n_classes {
        return Err(invalid(format!(
            "the model's head has {k} outputs but the data have {} classes",
            data.n_classes
        )));
    }
    let inf_dev = dev.clone().without_autodiff();
    let mut is_train = vec![false; data.cells.len()];
    for &r in data.train {
        is_train[r] = true;
    }
    // torch's AdamW defaults (betas 0.9/0.999, eps 1e-8), one optimizer per group
    let adamw = |wd: f64| {
        AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(wd as f32)
            .init()
    };
    let mut opt_emb = adamw(cfg.embedder_weight_decay);
    let mut opt_rest = adamw(cfg.weight_decay);
    let mut lr_emb = cfg.lr * cfg.embedder_lr_factor;
    let mut lr_rest = cfg.lr;
    let mut plateau = Plateau {
        patience: cfg.plateau_patience,
        factor: cfg.plateau_factor,
        best: f64::INFINITY,
        bad: 0,
    };
    let mut rng = SplitMix64::new(cfg.seed);
    let log_path = cfg.out_dir.as_ref().map(|o| o.join("train_log.jsonl"));
    if let Some(out) = &cfg.out_dir {
        std::fs::create_dir_all(out).map_err(|e| ck_err(out, e))?;
    }
    if let Some(lp) = &log_path {
        write_log(lp, &[], false)?;
    }
    let bar = if cfg.progress {
        let b = ProgressBar::new(cfg.epochs as u64);
        b.set_style(
            ProgressStyle::with_template(
                "fine-tune [{bar:25}] {pos}/{len} epochs {per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    scllm_eval::progress::follow(&bar, "fine-tune (epochs)", cfg.epochs as u64);
    let mut history: Vec<EpochLog> = Vec::new();
    let mut best: Option<(CellPlm, usize, f64)> = None;
    let mut stopped_early = false;
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        dev.seed(rng.next_u64());
        if epoch < cfg.warmup_epochs {
            lr_rest = cfg.lr * (epoch + 1) as f64 / cfg.warmup_epochs as f64;
        }
        let lr_first = lr_rest;
        let mut order: Vec<usize> = (0..data.sets.len()).collect();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut steps, mut correct, mut seen) = (0.0f64, 0usize, 0usize, 0usize);
        for &s in &order {
            let (kept, values) = corrupt(&data.sets[s], data.cells, cfg, &mut rng);
            // the loss mask: the kept cells of the training split (a set without any is skipped:
            // the reference's mean over no cell would be NaN)
            let pick: Vec<usize> = (0..kept.len()).filter(|&i| is_train[kept[i]]).collect();
            if pick.is_empty() {
                continue;
            }
            let input = SetInput {
                genes: kept
                    .iter()
                    .map(|&r| data.cells[r].genes.as_slice())
                    .collect(),
                values: values.iter().map(Vec::as_slice).collect(),
            };
            scllm_models::interrupt::check()?;
            let (_, logits) = model.classify_set(&input, dev)?;
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(
                    pick.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [pick.len()],
                ),
                dev,
            );
            let logits = logits.select(0, idx);
            let targets: Vec<u32> = pick.iter().map(|&i| data.labels[kept[i]]).collect();
            let host = to_vec(logits.clone().detach())?;
            let (_, _, pred) = host_ce(&host, k, &targets, None);
            correct += pred.iter().zip(&targets).filter(|(a, b)| a == b).count();
            seen += targets.len();
            let loss = ce_loss(logits, &targets, None, dev);
            let loss_value = scalar(loss.clone().detach())?;
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, cfg.grad_clip_norm)?;
            let emb_grads = take_grads(&mut grads, &model.embedder);
            model = opt_emb.step(lr_emb, model, emb_grads);
            model = opt_rest.step(lr_rest, model, grads);
            if plateau.step(loss_value) {
                lr_emb = plateau.reduce(lr_emb);
                lr_rest = plateau.reduce(lr_rest);
            }
            loss_sum += loss_value;
            steps += 1;
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        let (val_loss, val_acc, val_f1) = evaluate_sets(&model.valid(), data, data.val, &inf_dev)?;
        let log = EpochLog {
            epoch: epoch + 1,
            lr: lr_first,
            train_loss: if steps > 0 {
                loss_sum / steps as f64
            } else {
                f64::NAN
            },
            train_acc: if seen > 0 {
                correct as f64 / seen as f64
            } else {
                f64::NAN
            },
            val_loss,
            val_acc,
            val_macro_f1: val_f1,
            seconds: t0.elapsed().as_secs_f64(),
            cells_per_s: seen as f64 / train_seconds.max(1e-9),
        };
        if let Some(lp) = &log_path {
            write_log(lp, std::slice::from_ref(&log), true)?;
        }
        history.push(log);
        // `max(valid_metric) == valid_metric[-1]`: a tie moves the best to the later epoch
        if best.as_ref().is_none_or(|(_, _, f)| val_f1 >= *f) {
            best = Some((model.valid(), epoch + 1, val_f1));
        }
        bar.inc(1);
        let (_, be, bf) = best.as_ref().expect("set above");
        bar.set_message(format!(
            "loss {:.4} val macro-F1 {val_f1:.3} (best {bf:.3} at {be})",
            history.last().map_or(f64::NAN, |h| h.train_loss)
        ));
        if epoch + 1 - be >= cfg.early_stop {
            stopped_early = true;
            break;
        }
    }
    bar.finish_and_clear();
    let (best, best_epoch, best_val_f1) = best.expect("at least one epoch ran");
    Ok(SetTrainOutcome {
        best,
        best_epoch,
        best_val_f1,
        history,
        stopped_early,
    })
}

/// The fine-tuned model's predictions for `cells`, each attention set of `sets` in whole, in the
/// input order (the pipeline's `predict`): the class, its probability, every probability, and
/// the `ae` latent as the adapted embedding. `dev`: any device (its plain form is used).
pub fn predict_sets(
    model: &CellPlm,
    cells: &[TokenizedCell],
    sets: &[Vec<usize>],
    progress: bool,
    dev: &Device,
) -> Result<Prediction> {
    let dev = dev.clone().without_autodiff();
    let model = model.valid();
    let n = cells.len();
    let k = model.n_classes();
    let dim = model.latent_dim();
    let mut out = Prediction {
        class_ids: vec![0; n],
        confidence: vec![0.0; n],
        embeddings: vec![0.0; n * dim],
        dim,
        probabilities: vec![0.0; n * k],
        n_classes: k,
    };
    let bar = if progress {
        let b = ProgressBar::new(n as u64);
        b.set_style(
            ProgressStyle::with_template(
                "annotate [{bar:25}] {pos}/{len} cells {per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    scllm_eval::progress::follow(&bar, "predict", n as u64);
    for set in sets {
        let input = set_input(cells, set);
        let (z, logits) = model.classify_set(&input, &dev)?;
        let logits = vecf(logits)?;
        let z = vecf(z)?;
        for (i, &r) in set.iter().enumerate() {
            let (p, c) = softmax_argmax(&logits[i * k..(i + 1) * k]);
            out.class_ids[r] = c;
            out.confidence[r] = p[c as usize];
            out.probabilities[r * k..(r + 1) * k].copy_from_slice(&p);
            out.embeddings[r * dim..(r + 1) * dim].copy_from_slice(&z[i * dim..(i + 1) * dim]);
        }
        bar.inc(set.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}
