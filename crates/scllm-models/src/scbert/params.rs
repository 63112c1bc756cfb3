//! scBERT's state-dict keys (`PerformerLM.state_dict()`, docs/models/scbert.md §2.6, §3.1): the
//! one place that pairs each parameter of [`ScBert`] with its key, and which part of the model it
//! is, which decides what trains.
//!
//! What trains follows the reference's scripts: as built (pretraining), everything but the
//! gene2vec table (`Embedding.from_pretrained` freezes it) and the projection buffers; once a
//! strategy is attached (fine-tuning), `full` trains `finetune.py`'s set only: the second-to-last
//! layer and the final norm, with the head (§3.2). `freeze_layers` K keeps layers 0..K frozen
//! in both.

use super::model::{ClassifierHead, PerformerLayer, ScBert};
use crate::params::{self, Layout, ParamVisitor, Part};
use crate::peft::adapter::visit_opt;
use crate::peft::{frozen_layers, LoraKeys};

/// The layer `finetune.py` trains: `performer.net.layers[-2]`.
pub fn finetune_layer(depth: usize) -> usize {
    depth.saturating_sub(2)
}

fn layer(v: &mut impl ParamVisitor, i: usize, part: Part, l: &mut PerformerLayer) {
    let p = format!("performer.net.layers.{i}");
    let a = &mut l.attention;
    params::layer_norm(v, &format!("{p}.0.norm"), part, &mut a.norm);
    v.param(
        &format!("{p}.0.fn.fast_attention.projection_matrix"),
        Part::Frozen,
        Layout::AsIs,
        &mut a.projection_matrix,
    );
    // scPEFT's scBERT LoRA is loralib's `lora.Linear`: `to_q.lora_A`, `to_q.lora_B`
    a.to_q
        .visit(&format!("{p}.0.fn.to_q"), part, LoraKeys::Loralib, v);
    params::linear(v, &format!("{p}.0.fn.to_k"), part, &mut a.to_k);
    a.to_v
        .visit(&format!("{p}.0.fn.to_v"), part, LoraKeys::Loralib, v);
    params::linear(v, &format!("{p}.0.fn.to_out"), part, &mut a.to_out);
    let f = &mut l.feed_forward;
    params::layer_norm(v, &format!("{p}.1.norm"), part, &mut f.norm);
    params::linear(v, &format!("{p}.1.fn.fn.w1"), part, &mut f.w1);
    params::linear(v, &format!("{p}.1.fn.fn.w2"), part, &mut f.w2);
    l.adapters.visit(&p, v);
}

fn head(v: &mut impl ParamVisitor, h: &mut ClassifierHead) {
    v.param(
        "to_out.conv1.weight",
        Part::Head,
        Layout::AsIs,
        &mut h.conv1_weight,
    );
    v.param(
        "to_out.conv1.bias",
        Part::Head,
        Layout::AsIs,
        &mut h.conv1_bias,
    );
    params::linear(v, "to_out.fc1", Part::Head, &mut h.fc1);
    params::linear(v, "to_out.fc2", Part::Head, &mut h.fc2);
    params::linear(v, "to_out.fc3", Part::Head, &mut h.fc3);
}

impl ScBert {
    /// Pair every parameter with its state-dict key (PyTorch layout).
    pub fn visit_keys(&mut self, v: &mut impl ParamVisitor) {
        use Part::*;
        let frozen = frozen_layers(self.peft.as_ref());
        // fine-tuning (a strategy attached): finetune.py's trainable set under `full`
        let finetuning = self.peft.is_some();
        let trained = finetune_layer(self.layers.len());
        let outside = if finetuning { Frozen } else { Backbone };
        params::embedding(v, "token_emb", outside, &mut self.token_emb);
        v.param(
            "pos_emb.emb.weight",
            Frozen,
            Layout::AsIs,
            &mut self.pos_emb,
        );
        visit_opt(&mut self.token_adapter, "Space_Adapter", v);
        for (i, l) in self.layers.iter_mut().enumerate() {
            let part = if i < frozen || (finetuning && i != trained) {
                Frozen
            } else {
                Backbone
            };
            layer(v, i, part, l);
        }
        params::layer_norm(v, "norm", Backbone, &mut self.norm);
        if let Some(o) = &mut self.to_out {
            params::linear(v, "to_out", outside, o);
        }
        if let Some(h) = &mut self.classifier {
            head(v, h);
        }
    }
}
