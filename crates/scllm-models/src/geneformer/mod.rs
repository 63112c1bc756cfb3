//! Geneformer (V1 and V2): the BERT model, its `config.json`, its state-dict keys, its adapter
//! sites and its model folder (docs/models/geneformer.md). Rank-value tokenisation is
//! `scllm_tokenize::geneformer`.

pub mod config;
pub mod folder;
pub mod model;
pub mod params;
pub mod sites;

pub use config::BertConfig;
pub use folder::GeneformerFolder;
pub use model::{Geneformer, GeneformerOutput};

use burn::tensor::{Device, Tensor};

use crate::error::Result;
use crate::family::Family;
use crate::model::{BatchInput, CellModel, Classified, EmbeddingSpec, TokenModel};
use crate::params::ParamVisitor;
use crate::peft::{PeftState, Sites};

impl CellModel for Geneformer {
    fn family(&self) -> Family {
        Family::Geneformer
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
        Geneformer::d_model(self)
    }

    fn n_layers(&self) -> usize {
        self.layers.len()
    }

    fn n_classes(&self) -> usize {
        self.classifier
            .as_ref()
            .map(|c| c.weight.lazy_shape()[1])
            .unwrap_or(0)
    }

    fn set_head(&mut self, n: usize, dev: &Device) {
        self.new_head(n, dev);
    }
}

impl TokenModel for Geneformer {
    fn embed(&self, b: &BatchInput, spec: &EmbeddingSpec, dev: &Device) -> Result<Tensor<2>> {
        self.embedding(b, spec.pooling, spec.layer, dev)
    }

    fn classify(&self, b: &BatchInput, dev: &Device) -> Result<Classified> {
        let (logits, cell_emb) = self.classify_batch(b, dev)?;
        Ok(Classified { logits, cell_emb })
    }

    /// Multiply-adds of the layers the embedding runs (the default, `emb_layer` -1, skips the
    /// last one; at the last layer `cls` computes only position 0 of it: counted whole here).
    fn embed_flops(&self, b: usize, l: usize, spec: &EmbeddingSpec) -> f64 {
        let inter = self.layers[0].intermediate.weight.lazy_shape()[1] as f64;
        let (b, l, d) = (b as f64, l as f64, Geneformer::d_model(self) as f64);
        let layer = 2.0 * b * l * (4.0 * d * d + 2.0 * d * inter) + 4.0 * b * l * l * d;
        let run = (self.layers.len() as i64 + spec.layer as i64).max(0) as f64;
        run * layer
    }
}
