//! `finetune`: adapt a model of any family to labelled cells with one of six strategies, and
//! save the adapter apart from the never-modified base; parameter counts per strategy.

use std::path::{Path, PathBuf};

use scllm_io::AnnData;
use scllm_models::peft::{attach, strategy_of};
use scllm_models::{
    param_counts, save_adapter, sha256_file, with_folder, AdapterMeta, Device, Family, ModelFolder,
    PeftConfig, Strategy,
};
use scllm_tokenize::PrepOptions;
use scllm_train::{train, AnnotationData, LabelOptions, SplitSpec, TrainConfig, TrainData};
use serde_json::json;

use crate::bad;
use crate::cells::Cells;
use crate::learning_curves::learning_curves;
use crate::strategy_counts::strategy_counts;
pub use crate::strategy_counts::StrategyCount;

/// One `scllm finetune` run.
#[derive(Clone, Debug)]
pub struct FinetuneJob {
    /// The base model folder (any family); never modified.
    pub model: PathBuf,
    /// Geneformer: a folder with the model's dictionary pickles (default: the model folder).
    pub dictionaries: Option<PathBuf>,
    /// Labelled reference `.h5ad`.
    pub train: PathBuf,
    /// `obs` column with the cell types.
    pub label: String,
    pub method: Strategy,
    /// Adapter options (see [`peft_config`]).
    pub peft: PeftConfig,
    /// Output folder for the adapter, `train_log.jsonl`, the learning curves and the checkpoint.
    pub output: PathBuf,
    pub split: SplitSpec,
    /// Training options (see [`train_config`]).
    pub train_config: TrainConfig,
    /// Longest cell in tokens, special tokens included (default: the family's: scGPT 2001 as
    /// scPEFT, Geneformer its model input size).
    pub max_len: Option<usize>,
    /// Leave out classes with fewer cells (otherwise a class with one cell is an error).
    pub min_cells_per_class: Option<usize>,
    /// `var` column naming genes (default: the index).
    pub gene_col: Option<String>,
}

/// The adapter options of a strategy from the command line's knobs (`None`: the reference's).
/// `layers` go to the strategy that has layers (encoder-prompt, lora, prefix).
pub fn peft_config(
    method: Strategy,
    adapter_ratio: Option<f64>,
    lora_r: Option<usize>,
    lora_alpha: Option<f64>,
    prefix_tokens: Option<usize>,
    layers: Option<Vec<usize>>,
    freeze_layers: Option<usize>,
) -> PeftConfig {
    let mut p = PeftConfig::default();
    if let Some(r) = adapter_ratio {
        p.adapter_mlp_ratio = r;
    }
    if let Some(r) = lora_r {
        p.lora_r = r;
    }
    if let Some(x) = lora_alpha {
        p.lora_alpha = x;
    }
    if let Some(n) = prefix_tokens {
        p.prefix_tokens = n;
    }
    if let Some(k) = freeze_layers {
        p.freeze_layers = k;
    }
    if let Some(l) = layers {
        match method {
            Strategy::EncoderPrompt => p.encoder_prompt_layers = Some(l),
            Strategy::Lora => p.lora_layers = Some(l),
            Strategy::Prefix => p.prefix_layers = Some(l),
            _ => {}
        }
    }
    p
}

/// The training settings of a strategy on a family (the references' defaults), with the user's
/// overrides. scGPT: `full` and `head` as `Tutorial_Annotation` (Adam lr 1e-4, batch 32, 10
/// epochs, StepLR 0.9), the adapters as scPEFT v2 (lr 5e-5, batch 50, 20 epochs, patience 15,
/// class-weighted loss, class-balanced sampler). Geneformer: its `Classifier` defaults for every
/// strategy (AdamW lr 5e-5, weight decay 0.001, batch 12, 10 epochs, linear decay; 500 warm-up
/// steps for 6-layer models; docs/models/geneformer.md §6). scBERT: its `finetune.py` for every
/// strategy (Adam lr 1e-4, batch 3, 100 epochs, cosine warm-up restarts per epoch, patience 10;
/// docs/models/scbert.md §3.3).
#[allow(clippy::too_many_arguments)]
pub fn train_config(
    family: Family,
    n_layers: usize,
    method: Strategy,
    epochs: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
    patience: Option<usize>,
    max_len: usize,
    seed: u64,
) -> TrainConfig {
    let mut c = match family {
        Family::ScGpt if method.freezes_backbone() && method != Strategy::Head => {
            TrainConfig::scpeft()
        }
        Family::ScGpt => TrainConfig::default(),
        Family::Geneformer => TrainConfig::geneformer(n_layers),
        Family::ScBert => TrainConfig::scbert(),
        // CellPLM trains set-wise with its own settings (`scllm_train::SetTrainConfig`)
        Family::CellPlm => TrainConfig::default(),
    };
    if let Some(e) = epochs {
        c.epochs = e;
    }
    if let Some(l) = lr {
        c.lr = l;
    }
    if let Some(b) = batch_size {
        c.batch_size = b;
        c.eval_batch_size = b;
    }
    if patience.is_some() {
        c.patience = patience;
    }
    c.max_batch_tokens = c.batch_size * max_len;
    c.seed = seed;
    c
}

/// A fine-tuned model with what it was trained on.
pub struct Finetuned<M> {
    pub model: M,
    pub meta: AdapterMeta,
    pub data: AnnotationData,
    /// Split, classes, best epoch, losses, parameter counts (`--json`).
    pub summary: serde_json::Value,
}

/// How [`finetune_on`] reads and trains.
pub struct FinetuneSpec<'a> {
    pub label: &'a str,
    pub method: Strategy,
    pub peft: &'a PeftConfig,
    pub split: &'a SplitSpec,
    pub train: &'a TrainConfig,
    pub prep: &'a PrepOptions,
    pub min_cells_per_class: Option<usize>,
}

/// Fine-tune the model of `folder` on `adata`'s labelled cells (`file` names it in messages).
pub fn finetune_on<F: ModelFolder>(
    folder: &F,
    adata: &AnnData,
    file: &Path,
    spec: &FinetuneSpec,
) -> anyhow::Result<Finetuned<F::Model>> {
    let mut lopts = LabelOptions::new(spec.label);
    lopts.min_cells_per_class = spec.min_cells_per_class;
    let data = AnnotationData::from_anndata(adata, file, &lopts, |a| {
        folder.prepare_cells(a, file, spec.prep)
    })?;
    let sp = data.split(spec.split)?;
    let sha = sha256_file(folder.weights()?)?;
    let dev = Device::flex();
    dev.seed(spec.train.seed);
    let (base, _) = folder.load(data.n_classes(), false, &dev)?;
    let m = attach(base, spec.method, spec.peft, &dev)?;
    let m = scllm_models::burn::module::Module::train(m);
    let td = TrainData::new(&data, &sp);
    let out = train(m, &td, spec.train, &dev.clone().autodiff())?;
    let best = out.best;
    let genes: Vec<String> = data
        .gene_match
        .ids
        .iter()
        .filter_map(|i| i.and_then(|i| folder.token(i)))
        .collect();
    let mut meta = AdapterMeta::for_model(
        &best,
        folder.base_args(),
        data.classes.clone(),
        Some(genes),
        sha,
    );
    // the validation cells' confidence, for `annotate --unknown-below auto` / `--coverage`
    meta.validation = crate::annotate::calibrate_on_validation(&best, &data, &sp, spec.train)?;
    let (trainable, total) = param_counts(&best);
    let summary = json!({
        "family": folder.family(),
        "split": sp.description, "train_cells": sp.train.len(), "val_cells": sp.val.len(),
        "classes": data.classes, "best_epoch": out.best_epoch, "best_val_loss": out.best_val_loss,
        "best_val_acc": out.history.iter().find(|h| h.epoch == out.best_epoch).map(|h| h.val_acc),
        "epochs_run": out.history.len(), "stopped_early": out.stopped_early,
        "interrupted": out.interrupted, "resumed_from": out.resumed_from,
        "trainable_params": trainable, "total_params": total,
        "validation_unknown_below": meta.validation.as_ref().map(|v| v.unknown_below),
        "data": data.summary(),
    });
    Ok(Finetuned {
        model: best,
        meta,
        data,
        summary,
    })
}

/// Run `job`: fine-tune, save the adapter (`adapter.safetensors` + `adapter.json`) and the
/// learning curves in `job.output`. Returns the summary.
/// The training cells are `job.train`'s, or the caller's ([`Cells::Memory`]).
pub fn finetune(job: &FinetuneJob, cells: Cells) -> anyhow::Result<serde_json::Value> {
    let folder = crate::model_dir::open(&job.model, None, job.dictionaries.as_deref())?;
    with_folder!(&folder, |f| finetune_with(f, job, cells))
}

fn finetune_with<F: ModelFolder>(
    folder: &F,
    job: &FinetuneJob,
    mut cells: Cells,
) -> anyhow::Result<serde_json::Value> {
    std::fs::create_dir_all(&job.output)
        .map_err(|e| bad(format!("{}: cannot create: {e}", job.output.display())))?;
    let t0 = std::time::Instant::now();
    let mut owned = None;
    let (adata, _) = cells.get(&job.train, &mut owned)?;
    let prep = PrepOptions {
        max_len: job.max_len.unwrap_or_else(|| folder.finetune_max_len()),
        gene_col: job.gene_col.clone(),
        seed: job.train_config.seed,
        ..PrepOptions::default()
    };
    let ft = finetune_on(
        folder,
        adata,
        &job.train,
        &FinetuneSpec {
            label: &job.label,
            method: job.method,
            peft: &job.peft,
            split: &job.split,
            train: &job.train_config,
            prep: &prep,
            min_cells_per_class: job.min_cells_per_class,
        },
    )?;
    save_adapter(&ft.model, &job.output, &ft.meta)?;
    let pictures = learning_curves(
        &job.output,
        &format!("finetune {} on {}", job.method, job.train.display()),
    );
    let mut s = ft.summary;
    s["method"] = json!(strategy_of(&ft.model).as_str());
    s["adapter"] = json!(job.output.display().to_string());
    s["seconds"] = json!(t0.elapsed().as_secs_f64());
    s["pictures"] = json!(pictures);
    Ok(s)
}

/// Parameter counts of every strategy on the model of `dir` with an `n_cls`-class head, from
/// the folder's configuration and vocabulary alone (the weights are not read).
pub fn dry_run(
    dir: &Path,
    opts: &scllm_models::FolderOptions,
    n_cls: usize,
    peft: &PeftConfig,
) -> anyhow::Result<(String, Vec<StrategyCount>)> {
    if scllm_models::folder::detect(dir)? == Family::CellPlm {
        return crate::cellplm_annotation::dry_run_cellplm(dir, n_cls, peft);
    }
    let folder = scllm_models::open_folder(dir, opts)?;
    with_folder!(&folder, |f| {
        let dev = Device::flex();
        let base = f.build(n_cls, &dev)?;
        let rows = strategy_counts(&base, f.family(), peft, &dev)?;
        Ok((f.describe(), rows))
    })
}
