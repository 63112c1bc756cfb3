//! From a cell's expression to model input, one file per family: gene vocabularies and id
//! matching ([`vocab`]), scGPT's binned tokens with `<cls>`/`<pad>` ([`scgpt`]), Geneformer's
//! rank-value tokens ([`geneformer`], its dictionaries read by `scllm_pickle`), and batches
//! grouped by length so little is padded ([`batch`]); what every family's preparation shares is
//! in [`prepare`].

pub mod batch;
pub mod cellplm;
pub mod corpus;
pub mod geneformer;
pub mod prepare;
pub mod scbert;
pub mod scgpt;
pub mod vocab;

pub use batch::{cut_batches, length_grouped_batches, pad_batch, Batch, BatchLimits};
pub use corpus::{list_inputs, mask_values, union_vocab, Corpus, CorpusOptions, ObsFilter};
pub use prepare::{PrepOptions, Prepared};
pub use scgpt::{Tokenizer, TokenizerConfig};
pub use vocab::{gene_symbols, match_genes, GeneMatch, GeneVocab};

/// One cell as a model reads it: token ids and a value per token (scGPT's binned expression;
/// 0 for families that read tokens only).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenizedCell {
    pub genes: Vec<u32>,
    pub values: Vec<f32>,
}

impl TokenizedCell {
    pub fn len(&self) -> usize {
        self.genes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.genes.is_empty()
    }
}

/// A family's tokenizer of one cell at a time (so a cell's tokens never depend on its
/// neighbours, and files stream block by block).
pub trait RowTokenizer: Send + Sync {
    /// The cell from its stored entries (column indices into `var`, ascending, and values) and
    /// its total count over all genes (Geneformer's `n_counts`; families that do not normalise
    /// ignore it).
    fn tokenize_row(&self, cols: &[u32], vals: &[f32], total: f64) -> Result<TokenizedCell>;
    /// Token id and value of padding.
    fn pad_id(&self) -> u32;
    fn pad_value(&self) -> f32;
    /// The most tokens one cell can become, where the family fixes it (scBERT: every cell is its
    /// whole panel); lets an embedder bound how many tokenised cells it holds at once.
    fn max_tokens(&self) -> Option<usize> {
        None
    }
}

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Pp(#[from] scllm_pp::PpError),
    #[error(transparent)]
    Io(#[from] scllm_io::IoError),
}

pub type Result<T, E = TokenizeError> = std::result::Result<T, E>;
