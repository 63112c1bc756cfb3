//! `scllm integrate harmony`: Harmony ([`crate::harmony`]) on an embedding of a file, stored as
//! `obsm['X_pca_harmony']` (scanpy.external's `harmony_integrate` key). Without the input
//! embedding (`obsm['X_pca']` by default), a 50-component PCA of log1p(CP10k) of X is computed
//! first and stored too, so one command takes counts to an integrated embedding.

use std::path::PathBuf;
use std::time::Instant;

use scllm_eval::encode_labels;
use scllm_eval::umap::obsm_f32;
use scllm_eval::umap_file::pca_of_log;
use scllm_io::{read_h5ad, write_h5ad, Compression, Matrix, Values};
use serde::Serialize;

use crate::harmony::{harmony, HarmonyOptions};
use crate::{invalid, Result};

/// One `integrate harmony` run.
#[derive(Clone, Debug)]
pub struct HarmonyJob {
    pub file: PathBuf,
    pub output: PathBuf,
    /// obs column of the batch.
    pub batch: String,
    /// obsm key of the embedding to correct (`X_pca`).
    pub use_rep: String,
    /// obsm key of the result (`X_pca_harmony`).
    pub key_added: String,
    pub options: HarmonyOptions,
}

/// What `integrate harmony` did.
#[derive(Clone, Debug, Serialize)]
pub struct HarmonySummary {
    pub input: String,
    pub output: String,
    pub cells: usize,
    pub dims: usize,
    pub batches: Vec<String>,
    /// Where the input embedding came from (`obsm['X_pca']`, or the PCA computed here).
    pub representation: String,
    pub key_added: String,
    pub clusters: usize,
    pub iterations: usize,
    pub converged: bool,
    pub objective: Vec<f32>,
    pub seconds: f64,
}

fn dense(x: Vec<f32>, n: usize, d: usize) -> Matrix {
    Matrix::Dense {
        nrows: n,
        ncols: d,
        data: Values::F32(x),
    }
}

/// Runs `job`: reads, corrects, writes the input plus `obsm[key_added]` to `job.output`.
pub fn harmony_file(job: &HarmonyJob) -> Result<HarmonySummary> {
    let t0 = Instant::now();
    let src = job.file.display().to_string();
    let mut a = read_h5ad(&job.file)?;
    let col = a.obs_column(&job.batch).map_err(|_| {
        invalid(format!(
            "{src}: field `obs['{}']` (batch): no such column (obs columns: {}); pass --batch COL",
            job.batch,
            a.obs.column_names().join(", ")
        ))
    })?;
    let values = col.to_strings();
    let missing = values.iter().filter(|v| v.is_none()).count();
    if missing > 0 {
        return Err(invalid(format!(
            "{src}: field `obs['{}']` (batch): {missing} cells have no batch (NaN); fill or drop them",
            job.batch
        )));
    }
    let values: Vec<String> = values.into_iter().flatten().collect();
    let (names, codes) = encode_labels(&values);
    if names.len() < 2 {
        return Err(invalid(format!(
            "{src}: field `obs['{}']` (batch): one value only; Harmony needs at least two batches",
            job.batch
        )));
    }
    let (x, n, d, representation) = if a.obsm_get(&job.use_rep).is_some() || job.use_rep != "X_pca"
    {
        let (x, n, d) = obsm_f32(&a, &job.use_rep)?;
        (x, n, d, format!("obsm['{}']", job.use_rep))
    } else {
        let (x, n, d) = pca_of_log(&a, job.options.random_state as u64)?;
        a.set_obsm("X_pca", dense(x.clone(), n, d));
        (
            x,
            n,
            d,
            "PCA-50 of log1p(CP10k) of X (stored as obsm['X_pca'])".into(),
        )
    };
    let r = harmony(&x, n, d, &codes, names.len(), &job.options)?;
    a.obsm.retain(|(k, _)| k != &job.key_added);
    a.set_obsm(&job.key_added, dense(r.corrected, n, d));
    write_h5ad(&a, &job.output, Compression::None)?;
    Ok(HarmonySummary {
        input: src,
        output: job.output.display().to_string(),
        cells: n,
        dims: d,
        batches: names,
        representation,
        key_added: job.key_added.clone(),
        clusters: r.nclust,
        iterations: r.iterations,
        converged: r.converged,
        objective: r.objective,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
