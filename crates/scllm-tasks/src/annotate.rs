//! `annotate`: cell types of a query predicted by a base model with a saved adapter (any
//! family), `Unknown` below a confidence (a number, or `auto`: the threshold fine-tuning picked on
//! its validation cells and stored in the adapter), and conformal prediction sets (`--coverage`,
//! calibrated on the same validation cells).

use std::path::{Path, PathBuf};

use scllm_eval::class_scores::ScoreKind;
use scllm_eval::conformal::{query_uniforms, ConformalCalibrator};
use scllm_eval::novelty::UnknownBelow;
use scllm_eval::prediction_sets::write_prediction_sets;
use scllm_io::{AnnData, Column, Compression, Matrix, UnsValue, Values};
use scllm_models::peft::file::ValidationCalibration;
use scllm_models::{
    load_adapter, read_adapter_meta, sha256_file, with_folder, AdapterMeta, Device, ModelFolder,
    TokenModel,
};
use scllm_tokenize::PrepOptions;
use scllm_train::{predict, AnnotationData, PredictOptions, TrainConfig};
use serde_json::json;

use crate::bad;

/// One `scllm annotate` run.
#[derive(Clone, Debug)]
pub struct AnnotateJob {
    pub query: PathBuf,
    /// The base model folder the adapter was trained on.
    pub model: PathBuf,
    /// Adapter folder written by `finetune`.
    pub adapter: PathBuf,
    pub output: PathBuf,
    /// Geneformer: a folder with the model's dictionary pickles (default: the model folder).
    pub dictionaries: Option<PathBuf>,
    /// Label cells whose confidence is below this `Unknown` (`auto`: the adapter's validation
    /// threshold).
    pub unknown_below: Option<UnknownBelow>,
    /// Conformal prediction sets at this coverage, calibrated on the adapter's validation cells.
    pub coverage: Option<f64>,
    /// `obsm` key of the adapted model's cell embeddings (default: the family's key +
    /// `_adapted`).
    pub obsm_key: Option<String>,
    /// Longest cell in tokens (default: the family's fine-tuning length, as the adapter was
    /// trained).
    pub max_len: Option<usize>,
    /// Cells per forward pass (token families, default 64); CellPLM: cut each group into
    /// attention sets of at most this many cells (default: whole groups).
    pub batch_size: Option<usize>,
    /// CellPLM: the `obs` column whose groups are attention sets (default `batch` where the
    /// file has it; `none`: all cells one set).
    pub group_by: Option<String>,
    pub gene_col: Option<String>,
    pub seed: u64,
    pub progress: bool,
}

/// The base model of `model` with the adapter of `adapter` attached (its hash checked).
pub fn load_adapted<F: ModelFolder>(
    folder: &F,
    adapter: &Path,
) -> anyhow::Result<(F::Model, AdapterMeta)> {
    let meta = read_adapter_meta(adapter)?;
    let sha = sha256_file(folder.weights()?)?;
    let dev = Device::flex();
    let (base, _) = folder.load(meta.n_cls, false, &dev)?;
    Ok(load_adapter(base, adapter, &sha, &dev)?)
}

/// How query cells are tokenised and batched.
pub struct QueryOptions {
    pub max_len: usize,
    pub batch_size: usize,
    pub gene_col: Option<String>,
    pub seed: u64,
    pub progress: bool,
    /// Tokenize over these genes only: the adapter's training genes (`adapter.json` `genes`), so
    /// query cells see the gene set, and hence scGPT's per-cell bins, the model was trained on.
    pub only_genes: Option<Vec<String>>,
}

/// Per query cell: the predicted label, its probability and the adapted cell embedding.
pub struct Annotation {
    pub labels: Vec<String>,
    pub confidence: Vec<f32>,
    /// Softmax probabilities, row-major `[n, classes]`.
    pub probabilities: Vec<f32>,
    /// Row-major `[n, dim]`.
    pub embeddings: Vec<f32>,
    pub dim: usize,
    /// Genes the query cells were tokenized over.
    pub n_genes: usize,
}

/// Predict the cells of `adata` (tokenised as the family's fine-tuning does) with the adapted
/// model `m` of `folder`.
pub fn annotate_cells<F: ModelFolder>(
    folder: &F,
    m: &F::Model,
    classes: &[String],
    adata: &AnnData,
    file: &Path,
    q: &QueryOptions,
) -> anyhow::Result<Annotation> {
    let prep = PrepOptions {
        max_len: q.max_len,
        gene_col: q.gene_col.clone(),
        seed: q.seed,
        only_genes: q.only_genes.clone(),
        ..PrepOptions::default()
    };
    let p = folder.prepare_cells(adata, file, &prep)?;
    let mut po = PredictOptions::new(p.pad_id, p.pad_value);
    po.batch_size = q.batch_size;
    po.max_batch_tokens = q.batch_size * q.max_len;
    po.progress = q.progress;
    let pr = predict(m, &p.cells, &po, &Device::flex())?;
    Ok(Annotation {
        labels: pr
            .class_ids
            .iter()
            .map(|&c| classes[c as usize].clone())
            .collect(),
        confidence: pr.confidence,
        probabilities: pr.probabilities,
        embeddings: pr.embeddings,
        dim: pr.dim,
        n_genes: p.gene_match.n_matched,
    })
}

/// Run `job`: write `obs['predicted_cell_type']`, `obs['prediction_confidence']` and the adapted
/// embeddings to `job.output`. Returns the summary.
pub fn annotate(job: &AnnotateJob) -> anyhow::Result<serde_json::Value> {
    if let Some(UnknownBelow::Fixed(p)) = job.unknown_below {
        if !(0.0..=1.0).contains(&p) {
            return Err(bad(format!(
                "--unknown-below must be in [0, 1] or `auto`, got {p}"
            )));
        }
    }
    if let Some(c) = job.coverage {
        if !(c > 0.0 && c < 1.0) {
            return Err(bad(format!(
                "--coverage must be strictly between 0 and 1 (e.g. 0.9), got {c}"
            )));
        }
    }
    if scllm_models::folder::detect(&job.model)? == scllm_models::Family::CellPlm {
        return crate::cellplm_annotation::annotate_cellplm(job);
    }
    if job.batch_size == Some(0) {
        return Err(bad("--batch-size must be at least 1"));
    }
    if job.group_by.is_some() {
        return Err(bad(
            "--group-by applies to models whose cells attend to each other (CellPLM); this \
             model predicts each cell on its own",
        ));
    }
    let folder = crate::model_dir::open(&job.model, None, job.dictionaries.as_deref())?;
    with_folder!(&folder, |f| annotate_with(f, job))
}

fn annotate_with<F: ModelFolder>(
    folder: &F,
    job: &AnnotateJob,
) -> anyhow::Result<serde_json::Value> {
    let t0 = std::time::Instant::now();
    let (m, meta) = load_adapted(folder, &job.adapter)?;
    validation_needed(job, &meta)?;
    let adata = scllm_io::read_h5ad(&job.query)?;
    let ann = annotate_cells(
        folder,
        &m,
        &meta.labels,
        &adata,
        &job.query,
        &QueryOptions {
            max_len: job.max_len.unwrap_or_else(|| folder.finetune_max_len()),
            batch_size: job.batch_size.unwrap_or(64),
            gene_col: job.gene_col.clone(),
            seed: job.seed,
            progress: job.progress,
            only_genes: meta.genes.clone(),
        },
    )?;
    write_annotation(
        job,
        adata,
        &meta,
        ann,
        &AnnotatedBy {
            family: folder.family(),
            default_unknown_below: folder.default_unknown_below(),
            obsm_key: folder.embedding().obsm_key,
            uns: Vec::new(),
        },
        t0,
    )
}

/// The adapter's validation calibration where `--unknown-below auto` or `--coverage` needs it
/// (an error naming the fix when the adapter has none).
pub fn validation_needed<'a>(
    job: &AnnotateJob,
    meta: &'a AdapterMeta,
) -> anyhow::Result<Option<&'a ValidationCalibration>> {
    let needs_validation = job.unknown_below == Some(UnknownBelow::Auto) || job.coverage.is_some();
    match (&meta.validation, needs_validation) {
        (Some(v), _) => Ok(Some(v)),
        (None, false) => Ok(None),
        (None, true) => Err(bad(format!(
            "{}: this adapter has no validation calibration (field `validation` of {}; adapters written before scllm recorded it, or trained without validation cells), so --unknown-below auto / --coverage have nothing to read; give --unknown-below a number, or re-run `scllm finetune` to write one",
            job.adapter.display(),
            scllm_models::peft::ADAPTER_META
        ))),
    }
}

/// What [`write_annotation`] needs of the model family.
pub struct AnnotatedBy {
    pub family: scllm_models::Family,
    /// The family's own `Unknown` rule when no `--unknown-below` is given.
    pub default_unknown_below: Option<f64>,
    /// The family's embedding key (`_adapted` is appended).
    pub obsm_key: &'static str,
    /// More entries for `uns['scllm_annotate']`.
    pub uns: Vec<(String, UnsValue)>,
}

/// Label the cells of `ann` (`Unknown` below the threshold, conformal sets at `--coverage`) and
/// write `obs['predicted_cell_type']`, `obs['prediction_confidence']`, the adapted embeddings and
/// `uns['scllm_annotate']` into `job.output`. Returns the summary.
pub fn write_annotation(
    job: &AnnotateJob,
    mut adata: AnnData,
    meta: &AdapterMeta,
    ann: Annotation,
    by: &AnnotatedBy,
    t0: std::time::Instant,
) -> anyhow::Result<serde_json::Value> {
    let validation = validation_needed(job, meta)?;
    // no flag: the family's own rule where it has one (scBERT's predict.py: below 0.5)
    let threshold = match job.unknown_below {
        None => by.default_unknown_below,
        Some(UnknownBelow::Fixed(p)) => Some(p),
        Some(UnknownBelow::Auto) => validation.map(|v| v.unknown_below),
    };
    let n_genes = ann.n_genes;
    let sets = match (job.coverage, validation) {
        (Some(c), Some(v)) => Some(conformal_sets(
            &meta.labels,
            v,
            c,
            &ann.probabilities,
            job.seed,
        )?),
        _ => None,
    };
    let (mut labels, conf, emb, d) = (ann.labels, ann.confidence, ann.embeddings, ann.dim);
    let mut n_unknown = 0;
    if let Some(p) = threshold {
        for (l, &c) in labels.iter_mut().zip(&conf) {
            if (c as f64) < p {
                *l = "Unknown".into();
                n_unknown += 1;
            }
        }
    }
    let key = job
        .obsm_key
        .clone()
        .unwrap_or_else(|| format!("{}_adapted", by.obsm_key));
    let n = adata.n_obs();
    let opt: Vec<Option<String>> = labels.iter().cloned().map(Some).collect();
    adata
        .obs
        .set("predicted_cell_type", Column::categorical_from(&opt));
    adata
        .obs
        .set("prediction_confidence", Column::F32(conf.clone()));
    let mut uns: Vec<(String, UnsValue)> = vec![
        (
            "adapter".into(),
            UnsValue::Str(job.adapter.display().to_string()),
        ),
        (
            "strategy".into(),
            UnsValue::Str(meta.strategy.as_str().into()),
        ),
    ];
    if let Some(t) = threshold {
        uns.push(("unknown_below".into(), UnsValue::F64(t)));
        let rule = match (job.unknown_below, validation) {
            (Some(UnknownBelow::Auto), Some(v)) => {
                uns.push((
                    "unknown_below_quantile".into(),
                    UnsValue::F64(v.unknown_quantile),
                ));
                uns.push(("n_validation_cells".into(), UnsValue::I64(v.n_cells as i64)));
                format!("auto: {}", v.rule)
            }
            (None, _) => format!(
                "the {} family's default (its reference's prediction rule); --unknown-below 0 turns it off",
                by.family
            ),
            _ => "given by the user".to_string(),
        };
        uns.push(("unknown_below_rule".into(), UnsValue::Str(rule)));
    }
    let mut set_summary = serde_json::Value::Null;
    if let Some((cal, s)) = &sets {
        let (entries, summary) =
            write_prediction_sets(&mut adata.obs, cal, s, "the fine-tuning validation cells");
        uns.extend(entries);
        set_summary = serde_json::to_value(summary)?;
    }
    uns.extend(by.uns.iter().cloned());
    adata.set_uns("scllm_annotate", UnsValue::Dict(uns));
    adata.obsm.retain(|(k, _)| k != &key);
    adata.set_obsm(
        &key,
        Matrix::Dense {
            nrows: n,
            ncols: d,
            data: Values::F32(emb),
        },
    );
    scllm_io::write_h5ad(&adata, &job.output, Compression::None)?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in &labels {
        *counts.entry(l.clone()).or_default() += 1;
    }
    Ok(json!({
        "query": job.query.display().to_string(), "output": job.output.display().to_string(),
        "family": by.family,
        "cells": n, "strategy": meta.strategy.as_str(), "classes": meta.labels,
        "genes_used": n_genes,
        "unknown": n_unknown, "unknown_below": threshold, "predicted_counts": counts,
        "prediction_sets": set_summary,
        "mean_confidence": conf.iter().map(|&c| c as f64).sum::<f64>() / n.max(1) as f64,
        "obsm_key": key, "seconds": t0.elapsed().as_secs_f64(),
    }))
}

/// The conformal sets of cells with class probabilities `probs` (row-major `[n, classes]`) at
/// `coverage`, from the adapter's validation scores; the randomised APS draws from `seed`.
fn conformal_sets(
    classes: &[String],
    v: &ValidationCalibration,
    coverage: f64,
    probs: &[f32],
    seed: u64,
) -> anyhow::Result<(ConformalCalibrator, Vec<Vec<u32>>)> {
    let cal = ConformalCalibrator::from_true_scores(
        classes.to_vec(),
        ScoreKind::Probability,
        &v.class_scores,
        coverage,
    )
    .map_err(|e| bad(format!("adapter validation calibration: {e}")))?;
    let n = probs.len() / classes.len().max(1);
    let sets = cal.sets(probs, &query_uniforms(n, seed));
    Ok((cal, sets))
}

/// What the fine-tuning validation cells of `split` say about `model`'s confidence (stored in
/// the adapter): scllm-train's [`scllm_train::validation::validation_calibration`] with the
/// training run's evaluation batching.
pub fn calibrate_on_validation<M: TokenModel>(
    model: &M,
    data: &AnnotationData,
    split: &scllm_train::Split,
    tc: &TrainConfig,
) -> anyhow::Result<Option<ValidationCalibration>> {
    let mut po = PredictOptions::new(data.pad_id, data.pad_value);
    po.batch_size = tc.eval_batch_size.max(1);
    po.max_batch_tokens = tc.max_batch_tokens.max(po.batch_size);
    po.progress = false;
    Ok(scllm_train::validation::validation_calibration(
        model,
        data,
        split,
        &po,
        &Device::flex(),
        tc.seed,
    )?)
}
