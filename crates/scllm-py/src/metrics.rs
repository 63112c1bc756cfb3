//! `scllm.metrics`' native call: scllm-eval's `evaluate` (scikit-learn's classification,
//! clustering and silhouette metrics) on the obs columns and embedding handed over.

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use scllm_eval::evaluation::{evaluate as evaluate_cells, EvaluateOptions};
use scllm_io::{AnnData, DataFrame, Matrix, Values};

use crate::arrays::ColumnIn;
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
    let mut df = DataFrame::new(obs_names);
    let n = df.nrows();
    for (name, c) in obs {
        let col = c.to_column(n, &format!("obs['{name}']"))?;
        df.set(&name, col);
    }
    let mut a = AnnData {
        obs: df,
        source: Some("<AnnData>".into()),
        ..Default::default()
    };
    let key = embedding.as_ref().map(|(k, _)| k.clone());
    if let Some((k, e)) = embedding {
        let [rows, cols] = e.shape() else {
            return Err(value_error(format!("obsm['{k}'] must be 2-D")));
        };
        let data = e.as_array().iter().copied().collect::<Vec<f32>>();
        a.obsm.push((
            k,
            Matrix::Dense {
                nrows: *rows,
                ncols: *cols,
                data: Values::F32(data),
            },
        ));
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
