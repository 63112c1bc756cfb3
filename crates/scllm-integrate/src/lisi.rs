//! LISI, the local inverse Simpson index (Korsunsky et al. 2019), as scib-metrics'
//! `lisi_knn` / `ilisi_knn` / `clisi_knn` (scib_metrics/utils/_lisi.py): per cell, Gaussian
//! weights over its kNN distances (itself excluded) with the bandwidth found by binary search to
//! a perplexity of ⌊k/3⌋, then 1 / Σ_label (weight of the label)².
//!
//! The search runs in f32 like the reference's jax code, so that where the weights underflow
//! (H = 0, the reference's Simpson index of -1, hence a LISI of -1) we do too.

use rayon::prelude::*;

use crate::neighbors::Neighbors;

const TOL: f32 = 1e-5;

/// `(H, P)` of one row at precision `beta` (`_Hbeta`): self edges weigh 0.
fn h_beta(dist: &[f32], keep: &[bool], beta: f32, p: &mut [f32]) -> f32 {
    let mut sum_p = 0.0f32;
    let mut sum_dp = 0.0f32;
    for ((pj, &dj), &kj) in p.iter_mut().zip(dist).zip(keep) {
        *pj = if kj { (-dj * beta).exp() } else { 0.0 };
        sum_p += *pj;
        sum_dp += dj * *pj;
    }
    if sum_p == 0.0 {
        p.iter_mut().for_each(|v| *v = 0.0);
        return 0.0;
    }
    p.iter_mut().for_each(|v| *v /= sum_p);
    sum_p.ln() + beta * sum_dp / sum_p
}

/// Simpson index of each cell over `codes` (0..n_codes) with the given perplexity
/// (`compute_simpson_index`); -1 where all weights underflow.
pub fn simpson_index(nn: &Neighbors, codes: &[u32], n_codes: usize, perplexity: f32) -> Vec<f32> {
    let k = nn.k;
    let log_u = perplexity.ln();
    (0..nn.n)
        .into_par_iter()
        .map(|i| {
            let dist = &nn.distances[i * k..(i + 1) * k];
            let idx = &nn.indices[i * k..(i + 1) * k];
            let keep: Vec<bool> = idx.iter().map(|&j| j as usize != i).collect();
            let mut p = vec![0.0f32; k];
            let mut beta = 1.0f32;
            let (mut beta_min, mut beta_max) = (f32::NEG_INFINITY, f32::INFINITY);
            let mut h = h_beta(dist, &keep, beta, &mut p);
            let mut h_diff = h - log_u;
            let mut tries = 0;
            while h_diff.abs() >= TOL && tries < 50 {
                if h_diff > 0.0 {
                    beta_min = beta;
                    beta = if beta_max == f32::INFINITY {
                        beta * 2.0
                    } else {
                        (beta + beta_max) / 2.0
                    };
                } else {
                    beta_max = beta;
                    beta = if beta_min == f32::NEG_INFINITY {
                        beta / 2.0
                    } else {
                        (beta + beta_min) / 2.0
                    };
                }
                h = h_beta(dist, &keep, beta, &mut p);
                h_diff = h - log_u;
                tries += 1;
            }
            if h == 0.0 {
                return -1.0;
            }
            let mut sums = vec![0.0f32; n_codes];
            for (&j, &pj) in idx.iter().zip(&p) {
                sums[codes[j as usize] as usize] += pj;
            }
            sums.iter().map(|s| s * s).sum()
        })
        .collect()
}

/// LISI of each cell (`lisi_knn`, perplexity ⌊k/3⌋).
pub fn lisi(nn: &Neighbors, codes: &[u32], n_codes: usize) -> Vec<f32> {
    let perplexity = (nn.k / 3) as f32;
    simpson_index(nn, codes, n_codes, perplexity)
        .into_iter()
        .map(|s| 1.0 / s)
        .collect()
}

/// numpy's `nanmedian`.
pub(crate) fn nanmedian(v: &[f32]) -> f64 {
    let mut x: Vec<f64> = v
        .iter()
        .filter(|x| !x.is_nan())
        .map(|&x| x as f64)
        .collect();
    if x.is_empty() {
        return f64::NAN;
    }
    x.sort_by(f64::total_cmp);
    let m = x.len();
    if m % 2 == 1 {
        x[m / 2]
    } else {
        (x[m / 2 - 1] + x[m / 2]) / 2.0
    }
}

/// Integration LISI, scaled to [0, 1] (`ilisi_knn`): (median - 1) / (batches - 1).
pub fn ilisi(nn: &Neighbors, batch: &[u32], n_batches: usize) -> f64 {
    let m = nanmedian(&lisi(nn, batch, n_batches));
    (m - 1.0) / (n_batches as f64 - 1.0)
}

/// Cell-type LISI, scaled to [0, 1] (`clisi_knn`): (labels - median) / (labels - 1).
pub fn clisi(nn: &Neighbors, labels: &[u32], n_labels: usize) -> f64 {
    let m = nanmedian(&lisi(nn, labels, n_labels));
    (n_labels as f64 - m) / (n_labels as f64 - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked: cell 0's eight neighbours come in pairs at distances 1, 2, 3, 4, one of
    /// each batch per pair, so both batches weigh the same whatever the bandwidth: Simpson
    /// 0.5² + 0.5², LISI 2. With one batch, LISI 1.
    #[test]
    fn lisi_of_paired_neighbours() {
        let row: Vec<u32> = (0..9).collect();
        let d = [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
        let nn = Neighbors {
            n: 9,
            k: 9,
            indices: row.repeat(9),
            distances: d.repeat(9),
        };
        let batch = [0, 0, 1, 0, 1, 0, 1, 0, 1];
        let l = lisi(&nn, &batch, 2);
        assert!((l[0] - 2.0).abs() < 1e-5, "{l:?}");
        let l = lisi(&nn, &[0; 9], 1);
        assert!((l[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn nanmedian_skips_nan() {
        assert_eq!(nanmedian(&[3.0, f32::NAN, 1.0, 2.0]), 2.0);
        assert_eq!(nanmedian(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
