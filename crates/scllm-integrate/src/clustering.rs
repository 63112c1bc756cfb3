//! The clusterings the bio-conservation metrics compare with the labels
//! (scib_metrics/metrics/_nmi_ari.py): k-means with k = the number of labels (the Benchmarker's
//! default), and Leiden on the 15-neighbour connectivities at the resolution (0.2, 0.4, …, 2.0)
//! with the best NMI. NMI (arithmetic normalisation) and ARI are scikit-learn's, from
//! `scllm_eval::metrics`.
//!
//! Neither clustering can be reproduced number for number: the reference's k-means draws its
//! k-means++ start from jax's random stream (one start, 300 Lloyd steps), and its Leiden is
//! igraph's with Python's `random`. Here k-means keeps the lowest-inertia of several seeded
//! k-means++ starts (less dependent on one draw), and Leiden is the `leiden-rs` crate (modularity
//! with a resolution, seeded); the fixtures compare them within a stated tolerance.

use rayon::prelude::*;
use scllm_eval::celltypist::over_cluster::leiden_membership;
use scllm_eval::linalg::sgemm_nt;
use scllm_eval::metrics::{adjusted_rand_score, normalized_mutual_info_score};
use scllm_eval::Rng;

use crate::graph::Graph;
use crate::rows::centred;
use crate::{invalid, Result};

/// NMI and ARI of a clustering against the labels.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct NmiAri {
    pub nmi: f64,
    pub ari: f64,
}

fn nmi_ari(labels: &[u32], clusters: &[u32]) -> Result<NmiAri> {
    let t: Vec<String> = labels.iter().map(|c| c.to_string()).collect();
    let p: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
    Ok(NmiAri {
        nmi: normalized_mutual_info_score(&t, &p)?,
        ari: adjusted_rand_score(&t, &p)?,
    })
}

/// Squared distances of every row to every centre (`n × k`) and each row's nearest centre.
fn assign(
    x: &[f32],
    xsq: &[f32],
    n: usize,
    d: usize,
    centres: &[f32],
    k: usize,
) -> (Vec<u32>, f64) {
    let csq: Vec<f32> = centres
        .chunks(d)
        .map(|c| c.iter().map(|v| v * v).sum())
        .collect();
    const B: usize = 4096;
    let parts: Vec<(Vec<u32>, f64)> = (0..n.div_ceil(B))
        .into_par_iter()
        .map(|b| {
            let lo = b * B;
            let hi = (lo + B).min(n);
            let mut g = vec![0.0f32; (hi - lo) * k];
            sgemm_nt(&x[lo * d..hi * d], centres, hi - lo, k, d, &mut g);
            let mut lab = Vec::with_capacity(hi - lo);
            let mut inertia = 0.0f64;
            for r in 0..hi - lo {
                let (mut best, mut bd) = (0u32, f32::INFINITY);
                for c in 0..k {
                    let dd = (xsq[lo + r] + csq[c] - 2.0 * g[r * k + c]).max(0.0);
                    if dd < bd {
                        bd = dd;
                        best = c as u32;
                    }
                }
                lab.push(best);
                inertia += bd as f64;
            }
            (lab, inertia)
        })
        .collect();
    let mut labels = Vec::with_capacity(n);
    let mut inertia = 0.0;
    for (l, i) in parts {
        labels.extend(l);
        inertia += i;
    }
    (labels, inertia)
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Greedy k-means++ (sklearn's and the reference's: 2 + ⌊ln k⌋ candidates per centre, the one
/// that lowers the potential most).
fn plus_plus(x: &[f32], n: usize, d: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let trials = 2 + (k as f64).ln().floor() as usize;
    let first = (rng.next_u64() % n as u64) as usize;
    let mut centres = x[first * d..(first + 1) * d].to_vec();
    let mut min_d: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| sq_dist(&x[i * d..(i + 1) * d], &centres))
        .collect();
    for _ in 1..k {
        let total: f64 = min_d.iter().map(|&v| v as f64).sum();
        let mut best: Option<(f64, usize, Vec<f32>)> = None;
        for _ in 0..trials {
            let target = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut acc = 0.0;
            let mut pick = n - 1;
            for (i, &v) in min_d.iter().enumerate() {
                acc += v as f64;
                if acc > target {
                    pick = i;
                    break;
                }
            }
            let c = &x[pick * d..(pick + 1) * d];
            let cand: Vec<f32> = (0..n)
                .into_par_iter()
                .map(|i| sq_dist(&x[i * d..(i + 1) * d], c).min(min_d[i]))
                .collect();
            let pot: f64 = cand.iter().map(|&v| v as f64).sum();
            if best.as_ref().is_none_or(|b| pot < b.0) {
                best = Some((pot, pick, cand));
            }
        }
        let (_, pick, cand) = best.expect("at least one trial");
        centres.extend_from_slice(&x[pick * d..(pick + 1) * d]);
        min_d = cand;
    }
    centres
}

/// k-means (Lloyd from k-means++, `starts` seeded starts, the lowest inertia kept) on the
/// row-major `n × d` matrix: each row's cluster.
pub fn kmeans(x: &[f32], n: usize, d: usize, k: usize, starts: usize, seed: u64) -> Vec<u32> {
    // centred, as the reference (for accuracy of |x|² + |c|² - 2x·c)
    let xc = centred(x, d);
    let xsq: Vec<f32> = xc
        .chunks(d)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    // the reference's tolerance: 1e-4 × the mean feature variance
    let var: f64 = (0..d)
        .map(|j| {
            xc.iter()
                .skip(j)
                .step_by(d)
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                / n as f64
        })
        .sum::<f64>()
        / d as f64;
    let tol = var * 1e-4;
    let mut rng = Rng::new(seed);
    let mut best: Option<(f64, Vec<u32>)> = None;
    for _ in 0..starts.max(1) {
        let mut centres = plus_plus(&xc, n, d, k, &mut rng);
        let (mut labels, mut inertia) = assign(&xc, &xsq, n, d, &centres, k);
        for _ in 0..300 {
            let mut sum = vec![0.0f64; k * d];
            let mut cnt = vec![0usize; k];
            for (i, &c) in labels.iter().enumerate() {
                cnt[c as usize] += 1;
                for (s, &v) in sum[c as usize * d..(c as usize + 1) * d]
                    .iter_mut()
                    .zip(&xc[i * d..(i + 1) * d])
                {
                    *s += v as f64;
                }
            }
            for c in 0..k {
                if cnt[c] > 0 {
                    for j in 0..d {
                        centres[c * d + j] = (sum[c * d + j] / cnt[c] as f64) as f32;
                    }
                }
            }
            let (l2, i2) = assign(&xc, &xsq, n, d, &centres, k);
            let done = l2 == labels || (inertia - i2).abs() <= tol;
            labels = l2;
            inertia = i2;
            if done {
                break;
            }
        }
        if best.as_ref().is_none_or(|b| inertia < b.0) {
            best = Some((inertia, labels));
        }
    }
    best.map(|b| b.1).unwrap_or_default()
}

/// NMI and ARI of k-means with k = the number of labels (`nmi_ari_cluster_labels_kmeans`).
pub fn nmi_ari_kmeans(
    x: &[f32],
    n: usize,
    d: usize,
    labels: &[u32],
    n_labels: usize,
    seed: u64,
) -> Result<NmiAri> {
    let clusters = kmeans(x, n, d, n_labels, 5, seed);
    nmi_ari(labels, &clusters)
}

/// Leiden clusters (modularity at `resolution`, seeded) of the symmetric connectivities.
pub fn leiden(conn: &Graph, resolution: f64, seed: u64) -> Result<Vec<u32>> {
    let edges = (0..conn.n).flat_map(|i| {
        conn.row(i)
            .filter(move |&(j, _)| (i as u32) < j)
            .map(move |(j, w)| (i, j as usize, w as f64))
    });
    let m = leiden_membership(conn.n, edges, resolution, seed)
        .map_err(|e| invalid(format!("Leiden clustering: {e}")))?;
    Ok(m.into_iter().map(|c| c as u32).collect())
}

/// NMI and ARI of Leiden at the resolution of the best NMI among 0.2, 0.4, …, 2.0
/// (`nmi_ari_cluster_labels_leiden` with `optimize_resolution`), and that resolution.
pub fn nmi_ari_leiden(conn: &Graph, labels: &[u32], seed: u64) -> Result<(NmiAri, f64)> {
    let mut best: Option<(NmiAri, f64)> = None;
    for step in 1..=10 {
        let r = 2.0 * step as f64 / 10.0;
        let s = nmi_ari(labels, &leiden(conn, r, seed)?)?;
        if best.as_ref().is_none_or(|b| s.nmi > b.0.nmi) {
            best = Some((s, r));
        }
    }
    Ok(best.expect("ten resolutions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_separated_blobs() {
        let mut x = Vec::new();
        let mut truth = Vec::new();
        let mut rng = Rng::new(3);
        for c in 0..3u32 {
            for _ in 0..50 {
                for j in 0..4 {
                    let u = (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
                    x.push(if j as u32 == c { 20.0 } else { 0.0 } + u);
                }
                truth.push(c);
            }
        }
        let k = kmeans(&x, 150, 4, 3, 3, 0);
        let s = nmi_ari(&truth, &k).unwrap();
        assert!(s.nmi > 0.999 && s.ari > 0.999, "{s:?}");
    }
}
