//! `obs`/`var` data frames and `uns` values, with the column kinds pandas users have.

/// One data-frame column. Integers of any width are held as i64 (int32 kept apart so a round trip
/// keeps the dtype anndata wrote); NaN marks missing floats; nullable kinds carry a mask
/// (`true` = missing), as pandas' `Int64`/`boolean` do. Equality treats NaN as equal to NaN.
#[derive(Clone, Debug)]
pub enum Column {
    Str(Vec<String>),
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    /// Codes index `categories`; -1 is missing (NaN in pandas).
    Categorical {
        codes: Vec<i32>,
        categories: Box<Column>,
        ordered: bool,
    },
    NullableInt {
        values: Vec<i64>,
        mask: Vec<bool>,
    },
    NullableBool {
        values: Vec<bool>,
        mask: Vec<bool>,
    },
    NullableStr {
        values: Vec<String>,
        mask: Vec<bool>,
    },
}

impl PartialEq for Column {
    fn eq(&self, other: &Column) -> bool {
        use crate::matrix::{same_f32, same_f64};
        match (self, other) {
            (Column::Str(a), Column::Str(b)) => a == b,
            (Column::F64(a), Column::F64(b)) => same_f64(a, b),
            (Column::F32(a), Column::F32(b)) => same_f32(a, b),
            (Column::I64(a), Column::I64(b)) => a == b,
            (Column::I32(a), Column::I32(b)) => a == b,
            (Column::Bool(a), Column::Bool(b)) => a == b,
            (
                Column::Categorical {
                    codes: a,
                    categories: ca,
                    ordered: oa,
                },
                Column::Categorical {
                    codes: b,
                    categories: cb,
                    ordered: ob,
                },
            ) => a == b && ca == cb && oa == ob,
            (
                Column::NullableInt {
                    values: a,
                    mask: ma,
                },
                Column::NullableInt {
                    values: b,
                    mask: mb,
                },
            ) => a == b && ma == mb,
            (
                Column::NullableBool {
                    values: a,
                    mask: ma,
                },
                Column::NullableBool {
                    values: b,
                    mask: mb,
                },
            ) => a == b && ma == mb,
            (
                Column::NullableStr {
                    values: a,
                    mask: ma,
                },
                Column::NullableStr {
                    values: b,
                    mask: mb,
                },
            ) => a == b && ma == mb,
            _ => false,
        }
    }
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Str(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::F32(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::I32(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Categorical { codes, .. } => codes.len(),
            Column::NullableInt { values, .. } => values.len(),
            Column::NullableBool { values, .. } => values.len(),
            Column::NullableStr { values, .. } => values.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A short name of the kind, as pandas would print the dtype.
    pub fn kind(&self) -> &'static str {
        match self {
            Column::Str(_) => "string",
            Column::F64(_) => "float64",
            Column::F32(_) => "float32",
            Column::I64(_) => "int64",
            Column::I32(_) => "int32",
            Column::Bool(_) => "bool",
            Column::Categorical { .. } => "category",
            Column::NullableInt { .. } => "Int64",
            Column::NullableBool { .. } => "boolean",
            Column::NullableStr { .. } => "string[nullable]",
        }
    }
    /// Entry `i` as text, `None` when missing. Used for labels and printing.
    pub fn get_str(&self, i: usize) -> Option<String> {
        match self {
            Column::Str(v) => Some(v[i].clone()),
            Column::F64(v) => (!v[i].is_nan()).then(|| fmt_float(v[i])),
            Column::F32(v) => (!v[i].is_nan()).then(|| fmt_float(v[i] as f64)),
            Column::I64(v) => Some(v[i].to_string()),
            Column::I32(v) => Some(v[i].to_string()),
            Column::Bool(v) => Some(if v[i] { "True" } else { "False" }.to_string()),
            Column::Categorical {
                codes, categories, ..
            } => {
                let c = codes[i];
                if c < 0 {
                    None
                } else {
                    categories.get_str(c as usize)
                }
            }
            Column::NullableInt { values, mask } => (!mask[i]).then(|| values[i].to_string()),
            Column::NullableBool { values, mask } => {
                (!mask[i]).then(|| if values[i] { "True" } else { "False" }.to_string())
            }
            Column::NullableStr { values, mask } => (!mask[i]).then(|| values[i].clone()),
        }
    }
    /// All entries as optional strings.
    pub fn to_strings(&self) -> Vec<Option<String>> {
        (0..self.len()).map(|i| self.get_str(i)).collect()
    }
    /// Entry `i` as a number, `None` when missing or not numeric.
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            Column::F64(v) => (!v[i].is_nan()).then_some(v[i]),
            Column::F32(v) => (!v[i].is_nan()).then_some(v[i] as f64),
            Column::I64(v) => Some(v[i] as f64),
            Column::I32(v) => Some(v[i] as f64),
            Column::Bool(v) => Some(v[i] as u8 as f64),
            Column::NullableInt { values, mask } => (!mask[i]).then_some(values[i] as f64),
            Column::NullableBool { values, mask } => (!mask[i]).then_some(values[i] as u8 as f64),
            _ => None,
        }
    }
    /// Keep the rows in `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Column {
        fn g<T: Clone>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().map(|&i| v[i].clone()).collect()
        }
        match self {
            Column::Str(v) => Column::Str(g(v, idx)),
            Column::F64(v) => Column::F64(g(v, idx)),
            Column::F32(v) => Column::F32(g(v, idx)),
            Column::I64(v) => Column::I64(g(v, idx)),
            Column::I32(v) => Column::I32(g(v, idx)),
            Column::Bool(v) => Column::Bool(g(v, idx)),
            Column::Categorical {
                codes,
                categories,
                ordered,
            } => Column::Categorical {
                codes: g(codes, idx),
                categories: categories.clone(),
                ordered: *ordered,
            },
            Column::NullableInt { values, mask } => Column::NullableInt {
                values: g(values, idx),
                mask: g(mask, idx),
            },
            Column::NullableBool { values, mask } => Column::NullableBool {
                values: g(values, idx),
                mask: g(mask, idx),
            },
            Column::NullableStr { values, mask } => Column::NullableStr {
                values: g(values, idx),
                mask: g(mask, idx),
            },
        }
    }
    /// A categorical column from optional labels (categories sorted, as pandas does).
    pub fn categorical_from(labels: &[Option<String>]) -> Column {
        let mut cats: Vec<String> = labels.iter().flatten().cloned().collect();
        cats.sort();
        cats.dedup();
        let codes = labels
            .iter()
            .map(|l| match l {
                Some(s) => cats.binary_search(s).map(|p| p as i32).unwrap_or(-1),
                None => -1,
            })
            .collect();
        Column::Categorical {
            codes,
            categories: Box::new(Column::Str(cats)),
            ordered: false,
        }
    }
}

fn fmt_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// A pandas-style data frame as AnnData stores `obs` and `var`: a string index plus named columns.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DataFrame {
    /// Name of the index column in the file (anndata writes `_index`).
    pub index_name: String,
    pub index: Vec<String>,
    pub columns: Vec<(String, Column)>,
}

impl DataFrame {
    pub fn new(index: Vec<String>) -> Self {
        DataFrame {
            index_name: "_index".into(),
            index,
            columns: Vec::new(),
        }
    }
    pub fn nrows(&self) -> usize {
        self.index.len()
    }
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }
    /// Insert or replace a column.
    pub fn set(&mut self, name: &str, col: Column) {
        debug_assert_eq!(
            col.len(),
            self.nrows(),
            "column {name} has the wrong length"
        );
        if let Some(slot) = self.columns.iter_mut().find(|(n, _)| n == name) {
            slot.1 = col;
        } else {
            self.columns.push((name.to_string(), col));
        }
    }
    pub fn remove(&mut self, name: &str) -> Option<Column> {
        let pos = self.columns.iter().position(|(n, _)| n == name)?;
        Some(self.columns.remove(pos).1)
    }
    pub fn select(&self, idx: &[usize]) -> DataFrame {
        DataFrame {
            index_name: self.index_name.clone(),
            index: idx.iter().map(|&i| self.index[i].clone()).collect(),
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.select(idx)))
                .collect(),
        }
    }
}

/// An entry of `uns`: scalars, 1-D arrays and nested dictionaries.
#[derive(Clone, Debug, PartialEq)]
pub enum UnsValue {
    Str(String),
    F64(f64),
    I64(i64),
    Bool(bool),
    /// A 1-D array (numbers, booleans or strings), e.g. colours.
    Array(Column),
    Dict(Vec<(String, UnsValue)>),
}

impl UnsValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            UnsValue::Str(s) => Some(s),
            _ => None,
        }
    }
}
