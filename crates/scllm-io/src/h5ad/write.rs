//! Writing an [`AnnData`] as `.h5ad` in the encoding anndata ≥0.8 reads, atomically; the
//! [`Writer`] of elements is shared with the block-wise writer in `backed`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, Group, Location, LocationType};

use crate::anndata::AnnData;
use crate::error::{IoError, Result};
use crate::frame::{Column, DataFrame, UnsValue};
use crate::h5ad::read_primitives::{attr_shape, check_stored};
use crate::matrix::{Matrix, Values};

/// How datasets are compressed on write (anndata's `compression=` argument).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Gzip(u8),
    Lzf,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip(4)),
            "lzf" => Ok(Compression::Lzf),
            other => Err(format!(
                "unknown compression `{other}`: use none, gzip or lzf"
            )),
        }
    }
}

impl Compression {
    /// Add this compression's filter to a chunked dataset builder.
    pub(crate) fn apply(self, b: hdf5::DatasetBuilderEmpty) -> hdf5::DatasetBuilderEmpty {
        match self {
            Compression::None => b,
            Compression::Gzip(l) => b.deflate(l),
            Compression::Lzf => b.lzf(),
        }
    }
}

pub(crate) struct Writer {
    pub(crate) path: PathBuf,
    pub(crate) compression: Compression,
}

const CHUNK_ELEMS: usize = 1 << 16;

impl Writer {
    fn e<T>(&self, field: &str, r: hdf5::Result<T>) -> Result<T> {
        r.map_err(|e| write_failed(&self.path, field, e))
    }

    pub(crate) fn set_attr_str(&self, loc: &Location, name: &str, value: &str) -> Result<()> {
        let v = VarLenUnicode::from_str(value)
            .map_err(|e| IoError::field(&self.path, name, e.to_string()))?;
        let a = self.e(name, loc.new_attr::<VarLenUnicode>().create(name))?;
        self.e(name, a.write_scalar(&v))
    }

    pub(crate) fn set_encoding(&self, loc: &Location, kind: &str, version: &str) -> Result<()> {
        self.set_attr_str(loc, "encoding-type", kind)?;
        self.set_attr_str(loc, "encoding-version", version)
    }

    /// A 1-D dataset of plain numbers or booleans.
    pub(crate) fn array<T: hdf5::H5Type>(
        &self,
        g: &Group,
        name: &str,
        data: &[T],
        field: &str,
    ) -> Result<Dataset> {
        self.dataset(g, name, data, &[data.len()], field)
    }

    /// A dataset of `shape` (1-D or 2-D, row-major `data`), chunked and compressed as configured.
    fn dataset<T: hdf5::H5Type>(
        &self,
        g: &Group,
        name: &str,
        d: &[T],
        shape: &[usize],
        f: &str,
    ) -> Result<Dataset> {
        let mut b = g.new_dataset::<T>();
        if !d.is_empty() && self.compression != Compression::None {
            let chunk: Vec<usize> = if shape.len() == 2 {
                let rows = (CHUNK_ELEMS / shape[1].max(1)).clamp(1, shape[0].max(1));
                vec![rows, shape[1].max(1)]
            } else {
                vec![d.len().clamp(1, CHUNK_ELEMS)]
            };
            b = self.compression.apply(b.chunk(chunk));
        }
        let ds = self.e(f, b.shape(shape).create(name))?;
        if !d.is_empty() {
            self.e(f, ds.write_raw(d))?;
        }
        Ok(ds)
    }

    fn values(
        &self,
        g: &Group,
        name: &str,
        v: &Values,
        shape: &[usize],
        field: &str,
    ) -> Result<Dataset> {
        match v {
            Values::F32(d) => self.dataset(g, name, d, shape, field),
            Values::F64(d) => self.dataset(g, name, d, shape, field),
            Values::I32(d) => self.dataset(g, name, d, shape, field),
            Values::I64(d) => self.dataset(g, name, d, shape, field),
        }
    }

    fn strings(&self, g: &Group, name: &str, v: &[String], field: &str) -> Result<Dataset> {
        let data: Vec<VarLenUnicode> = v
            .iter()
            .map(|s| {
                VarLenUnicode::from_str(s).map_err(|e| {
                    IoError::field(
                        &self.path,
                        field,
                        format!("string {s:?} cannot be stored: {e}"),
                    )
                })
            })
            .collect::<Result<_>>()?;
        let ds = self.array(g, name, &data, field)?;
        self.set_encoding(&ds, "string-array", "0.2.0")?;
        Ok(ds)
    }

    pub(crate) fn matrix(&self, g: &Group, name: &str, m: &Matrix, field: &str) -> Result<()> {
        match m {
            Matrix::Dense { nrows, ncols, data } => {
                let ds = self.values(g, name, data, &[*nrows, *ncols], field)?;
                self.set_encoding(&ds, "array", "0.2.0")
            }
            Matrix::Csr(c) | Matrix::Csc(c) => {
                let sg = self.e(field, g.create_group(name))?;
                let kind = if matches!(m, Matrix::Csr(_)) {
                    "csr_matrix"
                } else {
                    "csc_matrix"
                };
                self.set_encoding(&sg, kind, "0.1.0")?;
                let shape = [c.nrows as i64, c.ncols as i64];
                let a = self.e(field, sg.new_attr::<i64>().shape(2).create("shape"))?;
                self.e(field, a.write_raw(&shape))?;
                self.values(&sg, "data", &c.data, &[c.data.len()], field)?;
                // anndata/scipy use int32 indices unless the sizes need int64
                if c.nnz() < i32::MAX as usize && c.nrows.max(c.ncols) < i32::MAX as usize {
                    let idx: Vec<i32> = c.indices.iter().map(|&x| x as i32).collect();
                    let ptr: Vec<i32> = c.indptr.iter().map(|&x| x as i32).collect();
                    self.array(&sg, "indices", &idx, field)?;
                    self.array(&sg, "indptr", &ptr, field)?;
                } else {
                    let idx: Vec<i64> = c.indices.iter().map(|&x| x as i64).collect();
                    let ptr: Vec<i64> = c.indptr.iter().map(|&x| x as i64).collect();
                    self.array(&sg, "indices", &idx, field)?;
                    self.array(&sg, "indptr", &ptr, field)?;
                }
                Ok(())
            }
        }
    }

    fn column(&self, g: &Group, name: &str, c: &Column, field: &str) -> Result<()> {
        let plain = |ds: Dataset| self.set_encoding(&ds, "array", "0.2.0");
        let nullable =
            |kind: &str, values: &dyn Fn(&Group) -> Result<()>, mask: &[bool]| -> Result<()> {
                let sg = self.e(field, g.create_group(name))?;
                self.set_encoding(&sg, kind, "0.1.0")?;
                values(&sg)?;
                plain(self.array(&sg, "mask", mask, field)?)
            };
        match c {
            Column::Str(v) => self.strings(g, name, v, field).map(|_| ()),
            Column::F64(v) => plain(self.array(g, name, v, field)?),
            Column::F32(v) => plain(self.array(g, name, v, field)?),
            Column::I64(v) => plain(self.array(g, name, v, field)?),
            Column::I32(v) => plain(self.array(g, name, v, field)?),
            Column::Bool(v) => plain(self.array(g, name, v, field)?),
            Column::Categorical {
                codes,
                categories,
                ordered,
            } => {
                let sg = self.e(field, g.create_group(name))?;
                self.set_encoding(&sg, "categorical", "0.2.0")?;
                let a = self.e(field, sg.new_attr::<bool>().create("ordered"))?;
                self.e(field, a.write_scalar(ordered))?;
                // pandas picks the smallest code width; int8 covers up to 127 categories
                if categories.len() < 128 {
                    let c8: Vec<i8> = codes.iter().map(|&c| c as i8).collect();
                    plain(self.array(&sg, "codes", &c8, field)?)?;
                } else if categories.len() < 32768 {
                    let c16: Vec<i16> = codes.iter().map(|&c| c as i16).collect();
                    plain(self.array(&sg, "codes", &c16, field)?)?;
                } else {
                    plain(self.array(&sg, "codes", codes, field)?)?;
                }
                self.column(&sg, "categories", categories, field)
            }
            Column::NullableInt { values, mask } => nullable(
                "nullable-integer",
                &|sg| plain(self.array(sg, "values", values, field)?),
                mask,
            ),
            Column::NullableBool { values, mask } => nullable(
                "nullable-boolean",
                &|sg| plain(self.array(sg, "values", values, field)?),
                mask,
            ),
            Column::NullableStr { values, mask } => nullable(
                "nullable-string-array",
                &|sg| self.strings(sg, "values", values, field).map(|_| ()),
                mask,
            ),
        }
    }

    pub(crate) fn dataframe(&self, parent: &Group, name: &str, df: &DataFrame) -> Result<()> {
        let g = self.e(name, parent.create_group(name))?;
        self.set_encoding(&g, "dataframe", "0.2.0")?;
        let index_name = if df.index_name.is_empty() {
            "_index"
        } else {
            df.index_name.as_str()
        };
        self.set_attr_str(&g, "_index", index_name)?;
        if df.columns.is_empty() {
            let a = self.e(name, g.new_attr::<f64>().shape(0).create("column-order"))?;
            drop(a);
        } else {
            let names: Vec<VarLenUnicode> = df
                .columns
                .iter()
                .map(|(n, _)| {
                    VarLenUnicode::from_str(n)
                        .map_err(|e| IoError::field(&self.path, name, e.to_string()))
                })
                .collect::<Result<_>>()?;
            let a = self.e(
                name,
                g.new_attr::<VarLenUnicode>()
                    .shape(names.len())
                    .create("column-order"),
            )?;
            self.e(name, a.write_raw(&names))?;
        }
        self.strings(&g, index_name, &df.index, &format!("{name}/{index_name}"))?;
        for (cn, c) in &df.columns {
            self.column(&g, cn, c, &format!("{name}/{cn}"))?;
        }
        Ok(())
    }

    pub(crate) fn dict_of_matrices(
        &self,
        parent: &Group,
        name: &str,
        items: &[(String, Matrix)],
    ) -> Result<()> {
        let g = self.e(name, parent.create_group(name))?;
        self.set_encoding(&g, "dict", "0.1.0")?;
        for (n, m) in items {
            self.matrix(&g, n, m, &format!("{name}/{n}"))?;
        }
        Ok(())
    }

    fn uns(
        &self,
        parent: &Group,
        name: &str,
        items: &[(String, UnsValue)],
        field: &str,
    ) -> Result<()> {
        let g = self.e(field, parent.create_group(name))?;
        self.set_encoding(&g, "dict", "0.1.0")?;
        self.uns_items(&g, items, field)
    }

    /// `items` into the dict group `g`, each replacing a member of the same name.
    fn uns_items(&self, g: &Group, items: &[(String, UnsValue)], field: &str) -> Result<()> {
        for (n, v) in items {
            let f = format!("{field}/{n}");
            if g.link_exists(n) {
                self.e(&f, g.unlink(n))?;
            }
            match v {
                UnsValue::Str(s) => {
                    let s = VarLenUnicode::from_str(s)
                        .map_err(|e| IoError::field(&self.path, &f, e.to_string()))?;
                    let ds = self.e(&f, g.new_dataset::<VarLenUnicode>().create(n.as_str()))?;
                    self.e(&f, ds.write_scalar(&s))?;
                    self.set_encoding(&ds, "string", "0.2.0")?;
                }
                UnsValue::F64(x) => self.scalar(g, n, x, &f)?,
                UnsValue::I64(x) => self.scalar(g, n, x, &f)?,
                UnsValue::Bool(x) => self.scalar(g, n, x, &f)?,
                UnsValue::Array(c) => self.column(g, n, c, &f)?,
                UnsValue::Dict(d) => self.uns(g, n, d, &f)?,
            }
        }
        Ok(())
    }

    fn scalar<T: hdf5::H5Type>(&self, g: &Group, n: &str, x: &T, f: &str) -> Result<()> {
        let ds = self.e(f, g.new_dataset::<T>().create(n))?;
        self.e(f, ds.write_scalar(x))?;
        self.set_encoding(&ds, "numeric-scalar", "0.2.0")
    }

    pub(crate) fn root_attrs(&self, file: &File) -> Result<()> {
        self.set_encoding(file, "anndata", "0.1.0")
    }
}

pub(crate) fn write_uns(w: &Writer, file: &File, uns: &[(String, UnsValue)]) -> Result<()> {
    w.uns(file, "uns", uns, "uns")
}

/// `uns` of the `.h5ad` at `src` copied whole into `file` (HDF5 copies every member as stored,
/// including those scllm does not read), then `uns` written over it item by item. Returns the
/// top-level names now in `uns`.
pub(crate) fn copy_uns(
    w: &Writer,
    file: &File,
    src: &Path,
    uns: &[(String, UnsValue)],
) -> Result<Vec<String>> {
    let s = super::handles::open_read(src)
        .map_err(|e| IoError::field(src, "uns", format!("cannot open to copy uns: {e}")))?;
    if !matches!(s.loc_type_by_name("uns"), Ok(LocationType::Group)) {
        write_uns(w, file, uns)?;
    } else {
        let name = c"uns";
        let _lock = hdf5_sys::LOCK.lock();
        // SAFETY: both ids are open files for the duration of the call; the names are
        // NUL-terminated; default property lists.
        let r = unsafe {
            hdf5_sys::h5o::H5Ocopy(
                s.id(),
                name.as_ptr(),
                file.id(),
                name.as_ptr(),
                hdf5_sys::h5p::H5P_DEFAULT,
                hdf5_sys::h5p::H5P_DEFAULT,
            )
        };
        if r < 0 {
            return Err(write_failed(
                &w.path,
                "uns",
                format!("copying uns from {}", src.display()),
            ));
        }
        let g = w.e("uns", file.group("uns"))?;
        w.uns_items(&g, uns, "uns")?;
    }
    let g = w.e("uns", file.group("uns"))?;
    w.e("uns", g.member_names())
}

/// A failed write into `path`'s temporary file: what failed and what the user can do.
pub(crate) fn write_failed(path: &Path, field: &str, e: impl std::fmt::Display) -> IoError {
    IoError::field(
        path,
        field,
        format!(
            "cannot write ({e}); {}; any previous file is kept",
            disk_hint(path)
        ),
    )
}

/// Why a write may have failed: a full disk is the usual cause and cheap to tell.
fn disk_hint(path: &Path) -> String {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match free_bytes(dir) {
        Some(b) if b < 1 << 20 => format!(
            "the disk holding {} is full: free space or write elsewhere",
            dir.display()
        ),
        _ => "check free space, quota and permissions".into(),
    }
}

#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct from a NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// Flush and close a written file, reporting failures: HDF5 keeps data and metadata in caches
/// that reach the disk only here, and a plain drop would swallow the error (a full disk then
/// "succeeds" with an unreadable file). Every other handle into `file` must be dropped first, or
/// the close is deferred to the last of them, unchecked.
pub(crate) fn close_checked(file: File, path: &Path) -> Result<()> {
    file.flush()
        .and_then(|()| file.close())
        .map_err(|e| write_failed(path, "(closing the file)", e))
}

/// What a finished temporary file must hold, checked by [`verify_written`] before the rename.
#[derive(Default)]
pub(crate) struct Expected {
    /// Data frames and their rows: ("obs", n_obs), ("var", n_vars), ("raw/var", ..).
    pub(crate) frames: Vec<(String, usize)>,
    /// Matrices and their shapes: "X", "layers/NAME", "obsm/NAME", "raw/X", ...
    pub(crate) matrices: Vec<(String, (usize, usize))>,
    /// Top-level `uns` members.
    pub(crate) uns: Vec<String>,
}

impl Expected {
    /// What [`write_h5ad`] writes for `a`.
    fn of(a: &AnnData) -> Self {
        let mut e = Expected {
            frames: vec![("obs".into(), a.obs.nrows()), ("var".into(), a.var.nrows())],
            uns: a.uns.iter().map(|(k, _)| k.clone()).collect(),
            ..Default::default()
        };
        if let Some(x) = &a.x {
            e.matrices.push(("X".into(), x.shape()));
        }
        for (group, items) in [
            ("obsm", &a.obsm),
            ("varm", &a.varm),
            ("obsp", &a.obsp),
            ("varp", &a.varp),
            ("layers", &a.layers),
        ] {
            for (k, m) in items {
                e.matrices.push((format!("{group}/{k}"), m.shape()));
            }
        }
        if let Some(raw) = &a.raw {
            e.matrices.push(("raw/X".into(), raw.x.shape()));
            e.frames.push(("raw/var".into(), raw.var.nrows()));
        }
        e
    }
}

/// Re-open the closed temporary file `tmp` and check that it holds what was written: every
/// matrix with its shape and all its stored values, every frame with its rows, every `uns`
/// member. Errors name `path`, the output the user asked for.
pub(crate) fn verify_written(tmp: &Path, path: &Path, exp: &Expected) -> Result<()> {
    let bad = |field: &str, what: String| {
        IoError::field(
            path,
            field,
            format!(
                "the written file does not read back ({what}); {}; any previous file is kept",
                disk_hint(path)
            ),
        )
    };
    let h5 = |field: &str| {
        let field = field.to_string();
        move |e: hdf5::Error| bad(&field, e.to_string())
    };
    let file = super::handles::open_read(tmp).map_err(h5("(re-opening)"))?;
    for (name, rows) in &exp.frames {
        let g = file.group(name).map_err(h5(name))?;
        let index = g
            .attr("_index")
            .and_then(|a| a.read_scalar::<VarLenUnicode>())
            .map_err(h5(name))?;
        let n = g
            .dataset(index.as_str())
            .map(|d| d.size())
            .map_err(h5(name))?;
        if n != *rows {
            return Err(bad(name, format!("{n} rows where {rows} were written")));
        }
    }
    for (name, (r, c)) in &exp.matrices {
        match file.loc_type_by_name(name).map_err(h5(name))? {
            LocationType::Dataset => {
                let ds = file.dataset(name).map_err(h5(name))?;
                check_stored(&ds).map_err(h5(name))?;
                if ds.shape() != [*r, *c] {
                    return Err(bad(
                        name,
                        format!("shape {:?}, written {r}x{c}", ds.shape()),
                    ));
                }
            }
            _ => {
                let g = file.group(name).map_err(h5(name))?;
                if attr_shape(&g, "shape") != Some((*r, *c)) {
                    return Err(bad(name, format!("shape is not the {r}x{c} written")));
                }
                let csc = g
                    .attr("encoding-type")
                    .and_then(|a| a.read_scalar::<VarLenUnicode>())
                    .is_ok_and(|e| e.as_str() == "csc_matrix");
                let major = if csc { *c } else { *r };
                let part = |p: &str| g.dataset(p).map_err(h5(&format!("{name}/{p}")));
                let (data, indices, indptr) = (part("data")?, part("indices")?, part("indptr")?);
                for (ds, p) in [(&data, "data"), (&indices, "indices")] {
                    check_stored(ds).map_err(h5(&format!("{name}/{p}")))?;
                }
                let stored = data.size();
                let last = if indptr.size() == major + 1 {
                    indptr
                        .read_slice_1d::<i64, _>(major..major + 1)
                        .map_err(h5(&format!("{name}/indptr")))?[0]
                } else {
                    -1
                };
                if indices.size() != stored || last != stored as i64 {
                    return Err(bad(
                        name,
                        format!(
                            "{stored} values, {} indices, {} row pointers ending at {last}",
                            indices.size(),
                            indptr.size()
                        ),
                    ));
                }
            }
        }
    }
    if !exp.uns.is_empty() {
        let names = file
            .group("uns")
            .and_then(|g| g.member_names())
            .map_err(h5("uns"))?;
        if let Some(k) = exp.uns.iter().find(|k| !names.contains(k)) {
            return Err(bad(&format!("uns/{k}"), "missing".into()));
        }
    }
    Ok(())
}

/// Write `adata` as `.h5ad` in the encoding anndata ≥0.8 reads, atomically (temp file + rename).
/// The finished temporary file is closed with every error checked and read back
/// (`verify_written`) before it replaces `path`.
pub fn write_h5ad(adata: &AnnData, path: impl AsRef<Path>, compression: Compression) -> Result<()> {
    let path = path.as_ref();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(IoError::file(
                path,
                format!("output folder {} does not exist", dir.display()),
            ));
        }
    }
    let tmp = scllm_fs::temp_path_for(path);
    let w = Writer {
        path: path.to_path_buf(),
        compression,
    };
    let res = (|| -> Result<()> {
        let file = super::handles::create(&tmp)
            .map_err(|e| IoError::file(path, format!("cannot create: {e}")))?;
        w.root_attrs(&file)?;
        if let Some(x) = &adata.x {
            w.matrix(&file, "X", x, "X")?;
        }
        w.dataframe(&file, "obs", &adata.obs)?;
        w.dataframe(&file, "var", &adata.var)?;
        w.dict_of_matrices(&file, "obsm", &adata.obsm)?;
        w.dict_of_matrices(&file, "varm", &adata.varm)?;
        w.dict_of_matrices(&file, "obsp", &adata.obsp)?;
        w.dict_of_matrices(&file, "varp", &adata.varp)?;
        w.dict_of_matrices(&file, "layers", &adata.layers)?;
        if let Some(raw) = &adata.raw {
            // dropped before the close below, which must be the last handle's
            let g = w.e("raw", file.create_group("raw"))?;
            w.set_encoding(&g, "raw", "0.1.0")?;
            w.matrix(&g, "X", &raw.x, "raw/X")?;
            w.dataframe(&g, "var", &raw.var)?;
            w.dict_of_matrices(&g, "varm", &raw.varm)?;
        }
        w.uns(&file, "uns", &adata.uns, "uns")?;
        close_checked(file, path)?;
        verify_written(&tmp, path, &Expected::of(adata))
    })();
    scllm_fs::finish(&tmp, path, res, |e| IoError::os(path, e))
}
