//! `scllm.tl`'s native calls: scllm-tasks' embedding on an AnnData rebuilt from the arrays the
//! Python half hands over (the same function `scllm embed` runs on a file).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use scllm_io::Matrix;
use scllm_models::Precision;
use scllm_tasks::embed::{embed_backed, embed_in_memory, EmbedJob};

use crate::arrays::{matrix_f32, uns_to_py, CellsIn};
use crate::errors::{to_py, value_error};
use crate::interruptible::{run, Progress};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(embed, m)?)?;
    m.add_function(wrap_pyfunction!(forget_model, m)?)?;
    Ok(())
}

/// Where `embed`'s cells are: handed over, or a file read block by block (a backed AnnData's).
#[derive(FromPyObject)]
enum Source<'py> {
    Cells(CellsIn<'py>),
    Backed((PathBuf, usize)),
}

/// `precision=` as given, else this CPU's default (bf16 on AVX-512 BF16, else f32, as the
/// CLI); `true` when defaulted (the summary's `precision_default`).
pub(crate) fn precision_arg(given: Option<&str>) -> PyResult<(Precision, bool)> {
    let given = given.map(str::parse).transpose().map_err(value_error)?;
    Ok(Precision::or_cpu_default(given))
}

/// Drop the model `embed` / `annotate` kept for the next call (`scllm_tasks::model_cache`).
#[pyfunction]
fn forget_model() {
    scllm_tasks::model_cache::forget();
}

/// Embed the cells (cells × genes counts) with the model in `model`: returns the `obsm` key,
/// the embedding (cells × d, float32), the run's summary (JSON) and the `uns` entries the
/// family records (CellPLM: `cellplm_sets`). `progress(done, total)` is called as cells
/// finish; Ctrl-C stops the run at its next batch.
#[pyfunction]
#[pyo3(signature = (
    source, model, key_added=None, batch_size=None, max_len=None,
    seed=0, threads=None, gene_col=None, group_by=None, precision=None, dictionaries=None,
    weights=None, strict=false, progress=None, name="<AnnData>"
))]
#[allow(clippy::too_many_arguments)]
fn embed<'py>(
    py: Python<'py>,
    source: Source<'py>,
    model: Option<PathBuf>,
    key_added: Option<String>,
    batch_size: Option<usize>,
    max_len: Option<usize>,
    seed: u64,
    threads: Option<usize>,
    gene_col: Option<String>,
    group_by: Option<String>,
    precision: Option<&str>,
    dictionaries: Option<PathBuf>,
    weights: Option<PathBuf>,
    strict: bool,
    progress: Option<Bound<'py, PyAny>>,
    name: &str,
) -> PyResult<(String, Bound<'py, PyAny>, String, Bound<'py, PyDict>)> {
    let (cells, input, n) = match source {
        Source::Cells(c) => {
            let a = c.into_anndata(name)?;
            let n = a.n_obs();
            (Some(a), PathBuf::from(name), n)
        }
        Source::Backed((path, n)) => (None, path, n),
    };
    let (precision, defaulted) = precision_arg(precision)?;
    let model = scllm_tasks::model_dir::resolve_for_embedding(model.as_deref()).map_err(to_py)?;
    let mut job = EmbedJob::new(input, PathBuf::new(), model);
    job.obsm_key = key_added;
    // CellPLM: whole groups unless a set size is given; every other family: 64 cells a batch
    job.set_size = batch_size;
    job.batch_size = batch_size.unwrap_or(job.batch_size);
    job.max_len = max_len;
    job.seed = seed;
    job.threads = threads;
    job.gene_col = gene_col;
    job.group_by = group_by;
    job.precision = precision;
    job.dictionaries = dictionaries;
    job.weights = weights;
    job.strict = strict;
    // a notebook or Dask worker embedding one AnnData after another reads the model once
    job.keep_model = true;
    // the bar is Python's (a notebook does not show the CLI's, drawn on stderr)
    job.progress = false;
    let done = Arc::new(AtomicU64::new(0));
    job.cells_done = Some(done.clone());
    let bar = progress.map(|callback| Progress::Counter {
        callback,
        done,
        total: n as u64,
    });
    let (out, a) = run(py, bar.as_ref(), move || match cells {
        Some(mut a) => {
            let out = embed_in_memory(&job, &mut a);
            (out, Some(a))
        }
        None => (embed_backed(&job), None),
    })?;
    let mut out = out.map_err(to_py)?;
    out.summary["precision_default"] = defaulted.into();
    let key = out.summary["obsm_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let emb = match (out.embedding.take(), &a) {
        (Some(m), _) => Some(m),
        (None, Some(a)) => a
            .obsm
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, m)| m.clone()),
        (None, None) => None,
    }
    .ok_or_else(|| value_error("internal: the embedding is missing"))?;
    let Matrix::Dense { ncols, data, .. } = emb else {
        return Err(value_error("internal: the embedding is not dense"));
    };
    let uns = PyDict::new(py);
    // in memory: the AnnData's uns (the family's entries among them); backed: the family's
    for (k, v) in a.iter().flat_map(|a| &a.uns).chain(&out.uns) {
        uns.set_item(k, uns_to_py(py, v)?)?;
    }
    let mut summary = out.summary;
    if let Some(o) = summary.as_object_mut() {
        o.remove("output");
    }
    Ok((
        key,
        matrix_f32(py, data.to_f32(), ncols)?,
        summary.to_string(),
        uns,
    ))
}
