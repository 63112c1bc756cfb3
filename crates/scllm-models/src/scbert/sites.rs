//! Where the adapters attach on scBERT's pre-LN Performer (docs/models/scbert.md §4): the
//! embedding sum (gene token prompt, scPEFT's `Space_Adapter`), the attention branch's output and
//! a branch parallel to the feed-forward block fed its normed input (gene encoder prompt), and
//! LoRA on `to_q` and `to_v` (scPEFT's scBERT LoRA; these projections have no bias). There is no
//! prefix site: a position is a gene (its gene2vec row) and the classifier reads a fixed number
//! of positions, so prompt tokens have nowhere to go.

use super::model::ScBert;
use crate::peft::{LayerSites, Sites};

impl ScBert {
    pub fn adapter_sites(&mut self) -> Sites<'_> {
        let layers = self
            .layers
            .iter_mut()
            .map(|l| {
                let a = &mut l.attention;
                let inner = a.to_out.weight.lazy_shape()[0];
                LayerSites {
                    after_attention: Some(&mut l.adapters.space),
                    parallel_ffn: Some(&mut l.adapters.mlp),
                    prefix: None,
                    lora: vec![
                        a.to_q.target(vec![0], inner, false),
                        a.to_v.target(vec![0], inner, false),
                    ],
                }
            })
            .collect();
        Sites {
            token: Some(&mut self.token_adapter),
            layers,
        }
    }
}
