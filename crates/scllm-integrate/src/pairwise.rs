//! One pass over all pairs of cells for the two quadratic things the metrics need: the exact
//! kNN (at k = 90) and the label silhouettes. Both read every pairwise distance, so they share
//! one blocked GEMM (|a|² + |b|² - 2a·b on mean-centred f32 rows, as [`crate::silhouette`]).
//! Cells are ordered by label first, so a row's distance sums per label are sums over contiguous
//! runs (vectorised, and in the same order as summing cell by cell within each label). kNN
//! candidates (k + 8 per row) are re-measured in f64 on the original rows, each cell first.

use rayon::prelude::*;
use scllm_eval::linalg::sgemm_nt;

use crate::neighbors::Neighbors;
use crate::rows::centred;

const BLOCK: usize = 128;
const EXTRA: usize = 8;

/// Exact euclidean `k` nearest neighbours (each cell first) of the row-major `n × d` `x`, and
/// each cell's silhouette for the labels `codes` (0..n_codes; 0 for a cell alone in its label),
/// as [`crate::neighbors::Neighbors::exact`] and [`crate::silhouette::silhouette_samples`]
/// (euclidean, nearest other label) compute them.
pub fn knn_and_silhouette(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    codes: &[u32],
    n_codes: usize,
) -> (Neighbors, Vec<f32>) {
    let k = k.min(n);
    let cand = (k + EXTRA).min(n);
    // label order (stable): position p holds cell order[p]
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| codes[i]);
    let mut start = vec![0usize; n_codes + 1];
    for &c in codes {
        start[c as usize + 1] += 1;
    }
    for c in 0..n_codes {
        start[c + 1] += start[c];
    }
    let xc = centred(x, d);
    let mut y = Vec::with_capacity(n * d);
    for &i in &order {
        y.extend_from_slice(&xc[i * d..(i + 1) * d]);
    }
    let sq: Vec<f32> = y.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    let freq: Vec<usize> = (0..n_codes).map(|c| start[c + 1] - start[c]).collect();
    let pcode: Vec<u32> = order.iter().map(|&i| codes[i]).collect();
    let rows: Vec<(f32, Vec<u32>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .flat_map_iter(|b| {
            let lo = b * BLOCK;
            let hi = (lo + BLOCK).min(n);
            let mut g = vec![0.0f32; (hi - lo) * n];
            sgemm_nt(&y[lo * d..hi * d], &y, hi - lo, n, d, &mut g);
            let mut dist = vec![0.0f32; n];
            let mut sums = vec![0.0f32; n_codes];
            let mut out = Vec::with_capacity(hi - lo);
            for p in lo..hi {
                let gr = &g[(p - lo) * n..(p - lo + 1) * n];
                let sp = sq[p];
                for ((dj, &gj), &sj) in dist.iter_mut().zip(gr).zip(&sq) {
                    *dj = (sp + sj - 2.0 * gj).max(0.0);
                }
                dist[p] = 0.0;
                // nearest candidates by squared distance (positions), before the square roots
                let mut best: Vec<(f32, u32)> = Vec::with_capacity(cand + 1);
                let mut worst = f32::INFINITY;
                for (j, &dj) in dist.iter().enumerate() {
                    if best.len() == cand && dj >= worst {
                        continue;
                    }
                    let at = best.partition_point(|&(bd, _)| bd <= dj);
                    best.insert(at, (dj, j as u32));
                    if best.len() > cand {
                        best.pop();
                    }
                    if best.len() == cand {
                        worst = best[cand - 1].0;
                    }
                }
                dist.iter_mut().for_each(|v| *v = v.sqrt());
                for c in 0..n_codes {
                    sums[c] = dist[start[c]..start[c + 1]].iter().sum();
                }
                let own = pcode[p] as usize;
                let inter = (0..n_codes)
                    .filter(|&c| c != own && freq[c] > 0)
                    .map(|c| sums[c] / freq[c] as f32)
                    .fold(f32::INFINITY, f32::min);
                let intra = sums[own] / (freq[own] as f32 - 1.0);
                let s = (inter - intra) / inter.max(intra);
                out.push((
                    if s.is_finite() { s } else { 0.0 },
                    best.iter().map(|&(_, j)| j).collect::<Vec<u32>>(),
                ));
            }
            out
        })
        .collect();
    // back to the cells' own order; candidates re-measured exactly
    let mut sil = vec![0.0f32; n];
    let mut cands: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (p, (s, c)) in rows.into_iter().enumerate() {
        sil[order[p]] = s;
        cands[order[p]] = c.into_iter().map(|q| order[q as usize] as u32).collect();
    }
    let per_cell: Vec<(Vec<u32>, Vec<f32>)> = cands
        .into_par_iter()
        .enumerate()
        .map(|(i, c)| {
            let xi = &x[i * d..(i + 1) * d];
            let mut r: Vec<(f64, u32)> = c
                .into_iter()
                .filter(|&j| j as usize != i)
                .map(|j| {
                    let xj = &x[j as usize * d..(j as usize + 1) * d];
                    let s: f64 = xi
                        .iter()
                        .zip(xj)
                        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                        .sum();
                    (s.sqrt(), j)
                })
                .collect();
            r.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            r.truncate(k - 1);
            let mut idx = vec![i as u32];
            let mut dist = vec![0.0f32];
            idx.extend(r.iter().map(|p| p.1));
            dist.extend(r.iter().map(|p| p.0 as f32));
            (idx, dist)
        })
        .collect();
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for (a, b) in per_cell {
        indices.extend(a);
        distances.extend(b);
    }
    (
        Neighbors {
            n,
            k,
            indices,
            distances,
        },
        sil,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::silhouette::{silhouette_samples, Between, Metric};

    /// Same neighbours and silhouettes as the separate computations, on scattered points with
    /// labels out of order.
    #[test]
    fn equals_the_separate_passes() {
        let (n, d) = (300, 5);
        let mut s = 7u64;
        let x: Vec<f32> = (0..n * d)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32 * 10.0
            })
            .collect();
        let codes: Vec<u32> = (0..n as u32).map(|i| (i * 7 + i / 13) % 4).collect();
        let (nn, sil) = knn_and_silhouette(&x, n, d, 20, &codes, 4);
        let want_nn = Neighbors::exact(&x, n, d, 20, false);
        assert_eq!(nn.indices, want_nn.indices);
        for (a, b) in nn.distances.iter().zip(&want_nn.distances) {
            assert!((a - b).abs() <= 1e-6 * b.max(1.0));
        }
        let want = silhouette_samples(&x, n, d, &codes, 4, Metric::Euclidean, Between::Nearest);
        for (a, b) in sil.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
