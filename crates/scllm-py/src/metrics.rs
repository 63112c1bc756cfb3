//! `scllm.metrics`' native call: scllm-eval's `evaluate` (scikit-learn's classification,
//! clustering and silhouette metrics) on the obs columns and embedding handed over.

use numpy::PyReadonlyArray2;
use pyo3::prelude::*;
use scllm_eval::evaluation::{evaluate as evaluate_cells, EvaluateOptions};
use scllm_io::AnnData;

use crate::arrays::{dense_f32, frame, ColumnIn};
use crate::errors::{to_py, value_error};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    Ok(())
}

/// The metrics `scllm evaluate` computes, as its `--json` report.
#[pyfunction]
#[pyo3(signature = (
    obs_names, obs, truth, pred=None, embedding=None, cluster=None,
    distances=vec!["euclidean".to_string()], silhouette_max_cells=20000, seed=0
))]
#[allow(clippy::too_many_arguments)]
fn evaluate(
    py: Python<'_>,
    obs_names: Vec<String>,
    obs: Vec<(String, ColumnIn<'_>)>,
    truth: String,
    pred: Option<String>,
    embedding: Option<(String, PyReadonlyArray2<'_, f32>)>,
    cluster: Option<String>,
    distances: Vec<String>,
    silhouette_max_cells: usize,
    seed: u64,
) -> PyResult<String> {
    let df = frame(obs_names, obs, "obs")?;
    let mut a = AnnData {
        obs: df,
        source: Some("<AnnData>".into()),
        ..Default::default()
    };
    let key = embedding.as_ref().map(|(k, _)| k.clone());
    if let Some((k, e)) = embedding {
        let m = dense_f32(&format!("obsm['{k}']"), &e)?;
        a.obsm.push((k, m));
    }
    let distances = distances
        .iter()
        .map(|d| d.parse())
        .collect::<Result<Vec<_>, String>>()
        .map_err(value_error)?;
    let opts = EvaluateOptions {
        truth,
        pred,
        embedding: key,
        distances,
        cluster,
        silhouette_max_cells,
        seed,
    };
    let rep = py
        .detach(move || evaluate_cells(&a, &opts))
        .map_err(|e| to_py(e.into()))?;
    serde_json::to_string(&rep).map_err(|e| value_error(e.to_string()))
}
