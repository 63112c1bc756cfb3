//! Key-padding masks of right-padded batches.

use burn::tensor::{Bool, Device, Tensor, TensorData};

/// Each row's real length when every row's padding is a suffix (as `pad_batch` pads), else
/// `None`.
pub fn right_padded_lengths(padding: &[bool], b: usize, l: usize) -> Option<Vec<usize>> {
    (0..b)
        .map(|r| {
            let row = &padding[r * l..(r + 1) * l];
            let n = row.iter().position(|&p| p).unwrap_or(l);
            row[n..].iter().all(|&p| p).then_some(n)
        })
        .collect()
}

/// `[B, 1, Lq, Lk]` with `true` where the key is padding, or `None` when nothing is padded.
/// Built on the host once per batch and shared by every layer and head.
pub fn key_padding_mask(
    padding: &[bool],
    b: usize,
    lq: usize,
    lk: usize,
    dev: &Device,
) -> Option<Tensor<4, Bool>> {
    if !padding.iter().any(|&p| p) {
        return None;
    }
    let mut m = Vec::with_capacity(b * lq * lk);
    for r in 0..b {
        let row = &padding[r * lk..(r + 1) * lk];
        for _ in 0..lq {
            m.extend_from_slice(row);
        }
    }
    Some(Tensor::<4, Bool>::from_data(
        TensorData::new(m, [b, 1, lq, lk]),
        dev,
    ))
}

/// A `[B, 1, L, L]` key-padding mask for the sequence with `t` never-masked positions inserted
/// after position 0: `[B, 1, L + t, L + t]` (the prefix prompts' positions).
pub fn extend_mask(m: Tensor<4, Bool>, t: usize) -> Tensor<4, Bool> {
    let [b, _, _, lk] = m.dims();
    let row = m.narrow(2, 0, 1); // every query row is the same key-padding row
    let dev = row.device();
    let free =
        Tensor::<4, Bool>::from_data(TensorData::new(vec![false; b * t], [b, 1, 1, t]), &dev);
    let row = Tensor::cat(
        vec![row.clone().narrow(3, 0, 1), free, row.narrow(3, 1, lk - 1)],
        3,
    );
    row.expand([b, 1, lk + t, lk + t])
}
