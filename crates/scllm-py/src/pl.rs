//! `scllm.tl.umap` and `scllm.pl`'s native calls: scllm-eval's UMAP layout and its pictures
//! (confusion matrix, per-class F1, embedding scatter, learning curves) written as PNG or SVG.

use std::path::PathBuf;

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use scllm_eval::metrics::ClassRow;
use scllm_eval::plot::{
    plot_confusion, plot_embedding, plot_embedding_pair, plot_learning_curves, plot_per_class_f1,
    ScatterOptions,
};
use scllm_eval::umap::UmapOptions;
use scllm_eval::umap_file::umap_of;
use scllm_io::{AnnData, DataFrame};

use crate::arrays::{dense_f32, matrix_f32, MatrixIn};
use crate::errors::{to_py, value_error};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(umap, m)?)?;
    m.add_function(wrap_pyfunction!(confusion, m)?)?;
    m.add_function(wrap_pyfunction!(per_class_f1, m)?)?;
    m.add_function(wrap_pyfunction!(embedding, m)?)?;
    m.add_function(wrap_pyfunction!(learning_curves, m)?)?;
    Ok(())
}

/// The UMAP layout (cells × 2, float32) of `rep` (an embedding), else of PCA of the
/// log-normalised counts `x`; returns it and what was laid out.
#[pyfunction]
#[pyo3(signature = (obs_names, x=None, var_names=None, rep=None, n_neighbors=15, min_dist=0.1, seed=0))]
#[allow(clippy::too_many_arguments)]
fn umap<'py>(
    py: Python<'py>,
    obs_names: Vec<String>,
    x: Option<MatrixIn<'py>>,
    var_names: Option<Vec<String>>,
    rep: Option<(String, PyReadonlyArray2<'py, f32>)>,
    n_neighbors: usize,
    min_dist: f32,
    seed: u64,
) -> PyResult<(Bound<'py, PyAny>, String)> {
    let (a, use_rep) = match (x, rep) {
        (_, Some((key, r))) => {
            let mut a = AnnData {
                obs: DataFrame::new(obs_names),
                source: Some("<AnnData>".into()),
                ..Default::default()
            };
            a.obsm
                .push((key.clone(), dense_f32(&format!("obsm['{key}']"), &r)?));
            (a, Some(key))
        }
        (Some(x), None) => {
            let c = x.to_matrix("X")?;
            let var = DataFrame::new(var_names.unwrap_or_default());
            if (obs_names.len(), var.nrows()) != c.shape() {
                return Err(value_error(
                    "X's shape does not match the obs and var names",
                ));
            }
            let mut a = AnnData::new(c, DataFrame::new(obs_names), var);
            a.source = Some("<AnnData>".into());
            (a, None)
        }
        (None, None) => return Err(value_error("give an embedding or the counts")),
    };
    let opts = UmapOptions {
        n_neighbors,
        min_dist,
        seed,
        progress: false,
        ..Default::default()
    };
    let (layout, what, _) = py
        .detach(move || umap_of(&a, use_rep.as_deref(), &opts))
        .map_err(|e| to_py(e.into()))?;
    let flat: Vec<f32> = layout.iter().flat_map(|p| p.iter().copied()).collect();
    Ok((matrix_f32(py, flat, 2)?, what))
}

/// The confusion matrix (rows: truth, columns: prediction) as a heat map.
#[pyfunction]
fn confusion(
    path: PathBuf,
    labels: Vec<String>,
    matrix: Vec<Vec<u64>>,
    title: &str,
) -> PyResult<()> {
    plot_confusion(&path, &labels, &matrix, title).map_err(|e| to_py(e.into()))
}

/// Per-class F1 bars: rows of (label, precision, recall, f1, support, predicted).
#[pyfunction]
fn per_class_f1(
    path: PathBuf,
    rows: Vec<(String, f64, f64, f64, u64, u64)>,
    title: &str,
) -> PyResult<()> {
    let rows: Vec<ClassRow> = rows
        .into_iter()
        .map(
            |(label, precision, recall, f1, support, predicted)| ClassRow {
                label,
                precision,
                recall,
                f1,
                support,
                predicted,
            },
        )
        .collect();
    plot_per_class_f1(&path, &rows, title).map_err(|e| to_py(e.into()))
}

/// A 2-D embedding coloured by one label list, or two side by side (truth, prediction).
#[pyfunction]
#[pyo3(signature = (path, coords, labels, title, second=None))]
fn embedding(
    path: PathBuf,
    coords: PyReadonlyArray2<'_, f32>,
    labels: Vec<String>,
    title: &str,
    second: Option<Vec<String>>,
) -> PyResult<()> {
    if coords.shape()[1] != 2 {
        return Err(value_error("the layout must have 2 columns"));
    }
    let flat = coords.as_array();
    let pts: Vec<[f32; 2]> = flat.rows().into_iter().map(|r| [r[0], r[1]]).collect();
    let so = ScatterOptions::default();
    match second {
        None => plot_embedding(&path, &pts, &labels, title, &so),
        Some(pred) => plot_embedding_pair(&path, &pts, &labels, &pred, title, &so),
    }
    .map_err(|e| to_py(e.into()))
}

/// Loss and accuracy per epoch from a fine-tuning run's `train_log.jsonl`.
#[pyfunction]
fn learning_curves(path: PathBuf, train_log: PathBuf, title: &str) -> PyResult<()> {
    let recs = scllm_train::read_train_log(&train_log).map_err(|e| to_py(e.into()))?;
    let recs: Vec<_> = recs.iter().map(|r| r.to_record()).collect();
    plot_learning_curves(&path, &recs, title).map_err(|e| to_py(e.into()))
}
