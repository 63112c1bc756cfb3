//! `scllm.pp`'s native calls: scllm-pp's preprocessing (scanpy's float32 arithmetic) on a CSR
//! matrix; each returns what the Python half writes back into the AnnData. The GIL is released
//! while the work runs.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use scllm_pp::filter::{cells_passing, genes_passing, Passing};
use scllm_pp::{BinRng, Binner, CellFilter, GeneFilter, HvgFlavor, HvgOptions};

use crate::arrays::{column_to_py, matrix_f32, vector, Csr, MatrixIn};
use crate::errors::{to_py, value_error};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(normalize_total, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_total_in_place, m)?)?;
    m.add_function(wrap_pyfunction!(log1p, m)?)?;
    m.add_function(wrap_pyfunction!(highly_variable_genes, m)?)?;
    m.add_function(wrap_pyfunction!(filter_cells, m)?)?;
    m.add_function(wrap_pyfunction!(filter_genes, m)?)?;
    m.add_function(wrap_pyfunction!(scale, m)?)?;
    m.add_function(wrap_pyfunction!(binning, m)?)?;
    Ok(())
}

/// A 1-D numpy array handed back.
type Vector<'py, T> = Bound<'py, PyArray1<T>>;

fn f32_values(c: scllm_io::Compressed) -> Vec<f32> {
    match c.data {
        scllm_io::Values::F32(v) => v,
        other => other.to_f32(),
    }
}

/// Each cell scaled to `target_sum` (default: the median total): the new values (same
/// sparsity), each cell's total before, and the target used.
/// With `max_fraction` (scanpy's `exclude_highly_expressed`), the genes above that fraction
/// of some cell's total are left out of every cell's total.
#[pyfunction]
#[pyo3(signature = (x, target_sum=None, max_fraction=None))]
fn normalize_total<'py>(
    py: Python<'py>,
    x: Csr<'py>,
    target_sum: Option<f64>,
    max_fraction: Option<f64>,
) -> PyResult<(Vector<'py, f32>, Vector<'py, f32>, f64)> {
    let mut c = x.to_compressed("X")?;
    let (totals, target) = match max_fraction {
        None => py.detach(|| scllm_pp::normalize::normalize_total_in_place(&mut c, target_sum)),
        Some(f) => py
            .detach(|| {
                scllm_pp::normalize::normalize_total_in_place_excluding(&mut c, target_sum, f)
            })
            .map_err(|e| to_py(e.into()))?,
    };
    Ok((vector(py, f32_values(c)), vector(py, totals), target))
}

/// [`normalize_total`] on a CSR matrix's own float32 values, in place (the arithmetic cannot
/// fail once the offsets are checked, so the matrix is never left half-done): each cell's
/// total before and the target used.
#[pyfunction]
#[pyo3(signature = (data, indices, indptr, n_cols, target_sum=None, max_fraction=None))]
fn normalize_total_in_place<'py>(
    py: Python<'py>,
    data: numpy::PyReadwriteArray1<'py, f32>,
    indices: crate::arrays::Index<'py>,
    indptr: crate::arrays::Index<'py>,
    n_cols: usize,
    target_sum: Option<f64>,
    max_fraction: Option<f64>,
) -> PyResult<(Vector<'py, f32>, f64)> {
    let mut data = data;
    let values = data.as_slice_mut()?;
    let indptr = crate::arrays::checked_indptr(&indptr, values.len(), "X")?;
    if let Some(f) = max_fraction {
        // the genes are read here: their indices are checked by the kernel
        let idx = indices.as_u32(n_cols, "X")?;
        let (totals, target, _) = py
            .detach(|| {
                scllm_pp::normalize::normalize_rows_excluding(
                    values, &indptr, &idx, n_cols, f, target_sum,
                )
            })
            .map_err(|e| to_py(e.into()))?;
        return Ok((vector(py, totals), target));
    }
    // without exclusion the column indices are not read (nor by scanpy's normalize_total):
    // only their count is checked; the calls that read them refuse one outside 0..n_cols
    let n = indices.len();
    if n != values.len() {
        return Err(value_error(format!(
            "X: {n} column indices for {} stored values",
            values.len()
        )));
    }
    let (totals, target) =
        py.detach(|| scllm_pp::normalize::normalize_rows(values, &indptr, target_sum));
    Ok((vector(py, totals), target))
}

/// `log1p` of float32 values in place (CSR values or a dense matrix), over `ln(base)`.
#[pyfunction]
#[pyo3(signature = (values, base=None))]
fn log1p(
    py: Python<'_>,
    values: numpy::PyReadwriteArray1<'_, f32>,
    base: Option<f64>,
) -> PyResult<()> {
    let mut values = values;
    let v = values.as_slice_mut()?;
    if base.is_some_and(|b| !(b > 0.0 && b != 1.0)) {
        return Err(value_error("base must be positive and not 1"));
    }
    py.detach(|| scllm_pp::normalize::log1p_values(v, base));
    Ok(())
}

/// The highly variable genes: the `var` columns scanpy writes, by name.
#[pyfunction]
#[pyo3(signature = (x, n_top_genes, flavor, span=0.3, n_bins=20, batches=None, gene_names=None, cutoffs=None))]
#[allow(clippy::too_many_arguments)]
fn highly_variable_genes<'py>(
    py: Python<'py>,
    x: MatrixIn<'py>,
    n_top_genes: usize,
    flavor: &str,
    span: f64,
    n_bins: usize,
    batches: Option<PyReadonlyArray1<'py, u32>>,
    gene_names: Option<Vec<String>>,
    cutoffs: Option<(f64, f64, f64, f64)>,
) -> PyResult<Bound<'py, PyDict>> {
    let flavor: HvgFlavor = flavor.parse().map_err(value_error)?;
    let opts = HvgOptions {
        n_top_genes,
        flavor,
        span,
        n_bins,
        // (min_mean, max_mean, min_disp, max_disp)
        cutoffs: cutoffs.map(
            |(min_mean, max_mean, min_disp, max_disp)| scllm_pp::Cutoffs {
                min_mean,
                max_mean,
                min_disp,
                max_disp,
            },
        ),
    };
    if let (MatrixIn::Csr(csr), HvgFlavor::SeuratV3, None) = (&x, flavor, &batches) {
        // counts on one batch: read over numpy's own buffers (no copy of X)
        let parts = csr.parts("X")?;
        let c = parts.as_ref()?;
        let r = py
            .detach(|| scllm_pp::seurat_v3_counts(c, &opts))
            .map_err(|e| to_py(e.into()))?;
        return hvg_columns(py, r);
    }
    let c = x.to_csr("X")?;
    let batches = batches
        .map(|b| b.as_slice().map(<[u32]>::to_vec))
        .transpose()?;
    if batches.as_ref().is_some_and(|b| b.len() != c.nrows) {
        return Err(value_error("batch_key: one batch per cell is needed"));
    }
    let r = py
        .detach(move || {
            let batches = batches.as_deref().map(|ids| scllm_pp::Batches {
                ids,
                gene_names: gene_names.as_deref(),
            });
            scllm_pp::highly_variable_genes(&c, &opts, batches)
        })
        .map_err(|e| to_py(e.into()))?;
    hvg_columns(py, r)
}

/// The `var` columns of a highly-variable-genes result, by name.
fn hvg_columns(py: Python<'_>, r: scllm_pp::HvgResult) -> PyResult<Bound<'_, PyDict>> {
    let mut var = scllm_io::DataFrame::new(vec![String::new(); r.highly_variable.len()]);
    r.write_var(&mut var);
    let d = PyDict::new(py);
    for (name, col) in &var.columns {
        d.set_item(name, column_to_py(py, col)?)?;
    }
    Ok(d)
}

fn passing<'py>(
    py: Python<'py>,
    p: Passing,
) -> PyResult<(Bound<'py, PyArray1<u64>>, Bound<'py, PyDict>)> {
    let d = PyDict::new(py);
    for (name, col) in &p.columns {
        d.set_item(*name, column_to_py(py, col)?)?;
    }
    Ok((
        vector(py, p.kept.into_iter().map(|i| i as u64).collect()),
        d,
    ))
}

/// The cells passing every given threshold, and the `obs` columns scanpy records for them.
#[pyfunction]
#[pyo3(signature = (x, min_counts=None, min_genes=None, max_counts=None, max_genes=None))]
fn filter_cells<'py>(
    py: Python<'py>,
    x: Csr<'py>,
    min_counts: Option<f64>,
    min_genes: Option<usize>,
    max_counts: Option<f64>,
    max_genes: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<u64>>, Bound<'py, PyDict>)> {
    let c = x.to_compressed("X")?;
    let f = CellFilter {
        min_counts,
        min_genes,
        max_counts,
        max_genes,
    };
    let p = py
        .detach(move || cells_passing(&c, &f))
        .map_err(|e| to_py(e.into()))?;
    passing(py, p)
}

/// The genes passing every given threshold, and the `var` columns scanpy records for them.
#[pyfunction]
#[pyo3(signature = (x, min_counts=None, min_cells=None, max_counts=None, max_cells=None))]
fn filter_genes<'py>(
    py: Python<'py>,
    x: Csr<'py>,
    min_counts: Option<f64>,
    min_cells: Option<usize>,
    max_counts: Option<f64>,
    max_cells: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<u64>>, Bound<'py, PyDict>)> {
    let c = x.to_compressed("X")?;
    let f = GeneFilter {
        min_counts,
        min_cells,
        max_counts,
        max_cells,
    };
    let p = py
        .detach(move || genes_passing(&c, &f))
        .map_err(|e| to_py(e.into()))?;
    passing(py, p)
}

/// Each gene scaled to unit variance (and zero mean), clipped at `max_value`: the matrix
/// (dense float32 when zero-centring, else the CSR values), the means and the stds.
#[pyfunction]
#[pyo3(signature = (x, zero_center=true, max_value=None))]
fn scale<'py>(
    py: Python<'py>,
    x: Csr<'py>,
    zero_center: bool,
    max_value: Option<f64>,
) -> PyResult<(Bound<'py, PyAny>, Vector<'py, f64>, Vector<'py, f64>)> {
    let c = x.to_compressed("X")?;
    let ncols = c.ncols;
    let (m, mean, std) = py.detach(move || scllm_pp::scale(&c, zero_center, max_value));
    let out = match m {
        scllm_io::Matrix::Dense { data, .. } => matrix_f32(py, data.to_f32(), ncols)?,
        scllm_io::Matrix::Csr(c) => vector(py, f32_values(c)).into_any(),
        scllm_io::Matrix::Csc(_) => return Err(value_error("internal: scale returned CSC")),
    };
    Ok((out, vector(py, mean), vector(py, std)))
}

/// scGPT's per-cell value binning: the bins (same sparsity, int64) and each cell's edges.
#[pyfunction]
#[pyo3(signature = (x, n_bins, seed=0, per_cell=false))]
fn binning<'py>(
    py: Python<'py>,
    x: Csr<'py>,
    n_bins: usize,
    seed: u32,
    per_cell: bool,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyAny>)> {
    if n_bins < 2 {
        return Err(value_error("n_bins must be at least 2"));
    }
    let c = x.to_compressed("X")?;
    let rng = if per_cell {
        BinRng::per_cell(seed as u64)
    } else {
        BinRng::numpy(seed)
    };
    let (b, edges) = py
        .detach(move || Binner::new(n_bins, rng).bin_matrix(&c))
        .map_err(|e| to_py(e.into()))?;
    let n = b.nrows;
    let bins = match b.data {
        scllm_io::Values::I64(v) => v,
        _ => return Err(value_error("internal: bins are not int64")),
    };
    let edges = numpy::IntoPyArray::into_pyarray(edges, py).reshape([n, n_bins])?;
    Ok((vector(py, bins), edges.into_any()))
}
