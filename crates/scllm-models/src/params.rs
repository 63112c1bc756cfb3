//! Parameters with their state-dict keys and the part of the model they belong to.
//!
//! Each family pairs every parameter with the reference's key (PyTorch names and layouts) in one
//! function, [`crate::CellModel::visit_params`]; loading, saving, the load report, parameter
//! counts and trainability all walk it. What trains under a strategy follows from the [`Part`]
//! a parameter is visited as (its place in the model's structure; `crate::peft::trainable`),
//! never from its key: `cls` would match Geneformer's `cls.predictions.*` as well as scGPT's
//! `cls_decoder`.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm};

use crate::nn::Linear;
use burn::tensor::Tensor;

/// Where a parameter sits in a model; decides whether it trains (see [`crate::peft::trains`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// The pretrained model: trains under `full` only.
    Backbone,
    /// Never trains, even under `full` (layers frozen by an option, fixed tables and buffers).
    Frozen,
    /// The task head (a cell classifier): trains under every strategy.
    Head,
    /// Adapter parameters (and the bias of a LoRA target where the family's reference trains
    /// it): train under the adapter strategies.
    Adapter,
}

/// How a parameter's burn layout relates to its PyTorch layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and order.
    AsIs,
    /// A `Linear` weight: burn holds `[in, out]`, PyTorch stores `[out, in]`.
    Transposed,
}

/// Walks parameters with their keys (see [`crate::CellModel::visit_params`]).
pub trait ParamVisitor {
    fn param<const D: usize>(
        &mut self,
        key: &str,
        part: Part,
        layout: Layout,
        p: &mut Param<Tensor<D>>,
    );

    /// Every linear layer `{key}`, before its parameters (the precision switch works here).
    fn linear_layer(&mut self, _key: &str, _m: &mut Linear) {}
}

/// `{key}.weight` (`[out, in]` in PyTorch) and `{key}.bias`.
pub fn linear(v: &mut impl ParamVisitor, key: &str, part: Part, m: &mut Linear) {
    linear_parts(v, key, part, part, m);
}

/// A linear layer whose weight and bias belong to different parts (a LoRA target whose bias
/// trains with the adapter).
pub fn linear_parts(
    v: &mut impl ParamVisitor,
    key: &str,
    weight: Part,
    bias: Part,
    m: &mut Linear,
) {
    v.linear_layer(key, m);
    v.param(
        &format!("{key}.weight"),
        weight,
        Layout::Transposed,
        &mut m.weight,
    );
    if let Some(b) = &mut m.bias {
        v.param(&format!("{key}.bias"), bias, Layout::AsIs, b);
    }
}

/// `{key}.weight` (gamma) and `{key}.bias` (beta).
pub fn layer_norm(v: &mut impl ParamVisitor, key: &str, part: Part, m: &mut LayerNorm) {
    v.param(&format!("{key}.weight"), part, Layout::AsIs, &mut m.gamma);
    if let Some(b) = &mut m.beta {
        v.param(&format!("{key}.bias"), part, Layout::AsIs, b);
    }
}

/// `{key}.weight`, `[num_embeddings, dim]` in both layouts.
pub fn embedding(v: &mut impl ParamVisitor, key: &str, part: Part, m: &mut Embedding) {
    v.param(&format!("{key}.weight"), part, Layout::AsIs, &mut m.weight);
}

/// The PyTorch shape of a parameter, without materialising a lazily initialised one.
pub fn torch_shape<const D: usize>(layout: Layout, p: &Param<Tensor<D>>) -> Vec<usize> {
    let mut s = p.lazy_shape().to_vec();
    if layout == Layout::Transposed {
        s.reverse();
    }
    s
}
