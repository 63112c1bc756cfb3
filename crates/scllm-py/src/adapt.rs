//! `scllm.tl.finetune` and `scllm.tl.annotate`'s native calls: scllm-tasks' fine-tuning and
//! annotation (the functions `scllm finetune` / `scllm annotate` run) on the cells handed over.

use std::path::PathBuf;

use pyo3::prelude::*;
use scllm_models::Strategy;
use scllm_tasks::annotate::annotate_in_memory;
use scllm_tasks::annotate_job::AnnotateJob;
use scllm_tasks::cells::Cells;
use scllm_tasks::finetune_request::{run_finetune, FinetuneRequest};

use crate::arrays::CellsIn;
use crate::errors::{to_py, value_error};
use crate::interruptible::{run, Progress};
use crate::written::{written, Written};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(finetune, m)?)?;
    m.add_function(wrap_pyfunction!(annotate, m)?)?;
    Ok(())
}

/// Fine-tune `model` on the labelled cells of `x` and save the adapter in `out`; returns the
/// summary (JSON), as `scllm finetune --json` prints it.
#[pyfunction]
#[pyo3(signature = (
    cells, model, label, method, out, val_by=None,
    val_fraction=0.1, epochs=None, lr=None, batch_size=None, patience=None, max_len=None,
    min_cells_per_class=None, gene_col=None, adapter_ratio=None, lora_r=None, lora_alpha=None,
    prefix_tokens=None, layers=None, freeze_layers=None, resume=false, seed=0, group_by=None,
    hvg=None, dictionaries=None, progress=None, source="<AnnData>"
))]
#[allow(clippy::too_many_arguments)]
fn finetune<'py>(
    py: Python<'py>,
    cells: CellsIn<'py>,
    model: Option<PathBuf>,
    label: String,
    method: &str,
    out: PathBuf,
    val_by: Option<String>,
    val_fraction: f64,
    epochs: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
    patience: Option<usize>,
    max_len: Option<usize>,
    min_cells_per_class: Option<usize>,
    gene_col: Option<String>,
    adapter_ratio: Option<f64>,
    lora_r: Option<usize>,
    lora_alpha: Option<f64>,
    prefix_tokens: Option<usize>,
    layers: Option<Vec<usize>>,
    freeze_layers: Option<usize>,
    resume: bool,
    seed: u64,
    group_by: Option<String>,
    hvg: Option<usize>,
    dictionaries: Option<PathBuf>,
    progress: Option<Bound<'py, PyAny>>,
    source: &str,
) -> PyResult<String> {
    let mut a = cells.into_anndata(source)?;
    let method: Strategy = method.parse().map_err(value_error)?;
    let model = scllm_tasks::model_dir::resolve(model.as_deref()).map_err(to_py)?;
    let mut req = FinetuneRequest::new(model, PathBuf::from(source), label, method, out);
    req.dictionaries = dictionaries;
    req.val_by = val_by;
    req.val_fraction = val_fraction;
    req.epochs = epochs;
    req.lr = lr;
    req.batch_size = batch_size;
    req.patience = patience;
    req.max_len = max_len;
    req.min_cells_per_class = min_cells_per_class;
    req.gene_col = gene_col;
    req.adapter_ratio = adapter_ratio;
    req.lora_r = lora_r;
    req.lora_alpha = lora_alpha;
    req.prefix_tokens = prefix_tokens;
    req.layers = layers;
    req.freeze_layers = freeze_layers;
    req.resume = resume;
    req.seed = seed;
    req.group_by = group_by;
    req.hvg = hvg;
    // the bar is Python's, from the loop scllm follows (stderr bars do not show in a notebook)
    req.progress = false;
    let bar = progress.map(|callback| Progress::Followed { callback });
    let s = run(py, bar.as_ref(), move || {
        run_finetune(&req, Cells::Memory(&mut a))
    })?
    .map_err(to_py)?;
    Ok(s.to_string())
}

/// Annotate the cells of `x` with `model` + `adapter`; returns the summary (JSON) and what
/// `scllm annotate` writes into the output file: obs columns, obsm and uns entries.
#[pyfunction]
#[pyo3(signature = (
    cells, model, adapter, unknown_below=None, coverage=None,
    key_added=None, max_len=None, batch_size=None, group_by=None, gene_col=None, seed=0,
    precision=None, dictionaries=None, progress=None, source="<AnnData>"
))]
#[allow(clippy::too_many_arguments)]
fn annotate<'py>(
    py: Python<'py>,
    cells: CellsIn<'py>,
    model: Option<PathBuf>,
    adapter: PathBuf,
    unknown_below: Option<String>,
    coverage: Option<f64>,
    key_added: Option<String>,
    max_len: Option<usize>,
    batch_size: Option<usize>,
    group_by: Option<String>,
    gene_col: Option<String>,
    seed: u64,
    precision: Option<&str>,
    dictionaries: Option<PathBuf>,
    progress: Option<Bound<'py, PyAny>>,
    source: &str,
) -> PyResult<(String, Written<'py>)> {
    let mut a = cells.into_anndata(source)?;
    let before = a.obs.columns.clone();
    let (precision, defaulted) = crate::tl::precision_arg(precision)?;
    let unknown_below = unknown_below
        .map(|u| u.parse())
        .transpose()
        .map_err(value_error)?;
    let job = AnnotateJob {
        query: PathBuf::from(source),
        model: scllm_tasks::model_dir::resolve(model.as_deref()).map_err(to_py)?,
        adapter,
        output: PathBuf::new(),
        dictionaries,
        unknown_below,
        coverage,
        obsm_key: key_added,
        max_len,
        batch_size,
        group_by,
        gene_col,
        seed,
        progress: false,
        precision,
        // a notebook or Dask worker annotating one AnnData after another reads the model once
        keep_model: true,
    };
    let bar = progress.map(|callback| Progress::Followed { callback });
    let (s, a) = run(py, bar.as_ref(), move || {
        let s = annotate_in_memory(&job, &mut a);
        (s, a)
    })?;
    let mut s = s.map_err(to_py)?;
    s["precision_default"] = defaulted.into();
    if let Some(o) = s.as_object_mut() {
        o.remove("output");
    }
    let (obs, obsm, uns) = written(py, &before, &a)?;
    Ok((s.to_string(), (obs, obsm, uns)))
}
