//! CellPLM (OmicsML/CellPLM; PyPI `cellplm` 0.1.0.post2): cells are the tokens and the cells of
//! one sample attend to each other through Flow-Attention (docs/models/cellplm.md). This module
//! holds the zero-shot embedding path of `CellEmbeddingPipeline`: the folder and checkpoint
//! ([`folder`]), the model ([`model`]), the attention sets ([`sets`]) and a file's embedding
//! ([`embed`]).

pub mod config;
pub mod embed;
pub mod folder;
pub mod model;
pub mod sets;

pub use config::CellPlmConfig;
pub use embed::{embed_anndata, CellPlmEmbedding, OBSM_KEY};
pub use folder::{is_cellplm_dir, CellPlmFolder};
pub use model::{CellPlm, SetInput, SetOutput};
pub use sets::{GroupBy, SetOptions, Sets};
