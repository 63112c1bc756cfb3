//! `annotate`: cell types of a query predicted by a base model with a saved adapter (any
//! family), `Unknown` below a confidence.

use std::path::{Path, PathBuf};

use scllm_io::{AnnData, Column, Compression, Matrix, Values};
use scllm_models::{
    load_adapter, read_adapter_meta, sha256_file, with_folder, AdapterMeta, Device, ModelFolder,
};
use scllm_tokenize::PrepOptions;
use scllm_train::{predict, PredictOptions};
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
    /// Label cells whose confidence is below this `Unknown`.
    pub unknown_below: Option<f64>,
    /// `obsm` key of the adapted model's cell embeddings (default: the family's key +
    /// `_adapted`).
    pub obsm_key: Option<String>,
    /// Longest cell in tokens (default: the family's fine-tuning length, as the adapter was
    /// trained).
    pub max_len: Option<usize>,
    pub batch_size: usize,
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
        embeddings: pr.embeddings,
        dim: pr.dim,
        n_genes: p.gene_match.n_matched,
    })
}

/// Run `job`: write `obs['predicted_cell_type']`, `obs['prediction_confidence']` and the adapted
/// embeddings to `job.output`. Returns the summary.
pub fn annotate(job: &AnnotateJob) -> anyhow::Result<serde_json::Value> {
    if let Some(p) = job.unknown_below {
        if !(0.0..=1.0).contains(&p) {
            return Err(bad(format!("--unknown-below must be in [0, 1], got {p}")));
        }
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
    let mut adata = scllm_io::read_h5ad(&job.query)?;
    let ann = annotate_cells(
        folder,
        &m,
        &meta.labels,
        &adata,
        &job.query,
        &QueryOptions {
            max_len: job.max_len.unwrap_or_else(|| folder.finetune_max_len()),
            batch_size: job.batch_size,
            gene_col: job.gene_col.clone(),
            seed: job.seed,
            progress: job.progress,
            only_genes: meta.genes.clone(),
        },
    )?;
    let n_genes = ann.n_genes;
    let (mut labels, conf, emb, d) = (ann.labels, ann.confidence, ann.embeddings, ann.dim);
    let mut n_unknown = 0;
    if let Some(p) = job.unknown_below {
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
        .unwrap_or_else(|| format!("{}_adapted", folder.embedding().obsm_key));
    let n = adata.n_obs();
    let opt: Vec<Option<String>> = labels.iter().cloned().map(Some).collect();
    adata
        .obs
        .set("predicted_cell_type", Column::categorical_from(&opt));
    adata
        .obs
        .set("prediction_confidence", Column::F32(conf.clone()));
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
        "family": folder.family(),
        "cells": n, "strategy": meta.strategy.as_str(), "classes": meta.labels,
        "genes_used": n_genes,
        "unknown": n_unknown, "predicted_counts": counts,
        "mean_confidence": conf.iter().map(|&c| c as f64).sum::<f64>() / n.max(1) as f64,
        "obsm_key": key, "seconds": t0.elapsed().as_secs_f64(),
    }))
}
