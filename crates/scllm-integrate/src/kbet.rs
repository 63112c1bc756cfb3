//! kBET (Büttner et al. 2019) per cell-type label, as scib-metrics' `kbet_per_label`
//! (scib_metrics/metrics/_kbet.py, utils/_diffusion_nn.py): within each label, the UMAP
//! connectivities restricted to its cells; if connected, a diffusion map (scanpy's
//! density-normalised symmetric transitions, the 100 largest-magnitude eigenpairs, each
//! component scaled by λ/(1-λ) except the top one, λ = 1, kept as is) and k0 + 1 nearest
//! neighbours in it (k0 = a quarter of the mean batch size, between 10 and 70); per cell a χ²
//! test of its neighbours' batches against the label's batch frequencies; the acceptance rate
//! at α. As in the reference, a label diffused with fewer components (its cells - 1) lowers the
//! component count of every label after it. Labels under 10 cells or in one batch are skipped (NaN); several components: the
//! components of at least 3·k0 cells if they hold 75 % of the label's cells, else 0.
//!
//! The reference takes the diffusion-space neighbours from pynndescent (approximate); here they
//! are exact, as its fixture generator also makes them (tools/scib_fixture.py).

use scllm_eval::special::gammainc;

use crate::eigen::largest_magnitude;
use crate::graph::Graph;
use crate::neighbors::Neighbors;
use crate::rows::column_means;
use crate::silhouette::recode;

/// kBET settings (scib-metrics' defaults).
#[derive(Clone, Copy, Debug)]
pub struct KbetOptions {
    pub alpha: f64,
    pub diffusion_n_comps: usize,
}

impl Default for KbetOptions {
    fn default() -> Self {
        KbetOptions {
            alpha: 0.05,
            diffusion_n_comps: 100,
        }
    }
}

/// One label's kBET acceptance rate (NaN: skipped).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LabelKbet {
    pub label: u32,
    pub cells: usize,
    pub k0: usize,
    pub score: f64,
}

/// kBET acceptance rate of one neighbourhood set (`kbet`): each row of `nn` (its own cell
/// included) tested against the batch frequencies of all `batch` codes (0..n_batches).
pub fn kbet(nn: &Neighbors, batch: &[u32], n_batches: usize, alpha: f64) -> f64 {
    let mut freq = vec![0.0f64; n_batches];
    for &b in batch {
        freq[b as usize] += 1.0;
    }
    let total: f64 = freq.iter().sum();
    let expected: Vec<f64> = freq.iter().map(|f| f / total * nn.k as f64).collect();
    let dof = n_batches as f64 - 1.0;
    let mut accepted = 0usize;
    let mut counts = vec![0.0f64; n_batches];
    for i in 0..nn.n {
        counts.iter_mut().for_each(|c| *c = 0.0);
        for &j in &nn.indices[i * nn.k..(i + 1) * nn.k] {
            counts[batch[j as usize] as usize] += 1.0;
        }
        let stat: f64 = counts
            .iter()
            .zip(&expected)
            .map(|(o, e)| (o - e) * (o - e) / e)
            .sum();
        let p = 1.0 - gammainc(dof / 2.0, stat / 2.0);
        if p >= alpha {
            accepted += 1;
        }
    }
    accepted as f64 / nn.n as f64
}

/// Diffusion-map neighbours of a connectivity graph (`diffusion_nn`): `k + 1` exact neighbours
/// (each cell itself first) in the scaled diffusion components; `None` where the reference
/// fails (fewer cells than neighbours), which it scores 0.
fn diffusion_nn(conn: &Graph, k: usize, n_comps: usize) -> Option<Neighbors> {
    let n = conn.n;
    if k + 1 > n || n < 2 {
        return None;
    }
    // Density normalisation (Coifman et al. 2005), then the symmetric transitions Z K Z, in f32
    // and in scipy's order of operations: the top eigenvalue is 1 only up to this rounding, and
    // the reference scales its component by 1 or by λ/(1-λ) (~1.7e7) depending on whether it
    // rounds to 1 in f32, which decides every diffusion-space neighbour.
    let mut q = vec![0.0f32; n];
    for (p, &j) in conn.indices.iter().enumerate() {
        q[j as usize] += conn.weights[p];
    }
    let q_inv: Vec<f32> = q.iter().map(|v| 1.0 / v).collect();
    // the row of each stored entry, entries in CSR order (scipy's accumulation order)
    let rows: Vec<usize> = (0..n)
        .flat_map(|i| std::iter::repeat_n(i, conn.indptr[i + 1] - conn.indptr[i]))
        .collect();
    let mut z = vec![0.0f32; n];
    let kw: Vec<f32> = rows
        .iter()
        .zip(&conn.indices)
        .zip(&conn.weights)
        .map(|((&i, &j), &w)| {
            let v = q_inv[i] * w * q_inv[j as usize];
            z[j as usize] += v;
            v
        })
        .collect();
    let z_inv: Vec<f32> = z.iter().map(|v| 1.0 / v.sqrt()).collect();
    let tw: Vec<f64> = rows
        .iter()
        .zip(&conn.indices)
        .zip(&kw)
        .map(|((&i, &j), &v)| (z_inv[i] * v * z_inv[j as usize]) as f64)
        .collect();
    let (vals, vecs) = largest_magnitude(conn, &tw, n_comps, 0);
    // as the reference: values and vectors in f32, 1e-8 added, the top value (1) kept as is
    let scale: Vec<f32> = vals
        .iter()
        .map(|&v| {
            let e = v as f32 + 1e-8f32;
            if e == 1.0 {
                e
            } else {
                e / (1.0 - e)
            }
        })
        .collect();
    let emb: Vec<f32> = vecs
        .iter()
        .enumerate()
        .map(|(p, &v)| v as f32 * scale[p % n_comps])
        .collect();
    Some(exact_neighbours_f64(&emb, n, n_comps, k + 1))
}

/// Exact neighbours in f64: the diffusion components are scaled by up to λ/(1-λ) (~1.7e7 for a
/// top eigenvalue that rounds below 1), where |a|² + |b|² - 2a·b in f32 loses the small
/// distances. Candidates come from a blocked f64 GEMM on centred rows, the best `k + 8` of
/// each row are re-measured by direct differences, and the cell itself is put first.
fn exact_neighbours_f64(x: &[f32], n: usize, d: usize, k: usize) -> Neighbors {
    use rayon::prelude::*;
    use scllm_eval::linalg::dgemm_nt;
    let mean = column_means(x, d);
    let xd: Vec<f64> = x
        .chunks(d)
        .flat_map(|r| r.iter().zip(&mean).map(|(&v, m)| v as f64 - m))
        .collect();
    let sq: Vec<f64> = xd
        .chunks(d)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let extra = (k + 8).min(n);
    const B: usize = 256;
    let rows: Vec<(Vec<u32>, Vec<f32>)> = (0..n.div_ceil(B))
        .into_par_iter()
        .flat_map_iter(|b| {
            let lo = b * B;
            let hi = (lo + B).min(n);
            let mut g = vec![0.0f64; (hi - lo) * n];
            dgemm_nt(&xd[lo * d..hi * d], &xd, hi - lo, n, d, &mut g);
            let (xd, sq) = (&xd, &sq);
            (lo..hi)
                .map(move |i| {
                    let gr = &g[(i - lo) * n..(i - lo + 1) * n];
                    let mut cand: Vec<(f64, u32)> = (0..n)
                        .map(|j| {
                            let v = if j == i {
                                f64::NEG_INFINITY
                            } else {
                                sq[i] + sq[j] - 2.0 * gr[j]
                            };
                            (v, j as u32)
                        })
                        .collect();
                    cand.select_nth_unstable_by(extra - 1, |a, b| {
                        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                    });
                    cand.truncate(extra);
                    let xi = &xd[i * d..(i + 1) * d];
                    for c in cand.iter_mut() {
                        let j = c.1 as usize;
                        c.0 = if j == i {
                            -1.0
                        } else {
                            xi.iter()
                                .zip(&xd[j * d..(j + 1) * d])
                                .map(|(a, b)| (a - b) * (a - b))
                                .sum()
                        };
                    }
                    cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    cand.truncate(k);
                    (
                        cand.iter().map(|c| c.1).collect::<Vec<u32>>(),
                        cand.iter()
                            .map(|c| c.0.max(0.0).sqrt() as f32)
                            .collect::<Vec<f32>>(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for (a, b) in rows {
        indices.extend(a);
        distances.extend(b);
    }
    Neighbors {
        n,
        k,
        indices,
        distances,
    }
}

/// kBET per label and its mean over labels that were not skipped (`kbet_per_label`), on the
/// 50-neighbour connectivities `conn`.
pub fn kbet_per_label(
    conn: &Graph,
    batch: &[u32],
    labels: &[u32],
    n_labels: usize,
    opts: &KbetOptions,
) -> (f64, Vec<LabelKbet>) {
    use rayon::prelude::*;
    const SIZE_MAX: usize = (1 << 31) - 1;
    // What to do for each label, decided in label order (cheap); the diffusion maps, the
    // costly part, then run for all labels at once.
    enum Plan {
        Score(f64),
        Diffuse {
            graph: Graph,
            codes: Vec<u32>,
            n_comps: usize,
        },
    }
    let mut plans = Vec::new();
    // The reference lowers its `diffusion_n_comps` to (cells - 1) of each label it diffuses and
    // keeps the lowered value for the labels after it (labels in sorted order); so do we.
    let mut n_comps = opts.diffusion_n_comps;
    for l in 0..n_labels as u32 {
        let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == l).collect();
        if rows.is_empty() {
            continue;
        }
        let sub = conn.subgraph(&rows);
        let (codes, nb) = recode(rows.iter().map(|&i| batch[i]));
        let n_obs = rows.len();
        let mut k0 = 0;
        let plan = if n_obs < 10 || nb == 1 {
            Plan::Score(f64::NAN)
        } else {
            let mut per = vec![0usize; nb];
            for &c in &codes {
                per[c as usize] += 1;
            }
            let quarter = (per.iter().sum::<usize>() as f64 / nb as f64 / 4.0).floor() as usize;
            k0 = quarter.clamp(10, 70);
            if k0 * n_obs >= SIZE_MAX {
                k0 = SIZE_MAX / n_obs;
            }
            let (n_comp, comp) = sub.strong_components();
            if n_comp == 1 {
                n_comps = n_comps.min(n_obs - 1);
                Plan::Diffuse {
                    graph: sub,
                    codes,
                    n_comps,
                }
            } else {
                let mut size = vec![0usize; n_comp];
                for &c in &comp {
                    size[c as usize] += 1;
                }
                let keep: Vec<usize> = (0..n_obs)
                    .filter(|&i| size[comp[i] as usize] >= 3 * k0)
                    .collect();
                if keep.len() as f64 / n_obs as f64 >= 0.75 {
                    let subsub = sub.subgraph(&keep);
                    n_comps = n_comps.min(subsub.n - 1);
                    Plan::Diffuse {
                        graph: subsub,
                        codes: keep.iter().map(|&i| codes[i]).collect(),
                        n_comps,
                    }
                } else {
                    Plan::Score(0.0)
                }
            }
        };
        plans.push((l, n_obs, k0, plan));
    }
    let out: Vec<LabelKbet> = plans
        .into_par_iter()
        .map(|(label, cells, k0, plan)| {
            let score = match plan {
                Plan::Score(s) => s,
                Plan::Diffuse {
                    graph,
                    codes,
                    n_comps,
                } => match diffusion_nn(&graph, k0, n_comps) {
                    Some(nn) => {
                        let (c, nb) = recode(codes.into_iter());
                        kbet(&nn, &c, nb, opts.alpha)
                    }
                    None => 0.0,
                },
            };
            LabelKbet {
                label,
                cells,
                k0,
                score,
            }
        })
        .collect();
    let ok: Vec<f64> = out
        .iter()
        .map(|s| s.score)
        .filter(|s| !s.is_nan())
        .collect();
    let mean = if ok.is_empty() {
        f64::NAN
    } else {
        ok.iter().sum::<f64>() / ok.len() as f64
    };
    (mean, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked toy graph: two batches of equal size; a cell whose 4 neighbours (itself
    /// included) split 2:2 is accepted, one whose neighbours are all of its batch is rejected
    /// (χ² = 4 with 1 dof, p = 0.0455 < 0.05).
    #[test]
    fn kbet_accepts_mixed_and_rejects_pure_neighbourhoods() {
        let nn = Neighbors {
            n: 2,
            k: 4,
            indices: vec![0, 1, 2, 3, 1, 3, 5, 7],
            distances: vec![0.0; 8],
        };
        let batch = [0, 1, 0, 1, 0, 1, 0, 1];
        // row 0 sees batches 0,1,0,1 (accept); row 1 sees 1,1,1,1 (reject)
        assert_eq!(kbet(&nn, &batch, 2, 0.05), 0.5);
    }
}
