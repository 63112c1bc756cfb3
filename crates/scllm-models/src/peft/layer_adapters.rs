//! The adapter slots of one encoder layer, the same for every family: a family's layer holds
//! one [`LayerAdapters`], calls it at its two sites, and names its keys under the layer's.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use super::adapter::{visit_opt, Adapter};
use super::lora::LoraTarget;
use super::sites::LayerSites;
use crate::params::{Layout, ParamVisitor, Part};

/// Filled by [`super::attach()`]; empty on a plain model.
#[derive(Module, Debug)]
pub struct LayerAdapters {
    /// `Space_Adapter`: a skip adapter on the attention block's output after its LayerNorm
    /// (gene encoder prompt).
    pub space: Option<Adapter>,
    /// `MLP_Adapter`: an adapter without skip parallel to the feed-forward block, fed its input,
    /// scaled, added after the block's LayerNorm (gene encoder prompt).
    pub mlp: Option<Adapter>,
    /// `prompt_embeddings` `[1, n, d]`: prefix prompt tokens inserted before the layer.
    pub prompt: Option<Param<Tensor<3>>>,
}

impl LayerAdapters {
    pub fn none() -> Self {
        LayerAdapters {
            space: None,
            mlp: None,
            prompt: None,
        }
    }

    /// The attention block's output `h` (after its LayerNorm) through the space adapter.
    pub fn after_attention(&self, h: Tensor<3>) -> Tensor<3> {
        match &self.space {
            Some(s) => s.forward(h),
            None => h,
        }
    }

    /// The feed-forward block's output `y` plus the parallel adapter of its input `h`.
    pub fn add_parallel(&self, y: Tensor<3>, h: Tensor<3>) -> Tensor<3> {
        match &self.mlp {
            Some(m) => y + m.forward(h),
            None => y,
        }
    }

    /// `{layer}.Space_Adapter.*`, `{layer}.MLP_Adapter.*`, `{layer}.prompt_embeddings`
    /// (scPEFT's names).
    pub fn visit(&mut self, layer: &str, v: &mut impl ParamVisitor) {
        visit_opt(&mut self.space, &format!("{layer}.Space_Adapter"), v);
        visit_opt(&mut self.mlp, &format!("{layer}.MLP_Adapter"), v);
        if let Some(p) = &mut self.prompt {
            v.param(
                &format!("{layer}.prompt_embeddings"),
                Part::Adapter,
                Layout::AsIs,
                p,
            );
        }
    }

    /// This layer's sites, with the family's LoRA targets.
    pub fn sites<'a>(&'a mut self, lora: Vec<LoraTarget<'a>>) -> LayerSites<'a> {
        LayerSites {
            after_attention: Some(&mut self.space),
            parallel_ffn: Some(&mut self.mlp),
            prefix: Some(&mut self.prompt),
            lora,
        }
    }
}
