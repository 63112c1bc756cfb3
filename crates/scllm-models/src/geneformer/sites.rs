//! Where the adapters attach on Geneformer's BERT, placed as scPEFT places them on scGPT's
//! post-LN layers (docs/models/geneformer.md §7): the embedding output after its LayerNorm
//! (gene token prompt), after the attention block's LayerNorm and parallel to the feed-forward
//! block (gene encoder prompt), prompt tokens after position 0 (prefix), and LoRA on `query`
//! and `value` with the biases frozen (Hugging Face `peft`'s default for BERT).

use super::model::Geneformer;
use crate::peft::Sites;

impl Geneformer {
    pub fn adapter_sites(&mut self) -> Sites<'_> {
        let d = self.d_model();
        let layers = self
            .layers
            .iter_mut()
            .map(|l| {
                let a = &mut l.attention;
                let lora = vec![
                    a.query.target(vec![0], d, false),
                    a.value.target(vec![0], d, false),
                ];
                l.adapters.sites(lora)
            })
            .collect();
        Sites {
            token: Some(&mut self.embeddings.space_adapter),
            layers,
        }
    }
}
