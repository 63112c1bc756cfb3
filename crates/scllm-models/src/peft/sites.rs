//! The places in a model where adapters attach: what a family hands [`super::attach`].

use burn::module::Param;
use burn::tensor::Tensor;

use super::{Adapter, Lora};

/// A family's target map. `None` marks a site the family does not have (the strategy that needs
/// it is then refused with a clear error).
pub struct Sites<'a> {
    /// Gene token prompt: a skip adapter on the token embedding (scGPT: the value encoder's
    /// output after its LayerNorm).
    pub token: Option<&'a mut Option<Adapter>>,
    /// One entry per encoder layer, in order.
    pub layers: Vec<LayerSites<'a>>,
}

/// The sites of one encoder layer.
pub struct LayerSites<'a> {
    /// Gene encoder prompt: a skip adapter on the attention block's output after its LayerNorm.
    pub after_attention: Option<&'a mut Option<Adapter>>,
    /// Gene encoder prompt: an adapter without skip parallel to the feed-forward block, fed its
    /// input, scaled and added after the block's LayerNorm.
    pub parallel_ffn: Option<&'a mut Option<Adapter>>,
    /// Prefix prompt tokens `[1, n, d]` inserted after position 0 before this layer.
    pub prefix: Option<&'a mut Option<Param<Tensor<3>>>>,
    /// LoRA targets (the attention's query and value projections).
    pub lora: Vec<LoraTarget<'a>>,
}

/// A linear layer LoRA can adapt: which of its output rows get a low-rank update.
pub struct LoraTarget<'a> {
    pub slot: &'a mut Option<Lora>,
    pub d_in: usize,
    pub d_out: usize,
    /// Start of each adapted block of output rows, all `block` rows long (scGPT's packed
    /// `Wqkv`: q at 0 and v at 2d, as loralib's `MergedLinear(enable_lora=[True, False, True])`;
    /// BERT's `query`: one block at 0).
    pub blocks: Vec<usize>,
    pub block: usize,
    /// The target's bias trains with the adapter (scPEFT's `lora_bias_trainable('lora_only')`
    /// on scGPT; Hugging Face `peft`'s default `bias="none"` elsewhere).
    pub trains_bias: bool,
}
