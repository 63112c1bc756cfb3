//! Batches of cells grouped by length, so a batch pads to its own longest cell and little
//! compute goes to padding.

use crate::scgpt::TokenizedCell;

/// Cell indices in batches of at most `batch_size`, longest cells first; each batch holds cells of
/// similar length. The order is deterministic (ties keep input order).
pub fn length_grouped_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    order
        .chunks(batch_size.max(1))
        .map(|c| c.to_vec())
        .collect()
}

/// A padded batch, row-major `[batch, seq_len]`.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The cells' indices in the input.
    pub cells: Vec<usize>,
    pub seq_len: usize,
    pub genes: Vec<i64>,
    pub values: Vec<f32>,
    /// `true` at padded positions (PyTorch's `src_key_padding_mask` convention).
    pub padding: Vec<bool>,
}

impl Batch {
    pub fn size(&self) -> usize {
        self.cells.len()
    }
    /// Real (non-pad) tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.padding.iter().filter(|p| !**p).count()
    }
}

/// Pad the given cells to their longest length with `pad_id` / `pad_value`.
pub fn pad_batch(cells: &[(usize, &TokenizedCell)], pad_id: u32, pad_value: f32) -> Batch {
    let seq_len = cells.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let n = cells.len();
    let mut genes = vec![pad_id as i64; n * seq_len];
    let mut values = vec![pad_value; n * seq_len];
    let mut padding = vec![true; n * seq_len];
    for (r, (_, c)) in cells.iter().enumerate() {
        for k in 0..c.len() {
            genes[r * seq_len + k] = c.genes[k] as i64;
            values[r * seq_len + k] = c.values[k];
            padding[r * seq_len + k] = false;
        }
    }
    Batch {
        cells: cells.iter().map(|(i, _)| *i).collect(),
        seq_len,
        genes,
        values,
        padding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_by_length_cuts_padding() {
        let lengths = [5, 100, 7, 98, 6, 99];
        let b = length_grouped_batches(&lengths, 3);
        assert_eq!(b, vec![vec![1, 5, 3], vec![2, 4, 0]]);
        let padded: usize = b
            .iter()
            .map(|g| g.iter().map(|&i| lengths[i]).max().unwrap() * g.len())
            .sum();
        assert_eq!(padded, 300 + 21, "vs 600 for input-order batches");
    }

    #[test]
    fn padding_marks_pad_positions() {
        let a = TokenizedCell {
            genes: vec![9, 1, 2],
            values: vec![-2.0, 3.0, 4.0],
        };
        let b = TokenizedCell {
            genes: vec![9],
            values: vec![-2.0],
        };
        let p = pad_batch(&[(4, &a), (7, &b)], 0, -2.0);
        assert_eq!(p.seq_len, 3);
        assert_eq!(p.genes, vec![9, 1, 2, 9, 0, 0]);
        assert_eq!(p.padding, vec![false, false, false, false, true, true]);
        assert_eq!(p.tokens(), 4);
        assert_eq!(p.cells, vec![4, 7]);
    }
}
