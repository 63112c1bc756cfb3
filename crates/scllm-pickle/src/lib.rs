//! Reading Python pickles without running them.
//!
//! Model families ship plain data as pickles (Geneformer's dictionaries) and whole
//! scikit-learn estimators (CellTypist's models). Unpickling in Python means calling whatever
//! the file names; here nothing is ever called. The reader runs the pickle machine
//! ([`read_pickle`]) and builds values instead:
//!
//! * plain data: `None`, booleans, integers, floats, strings, bytes, lists, tuples, dicts;
//! * numpy, interpreted: `numpy.dtype`, scalars (`numpy.core.multiarray.scalar`), arrays
//!   (`_reconstruct` + `__setstate__`, or protocol 5's `_frombuffer`) as [`NdArray`] (dtype,
//!   shape, raw bytes, Fortran order; object arrays as their Python values);
//! * a class on the caller's allow-list, when a pickle builds it (`REDUCE`, `NEWOBJ`,
//!   `copyreg._reconstructor`) and sets its state (`BUILD`): an inert [`PyObject`] holding the
//!   class path, the arguments and the state.
//!
//! Any other global is refused by name. The opcodes are Python's `pickletools` protocol 0-5 set
//! (binary forms), minus persistent ids, extension registry and out-of-band buffers.
//!
//! Why not a crate: `serde-pickle` replaces unknown globals with `None` (a numpy array or an
//! estimator would be lost), and burn's PyTorch reader knows torch tensors only.

mod numpy;
mod reader;
mod value;

use std::path::{Path, PathBuf};

pub use reader::read_pickle_allowing;
pub use value::{ArrayData, DType, DictKey, NdArray, PyObject, PyValue};

/// Why a pickle could not be read: the file (when there is one) and what was wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}{message}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
pub struct PickleError {
    pub path: Option<PathBuf>,
    pub message: String,
}

impl PickleError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        PickleError {
            path: None,
            message: message.into(),
        }
    }
}

pub type Result<T, E = PickleError> = std::result::Result<T, E>;

/// Parse one pickle of plain data and numpy values (no other class allowed).
pub fn read_pickle(data: &[u8]) -> Result<PyValue> {
    read_pickle_allowing(data, &[])
}

/// Read the pickle at `path` (the whole file), allowing the classes `allowed` (full paths,
/// `module.Name`) to be built as inert objects.
pub fn read_pickle_file(path: &Path, allowed: &[&str]) -> Result<PyValue> {
    let at = |message: String| PickleError {
        path: Some(path.to_path_buf()),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| at(format!("cannot read: {e}")))?;
    read_pickle_allowing(&bytes, allowed)
        .map_err(|e| at(format!("not a readable pickle: {}", e.message)))
}
