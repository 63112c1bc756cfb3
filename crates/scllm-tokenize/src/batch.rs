//! Batches of cells grouped by length, so a batch pads to its own longest cell and little
//! compute goes to padding.

use crate::TokenizedCell;

/// What one batch may hold.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Most cells.
    pub cells: usize,
    /// Most padded tokens (cells × the batch's longest length); a single longer cell still
    /// gets a batch of its own.
    pub tokens: usize,
    /// Most padding as a share of the padded tokens (`1.0`: no limit). In length-sorted order
    /// this cuts the long tail of a length distribution into small batches, where a fixed
    /// batch size would pad each to its first cell.
    pub max_padding: f64,
}

impl BatchLimits {
    /// At most `cells` cells and `tokens` padded tokens, any padding.
    pub fn new(cells: usize, tokens: usize) -> Self {
        BatchLimits {
            cells,
            tokens,
            max_padding: 1.0,
        }
    }
}

/// Cut `order` into consecutive batches within `limits` (the order is kept; sort it by length
/// first for little padding).
pub fn cut_batches(order: &[usize], lengths: &[usize], limits: &BatchLimits) -> Vec<Vec<usize>> {
    let max_cells = limits.cells.max(1);
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let (mut longest, mut real) = (0usize, 0usize);
    for &i in order {
        let l = longest.max(lengths[i]);
        let padded = (cur.len() + 1) * l;
        let padding = (padded - real - lengths[i]) as f64;
        if !cur.is_empty()
            && (cur.len() == max_cells
                || padded > limits.tokens
                || padding > limits.max_padding * padded as f64)
        {
            out.push(std::mem::take(&mut cur));
            (longest, real) = (0, 0);
        }
        longest = longest.max(lengths[i]);
        real += lengths[i];
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Cell indices in batches within `limits`, longest cells first; each batch holds cells of
/// similar length. The order is deterministic (ties keep input order).
pub fn length_grouped_batches(lengths: &[usize], limits: &BatchLimits) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    cut_batches(&order, lengths, limits)
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
        let b = length_grouped_batches(&lengths, &BatchLimits::new(3, usize::MAX));
        assert_eq!(b, vec![vec![1, 5, 3], vec![2, 4, 0]]);
        let padded: usize = b
            .iter()
            .map(|g| g.iter().map(|&i| lengths[i]).max().unwrap() * g.len())
            .sum();
        assert_eq!(padded, 300 + 21, "vs 600 for input-order batches");
    }

    #[test]
    fn batches_stay_within_every_limit_and_cover_every_cell() {
        let lengths: Vec<usize> = (0..200)
            .map(|i| 10 + (i * 37) % 90 + (i % 7) * 40)
            .collect();
        let order: Vec<usize> = (0..200).collect();
        let padded = |g: &Vec<usize>| g.iter().map(|&i| lengths[i]).max().unwrap() * g.len();
        let real = |g: &Vec<usize>| g.iter().map(|&i| lengths[i]).sum::<usize>();
        for limits in [
            BatchLimits::new(8, usize::MAX),
            BatchLimits::new(64, 1000),
            BatchLimits {
                cells: 64,
                tokens: usize::MAX,
                max_padding: 0.05,
            },
            BatchLimits {
                cells: 64,
                tokens: usize::MAX,
                max_padding: 0.0,
            },
        ] {
            for b in [
                cut_batches(&order, &lengths, &limits),
                length_grouped_batches(&lengths, &limits),
            ] {
                let mut all = b.concat();
                all.sort();
                assert_eq!(all, order, "{limits:?}");
                for g in &b {
                    assert!(g.len() <= limits.cells, "{limits:?}");
                    assert!(g.len() == 1 || padded(g) <= limits.tokens, "{limits:?}");
                    let pad = (padded(g) - real(g)) as f64;
                    assert!(
                        pad <= limits.max_padding * padded(g) as f64,
                        "{limits:?}: {g:?}"
                    );
                }
            }
        }
        // sorted by length, no padding allowed: one batch per distinct length (at most 64 cells)
        let zero = BatchLimits {
            cells: 64,
            tokens: usize::MAX,
            max_padding: 0.0,
        };
        let b = length_grouped_batches(&lengths, &zero);
        let mut count = std::collections::BTreeMap::new();
        for &l in &lengths {
            *count.entry(l).or_insert(0usize) += 1;
        }
        assert_eq!(
            b.len(),
            count.values().map(|c| c.div_ceil(64)).sum::<usize>()
        );
        // a padding cap on sorted lengths pads less than the same cell limit alone
        let total = |b: &Vec<Vec<usize>>| b.iter().map(padded).sum::<usize>();
        let capped = BatchLimits {
            cells: 64,
            tokens: usize::MAX,
            max_padding: 0.05,
        };
        assert!(
            total(&length_grouped_batches(&lengths, &capped))
                < total(&length_grouped_batches(
                    &lengths,
                    &BatchLimits::new(64, usize::MAX)
                ))
        );
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
