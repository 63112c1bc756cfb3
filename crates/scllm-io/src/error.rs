//! One error type for everything that reads or writes single-cell files.
//!
//! Every message names the file, the field inside it (when there is one) and what the user can do.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{}: file not found. Check the path (working directory: {}).", path.display(), cwd())]
    NotFound { path: PathBuf },

    #[error("{}: not an HDF5 file, so not an .h5ad file. {hint}", path.display())]
    NotHdf5 { path: PathBuf, hint: String },

    #[error("{}: an HDF5 file, but not AnnData: {detail}. Write it with anndata's `write_h5ad` (or `scllm preprocess`).", path.display())]
    NotAnnData { path: PathBuf, detail: String },

    #[error("{}: field `{field}`: {message}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },

    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },

    #[error("{}: {source}", path.display())]
    Os {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl IoError {
    pub fn field(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        IoError::Field {
            path: path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        IoError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
    pub fn os(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return IoError::NotFound {
                path: path.to_path_buf(),
            };
        }
        IoError::Os {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = IoError> = std::result::Result<T, E>;

/// Attach the file and the HDF5 object name to a low-level HDF5 error.
pub(crate) trait H5Context<T> {
    fn at(self, path: &Path, field: &str) -> Result<T>;
}

impl<T> H5Context<T> for hdf5::Result<T> {
    fn at(self, path: &Path, field: &str) -> Result<T> {
        self.map_err(|e| IoError::field(path, field, format!("HDF5 error: {e}")))
    }
}
