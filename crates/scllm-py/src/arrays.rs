//! numpy/scipy arrays in, scllm-io matrices and columns out (and back): CSR parts are checked
//! before use, so a malformed matrix is a `ValueError`, never an out-of-bounds read.

use numpy::{
    IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use scllm_io::{AnnData, Column, Compressed, DataFrame, Matrix, UnsValue, Values};

use std::path::{Path, PathBuf};

use crate::errors::{to_py, value_error};

/// An index array as scipy stores it (int32 or int64).
#[derive(FromPyObject)]
pub(crate) enum Index<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

impl Index<'_> {
    /// The indices as u32 for a kernel that checks them against `ncols` where it reads them:
    /// int32 ones borrowed as they are (a negative one read as u32 is >= 2^31, past any gene
    /// while `ncols <= i32::MAX`), others converted.
    pub(crate) fn as_u32(&self, ncols: usize, what: &str) -> PyResult<std::borrow::Cow<'_, [u32]>> {
        Ok(match self {
            Index::I32(a) if ncols <= i32::MAX as usize => {
                std::borrow::Cow::Borrowed(bytemuck::cast_slice::<i32, u32>(a.as_slice()?))
            }
            other => std::borrow::Cow::Owned(
                other
                    .to_vec()?
                    .ok_or_else(|| value_error(format!("{what}: a negative column index")))?,
            ),
        })
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Index::I32(a) => a.len(),
            Index::I64(a) => a.len(),
        }
    }

    /// The entries as `T` (u32 column indices, u64 offsets), refused when one does not fit.
    fn to_vec<T: TryFrom<i64>>(&self) -> PyResult<Option<Vec<T>>> {
        fn conv<S: Copy + Into<i64>, T: TryFrom<i64>>(v: &[S]) -> Option<Vec<T>> {
            v.iter().map(|&x| T::try_from(x.into()).ok()).collect()
        }
        Ok(match self {
            Index::I32(a) => conv(a.as_slice()?),
            Index::I64(a) => conv(a.as_slice()?),
        })
    }
}

/// A cells × genes CSR matrix of float32 values: `(data, indices, indptr, (n_rows, n_cols))`,
/// scipy's `csr_matrix` parts (the Python half casts the values to float32 as scanpy does).
#[derive(FromPyObject)]
pub(crate) struct Csr<'py>(
    PyReadonlyArray1<'py, f32>,
    Index<'py>,
    Index<'py>,
    (usize, usize),
);

impl Csr<'_> {
    /// The row offsets, checked: `n_rows + 1` of them from 0, never decreasing, ending at the
    /// `nnz` stored values.
    fn offsets(&self, nnz: usize, what: &str) -> PyResult<Vec<u64>> {
        let nrows = self.3 .0;
        let indptr = checked_indptr(&self.2, nnz, what)?;
        if indptr.len() != nrows + 1 {
            return Err(value_error(format!(
                "{what}: indptr has {} entries for {nrows} rows (need {})",
                indptr.len(),
                nrows + 1
            )));
        }
        Ok(indptr)
    }

    /// The matrix, checked: `indptr` has `n_rows + 1` entries from 0, never decreasing, ending
    /// at the number of stored values; every column index is in range.
    pub(crate) fn to_compressed(&self, what: &str) -> PyResult<Compressed> {
        let Csr(data, indices, _, (nrows, ncols)) = self;
        let data = data.as_slice()?.to_vec();
        let indptr = self.offsets(data.len(), what)?;
        check_indices(indices, data.len(), *ncols, what)?;
        let indices: Vec<u32> = indices
            .to_vec()?
            .ok_or_else(|| value_error(format!("{what}: a negative column index")))?;
        Ok(Compressed {
            nrows: *nrows,
            ncols: *ncols,
            indptr,
            indices,
            data: Values::F32(data),
        })
    }

    /// The parts, borrowed (see [`CsrParts`]); the offsets are checked as in
    /// [`Csr::to_compressed`], the column indices by the kernel that reads them.
    pub(crate) fn parts(&self, what: &str) -> PyResult<CsrParts<'_>> {
        let Csr(data, indices, _, (_, ncols)) = self;
        let data = data.as_slice()?;
        let indptr = self.offsets(data.len(), what)?;
        Ok(CsrParts {
            ncols: *ncols,
            indptr,
            indices: indices.as_u32(*ncols, what)?,
            data,
        })
    }
}

/// A [`Csr`]'s parts as a kernel that only reads them takes them, borrowed where numpy's
/// buffers allow: the float32 values and int32 column indices as they are (read as u32: a
/// negative one becomes an index past any gene, which the kernel refuses), the offsets
/// converted (one per row).
pub(crate) struct CsrParts<'a> {
    ncols: usize,
    indptr: Vec<u64>,
    indices: std::borrow::Cow<'a, [u32]>,
    data: &'a [f32],
}

impl CsrParts<'_> {
    pub(crate) fn as_ref(&self) -> PyResult<scllm_pp::CsrRef<'_>> {
        scllm_pp::CsrRef::new(self.ncols, &self.indptr, &self.indices, self.data)
            .map_err(|e| value_error(e.to_string()))
    }
}

/// Where a cells × genes matrix is: handed over as CSR parts, or in the file of a backed
/// AnnData, `(path, element, (n_rows, n_cols))` with `element` `X`, `layers/NAME` or `raw/X`,
/// read there by the CLI's own reader (Python never holds the matrix).
#[derive(FromPyObject)]
pub(crate) enum MatrixIn<'py> {
    Csr(Csr<'py>),
    File((PathBuf, String, (usize, usize))),
}

impl MatrixIn<'_> {
    /// The matrix, checked (`what` names it in messages about handed-over parts; a file's
    /// messages name the file and the element).
    pub(crate) fn to_matrix(&self, what: &str) -> PyResult<Matrix> {
        match self {
            MatrixIn::Csr(c) => Ok(Matrix::Csr(c.to_compressed(what)?)),
            MatrixIn::File((path, element, (nrows, ncols))) => {
                scllm_io::h5ad::read_matrix(path, element, *nrows, *ncols)
                    .map_err(|e| to_py(e.into()))
            }
        }
    }

    /// The matrix as CSR (a file's dense or CSC matrix converted).
    pub(crate) fn to_csr(&self, what: &str) -> PyResult<Compressed> {
        Ok(match self.to_matrix(what)? {
            Matrix::Csr(c) => c,
            m => m.to_csr(),
        })
    }

    /// The file a backed AnnData's matrix is read from (messages name it).
    pub(crate) fn file(&self) -> Option<&Path> {
        match self {
            MatrixIn::Csr(_) => None,
            MatrixIn::File((path, ..)) => Some(path),
        }
    }
}

/// CSR row offsets, checked: from 0, never decreasing, ending at the `nnz` stored values.
pub(crate) fn checked_indptr(indptr: &Index<'_>, nnz: usize, what: &str) -> PyResult<Vec<u64>> {
    let indptr: Vec<u64> = indptr
        .to_vec()?
        .ok_or_else(|| value_error(format!("{what}: indptr has a negative entry")))?;
    if indptr.first() != Some(&0)
        || indptr.windows(2).any(|w| w[1] < w[0])
        || *indptr.last().unwrap_or(&0) as usize != nnz
    {
        return Err(value_error(format!(
            "{what}: indptr must start at 0, never decrease and end at the {nnz} stored values; \
             rebuild the matrix with scipy.sparse.csr_matrix"
        )));
    }
    Ok(indptr)
}

/// CSR column indices, checked: one per stored value, each in `0..ncols`.
pub(crate) fn check_indices(
    indices: &Index<'_>,
    nnz: usize,
    ncols: usize,
    what: &str,
) -> PyResult<()> {
    // the largest index read as unsigned (a negative one becomes a huge one), in blocks on the
    // thread pool: a loop the compiler vectorises, where `all` stops to branch on each index
    fn most<S: Copy + Sync, U: Ord + Copy + Default + Send>(
        v: &[S],
        f: impl Fn(S) -> U + Sync,
    ) -> U {
        use rayon::prelude::*;
        v.par_chunks(1 << 16)
            .map(|c| c.iter().fold(U::default(), |m, &j| m.max(f(j))))
            .max()
            .unwrap_or_default()
    }
    let (n, fine) = match indices {
        Index::I32(a) => {
            let v = a.as_slice()?;
            (v.len(), (most(v, |j: i32| j as u32) as u64) < ncols as u64)
        }
        Index::I64(a) => {
            let v = a.as_slice()?;
            (v.len(), most(v, |j: i64| j as u64) < ncols as u64)
        }
    };
    if n != nnz {
        return Err(value_error(format!(
            "{what}: {n} column indices for {nnz} stored values"
        )));
    }
    if !fine {
        return Err(value_error(format!(
            "{what}: a column index outside 0..{ncols}"
        )));
    }
    Ok(())
}

/// An `obs`/`var` column as the Python half hands it over: numbers, booleans, a categorical
/// (codes, categories; code -1 is missing) or strings.
#[derive(FromPyObject)]
pub(crate) enum ColumnIn<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    I64(PyReadonlyArray1<'py, i64>),
    Bool(PyReadonlyArray1<'py, bool>),
    Categorical((PyReadonlyArray1<'py, i32>, Vec<String>)),
    Str(Vec<String>),
}

impl ColumnIn<'_> {
    pub(crate) fn to_column(&self, n: usize, name: &str) -> PyResult<Column> {
        let c = match self {
            ColumnIn::F64(a) => Column::F64(a.as_slice()?.to_vec()),
            ColumnIn::I64(a) => Column::I64(a.as_slice()?.to_vec()),
            ColumnIn::Bool(a) => Column::Bool(a.as_slice()?.to_vec()),
            ColumnIn::Categorical((codes, cats)) => {
                let codes = codes.as_slice()?.to_vec();
                if let Some(&c) = codes
                    .iter()
                    .find(|&&c| c < -1 || c as i64 >= cats.len() as i64)
                {
                    return Err(value_error(format!(
                        "column `{name}`: categorical code {c} outside the {} categories",
                        cats.len()
                    )));
                }
                Column::Categorical {
                    codes,
                    categories: Box::new(Column::Str(cats.clone())),
                    ordered: false,
                }
            }
            ColumnIn::Str(v) => Column::Str(v.clone()),
        };
        if c.len() != n {
            return Err(value_error(format!(
                "column `{name}` has {} entries for {n} rows",
                c.len()
            )));
        }
        Ok(c)
    }
}

/// A column back as a numpy array, or a list of strings.
pub(crate) fn column_to_py<'py>(py: Python<'py>, c: &Column) -> PyResult<Bound<'py, PyAny>> {
    Ok(match c {
        Column::F64(v) => v.clone().into_pyarray(py).into_any(),
        Column::F32(v) => v.clone().into_pyarray(py).into_any(),
        Column::I64(v) => v.clone().into_pyarray(py).into_any(),
        Column::I32(v) => v.clone().into_pyarray(py).into_any(),
        Column::Bool(v) => v.clone().into_pyarray(py).into_any(),
        Column::Str(v) => PyList::new(py, v)?.into_any(),
        // categoricals and nullable columns: their values as strings (missing: None)
        _ => PyList::new(py, c.to_strings())?.into_any(),
    })
}

/// An `uns` entry as Python values (dicts, numbers, strings, arrays).
pub(crate) fn uns_to_py<'py>(py: Python<'py>, u: &UnsValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match u {
        UnsValue::Str(s) => s.into_pyobject(py)?.into_any(),
        UnsValue::F64(v) => v.into_pyobject(py)?.into_any(),
        UnsValue::I64(v) => v.into_pyobject(py)?.into_any(),
        UnsValue::Bool(v) => v.into_pyobject(py)?.to_owned().into_any(),
        UnsValue::Array(c) => column_to_py(py, c)?,
        UnsValue::Dict(kv) => {
            let d = PyDict::new(py);
            for (k, v) in kv {
                d.set_item(k, uns_to_py(py, v)?)?;
            }
            d.into_any()
        }
    })
}

/// A float32 vector as a 2-D numpy array without a copy.
pub(crate) fn matrix_f32<'py>(
    py: Python<'py>,
    v: Vec<f32>,
    ncols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    matrix(py, v, ncols)
}

/// A row-major matrix as a 2-D numpy array of its own element type, without a copy.
pub(crate) fn matrix<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    ncols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let n = v.len().checked_div(ncols).unwrap_or(0);
    Ok(v.into_pyarray(py).reshape([n, ncols])?.into_any())
}

/// A vector as a 1-D numpy array without a copy.
pub(crate) fn vector<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
) -> Bound<'py, PyArray1<T>> {
    v.into_pyarray(py)
}

/// A data frame of `index` and the columns handed over, each checked for length.
pub(crate) fn frame(
    index: Vec<String>,
    cols: Vec<(String, ColumnIn<'_>)>,
    what: &str,
) -> PyResult<DataFrame> {
    let mut df = DataFrame::new(index);
    let n = df.nrows();
    for (name, c) in cols {
        let col = c.to_column(n, &format!("{what}['{name}']"))?;
        df.set(&name, col);
    }
    Ok(df)
}

/// Cells as the Python half hands them over: X (CSR float32), obs names, var names, obs
/// columns, var columns, and optionally one embedding (its obsm key, cells × d float32).
#[derive(FromPyObject)]
pub(crate) struct CellsIn<'py>(
    MatrixIn<'py>,
    Vec<String>,
    Vec<String>,
    Vec<(String, ColumnIn<'py>)>,
    Vec<(String, ColumnIn<'py>)>,
    Option<(String, PyReadonlyArray2<'py, f32>)>,
);

impl CellsIn<'_> {
    /// The cells as an AnnData named `name` in messages, every part checked.
    pub(crate) fn into_anndata(self, name: &str) -> PyResult<AnnData> {
        let CellsIn(x, obs_names, var_names, obs, var, rep) = self;
        let name = x
            .file()
            .map_or(name.to_string(), |p| p.display().to_string());
        let m = x.to_matrix("X")?;
        let (nrows, ncols) = m.shape();
        if obs_names.len() != nrows || var_names.len() != ncols {
            return Err(value_error(format!(
                "X is {nrows} × {ncols} but there are {} obs names and {} var names",
                obs_names.len(),
                var_names.len()
            )));
        }
        let obs = frame(obs_names, obs, "obs")?;
        let var = frame(var_names, var, "var")?;
        let mut a = AnnData::new(m, obs, var);
        a.source = Some(name.as_str().into());
        if let Some((k, e)) = rep {
            let m = dense_f32(&format!("{name}: obsm['{k}']"), &e)?;
            a.obsm.push((k, m));
        }
        Ok(a)
    }
}

/// A 2-D float32 array (an `obsm` entry) as a dense matrix.
pub(crate) fn dense_f32(what: &str, e: &PyReadonlyArray2<'_, f32>) -> PyResult<Matrix> {
    let [rows, cols] = e.shape() else {
        return Err(value_error(format!("{what} must be 2-D")));
    };
    Ok(Matrix::Dense {
        nrows: *rows,
        ncols: *cols,
        data: Values::F32(e.as_array().iter().copied().collect()),
    })
}
