//! scllm's errors as Python exceptions, with the CLI's one-line message: bad input (the CLI's
//! exit code 2) is a `ValueError`, a failure of scllm itself a `RuntimeError`.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::PyErr;

pub(crate) fn to_py(e: anyhow::Error) -> PyErr {
    let msg = scllm_tasks::one_line(&e);
    if scllm_tasks::is_bad_input(&e) {
        PyValueError::new_err(msg)
    } else {
        PyRuntimeError::new_err(msg)
    }
}

/// A bad argument found here, before any library call.
pub(crate) fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
