//! scGPT's per-cell quantile binning (`scgpt.preprocess.binning` / `Preprocessor(binning=51)`).
//!
//! Per cell: the non-zero values get edges at numpy's linear quantiles `linspace(0, 1, n_bins-1)`
//! (differences taken in float32 as numpy does, duplicate edges kept); each value's bin is drawn
//! uniformly among the bins its ties span (`ceil(u·(right-left)+left)`, one `u` per non-zero
//! entry in column order). Zeros stay 0, so bins run 1..n_bins-1.
//!
//! Randomness: [`BinRng::numpy`] is numpy's legacy MT19937 stream (`np.random.seed(s)` then one
//! `np.random.rand` per entry, cells in order), which reproduces the reference's bins exactly when
//! cells are binned in the same order. [`BinRng::per_cell`] seeds each cell from its own content,
//! so a cell gets the same bins whatever else is in the file or batch, and cells can be binned in
//! parallel.

use rand_mt::Mt;
use rayon::prelude::*;
use scllm_io::{Compressed, Values};

use crate::{PpError, Result};

/// numpy's `random_sample` from two 32-bit MT19937 outputs.
fn numpy_double(mt: &mut Mt) -> f64 {
    let a = (mt.next_u32() >> 5) as f64;
    let b = (mt.next_u32() >> 6) as f64;
    (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
}

/// Where the tie-breaking uniforms come from.
pub enum BinRng {
    /// One numpy-compatible stream over all cells in order.
    Numpy(Box<Mt>),
    /// A stream per cell, seeded from `seed` and the cell's own values.
    PerCell(u64),
}

impl BinRng {
    /// `np.random.seed(seed)` (MT19937 `init_genrand`).
    pub fn numpy(seed: u32) -> Self {
        BinRng::Numpy(Box::new(Mt::new(seed)))
    }
    pub fn per_cell(seed: u64) -> Self {
        BinRng::PerCell(seed)
    }
}

/// Bins of one cell: one per input value (0 for zeros) and the cell's `n_bins` edges
/// `[0, e_0, ..., e_{n_bins-2}]` as scGPT stores them in `obsm['bin_edges']`.
#[derive(Clone, Debug, PartialEq)]
pub struct Binned {
    pub bins: Vec<u8>,
    pub edges: Vec<f64>,
}

/// Quantile edges of the sorted non-zero values `s` (numpy linear method, float32 differences).
fn quantile_edges(s: &[f32], n_edges: usize) -> Vec<f64> {
    let n = s.len();
    let step = 1.0 / (n_edges - 1) as f64;
    (0..n_edges)
        .map(|i| {
            let q = if i == n_edges - 1 {
                1.0
            } else {
                i as f64 * step
            };
            let v = (n as f64 - 1.0) * q;
            if v >= n as f64 - 1.0 {
                return s[n - 1] as f64;
            }
            let lo = v.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let g = v - lo as f64;
            let d = (s[hi] - s[lo]) as f64; // float32 subtraction, as numpy on float32 input
            if g >= 0.5 {
                s[hi] as f64 - d * (1.0 - g)
            } else {
                s[lo] as f64 + d * g
            }
        })
        .collect()
}

/// Bin one cell's values (any order of genes; zeros allowed). `uniform` is called once per
/// non-zero value, in order.
pub fn bin_row(values: &[f32], n_bins: usize, mut uniform: impl FnMut() -> f64) -> Result<Binned> {
    if !(3..=256).contains(&n_bins) {
        return Err(PpError::Invalid(format!(
            "n_bins must be in 3..=256, got {n_bins}"
        )));
    }
    if let Some(&v) = values.iter().find(|v| **v < 0.0 || v.is_nan()) {
        return Err(PpError::Invalid(format!(
            "binning needs non-negative values, found {v}; bin counts or log-normalised data, not scaled data"
        )));
    }
    let nz: Vec<f32> = values.iter().cloned().filter(|&v| v != 0.0).collect();
    if nz.is_empty() {
        return Ok(Binned {
            bins: vec![0; values.len()],
            edges: vec![0.0; n_bins],
        });
    }
    let mut sorted = nz.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let e = quantile_edges(&sorted, n_bins - 1);
    let mut bins = vec![0u8; values.len()];
    for (slot, &x) in bins.iter_mut().zip(values) {
        if x == 0.0 {
            continue;
        }
        let xd = x as f64;
        let left = e.partition_point(|&b| b <= xd) as i64; // np.digitize(x, e)
        let right = e.partition_point(|&b| b < xd) as i64; // np.digitize(x, e, right=True)
        let u = uniform();
        let d = (u * (right - left) as f64 + left as f64).ceil();
        *slot = d as u8;
    }
    let mut edges = Vec::with_capacity(n_bins);
    edges.push(0.0);
    edges.extend(e);
    Ok(Binned { bins, edges })
}

/// FNV-1a over the cell's gene ids and value bits: a stable per-cell seed.
pub fn cell_seed(seed: u64, idx: &[u32], vals: &[f32]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    let mut eat = |x: u32| {
        for b in x.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (&j, &v) in idx.iter().zip(vals) {
        eat(j);
        eat(v.to_bits());
    }
    (h ^ (h >> 32)) as u32
}

/// Bins a whole CSR matrix (cells × genes) row by row.
pub struct Binner {
    pub n_bins: usize,
    pub rng: BinRng,
}

impl Binner {
    pub fn new(n_bins: usize, rng: BinRng) -> Self {
        Binner { n_bins, rng }
    }

    /// Returns the binned matrix (CSR int64, same sparsity) and the per-cell edges (row-major,
    /// `n_cells × n_bins`).
    pub fn bin_matrix(&mut self, x: &Compressed) -> Result<(Compressed, Vec<f64>)> {
        let vals = crate::normalize::values_f32(x);
        let n_bins = self.n_bins;
        let rows: Vec<Result<Binned>> = match &mut self.rng {
            BinRng::Numpy(mt) => (0..x.nrows)
                .map(|i| bin_row(&vals[x.range(i)], n_bins, || numpy_double(mt)))
                .collect(),
            BinRng::PerCell(seed) => {
                let seed = *seed;
                (0..x.nrows)
                    .into_par_iter()
                    .map(|i| {
                        let r = x.range(i);
                        let mut mt =
                            Mt::new(cell_seed(seed, &x.indices[r.clone()], &vals[r.clone()]));
                        bin_row(&vals[r], n_bins, || numpy_double(&mut mt))
                    })
                    .collect()
            }
        };
        let mut data = Vec::with_capacity(x.nnz());
        let mut edges = Vec::with_capacity(x.nrows * n_bins);
        for r in rows {
            let b = r?;
            data.extend(b.bins.iter().map(|&v| v as i64));
            edges.extend(b.edges);
        }
        let out = Compressed {
            nrows: x.nrows,
            ncols: x.ncols,
            indptr: x.indptr.clone(),
            indices: x.indices.clone(),
            data: Values::I64(data),
        };
        Ok((out, edges))
    }

    /// Bins of one cell's expressed values (the embedding collator's use).
    pub fn bin_values(&mut self, genes: &[u32], values: &[f32]) -> Result<Binned> {
        match &mut self.rng {
            BinRng::Numpy(mt) => bin_row(values, self.n_bins, || numpy_double(mt)),
            BinRng::PerCell(seed) => {
                let mut mt = Mt::new(cell_seed(*seed, genes, values));
                bin_row(values, self.n_bins, || numpy_double(&mut mt))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_random_matches_known_values() {
        // np.random.seed(0); np.random.rand(3)
        let mut mt = Mt::new(0);
        let got: Vec<f64> = (0..3).map(|_| numpy_double(&mut mt)).collect();
        assert_eq!(
            got,
            vec![0.5488135039273248, 0.7151893663724195, 0.6027633760716439]
        );
    }

    #[test]
    fn distinct_values_fill_bins_one_to_max() {
        let v: Vec<f32> = (1..=100).map(|x| x as f32).collect();
        let b = bin_row(&v, 51, || 0.5).unwrap();
        assert_eq!(b.bins[0], 1);
        assert_eq!(b.bins[99], 50);
        assert!(b.bins.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(b.edges.len(), 51);
        assert_eq!(b.edges[0], 0.0);
    }

    #[test]
    fn zeros_stay_zero_and_all_zero_rows_have_zero_edges() {
        let b = bin_row(&[0.0, 2.0, 0.0, 1.0], 51, || 0.3).unwrap();
        assert_eq!(b.bins[0], 0);
        assert_eq!(b.bins[2], 0);
        assert_eq!((b.bins[3], b.bins[1]), (1, 50));
        let z = bin_row(&[0.0, 0.0], 51, || {
            unreachable!("no draws for an empty cell")
        })
        .unwrap();
        assert_eq!(z.bins, vec![0, 0]);
        assert_eq!(z.edges, vec![0.0; 51]);
    }

    #[test]
    fn scaling_does_not_change_bins() {
        // the binning invariance the reference relies on: order and ties are all that matter
        let v = [3.0f32, 1.0, 7.0, 7.0, 2.0, 9.0];
        let s: Vec<f32> = v.iter().map(|x| x * 1000.0).collect();
        let mut u1 = Mt::new(5);
        let mut u2 = Mt::new(5);
        let a = bin_row(&v, 51, || numpy_double(&mut u1)).unwrap();
        let b = bin_row(&s, 51, || numpy_double(&mut u2)).unwrap();
        assert_eq!(a.bins, b.bins);
    }

    #[test]
    fn negative_values_are_refused() {
        assert!(bin_row(&[1.0, -0.5], 51, || 0.0).is_err());
    }
}
