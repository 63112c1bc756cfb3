//! CellPLM's annotation pipeline through `finetune` and `annotate` (docs/models/cellplm.md §5,
//! §7.6): the cells of each `obs` group attend to each other, so fine-tuning is transductive
//! (every labelled cell of the file in its set, only the training split in the loss) and a
//! query is predicted set by set. The adapter folder is the same as every family's
//! (`adapter.safetensors` + `adapter.json` with the classes, the genes read and the base
//! checkpoint's SHA-256).

use std::path::{Path, PathBuf};
use std::time::Instant;

use scllm_eval::novelty::UnknownBelow;
use scllm_io::AnnData;
use scllm_models::cellplm::prepare::{genes_read, prepare_cells, GeneSubset};
use scllm_models::cellplm::{CellPlm, CellPlmFolder, GroupBy, SetOptions, Sets};
use scllm_models::peft::{attach, load_adapter, strategy_of};
use scllm_models::{
    param_counts, read_adapter_meta, save_adapter, sha256_file, AdapterMeta, Device, PeftConfig,
    Strategy,
};
use scllm_train::transductive::predict_sets;
use scllm_train::validation::calibration_of;
use scllm_train::{
    train_sets, AnnotationData, LabelOptions, Prediction, SetTrainConfig, SetTrainData, SplitSpec,
};
use serde_json::json;

use crate::annotate_job::AnnotateJob;
use crate::annotation_output::{validation_needed, write_annotation, AnnotatedBy, Annotation};
use crate::bad;
use crate::cells::Cells;
use crate::learning_curves::learning_curves;
use crate::strategy_counts::{strategy_counts, StrategyCount};

/// One `scllm finetune` run on a CellPLM folder.
#[derive(Clone, Debug)]
pub struct CellPlmFinetuneJob {
    pub model: PathBuf,
    pub train: PathBuf,
    pub label: String,
    pub method: Strategy,
    pub peft: PeftConfig,
    pub output: PathBuf,
    pub split: SplitSpec,
    /// `obs` column of the attention sets (`None`: `batch` where the file has it; `none`: all
    /// cells one set).
    pub group_by: Option<String>,
    /// Cut each group into sets of at most this many cells (`None`: whole groups).
    pub set_size: Option<usize>,
    /// The pipeline's settings with the user's overrides (epochs, lr, seed, ...).
    pub train_config: SetTrainConfig,
    /// Genes: the `hvg` most variable of the file (the pipeline's 3000); 0: every gene of the
    /// model's list.
    pub hvg: usize,
    pub min_cells_per_class: Option<usize>,
}

/// The annotation pipeline's training settings (docs/models/cellplm.md §5) with the user's
/// overrides (`scllm finetune`, `scllm.tl.finetune` and the benchmark's methods).
pub fn set_train_config(
    epochs: Option<usize>,
    lr: Option<f64>,
    patience: Option<usize>,
    seed: u64,
    progress: bool,
) -> SetTrainConfig {
    let mut tc = SetTrainConfig::default();
    if let Some(e) = epochs {
        tc.epochs = e;
    }
    if let Some(l) = lr {
        tc.lr = l;
    }
    if let Some(p) = patience {
        tc.early_stop = p;
    }
    tc.seed = seed;
    tc.progress = progress;
    tc
}

/// The base config as `adapter.json` records it.
fn base_args(folder: &CellPlmFolder, m: &CellPlm) -> serde_json::Value {
    json!({
        "checkpoint": folder.ckpt_path.file_name().map(|f| f.to_string_lossy().to_string()),
        "enc_hid": m.d_model(), "enc_layers": m.layers.len(), "enc_head": m.heads(),
        "genes": m.n_genes(), "post_latent_dim": m.latent_dim(),
    })
}

/// The rows of `pr` at `rows`, as a prediction of those cells alone.
fn rows_of(pr: &Prediction, rows: &[usize]) -> Prediction {
    let (k, d) = (pr.n_classes, pr.dim);
    Prediction {
        class_ids: rows.iter().map(|&r| pr.class_ids[r]).collect(),
        confidence: rows.iter().map(|&r| pr.confidence[r]).collect(),
        embeddings: rows
            .iter()
            .flat_map(|&r| pr.embeddings[r * d..(r + 1) * d].iter().copied())
            .collect(),
        dim: d,
        probabilities: rows
            .iter()
            .flat_map(|&r| pr.probabilities[r * k..(r + 1) * k].iter().copied())
            .collect(),
        n_classes: k,
    }
}

/// A CellPLM model fine-tuned in memory: the best model, its adapter record (classes, genes
/// read, validation calibration) and the run's summary.
pub struct CellPlmTrained {
    pub model: CellPlm,
    pub meta: AdapterMeta,
    pub summary: serde_json::Value,
}

/// Fine-tune the CellPLM model of `job.model` on `job.train` and save the adapter in
/// `job.output`. Returns the summary.
/// The training cells are `job.train`'s, or the caller's ([`Cells::Memory`]).
pub fn finetune_cellplm(
    job: &CellPlmFinetuneJob,
    mut cells: Cells,
) -> anyhow::Result<serde_json::Value> {
    let t0 = Instant::now();
    let folder = CellPlmFolder::open(&job.model)?;
    std::fs::create_dir_all(&job.output)
        .map_err(|e| bad(format!("{}: cannot create: {e}", job.output.display())))?;
    let mut owned = None;
    let (adata, _) = cells.get(&job.train, &mut owned)?;
    let mut job = job.clone();
    job.train_config.out_dir = Some(job.output.clone());
    let t = train_cellplm(&folder, adata, &job)?;
    save_adapter(&t.model, &job.output, &t.meta)?;
    let pictures = learning_curves(
        &job.output,
        &format!("finetune {} on {}", job.method, job.train.display()),
    );
    let mut summary = t.summary;
    summary["adapter"] = json!(job.output.display().to_string());
    summary["seconds"] = json!(t0.elapsed().as_secs_f64());
    summary["pictures"] = json!(pictures);
    Ok(summary)
}

/// Fine-tune the model of `folder` on the labelled cells of `adata` as `job` says, in memory:
/// `job.train` names the cells in messages, `job.model` and `job.output` are not read
/// (`train_log.jsonl` goes to `job.train_config.out_dir` where set). The summary has no
/// `adapter`, `seconds` or `pictures`.
pub fn train_cellplm(
    folder: &CellPlmFolder,
    adata: &AnnData,
    job: &CellPlmFinetuneJob,
) -> anyhow::Result<CellPlmTrained> {
    let gene_list = &folder.config.gene_list;
    let mut lopts = LabelOptions::new(&job.label);
    lopts.min_cells_per_class = job.min_cells_per_class;
    let subset = if job.hvg == 0 {
        GeneSubset::All
    } else {
        GeneSubset::Hvg(job.hvg)
    };
    let data = AnnotationData::from_anndata(adata, &job.train, &lopts, |a| {
        prepare_cells(a, gene_list, &job.train, &subset)
    })?;
    let genes = genes_read(&data.gene_match, gene_list);
    let sp = data.split(&job.split)?;
    let sets = Sets::build(
        &data.obs,
        data.cells.len(),
        &SetOptions {
            group_by: GroupBy::from_flag(job.group_by.as_deref()),
            batch_size: job.set_size,
        },
        &job.train,
    )?;
    let tc = &job.train_config;
    if tc.progress {
        eprintln!(
            "{} labelled cells, {} classes; {}; {}; {}",
            data.cells.len(),
            data.n_classes(),
            data.steps,
            sp.description,
            sets.describe()
        );
        for w in &sp.warnings {
            eprintln!("warning: {w}");
        }
    }
    let dev = Device::flex();
    dev.seed(tc.seed);
    let (base, _) = folder.load_annotation(data.n_classes(), &dev)?;
    let m = attach(base, job.method, &job.peft, &dev)?;
    let m = scllm_models::burn::module::Module::train(m);
    let out = train_sets(
        m,
        &SetTrainData {
            cells: &data.cells,
            labels: &data.labels,
            n_classes: data.n_classes(),
            sets: &sets.sets,
            train: &sp.train,
            val: &sp.val,
        },
        tc,
        &dev.clone().autodiff(),
    )?;
    let best = out.best;
    // the validation cells' confidence, for `annotate --unknown-below auto` / `--coverage`
    let pr = predict_sets(&best, &data.cells, &sets.sets, false, &dev)?;
    let truth: Vec<u32> = sp.val.iter().map(|&i| data.labels[i]).collect();
    let validation = calibration_of(
        &data.classes,
        &rows_of(&pr, &sp.val),
        &truth,
        &sp.description,
        tc.seed,
    )?;
    let mut meta = AdapterMeta::for_model(
        &best,
        base_args(folder, &best),
        data.classes.clone(),
        Some(genes.clone()),
        sha256_file(&folder.ckpt_path)?,
    );
    meta.validation = Some(validation);
    let (trainable, total) = param_counts(&best);
    let best_log = out.history.iter().find(|h| h.epoch == out.best_epoch);
    let summary = json!({
        "family": "cellplm", "method": strategy_of(&best).as_str(),
        "split": sp.description, "train_cells": sp.train.len(), "val_cells": sp.val.len(),
        "classes": data.classes, "genes": genes.len(), "sets": sets.sets.len(),
        "best_epoch": out.best_epoch, "best_val_macro_f1": out.best_val_f1,
        "best_val_loss": best_log.map(|h| h.val_loss),
        "best_val_acc": best_log.map(|h| h.val_acc),
        "epochs_run": out.history.len(), "stopped_early": out.stopped_early,
        "trainable_params": trainable, "total_params": total,
        "validation_unknown_below": meta.validation.as_ref().map(|v| v.unknown_below),
        "data": data.summary(),
    });
    Ok(CellPlmTrained {
        model: best,
        meta,
        summary,
    })
}

/// The base CellPLM model of `model` with the adapter of `adapter` (its hash checked).
pub fn load_adapted(
    model: &Path,
    adapter: &Path,
) -> anyhow::Result<(CellPlm, AdapterMeta, CellPlmFolder)> {
    let folder = CellPlmFolder::open(model)?;
    let meta = read_adapter_meta(adapter)?;
    let dev = Device::flex();
    let (base, _) = folder.load_annotation(meta.n_cls.max(1), &dev)?;
    let (m, meta) = load_adapter(base, adapter, &sha256_file(&folder.ckpt_path)?, &dev)?;
    Ok((m, meta, folder))
}

/// A file's cells as a fine-tuned CellPLM predicts them.
pub struct CellPlmPredicted {
    /// Rows in input order; class ids index `meta.labels`.
    pub prediction: Prediction,
    pub sets: Sets,
    /// Genes of the file the model read.
    pub n_genes: usize,
}

impl CellPlmPredicted {
    /// Each cell's predicted class name.
    pub fn labels(&self, meta: &AdapterMeta) -> Vec<String> {
        self.prediction
            .class_ids
            .iter()
            .map(|&c| meta.labels[c as usize].clone())
            .collect()
    }
}

/// Predict the cells of `adata` (`file` names it in messages) with `m`, fine-tuned as `meta`
/// records: the cells over the genes it was fine-tuned on, set by set as `sets` says.
pub fn predict_cellplm(
    m: &CellPlm,
    meta: &AdapterMeta,
    gene_list: &[String],
    adata: &AnnData,
    file: &Path,
    sets: &SetOptions,
    progress: bool,
) -> anyhow::Result<CellPlmPredicted> {
    let fixed = meta.genes.clone().unwrap_or_default();
    let subset = if fixed.is_empty() {
        GeneSubset::All
    } else {
        GeneSubset::Fixed(&fixed)
    };
    let p = prepare_cells(adata, gene_list, file, &subset)?;
    let sets = Sets::build(&adata.obs, p.cells.len(), sets, file)?;
    if progress {
        eprintln!("{}; {}", p.gene_match.summary(), sets.describe());
    }
    let prediction = predict_sets(m, &p.cells, &sets.sets, progress, &Device::flex())?;
    Ok(CellPlmPredicted {
        prediction,
        sets,
        n_genes: p.gene_match.n_matched,
    })
}

/// `annotate` with a CellPLM base model: the query's cells over the genes the model was
/// fine-tuned on, predicted set by set.
pub fn annotate_cellplm(job: &AnnotateJob, mut cells: Cells) -> anyhow::Result<serde_json::Value> {
    let unsupported = [
        (job.max_len.is_some(), "--max-len"),
        (job.gene_col.is_some(), "--gene-col"),
        (job.dictionaries.is_some(), "--dictionaries"),
    ];
    crate::error::refuse_flags(&unsupported, |flag| {
        format!(
            "{flag} is not supported for CellPLM models (cells are the tokens, matched by \
             var.index)"
        )
    })?;
    if let Some(UnknownBelow::Fixed(p)) = job.unknown_below {
        if !(0.0..=1.0).contains(&p) {
            return Err(bad(format!(
                "--unknown-below must be in [0, 1] or `auto`, got {p}"
            )));
        }
    }
    let t0 = Instant::now();
    let ((m, meta, gene_list), reused) = crate::model_cache::get_or_load(
        job.keep_model,
        || job.load_key(),
        || {
            let (mut m, meta, folder) = load_adapted(&job.model, &job.adapter)?;
            scllm_models::CellModel::set_precision(&mut m, job.precision);
            Ok((m, meta, folder.config.gene_list))
        },
    )?;
    validation_needed(job, &meta)?;
    let mut owned = None;
    let (adata, write) = cells.get(&job.query, &mut owned)?;
    let p = predict_cellplm(
        &m,
        &meta,
        &gene_list,
        adata,
        &job.query,
        &SetOptions {
            group_by: GroupBy::from_flag(job.group_by.as_deref()),
            batch_size: job.batch_size,
        },
        job.progress,
    )?;
    let labels = p.labels(&meta);
    let (pr, sets) = (p.prediction, p.sets);
    let ann = Annotation {
        labels,
        confidence: pr.confidence,
        probabilities: pr.probabilities,
        embeddings: pr.embeddings,
        dim: pr.dim,
        n_genes: p.n_genes,
    };
    let mut summary = write_annotation(
        job,
        adata,
        write,
        &meta,
        ann,
        &AnnotatedBy {
            family: scllm_models::Family::CellPlm,
            default_unknown_below: None,
            obsm_key: scllm_models::cellplm::OBSM_KEY,
            uns: vec![("cellplm_sets".into(), sets.to_uns())],
        },
        t0,
    )?;
    summary["model_reused"] = reused.into();
    Ok(summary)
}

/// Parameter counts of every strategy CellPLM hosts, on the folder's shape with an `n_cls`-class
/// head (the weights are not read).
pub fn dry_run_cellplm(
    dir: &Path,
    n_cls: usize,
    peft: &PeftConfig,
) -> anyhow::Result<(String, Vec<StrategyCount>)> {
    let folder = CellPlmFolder::open(dir)?;
    let dev = Device::flex();
    let base = folder.build_annotation(n_cls, &dev)?;
    let describe = format!(
        "CellPLM, {} layers, width {}, {} genes",
        base.layers.len(),
        base.d_model(),
        base.n_genes()
    );
    let rows = strategy_counts(&base, scllm_models::Family::CellPlm, peft, &dev)?;
    Ok((describe, rows))
}
