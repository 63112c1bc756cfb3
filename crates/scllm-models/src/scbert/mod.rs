//! scBERT: the Performer (`PerformerLM`) with FAVOR+ attention, its `scbert_config.json`, its
//! state-dict keys, its adapter sites and its model folder (docs/models/scbert.md). The input
//! (panel bins) is `scllm_tokenize::scbert`.

pub mod config;
pub mod favor;
pub mod favor_flex;
pub mod folder;
pub mod model;
pub mod params;
pub mod sites;

pub use config::ScBertConfig;
pub use folder::ScBertFolder;
pub use model::ScBert;

use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::model::{BatchInput, CellModel, Classified, EmbeddingSpec, Pooling, TokenModel};
use crate::params::ParamVisitor;
use crate::peft::{PeftState, Sites};

impl CellModel for ScBert {
    fn family(&self) -> Family {
        Family::ScBert
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
        ScBert::d_model(self)
    }

    fn n_layers(&self) -> usize {
        self.layers.len()
    }

    fn n_classes(&self) -> usize {
        self.classifier.as_ref().map_or(0, |c| c.n_classes())
    }

    fn set_head(&mut self, n: usize, dev: &Device) {
        self.new_head(n, dev);
    }
}

impl TokenModel for ScBert {
    fn embed(&self, b: &BatchInput, spec: &EmbeddingSpec, dev: &Device) -> Result<Tensor<2>> {
        if spec.pooling == Pooling::Cls {
            return Err(ModelError::Invalid(
                "scBERT has no <cls> token (its last position is an appended gene-less token); \
                 use --emb-mode cell (the mean over the panel positions)"
                    .into(),
            ));
        }
        self.embedding(b, spec.layer, dev)
    }

    fn classify(&self, b: &BatchInput, dev: &Device) -> Result<Classified> {
        let (logits, cell_emb) = self.classify_batch(b, dev)?;
        Ok(Classified { logits, cell_emb })
    }

    fn embed_flops(&self, b: usize, l: usize, spec: &EmbeddingSpec) -> f64 {
        let run = (self.layers.len() as i64 + spec.layer as i64).max(0) as usize;
        self.flops(b, l, run)
    }
}
