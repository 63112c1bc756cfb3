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
use crate::h5ad::read_primitives::{
    attr_shape, attr_string, check_stored, compressed_layout_fits, read_indptr,
};
use crate::h5ad::write::{
    close_checked, copy_uns, verify_written, write_failed, write_uns, Compression, Expected, Writer,
};
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
        crate::h5ad::guard::reading(path);
        crate::h5ad::guard::structure(|| Self::open_guarded(path, element))
    }

    fn open_guarded(path: &Path, element: &str) -> Result<Self> {
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
                let enc = attr_string(&g, "encoding-type");
                let fmt = attr_string(&g, "h5sparse_format");
                let is_csr = enc.as_deref() == Some("csr_matrix") || fmt.as_deref() == Some("csr");
                if !is_csr {
                    return Err(IoError::field(
                        path,
                        element,
                        "block reading needs CSR (cells as rows) or dense storage; this is CSC. Convert once with `scllm preprocess IN -o OUT` (which writes CSR).",
                    ));
                }
                let (nrows, ncols) = attr_shape(&g, "shape")
                    .or_else(|| attr_shape(&g, "h5sparse_shape"))
                    .ok_or_else(|| {
                        IoError::field(
                            path,
                            format!("{element}/shape"),
                            "missing or not two non-negative integers; the file is damaged",
                        )
                    })?;
                let data = g.dataset("data").at(path, element)?;
                let indices = g.dataset("indices").at(path, element)?;
                for (ds, part) in [(&data, "data"), (&indices, "indices")] {
                    check_stored(ds).at(path, &format!("{element}/{part}"))?;
                }
                let indptr = g
                    .dataset("indptr")
                    .and_then(|d| read_indptr(&d))
                    .at(path, &format!("{element}/indptr"))?;
                // blocks are sliced by indptr
                let stored = data.size();
                if !compressed_layout_fits(&indptr, nrows, indices.size(), stored, (nrows, ncols)) {
                    return Err(IoError::field(
                        path,
                        element,
                        format!(
                            "inconsistent sparse matrix (shape {nrows}x{ncols}, indptr {} entries not rising from 0 to the stored count, indices {}, data {stored}); the file is damaged",
                            indptr.len(),
                            indices.size()
                        ),
                    ));
                }
                let dtype = read_slice(&data, 0, 0).at(path, element)?.dtype();
                (
                    Layout::Csr {
                        data,
                        indices,
                        indptr,
                    },
                    nrows,
                    ncols,
                    dtype,
                )
            }
            LocationType::Dataset => {
                let ds = root.dataset(element).at(path, element)?;
                let shape = ds.shape();
                if shape.len() != 2 {
                    return Err(IoError::field(
                        path,
                        element,
                        format!("a {}-D array where a 2-D matrix is expected", shape.len()),
                    ));
                }
                let dtype = read_slice_dense(&ds, 0, 0, shape[1])
                    .at(path, element)?
                    .dtype();
                (Layout::Dense { ds }, shape[0], shape[1], dtype)
            }
            _ => return Err(missing()),
        };
        // raw/X has its own var; X and layers have this one's
        if nrows != obs.nrows() || (!element.starts_with("raw") && ncols != var.nrows()) {
            return Err(IoError::field(
                path,
                element,
                format!(
                    "shape {nrows}x{ncols} does not match the {} cells of obs and {} genes of var; the file is damaged",
                    obs.nrows(),
                    var.nrows()
                ),
            ));
        }
        // only now that the shape is right: what a dense X claims against what is stored
        if let Layout::Dense { ds } = &layout {
            check_stored(ds).at(path, element)?;
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

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.nrows, self.ncols)
    }
    pub fn dtype(&self) -> &'static str {
        self.dtype
    }
    /// `csr` or `dense`, as [`crate::Matrix::kind`] names them.
    pub fn storage(&self) -> &'static str {
        match self.layout {
            Layout::Csr { .. } => "csr",
            Layout::Dense { .. } => "dense",
        }
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
                // read as stored and checked: HDF5 clips a negative index to 0 when converting
                let idx: Vec<i64> = indices
                    .read_slice_1d::<i64, _>(a..b)
                    .at(&self.path, &field("indices"))?
                    .into_raw_vec_and_offset()
                    .0;
                if let Some(bad) = idx
                    .iter()
                    .find(|&&j| j < 0 || j as u64 >= self.ncols as u64)
                {
                    return Err(IoError::field(
                        &self.path,
                        field("indices"),
                        format!(
                            "column index {bad} outside 0..{}; the file is damaged",
                            self.ncols
                        ),
                    ));
                }
                let idx: Vec<u32> = idx.into_iter().map(|j| j as u32).collect();
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
/// at the end. Written to a temporary file and renamed on [`CsrStreamWriter::finish`], after the
/// file is closed with every error checked and read back; dropped unfinished, the temporary file
/// is removed.
pub struct CsrStreamWriter {
    path: PathBuf,
    tmp: PathBuf,
    w: Writer,
    open: Option<OpenFile>,
    indptr: Vec<u64>,
    ncols: usize,
    uns_from: Option<PathBuf>,
    /// `finish` ran: the temporary file is renamed or already removed.
    finished: bool,
}

/// The file being written and its growing datasets (closed before the file, so that the file's
/// close is the checked one).
struct OpenFile {
    file: File,
    data: Dataset,
    indices: Dataset,
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
        // from here on, a failure removes the temporary file (Drop)
        let mut me = CsrStreamWriter {
            path,
            tmp,
            w,
            open: None,
            indptr: vec![0],
            ncols,
            uns_from: None,
            finished: false,
        };
        let (data, indices) = {
            let g = file
                .create_group("X")
                .map_err(|e| write_failed(&me.path, "X", e))?;
            let chunk = 1 << 16;
            let mk = |name: &str, f32: bool| -> hdf5::Result<Dataset> {
                let b = if f32 {
                    g.new_dataset::<f32>()
                } else {
                    g.new_dataset::<i32>()
                };
                compression.apply(b.chunk(chunk)).shape(0..).create(name)
            };
            let data = mk("data", true).map_err(|e| write_failed(&me.path, "X/data", e));
            let indices = mk("indices", false).map_err(|e| write_failed(&me.path, "X/indices", e));
            (data, indices)
        };
        me.open = Some(OpenFile {
            file,
            data: data?,
            indices: indices?,
        });
        Ok(me)
    }

    /// Copy `uns` of the `.h5ad` at `src` into the output on [`CsrStreamWriter::finish`], whole
    /// (members scllm cannot read included); `finish`'s `uns` items are written over it.
    pub fn keep_uns_of(&mut self, src: impl AsRef<Path>) {
        self.uns_from = Some(src.as_ref().to_path_buf());
    }

    /// Append rows (CSR, same number of columns).
    pub fn append(&mut self, block: &Compressed) -> Result<()> {
        if block.ncols != self.ncols {
            return Err(IoError::file(
                &self.path,
                format!("block has {} columns, expected {}", block.ncols, self.ncols),
            ));
        }
        let open = self.open.as_ref().expect("append before finish");
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
            open.data.resize(end)?;
            open.indices.resize(end)?;
            if end > start {
                open.data.write_slice(vals, start..end)?;
                // u32 column ids into the int32 dataset: HDF5 converts in place of a copy here
                open.indices.write_slice(&block.indices, start..end)?;
            }
            Ok(())
        })()
        .map_err(|e| write_failed(&self.path, "X", e))?;
        for i in 0..block.nrows {
            self.indptr.push(start as u64 + block.indptr[i + 1]);
        }
        Ok(())
    }

    pub fn rows_written(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Write indptr, shape, obs, var, obsm and uns; close and check the file; then move it into
    /// place.
    pub fn finish(
        mut self,
        obs: &DataFrame,
        var: &DataFrame,
        obsm: &[(String, Matrix)],
        uns: &[(String, UnsValue)],
    ) -> Result<()> {
        let OpenFile {
            file,
            data,
            indices,
        } = self.open.take().expect("finish called once");
        drop((data, indices));
        self.finished = true;
        let res = (|| -> Result<()> {
            let rows = self.rows_written();
            if obs.nrows() != rows || var.nrows() != self.ncols {
                return Err(IoError::file(
                    &self.path,
                    format!(
                        "wrote {}x{} but obs/var have {}/{} rows",
                        rows,
                        self.ncols,
                        obs.nrows(),
                        var.nrows()
                    ),
                ));
            }
            for (k, m) in obsm {
                if m.shape().0 != rows {
                    return Err(IoError::file(
                        &self.path,
                        format!("obsm['{k}'] has {} rows for {rows} cells", m.shape().0),
                    ));
                }
            }
            let e = |field: &str| {
                let (path, field) = (self.path.clone(), field.to_string());
                move |e: hdf5::Error| write_failed(&path, &field, e)
            };
            self.w.root_attrs(&file)?;
            {
                // the group's handles end here, before the checked close
                let g = file.group("X").map_err(e("X"))?;
                self.w.set_encoding(&g, "csr_matrix", "0.1.0")?;
                let shape = [rows as i64, self.ncols as i64];
                let a = g
                    .new_attr::<i64>()
                    .shape(2)
                    .create("shape")
                    .map_err(e("X"))?;
                a.write_raw(&shape).map_err(e("X"))?;
                if *self.indptr.last().unwrap() < i32::MAX as u64 {
                    let p: Vec<i32> = self.indptr.iter().map(|&x| x as i32).collect();
                    self.w.array(&g, "indptr", &p, "X/indptr")?;
                } else {
                    let p: Vec<i64> = self.indptr.iter().map(|&x| x as i64).collect();
                    self.w.array(&g, "indptr", &p, "X/indptr")?;
                }
            }
            self.w.dataframe(&file, "obs", obs)?;
            self.w.dataframe(&file, "var", var)?;
            self.w.dict_of_matrices(&file, "obsm", obsm)?;
            for name in ["varm", "obsp", "varp", "layers"] {
                let g = file.create_group(name).map_err(e(name))?;
                self.w.set_encoding(&g, "dict", "0.1.0")?;
            }
            let uns_names = match &self.uns_from {
                Some(src) => copy_uns(&self.w, &file, src, uns)?,
                None => {
                    write_uns(&self.w, &file, uns)?;
                    uns.iter().map(|(k, _)| k.clone()).collect()
                }
            };
            close_checked(file, &self.path)?;
            let mut matrices = vec![("X".to_string(), (rows, self.ncols))];
            matrices.extend(obsm.iter().map(|(k, m)| (format!("obsm/{k}"), m.shape())));
            verify_written(
                &self.tmp,
                &self.path,
                &Expected {
                    frames: vec![("obs".into(), rows), ("var".into(), self.ncols)],
                    matrices,
                    uns: uns_names,
                },
            )
        })();
        scllm_fs::finish(&self.tmp, &self.path, res, |e| IoError::os(&self.path, e))
    }
}

impl Drop for CsrStreamWriter {
    fn drop(&mut self) {
        // Not finished (an error, or a panic elsewhere): close, then remove the temporary file
        // instead of leaving a half-written one.
        drop(self.open.take());
        if !self.finished {
            scllm_fs::discard(&self.tmp);
        }
    }
}
