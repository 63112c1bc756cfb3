//! Batch integration for single-cell embeddings: the scIB metric set as `scib-metrics` computes
//! it (bio conservation and batch correction of an embedding, and its `Benchmarker` aggregates),
//! and Harmony as `harmonypy` runs it.

pub mod clustering;
pub mod eigen;
pub mod evaluate_embedding;
pub mod graph;
pub mod harmony;
pub mod harmony_file;
pub mod kbet;
pub mod lisi;
pub mod neighbors;
pub mod pairwise;
pub mod pcr;
mod rows;
pub mod scib;
pub mod silhouette;

/// What went wrong; `Invalid` is the user's input (exit 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum IntegrateError {
    /// The input cannot be used as given (missing key, one batch, NaN labels, too few cells).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] scllm_io::IoError),
    #[error(transparent)]
    Eval(#[from] scllm_eval::EvalError),
}

pub type Result<T, E = IntegrateError> = std::result::Result<T, E>;

pub(crate) fn invalid(msg: impl Into<String>) -> IntegrateError {
    IntegrateError::Invalid(msg.into())
}
