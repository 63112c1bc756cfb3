//! Where the adapters attach on CellPLM's pre-LN Flowformer (docs/models/cellplm.md §7.6): each
//! cell's token after the embedder (gene token prompt), the attention branch's output and a
//! branch parallel to the feed-forward block fed its normed input (gene encoder prompt), and
//! LoRA on the query and value projections. There is no prefix site: the tokens are the cells
//! of a set, and a prompt "cell" would enter every cell's flow normalisation.

use super::model::CellPlm;
use crate::peft::{LayerSites, Sites};

impl CellPlm {
    pub fn adapter_sites(&mut self) -> Sites<'_> {
        let layers = self
            .layers
            .iter_mut()
            .map(|l| {
                let a = &mut l.self_attn;
                let d = a.out.weight.lazy_shape()[1];
                LayerSites {
                    after_attention: Some(&mut l.adapters.space),
                    parallel_ffn: Some(&mut l.adapters.mlp),
                    prefix: None,
                    lora: vec![
                        a.query.target(vec![0], d, false),
                        a.value.target(vec![0], d, false),
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
