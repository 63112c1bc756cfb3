//! `scllm._scllm`, the native half of the Python package (`python/scllm`): the same library
//! functions the CLI calls (scllm-pp's preprocessing, scllm-tasks' embedding, scllm-papers'
//! lookups), on arrays numpy
//! and scipy hand over, with no subprocess and no file in between. The Python half turns an
//! `AnnData` into these arguments and writes the results back into it.

use pyo3::prelude::*;

mod adapt;
mod arrays;
mod baselines;
mod benchmark;
mod errors;
mod interruptible;
mod metrics;
mod papers;
mod pl;
mod pp;
mod tl;
mod written;

#[pymodule]
fn _scllm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    pp::register(m)?;
    tl::register(m)?;
    metrics::register(m)?;
    adapt::register(m)?;
    baselines::register(m)?;
    pl::register(m)?;
    benchmark::register(m)?;
    papers::register(m)?;
    Ok(())
}
