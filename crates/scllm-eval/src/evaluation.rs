//! The file-level work behind `scllm evaluate`: read the truth, prediction, cluster and
//! embedding of an AnnData and compute every metric asked for ([`evaluate`]); the command's job
//! ([`evaluate_file`]) adds reading the file and drawing the pictures. Printing and argument
//! parsing live in the `scllm` command.

use std::path::{Path, PathBuf};

use scllm_io::{read_h5ad, AnnData};
use serde::Serialize;

use crate::anndata_input::{name, names_of};
use crate::baselines::UNKNOWN;
use crate::metrics::{
    adjusted_rand_score, classification_report, normalized_mutual_info_score, silhouette_score,
    ClassificationReport, Distance,
};
use crate::plot::{
    plot_confusion_report, plot_embedding, plot_embedding_pair, plot_per_class_f1_report,
    ScatterOptions,
};
use crate::umap::{obsm_f32, umap, UmapOptions};
use crate::{invalid, Result, Rng};

#[derive(Clone, Debug)]
pub struct EvaluateOptions {
    pub truth: String,
    pub pred: Option<String>,
    /// obsm key of an embedding to compute silhouette scores on (labels: `truth`).
    pub embedding: Option<String>,
    pub distances: Vec<Distance>,
    /// obs column of a clustering to compare with `truth` (ARI, NMI).
    pub cluster: Option<String>,
    /// Silhouette is O(n²): above this many labeled cells, a seeded random subset is used.
    pub silhouette_max_cells: usize,
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SilhouetteResult {
    pub embedding: String,
    pub metric: Distance,
    pub score: f64,
    pub n_cells: usize,
    /// True when a random subset of `n_cells` cells was scored.
    pub subsampled: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvaluationReport {
    pub file: String,
    pub truth: String,
    pub n_cells: usize,
    /// Cells with a truth label; the others (NaN) are left out of every metric.
    pub n_scored: usize,
    pub n_unlabeled_skipped: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pred: Option<String>,
    /// Scored cells whose prediction is missing (NaN); they count as the label `nan`.
    pub n_missing_pred: usize,
    /// Scored cells predicted `Unknown`, and accuracy on the others.
    pub n_unknown: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_on_accepted: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<ClassificationReport>,
    pub silhouette: Vec<SilhouetteResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ari: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nmi: Option<f64>,
}

/// All metrics `opts` asks for, on the cells of `a` that have a truth label.
pub fn evaluate(a: &AnnData, opts: &EvaluateOptions) -> Result<EvaluationReport> {
    let src = name(a);
    if opts.pred.is_none() && opts.embedding.is_none() && opts.cluster.is_none() {
        return Err(invalid(format!(
            "{src}: nothing to evaluate: give --pred COLUMN (classification), --embedding OBSM_KEY (silhouette) and/or --cluster COLUMN (ARI/NMI)"
        )));
    }
    let truth_all = a.obs_column(&opts.truth)?.to_strings();
    let pred_all = match &opts.pred {
        Some(p) => Some(a.obs_column(p)?.to_strings()),
        None => None,
    };
    let cl_all = match &opts.cluster {
        Some(c) => Some(a.obs_column(c)?.to_strings()),
        None => None,
    };
    let idx: Vec<usize> = (0..truth_all.len())
        .filter(|&i| truth_all[i].is_some())
        .collect();
    if idx.is_empty() {
        return Err(invalid(format!(
            "{src}: field `obs['{}']`: every value is missing (NaN); choose the column holding the true labels",
            opts.truth
        )));
    }
    let truth: Vec<&str> = idx
        .iter()
        .map(|&i| truth_all[i].as_deref().unwrap())
        .collect();
    let mut rep = EvaluationReport {
        file: src.clone(),
        truth: opts.truth.clone(),
        n_cells: a.n_obs(),
        n_scored: idx.len(),
        n_unlabeled_skipped: a.n_obs() - idx.len(),
        pred: opts.pred.clone(),
        n_missing_pred: 0,
        n_unknown: 0,
        accuracy_on_accepted: None,
        classification: None,
        silhouette: vec![],
        cluster: opts.cluster.clone(),
        ari: None,
        nmi: None,
    };
    if let Some(pa) = &pred_all {
        let pred: Vec<&str> = idx
            .iter()
            .map(|&i| pa[i].as_deref().unwrap_or("nan"))
            .collect();
        rep.n_missing_pred = idx.iter().filter(|&&i| pa[i].is_none()).count();
        rep.n_unknown = pred.iter().filter(|p| **p == UNKNOWN).count();
        let acc: Vec<usize> = (0..pred.len()).filter(|&k| pred[k] != UNKNOWN).collect();
        if rep.n_unknown > 0 && !acc.is_empty() {
            rep.accuracy_on_accepted = Some(
                acc.iter().filter(|&&k| pred[k] == truth[k]).count() as f64 / acc.len() as f64,
            );
        }
        rep.classification = Some(classification_report(&truth, &pred)?);
    }
    if let Some(ca) = &cl_all {
        let cl: Vec<&str> = idx
            .iter()
            .map(|&i| ca[i].as_deref().unwrap_or("nan"))
            .collect();
        rep.ari = Some(adjusted_rand_score(&truth, &cl)?);
        rep.nmi = Some(normalized_mutual_info_score(&truth, &cl)?);
    }
    if let Some(key) = &opts.embedding {
        let m = a.obsm_get(key).ok_or_else(|| {
            invalid(format!(
                "{src}: field `obsm['{key}']`: no such embedding (obsm keys: {}); pass an existing --embedding",
                names_of(&a.obsm)
            ))
        })?;
        let (n, d) = m.shape();
        if n != a.n_obs() {
            return Err(invalid(format!(
                "{src}: field `obsm['{key}']`: has {n} rows for {} cells",
                a.n_obs()
            )));
        }
        let mut sel = idx.clone();
        let subsampled = sel.len() > opts.silhouette_max_cells;
        if subsampled {
            let mut rng = Rng::new(opts.seed);
            rng.shuffle(&mut sel);
            sel.truncate(opts.silhouette_max_cells);
            sel.sort_unstable();
        }
        let dense = m.select_rows(&sel).to_dense_f64();
        if dense.iter().any(|v| !v.is_finite()) {
            return Err(invalid(format!(
                "{src}: field `obsm['{key}']`: contains NaN or infinite values"
            )));
        }
        let labels: Vec<&str> = sel
            .iter()
            .map(|&i| truth_all[i].as_deref().unwrap())
            .collect();
        for &metric in &opts.distances {
            let s = silhouette_score(&dense, d, &labels, metric).map_err(|e| {
                invalid(format!(
                    "{src}: obsm['{key}'] with obs['{}']: {e}",
                    opts.truth
                ))
            })?;
            rep.silhouette.push(SilhouetteResult {
                embedding: key.clone(),
                metric,
                score: s,
                n_cells: sel.len(),
                subsampled,
            });
        }
    }
    Ok(rep)
}

/// One `scllm evaluate` run: a file, the metrics asked for, and optionally pictures.
#[derive(Clone, Debug)]
pub struct EvaluateJob {
    /// An `.h5ad` holding the truth column (and predictions / embedding / clustering).
    pub file: PathBuf,
    pub options: EvaluateOptions,
    /// Write confusion.{png,svg} and per_class_f1.{png,svg} (with a prediction) and
    /// umap.{png,svg} (with an embedding) into this folder.
    pub plots: Option<PathBuf>,
    /// Progress bar of the pictures' UMAP.
    pub progress: bool,
}

/// What `scllm evaluate` reports: the metrics, and the pictures when asked for.
#[derive(Clone, Debug, Serialize)]
pub struct EvaluateOutcome {
    #[serde(flatten)]
    pub report: EvaluationReport,
    /// Paths of the pictures written (present when `plots` was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plots: Option<Vec<String>>,
}

/// Read `job.file`, compute the metrics, and draw the pictures asked for.
pub fn evaluate_file(job: &EvaluateJob) -> Result<EvaluateOutcome> {
    let a = read_h5ad(&job.file)?;
    let report = evaluate(&a, &job.options)?;
    let plots = match &job.plots {
        Some(dir) => Some(write_plots(&a, job, &report, dir)?),
        None => None,
    };
    Ok(EvaluateOutcome { report, plots })
}

/// The pictures of `job.plots` (PNG and SVG each); returns the paths written.
fn write_plots(
    a: &AnnData,
    job: &EvaluateJob,
    rep: &EvaluationReport,
    dir: &Path,
) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| invalid(format!("{}: cannot create the folder: {e}", dir.display())))?;
    let mut out = Vec::new();
    let name = a
        .source
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in ["png", "svg"] {
        if let Some(c) = &rep.classification {
            let p = dir.join(format!("confusion.{ext}"));
            plot_confusion_report(&p, c, &format!("{name}: confusion (row-normalised)"))?;
            out.push(p.display().to_string());
            let p = dir.join(format!("per_class_f1.{ext}"));
            plot_per_class_f1_report(&p, c, &format!("{name}: F1 per class"))?;
            out.push(p.display().to_string());
        }
    }
    if let Some(key) = &job.options.embedding {
        let (x, n, d) = obsm_f32(a, key)?;
        let layout = umap(
            &x,
            n,
            d,
            &UmapOptions {
                seed: job.options.seed,
                progress: job.progress,
                ..Default::default()
            },
        )?;
        let col = |c: &str| -> Result<Vec<String>> {
            let col = a.obs_column(c)?;
            Ok((0..a.n_obs())
                .map(|i| col.get_str(i).unwrap_or_else(|| "nan".into()))
                .collect())
        };
        let truth = col(&job.options.truth)?;
        let title = format!("{name}: UMAP of obsm['{key}']");
        for ext in ["png", "svg"] {
            let p = dir.join(format!("umap.{ext}"));
            match &job.options.pred {
                Some(pc) => plot_embedding_pair(
                    &p,
                    &layout,
                    &truth,
                    &col(pc)?,
                    &title,
                    &ScatterOptions::default(),
                )?,
                None => plot_embedding(&p, &layout, &truth, &title, &ScatterOptions::default())?,
            }
            out.push(p.display().to_string());
        }
    }
    Ok(out)
}
