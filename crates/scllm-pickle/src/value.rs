//! The values a pickle is read into: plain Python data, numpy dtypes and arrays, and inert
//! objects of allow-listed classes.

use std::collections::BTreeMap;

/// A value read from a pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    /// Lookups are what callers need; the file's key order is not kept.
    Dict(BTreeMap<DictKey, PyValue>),
    /// `numpy.dtype(code)` with its byte order.
    DType(DType),
    /// A numpy array.
    Array(NdArray),
    /// An instance of an allow-listed class, never constructed: what the pickle said about it.
    Object(PyObject),
    /// An allow-listed class named but not instantiated (e.g. an argument of another call).
    Class(String),
}

/// A dictionary key: pickled dicts here are keyed by strings or integers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DictKey {
    Str(String),
    Int(i64),
}

/// A numpy dtype as numpy pickles it: the type code (`f8`, `i4`, `U23`, `O8`, ...) and the byte
/// order from its state (`>` is big-endian; `<`, `|` and `=` read as little-endian).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DType {
    pub code: String,
    pub big_endian: bool,
}

impl DType {
    /// The kind letter (`f`, `i`, `u`, `b`, `U`, `S`, `O`, ...).
    pub fn kind(&self) -> char {
        self.code.chars().next().unwrap_or('?')
    }
    /// Bytes per element as the code states them (`U` counts 4 bytes a character).
    pub fn itemsize(&self) -> Option<usize> {
        if self.code == "?" {
            return Some(1);
        }
        let n: usize = self.code.get(1..)?.parse().ok()?;
        Some(if self.kind() == 'U' { n * 4 } else { n })
    }
}

/// A numpy array: dtype, shape, element order and the elements.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Elements stored column-major (`order='F'`).
    pub fortran_order: bool,
    pub data: ArrayData,
}

/// The elements of an array: raw bytes of a fixed-size dtype, or the Python values of an object
/// array.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    Raw(Vec<u8>),
    Objects(Vec<PyValue>),
}

/// An instance of an allow-listed class, as the pickle describes it: nothing was constructed.
#[derive(Clone, Debug, PartialEq)]
pub struct PyObject {
    /// Full class path, `module.Name`.
    pub class: String,
    /// Constructor arguments (`REDUCE`/`NEWOBJ`).
    pub args: Vec<PyValue>,
    /// The `BUILD` state (for scikit-learn estimators: the attribute dict).
    pub state: Option<Box<PyValue>>,
}

impl PyObject {
    /// An attribute of the object's dict state.
    pub fn attr(&self, name: &str) -> Option<&PyValue> {
        match self.state.as_deref() {
            Some(PyValue::Dict(d)) => d.get(&DictKey::Str(name.to_string())),
            // (dict, slots) state
            Some(PyValue::Tuple(t)) => t.iter().find_map(|s| match s {
                PyValue::Dict(d) => d.get(&DictKey::Str(name.to_string())),
                _ => None,
            }),
            _ => None,
        }
    }
}

impl NdArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PyValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Int(i) => Some(*i as f64),
            PyValue::Float(f) => Some(*f),
            PyValue::Bool(b) => Some(*b as u8 as f64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            PyValue::Int(i) => Some(*i),
            PyValue::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            PyValue::Bool(b) => Some(*b),
            PyValue::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&NdArray> {
        match self {
            PyValue::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&PyObject> {
        match self {
            PyValue::Object(o) => Some(o),
            _ => None,
        }
    }
    /// A value of a dict by string key.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(d) => d.get(&DictKey::Str(key.to_string())),
            _ => None,
        }
    }
    /// The Python type, for messages.
    pub fn kind(&self) -> String {
        match self {
            PyValue::None => "None".into(),
            PyValue::Bool(_) => "bool".into(),
            PyValue::Int(_) => "int".into(),
            PyValue::Float(_) => "float".into(),
            PyValue::Str(_) => "str".into(),
            PyValue::Bytes(_) => "bytes".into(),
            PyValue::List(_) => "list".into(),
            PyValue::Tuple(_) => "tuple".into(),
            PyValue::Dict(_) => "dict".into(),
            PyValue::DType(_) => "numpy.dtype".into(),
            PyValue::Array(a) => format!("numpy array of dtype {}", a.dtype.code),
            PyValue::Object(o) => o.class.clone(),
            PyValue::Class(c) => format!("class {c}"),
        }
    }
}
