//! AnnData `.h5ad` files: the on-disk encoding anndata ≥0.8 writes (`encoding-type` attributes), plus
//! the older layouts still found in the wild (anndata 0.6 structured-array `obs`/`var`/`obsm`,
//! `h5sparse`-style `raw.X`, categories in `uns['<col>_categories']`).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Container, Dataset, File, Group, Location, LocationType};

use crate::error::{H5Context, IoError, Result};
use crate::frame::{Column, DataFrame, UnsValue};
use crate::matrix::{Compressed, Matrix, Values};

/// `.raw`: an earlier, wider gene space kept beside the processed X.
#[derive(Clone, Debug, PartialEq)]
pub struct Raw {
    pub x: Matrix,
    pub var: DataFrame,
    pub varm: Vec<(String, Matrix)>,
}

/// An annotated data matrix, as anndata holds one: cells × genes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AnnData {
    pub x: Option<Matrix>,
    pub obs: DataFrame,
    pub var: DataFrame,
    pub obsm: Vec<(String, Matrix)>,
    pub varm: Vec<(String, Matrix)>,
    pub obsp: Vec<(String, Matrix)>,
    pub varp: Vec<(String, Matrix)>,
    pub layers: Vec<(String, Matrix)>,
    pub raw: Option<Raw>,
    pub uns: Vec<(String, UnsValue)>,
    /// Elements the reader met but does not model (said, never silently dropped).
    pub skipped: Vec<String>,
    /// The file this was read from, for error messages.
    pub source: Option<PathBuf>,
}

impl AnnData {
    pub fn new(x: Matrix, obs: DataFrame, var: DataFrame) -> Self {
        AnnData {
            x: Some(x),
            obs,
            var,
            ..Default::default()
        }
    }
    pub fn n_obs(&self) -> usize {
        self.obs.nrows()
    }
    pub fn n_vars(&self) -> usize {
        self.var.nrows()
    }
    fn path(&self) -> PathBuf {
        self.source
            .clone()
            .unwrap_or_else(|| PathBuf::from("<in memory>"))
    }
    /// X, or a clear error when the file has none.
    pub fn x(&self) -> Result<&Matrix> {
        self.x.as_ref().ok_or_else(|| {
            IoError::field(
                &self.path(),
                "X",
                "missing: this AnnData has no expression matrix. Store counts in X (adata.X = ...) and save again.",
            )
        })
    }
    pub fn layer(&self, name: &str) -> Option<&Matrix> {
        self.layers.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
    pub fn set_layer(&mut self, name: &str, m: Matrix) {
        set_named(&mut self.layers, name, m);
    }
    pub fn obsm_get(&self, name: &str) -> Option<&Matrix> {
        self.obsm.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
    pub fn set_obsm(&mut self, name: &str, m: Matrix) {
        set_named(&mut self.obsm, name, m);
    }
    pub fn uns_get(&self, name: &str) -> Option<&UnsValue> {
        self.uns.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    pub fn set_uns(&mut self, name: &str, v: UnsValue) {
        if let Some(slot) = self.uns.iter_mut().find(|(n, _)| n == name) {
            slot.1 = v;
        } else {
            self.uns.push((name.to_string(), v));
        }
    }
    /// The `obs` column `name`, or an error listing the columns there are.
    pub fn obs_column(&self, name: &str) -> Result<&Column> {
        self.obs.column(name).ok_or_else(|| {
            IoError::field(
                &self.path(),
                format!("obs['{name}']"),
                format!(
                    "no such column. Columns present: {}",
                    if self.obs.columns.is_empty() {
                        "(none)".to_string()
                    } else {
                        self.obs.column_names().join(", ")
                    }
                ),
            )
        })
    }
    /// Keep the cells in `idx` (in that order) across X, obs, obsm, obsp, layers and raw.
    pub fn select_obs(&self, idx: &[usize]) -> AnnData {
        let sel_sq = |m: &Matrix| m.select_rows(idx).select_cols(idx);
        AnnData {
            x: self.x.as_ref().map(|m| m.select_rows(idx)),
            obs: self.obs.select(idx),
            var: self.var.clone(),
            obsm: self
                .obsm
                .iter()
                .map(|(n, m)| (n.clone(), m.select_rows(idx)))
                .collect(),
            varm: self.varm.clone(),
            obsp: self
                .obsp
                .iter()
                .map(|(n, m)| (n.clone(), sel_sq(m)))
                .collect(),
            varp: self.varp.clone(),
            layers: self
                .layers
                .iter()
                .map(|(n, m)| (n.clone(), m.select_rows(idx)))
                .collect(),
            raw: self.raw.as_ref().map(|r| Raw {
                x: r.x.select_rows(idx),
                var: r.var.clone(),
                varm: r.varm.clone(),
            }),
            uns: self.uns.clone(),
            skipped: self.skipped.clone(),
            source: self.source.clone(),
        }
    }
    /// Keep the genes in `idx` (in that order) across X, var, varm, varp and layers; raw is kept whole.
    pub fn select_vars(&self, idx: &[usize]) -> AnnData {
        let sel_sq = |m: &Matrix| m.select_rows(idx).select_cols(idx);
        AnnData {
            x: self.x.as_ref().map(|m| m.select_cols(idx)),
            obs: self.obs.clone(),
            var: self.var.select(idx),
            obsm: self.obsm.clone(),
            varm: self
                .varm
                .iter()
                .map(|(n, m)| (n.clone(), m.select_rows(idx)))
                .collect(),
            obsp: self.obsp.clone(),
            varp: self
                .varp
                .iter()
                .map(|(n, m)| (n.clone(), sel_sq(m)))
                .collect(),
            layers: self
                .layers
                .iter()
                .map(|(n, m)| (n.clone(), m.select_cols(idx)))
                .collect(),
            raw: self.raw.clone(),
            uns: self.uns.clone(),
            skipped: self.skipped.clone(),
            source: self.source.clone(),
        }
    }
}

fn set_named(v: &mut Vec<(String, Matrix)>, name: &str, m: Matrix) {
    if let Some(slot) = v.iter_mut().find(|(n, _)| n == name) {
        slot.1 = m;
    } else {
        v.push((name.to_string(), m));
    }
}

// ------------------------------------------------------------------------------------------------
// Opening
// ------------------------------------------------------------------------------------------------

const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Open an HDF5 file for reading, telling apart "missing", "not HDF5" and "not AnnData".
pub(crate) fn open_h5ad(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| IoError::os(path, e))?;
    if meta.is_dir() {
        return Err(IoError::file(
            path,
            "is a directory. For a 10x folder (matrix.mtx + features.tsv + barcodes.tsv) name the folder with --format 10x",
        ));
    }
    if !has_hdf5_signature(path)? {
        let hint = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") | Some("tsv") | Some("txt") => "It looks like a text table: scllm reads CSV with `--format csv`.",
            Some("mtx") | Some("gz") => "For 10x output, name the folder holding matrix.mtx(.gz), features.tsv(.gz) and barcodes.tsv(.gz).",
            _ => "Check that the file was fully downloaded/copied and is an AnnData .h5ad.",
        };
        return Err(IoError::NotHdf5 {
            path: path.to_path_buf(),
            hint: hint.into(),
        });
    }
    let file = File::open(path)
        .map_err(|e| IoError::file(path, format!("HDF5 could not open it: {e}")))?;
    let names = file.member_names().at(path, "/")?;
    let looks_like = names.iter().any(|n| n == "obs" || n == "var" || n == "X");
    if !looks_like {
        return Err(IoError::NotAnnData {
            path: path.to_path_buf(),
            detail: format!(
                "no `X`, `obs` or `var` at the root (it holds: {})",
                if names.is_empty() {
                    "nothing".into()
                } else {
                    names.join(", ")
                }
            ),
        });
    }
    Ok(file)
}

fn has_hdf5_signature(path: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let len = f.metadata().map_err(|e| IoError::os(path, e))?.len();
    // The superblock sits at 0, 512, 1024, 2048, ... (a user block may precede it).
    let mut off = 0u64;
    while off + 8 <= len {
        let mut buf = [0u8; 8];
        f.seek(SeekFrom::Start(off))
            .map_err(|e| IoError::os(path, e))?;
        f.read_exact(&mut buf).map_err(|e| IoError::os(path, e))?;
        if &buf == HDF5_SIGNATURE {
            return Ok(true);
        }
        off = if off == 0 { 512 } else { off * 2 };
    }
    Ok(false)
}

// ------------------------------------------------------------------------------------------------
// Low-level readers
// ------------------------------------------------------------------------------------------------

/// Read a dataset or attribute as raw bytes in its own (file) type: used for fixed-length strings
/// and structured arrays, which have no fixed Rust type.
fn read_bytes(c: &Container, is_attr: bool) -> hdf5::Result<(Vec<u8>, TypeDescriptor, usize)> {
    let dtype = c.dtype()?;
    let td = dtype.to_descriptor()?;
    let size = dtype.size();
    let n = c.space()?.size();
    let mut buf = vec![0u8; n * size];
    let _lock = hdf5_sys::LOCK.lock();
    let status = unsafe {
        if is_attr {
            hdf5_sys::h5a::H5Aread(c.id(), dtype.id(), buf.as_mut_ptr().cast())
        } else {
            hdf5_sys::h5d::H5Dread(
                c.id(),
                dtype.id(),
                hdf5_sys::h5s::H5S_ALL,
                hdf5_sys::h5s::H5S_ALL,
                hdf5_sys::h5p::H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            )
        }
    };
    if status < 0 {
        return Err(hdf5::Error::from("H5Dread/H5Aread failed"));
    }
    Ok((buf, td, n))
}

fn fixed_str(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map(|p| p + 1)
        .unwrap_or(0);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn is_string_type(td: &TypeDescriptor) -> bool {
    matches!(
        td,
        TypeDescriptor::VarLenUnicode
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_)
    )
}

fn read_strings_container(c: &Container, is_attr: bool) -> hdf5::Result<Vec<String>> {
    let td = c.dtype()?.to_descriptor()?;
    Ok(match td {
        TypeDescriptor::VarLenUnicode => c
            .read_raw::<VarLenUnicode>()?
            .into_iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        TypeDescriptor::VarLenAscii => c
            .read_raw::<VarLenAscii>()?
            .into_iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            let (buf, _, count) = read_bytes(c, is_attr)?;
            (0..count)
                .map(|i| fixed_str(&buf[i * n..(i + 1) * n]))
                .collect()
        }
        other => {
            return Err(hdf5::Error::from(format!(
                "expected strings, found {other}"
            )))
        }
    })
}

fn attr_string(loc: &Location, name: &str) -> Option<String> {
    let a: Attribute = loc.attr(name).ok()?;
    read_strings_container(&a, true).ok()?.into_iter().next()
}

fn attr_strings(loc: &Location, name: &str) -> Vec<String> {
    let Ok(a) = loc.attr(name) else {
        return Vec::new();
    };
    let Ok(td) = a.dtype().and_then(|d| d.to_descriptor()) else {
        return Vec::new();
    };
    if !is_string_type(&td) {
        return Vec::new(); // anndata writes an empty float array for an empty column order
    }
    read_strings_container(&a, true).unwrap_or_default()
}

fn attr_shape(loc: &Location, name: &str) -> Option<(usize, usize)> {
    let a = loc.attr(name).ok()?;
    let v = a.read_raw::<i64>().ok()?;
    (v.len() == 2).then(|| (v[0] as usize, v[1] as usize))
}

fn encoding(loc: &Location) -> Option<String> {
    attr_string(loc, "encoding-type")
}

fn read_values(ds: &Dataset) -> hdf5::Result<Values> {
    let td = ds.dtype()?.to_descriptor()?;
    Ok(match td {
        TypeDescriptor::Float(FloatSize::U4) => Values::F32(ds.read_raw()?),
        TypeDescriptor::Float(_) => Values::F64(ds.read_raw()?),
        TypeDescriptor::Integer(IntSize::U8)
        | TypeDescriptor::Unsigned(IntSize::U4 | IntSize::U8) => Values::I64(ds.read_raw()?),
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => Values::I32(ds.read_raw()?),
        TypeDescriptor::Boolean => Values::I32(
            ds.read_raw::<bool>()?
                .into_iter()
                .map(|b| b as i32)
                .collect(),
        ),
        other => {
            return Err(hdf5::Error::from(format!(
                "unsupported matrix element type {other}"
            )))
        }
    })
}

fn read_index_u32(ds: &Dataset) -> hdf5::Result<Vec<u32>> {
    ds.read_raw::<u32>()
}

fn read_indptr(ds: &Dataset) -> hdf5::Result<Vec<u64>> {
    ds.read_raw::<u64>()
}

fn kind_of(g: &Group, name: &str) -> Option<LocationType> {
    g.loc_type_by_name(name).ok()
}

// ------------------------------------------------------------------------------------------------
// Elements
// ------------------------------------------------------------------------------------------------

struct Reader<'a> {
    path: &'a Path,
    skipped: Vec<String>,
}

impl Reader<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> IoError {
        IoError::field(self.path, field, msg)
    }

    /// A matrix stored as a dense dataset or as a CSR/CSC group (new or h5sparse-style).
    fn matrix(&mut self, parent: &Group, name: &str, field: &str) -> Result<Option<Matrix>> {
        match kind_of(parent, name) {
            Some(LocationType::Dataset) => {
                let ds = parent.dataset(name).at(self.path, field)?;
                let shape = ds.shape();
                let td = ds
                    .dtype()
                    .and_then(|d| d.to_descriptor())
                    .at(self.path, field)?;
                if let TypeDescriptor::Compound(_) = td {
                    self.skipped.push(format!(
                        "{field}: structured array where a matrix was expected"
                    ));
                    return Ok(None);
                }
                let (nrows, ncols) = match shape.len() {
                    2 => (shape[0], shape[1]),
                    1 => (shape[0], 1),
                    _ => {
                        self.skipped
                            .push(format!("{field}: {}-D array", shape.len()));
                        return Ok(None);
                    }
                };
                let data = read_values(&ds).at(self.path, field)?;
                Ok(Some(Matrix::Dense { nrows, ncols, data }))
            }
            Some(LocationType::Group) => {
                let g = parent.group(name).at(self.path, field)?;
                let enc = encoding(&g);
                let fmt = attr_string(&g, "h5sparse_format");
                let csr = match (enc.as_deref(), fmt.as_deref()) {
                    (Some("csr_matrix"), _) | (None, Some("csr")) => true,
                    (Some("csc_matrix"), _) | (None, Some("csc")) => false,
                    (other, _) => {
                        self.skipped.push(format!(
                            "{field}: element of encoding {} (not a matrix)",
                            other.unwrap_or("none")
                        ));
                        return Ok(None);
                    }
                };
                let (nrows, ncols) = attr_shape(&g, "shape")
                    .or_else(|| attr_shape(&g, "h5sparse_shape"))
                    .ok_or_else(|| self.err(field, "sparse matrix without a `shape` attribute"))?;
                let data = read_values(&g.dataset("data").at(self.path, &format!("{field}/data"))?)
                    .at(self.path, &format!("{field}/data"))?;
                let indices = read_index_u32(&g.dataset("indices").at(self.path, field)?)
                    .at(self.path, &format!("{field}/indices"))?;
                let indptr = read_indptr(&g.dataset("indptr").at(self.path, field)?)
                    .at(self.path, &format!("{field}/indptr"))?;
                let (major, minor) = if csr { (nrows, ncols) } else { (ncols, nrows) };
                if indptr.len() != major + 1
                    || indices.len() != data.len()
                    || *indptr.last().unwrap_or(&0) as usize != data.len()
                    || indices.iter().any(|&j| j as usize >= minor)
                {
                    return Err(self.err(
                        field,
                        format!(
                            "inconsistent sparse matrix (shape {nrows}x{ncols}, indptr {}, indices {}, data {}); the file is damaged",
                            indptr.len(),
                            indices.len(),
                            data.len()
                        ),
                    ));
                }
                let c = Compressed {
                    nrows,
                    ncols,
                    indptr,
                    indices,
                    data,
                };
                Ok(Some(if csr { Matrix::Csr(c) } else { Matrix::Csc(c) }))
            }
            _ => Ok(None),
        }
    }

    /// anndata 0.6 `obsm`/`varm`: one structured array whose fields are the matrices.
    fn compound_matrices(&mut self, ds: &Dataset, field: &str) -> Result<Vec<(String, Matrix)>> {
        let (buf, td, n) = read_bytes(ds, false).at(self.path, field)?;
        let TypeDescriptor::Compound(ct) = td else {
            return Err(self.err(field, "expected a structured array"));
        };
        let mut out = Vec::new();
        for f in &ct.fields {
            let (inner, k) = match &f.ty {
                TypeDescriptor::FixedArray(inner, k) => (inner.as_ref().clone(), *k),
                other => (other.clone(), 1),
            };
            let width = inner.size();
            let mut vals = Vec::with_capacity(n * k);
            for i in 0..n {
                for j in 0..k {
                    let off = i * ct.size + f.offset + j * width;
                    vals.push(number_at(&buf[off..off + width], &inner));
                }
            }
            let data = match inner {
                TypeDescriptor::Float(FloatSize::U4) => {
                    Values::F32(vals.iter().map(|&x| x as f32).collect())
                }
                _ => Values::F64(vals),
            };
            out.push((
                f.name.clone(),
                Matrix::Dense {
                    nrows: n,
                    ncols: k,
                    data,
                },
            ));
        }
        Ok(out)
    }

    /// A dictionary of matrices (`obsm`, `layers`, ...), new or old layout.
    fn matrices(&mut self, root: &Group, name: &str) -> Result<Vec<(String, Matrix)>> {
        match kind_of(root, name) {
            Some(LocationType::Group) => {
                let g = root.group(name).at(self.path, name)?;
                let mut out = Vec::new();
                for m in g.member_names().at(self.path, name)? {
                    let field = format!("{name}/{m}");
                    if let Some(mat) = self.matrix(&g, &m, &field)? {
                        out.push((m, mat));
                    }
                }
                Ok(out)
            }
            Some(LocationType::Dataset) => {
                let ds = root.dataset(name).at(self.path, name)?;
                self.compound_matrices(&ds, name)
            }
            _ => Ok(Vec::new()),
        }
    }

    fn column(&mut self, parent: &Group, name: &str, field: &str) -> Result<Option<Column>> {
        match kind_of(parent, name) {
            Some(LocationType::Dataset) => {
                let ds = parent.dataset(name).at(self.path, field)?;
                if ds.ndim() != 1 {
                    self.skipped
                        .push(format!("{field}: {}-D array in a data frame", ds.ndim()));
                    return Ok(None);
                }
                self.column_dataset(&ds, field).map(Some)
            }
            Some(LocationType::Group) => {
                let g = parent.group(name).at(self.path, field)?;
                let enc = encoding(&g).unwrap_or_default();
                let sub = |r: &mut Self, n: &str| -> Result<Column> {
                    let f = format!("{field}/{n}");
                    let ds = g.dataset(n).at(r.path, &f)?;
                    r.column_dataset(&ds, &f)
                };
                let mask = |r: &mut Self| -> Result<Vec<bool>> {
                    match sub(r, "mask")? {
                        Column::Bool(m) => Ok(m),
                        _ => Err(r.err(field, "nullable column whose mask is not boolean")),
                    }
                };
                Ok(Some(match enc.as_str() {
                    "categorical" => {
                        let codes = g
                            .dataset("codes")
                            .and_then(|d| d.read_raw::<i32>())
                            .at(self.path, &format!("{field}/codes"))?;
                        let categories = sub(self, "categories")?;
                        let ordered = g
                            .attr("ordered")
                            .and_then(|a| a.read_scalar::<bool>())
                            .unwrap_or(false);
                        Column::Categorical {
                            codes,
                            categories: Box::new(categories),
                            ordered,
                        }
                    }
                    "nullable-integer" => {
                        let values = match sub(self, "values")? {
                            Column::I64(v) => v,
                            Column::I32(v) => v.into_iter().map(i64::from).collect(),
                            _ => {
                                return Err(
                                    self.err(field, "nullable-integer with non-integer values")
                                )
                            }
                        };
                        Column::NullableInt {
                            values,
                            mask: mask(self)?,
                        }
                    }
                    "nullable-boolean" => {
                        let Column::Bool(values) = sub(self, "values")? else {
                            return Err(self.err(field, "nullable-boolean with non-boolean values"));
                        };
                        Column::NullableBool {
                            values,
                            mask: mask(self)?,
                        }
                    }
                    "nullable-string-array" => {
                        let Column::Str(values) = sub(self, "values")? else {
                            return Err(
                                self.err(field, "nullable-string-array with non-string values")
                            );
                        };
                        Column::NullableStr {
                            values,
                            mask: mask(self)?,
                        }
                    }
                    other => {
                        self.skipped
                            .push(format!("{field}: data-frame column of encoding `{other}`"));
                        return Ok(None);
                    }
                }))
            }
            _ => Ok(None),
        }
    }

    fn column_dataset(&mut self, ds: &Dataset, field: &str) -> Result<Column> {
        let td = ds
            .dtype()
            .and_then(|d| d.to_descriptor())
            .at(self.path, field)?;
        let r = |res: hdf5::Result<Column>| res.at(self.path, field);
        match td {
            t if is_string_type(&t) => r(read_strings_container(ds, false).map(Column::Str)),
            TypeDescriptor::Boolean => r(ds.read_raw::<bool>().map(Column::Bool)),
            TypeDescriptor::Float(FloatSize::U4) => r(ds.read_raw::<f32>().map(Column::F32)),
            TypeDescriptor::Float(_) => r(ds.read_raw::<f64>().map(Column::F64)),
            TypeDescriptor::Integer(IntSize::U4) => r(ds.read_raw::<i32>().map(Column::I32)),
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
                r(ds.read_raw::<i64>().map(Column::I64))
            }
            TypeDescriptor::Enum(_) => r(ds.read_raw::<i64>().map(Column::I64)),
            other => Err(self.err(field, format!("unsupported column type {other}"))),
        }
    }

    /// `obs`/`var`: a `dataframe` group, or anndata 0.6's structured array.
    fn dataframe(
        &mut self,
        root: &Group,
        name: &str,
        old_categories: &mut Vec<(String, UnsValue)>,
    ) -> Result<DataFrame> {
        match kind_of(root, name) {
            Some(LocationType::Group) => {
                let g = root.group(name).at(self.path, name)?;
                let index_name = attr_string(&g, "_index").unwrap_or_else(|| "_index".into());
                let index = match self.column(&g, &index_name, &format!("{name}/{index_name}"))? {
                    Some(c) => (0..c.len())
                        .map(|i| c.get_str(i).unwrap_or_default())
                        .collect(),
                    None => {
                        return Err(self.err(
                            name,
                            format!(
                                "data frame without its index `{index_name}`; the file is damaged"
                            ),
                        ))
                    }
                };
                let mut order = attr_strings(&g, "column-order");
                if order.is_empty() {
                    // older writers: every member but the index (and 0.7's __categories)
                    order = g
                        .member_names()
                        .at(self.path, name)?
                        .into_iter()
                        .filter(|m| m != &index_name && m != "__categories")
                        .collect();
                }
                let legacy_cats = g.group("__categories").ok();
                let mut df = DataFrame {
                    index_name,
                    index,
                    columns: Vec::new(),
                };
                for col in order {
                    let field = format!("{name}/{col}");
                    let Some(mut c) = self.column(&g, &col, &field)? else {
                        continue;
                    };
                    if let Some(cg) = &legacy_cats {
                        if let Ok(ds) = cg.dataset(&col) {
                            let cats =
                                self.column_dataset(&ds, &format!("{name}/__categories/{col}"))?;
                            c = codes_to_categorical(c, cats, self.path, &field)?;
                        }
                    }
                    if c.len() != df.index.len() {
                        return Err(self.err(
                            &field,
                            format!(
                                "has {} entries but the index has {}",
                                c.len(),
                                df.index.len()
                            ),
                        ));
                    }
                    df.columns.push((col, c));
                }
                Ok(df)
            }
            Some(LocationType::Dataset) => {
                let ds = root.dataset(name).at(self.path, name)?;
                let (buf, td, n) = read_bytes(&ds, false).at(self.path, name)?;
                let TypeDescriptor::Compound(ct) = td else {
                    return Err(self.err(name, "expected a data frame (group or structured array)"));
                };
                let mut df = DataFrame::new(Vec::new());
                for f in &ct.fields {
                    let field = format!("{name}/{}", f.name);
                    let cell = |i: usize| {
                        &buf[i * ct.size + f.offset..i * ct.size + f.offset + f.ty.size()]
                    };
                    let col = match &f.ty {
                        TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_) => {
                            Column::Str((0..n).map(|i| fixed_str(cell(i))).collect())
                        }
                        TypeDescriptor::Boolean => {
                            Column::Bool((0..n).map(|i| cell(i)[0] != 0).collect())
                        }
                        TypeDescriptor::Float(FloatSize::U4) => {
                            Column::F32((0..n).map(|i| number_at(cell(i), &f.ty) as f32).collect())
                        }
                        TypeDescriptor::Float(_) => {
                            Column::F64((0..n).map(|i| number_at(cell(i), &f.ty)).collect())
                        }
                        TypeDescriptor::Integer(_)
                        | TypeDescriptor::Unsigned(_)
                        | TypeDescriptor::Enum(_) => {
                            Column::I64((0..n).map(|i| number_at(cell(i), &f.ty) as i64).collect())
                        }
                        other => {
                            self.skipped
                                .push(format!("{field}: structured field of type {other}"));
                            continue;
                        }
                    };
                    if f.name == "index" {
                        df.index = (0..col.len())
                            .map(|i| col.get_str(i).unwrap_or_default())
                            .collect();
                        continue;
                    }
                    // anndata 0.6 kept categories in uns['<col>_categories']
                    let key = format!("{}_categories", f.name);
                    let col = if let Some(pos) = old_categories.iter().position(|(k, _)| *k == key)
                    {
                        let (_, v) = old_categories.remove(pos);
                        match v {
                            UnsValue::Array(cats) => {
                                codes_to_categorical(col, cats, self.path, &field)?
                            }
                            _ => col,
                        }
                    } else {
                        col
                    };
                    df.columns.push((f.name.clone(), col));
                }
                if df.index.is_empty() && n > 0 {
                    df.index = (0..n).map(|i| i.to_string()).collect();
                }
                Ok(df)
            }
            _ => Err(IoError::NotAnnData {
                path: self.path.to_path_buf(),
                detail: format!("no `{name}` data frame"),
            }),
        }
    }

    fn uns_group(&mut self, g: &Group, prefix: &str) -> Result<Vec<(String, UnsValue)>> {
        let mut out = Vec::new();
        for m in g.member_names().at(self.path, prefix)? {
            let field = format!("{prefix}/{m}");
            match kind_of(g, &m) {
                Some(LocationType::Group) => {
                    let sub = g.group(&m).at(self.path, &field)?;
                    match encoding(&sub).as_deref() {
                        None | Some("dict") => {
                            out.push((m, UnsValue::Dict(self.uns_group(&sub, &field)?)))
                        }
                        Some(other) => self.skipped.push(format!("{field}: {other}")),
                    }
                }
                Some(LocationType::Dataset) => {
                    let ds = g.dataset(&m).at(self.path, &field)?;
                    let td = ds
                        .dtype()
                        .and_then(|d| d.to_descriptor())
                        .at(self.path, &field)?;
                    if ds.is_scalar() {
                        let v = match td {
                            t if is_string_type(&t) => read_strings_container(&ds, false)
                                .map(|v| UnsValue::Str(v.into_iter().next().unwrap_or_default())),
                            TypeDescriptor::Boolean => ds.read_scalar::<bool>().map(UnsValue::Bool),
                            TypeDescriptor::Float(_) => ds.read_scalar::<f64>().map(UnsValue::F64),
                            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
                                ds.read_scalar::<i64>().map(UnsValue::I64)
                            }
                            other => {
                                self.skipped
                                    .push(format!("{field}: scalar of type {other}"));
                                continue;
                            }
                        }
                        .at(self.path, &field)?;
                        out.push((m, v));
                    } else if ds.ndim() == 1 && !matches!(td, TypeDescriptor::Compound(_)) {
                        out.push((m, UnsValue::Array(self.column_dataset(&ds, &field)?)));
                    } else {
                        self.skipped
                            .push(format!("{field}: {}-D array of {td}", ds.ndim()));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

fn number_at(b: &[u8], td: &TypeDescriptor) -> f64 {
    let a = |n: usize| -> [u8; 8] {
        let mut x = [0u8; 8];
        x[..n].copy_from_slice(&b[..n]);
        x
    };
    match td {
        TypeDescriptor::Float(FloatSize::U4) => {
            f32::from_le_bytes(b[..4].try_into().unwrap()) as f64
        }
        TypeDescriptor::Float(_) => f64::from_le_bytes(b[..8].try_into().unwrap()),
        TypeDescriptor::Integer(s) => match s {
            IntSize::U1 => b[0] as i8 as f64,
            IntSize::U2 => i16::from_le_bytes(b[..2].try_into().unwrap()) as f64,
            IntSize::U4 => i32::from_le_bytes(b[..4].try_into().unwrap()) as f64,
            IntSize::U8 => i64::from_le_bytes(b[..8].try_into().unwrap()) as f64,
        },
        TypeDescriptor::Unsigned(s) => u64::from_le_bytes(a(*s as usize)) as f64,
        TypeDescriptor::Enum(e) => {
            let n = e.size as usize;
            if e.signed {
                let v = u64::from_le_bytes(a(n));
                let shift = 64 - 8 * n as u32;
                (((v << shift) as i64) >> shift) as f64
            } else {
                u64::from_le_bytes(a(n)) as f64
            }
        }
        TypeDescriptor::Boolean => (b[0] != 0) as u8 as f64,
        _ => f64::NAN,
    }
}

fn codes_to_categorical(
    codes: Column,
    categories: Column,
    path: &Path,
    field: &str,
) -> Result<Column> {
    let codes: Vec<i32> = match codes {
        Column::I64(v) => v.into_iter().map(|x| x as i32).collect(),
        Column::I32(v) => v,
        other => {
            return Err(IoError::field(
                path,
                field,
                format!("categorical codes must be integers, found {}", other.kind()),
            ))
        }
    };
    let n = categories.len() as i32;
    if let Some(bad) = codes.iter().find(|&&c| c >= n || c < -1) {
        return Err(IoError::field(
            path,
            field,
            format!("categorical code {bad} out of range (0..{n})"),
        ));
    }
    Ok(Column::Categorical {
        codes,
        categories: Box::new(categories),
        ordered: false,
    })
}

/// Only `obs` and `var` (for backed access).
pub(crate) fn read_frames(path: &Path, file: &File) -> Result<(DataFrame, DataFrame)> {
    let root: &Group = file;
    let mut r = Reader {
        path,
        skipped: Vec::new(),
    };
    let mut uns = match kind_of(root, "uns") {
        Some(LocationType::Group) => r.uns_group(&root.group("uns").at(path, "uns")?, "uns")?,
        _ => Vec::new(),
    };
    let obs = r.dataframe(root, "obs", &mut uns)?;
    let var = r.dataframe(root, "var", &mut uns)?;
    Ok((obs, var))
}

pub(crate) fn write_uns(w: &Writer, file: &File, uns: &[(String, UnsValue)]) -> Result<()> {
    w.uns(file, "uns", uns, "uns")
}

/// Read a whole `.h5ad` file into memory.
pub fn read_h5ad(path: impl AsRef<Path>) -> Result<AnnData> {
    let path = path.as_ref();
    let file = open_h5ad(path)?;
    let root: &Group = &file;
    let mut r = Reader {
        path,
        skipped: Vec::new(),
    };

    let mut uns = match kind_of(root, "uns") {
        Some(LocationType::Group) => r.uns_group(&root.group("uns").at(path, "uns")?, "uns")?,
        _ => Vec::new(),
    };
    let obs = r.dataframe(root, "obs", &mut uns)?;
    let var = r.dataframe(root, "var", &mut uns)?;
    let x = r.matrix(root, "X", "X")?;
    if let Some(m) = &x {
        let (n, g) = m.shape();
        if n != obs.nrows() || g != var.nrows() {
            return Err(IoError::field(
                path,
                "X",
                format!(
                    "shape {n}x{g} does not match obs ({}) x var ({})",
                    obs.nrows(),
                    var.nrows()
                ),
            ));
        }
    }
    let obsm = r.matrices(root, "obsm")?;
    let varm = r.matrices(root, "varm")?;
    let obsp = r.matrices(root, "obsp")?;
    let varp = r.matrices(root, "varp")?;
    let layers = r.matrices(root, "layers")?;

    let raw = if let Some(LocationType::Group) = kind_of(root, "raw") {
        let g = root.group("raw").at(path, "raw")?;
        let mut none = Vec::new();
        let rx = r
            .matrix(&g, "X", "raw/X")?
            .ok_or_else(|| IoError::field(path, "raw/X", "missing"))?;
        let rvar = r.dataframe(&g, "var", &mut none)?;
        let rvarm = r.matrices(&g, "varm")?;
        Some(Raw {
            x: rx,
            var: rvar,
            varm: rvarm,
        })
    } else if kind_of(root, "raw.X").is_some() {
        let rx = r
            .matrix(root, "raw.X", "raw.X")?
            .ok_or_else(|| IoError::field(path, "raw.X", "unreadable"))?;
        let rvar = r.dataframe(root, "raw.var", &mut uns)?;
        let rvarm = r.matrices(root, "raw.varm")?;
        Some(Raw {
            x: rx,
            var: rvar,
            varm: rvarm,
        })
    } else {
        None
    };
    if let Some(raw) = &raw {
        let (n, g) = raw.x.shape();
        if n != obs.nrows() || g != raw.var.nrows() {
            return Err(IoError::field(
                path,
                "raw/X",
                format!(
                    "shape {n}x{g} does not match obs ({}) x raw.var ({})",
                    obs.nrows(),
                    raw.var.nrows()
                ),
            ));
        }
    }
    Ok(AnnData {
        x,
        obs,
        var,
        obsm,
        varm,
        obsp,
        varp,
        layers,
        raw,
        uns,
        skipped: r.skipped,
        source: Some(path.to_path_buf()),
    })
}

// ------------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------------

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
        r.at(&self.path, field)
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
        for (n, v) in items {
            let f = format!("{field}/{n}");
            match v {
                UnsValue::Str(s) => {
                    let s = VarLenUnicode::from_str(s)
                        .map_err(|e| IoError::field(&self.path, &f, e.to_string()))?;
                    let ds = self.e(&f, g.new_dataset::<VarLenUnicode>().create(n.as_str()))?;
                    self.e(&f, ds.write_scalar(&s))?;
                    self.set_encoding(&ds, "string", "0.2.0")?;
                }
                UnsValue::F64(x) => self.scalar(&g, n, x, &f)?,
                UnsValue::I64(x) => self.scalar(&g, n, x, &f)?,
                UnsValue::Bool(x) => self.scalar(&g, n, x, &f)?,
                UnsValue::Array(c) => self.column(&g, n, c, &f)?,
                UnsValue::Dict(d) => self.uns(&g, n, d, &f)?,
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

/// A temporary path next to `path`, renamed over it only when writing succeeded, so a failed
/// write never leaves a half-written file under the real name.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

pub(crate) fn finish_temp(tmp: &Path, path: &Path, ok: Result<()>) -> Result<()> {
    match ok {
        Ok(()) => std::fs::rename(tmp, path).map_err(|e| IoError::os(path, e)),
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            Err(e)
        }
    }
}

/// Write `adata` as `.h5ad` in the encoding anndata ≥0.8 reads, atomically (temp file + rename).
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
    let tmp = temp_path(path);
    let w = Writer {
        path: path.to_path_buf(),
        compression,
    };
    let res = (|| -> Result<()> {
        let file =
            File::create(&tmp).map_err(|e| IoError::file(path, format!("cannot create: {e}")))?;
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
            let g = w.e("raw", file.create_group("raw"))?;
            w.set_encoding(&g, "raw", "0.1.0")?;
            w.matrix(&g, "X", &raw.x, "raw/X")?;
            w.dataframe(&g, "var", &raw.var)?;
            w.dict_of_matrices(&g, "varm", &raw.varm)?;
        }
        w.uns(&file, "uns", &adata.uns, "uns")?;
        file.close()
            .map_err(|e| IoError::file(path, format!("closing: {e}")))?;
        Ok(())
    })();
    finish_temp(&tmp, path, res)
}
