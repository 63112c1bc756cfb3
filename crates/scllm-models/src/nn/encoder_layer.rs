//! What every family's encoder layer shares once its attention and its block after attention
//! are given: the layer over all positions, over position 0 only, and (for prefix prompts) over
//! all but the prompt positions.

use burn::module::Param;
use burn::tensor::{Bool, Tensor};

use super::self_attention::Queries;

/// An encoder layer built on the shared attention ([`super::attend`]).
pub trait EncoderBlock {
    /// Self-attention of `h` `[B, L, d]` after the output projection, for the query positions
    /// `queries` (`[B, Lq, d]`); `lengths`: the cells' real lengths in a right-padded batch.
    fn self_attention(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        queries: Queries,
        lengths: Option<&[usize]>,
    ) -> Tensor<3>;

    /// Everything after attention (residuals, norms, the feed-forward block, adapters) on the
    /// input rows `h` that match the attention output `a`.
    fn after_attention(&self, h: Tensor<3>, a: Tensor<3>) -> Tensor<3>;

    /// The layer's prefix prompt tokens `[1, n, d]`, if it has any.
    fn prompt_tokens(&self) -> Option<&Param<Tensor<3>>>;

    /// The layer on a right-padded batch whose cells have the real `lengths` (`mask` is their
    /// key-padding mask): at inference on flex, padded positions are skipped (their output rows
    /// are then not layer outputs; nothing may read them).
    fn forward_cells(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        lengths: Option<&[usize]>,
    ) -> Tensor<3> {
        let a = self.self_attention(h.clone(), mask, Queries::All, lengths);
        self.after_attention(h, a)
    }

    /// The layer's output at position 0 only, `[B, d]`; `mask` is `[B, 1, 1, L]`, `lengths` as
    /// in [`Self::forward_cells`].
    fn forward_first(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        lengths: Option<&[usize]>,
    ) -> Tensor<2> {
        let [b, _, d] = h.dims();
        let h0 = h.clone().narrow(1, 0, 1);
        let a = self.self_attention(h, mask, Queries::First, lengths);
        self.after_attention(h0, a).reshape([b, d])
    }
}
