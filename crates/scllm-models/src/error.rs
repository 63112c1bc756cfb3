use std::path::PathBuf;

/// Everything that can go wrong in this crate. All variants but [`ModelError::Backend`] are
/// problems with what the user handed over (exit code 2 in the CLI); see [`ModelError::is_bad_input`].
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file that cannot be used, with what to do about it.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A checkpoint whose pickle would run code or build objects other than tensors.
    #[error("{}: refused: {message}", path.display())]
    Unsafe { path: PathBuf, message: String },
    /// `--strict` and the checkpoint does not cover the model exactly.
    #[error("{}: strict load failed: {summary} (drop --strict to load what matches and keep the rest at random init)", path.display())]
    Strict { path: PathBuf, summary: String },
    /// A bad argument or an inconsistent configuration.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] scllm_io::IoError),
    #[error(transparent)]
    Pp(#[from] scllm_pp::PpError),
    #[error(transparent)]
    Tokenize(#[from] scllm_tokenize::TokenizeError),
    /// A failure inside the compute backend (not the user's input).
    #[error("backend: {0}")]
    Backend(String),
    /// Stopped on request ([`crate::interrupt`]).
    #[error("interrupted")]
    Interrupted,
}

impl ModelError {
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::File {
            path: path.into(),
            message: message.into(),
        }
    }
    /// Whether the error is the input's fault (CLI exit code 2) rather than a failure (1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ModelError::Backend(_) | ModelError::Interrupted)
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
