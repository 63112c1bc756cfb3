//! Writing an [`AnnData`] as `.h5ad` in the encoding anndata ≥0.8 reads, atomically; the
//! [`Writer`] of elements is shared with the block-wise writer in `backed`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, Group, Location};

use crate::anndata::AnnData;
use crate::error::{H5Context, IoError, Result};
use crate::frame::{Column, DataFrame, UnsValue};
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

pub(crate) fn write_uns(w: &Writer, file: &File, uns: &[(String, UnsValue)]) -> Result<()> {
    w.uns(file, "uns", uns, "uns")
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
    scllm_fs::finish(&tmp, path, res, |e| IoError::os(path, e))
}
