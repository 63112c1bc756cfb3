//! scGPT's state-dict keys (docs/models/scgpt.md §1.4-1.5): the one place that pairs each parameter
//! of [`ScGpt`] with its key, and the other spellings of the attention keys.

use super::model::ScGpt;
use crate::params::{self, ParamVisitor, Part};
use crate::peft::adapter::visit_opt;
use crate::peft::{frozen_layers, LoraKeys};

/// The released layout's attention names, from the other two spellings: torch's
/// `self_attn.in_proj_{weight,bias}` and the 2026 wrapper's `self_attn._impl.*`.
pub fn canonical_key(key: &str) -> String {
    let k = key.replace(".self_attn._impl.", ".self_attn.");
    k.replace(".self_attn.in_proj_weight", ".self_attn.Wqkv.weight")
        .replace(".self_attn.in_proj_bias", ".self_attn.Wqkv.bias")
}

impl ScGpt {
    /// Pair every parameter with its state-dict key (the reference's names, PyTorch layout).
    pub fn visit_keys(&mut self, v: &mut impl ParamVisitor) {
        use Part::*;
        let frozen = frozen_layers(self.peft.as_ref());
        params::embedding(
            v,
            "encoder.embedding",
            Backbone,
            &mut self.encoder.embedding,
        );
        params::layer_norm(v, "encoder.enc_norm", Backbone, &mut self.encoder.enc_norm);
        let ve = &mut self.value_encoder;
        params::linear(v, "value_encoder.linear1", Backbone, &mut ve.linear1);
        params::linear(v, "value_encoder.linear2", Backbone, &mut ve.linear2);
        params::layer_norm(v, "value_encoder.norm", Backbone, &mut ve.norm);
        visit_opt(&mut ve.space_adapter, "value_encoder.Space_Adapter", v);
        for (i, l) in self.transformer_encoder.layers.iter_mut().enumerate() {
            let p = format!("transformer_encoder.layers.{i}");
            let part = if i < frozen { Frozen } else { Backbone };
            l.self_attn
                .wqkv
                .visit(&format!("{p}.self_attn.Wqkv"), part, LoraKeys::Loralib, v);
            params::linear(
                v,
                &format!("{p}.self_attn.out_proj"),
                part,
                &mut l.self_attn.out_proj,
            );
            params::linear(v, &format!("{p}.linear1"), part, &mut l.linear1);
            params::linear(v, &format!("{p}.linear2"), part, &mut l.linear2);
            params::layer_norm(v, &format!("{p}.norm1"), part, &mut l.norm1);
            params::layer_norm(v, &format!("{p}.norm2"), part, &mut l.norm2);
            l.adapters.visit(&p, v);
        }
        for (i, l) in self.decoder.fc.iter_mut().enumerate() {
            // nn.Sequential: activations at odd indices
            params::linear(v, &format!("decoder.fc.{}", 2 * i), Backbone, l);
        }
        if let Some(c) = &mut self.cls_decoder {
            for (i, (l, n)) in c.linears.iter_mut().zip(c.norms.iter_mut()).enumerate() {
                // [Linear, ReLU, LN] per block
                params::linear(v, &format!("cls_decoder._decoder.{}", 3 * i), Head, l);
                params::layer_norm(v, &format!("cls_decoder._decoder.{}", 3 * i + 2), Head, n);
            }
            params::linear(v, "cls_decoder.out_layer", Head, &mut c.out_layer);
        }
        if let Some(m) = &mut self.mvc_decoder {
            params::linear(v, "mvc_decoder.gene2query", Backbone, &mut m.gene2query);
            params::linear(v, "mvc_decoder.W", Backbone, &mut m.w);
        }
    }
}
