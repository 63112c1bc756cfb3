//! scGPT-style pretraining: masked expression-value prediction (GEP) and the cell-embedding
//! objective (GEPC, the MVC head), on cells streamed from many `.h5ad` files.
//!
//! Input as scGPT's pretraining collator builds it: expressed genes only, per-cell binning,
//! `<cls>` first with value `pad_value` (-2), sampled to `max_len`. Each step draws a mask ratio
//! from `mask_ratios` (scGPT_human: 0.25/0.5/0.75) and masks every position with that
//! probability except `<cls>` and padding; the losses are the masked MSE of the ExprDecoder
//! (GEP) and of the MVC decoder (GEPC) over the masked positions, summed.
//!
//! Resume is exact: every random choice (the corpus order, the masks, dropout) is a function of
//! the seed and the step, and `OUT/checkpoint/` holds the model, the optimizer state and the
//! position in the corpus (epoch, cells consumed). A resumed run logs the same losses as one
//! that was never stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand_mt::Mt64;
use scllm_models::scgpt::{ScGpt, ScGptBuild, ScGptConfig};
use scllm_models::BatchInput;
use scllm_tokenize::{
    list_inputs, mask_values, pad_batch, union_vocab, Corpus, CorpusOptions, GeneVocab, ObsFilter,
    TokenizedCell,
};
use serde::{Deserialize, Serialize};

use crate::error::{ck_err, file_err, invalid, Result, TrainError};
use crate::trainer::loss::clip_global_norm;

use crate::trainer::resume::{
    checkpoint_to_resume, load_model_and_optimizer, read_state, write_checkpoint,
};

/// The architecture to pretrain (the `args.json` fields that set sizes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShape {
    pub embsize: usize,
    pub nheads: usize,
    pub d_hid: usize,
    pub nlayers: usize,
    #[serde(default = "d_n_layers_cls")]
    pub n_layers_cls: usize,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    #[serde(default = "d_n_bins")]
    pub n_bins: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Longest cell, `<cls>` included.
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    #[serde(default = "d_shuffle")]
    pub shuffle_buffer: usize,
    #[serde(default = "d_block")]
    pub block_cells: usize,
    /// Cells with fewer expressed vocabulary genes are skipped.
    #[serde(default = "d_min_genes")]
    pub min_genes: usize,
    /// Cells to leave out (`donor=1015`, `kang2018_pbmc.h5ad:donor=1015`), e.g. benchmark test cells.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A `vocab.json` to use; default: the union of the files' genes.
    #[serde(default)]
    pub vocab: Option<PathBuf>,
    /// With the union vocabulary: keep genes present in at least this many input files.
    #[serde(default = "d_min_files")]
    pub min_files_per_gene: usize,
    /// `var` column with gene symbols (default: the index).
    #[serde(default)]
    pub gene_col: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Optimizer steps in the whole run.
    pub steps: usize,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Linear warm-up over this fraction of the steps, then cosine decay.
    #[serde(default = "d_warmup")]
    pub warmup_ratio: f64,
    /// Cosine decays to `lr · min_lr_ratio`.
    #[serde(default = "d_min_lr")]
    pub min_lr_ratio: f64,
    #[serde(default = "d_wd")]
    pub weight_decay: f32,
    #[serde(default = "d_clip")]
    pub grad_clip_norm: f32,
    #[serde(default = "d_ratios")]
    pub mask_ratios: Vec<f64>,
    /// Train the MVC head too (GEPC).
    #[serde(default = "d_true")]
    pub gepc: bool,
    #[serde(default = "d_ck")]
    pub checkpoint_every: usize,
    #[serde(default = "d_log")]
    pub log_every: usize,
    #[serde(default)]
    pub seed: u64,
}

/// The rate at 0-based `step` of `steps`: a linear warm-up over `warmup_ratio` of the steps,
/// then cosine decay from `lr` to `lr · min_lr_ratio`.
pub(crate) fn warmup_cosine(
    lr: f64,
    min_lr_ratio: f64,
    warmup_ratio: f64,
    steps: usize,
    step: usize,
) -> f64 {
    let total = steps.max(1) as f64;
    let warm = (warmup_ratio * total).round();
    let s = step as f64;
    if s < warm {
        lr * (s + 1.0) / warm
    } else {
        let p = ((s - warm) / (total - warm).max(1.0)).min(1.0);
        let c = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
        lr * (min_lr_ratio + (1.0 - min_lr_ratio) * c)
    }
}

/// `scllm pretrain --config CONFIG.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    pub model: ModelShape,
    #[serde(default = "d_data")]
    pub data: DataSection,
    pub train: TrainSection,
}

fn d_n_layers_cls() -> usize {
    3
}
fn d_dropout() -> f64 {
    0.2
}
fn d_n_bins() -> usize {
    51
}
fn d_max_len() -> usize {
    1200
}
fn d_shuffle() -> usize {
    4096
}
fn d_block() -> usize {
    1024
}
fn d_min_genes() -> usize {
    10
}
fn d_min_files() -> usize {
    1
}
fn d_batch() -> usize {
    32
}
fn d_lr() -> f64 {
    1e-4
}
fn d_warmup() -> f64 {
    0.1
}
fn d_min_lr() -> f64 {
    0.01
}
fn d_wd() -> f32 {
    0.01
}
fn d_clip() -> f32 {
    1.0
}
fn d_ratios() -> Vec<f64> {
    vec![0.25, 0.5, 0.75]
}
fn d_true() -> bool {
    true
}
fn d_ck() -> usize {
    100
}
fn d_log() -> usize {
    10
}
fn d_data() -> DataSection {
    toml::from_str("").expect("every data field has a default")
}

impl PretrainConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| file_err(path, format!("cannot read: {e}")))?;
        let cfg: PretrainConfig = toml::from_str(&text)
            .map_err(|e| file_err(path, format!("not a pretraining config: {e}")))?;
        cfg.check().map_err(|m| file_err(path, m))?;
        Ok(cfg)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let m = &self.model;
        if m.embsize == 0 || m.nheads == 0 || m.nlayers == 0 || m.d_hid == 0 {
            return Err("[model] embsize, nheads, d_hid and nlayers must be positive".into());
        }
        if !m.embsize.is_multiple_of(m.nheads) {
            return Err(format!(
                "[model] embsize {} is not a multiple of nheads {}",
                m.embsize, m.nheads
            ));
        }
        let t = &self.train;
        if t.steps == 0 || t.batch_size == 0 {
            return Err("[train] steps and batch_size must be at least 1".into());
        }
        if t.lr.is_nan() || t.lr <= 0.0 {
            return Err(format!("[train] lr must be positive, got {}", t.lr));
        }
        if t.mask_ratios.is_empty() || t.mask_ratios.iter().any(|r| !(*r > 0.0 && *r < 1.0)) {
            return Err(
                "[train] mask_ratios must be values in (0, 1), e.g. [0.25, 0.5, 0.75]".into(),
            );
        }
        if self.data.max_len < 2 {
            return Err("[data] max_len must be at least 2".into());
        }
        Ok(())
    }

    /// The learning rate at 0-based `step`: linear warm-up, then cosine to `lr · min_lr_ratio`.
    pub fn lr_at(&self, step: usize) -> f64 {
        let t = &self.train;
        warmup_cosine(t.lr, t.min_lr_ratio, t.warmup_ratio, t.steps, step)
    }

    /// The model's `args.json`, in the released scGPT layout.
    pub fn args_json(&self) -> ScGptConfig {
        let m = &self.model;
        let v = serde_json::json!({
            "embsize": m.embsize, "nheads": m.nheads, "d_hid": m.d_hid, "nlayers": m.nlayers,
            "n_layers_cls": m.n_layers_cls, "dropout": m.dropout, "n_bins": m.n_bins,
            "pad_token": "<pad>", "pad_value": -2, "mask_value": -1,
            "max_seq_len": self.data.max_len, "input_style": "binned",
            "input_emb_style": "continuous", "mask_ratio": self.train.mask_ratios,
            "lr": self.train.lr, "batch_size": self.train.batch_size,
            "MVC": self.train.gepc, "USE_CLS": false, "USE_CCE": false,
            "USE_GENERATIVE_TRAINING": false, "fast_transformer": false,
            "trunc_by_sample": true, "training_tasks": "pcpt",
            "producer": "scllm pretrain",
        });
        serde_json::from_value(v).expect("a complete args.json")
    }
}

/// One line of `pretrain_log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// 1-based: the step just done.
    pub step: usize,
    pub epoch: u64,
    pub lr: f64,
    /// Mean over the steps since the last line.
    pub loss: f64,
    pub gep: f64,
    pub gepc: Option<f64>,
    pub cells: usize,
    pub cells_per_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PretrainState {
    version: u32,
    step: usize,
    epoch: u64,
    /// Cells of `epoch` already consumed.
    cells_in_epoch: usize,
    cells_total: usize,
    log: Vec<StepLog>,
}

const STATE_VERSION: u32 = 1;

/// Where inputs and outputs go, for either family's config (`C`: scGPT's [`PretrainConfig`],
/// or [`crate::cellplm_pretrain::CellPlmPretrainConfig`]).
pub struct PretrainRun<'a, C = PretrainConfig> {
    pub config: &'a C,
    pub inputs: &'a [PathBuf],
    pub out: &'a Path,
    pub resume: bool,
    pub progress: bool,
    /// Stop (as if interrupted) after this many steps in this call; for tests and time limits.
    pub stop_after_steps: Option<usize>,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct PretrainSummary {
    pub steps: usize,
    pub cells: usize,
    pub seconds: f64,
    pub cells_per_s: f64,
    pub vocab_size: usize,
    pub parameters: usize,
    pub files: Vec<(String, usize, usize)>,
    pub final_loss: Option<f64>,
    pub resumed_from_step: Option<usize>,
    pub finished: bool,
}

fn mix(seed: u64, step: usize, salt: u64) -> u64 {
    let mut z = seed ^ salt ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The vocabulary of a run: the given `vocab.json`, or the union of the inputs' genes (those in at
/// least `min_files_per_gene` files) followed by `<pad>`, `<cls>`, `<eoc>`.
pub fn build_vocab(cfg: &PretrainConfig, files: &[PathBuf]) -> Result<GeneVocab> {
    let specials = ["<pad>", "<cls>", "<eoc>"];
    if let Some(p) = &cfg.data.vocab {
        let mut v = GeneVocab::from_json_file(p)?;
        v.append_missing(&specials);
        return Ok(v);
    }
    let v = union_vocab(files, cfg.data.gene_col.as_deref(), &specials)?;
    if cfg.data.min_files_per_gene <= 1 {
        return Ok(v);
    }
    let mut count = std::collections::HashMap::<String, usize>::new();
    for f in files {
        let b = scllm_io::BackedAnnData::open(f, "X")?;
        let (_, symbols, _) =
            scllm_tokenize::gene_symbols(&b.var, cfg.data.gene_col.as_deref(), f)?;
        let uniq: std::collections::HashSet<String> = symbols.into_iter().collect();
        for s in uniq {
            *count.entry(s).or_default() += 1;
        }
    }
    let mut tokens: Vec<String> = v
        .tokens()
        .iter()
        .filter(|t| count.get(*t).copied().unwrap_or(0) >= cfg.data.min_files_per_gene)
        .cloned()
        .collect();
    if tokens.is_empty() {
        return Err(invalid(format!(
            "no gene is in {} or more of the input files: lower [data] min_files_per_gene",
            cfg.data.min_files_per_gene
        )));
    }
    tokens.extend(specials.iter().map(|s| s.to_string()));
    Ok(GeneVocab::from_tokens(tokens))
}

/// `Σ((pred - target)² · mask) / Σ mask` over `[B, L]`.
fn masked_mse(pred: Tensor<2>, target: Tensor<2>, mask: Tensor<2>, n_masked: usize) -> Tensor<1> {
    ((pred - target).powi_scalar(2) * mask)
        .sum()
        .div_scalar(n_masked.max(1) as f32)
}

fn scalar(t: Tensor<1>) -> Result<f64> {
    let v = t
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))?;
    Ok(v[0] as f64)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    scllm_fs::write_atomic(path, bytes).map_err(|e| ck_err(path, e))
}

/// Pretrain a model as `run` says; writes the model folder (`args.json`, `vocab.json`,
/// `best_model.pt`, `model.safetensors`), `pretrain_log.jsonl`, `loss_curve.png` and checkpoints
/// into `run.out`.
pub fn pretrain(run: &PretrainRun) -> Result<PretrainSummary> {
    let cfg = run.config;
    cfg.check().map_err(TrainError::Invalid)?;
    let files = list_inputs(run.inputs)?;
    std::fs::create_dir_all(run.out)
        .map_err(|e| file_err(run.out, format!("cannot create: {e}")))?;
    let found = match run.resume {
        true => Some(checkpoint_to_resume(run.out)?),
        false => None,
    };
    let resuming = found.is_some();
    // a resumed run must see the vocabulary it started with
    let vocab = if resuming {
        GeneVocab::from_json_file(run.out.join("vocab.json"))?
    } else {
        build_vocab(cfg, &files)?
    };
    let exclude: Vec<ObsFilter> = cfg
        .data
        .exclude
        .iter()
        .map(|s| s.parse::<ObsFilter>().map_err(TrainError::Invalid))
        .collect::<Result<_>>()?;
    let copts = CorpusOptions {
        max_len: cfg.data.max_len,
        n_bins: cfg.model.n_bins,
        block_cells: cfg.data.block_cells,
        shuffle_buffer: cfg.data.shuffle_buffer,
        seed: cfg.train.seed,
        exclude,
        gene_col: cfg.data.gene_col.clone(),
        min_genes: cfg.data.min_genes,
    };
    let corpus = Corpus::open(&files, &vocab, copts, "<cls>", "<pad>", -2.0)?;
    let pad_id = vocab.special("<pad>")?;
    let args = cfg.args_json();

    // built on the plain device, then moved to autodiff (`train`): the initialiser writes the
    // `<pad>` row, which an autodiff leaf would refuse
    let base = Device::flex();
    base.seed(cfg.train.seed);
    let dev = base.clone().autodiff();
    let build = ScGptBuild {
        ntoken: vocab.len(),
        pad_id: pad_id as usize,
        n_cls: 0,
        do_mvc: cfg.train.gepc,
    };
    let mut model = ScGpt::new(&args, &build, &base)?.train();
    let mut opt: burn::optim::ModuleOptimizer = AdamWConfig::new()
        .with_weight_decay(cfg.train.weight_decay)
        .init();
    let mut st = PretrainState {
        version: STATE_VERSION,
        step: 0,
        epoch: 0,
        cells_in_epoch: 0,
        cells_total: 0,
        log: Vec::new(),
    };
    let log_path = run.out.join("pretrain_log.jsonl");
    if let Some(ck) = &found {
        st = read_state(ck)?;
        opt = load_model_and_optimizer(ck, &mut model, opt)?;
    } else {
        write_atomic(&run.out.join("vocab.json"), vocab.to_json().as_bytes())?;
        let _ = std::fs::remove_file(&log_path);
    }
    let resumed_from_step = resuming.then_some(st.step);
    let parameters = model.num_params();

    let bar = if run.progress {
        let b = ProgressBar::new(cfg.train.steps as u64);
        b.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] step {pos}/{len} {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix("pretrain");
        b.set_position(st.step as u64);
        b
    } else {
        ProgressBar::hidden()
    };

    let t0 = Instant::now();
    let mut cells_this_call = 0usize;
    let mut steps_this_call = 0usize;
    let (mut acc_loss, mut acc_gep, mut acc_gepc, mut acc_n, mut acc_cells) =
        (0.0f64, 0.0f64, 0.0f64, 0usize, 0usize);
    let mut window_t = Instant::now();
    let mut iter = corpus.epoch(st.epoch).skip(st.cells_in_epoch);
    let mut finished = st.step >= cfg.train.steps;
    while st.step < cfg.train.steps {
        if run.stop_after_steps.is_some_and(|n| steps_this_call >= n) {
            break;
        }
        // the next batch of cells, crossing into the next epoch when one ends
        let mut cells: Vec<TokenizedCell> = Vec::with_capacity(cfg.train.batch_size);
        while cells.len() < cfg.train.batch_size {
            match iter.next() {
                Some(c) => {
                    cells.push(c?.2);
                    st.cells_in_epoch += 1;
                }
                None => {
                    if st.cells_in_epoch == 0 {
                        return Err(invalid(
                            "the corpus yields no cells (all excluded, or fewer expressed genes than [data] min_genes)",
                        ));
                    }
                    st.epoch += 1;
                    st.cells_in_epoch = 0;
                    iter = corpus.epoch(st.epoch).skip(st.cells_in_epoch);
                }
            }
        }
        let refs: Vec<(usize, &TokenizedCell)> = cells.iter().enumerate().collect();
        let pb = pad_batch(&refs, pad_id, -2.0);
        let mut rng = Mt64::new(mix(cfg.train.seed, st.step, 0x6d61_736b));
        let ratio =
            cfg.train.mask_ratios[(rng.next_u64() % cfg.train.mask_ratios.len() as u64) as usize];
        let l = pb.seq_len;
        let mut masked = Vec::with_capacity(pb.values.len());
        let mut mask = Vec::with_capacity(pb.values.len());
        for r in 0..pb.size() {
            let (v, m) = mask_values(&pb.values[r * l..(r + 1) * l], ratio, -2.0, -1.0, &mut rng);
            masked.extend(v);
            mask.extend(m);
        }
        let n_masked = mask.iter().filter(|m| **m).count();
        dev.seed(mix(cfg.train.seed, st.step, 0x64726f70));
        let input = BatchInput {
            batch: pb.size(),
            seq_len: l,
            genes: &pb.genes,
            values: &masked,
            padding: &pb.padding,
        };
        let (genes, values, kpm) = model.inputs(&input, &dev);
        let target =
            Tensor::<2>::from_data(TensorData::new(pb.values.clone(), [pb.size(), l]), &dev);
        let maskf: Vec<f32> = mask.iter().map(|&m| m as u8 as f32).collect();
        let maskt = Tensor::<2>::from_data(TensorData::new(maskf, [pb.size(), l]), &dev);
        let out = model.forward(genes, values, kpm);
        let gep = masked_mse(out.mlm_output, target.clone(), maskt.clone(), n_masked);
        let gepc = out
            .mvc_output
            .map(|m| masked_mse(m, target, maskt, n_masked));
        let loss = match &gepc {
            Some(g) => gep.clone() + g.clone(),
            None => gep.clone(),
        };
        let lv = scalar(loss.clone().detach())?;
        if !lv.is_finite() {
            return Err(TrainError::Backend(format!(
                "the loss became {lv} at step {}: lower [train] lr",
                st.step + 1
            )));
        }
        acc_loss += lv;
        acc_gep += scalar(gep.detach())?;
        if let Some(g) = gepc {
            acc_gepc += scalar(g.detach())?;
        }
        acc_n += 1;
        acc_cells += pb.size();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        clip_global_norm(&model, &mut grads, cfg.train.grad_clip_norm)?;
        let lr = cfg.lr_at(st.step);
        model = opt.step(lr, model, grads);
        st.step += 1;
        st.cells_total += pb.size();
        cells_this_call += pb.size();
        steps_this_call += 1;
        bar.inc(1);
        if st.step.is_multiple_of(cfg.train.log_every.max(1)) || st.step == cfg.train.steps {
            let secs = window_t.elapsed().as_secs_f64();
            let line = StepLog {
                step: st.step,
                epoch: st.epoch,
                lr,
                loss: acc_loss / acc_n as f64,
                gep: acc_gep / acc_n as f64,
                gepc: cfg.train.gepc.then(|| acc_gepc / acc_n as f64),
                cells: st.cells_total,
                cells_per_s: acc_cells as f64 / secs.max(1e-9),
            };
            bar.set_message(format!(
                "loss {:.4} {:.1} cells/s",
                line.loss, line.cells_per_s
            ));
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| ck_err(&log_path, e))?;
            writeln!(
                f,
                "{}",
                serde_json::to_string(&line).expect("plain numbers")
            )
            .map_err(|e| ck_err(&log_path, e))?;
            st.log.push(line);
            (acc_loss, acc_gep, acc_gepc, acc_n, acc_cells) = (0.0, 0.0, 0.0, 0, 0);
            window_t = Instant::now();
        }
        if st.step.is_multiple_of(cfg.train.checkpoint_every.max(1)) || st.step == cfg.train.steps {
            save_checkpoint(run.out, &model, &opt, &st)?;
        }
        if st.step == cfg.train.steps {
            finished = true;
        }
    }
    bar.finish_and_clear();
    if finished {
        write_model_folder(run.out, &model.valid(), &args)?;
        let pts = |f: fn(&StepLog) -> Option<f64>| -> Vec<(f64, f64)> {
            st.log
                .iter()
                .filter_map(|l| f(l).map(|v| (l.step as f64, v)))
                .collect()
        };
        let mut lines = vec![("GEP (masked MSE)".to_string(), pts(|l| Some(l.gep)))];
        if cfg.train.gepc {
            lines.push(("GEPC (masked MSE)".to_string(), pts(|l| l.gepc)));
        }
        if !st.log.is_empty() {
            scllm_eval::plot::plot_lines(
                run.out.join("loss_curve.png"),
                "pretraining loss",
                "step",
                "masked MSE",
                &lines,
            )
            .map_err(|e| file_err(run.out, e.to_string()))?;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(PretrainSummary {
        steps: st.step,
        cells: st.cells_total,
        seconds,
        cells_per_s: cells_this_call as f64 / seconds.max(1e-9),
        vocab_size: vocab.len(),
        parameters,
        files: scllm_tokenize::corpus::describe(&corpus)
            .into_iter()
            .map(|(n, k, t, _)| (n, k, t))
            .collect(),
        final_loss: st.log.last().map(|l| l.loss),
        resumed_from_step,
        finished,
    })
}

fn save_checkpoint(
    out: &Path,
    model: &ScGpt,
    opt: &burn::optim::ModuleOptimizer,
    st: &PretrainState,
) -> Result<()> {
    let state = serde_json::to_string_pretty(st).expect("plain state");
    write_checkpoint(out, model, opt, &state, |_, _| Ok(()))
}

/// The released layout: `args.json`, `best_model.pt` (PyTorch zip, `Wqkv` names) and
/// `model.safetensors`; `vocab.json` is written when the run starts.
pub fn write_model_folder(out: &Path, model: &ScGpt, args: &ScGptConfig) -> Result<()> {
    write_atomic(
        &out.join("args.json"),
        serde_json::to_string_pretty(args).expect("args").as_bytes(),
    )?;
    scllm_models::save_safetensors(model, out.join("model.safetensors"))?;
    scllm_models::save_pt(model, out.join("best_model.pt"))?;
    Ok(())
}
