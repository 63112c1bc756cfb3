//! Silhouette scores as scib-metrics computes them (scib_metrics/utils/_silhouette.py,
//! metrics/_silhouette.py, metrics/_isolated_labels.py): per-cell silhouettes over all pairwise
//! distances (sklearn's `silhouette_samples`; 0 for a cell alone in its cluster), the label ASW,
//! the isolated-label score, and BRAS (batch removal adapted silhouette, Rautenstrauch & Ohler
//! 2025: cosine distance, the mean distance to all other batches instead of the nearest one).
//!
//! Distances come from blocked GEMM on mean-centred data (|a|² + |b|² - 2a·b, centring keeps the
//! cancellation small) in f32 like the reference's jax code; memory stays at 64 rows × n.

use rayon::prelude::*;
use scllm_eval::linalg::sgemm_nt;

use crate::rows::centred;

/// How a cell's distance to the other clusters is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Between {
    /// The nearest other cluster (the standard silhouette).
    Nearest,
    /// The mean over all cells of the other clusters (BRAS).
    MeanOther,
}

/// The distance the silhouette uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Euclidean,
    Cosine,
}

const BLOCK: usize = 64;

/// Silhouette of each of the `n` rows of the row-major `x` (`n × d`) for clusters `codes`
/// (0..n_codes).
pub fn silhouette_samples(
    x: &[f32],
    n: usize,
    d: usize,
    codes: &[u32],
    n_codes: usize,
    metric: Metric,
    between: Between,
) -> Vec<f32> {
    let mut freq = vec![0usize; n_codes];
    for &c in codes {
        freq[c as usize] += 1;
    }
    let y = prepared(x, d, metric);
    let sq: Vec<f32> = y
        .chunks(d.max(1))
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let total: usize = freq.iter().sum();
    let blocks: Vec<Vec<f32>> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let lo = b * BLOCK;
            let hi = (lo + BLOCK).min(n);
            let m = hi - lo;
            let mut g = vec![0.0f32; m * n];
            sgemm_nt(&y[lo * d..hi * d], &y, m, n, d, &mut g);
            let mut out = Vec::with_capacity(m);
            let mut sums = vec![0.0f32; n_codes];
            for r in 0..m {
                let i = lo + r;
                sums.iter_mut().for_each(|s| *s = 0.0);
                let gr = &g[r * n..(r + 1) * n];
                for (j, &s) in gr.iter().enumerate() {
                    if j == i {
                        continue;
                    }
                    let dist = match metric {
                        Metric::Euclidean => (sq[i] + sq[j] - 2.0 * s).max(0.0).sqrt(),
                        Metric::Cosine => (1.0 - s).clamp(0.0, 2.0),
                    };
                    sums[codes[j] as usize] += dist;
                }
                let own = codes[i] as usize;
                let inter = match between {
                    Between::Nearest => (0..n_codes)
                        .filter(|&c| c != own && freq[c] > 0)
                        .map(|c| sums[c] / freq[c] as f32)
                        .fold(f32::INFINITY, f32::min),
                    Between::MeanOther => {
                        let other: f32 = (0..n_codes).filter(|&c| c != own).map(|c| sums[c]).sum();
                        other / (total - freq[own]) as f32
                    }
                };
                let intra = sums[own] / (freq[own] as f32 - 1.0);
                let s = (inter - intra) / inter.max(intra);
                // nan_to_num: a cell alone in its cluster (0/0) scores 0
                out.push(if s.is_finite() { s } else { 0.0 });
            }
            out
        })
        .collect();
    blocks.concat()
}

/// Rows centred (euclidean) or scaled to unit length (cosine).
fn prepared(x: &[f32], d: usize, metric: Metric) -> Vec<f32> {
    match metric {
        Metric::Euclidean => centred(x, d),
        Metric::Cosine => {
            let mut y = x.to_vec();
            for r in y.chunks_mut(d.max(1)) {
                let nrm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                r.iter_mut().for_each(|v| *v = (*v as f64 / nrm) as f32);
            }
            y
        }
    }
}

/// Label ASW rescaled to [0, 1] (`silhouette_label`) from the per-cell silhouettes.
pub fn silhouette_label(samples: &[f32]) -> f64 {
    let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64;
    (mean + 1.0) / 2.0
}

/// The labels present in the fewest batches (`_get_isolated_labels` with no threshold).
pub fn isolated(labels: &[u32], n_labels: usize, batch: &[u32], n_batches: usize) -> Vec<u32> {
    let mut seen = vec![false; n_labels * n_batches];
    for (&l, &b) in labels.iter().zip(batch) {
        seen[l as usize * n_batches + b as usize] = true;
    }
    let per_label: Vec<usize> = (0..n_labels)
        .map(|l| {
            seen[l * n_batches..(l + 1) * n_batches]
                .iter()
                .filter(|&&s| s)
                .count()
        })
        .collect();
    let present: Vec<usize> = per_label.iter().copied().filter(|&c| c > 0).collect();
    let threshold = present.iter().copied().min().unwrap_or(0);
    (0..n_labels as u32)
        .filter(|&l| per_label[l as usize] > 0 && per_label[l as usize] <= threshold)
        .collect()
}

/// Isolated-label score (`isolated_labels`): for each isolated label, the mean rescaled
/// silhouette of its cells; then the mean over those labels.
pub fn isolated_labels(samples: &[f32], labels: &[u32], iso: &[u32]) -> f64 {
    let scores: Vec<f64> = iso
        .iter()
        .map(|&l| {
            let (sum, cnt) = labels
                .iter()
                .zip(samples)
                .filter(|(&c, _)| c == l)
                .fold((0.0f64, 0usize), |(s, c), (_, &v)| {
                    (s + (v as f64 + 1.0) / 2.0, c + 1)
                });
            sum / cnt as f64
        })
        .collect();
    scores.iter().sum::<f64>() / scores.len() as f64
}

/// BRAS (`bras`): within each label present in more than one batch (and not one cell per
/// batch), 1 - |silhouette over batches| with cosine distance and the mean distance to the
/// other batches; the mean per label, then over labels. NaN when no label qualifies.
pub fn bras(x: &[f32], n: usize, d: usize, labels: &[u32], n_labels: usize, batch: &[u32]) -> f64 {
    let mut means = Vec::new();
    for l in 0..n_labels as u32 {
        let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == l).collect();
        if rows.is_empty() {
            continue;
        }
        let (codes, nb) = recode(rows.iter().map(|&i| batch[i]));
        if nb == 1 || nb == rows.len() {
            continue;
        }
        let mut sub = Vec::with_capacity(rows.len() * d);
        for &i in &rows {
            sub.extend_from_slice(&x[i * d..(i + 1) * d]);
        }
        let s = silhouette_samples(
            &sub,
            rows.len(),
            d,
            &codes,
            nb,
            Metric::Cosine,
            Between::MeanOther,
        );
        let m = s.iter().map(|&v| 1.0 - (v as f64).abs()).sum::<f64>() / s.len() as f64;
        means.push(m);
    }
    if means.is_empty() {
        return f64::NAN;
    }
    means.iter().sum::<f64>() / means.len() as f64
}

/// Codes renumbered 0.. in sorted order of the values present (pandas' `Categorical(...).codes`
/// on a subset): `(codes, count)`.
pub(crate) fn recode(values: impl Iterator<Item = u32>) -> (Vec<u32>, usize) {
    let v: Vec<u32> = values.collect();
    let mut u = v.clone();
    u.sort_unstable();
    u.dedup();
    let codes = v
        .iter()
        .map(|x| u.binary_search(x).unwrap_or(0) as u32)
        .collect();
    (codes, u.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked on the line: points 0, 1 (cluster a) and 10, 11 (cluster b). For 0: a = 1,
    /// b = (10 + 11)/2 = 10.5, s = 9.5/10.5.
    #[test]
    fn silhouette_on_a_line() {
        let x = [0.0f32, 1.0, 10.0, 11.0];
        let s = silhouette_samples(
            &x,
            4,
            1,
            &[0, 0, 1, 1],
            2,
            Metric::Euclidean,
            Between::Nearest,
        );
        assert!((s[0] - 9.5 / 10.5).abs() < 1e-5, "{s:?}");
        assert!((s[1] - (9.5 - 1.0) / 9.5).abs() < 1e-5);
        // a cell alone in its cluster scores 0
        let s = silhouette_samples(
            &x,
            4,
            1,
            &[0, 0, 0, 1],
            2,
            Metric::Euclidean,
            Between::Nearest,
        );
        assert_eq!(s[3], 0.0);
    }

    #[test]
    fn isolated_labels_are_those_in_fewest_batches() {
        // label 0 in batches 0 and 1, label 1 only in batch 1, label 2 only in batch 0
        let labels = [0, 0, 1, 2];
        let batch = [0, 1, 1, 0];
        assert_eq!(isolated(&labels, 3, &batch, 2), vec![1, 2]);
    }
}
