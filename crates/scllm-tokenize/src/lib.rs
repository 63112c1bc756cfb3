//! From a cell's expression to model input: gene vocabularies and id matching ([`vocab`]),
//! scGPT's tokenisation with `<cls>`/`<pad>`, expressed-genes-only or all genes, `max_len` with
//! sampling ([`scgpt`]), and batches grouped by length so little is padded ([`batch`]).

pub mod batch;
pub mod corpus;
pub mod scgpt;
pub mod vocab;

pub use batch::{cut_batches, length_grouped_batches, pad_batch, Batch, BatchLimits};
pub use corpus::{list_inputs, mask_values, union_vocab, Corpus, CorpusOptions, ObsFilter};
pub use scgpt::{TokenizedCell, Tokenizer, TokenizerConfig};
pub use vocab::{gene_symbols, match_genes, GeneMatch, GeneVocab};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Pp(#[from] scllm_pp::PpError),
}

pub type Result<T, E = TokenizeError> = std::result::Result<T, E>;
