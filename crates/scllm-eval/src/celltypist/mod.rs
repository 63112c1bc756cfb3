//! `scllm baseline celltypist`: a released CellTypist model (Domínguez Conde et al. 2022)
//! annotating a query as `celltypist.annotate` 1.7.1 does, with the query kept sparse.
//!
//! * [`model`]: the pickle read as data (classifier weights, scaler, genes, description; never
//!   unpickled), both of CellTypist's layouts;
//! * [`predict`]: scores, probabilities, `best match` and `prob match` labels;
//! * [`majority_voting`]: the per-over-cluster vote;
//! * [`over_cluster`]: an over-clustering when the query brings none.
//!
//! Output (the query, written whole): `obs['predicted_labels']`, and with majority voting
//! `obs['over_clustering']` and `obs['majority_voting']`, then `obs['conf_score']` (the cell's
//! highest probability), as celltypist's `AnnotationResult.to_adata()` names them;
//! `obsm['celltypist_probability']` (cells × cell types, float64, columns in the order of
//! `uns['celltypist']['classes']`), optionally `obsm['celltypist_decision']` (the scores);
//! `uns['celltypist']` (model, mode, threshold, genes used).
//!
//! Input expectations are celltypist's: log1p of counts scaled to 10,000 per cell, all genes
//! (the scaling is over the cell's total). What X holds is judged on its first 1,000 cells, as
//! celltypist does. X holding raw counts is normalised that way first (as celltypist does for its
//! text inputs; its `.h5ad` path refuses counts); scaled X falls back to `.raw`, as celltypist
//! does.

pub mod majority_voting;
pub mod model;
pub mod over_cluster;
pub mod predict;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use scllm_io::{
    read_h5ad, write_h5ad, AnnData, Column, Compressed, Compression, Matrix, UnsValue, Values,
};
use scllm_pp::{detect_values, log1p, normalize_total, to_csr_f32, ValueKind};
use serde::Serialize;

use crate::anndata_input::{layer_matrix, name};
use crate::metrics::{classification_report, ClassificationReport};
use crate::progress::bar;
use crate::{invalid, Result};
use model::{CellTypistModel, ModelFormat};
use predict::{GeneMap, RowTransform};

/// celltypist's label for a cell no class reaches `p_thres` in `prob match` mode.
pub const UNASSIGNED: &str = "Unassigned";
/// The obsm key of the probability matrix.
pub const PROBABILITY_KEY: &str = "celltypist_probability";
/// The obsm key of the decision (score) matrix.
pub const DECISION_KEY: &str = "celltypist_decision";

/// How labels are read off the probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// The class with the highest score.
    #[serde(rename = "best match")]
    BestMatch,
    /// Every class above `p_thres`, joined with `|`; `Unassigned` when none.
    #[serde(rename = "prob match")]
    ProbMatch,
}

impl CellTypistOptions {
    /// The thresholds and resolution in range (checked before the model or query is read).
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.p_thres) {
            return Err(invalid(format!(
                "--p-thres {}: must be between 0 and 1",
                self.p_thres
            )));
        }
        if !(0.0..=1.0).contains(&self.min_prop) {
            return Err(invalid(format!(
                "--min-prop {}: must be between 0 and 1",
                self.min_prop
            )));
        }
        if self.resolution.is_some_and(|r| !r.is_finite() || r <= 0.0) {
            return Err(invalid("--resolution: must be positive"));
        }
        Ok(())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.replace(['_', '-'], " ").as_str() {
            "best match" | "best" => Ok(Mode::BestMatch),
            "prob match" | "prob" => Ok(Mode::ProbMatch),
            other => Err(format!(
                "unknown --mode `{other}`: use `best match` (best_match) or `prob match` (prob_match)"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CellTypistOptions {
    pub mode: Mode,
    /// `prob match` threshold (celltypist's default 0.5).
    pub p_thres: f64,
    pub majority_voting: bool,
    /// obs column holding the over-clustering (celltypist's `over_clustering`); implies
    /// majority voting. `None`: computed ([`over_cluster`]).
    pub over_clustering: Option<String>,
    /// Minimum share of a cluster's winner, else `Heterogeneous` (celltypist's `min_prop`).
    pub min_prop: f64,
    /// Leiden resolution of the computed over-clustering (default: celltypist's by cell count).
    pub resolution: Option<f64>,
    /// Use this layer (or `raw`) instead of X.
    pub layer: Option<String>,
    /// obs column of true labels in the query, for metrics when present.
    pub label: String,
    /// Also write the scores as `obsm['celltypist_decision']`.
    pub decision: bool,
    pub seed: u64,
    pub progress: bool,
}

impl Default for CellTypistOptions {
    fn default() -> Self {
        CellTypistOptions {
            mode: Mode::BestMatch,
            p_thres: 0.5,
            majority_voting: false,
            over_clustering: None,
            min_prop: 0.0,
            resolution: None,
            layer: None,
            label: "cell_type".into(),
            decision: false,
            seed: 0,
            progress: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CellTypistSummary {
    pub method: &'static str,
    pub model: String,
    pub model_format: ModelFormat,
    pub estimator: String,
    pub description: BTreeMap<String, String>,
    pub query: String,
    pub n_query: usize,
    pub classes: Vec<String>,
    pub n_model_genes: usize,
    /// Model genes found in the query (the others contribute nothing).
    pub n_genes_matched: usize,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_thres: Option<f64>,
    /// Cells with `Unassigned` (prob match).
    pub n_unassigned: usize,
    pub majority_voting: bool,
    /// Where the over-clustering came from: `obs['COL']` or the computed Leiden.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_clustering: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_over_clusters: Option<usize>,
    pub probability_key: &'static str,
    pub predict_seconds: f64,
    pub majority_voting_seconds: f64,
    pub notes: Vec<String>,
    /// When the query has the label column: metrics of `predicted_labels` on its labelled cells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ClassificationReport>,
    /// The same for `majority_voting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_majority_voting: Option<ClassificationReport>,
}

/// One `scllm baseline celltypist` run.
#[derive(Clone, Debug)]
pub struct CellTypistJob {
    pub query: PathBuf,
    /// CellTypist model `.pkl` (or `.pkl.gz`).
    pub model: PathBuf,
    pub output: PathBuf,
    pub options: CellTypistOptions,
}

#[derive(Clone, Debug, Serialize)]
pub struct CellTypistOutcome {
    #[serde(flatten)]
    pub summary: CellTypistSummary,
    pub output: String,
}

/// Read the model and the query, annotate ([`run_celltypist`]), write the annotated query.
pub fn celltypist(job: &CellTypistJob) -> Result<CellTypistOutcome> {
    let o = &job.options;
    o.check()?;
    let model = CellTypistModel::load(&job.model)?;
    let mut query = read_h5ad(&job.query)?;
    let summary = run_celltypist(&model, &job.model, &mut query, o)?;
    write_h5ad(&query, &job.output, Compression::None)?;
    Ok(CellTypistOutcome {
        summary,
        output: job.output.display().to_string(),
    })
}

/// The expression the model reads and how each stored value is transformed.
struct Input<'a> {
    x: Cow<'a, Compressed>,
    genes: Vec<String>,
    transform: RowTransform,
    note: String,
}

fn csr(m: &Matrix) -> Cow<'_, Compressed> {
    match m {
        Matrix::Csr(c) => Cow::Borrowed(c),
        other => Cow::Owned(other.to_csr()),
    }
}

fn input<'a>(a: &'a AnnData, layer: Option<&str>, format: ModelFormat) -> Result<Input<'a>> {
    let src = name(a);
    let (m, genes, what) = layer_matrix(a, layer, "drop --layer raw to use X")?;
    // judged on the first 1,000 cells, as celltypist does (`X[:1000]`): a full pass would copy
    // the matrix (scllm-pp's log check converts it to CSR); NaN is looked for everywhere
    let head: Vec<usize> = (0..m.shape().0.min(1000)).collect();
    let report = detect_values(&m.select_rows(&head));
    if report.has_nan || has_nan(m.values()) {
        return Err(invalid(format!(
            "{src}: field `{what}`: contains NaN values; remove or impute them first"
        )));
    }
    let (transform, how) = match (format, report.kind) {
        (_, ValueKind::Empty) => {
            return Err(invalid(format!(
                "{src}: field `{what}`: has no stored values; store counts or log1p(CP10k) in X"
            )))
        }
        (_, ValueKind::Scaled) if layer.is_none() && a.raw.is_some() => {
            // celltypist: "Invalid expression matrix in `.X` ... will use `.raw.X` instead"
            let mut i = input(a, Some("raw"), format)?;
            i.note = format!("{src}: X holds scaled values (min {:.3}); {}", report.min, i.note);
            return Ok(i);
        }
        (_, ValueKind::Scaled) => {
            return Err(invalid(format!(
                "{src}: field `{what}`: holds scaled values (min {:.3} < 0); CellTypist needs log1p(CP10k) or counts of all genes: pass --layer with counts, or keep them in .raw",
                report.min
            )))
        }
        (ModelFormat::Bare2020, _) => (
            RowTransform::Log1p64,
            "values logged as stored (log1p, float64), as CellTypist's 2020 models read their input".to_string(),
        ),
        (ModelFormat::Dict, ValueKind::LogNormalized) => {
            (RowTransform::AsIs, "log-normalised values; used as they are".to_string())
        }
        (ModelFormat::Dict, ValueKind::Counts) => (
            RowTransform::CountsToLogCp10k,
            "counts; scaled to 10,000 per cell and log1p-transformed, as celltypist does".to_string(),
        ),
        (ModelFormat::Dict, ValueKind::Normalized) => (
            RowTransform::Log1p,
            "normalised values; log1p-transformed".to_string(),
        ),
    };
    Ok(Input {
        x: csr(m),
        genes,
        transform,
        note: format!(
            "{src}: {} cells x {} genes; {what} holds {how}",
            m.shape().0,
            m.shape().1
        ),
    })
}

fn has_nan(v: &Values) -> bool {
    match v {
        Values::F32(d) => d.iter().any(|x| x.is_nan()),
        Values::F64(d) => d.iter().any(|x| x.is_nan()),
        Values::I32(_) | Values::I64(_) => false,
    }
}

/// The log1p(CP10k) matrix of all genes, for the computed over-clustering.
fn log_data(i: &Input) -> Compressed {
    match i.transform {
        RowTransform::AsIs => to_csr_f32(&Matrix::Csr(i.x.clone().into_owned())),
        RowTransform::CountsToLogCp10k | RowTransform::Log1p64 => {
            log1p(&normalize_total(&i.x, Some(1e4)).0)
        }
        RowTransform::Log1p => log1p(&i.x),
    }
}

fn metrics_of(
    query: &AnnData,
    label: &str,
    pred: &[String],
) -> Result<Option<ClassificationReport>> {
    let Some(col) = query.obs.column(label) else {
        return Ok(None);
    };
    let t = col.to_strings();
    let idx: Vec<usize> = (0..t.len()).filter(|&i| t[i].is_some()).collect();
    if idx.is_empty() {
        return Ok(None);
    }
    let tt: Vec<&str> = idx.iter().map(|&i| t[i].as_deref().unwrap()).collect();
    let pp: Vec<&str> = idx.iter().map(|&i| pred[i].as_str()).collect();
    Ok(Some(classification_report(&tt, &pp)?))
}

fn categorical(v: &[String]) -> Column {
    let o: Vec<Option<String>> = v.iter().map(|s| Some(s.clone())).collect();
    Column::categorical_from(&o)
}

/// Annotate `query` in place with `model` (read from `model_path`).
pub fn run_celltypist(
    model: &CellTypistModel,
    model_path: &Path,
    query: &mut AnnData,
    opts: &CellTypistOptions,
) -> Result<CellTypistSummary> {
    let qname = name(query);
    let mpath = model_path.display().to_string();
    let n = query.n_obs();
    let mut notes = Vec::new();
    let t0 = Instant::now();
    let inp = input(query, opts.layer.as_deref(), model.format)?;
    notes.push(inp.note.clone());
    let map = match &model.features {
        Some(f) => GeneMap::by_name(&inp.genes, f),
        None => {
            if inp.genes.len() != model.n_features {
                return Err(invalid(format!(
                    "{qname}: has {} genes but the 2020 CellTypist model {mpath} names none and reads {} by position; give the query with exactly the model's genes in its order",
                    inp.genes.len(),
                    model.n_features
                )));
            }
            notes.push(format!(
                "{mpath}: a 2020 CellTypist model (bare classifier, no gene names, no scaler): genes taken by position; probabilities normalised to sum 1 as its predict_proba did"
            ));
            GeneMap::by_position(model.n_features)
        }
    };
    if map.n_matched == 0 {
        let f = model.features.as_deref().unwrap_or(&[]);
        let show: Vec<&str> = f.iter().take(3).map(|s| s.as_str()).collect();
        return Err(invalid(format!(
            "{qname}: field `var.index`: shares none of the {} genes of the CellTypist model {mpath} (e.g. {}); CellTypist models name genes by symbol: give the query gene symbols in var.index (or --layer raw if .raw holds them)",
            model.n_features,
            show.join(", ")
        )));
    }
    if map.n_matched < model.n_features {
        notes.push(format!(
            "{qname}: {} of the model's {} genes found; the missing ones contribute nothing (as in celltypist)",
            map.n_matched, model.n_features
        ));
    }
    let nc = model.classes.len();
    let b = bar(n as u64, "celltypist", opts.progress);
    let mut scores =
        predict::decision_matrix(&inp.x, &map, model, inp.transform, &|m| b.inc(m as u64));
    b.finish_and_clear();
    let best = predict::argmax_rows(&scores, nc);
    let decision = opts.decision.then(|| scores.clone());
    predict::probabilities(&mut scores, nc, model.format);
    let prob = scores;
    let labels: Vec<String> = match opts.mode {
        Mode::BestMatch => best
            .iter()
            .map(|&c| model.classes[c as usize].clone())
            .collect(),
        Mode::ProbMatch => predict::prob_match(&prob, &model.classes, opts.p_thres),
    };
    let conf: Vec<f64> = prob
        .chunks(nc)
        .map(|r| r.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let predict_s = t0.elapsed().as_secs_f64();

    // majority voting
    let t1 = Instant::now();
    let want_vote = opts.majority_voting || opts.over_clustering.is_some();
    let mut vote: Option<(Vec<String>, Vec<String>, String)> = None;
    if want_vote && n <= 50 {
        // celltypist: "too few to conduct proper over-clustering; no majority voting is performed"
        notes.push(format!(
            "{qname}: {n} cells are too few for over-clustering (celltypist needs more than 50); no majority voting"
        ));
    } else if want_vote {
        let (clusters, source) = match &opts.over_clustering {
            Some(col) => {
                let c = query.obs.column(col).ok_or_else(|| {
                    invalid(format!(
                        "{qname}: field `obs['{col}']`: no such column (obs columns: {}); give the over-clustering as an obs column or drop --over-clustering to compute one",
                        query.obs.column_names().join(", ")
                    ))
                })?;
                let v = c.to_strings();
                if let Some(i) = v.iter().position(|x| x.is_none()) {
                    return Err(invalid(format!(
                        "{qname}: field `obs['{col}']`: cell {i} has no cluster (NaN); every cell needs one"
                    )));
                }
                (
                    v.into_iter().flatten().collect::<Vec<_>>(),
                    format!("obs['{col}']"),
                )
            }
            None => {
                let res = opts
                    .resolution
                    .unwrap_or_else(|| over_cluster::default_resolution(n));
                let (emb, d) = match query.obsm_get("X_pca") {
                    Some(m) => {
                        notes.push(format!("{qname}: over-clustering on the existing obsm['X_pca'] (as celltypist)"));
                        let d = m.shape().1;
                        (crate::anndata_input::obsm_dense(m), d)
                    }
                    None => over_cluster::pca_of_log_data(&log_data(&inp), opts.seed)?,
                };
                let c = over_cluster::leiden_clusters(&emb, n, d, res, opts.seed)?;
                notes.push(format!(
                    "{qname}: over-clustering computed (10-NN graph of 50 PCs, Leiden at resolution {res}); clusters and majority-voting labels may differ from celltypist's, whose scanpy/igraph clustering cannot be reproduced exactly: pass its clustering with --over-clustering COL for identical labels"
                ));
                (c, format!("computed: Leiden, resolution {res}"))
            }
        };
        let mv = majority_voting::majority_vote(&labels, &clusters, opts.min_prop);
        vote = Some((clusters, mv, source));
    }
    let mv_s = t1.elapsed().as_secs_f64();

    let metrics = metrics_of(query, &opts.label, &labels)?;
    let metrics_mv = match &vote {
        Some((_, mv, _)) => metrics_of(query, &opts.label, mv)?,
        None => None,
    };
    let n_unassigned = labels.iter().filter(|l| *l == UNASSIGNED).count();
    let n_over = vote.as_ref().map(|(c, _, _)| {
        let mut u: Vec<&String> = c.iter().collect();
        u.sort();
        u.dedup();
        u.len()
    });
    let n_matched = map.n_matched;
    drop(inp);

    query.obs.set("predicted_labels", categorical(&labels));
    let mut uns: Vec<(String, UnsValue)> = vec![
        ("model".into(), UnsValue::Str(mpath.clone())),
        (
            "model_format".into(),
            UnsValue::Str(
                serde_json::to_value(model.format)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .into(),
            ),
        ),
        (
            "classes".into(),
            UnsValue::Array(Column::Str(model.classes.clone())),
        ),
        (
            "mode".into(),
            UnsValue::Str(
                serde_json::to_value(opts.mode)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .into(),
            ),
        ),
        ("n_genes_matched".into(), UnsValue::I64(n_matched as i64)),
    ];
    if opts.mode == Mode::ProbMatch {
        uns.push(("p_thres".into(), UnsValue::F64(opts.p_thres)));
    }
    if let Some((clusters, mv, source)) = &vote {
        query.obs.set("over_clustering", categorical(clusters));
        query.obs.set("majority_voting", categorical(mv));
        uns.push(("over_clustering".into(), UnsValue::Str(source.clone())));
        uns.push(("min_prop".into(), UnsValue::F64(opts.min_prop)));
    }
    query.obs.set("conf_score", Column::F64(conf));
    query.set_obsm(
        PROBABILITY_KEY,
        Matrix::Dense {
            nrows: n,
            ncols: nc,
            data: Values::F64(prob),
        },
    );
    if let Some(d) = decision {
        query.set_obsm(
            DECISION_KEY,
            Matrix::Dense {
                nrows: n,
                ncols: nc,
                data: Values::F64(d),
            },
        );
    }
    query.set_uns("celltypist", UnsValue::Dict(uns));
    Ok(CellTypistSummary {
        method: "celltypist",
        model: mpath,
        model_format: model.format,
        estimator: model.estimator.clone(),
        description: model.description.clone(),
        query: qname,
        n_query: n,
        classes: model.classes.clone(),
        n_model_genes: model.n_features,
        n_genes_matched: n_matched,
        mode: opts.mode,
        p_thres: (opts.mode == Mode::ProbMatch).then_some(opts.p_thres),
        n_unassigned,
        majority_voting: vote.is_some(),
        over_clustering: vote.as_ref().map(|v| v.2.clone()),
        n_over_clusters: n_over,
        probability_key: PROBABILITY_KEY,
        predict_seconds: predict_s,
        majority_voting_seconds: mv_s,
        notes,
        metrics,
        metrics_majority_voting: metrics_mv,
    })
}
