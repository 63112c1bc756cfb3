//! Multi-head self-attention from a packed `[q; k; v]` projection, shared by every family whose
//! layers use softmax attention (scGPT's `Wqkv`, BERT's `query`/`key`/`value` side by side).

use burn::nn::Dropout;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};

use super::dropout::{dropout_mask, is_training};
use super::packed_attention::packed_self_attention;
use super::precision::Precision;
use super::softmax::{softmax_last, softmax_last_dropout};

/// Which query positions self-attention computes (keys and values are always all positions).
#[derive(Clone, Copy, Debug)]
pub enum Queries {
    All,
    /// position 0 only (a `<cls>` read-out)
    First,
    /// all but the `n` prompt positions after position 0
    SkipPrompts(usize),
}

/// `softmax(Q Kᵀ/√dh + mask) V` per head for the query positions `queries` selects, from `qkv`
/// `[B, L, 3d]` (Q, K, V side by side, heads contiguous within each, as PyTorch's
/// `in_proj_weight`); returns `[B, Lq, d]`, the input of the output projection. `mask` is a
/// `[B, 1, Lq, L]` key-padding mask (`true` = padded key).
///
/// Training (an autodiff device with `dropout` on) applies dropout to the probabilities, as
/// PyTorch's attention does. At inference, with the cells' real `lengths` (a right-padded
/// batch), the plain flex device takes [`packed_self_attention`], which skips the padding
/// (its products in bf16 when `precision` is reduced: the layer's projection precision);
/// elsewhere burn's fused attention runs.
pub fn attend(
    qkv: Tensor<3>,
    heads: usize,
    mask: Option<Tensor<4, Bool>>,
    queries: Queries,
    lengths: Option<&[usize]>,
    dropout: &Dropout,
    precision: Precision,
) -> Tensor<3> {
    let [b, l, d3] = qkv.dims();
    let d = d3 / 3;
    let (h, dh) = (heads, d / heads);
    let training = is_training(dropout, &qkv);
    let first_only = match queries {
        Queries::All => Some(false),
        Queries::First => Some(true),
        Queries::SkipPrompts(_) => None,
    };
    if let (Some(lengths), Some(first_only), false) = (lengths, first_only, training) {
        if let Some(o) = packed_self_attention(&qkv, h, lengths, first_only, precision) {
            return o;
        }
    }
    let qkv = qkv.reshape([b, l, 3, h, dh]);
    let part = |i: usize| {
        qkv.clone()
            .narrow(2, i, 1)
            .reshape([b, l, h, dh])
            .swap_dims(1, 2)
    };
    let (mut q, k, v) = (part(0), part(1), part(2));
    let lq = match queries {
        Queries::All => l,
        Queries::First => {
            q = q.narrow(2, 0, 1);
            1
        }
        Queries::SkipPrompts(n) => {
            q = Tensor::cat(
                vec![q.clone().narrow(2, 0, 1), q.narrow(2, 1 + n, l - 1 - n)],
                2,
            );
            l - n
        }
    };
    let o = if training {
        // training: softmax(QKᵀ/√dh + mask) with dropout on the probabilities, as torch's MHA.
        // (burn's fused `attention` has no backward of its own: under autodiff it falls back
        // to these ops with a composed softmax, slower than `softmax_last`.)
        let lk = k.dims()[2];
        let mut s = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt());
        if let Some(m) = mask {
            s = s.mask_fill(m.expand([b, h, lq, lk]), f32::NEG_INFINITY);
        }
        let p = match dropout_mask(dropout, &s) {
            Some(m) => softmax_last_dropout(s, m),
            None => softmax_last(s),
        };
        p.matmul(v)
    } else {
        // fused kernel (tiled flash attention on flex); scale 1/sqrt(dh) as torch's MHA
        attention(q, k, v, mask, None, AttentionModuleOptions::default())
    };
    o.swap_dims(1, 2).reshape([b, lq, d])
}
