use std::path::PathBuf;

/// What went wrong, in words a user can act on: the file, the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// Arguments or data that cannot be used as given.
    #[error("{0}")]
    Invalid(String),
    /// Saving or reading `OUT/checkpoint/`.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// The backend failed (reading a tensor back, a shape error).
    #[error("backend: {0}")]
    Backend(String),
    #[error(transparent)]
    Io(#[from] scllm_io::IoError),
    #[error(transparent)]
    Pp(#[from] scllm_pp::PpError),
    #[error(transparent)]
    Tokenize(#[from] scllm_tokenize::TokenizeError),
    #[error(transparent)]
    Model(#[from] scllm_models::ModelError),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    /// Input the user can fix (exit 2), as opposed to a failure of scllm.
    pub fn is_bad_input(&self) -> bool {
        match self {
            TrainError::File { .. }
            | TrainError::Invalid(_)
            | TrainError::Checkpoint { .. }
            | TrainError::Io(_)
            | TrainError::Pp(_)
            | TrainError::Tokenize(_) => true,
            TrainError::Model(e) => e.is_bad_input(),
            TrainError::Backend(_) => false,
        }
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> TrainError {
    TrainError::Invalid(msg.into())
}

pub(crate) fn file_err(path: &std::path::Path, msg: impl Into<String>) -> TrainError {
    TrainError::File {
        path: path.to_path_buf(),
        message: msg.into(),
    }
}

/// A checkpoint or log file that cannot be written or read.
pub(crate) fn ck_err(path: &std::path::Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
