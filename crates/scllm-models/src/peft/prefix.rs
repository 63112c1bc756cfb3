//! Deep prefix prompts (docs/models/scpeft.md §5): running a stack of encoder layers where some
//! layers carry prompt tokens.

use burn::module::Param;
use burn::tensor::{Bool, Tensor};

use crate::nn::encoder_layer::EncoderBlock;
use crate::nn::mask::extend_mask;
use crate::nn::self_attention::Queries;

/// An encoder layer that can take prefix prompts: any [`EncoderBlock`].
pub trait PromptLayer {
    /// The layer's prompt tokens `[1, n, d]`, if it has any.
    fn prompt(&self) -> Option<&Param<Tensor<3>>>;
    /// The layer on `h` `[B, L, d]` with its key-padding mask.
    fn forward(&self, h: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3>;
    /// The layer's output without the `n` prompt positions after position 0 (`[B, L - n, d]`):
    /// every position still attends to the prompts, but no prompt position is computed as a
    /// query, as nothing reads it. `mask` is `[B, 1, L - n, L]`.
    fn forward_skipping_prompts(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        n: usize,
    ) -> Tensor<3>;
}

impl<T: EncoderBlock> PromptLayer for T {
    fn prompt(&self) -> Option<&Param<Tensor<3>>> {
        self.prompt_tokens()
    }

    fn forward(&self, h: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        self.forward_cells(h, mask, None)
    }

    fn forward_skipping_prompts(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        n: usize,
    ) -> Tensor<3> {
        let a = self.self_attention(h.clone(), mask, Queries::SkipPrompts(n), None);
        self.after_attention(strip_prompts(h, n), a)
    }
}

/// Run every layer; returns the last output and each layer's output, all of length L.
/// Prefix prompts: at the first layer with a prompt they are inserted right after position 0
/// (the padding mask gains never-masked entries there), at later such layers the previous
/// prompt outputs are replaced, and after the last layer they are stripped (the working
/// implementation of scPEFT_reproduction's `transformer_.py`). A layer whose prompt outputs
/// would be replaced or stripped right after it skips computing them (same result, less work:
/// their queries, FFN rows and activations).
pub fn run_layers<L: PromptLayer>(
    layers: &[L],
    mut h: Tensor<3>,
    mask: Option<Tensor<4, Bool>>,
) -> (Tensor<3>, Vec<Tensor<3>>) {
    let mut outs = Vec::with_capacity(layers.len());
    // prompt positions in the current `h`, and in the sequence the prompts lengthen
    let (mut in_h, mut n_prompt) = (0usize, 0usize);
    let mut mask_cur = mask.clone();
    for (i, l) in layers.iter().enumerate() {
        if let Some(p) = l.prompt() {
            let [b, len, d] = h.dims();
            let t = p.dims()[1];
            let prompts = p.val().expand([b, t, d]);
            let first = h.clone().narrow(1, 0, 1);
            let rest = h.narrow(1, 1 + in_h, len - 1 - in_h);
            h = Tensor::cat(vec![first, prompts, rest], 1);
            in_h = t;
            if n_prompt == 0 {
                mask_cur = mask.clone().map(|m| extend_mask(m, t));
                n_prompt = t;
            }
        }
        let next_replaces = layers.get(i + 1).is_none_or(|n| n.prompt().is_some());
        if in_h > 0 && next_replaces {
            let [_, len, _] = h.dims();
            let m = mask_cur.clone().map(|m| m.narrow(2, 0, len - in_h));
            h = l.forward_skipping_prompts(h, m, in_h);
            in_h = 0;
        } else {
            h = l.forward(h, mask_cur.clone());
        }
        outs.push(strip_prompts(h.clone(), in_h));
    }
    (strip_prompts(h, in_h), outs)
}

/// Whether any layer carries prompts.
pub fn has_prompts<L: PromptLayer>(layers: &[L]) -> bool {
    layers.iter().any(|l| l.prompt().is_some())
}

/// `[x_0, x[1 + n..]]`: the sequence without `n` prompt positions after position 0.
pub fn strip_prompts(h: Tensor<3>, n: usize) -> Tensor<3> {
    if n == 0 {
        return h;
    }
    let len = h.dims()[1];
    let first = h.clone().narrow(1, 0, 1);
    Tensor::cat(vec![first, h.narrow(1, 1 + n, len - 1 - n)], 1)
}
