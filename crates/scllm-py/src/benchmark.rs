//! `scllm.benchmark`'s native call: the run `scllm benchmark` makes (scllm-tasks' model methods
//! beside the baselines, scllm-benchmark's report), from a config file.

use std::path::PathBuf;

use pyo3::prelude::*;
use scllm_tasks::bench_methods::{benchmark as run_benchmark, BenchmarkJob};

use crate::errors::{to_py, value_error};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(benchmark, m)?)?;
    Ok(())
}

/// Run the benchmark `config` describes, writing its report to `out`; returns
/// `results.json`'s content (JSON) and the main table (markdown).
#[pyfunction]
#[pyo3(signature = (config, out, fewshot=true, progress=false))]
fn benchmark(
    py: Python<'_>,
    config: PathBuf,
    out: PathBuf,
    fewshot: bool,
    progress: bool,
) -> PyResult<(String, String)> {
    let job = BenchmarkJob {
        config,
        output: out,
        skip_fewshot: !fewshot,
        progress,
    };
    let (report, _) = py.detach(move || run_benchmark(&job)).map_err(to_py)?;
    let table = scllm_benchmark::render_main_table(&report);
    let json = serde_json::to_string(&report).map_err(|e| value_error(e.to_string()))?;
    Ok((json, table))
}
