//! What a verb wrote into the cells, handed back for the Python half to store in the caller's
//! AnnData: the obs columns that are new or changed (values, and whether categorical), the
//! obsm matrices and the uns entries.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use scllm_io::{AnnData, Column, Matrix, Values};

use crate::arrays::{column_to_py, matrix, matrix_f32, uns_to_py};

pub(crate) type Written<'py> = (Bound<'py, PyDict>, Bound<'py, PyDict>, Bound<'py, PyDict>);

/// `a`'s obs columns that differ from `before`, all its dense obsm matrices and uns entries.
pub(crate) fn written<'py>(
    py: Python<'py>,
    before: &[(String, Column)],
    a: &AnnData,
) -> PyResult<Written<'py>> {
    let obs = PyDict::new(py);
    for (name, col) in &a.obs.columns {
        let unchanged = before.iter().any(|(n, c)| n == name && c == col);
        if !unchanged {
            let categorical = matches!(col, Column::Categorical { .. });
            obs.set_item(name, (column_to_py(py, col)?, categorical))?;
        }
    }
    let obsm = PyDict::new(py);
    for (k, m) in &a.obsm {
        if let Matrix::Dense { ncols, data, .. } = m {
            // float64 stays float64 (CellTypist's probabilities, as celltypist writes them)
            let array = match data {
                Values::F64(v) => matrix(py, v.clone(), *ncols)?,
                other => matrix_f32(py, other.to_f32(), *ncols)?,
            };
            obsm.set_item(k, array)?;
        }
    }
    let uns = PyDict::new(py);
    for (k, v) in &a.uns {
        uns.set_item(k, uns_to_py(py, v)?)?;
    }
    Ok((obs, obsm, uns))
}
