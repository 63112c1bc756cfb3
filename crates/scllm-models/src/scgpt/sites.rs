//! Where the scPEFT adapters attach on scGPT, as the scPEFT code places them
//! (docs/models/scpeft.md §3-6): the value encoder's output after its LayerNorm (gene token
//! prompt), after LN1 and parallel to the FFN of a layer (gene encoder prompt), prompt tokens
//! after `<cls>` (prefix), and q and v of the packed `Wqkv` with its bias trained (LoRA).

use super::model::ScGpt;
use crate::peft::Sites;

impl ScGpt {
    pub fn adapter_sites(&mut self) -> Sites<'_> {
        let d = self.d_model();
        let layers = self
            .transformer_encoder
            .layers
            .iter_mut()
            // rows [q; k; v] of Wqkv: q at 0, v at 2d; k is not adapted
            .map(|l| {
                let lora = vec![l.self_attn.wqkv.target(vec![0, 2 * d], d, true)];
                l.adapters.sites(lora)
            })
            .collect();
        Sites {
            token: Some(&mut self.value_encoder.space_adapter),
            layers,
        }
    }
}
