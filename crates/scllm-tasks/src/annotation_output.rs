//! Writing an annotation (any family): `Unknown` below the threshold (the flag, `auto` from the
//! adapter's validation cells, or the family's own rule), conformal prediction sets at
//! `--coverage`, `obs['predicted_cell_type']`, `obs['prediction_confidence']`, the adapted
//! embeddings in `obsm` and `uns['scllm_annotate']`.

use scllm_eval::class_scores::ScoreKind;
use scllm_eval::conformal::{query_uniforms, ConformalCalibrator};
use scllm_eval::novelty::UnknownBelow;
use scllm_eval::prediction_sets::write_prediction_sets;
use scllm_io::{AnnData, Column, Compression, Matrix, UnsValue, Values};
use scllm_models::peft::file::ValidationCalibration;
use scllm_models::AdapterMeta;
use serde_json::json;

use crate::annotate_job::AnnotateJob;
use crate::bad;

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
    adata: &mut AnnData,
    write: bool,
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
        ("precision".into(), UnsValue::Str(job.precision.to_string())),
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
    if write {
        scllm_io::write_h5ad(adata, &job.output, Compression::None)?;
    }
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
        "precision": job.precision,
        "kernel": scllm_models::nn::precision::kernel(job.precision).ok(),
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
