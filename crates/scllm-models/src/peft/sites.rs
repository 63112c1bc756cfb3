//! The places in a model where adapters attach: what a family hands [`super::attach::attach`].

use burn::module::Param;
use burn::tensor::Tensor;

use super::adapter::Adapter;
use super::lora::LoraTarget;

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
