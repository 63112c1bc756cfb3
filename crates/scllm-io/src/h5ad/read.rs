//! Reading a whole `.h5ad` into an [`AnnData`]: every element in the encoding anndata ≥0.8
//! writes, plus the older layouts still found in the wild (anndata 0.6 structured-array
//! `obs`/`var`/`obsm`, `h5sparse`-style `raw.X`, categories in `uns['<col>_categories']`).

use std::path::Path;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, File, Group, LocationType};

use super::open::open_h5ad;
use super::read_primitives::{
    attr_shape, attr_string, attr_strings, check_stored, compressed_layout_fits, encoding,
    fixed_str, is_string_type, kind_of, member_names, number_at, read_bytes, read_codes,
    read_index_u32, read_indptr, read_strings_container, read_values,
};
use crate::anndata::{AnnData, Raw};
use crate::error::{H5Context, IoError, Result};
use crate::frame::{Column, DataFrame, UnsValue};
use crate::matrix::{Compressed, Matrix, Values};

/// `uns` as read: named values in file order.
type Uns = Vec<(String, UnsValue)>;

/// The shape a matrix must have where the file's other parts already fix it (`None`: free),
/// checked before its values are read so a damaged shape never drives an allocation.
#[derive(Clone, Copy)]
struct Expect {
    rows: Option<usize>,
    cols: Option<usize>,
}

impl Expect {
    fn rows(rows: usize) -> Self {
        Expect {
            rows: Some(rows),
            cols: None,
        }
    }
    fn both(rows: usize, cols: usize) -> Self {
        Expect {
            rows: Some(rows),
            cols: Some(cols),
        }
    }
    /// Why `(nrows, ncols)` does not fit, if it does not.
    fn mismatch(&self, nrows: usize, ncols: usize) -> Option<String> {
        let bad = |want: Option<usize>, got: usize| want.is_some_and(|w| w != got);
        (bad(self.rows, nrows) || bad(self.cols, ncols)).then(|| {
            let show = |w: Option<usize>| w.map_or("any".to_string(), |w| w.to_string());
            format!(
                "shape {nrows}x{ncols} does not match the {}x{} that obs/var fix; the file is damaged",
                show(self.rows),
                show(self.cols)
            )
        })
    }
}

struct Reader<'a> {
    path: &'a Path,
    skipped: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(path: &'a Path) -> Self {
        Reader {
            path,
            skipped: Vec::new(),
        }
    }

    /// `uns`, then `obs` and `var`, which take their anndata 0.6 categories out of `uns`.
    fn uns_and_frames(&mut self, root: &Group) -> Result<(Uns, DataFrame, DataFrame)> {
        let mut uns = match kind_of(root, "uns") {
            Some(LocationType::Group) => {
                self.uns_group(&root.group("uns").at(self.path, "uns")?, "uns")?
            }
            _ => Vec::new(),
        };
        let obs = self.dataframe(root, "obs", &mut uns)?;
        let var = self.dataframe(root, "var", &mut uns)?;
        Ok((uns, obs, var))
    }

    fn err(&self, field: &str, msg: impl Into<String>) -> IoError {
        IoError::field(self.path, field, msg)
    }

    /// A matrix stored as a dense dataset or as a CSR/CSC group (new or h5sparse-style).
    fn matrix(
        &mut self,
        parent: &Group,
        name: &str,
        field: &str,
        expect: Expect,
    ) -> Result<Option<Matrix>> {
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
                    // X, layers and pairwise matrices must be 2-D; obsm/varm may hold more
                    d if expect.cols.is_some() => {
                        return Err(self.err(
                            field,
                            format!("a {d}-D array where a 2-D matrix is expected"),
                        ))
                    }
                    d => {
                        self.skipped.push(format!("{field}: {d}-D array"));
                        return Ok(None);
                    }
                };
                if let Some(why) = expect.mismatch(nrows, ncols) {
                    return Err(self.err(field, why));
                }
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
                    .ok_or_else(|| {
                        self.err(
                            field,
                            "sparse matrix without a valid `shape` attribute (two non-negative integers)",
                        )
                    })?;
                if let Some(why) = expect.mismatch(nrows, ncols) {
                    return Err(self.err(field, why));
                }
                let data = read_values(&g.dataset("data").at(self.path, &format!("{field}/data"))?)
                    .at(self.path, &format!("{field}/data"))?;
                let indices = read_index_u32(&g.dataset("indices").at(self.path, field)?)
                    .at(self.path, &format!("{field}/indices"))?;
                let indptr = read_indptr(&g.dataset("indptr").at(self.path, field)?)
                    .at(self.path, &format!("{field}/indptr"))?;
                let (major, minor) = if csr { (nrows, ncols) } else { (ncols, nrows) };
                // every later pass slices rows by indptr
                if !compressed_layout_fits(
                    &indptr,
                    major,
                    indices.len(),
                    data.len(),
                    (nrows, ncols),
                ) || indices.iter().any(|&j| j as usize >= minor)
                {
                    return Err(self.err(
                        field,
                        format!(
                            "inconsistent sparse matrix (shape {nrows}x{ncols}, indptr {} entries not rising from 0 to the stored count, indices {} within bounds, data {}); the file is damaged",
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
    fn compound_matrices(
        &mut self,
        ds: &Dataset,
        field: &str,
        expect: Expect,
    ) -> Result<Vec<(String, Matrix)>> {
        check_stored(ds).at(self.path, field)?;
        let (buf, td, n) = read_bytes(ds, false).at(self.path, field)?;
        if let Some(rows) = expect.rows.filter(|&r| r != n) {
            return Err(self.err(
                field,
                format!("{n} rows where obs/var fix {rows}; the file is damaged"),
            ));
        }
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
    /// A dictionary of matrices whose shapes `expect` constrains (`obsm`: rows = cells, ...).
    fn matrices(
        &mut self,
        root: &Group,
        name: &str,
        expect: Expect,
    ) -> Result<Vec<(String, Matrix)>> {
        match kind_of(root, name) {
            Some(LocationType::Group) => {
                let g = root.group(name).at(self.path, name)?;
                let mut out = Vec::new();
                for m in member_names(&g).at(self.path, name)? {
                    let field = format!("{name}/{m}");
                    if let Some(mat) = self.matrix(&g, &m, &field, expect)? {
                        out.push((m, mat));
                    }
                }
                Ok(out)
            }
            Some(LocationType::Dataset) => {
                let ds = root.dataset(name).at(self.path, name)?;
                self.compound_matrices(&ds, name, expect)
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
                            .and_then(|d| read_codes(&d))
                            .at(self.path, &format!("{field}/codes"))?;
                        let categories = sub(self, "categories")?;
                        check_codes(&codes, categories.len(), self.path, field)?;
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
        check_stored(ds).at(self.path, field)?;
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
                    order = member_names(&g)
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
                check_stored(&ds).at(self.path, name)?;
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
        for m in member_names(g).at(self.path, prefix)? {
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
    check_codes(&codes, categories.len(), path, field)?;
    Ok(Column::Categorical {
        codes,
        categories: Box::new(categories),
        ordered: false,
    })
}

/// Codes index the categories; -1 is pandas' missing value.
fn check_codes(codes: &[i32], n_categories: usize, path: &Path, field: &str) -> Result<()> {
    match codes
        .iter()
        .find(|&&c| c < -1 || c as i64 >= n_categories as i64)
    {
        Some(bad) => Err(IoError::field(
            path,
            field,
            format!(
                "categorical code {bad} out of range (-1 for missing, else 0..{n_categories}); the file is damaged"
            ),
        )),
        None => Ok(()),
    }
}

/// Only `obs` and `var` (for backed access).
pub(crate) fn read_frames(path: &Path, file: &File) -> Result<(DataFrame, DataFrame)> {
    let (_, obs, var) = Reader::new(path).uns_and_frames(file)?;
    Ok((obs, var))
}

/// Read a whole `.h5ad` file into memory.
pub fn read_h5ad(path: impl AsRef<Path>) -> Result<AnnData> {
    let path = path.as_ref();
    super::guard::reading(path);
    super::guard::structure(|| read_whole(path))
}

/// One matrix of an `.h5ad` file, `element` `"X"`, `"layers/NAME"` or `"raw/X"` (dense, CSR or
/// CSC as stored), checked to be `nrows × ncols`, without the rest of the file: what a backed
/// AnnData's holder (the Python binding) needs when `obs`/`var` are already in its memory.
pub fn read_matrix(
    path: impl AsRef<Path>,
    element: &str,
    nrows: usize,
    ncols: usize,
) -> Result<Matrix> {
    let path = path.as_ref();
    super::guard::reading(path);
    super::guard::structure(|| {
        let file = open_h5ad(path)?;
        let root: &Group = &file;
        // anndata before 0.7 stored `.raw` as root datasets `raw.X`, `raw.var` (read_whole too)
        let element = if element == "raw/X"
            && kind_of(root, "raw").is_none()
            && kind_of(root, "raw.X").is_some()
        {
            "raw.X"
        } else {
            element
        };
        let sub;
        let (parent, name) = match element.rsplit_once('/') {
            Some((g, name)) => {
                sub = root
                    .group(g)
                    .map_err(|_| IoError::field(path, element, "no such element"))?;
                (&sub, name)
            }
            None => (root, element),
        };
        Reader::new(path)
            .matrix(parent, name, element, Expect::both(nrows, ncols))?
            .ok_or_else(|| IoError::field(path, element, "missing, or not a matrix"))
    })
}

fn read_whole(path: &Path) -> Result<AnnData> {
    let file = open_h5ad(path)?;
    let root: &Group = &file;
    let mut r = Reader::new(path);
    let (mut uns, obs, var) = r.uns_and_frames(root)?;
    let (n_obs, n_var) = (obs.nrows(), var.nrows());
    let x = r.matrix(root, "X", "X", Expect::both(n_obs, n_var))?;
    let obsm = r.matrices(root, "obsm", Expect::rows(n_obs))?;
    let varm = r.matrices(root, "varm", Expect::rows(n_var))?;
    let obsp = r.matrices(root, "obsp", Expect::both(n_obs, n_obs))?;
    let varp = r.matrices(root, "varp", Expect::both(n_var, n_var))?;
    let layers = r.matrices(root, "layers", Expect::both(n_obs, n_var))?;

    let raw = if let Some(LocationType::Group) = kind_of(root, "raw") {
        let g = root.group("raw").at(path, "raw")?;
        let mut none = Vec::new();
        let rvar = r.dataframe(&g, "var", &mut none)?;
        let rx = r
            .matrix(&g, "X", "raw/X", Expect::both(n_obs, rvar.nrows()))?
            .ok_or_else(|| IoError::field(path, "raw/X", "missing"))?;
        let rvarm = r.matrices(&g, "varm", Expect::rows(rvar.nrows()))?;
        Some(Raw {
            x: rx,
            var: rvar,
            varm: rvarm,
        })
    } else if kind_of(root, "raw.X").is_some() {
        let rvar = r.dataframe(root, "raw.var", &mut uns)?;
        let rx = r
            .matrix(root, "raw.X", "raw.X", Expect::both(n_obs, rvar.nrows()))?
            .ok_or_else(|| IoError::field(path, "raw.X", "unreadable"))?;
        let rvarm = r.matrices(root, "raw.varm", Expect::rows(rvar.nrows()))?;
        Some(Raw {
            x: rx,
            var: rvar,
            varm: rvarm,
        })
    } else {
        None
    };
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
