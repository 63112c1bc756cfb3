//! Class weights, the class-balanced sampler, the seedable RNG, and epoch batches.

use scllm_tokenize::{cut_batches, BatchLimits};
use serde::{Deserialize, Serialize};

/// splitmix64: small, fast, and its whole state is one `u64` (saved in a checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitMix64 {
    pub state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Cells per class.
pub fn class_counts(labels: &[u32], n_classes: usize) -> Vec<usize> {
    let mut c = vec![0usize; n_classes];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

/// scPEFT's loss weights `w_c = (1 - n_c/N)²` from per-class counts.
pub fn class_weights(counts: &[usize]) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            let f = 1.0 - c as f64 / n.max(1) as f64;
            (f * f) as f32
        })
        .collect()
}

/// PyTorch's `WeightedRandomSampler(weights = 1/count(label), num_samples, replacement=True)`:
/// every class is drawn equally often in expectation.
#[derive(Clone, Debug)]
pub struct WeightedSampler {
    /// Positions the sampler draws from (indices into the data).
    pub items: Vec<usize>,
    cdf: Vec<f64>,
}

impl WeightedSampler {
    /// Any non-negative weights (one per item).
    pub fn new(items: Vec<usize>, weights: &[f64]) -> Self {
        assert_eq!(items.len(), weights.len());
        let mut cdf = Vec::with_capacity(weights.len());
        let mut acc = 0.0;
        for &w in weights {
            acc += w.max(0.0);
            cdf.push(acc);
        }
        WeightedSampler { items, cdf }
    }

    /// Weights `1/count(label)` over the cells `items` (`labels` indexed by cell).
    pub fn balanced(items: &[usize], labels: &[u32], n_classes: usize) -> Self {
        let l: Vec<u32> = items.iter().map(|&i| labels[i]).collect();
        let counts = class_counts(&l, n_classes);
        let w: Vec<f64> = l.iter().map(|&c| 1.0 / counts[c as usize] as f64).collect();
        WeightedSampler::new(items.to_vec(), &w)
    }

    /// `n` draws with replacement.
    pub fn sample(&self, n: usize, rng: &mut SplitMix64) -> Vec<usize> {
        let total = *self.cdf.last().unwrap_or(&0.0);
        (0..n)
            .map(|_| {
                let u = rng.uniform() * total;
                let k = self
                    .cdf
                    .partition_point(|&c| c <= u)
                    .min(self.cdf.len() - 1);
                self.items[k]
            })
            .collect()
    }
}

/// Batches for one epoch from the epoch's cell order. With `group_by_length`, the order is cut
/// into windows of 50 batches, each window sorted by length (longest first) and cut into batches,
/// and the batches shuffled: batches hold cells of similar length (little padding) while the
/// epoch stays random. `max_tokens` bounds cells × padded length of a batch.
pub fn epoch_batches(
    order: &[usize],
    lengths: &[usize],
    batch_size: usize,
    max_tokens: usize,
    group_by_length: bool,
    rng: &mut SplitMix64,
) -> Vec<Vec<usize>> {
    let bs = batch_size.max(1);
    let limits = BatchLimits::new(bs, max_tokens);
    let mut out = Vec::new();
    if group_by_length {
        for w in order.chunks(bs * 50) {
            let mut w = w.to_vec();
            w.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
            out.extend(cut_batches(&w, lengths, &limits));
        }
        rng.shuffle(&mut out);
    } else {
        out = cut_batches(order, lengths, &limits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_size_and_cover_the_order() {
        let lengths: Vec<usize> = (0..100).map(|i| 10 + (i * 37) % 90).collect();
        let order: Vec<usize> = (0..100).collect();
        let mut rng = SplitMix64::new(1);
        let b = epoch_batches(&order, &lengths, 8, usize::MAX, true, &mut rng);
        assert!(b.iter().all(|x| x.len() <= 8));
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, order);
        let b = epoch_batches(&order, &lengths, 8, 200, false, &mut rng);
        assert!(
            b.iter()
                .all(|x| x.len() == 1
                    || x.len() * x.iter().map(|&i| lengths[i]).max().unwrap() <= 200)
        );
    }
}
