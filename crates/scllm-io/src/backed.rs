//! Backed access to large `.h5ad` files: `obs`/`var` in memory, the matrix read in blocks of rows,
//! so a pass over millions of cells needs memory for one block only. Also a writer that appends
//! CSR rows block by block.

use std::path::{Path, PathBuf};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, File, Group, LocationType};

use crate::error::{H5Context, IoError, Result};
use crate::frame::{DataFrame, UnsValue};
use crate::h5ad::open::open_h5ad;
use crate::h5ad::read::read_frames;
use crate::h5ad::write::{write_uns, Compression, Writer};
use crate::matrix::{Compressed, Matrix, Values};

enum Layout {
    Csr {
        data: Dataset,
        indices: Dataset,
        indptr: Vec<u64>,
    },
    Dense {
        ds: Dataset,
    },
}

/// An `.h5ad` file opened for block-wise reading of X or of a layer.
pub struct BackedAnnData {
    path: PathBuf,
    _file: File,
    pub obs: DataFrame,
    pub var: DataFrame,
    layout: Layout,
    nrows: usize,
    ncols: usize,
    dtype: &'static str,
}

fn read_slice(ds: &Dataset, start: usize, end: usize) -> hdf5::Result<Values> {
    let td = ds.dtype()?.to_descriptor()?;
    let s = start..end;
    Ok(match td {
        TypeDescriptor::Float(FloatSize::U4) => {
            Values::F32(ds.read_slice_1d(s)?.into_raw_vec_and_offset().0)
        }
        TypeDescriptor::Float(_) => Values::F64(ds.read_slice_1d(s)?.into_raw_vec_and_offset().0),
        TypeDescriptor::Integer(IntSize::U8)
        | TypeDescriptor::Unsigned(IntSize::U4 | IntSize::U8) => {
            Values::I64(ds.read_slice_1d(s)?.into_raw_vec_and_offset().0)
        }
        _ => Values::I32(ds.read_slice_1d(s)?.into_raw_vec_and_offset().0),
    })
}

impl BackedAnnData {
    /// Open `path` and prepare to read `element`: `"X"` or `"layers/NAME"` (or `"raw/X"`).
    pub fn open(path: impl AsRef<Path>, element: &str) -> Result<Self> {
        let path = path.as_ref();
        let file = open_h5ad(path)?;
        let meta = read_frames(path, &file)?;
        let (obs, var) = meta;
        let root: &Group = &file;
        let missing = || {
            IoError::field(
                path,
                element,
                if element == "X" {
                    "missing: this AnnData has no expression matrix. Store counts in X and save again.".to_string()
                } else {
                    "no such element".to_string()
                },
            )
        };
        let kind = root.loc_type_by_name(element).map_err(|_| missing())?;
        let (layout, nrows, ncols, dtype) = match kind {
            LocationType::Group => {
                let g = root.group(element).at(path, element)?;
                let enc = g
                    .attr("encoding-type")
                    .ok()
                    .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>().ok());
                let fmt = g
                    .attr("h5sparse_format")
                    .ok()
                    .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>().ok());
                let is_csr = enc
                    .as_ref()
                    .map(|e| e.as_str() == "csr_matrix")
                    .unwrap_or(false)
                    || fmt.as_ref().map(|e| e.as_str() == "csr").unwrap_or(false);
                if !is_csr {
                    return Err(IoError::field(
                        path,
                        element,
                        "block reading needs CSR (cells as rows) or dense storage; this is CSC. Convert once with `scllm preprocess IN -o OUT` (which writes CSR).",
                    ));
                }
                let shape = g
                    .attr("shape")
                    .or_else(|_| g.attr("h5sparse_shape"))
                    .and_then(|a| a.read_raw::<i64>())
                    .at(path, &format!("{element}/shape"))?;
                let data = g.dataset("data").at(path, element)?;
                let indices = g.dataset("indices").at(path, element)?;
                let indptr = g
                    .dataset("indptr")
                    .and_then(|d| d.read_raw::<u64>())
                    .at(path, element)?;
                let dtype = read_slice(&data, 0, 0).at(path, element)?.dtype();
                (
                    Layout::Csr {
                        data,
                        indices,
                        indptr,
                    },
                    shape[0] as usize,
                    shape[1] as usize,
                    dtype,
                )
            }
            LocationType::Dataset => {
                let ds = root.dataset(element).at(path, element)?;
                let shape = ds.shape();
                if shape.len() != 2 {
                    return Err(IoError::field(path, element, "expected a 2-D matrix"));
                }
                let dtype = read_slice_dense(&ds, 0, 0, shape[1])
                    .at(path, element)?
                    .dtype();
                (Layout::Dense { ds }, shape[0], shape[1], dtype)
            }
            _ => return Err(missing()),
        };
        if nrows != obs.nrows() {
            return Err(IoError::field(
                path,
                element,
                format!("{nrows} rows but obs has {}", obs.nrows()),
            ));
        }
        Ok(BackedAnnData {
            path: path.to_path_buf(),
            _file: file,
            obs,
            var,
            layout,
            nrows,
            ncols,
            dtype,
        })
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.nrows, self.ncols)
    }
    pub fn dtype(&self) -> &'static str {
        self.dtype
    }
    /// Stored non-zeros (CSR) or entries (dense).
    pub fn stored(&self) -> u64 {
        match &self.layout {
            Layout::Csr { indptr, .. } => *indptr.last().unwrap_or(&0),
            Layout::Dense { .. } => (self.nrows * self.ncols) as u64,
        }
    }

    /// Rows `[start, end)` as CSR in the stored dtype (dense storage is converted).
    pub fn rows(&self, start: usize, end: usize) -> Result<Compressed> {
        let end = end.min(self.nrows);
        let field = |s: &str| format!("rows {start}..{end} of {s}");
        match &self.layout {
            Layout::Csr {
                data,
                indices,
                indptr,
            } => {
                let (a, b) = (indptr[start] as usize, indptr[end] as usize);
                let vals = read_slice(data, a, b).at(&self.path, &field("data"))?;
                let idx: Vec<u32> = indices
                    .read_slice_1d::<u32, _>(a..b)
                    .at(&self.path, &field("indices"))?
                    .into_raw_vec_and_offset()
                    .0;
                let ptr = indptr[start..=end].iter().map(|&p| p - a as u64).collect();
                Ok(Compressed {
                    nrows: end - start,
                    ncols: self.ncols,
                    indptr: ptr,
                    indices: idx,
                    data: vals,
                })
            }
            Layout::Dense { ds } => {
                let vals =
                    read_slice_dense(ds, start, end, self.ncols).at(&self.path, &field("X"))?;
                let m = crate::Matrix::Dense {
                    nrows: end - start,
                    ncols: self.ncols,
                    data: vals,
                };
                Ok(m.to_csr())
            }
        }
    }

    /// Iterate over the rows in blocks of `block_rows`.
    pub fn blocks(
        &self,
        block_rows: usize,
    ) -> impl Iterator<Item = Result<(usize, Compressed)>> + '_ {
        let step = block_rows.max(1);
        (0..self.nrows)
            .step_by(step)
            .map(move |s| self.rows(s, s + step).map(|b| (s, b)))
    }
}

fn read_slice_dense(ds: &Dataset, start: usize, end: usize, ncols: usize) -> hdf5::Result<Values> {
    let td = ds.dtype()?.to_descriptor()?;
    let s = (start..end, 0..ncols);
    Ok(match td {
        TypeDescriptor::Float(FloatSize::U4) => {
            Values::F32(ds.read_slice_2d(s)?.into_raw_vec_and_offset().0)
        }
        TypeDescriptor::Float(_) => Values::F64(ds.read_slice_2d(s)?.into_raw_vec_and_offset().0),
        TypeDescriptor::Integer(IntSize::U8) => {
            Values::I64(ds.read_slice_2d(s)?.into_raw_vec_and_offset().0)
        }
        _ => Values::I32(ds.read_slice_2d(s)?.into_raw_vec_and_offset().0),
    })
}

/// Writes an `.h5ad` whose X is CSR float32, appended block by block; obs/var/uns are written
/// at the end. Written to a temporary file and renamed on [`CsrStreamWriter::finish`].
pub struct CsrStreamWriter {
    path: PathBuf,
    tmp: PathBuf,
    w: Writer,
    file: Option<File>,
    data: Dataset,
    indices: Dataset,
    indptr: Vec<u64>,
    ncols: usize,
}

impl CsrStreamWriter {
    pub fn create(path: impl AsRef<Path>, ncols: usize, compression: Compression) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let tmp = scllm_fs::temp_path_for(&path);
        let w = Writer {
            path: path.clone(),
            compression,
        };
        let file = crate::h5ad::handles::create(&tmp)
            .map_err(|e| IoError::file(&path, format!("cannot create: {e}")))?;
        let g = file.create_group("X").at(&path, "X")?;
        let chunk = 1 << 16;
        let mk = |name: &str, f32: bool| -> hdf5::Result<Dataset> {
            let b = if f32 {
                g.new_dataset::<f32>()
            } else {
                g.new_dataset::<i32>()
            };
            compression.apply(b.chunk(chunk)).shape(0..).create(name)
        };
        let data = mk("data", true).at(&path, "X/data")?;
        let indices = mk("indices", false).at(&path, "X/indices")?;
        Ok(CsrStreamWriter {
            path,
            tmp,
            w,
            file: Some(file),
            data,
            indices,
            indptr: vec![0],
            ncols,
        })
    }

    /// Append rows (CSR, same number of columns).
    pub fn append(&mut self, block: &Compressed) -> Result<()> {
        if block.ncols != self.ncols {
            return Err(IoError::file(
                &self.path,
                format!("block has {} columns, expected {}", block.ncols, self.ncols),
            ));
        }
        let start = *self.indptr.last().unwrap() as usize;
        let end = start + block.nnz();
        let converted;
        let vals: &[f32] = match &block.data {
            Values::F32(v) => v,
            other => {
                converted = other.to_f32();
                &converted
            }
        };
        (|| -> hdf5::Result<()> {
            self.data.resize(end)?;
            self.indices.resize(end)?;
            if end > start {
                self.data.write_slice(vals, start..end)?;
                // u32 column ids into the int32 dataset: HDF5 converts in place of a copy here
                self.indices.write_slice(&block.indices, start..end)?;
            }
            Ok(())
        })()
        .at(&self.path, "X")?;
        for i in 0..block.nrows {
            self.indptr.push(start as u64 + block.indptr[i + 1]);
        }
        Ok(())
    }

    pub fn rows_written(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Write indptr, shape, obs, var, obsm and uns; then move the file into place.
    pub fn finish(
        mut self,
        obs: &DataFrame,
        var: &DataFrame,
        obsm: &[(String, Matrix)],
        uns: &[(String, UnsValue)],
    ) -> Result<()> {
        let file = self.file.take().expect("finish called once");
        let res = (|| -> Result<()> {
            if obs.nrows() != self.rows_written() || var.nrows() != self.ncols {
                return Err(IoError::file(
                    &self.path,
                    format!(
                        "wrote {}x{} but obs/var have {}/{} rows",
                        self.rows_written(),
                        self.ncols,
                        obs.nrows(),
                        var.nrows()
                    ),
                ));
            }
            self.w.root_attrs(&file)?;
            let g = file.group("X").at(&self.path, "X")?;
            self.w.set_encoding(&g, "csr_matrix", "0.1.0")?;
            let shape = [self.rows_written() as i64, self.ncols as i64];
            let a = g
                .new_attr::<i64>()
                .shape(2)
                .create("shape")
                .at(&self.path, "X")?;
            a.write_raw(&shape).at(&self.path, "X")?;
            if *self.indptr.last().unwrap() < i32::MAX as u64 {
                let p: Vec<i32> = self.indptr.iter().map(|&x| x as i32).collect();
                self.w.array(&g, "indptr", &p, "X/indptr")?;
            } else {
                let p: Vec<i64> = self.indptr.iter().map(|&x| x as i64).collect();
                self.w.array(&g, "indptr", &p, "X/indptr")?;
            }
            self.w.dataframe(&file, "obs", obs)?;
            self.w.dataframe(&file, "var", var)?;
            for (k, m) in obsm {
                if m.shape().0 != self.rows_written() {
                    return Err(IoError::file(
                        &self.path,
                        format!(
                            "obsm['{k}'] has {} rows for {} cells",
                            m.shape().0,
                            self.rows_written()
                        ),
                    ));
                }
            }
            self.w.dict_of_matrices(&file, "obsm", obsm)?;
            for name in ["varm", "obsp", "varp", "layers"] {
                let g = file.create_group(name).at(&self.path, name)?;
                self.w.set_encoding(&g, "dict", "0.1.0")?;
            }
            write_uns(&self.w, &file, uns)?;
            file.close()
                .map_err(|e| IoError::file(&self.path, format!("closing: {e}")))?;
            Ok(())
        })();
        scllm_fs::finish(&self.tmp, &self.path, res, |e| IoError::os(&self.path, e))
    }
}

impl Drop for CsrStreamWriter {
    fn drop(&mut self) {
        // Not finished: remove the temporary file instead of leaving a half-written one.
        if self.file.take().is_some() {
            scllm_fs::discard(&self.tmp);
        }
    }
}
