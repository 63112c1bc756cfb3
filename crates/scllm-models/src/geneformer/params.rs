//! Geneformer's state-dict keys (Hugging Face BERT, `bert.*`; docs/models/geneformer.md §4.3):
//! the one place that pairs each parameter of [`Geneformer`] with its key, and the other
//! spellings a checkpoint may use.

use super::model::{BertOutput, Geneformer};
use crate::params::{self, ParamVisitor, Part};
use crate::peft::adapter::visit_opt;
use crate::peft::{frozen_layers, LoraKeys};

/// The `bert.`-prefixed key of a checkpoint key: a bare `BertModel` saves `embeddings.*`,
/// `encoder.*`, `pooler.*`; TensorFlow-era files name LayerNorm parameters `gamma`/`beta`.
pub fn canonical_key(key: &str) -> String {
    let k = if ["embeddings.", "encoder.", "pooler."]
        .iter()
        .any(|p| key.starts_with(p))
    {
        format!("bert.{key}")
    } else {
        key.to_string()
    };
    k.replace("LayerNorm.gamma", "LayerNorm.weight")
        .replace("LayerNorm.beta", "LayerNorm.bias")
}

fn output(v: &mut impl ParamVisitor, key: &str, part: Part, o: &mut BertOutput) {
    params::linear(v, &format!("{key}.dense"), part, &mut o.dense);
    params::layer_norm(v, &format!("{key}.LayerNorm"), part, &mut o.layer_norm);
}

impl Geneformer {
    /// Pair every parameter with its state-dict key (PyTorch layout).
    pub fn visit_keys(&mut self, v: &mut impl ParamVisitor) {
        use Part::*;
        let frozen = frozen_layers(self.peft.as_ref());
        let e = &mut self.embeddings;
        let p = "bert.embeddings";
        params::embedding(
            v,
            &format!("{p}.word_embeddings"),
            Backbone,
            &mut e.word_embeddings,
        );
        params::embedding(
            v,
            &format!("{p}.position_embeddings"),
            Backbone,
            &mut e.position_embeddings,
        );
        params::embedding(
            v,
            &format!("{p}.token_type_embeddings"),
            Backbone,
            &mut e.token_type_embeddings,
        );
        params::layer_norm(v, &format!("{p}.LayerNorm"), Backbone, &mut e.layer_norm);
        visit_opt(&mut e.space_adapter, &format!("{p}.Space_Adapter"), v);
        for (i, l) in self.layers.iter_mut().enumerate() {
            let p = format!("bert.encoder.layer.{i}");
            let part = if i < frozen { Frozen } else { Backbone };
            let a = &mut l.attention;
            let s = format!("{p}.attention.self");
            a.query
                .visit(&format!("{s}.query"), part, LoraKeys::Peft, v);
            params::linear(v, &format!("{s}.key"), part, &mut a.key);
            a.value
                .visit(&format!("{s}.value"), part, LoraKeys::Peft, v);
            output(
                v,
                &format!("{p}.attention.output"),
                part,
                &mut l.attention_output,
            );
            params::linear(
                v,
                &format!("{p}.intermediate.dense"),
                part,
                &mut l.intermediate,
            );
            output(v, &format!("{p}.output"), part, &mut l.output);
            l.adapters.visit(&p, v);
        }
        if let Some(d) = &mut self.pooler {
            params::linear(v, "bert.pooler.dense", Head, d);
        }
        if let Some(c) = &mut self.classifier {
            params::linear(v, "classifier", Head, c);
        }
    }
}
