//! scGPT: the model, its `args.json`, its state-dict keys, its adapter sites and its model
//! folder (docs/models/scgpt.md).

pub mod config;
pub mod folder;
pub mod model;
pub mod params;
pub mod sites;

pub use config::{ScGptBuild, ScGptConfig};
pub use folder::{find_weights, LoadOptions, ScGptFolder, ScGptModel};
pub use model::{ClsDecoder, EncoderLayer, ScGpt, ScGptOutput};

use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::model::{BatchInput, CellModel, Classified, EmbeddingSpec, Pooling, TokenModel};
use crate::params::ParamVisitor;
use crate::peft::{PeftState, Sites};

/// scGPT's cell embedding: the last layer's `<cls>` output (`embed_data`).
pub const EMBEDDING: EmbeddingSpec = EmbeddingSpec {
    pooling: Pooling::Cls,
    layer: 0,
};

impl CellModel for ScGpt {
    fn family(&self) -> Family {
        Family::ScGpt
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
        ScGpt::d_model(self)
    }

    fn n_layers(&self) -> usize {
        self.transformer_encoder.layers.len()
    }

    fn n_classes(&self) -> usize {
        self.cls_decoder
            .as_ref()
            .map(|c| c.out_layer.weight.lazy_shape()[1])
            .unwrap_or(0)
    }

    fn set_head(&mut self, n: usize, dev: &Device) {
        let d = ScGpt::d_model(self);
        self.cls_decoder = Some(ClsDecoder::new(d, n, self.n_layers_cls, dev));
    }
}

impl TokenModel for ScGpt {
    fn embed(&self, b: &BatchInput, spec: &EmbeddingSpec, dev: &Device) -> Result<Tensor<2>> {
        if *spec != EMBEDDING {
            return Err(ModelError::Invalid(
                "scGPT's cell embedding is the last layer's <cls> output (embed_data); \
                 other poolings and layers are Geneformer options"
                    .into(),
            ));
        }
        Ok(self.encode_cls(b, dev))
    }

    fn classify(&self, b: &BatchInput, dev: &Device) -> Result<Classified> {
        let no_head = || {
            ModelError::Invalid(
                "the model has no classification head (cls_decoder): build it with n_cls > 0"
                    .into(),
            )
        };
        if !dev.is_autodiff() {
            // inference: only `<cls>` is read, so `encode_cls` (the last layer computes `<cls>`
            // alone; padding skipped in attention on flex) gives the same embedding for less
            let cell_emb = self.encode_cls(b, dev);
            let head = self.cls_decoder.as_ref().ok_or_else(no_head)?;
            return Ok(Classified {
                logits: head.forward(cell_emb.clone()),
                cell_emb,
            });
        }
        let (genes, values, mask) = self.inputs(b, dev);
        let out = self.forward(genes, values, mask);
        let logits = out.cls_output.ok_or_else(no_head)?;
        Ok(Classified {
            logits,
            cell_emb: out.cell_emb,
        })
    }

    /// Multiply-adds of `encode_cls` (norms and activations left out).
    fn embed_flops(&self, b: usize, l: usize, _spec: &EmbeddingSpec) -> f64 {
        let first = &self.transformer_encoder.layers[0];
        let d_hid = first.linear1.weight.lazy_shape()[1];
        let (b, l, d, h) = (
            b as f64,
            l as f64,
            ScGpt::d_model(self) as f64,
            d_hid as f64,
        );
        let n = self.transformer_encoder.layers.len() as f64;
        let value_enc = 2.0 * b * l * (d + d * d);
        let full_layer = 2.0 * b * l * (3.0 * d * d + d * d + 2.0 * d * h) + 4.0 * b * l * l * d;
        // last layer: K/V (and Q) projections of every token, the rest for <cls> only
        let last_layer =
            2.0 * b * l * 3.0 * d * d + 4.0 * b * l * d + 2.0 * b * (d * d + 2.0 * d * h);
        value_enc + (n - 1.0) * full_layer + last_layer
    }
}
