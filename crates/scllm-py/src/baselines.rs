//! `scllm.tl.baseline`'s native calls: scllm-eval's classical annotators (L1 logistic
//! regression, kNN, correlation on a reference and a query handed over; a released CellTypist
//! model on a query) — the functions `scllm baseline` runs.

use std::path::PathBuf;

use pyo3::prelude::*;
use scllm_eval::baselines::{baseline_cells, BaselineOptions, Method};
use scllm_eval::celltypist::model::CellTypistModel;
use scllm_eval::celltypist::{run_celltypist, CellTypistOptions};
use scllm_eval::novelty::UnknownBelow;

use crate::arrays::CellsIn;
use crate::errors::{to_py, value_error};
use crate::interruptible::{run, Progress};
use crate::written::{written, Written};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(baseline, m)?)?;
    m.add_function(wrap_pyfunction!(celltypist, m)?)?;
    Ok(())
}

/// Train `method` on the labelled reference cells and annotate the query: returns the summary
/// (JSON, as `scllm baseline --json`) and what it wrote into the query.
#[pyfunction]
#[pyo3(signature = (
    query, reference, label, method, n_hvg=2000, hvg_flavor="seurat", unknown_below=None,
    coverage=None, c=None, k=15, use_rep=None, n_pcs=50, vote="majority", metric="cosine",
    seed=0, progress=None
))]
#[allow(clippy::too_many_arguments)]
fn baseline<'py>(
    py: Python<'py>,
    query: CellsIn<'py>,
    reference: CellsIn<'py>,
    label: &str,
    method: &str,
    n_hvg: usize,
    hvg_flavor: &str,
    unknown_below: Option<String>,
    coverage: Option<f64>,
    c: Option<f64>,
    k: usize,
    use_rep: Option<String>,
    n_pcs: usize,
    vote: &str,
    metric: &str,
    seed: u64,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<(String, Written<'py>)> {
    let method = match method {
        "logreg" => Method::Logreg,
        "knn" => Method::Knn,
        "correlation" => Method::Correlation,
        other => {
            return Err(value_error(format!(
                "unknown baseline `{other}`: use logreg, knn or correlation"
            )))
        }
    };
    let mut q = query.into_anndata("<query AnnData>")?;
    let r = reference.into_anndata("<reference AnnData>")?;
    let mut o = BaselineOptions::new(method, label);
    o.n_hvg = n_hvg;
    o.hvg_flavor = hvg_flavor.parse().map_err(value_error)?;
    match unknown_below
        .map(|u| u.parse::<UnknownBelow>())
        .transpose()
        .map_err(value_error)?
    {
        Some(UnknownBelow::Fixed(p)) => o.unknown_below = Some(p),
        Some(UnknownBelow::Auto) => o.unknown_below_auto = true,
        None => {}
    }
    o.coverage = coverage;
    o.c = c;
    o.k = k;
    o.use_rep = use_rep;
    o.n_pcs = n_pcs;
    o.vote = vote.parse().map_err(value_error)?;
    o.metric = metric.parse().map_err(value_error)?;
    o.seed = seed;
    let before = q.obs.columns.clone();
    let bar = progress.map(|callback| Progress::Followed { callback });
    let (s, q) = run(py, bar.as_ref(), move || {
        let s = baseline_cells(&r, &mut q, &o);
        (s, q)
    })?;
    let s = s.map_err(|e| to_py(e.into()))?;
    let s = serde_json::to_string(&s).map_err(|e| value_error(e.to_string()))?;
    Ok((s, written(py, &before, &q)?))
}

/// A released CellTypist model (`model`: its `.pkl`, read as data, never run) on the cells of
/// `query`, as `scllm baseline celltypist`: the summary (JSON) and what was written into them.
#[pyfunction]
#[pyo3(signature = (
    query, model, mode="best_match", p_thres=0.5, majority_voting=false, over_clustering=None,
    min_prop=0.0, resolution=None, label="cell_type", decision=false, seed=0, progress=None
))]
#[allow(clippy::too_many_arguments)]
fn celltypist<'py>(
    py: Python<'py>,
    query: CellsIn<'py>,
    model: PathBuf,
    mode: &str,
    p_thres: f64,
    majority_voting: bool,
    over_clustering: Option<String>,
    min_prop: f64,
    resolution: Option<f64>,
    label: &str,
    decision: bool,
    seed: u64,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<(String, Written<'py>)> {
    let options = CellTypistOptions {
        mode: mode.parse().map_err(value_error)?,
        p_thres,
        majority_voting,
        over_clustering,
        min_prop,
        resolution,
        // the Python half hands over the matrix it chose (X, a layer or .raw)
        layer: None,
        label: label.to_string(),
        decision,
        seed,
        progress: false,
    };
    options.check().map_err(|e| to_py(e.into()))?;
    let mut q = query.into_anndata("<query AnnData>")?;
    let before = q.obs.columns.clone();
    let bar = progress.map(|callback| Progress::Followed { callback });
    let (s, q) = run(py, bar.as_ref(), move || {
        let s = CellTypistModel::load(&model)
            .and_then(|m| run_celltypist(&m, &model, &mut q, &options));
        (s, q)
    })?;
    let s = s.map_err(|e| to_py(e.into()))?;
    let s = serde_json::to_string(&s).map_err(|e| value_error(e.to_string()))?;
    Ok((s, written(py, &before, &q)?))
}
