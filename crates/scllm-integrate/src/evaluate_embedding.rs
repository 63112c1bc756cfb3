//! `scllm evaluate-embedding`: the scIB metrics of one or more `obsm` embeddings of a file, side
//! by side, as scib-metrics' `Benchmarker` would report them for the same cells (see
//! [`crate::scib`]). The unintegrated embedding for the PCR comparison is `--pre-rep`, or as the
//! Benchmarker computes it: a 50-component PCA of X as stored (centred, not scaled).

use std::path::PathBuf;
use std::time::Instant;

use scllm_eval::encode_labels;
use scllm_eval::linalg::Pca;
use scllm_eval::plot::{file_stem, plot_embedding, ScatterOptions};
use scllm_eval::progress::bar;
use scllm_eval::umap::{obsm_f32, umap, UmapOptions};
use scllm_io::{read_h5ad, AnnData};
use serde::Serialize;

use crate::pcr::pcr;
use crate::scib::{
    plot_scib_table, score_embedding, steps, EmbeddingScores, Groups, ScibOptions, NEIGHBORS,
};
use crate::{invalid, Result};

/// One `evaluate-embedding` run.
#[derive(Clone, Debug)]
pub struct EvaluateEmbeddingJob {
    pub file: PathBuf,
    /// obsm keys of the embeddings to score.
    pub use_rep: Vec<String>,
    pub label: String,
    pub batch: String,
    /// obsm key of the unintegrated embedding (default: PCA-50 of X).
    pub pre_rep: Option<String>,
    pub options: ScibOptions,
    /// Folder for the pictures: the results table (`scib_results.{png,svg}`) and, per
    /// embedding, UMAPs coloured by label and by batch (`umap_KEY_label.png`, ...).
    pub plots: Option<PathBuf>,
}

/// One embedding's scores.
#[derive(Clone, Debug, Serialize)]
pub struct EmbeddingReport {
    pub key: String,
    pub dims: usize,
    pub seconds: f64,
    /// Wall time of each step (neighbours and silhouettes, k-means, kBET, ...).
    pub step_seconds: Vec<(String, f64)>,
    #[serde(flatten)]
    pub scores: EmbeddingScores,
}

/// What `evaluate-embedding` found.
#[derive(Clone, Debug, Serialize)]
pub struct EvaluateEmbeddingReport {
    pub file: String,
    pub cells: usize,
    pub label: String,
    pub labels: Vec<String>,
    pub batch: String,
    pub batches: Vec<String>,
    /// What the PCR comparison took as unintegrated.
    pub pre_rep: String,
    /// The batch's share of variance in it.
    pub pre_pcr: f64,
    pub embeddings: Vec<EmbeddingReport>,
    /// Pictures written.
    pub plots: Vec<String>,
}

/// A categorical obs column as codes over its sorted values; missing values are refused.
fn groups_of(a: &AnnData, col: &str, what: &str, src: &str) -> Result<(Vec<u32>, Vec<String>)> {
    let c = a.obs_column(col).map_err(|_| {
        invalid(format!(
            "{src}: field `obs['{col}']` ({what}): no such column (obs columns: {}); pass --{what} COL",
            a.obs.column_names().join(", ")
        ))
    })?;
    let v = c.to_strings();
    let missing = v.iter().filter(|s| s.is_none()).count();
    if missing > 0 {
        return Err(invalid(format!(
            "{src}: field `obs['{col}']` ({what}): {missing} of {} cells have no value (NaN); \
             drop or fill them before scoring",
            v.len()
        )));
    }
    let v: Vec<String> = v.into_iter().flatten().collect();
    let (names, codes) = encode_labels(&v);
    Ok((codes, names))
}

/// The unintegrated embedding: `obsm[pre]`, or PCA-50 of X (centred, unscaled; randomized with
/// 60 power iterations: on the fixture its PCR is then within 6e-6 (relative) of scanpy's
/// ARPACK PCA, where 20 iterations left 1.3e-3).
fn pre_embedding(
    a: &AnnData,
    pre: Option<&str>,
    seed: u64,
    src: &str,
) -> Result<(Vec<f32>, usize, String)> {
    if let Some(k) = pre {
        let (x, _, d) = obsm_f32(a, k)?;
        return Ok((x, d, format!("obsm['{k}']")));
    }
    let x = a
        .x()
        .map_err(|_| invalid(format!("{src}: field `X`: missing; pass --pre-rep KEY")))?;
    let x = scllm_pp::to_csr_f32(x);
    if x.data.to_f32().iter().any(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "{src}: field `X`: contains NaN or infinite values; pass --pre-rep KEY"
        )));
    }
    let pca = Pca::fit(&x, 50, 60, seed);
    Ok((pca.transform(&x), pca.n_comps, "PCA-50 of X".into()))
}

/// Scores every embedding of the job.
pub fn evaluate_embedding(job: &EvaluateEmbeddingJob) -> Result<EvaluateEmbeddingReport> {
    let src = job.file.display().to_string();
    if job.use_rep.is_empty() {
        return Err(invalid(
            "no embedding to score: pass --use-rep KEY (one or more)",
        ));
    }
    let a = read_h5ad(&job.file)?;
    let n = a.n_obs();
    let (labels, label_names) = groups_of(&a, &job.label, "label", &src)?;
    let (batch, batch_names) = groups_of(&a, &job.batch, "batch", &src)?;
    if batch_names.len() < 2 {
        return Err(invalid(format!(
            "{src}: field `obs['{}']` (batch): one value only ({}); batch correction needs at least two batches",
            job.batch,
            batch_names.first().map(String::as_str).unwrap_or("")
        )));
    }
    if label_names.len() < 2 {
        return Err(invalid(format!(
            "{src}: field `obs['{}']` (label): one value only; bio conservation needs at least two labels",
            job.label
        )));
    }
    let need = NEIGHBORS[2];
    if n < need {
        return Err(invalid(format!(
            "{src}: {n} cells, fewer than the {need} neighbours LISI uses; score at least {need} cells"
        )));
    }
    // every key checked before the work starts
    let mut embs = Vec::new();
    for k in &job.use_rep {
        let (x, rows, d) = obsm_f32(&a, k)?;
        if rows != n {
            return Err(invalid(format!(
                "{src}: field `obsm['{k}']`: {rows} rows for {n} cells"
            )));
        }
        embs.push((k.clone(), x, d));
    }
    let (pre, pre_d, pre_rep) = pre_embedding(&a, job.pre_rep.as_deref(), job.options.seed, &src)?;
    let groups = Groups {
        labels,
        n_labels: label_names.len(),
        batch,
        n_batches: batch_names.len(),
    };
    let pre_pcr = pcr(&pre, n, pre_d, &groups.batch, groups.n_batches);
    if let Some(dir) = &job.plots {
        std::fs::create_dir_all(dir).map_err(|e| {
            invalid(format!(
                "{}: cannot create the plots folder: {e}",
                dir.display()
            ))
        })?;
    }
    let mut reports = Vec::new();
    let mut plots = Vec::new();
    let label_values: Vec<&str> = groups
        .labels
        .iter()
        .map(|&c| label_names[c as usize].as_str())
        .collect();
    let batch_values: Vec<&str> = groups
        .batch
        .iter()
        .map(|&c| batch_names[c as usize].as_str())
        .collect();
    for (key, x, d) in embs {
        let t = Instant::now();
        let pb = bar(steps(&job.options) as u64, &key, job.options.progress);
        let marks: std::cell::RefCell<Vec<(&'static str, Instant)>> = Default::default();
        let scores = score_embedding(&x, n, d, &groups, pre_pcr, &job.options, &|s| {
            marks.borrow_mut().push((s, Instant::now()));
            pb.set_message(format!("{key}: {s}"));
            pb.inc(1);
        })?;
        let end = Instant::now();
        let marks = marks.into_inner();
        let step_seconds = marks
            .iter()
            .enumerate()
            .map(|(i, (name, t))| {
                let next = marks.get(i + 1).map_or(end, |m| m.1);
                (name.to_string(), (next - *t).as_secs_f64())
            })
            .collect();
        pb.finish_and_clear();
        if let Some(dir) = &job.plots {
            let layout = umap(
                &x,
                n,
                d,
                &UmapOptions {
                    seed: job.options.seed,
                    progress: job.options.progress,
                    ..Default::default()
                },
            )?;
            let stem = file_stem(&key);
            for (what, values, col) in [
                ("label", &label_values, &job.label),
                ("batch", &batch_values, &job.batch),
            ] {
                for ext in ["png", "svg"] {
                    let p = dir.join(format!("umap_{stem}_{what}.{ext}"));
                    let title = format!("UMAP of obsm['{key}'] by {col}");
                    plot_embedding(&p, &layout, values, &title, &ScatterOptions::default())?;
                    plots.push(p.display().to_string());
                }
            }
        }
        reports.push(EmbeddingReport {
            key,
            dims: d,
            seconds: t.elapsed().as_secs_f64(),
            step_seconds,
            scores,
        });
    }
    if let Some(dir) = &job.plots {
        let name = job
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rows: Vec<(&str, &EmbeddingScores)> = reports
            .iter()
            .map(|r| (r.key.as_str(), &r.scores))
            .collect();
        let written = plot_scib_table(dir, &format!("scIB metrics — {name}"), &rows)?;
        plots.extend(written.iter().map(|p| p.display().to_string()));
    }
    Ok(EvaluateEmbeddingReport {
        file: src,
        cells: n,
        label: job.label.clone(),
        labels: label_names,
        batch: job.batch.clone(),
        batches: batch_names,
        pre_rep,
        pre_pcr,
        embeddings: reports,
        plots,
    })
}
