//! CellPLM (OmicsML/CellPLM; PyPI `cellplm` 0.1.0.post2): cells are the tokens and the cells of
//! one sample attend to each other through Flow-Attention (docs/models/cellplm.md). The folder
//! and checkpoint ([`folder`]), the model ([`model`], its keys in [`params`], its adapter sites
//! in [`sites`]), the attention sets ([`sets`]) and a file's embedding ([`embed`]).
//!
//! CellPLM implements [`CellModel`] (import, export, the load report, adapters, parameter
//! counts) but not [`crate::TokenModel`]: its input is a set of cells, not a batch of token
//! sequences, so the embedder and the trainer have set-wise counterparts (here and in
//! `scllm_train::sets`).

pub mod config;
pub mod decoder;
pub mod embed;
pub mod folder;
pub mod model;
pub mod norm;
pub mod objective;
pub mod params;
pub mod prepare;
pub mod sets;
pub mod sites;
pub mod write;

pub use config::CellPlmConfig;
pub use embed::{embed_anndata, embed_blocks, CellPlmEmbedding, OBSM_KEY};
pub use folder::{is_cellplm_dir, CellPlmFolder};
pub use model::{CellPlm, CellPlmShape, SetInput, SetOutput};
pub use sets::{GroupBy, SetOptions, Sets};

use burn::tensor::Device;

use crate::family::Family;
use crate::model::CellModel;
use crate::params::ParamVisitor;
use crate::peft::{PeftState, Sites};

impl CellModel for CellPlm {
    fn family(&self) -> Family {
        Family::CellPlm
    }

    fn visit_params<V: ParamVisitor>(&mut self, v: &mut V) {
        self.visit_keys(v);
    }

    fn sites(&mut self) -> Sites<'_> {
        self.adapter_sites()
    }

    fn peft_state(&self) -> Option<&PeftState> {
        self.peft.as_ref()
    }

    fn set_peft_state(&mut self, state: Option<PeftState>) {
        self.peft = state;
    }

    fn d_model(&self) -> usize {
        CellPlm::d_model(self)
    }

    fn n_layers(&self) -> usize {
        self.layers.len()
    }

    fn n_classes(&self) -> usize {
        CellPlm::n_classes(self)
    }

    /// The annotation pipeline's head: the `ae` latent (new if absent; it replaces the GMVAE)
    /// and `head.mlp` for `n` classes.
    fn set_head(&mut self, n: usize, dev: &Device) {
        self.to_annotation(dev);
        self.new_head(n, dev);
    }
}
