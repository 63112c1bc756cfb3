//! Preprocessing that gives scanpy's numbers: cell/gene filters, `normalize_total`, `log1p`,
//! highly variable genes (`seurat`, `cell_ranger`, `seurat_v3`), `scale`, plus scGPT's per-cell
//! quantile binning and detection of what X holds (counts, log-normalised, scaled).
//!
//! Functions take and return CSR matrices ([`scllm_io::Compressed`]) with float32 values, the
//! layout and dtype scanpy uses for counts; dense input is converted first (zeros dropped).
//!
//! The file-level jobs built on them: [`recipe`] (`scllm preprocess`: the steps in order, with
//! the layers named as scanpy/scGPT users expect, in memory or streamed) and [`inspect`]
//! (`scllm inspect`: what a dataset holds).

pub mod binning;
pub mod detect;
pub mod filter;
pub mod hvg;
pub mod inspect;
pub mod loess;
pub mod normalize;
pub mod recipe;
pub mod scale;
pub mod stream;

pub use binning::{bin_row, BinRng, Binned, Binner};
pub use detect::{detect_values, ValueKind, ValueReport, ValueScan};
pub use filter::{filter_cells, filter_genes, CellFilter, GeneFilter};
pub use hvg::{
    highly_variable_genes, seurat_v3_counts, Batches, CsrRef, Cutoffs, HvgFlavor, HvgOptions,
    HvgResult,
};
pub use normalize::{log1p, normalize_total, normalize_total_in_place_excluding, to_csr_f32};
pub use scale::scale;

/// What went wrong, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum PpError {
    #[error("{what}: found negative value {value} (cell {row}, gene {col}); {need} needs non-negative data. Is X already scaled? Use the counts layer (e.g. `--layer counts`) or `.raw`.")]
    Negative {
        what: String,
        need: String,
        value: f32,
        row: usize,
        col: usize,
    },
    #[error("{what}: found NaN (cell {row}, gene {col}); remove or impute NaN values first.")]
    NaN {
        what: String,
        row: usize,
        col: usize,
    },
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file (the jobs of [`recipe`] and [`inspect`]).
    #[error(transparent)]
    Io(#[from] scllm_io::IoError),
    /// Matching genes to a vocabulary ([`recipe::VocabMatcher`]), its error as it was.
    #[error(transparent)]
    Vocab(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = PpError> = std::result::Result<T, E>;

/// Fail on NaN or negative values, naming the first offending entry.
pub fn check_nonnegative(x: &scllm_io::Compressed, what: &str, need: &str) -> Result<()> {
    for i in 0..x.nrows {
        for k in x.range(i) {
            let v = x.data.get_f64(k);
            if v.is_nan() {
                return Err(PpError::NaN {
                    what: what.into(),
                    row: i,
                    col: x.indices[k] as usize,
                });
            }
            if v < 0.0 {
                return Err(PpError::Negative {
                    what: what.into(),
                    need: need.into(),
                    value: v as f32,
                    row: i,
                    col: x.indices[k] as usize,
                });
            }
        }
    }
    Ok(())
}
