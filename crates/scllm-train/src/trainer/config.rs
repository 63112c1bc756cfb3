//! What a fine-tuning run is told: optimiser, schedule, loss options, batching, stopping and
//! output; and what it reads (the cells, labels and split).

use std::path::PathBuf;

use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer};
use scllm_tokenize::TokenizedCell;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

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
    /// Linear warm-up over `warmup_steps`, then linear decay to 0 at the last step (Hugging
    /// Face's `linear` schedule, `get_linear_schedule_with_warmup`).
    WarmupLinear {
        warmup_steps: usize,
    },
    /// Linear warm-up over `warmup_ratio` of all steps, then cosine decay to `lr · min_ratio`.
    WarmupCosine {
        warmup_ratio: f64,
        min_ratio: f64,
    },
    /// scBERT's `CosineAnnealingWarmupRestarts` (its utils.py), stepped once per epoch: cycles
    /// of `first_cycle_steps` epochs, each next one `(len - warmup) · cycle_mult + warmup` long;
    /// in each, a linear warm-up from `min_lr` to the cycle's peak over `warmup_steps` epochs,
    /// then a cosine down towards `min_lr`; the peak is `lr · gamma^cycle`. The first epoch
    /// trains at `min_lr`.
    CosineWarmupRestarts {
        first_cycle_steps: usize,
        cycle_mult: f64,
        min_lr: f64,
        warmup_steps: usize,
        gamma: f64,
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
    /// The choices that define the run as the user gave them, e.g. `("--seed", "1")`,
    /// `("--val-fraction", "0.1")`: saved in the checkpoint, and a resume that gives others is
    /// refused (the same counts of cells do not make the same split).
    pub run_flags: Vec<(String, String)>,
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
            run_flags: Vec::new(),
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

    /// Geneformer's cell classifier (`Classifier`, `get_default_train_args`; docs/models/
    /// geneformer.md §6): Hugging Face's AdamW (lr 5e-5, weight decay 0.001, eps 1e-8), batch 12,
    /// 10 epochs, linear decay with 500 warm-up steps for 6-layer models (none otherwise),
    /// gradient-norm clipping at 1.0 (the Trainer's default), plain cross-entropy, and the best
    /// epoch by validation loss.
    pub fn geneformer(n_layers: usize) -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 12,
            eval_batch_size: 12,
            max_batch_tokens: 12 * 4096,
            lr: 5e-5,
            optimizer: OptimizerKind::AdamW {
                weight_decay: 0.001,
            },
            eps: 1e-8,
            schedule: Schedule::WarmupLinear {
                warmup_steps: if n_layers <= 6 { 500 } else { 0 },
            },
            ..Default::default()
        }
    }

    /// scBERT's `finetune.py` (docs/models/scbert.md §3.3): Adam lr 1e-4 (eps 1e-8), batch 3,
    /// 100 epochs, `CosineAnnealingWarmupRestarts(first_cycle_steps=15, cycle_mult=2,
    /// max_lr=1e-4, min_lr=1e-6, warmup_steps=5, gamma=0.9)` per epoch, gradient clipping at
    /// 1e6 (in effect none), plain cross-entropy, patience 10. Its gradient accumulation (60
    /// batches a step) is not reproduced: each batch of 3 is a step.
    pub fn scbert() -> Self {
        TrainConfig {
            epochs: 100,
            batch_size: 3,
            eval_batch_size: 3,
            max_batch_tokens: 3 * 16_907,
            lr: 1e-4,
            optimizer: OptimizerKind::Adam,
            eps: 1e-8,
            schedule: Schedule::CosineWarmupRestarts {
                first_cycle_steps: 15,
                cycle_mult: 2.0,
                min_lr: 1e-6,
                warmup_steps: 5,
                gamma: 0.9,
            },
            grad_clip_norm: Some(1e6),
            patience: Some(10),
            ..Default::default()
        }
    }

    /// The learning rate at `step` (0-based) of `epoch` (0-based), `total_steps` in the run.
    pub fn lr_at(&self, epoch: usize, step: usize, total_steps: usize) -> f64 {
        match &self.schedule {
            Schedule::Constant => self.lr,
            Schedule::StepLr { gamma } => self.lr * gamma.powi(epoch as i32),
            Schedule::WarmupLinear { warmup_steps } => {
                let (s, w, t) = (step as f64, *warmup_steps as f64, total_steps.max(1) as f64);
                if s < w {
                    self.lr * s / w
                } else {
                    self.lr * ((t - s) / (t - w).max(1.0)).max(0.0)
                }
            }
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
            Schedule::CosineWarmupRestarts {
                first_cycle_steps,
                cycle_mult,
                min_lr,
                warmup_steps,
                gamma,
            } => {
                // the scheduler's own bookkeeping: step_in_cycle counts epochs, restarting
                let (mut s, mut len, mut cycle) = (epoch, *first_cycle_steps, 0i32);
                while len > 0 && s >= len {
                    s -= len;
                    cycle += 1;
                    len = ((len.saturating_sub(*warmup_steps)) as f64 * cycle_mult) as usize
                        + warmup_steps;
                }
                let peak = self.lr * gamma.powi(cycle);
                let (s, w) = (s as f64, *warmup_steps as f64);
                if s < w {
                    (peak - min_lr) * s / w + min_lr
                } else {
                    let x = std::f64::consts::PI * (s - w) / (len as f64 - w);
                    min_lr + (peak - min_lr) * (1.0 + x.cos()) / 2.0
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

pub(crate) fn build_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    // clipping is global (done before the step), not burn's per-parameter clipping
    match &cfg.optimizer {
        OptimizerKind::Adam => AdamConfig::new().with_epsilon(cfg.eps).init(),
        OptimizerKind::AdamW { weight_decay } => AdamWConfig::new()
            .with_epsilon(cfg.eps)
            .with_weight_decay(*weight_decay)
            .init(),
    }
}

pub(crate) fn check(cfg: &TrainConfig, d: &TrainData) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// scBERT's schedule against the reference's own `CosineAnnealingWarmupRestarts` over 100
    /// epochs (tests/fixtures/scbert/fixture.json, tools/make_scbert_fixture.py).
    #[test]
    fn scbert_schedule_equals_the_reference_scheduler() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/scbert/fixture.json");
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let want: Vec<f64> = meta["lr_epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(want.len(), 100);
        let c = TrainConfig::scbert();
        for (e, w) in want.iter().enumerate() {
            let got = c.lr_at(e, 0, 1);
            assert!(
                (got - w).abs() <= 1e-12 * w.abs(),
                "epoch {e}: {got} vs {w}"
            );
        }
    }
}
