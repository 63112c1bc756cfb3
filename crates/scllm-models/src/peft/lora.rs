//! LoRA on a linear layer, over chosen blocks of its output rows (loralib's `MergedLinear`;
//! docs/models/scpeft.md §6).

use crate::nn::Linear;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

use crate::params::{self, Layout, ParamVisitor, Part};

/// Low-rank updates of `k` blocks of a linear layer's output rows: `lora_A [k·r, d_in]` (rows
/// `j·r..(j+1)·r` are block j's A) and `lora_B [k·block, r]` (rows `j·block..` are block j's B);
/// block j adds `s · x A_jᵀ B_jᵀ` to output columns `starts[j]..starts[j] + block`, s = alpha / r.
/// scGPT's packed `Wqkv` has blocks q (0) and v (2d), as loralib's
/// `MergedLinear(d, 3d, enable_lora=[True, False, True])`; k is untouched.
#[derive(Module, Debug)]
pub struct Lora {
    pub lora_a: Param<Tensor<2>>,
    pub lora_b: Param<Tensor<2>>,
    /// alpha / r
    pub scaling: f64,
    /// ΔW multiplier outside training (see [`super::config::PeftConfig::lora_eval_multiplier`]).
    pub eval_multiplier: f64,
    pub starts: Vec<usize>,
    pub block: usize,
    pub d_out: usize,
    /// The adapted layer's bias trains with the adapter.
    pub trains_bias: bool,
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

/// How a family names the LoRA tensors of a target `{key}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraKeys {
    /// loralib: `{key}.lora_A`, `{key}.lora_B` (scPEFT on scGPT).
    Loralib,
    /// Hugging Face `peft`: `{key}.lora_A.weight`, `{key}.lora_B.weight`.
    Peft,
}

impl Lora {
    /// A: kaiming-uniform a=√5 (U(±1/√d_in)); B: zeros, so a fresh LoRA leaves the model
    /// unchanged.
    pub fn new(t: &LoraTarget, r: usize, alpha: f64, eval_multiplier: f64, dev: &Device) -> Self {
        let bound = 1.0 / (t.d_in as f64).sqrt();
        let k = t.blocks.len();
        Lora {
            lora_a: Param::from_tensor(Tensor::random(
                [k * r, t.d_in],
                Distribution::Uniform(-bound, bound),
                dev,
            )),
            lora_b: Param::from_tensor(Tensor::zeros([k * t.block, r], dev)),
            scaling: alpha / r as f64,
            eval_multiplier,
            starts: t.blocks.clone(),
            block: t.block,
            d_out: t.d_out,
            trains_bias: t.trains_bias,
        }
    }

    /// The update of the layer's output for `x` `[B, L, d_in]`: `[B, L, d_out]`.
    pub fn delta(&self, x: Tensor<3>, training: bool) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let k = self.starts.len();
        let r = self.lora_a.dims()[0] / k;
        let x = x.reshape([b * l, d]);
        let xa = x.matmul(self.lora_a.val().transpose()); // [n, k·r]
        let bm = self.lora_b.val();
        let mut pieces = Vec::with_capacity(2 * k + 1);
        let mut at = 0;
        for (j, &start) in self.starts.iter().enumerate() {
            let dj = xa
                .clone()
                .narrow(1, j * r, r)
                .matmul(bm.clone().narrow(0, j * self.block, self.block).transpose());
            if start > at {
                pieces.push(Tensor::zeros([b * l, start - at], &dj.device()));
            }
            pieces.push(dj);
            at = start + self.block;
        }
        if at < self.d_out {
            let dev = pieces[0].device();
            pieces.push(Tensor::zeros([b * l, self.d_out - at], &dev));
        }
        let delta = if pieces.len() == 1 {
            pieces.pop().expect("one piece")
        } else {
            Tensor::cat(pieces, 1)
        };
        let mult = if training { 1.0 } else { self.eval_multiplier };
        (delta * (self.scaling * mult)).reshape([b, l, self.d_out])
    }
}

/// A linear layer LoRA can adapt (`lora` is attached by [`super::attach::attach`]).
#[derive(Module, Debug)]
pub struct LoraLinear {
    pub linear: Linear,
    pub lora: Option<Lora>,
}

impl LoraLinear {
    pub fn new(linear: Linear) -> Self {
        LoraLinear { linear, lora: None }
    }

    /// `x Wᵀ + b`, plus the LoRA update when attached.
    pub fn forward(&self, x: Tensor<3>, training: bool) -> Tensor<3> {
        let y = self.linear.forward(x.clone());
        match &self.lora {
            Some(l) => y + l.delta(x, training),
            None => y,
        }
    }

    /// The layer at `key` (as `part`) and its LoRA tensors (as adapter parameters).
    pub fn visit(&mut self, key: &str, part: Part, keys: LoraKeys, v: &mut impl ParamVisitor) {
        let bias = match &self.lora {
            Some(l) if l.trains_bias => Part::Adapter,
            _ => part,
        };
        params::linear_parts(v, key, part, bias, &mut self.linear);
        if let Some(l) = &mut self.lora {
            let (a, b) = match keys {
                LoraKeys::Loralib => (format!("{key}.lora_A"), format!("{key}.lora_B")),
                LoraKeys::Peft => (
                    format!("{key}.lora_A.weight"),
                    format!("{key}.lora_B.weight"),
                ),
            };
            // PyTorch layout as stored: A [k·r, d_in], B [k·block, r]
            v.param(&a, Part::Adapter, Layout::AsIs, &mut l.lora_a);
            v.param(&b, Part::Adapter, Layout::AsIs, &mut l.lora_b);
        }
    }

    /// This layer as a LoRA target adapting the given output blocks.
    pub fn target(
        &mut self,
        blocks: Vec<usize>,
        block: usize,
        trains_bias: bool,
    ) -> LoraTarget<'_> {
        let [d_in, d_out] = self.linear.weight.lazy_shape().dims::<2>();
        LoraTarget {
            slot: &mut self.lora,
            d_in,
            d_out,
            blocks,
            block,
            trains_bias,
        }
    }
}
