//! UMAP (McInnes, Healy & Melville 2018) of any embedding, following umap-learn 0.5 step by step
//! so that its pictures and quality scores are the ones a reviewer gets from `umap.UMAP()`:
//!
//! 1. exact k nearest neighbours (euclidean, the point itself first), blocked and multi-threaded
//!    (rayon) on top of [`crate::knn::kneighbors`], distances then re-measured in f64; O(n²·d)
//!    time, so meant for up to ~50k cells (50k × 50: 28 s of 47 s in all, release build, 2 busy
//!    cores); larger inputs work but the kNN grows quadratically;
//! 2. the smooth-kNN search for each cell's `rho` (distance to the nearest neighbour) and `sigma`
//!    (so that Σ exp(-(d-rho)/sigma) = log2(k)), membership strengths, fuzzy union
//!    `A + Aᵀ - A∘Aᵀ`;
//! 3. edges weaker than `max / n_epochs` dropped; spectral initialisation (the 2nd and 3rd
//!    eigenvectors of the normalised graph Laplacian, by subspace iteration), PCA of the input
//!    when the graph is not connected; scaled to 10, 1e-4 noise, rescaled to the box [0, 10]²;
//! 4. SGD of the fuzzy cross-entropy with negative sampling (`a`, `b` fitted to `min_dist` and
//!    `spread` as umap-learn's `find_ab_params`: a=1.577, b=0.895 for 0.1 / 1.0), learning rate
//!    decaying linearly, gradients clipped to ±4, 500 epochs up to 10,000 cells and 200 above.
//!
//! The layout is single-threaded and seeded, so a seed gives the same picture every run (as
//! umap-learn with `random_state`). [`trustworthiness`] and [`knn_preservation`] score any 2-D
//! layout against its input (sklearn's `trustworthiness`, same number).
//!
//! Measured against umap-learn 0.5.12 (tests/umap_plot.rs, examples/umap_bench.rs): on the
//! 1,050-cell fixture trustworthiness 0.939 vs 0.939, 15-NN kept 0.34 vs 0.33; on 10,000 Kang
//! cells (PCA-50) 0.9439 vs 0.9439 and 0.117 vs 0.117, in 16 s vs umap-learn's 32 s (parallel,
//! after JIT warm-up) on the same 2 busy cores.
//!
//! Why not a crate: `umap-rs` 0.4 (the maintained pure-Rust one) needs the kNN and the start
//! from the caller anyway, cannot be seeded (thread-local RNG), panics on bad input, and its SGD
//! reads the tail of each edge from a stale copy of the layout: given the same exact kNN and a
//! PCA start on the fixture it reached trustworthiness 0.68 and silhouette -0.10 (umap-learn:
//! 0.94, 0.41), different on every run; it also adds 56 crates (sprs, dashmap, indicatif 0.18,
//! ...). `fast-umap` is a parametric (neural) UMAP on burn, which this crate must not pull in.

use crate::progress::bar;
use rayon::prelude::*;

use crate::metrics::Distance;
use crate::{invalid, Result, Rng};

/// How the layout starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UmapInit {
    /// Laplacian eigenmap of the kNN graph (umap-learn's default); PCA when the graph has
    /// several connected components.
    Spectral,
    /// First two principal components of the input.
    Pca,
    /// Uniform in [0, 10]².
    Random,
}

/// UMAP parameters; the defaults are umap-learn's.
#[derive(Clone, Debug)]
pub struct UmapOptions {
    pub n_neighbors: usize,
    pub min_dist: f32,
    pub spread: f32,
    /// `None`: 500 for up to 10,000 cells, 200 above (umap-learn's rule).
    pub n_epochs: Option<usize>,
    pub learning_rate: f32,
    pub negative_sample_rate: usize,
    pub repulsion_strength: f32,
    pub init: UmapInit,
    pub seed: u64,
    /// Show progress bars (kNN blocks, epochs) on stderr.
    pub progress: bool,
}

impl Default for UmapOptions {
    fn default() -> Self {
        UmapOptions {
            n_neighbors: 15,
            min_dist: 0.1,
            spread: 1.0,
            n_epochs: None,
            learning_rate: 1.0,
            negative_sample_rate: 5,
            repulsion_strength: 1.0,
            init: UmapInit::Spectral,
            seed: 0,
            progress: false,
        }
    }
}

fn check_matrix(data: &[f32], n: usize, d: usize, what: &str) -> Result<()> {
    if d == 0 || data.len() != n * d {
        return Err(invalid(format!(
            "{what}: has {} values, expected {n} rows x {d} columns",
            data.len()
        )));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(invalid(format!("{what}: contains NaN or infinite values")));
    }
    Ok(())
}

/// 2-D UMAP of the row-major `n × d` matrix `data`.
pub fn umap(data: &[f32], n: usize, d: usize, opts: &UmapOptions) -> Result<Vec<[f32; 2]>> {
    check_matrix(data, n, d, "UMAP input")?;
    let k = opts.n_neighbors;
    if k < 2 {
        return Err(invalid(format!("n_neighbors must be >= 2, got {k}")));
    }
    if n <= k {
        return Err(invalid(format!(
            "UMAP needs more cells than n_neighbors ({k}); got {n} cells"
        )));
    }
    if !(opts.min_dist >= 0.0 && opts.min_dist <= opts.spread && opts.spread > 0.0) {
        return Err(invalid(format!(
            "min_dist ({}) must be in [0, spread ({})]",
            opts.min_dist, opts.spread
        )));
    }
    let (knn_idx, knn_dist) = exact_knn(data, n, d, k, opts.progress);
    let (sigmas, rhos) = smooth_knn_dist(&knn_dist, n, k, 1.0);
    let graph = fuzzy_union(&knn_idx, &knn_dist, &sigmas, &rhos, n, k);
    let default_epochs = if n <= 10_000 { 500 } else { 200 };
    let n_epochs = opts.n_epochs.unwrap_or(default_epochs).max(1);
    let wmax = graph.iter().map(|e| e.2).fold(0.0f32, f32::max);
    // umap-learn: edges below max / n_epochs would never be sampled, so they are dropped
    let thresh_epochs = if n_epochs > 10 {
        n_epochs
    } else {
        default_epochs
    };
    let thresh = wmax / thresh_epochs as f32;
    let edges: Vec<(u32, u32, f32)> = graph.into_iter().filter(|e| e.2 >= thresh).collect();
    let mut rng = Rng::new(opts.seed);
    let mut emb = initialise(data, n, d, &edges, opts.init, &mut rng);
    let (a, b) = find_ab_params(opts.spread as f64, opts.min_dist as f64);
    optimize_layout(
        &mut emb, &edges, n, n_epochs, a as f32, b as f32, opts, &mut rng,
    );
    Ok(emb)
}

/// The kNN graph scanpy's `neighbors` builds (umap-learn's fuzzy simplicial set: exact
/// euclidean `k` nearest neighbours, the point itself counted, then the fuzzy union), as
/// `(row, col, weight)` triples with both directions present; used by the CellTypist
/// over-clustering.
pub(crate) fn connectivities(data: &[f32], n: usize, d: usize, k: usize) -> Vec<(u32, u32, f32)> {
    let k = k.min(n).max(1);
    let (idx, dist) = exact_knn(data, n, d, k, false);
    let (sigmas, rhos) = smooth_knn_dist(&dist, n, k, 1.0);
    fuzzy_union(&idx, &dist, &sigmas, &rhos, n, k)
}

/// The `k` nearest rows of each row by euclidean distance (itself first, at distance 0; the
/// others re-measured in f64): `(indices, distances)`, row-major n × k. O(n²·d).
pub fn exact_knn(
    data: &[f32],
    n: usize,
    d: usize,
    k: usize,
    progress: bool,
) -> (Vec<u32>, Vec<f32>) {
    let pb = bar(n as u64, "neighbours", progress);
    let (idx, dist) = crate::knn::kneighbors(data, data, d, k + 1, Distance::Euclidean, &|m| {
        pb.inc(m as u64)
    });
    pb.finish_and_clear();
    drop(dist);
    let kk = (k + 1).min(n);
    // itself first; the others re-measured exactly (the blocked search expands |a-b|² in f32)
    let rows: Vec<(Vec<u32>, Vec<f32>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &data[i * d..(i + 1) * d];
            let mut r: Vec<(f64, u32)> = idx[i * kk..(i + 1) * kk]
                .iter()
                .filter(|&&j| j as usize != i)
                .map(|&j| {
                    let j = j as usize;
                    (sq_dist_f64(xi, &data[j * d..(j + 1) * d]).sqrt(), j as u32)
                })
                .collect();
            r.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            r.truncate(k - 1);
            let mut oi = vec![i as u32];
            let mut od = vec![0.0f32];
            oi.extend(r.iter().map(|p| p.1));
            od.extend(r.iter().map(|p| p.0 as f32));
            (oi, od)
        })
        .collect();
    let mut oi = Vec::with_capacity(n * k);
    let mut od = Vec::with_capacity(n * k);
    for (a, b) in rows {
        oi.extend(a);
        od.extend(b);
    }
    (oi, od)
}

/// umap-learn's `smooth_knn_dist`: per cell `(sigma, rho)` with
/// Σ_{j≥1} exp(-max(d_j - rho, 0) / sigma) = log2(k).
fn smooth_knn_dist(
    dist: &[f32],
    n: usize,
    k: usize,
    local_connectivity: f64,
) -> (Vec<f32>, Vec<f32>) {
    const TOL: f64 = 1e-5;
    const MIN_K_DIST_SCALE: f64 = 1e-3;
    let target = (k as f64).log2();
    let mean_all = dist.iter().map(|&v| v as f64).sum::<f64>() / dist.len() as f64;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let row: Vec<f64> = dist[i * k..(i + 1) * k].iter().map(|&v| v as f64).collect();
            let nz: Vec<f64> = row.iter().copied().filter(|&v| v > 0.0).collect();
            let mut rho = 0.0;
            if nz.len() as f64 >= local_connectivity {
                let index = local_connectivity.floor() as usize;
                let interp = local_connectivity - index as f64;
                if index > 0 {
                    rho = nz[index - 1];
                    if interp > TOL {
                        rho += interp * (nz[index] - nz[index - 1]);
                    }
                } else {
                    rho = interp * nz[0];
                }
            } else if !nz.is_empty() {
                rho = nz.iter().copied().fold(0.0, f64::max);
            }
            // the search in f32, as umap-learn's numba kernel declares psum, lo, mid and hi: the
            // sigmas then agree to the bit, which scib-metrics' kBET is sensitive to
            let (mut lo, mut hi, mut mid) = (0.0f32, f32::INFINITY, 1.0f32);
            let rho32 = rho as f32;
            let row32 = &dist[i * k..(i + 1) * k];
            for _ in 0..64 {
                let mut psum = 0.0f32;
                for &dj in &row32[1..] {
                    let dd = dj - rho32;
                    psum += if dd > 0.0 { (-(dd / mid)).exp() } else { 1.0 };
                }
                if (psum as f64 - target).abs() < TOL {
                    break;
                }
                if psum as f64 > target {
                    hi = mid;
                    mid = (lo + hi) / 2.0;
                } else {
                    lo = mid;
                    if hi == f32::INFINITY {
                        mid *= 2.0;
                    } else {
                        mid = (lo + hi) / 2.0;
                    }
                }
            }
            let mid = mid as f64;
            let floor = if rho > 0.0 {
                MIN_K_DIST_SCALE * row.iter().sum::<f64>() / k as f64
            } else {
                MIN_K_DIST_SCALE * mean_all
            };
            (mid.max(floor) as f32, rho as f32)
        })
        .unzip()
}

/// umap-learn's `fuzzy_simplicial_set` of a given kNN (`idx`, `dist`: n × k, each row's own
/// cell first), local connectivity 1 and set-op mix ratio 1, as scanpy's and scib-metrics'
/// connectivities: sorted `(row, col, weight)` triples, both directions present.
pub fn fuzzy_connectivities(idx: &[u32], dist: &[f32], n: usize, k: usize) -> Vec<(u32, u32, f32)> {
    let (sigmas, rhos) = smooth_knn_dist(dist, n, k, 1.0);
    fuzzy_union(idx, dist, &sigmas, &rhos, n, k)
}

/// Membership strengths of the directed kNN graph, then the fuzzy union `A + Aᵀ - A∘Aᵀ`, as
/// sorted `(row, col, weight)` triples (both directions present).
fn fuzzy_union(
    idx: &[u32],
    dist: &[f32],
    sigmas: &[f32],
    rhos: &[f32],
    n: usize,
    k: usize,
) -> Vec<(u32, u32, f32)> {
    // (row, col, A[row,col], A[col,row])
    let mut e: Vec<(u32, u32, f32, f32)> = Vec::with_capacity(2 * n * k);
    for i in 0..n {
        for t in 0..k {
            let j = idx[i * k + t];
            if j as usize == i {
                continue;
            }
            let dd = dist[i * k + t] - rhos[i];
            let v = if dd <= 0.0 || sigmas[i] == 0.0 {
                1.0
            } else {
                (-(dd / sigmas[i])).exp()
            };
            e.push((i as u32, j, v, 0.0));
            e.push((j, i as u32, 0.0, v));
        }
    }
    e.par_sort_unstable_by_key(|x| (x.0, x.1));
    let mut out: Vec<(u32, u32, f32)> = Vec::with_capacity(e.len());
    let mut p = 0;
    while p < e.len() {
        let (r, c) = (e[p].0, e[p].1);
        let (mut a, mut at) = (0.0f32, 0.0f32);
        while p < e.len() && e[p].0 == r && e[p].1 == c {
            a += e[p].2;
            at += e[p].3;
            p += 1;
        }
        let v = a + at - a * at;
        if v > 0.0 {
            out.push((r, c, v));
        }
    }
    out
}

/// umap-learn's `find_ab_params`: least-squares fit of `1 / (1 + a x^(2b))` to the curve that is 1
/// below `min_dist` and `exp(-(x - min_dist) / spread)` above, on 300 points of [0, 3·spread].
pub fn find_ab_params(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| spread * 3.0 * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let resid = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| {
                let f = 1.0 / (1.0 + a * x.powf(2.0 * b));
                (f - y) * (f - y)
            })
            .sum()
    };
    // Levenberg–Marquardt on (a, b), from scipy's curve_fit starting point (1, 1)
    let (mut a, mut b, mut lambda) = (1.0f64, 1.0f64, 1e-3f64);
    let mut cur = resid(a, b);
    for _ in 0..500 {
        let (mut jtj, mut jtr) = ([[0.0f64; 2]; 2], [0.0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let den = 1.0 + a * p;
            let f = 1.0 / den;
            let da = -p / (den * den);
            let db = -a * p * 2.0 * x.ln() / (den * den);
            let r = f - y;
            jtj[0][0] += da * da;
            jtj[0][1] += da * db;
            jtj[1][1] += db * db;
            jtr[0] += da * r;
            jtr[1] += db * r;
        }
        jtj[1][0] = jtj[0][1];
        let mut improved = false;
        for _ in 0..20 {
            let m00 = jtj[0][0] * (1.0 + lambda);
            let m11 = jtj[1][1] * (1.0 + lambda);
            let det = m00 * m11 - jtj[0][1] * jtj[1][0];
            if det == 0.0 {
                break;
            }
            let sa = -(m11 * jtr[0] - jtj[0][1] * jtr[1]) / det;
            let sb = -(m00 * jtr[1] - jtj[1][0] * jtr[0]) / det;
            let (na, nb) = (a + sa, b + sb);
            let nr = if na > 0.0 && nb > 0.0 {
                resid(na, nb)
            } else {
                f64::INFINITY
            };
            if nr < cur {
                let done = (cur - nr) <= 1e-15 * cur.max(1e-300);
                a = na;
                b = nb;
                cur = nr;
                lambda = (lambda / 10.0).max(1e-12);
                improved = !done;
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

/// Sparse symmetric matrix as CSR built from sorted triples.
struct Csr {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    data: Vec<f64>,
}

impl Csr {
    fn from_sorted(edges: &[(u32, u32, f32)], n: usize) -> Csr {
        let mut indptr = vec![0usize; n + 1];
        for e in edges {
            indptr[e.0 as usize + 1] += 1;
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        Csr {
            indptr,
            indices: edges.iter().map(|e| e.1).collect(),
            data: edges.iter().map(|e| e.2 as f64).collect(),
        }
    }
}

/// Number of connected components of the graph (union-find).
fn n_components(edges: &[(u32, u32, f32)], n: usize) -> usize {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for e in edges {
        let (a, b) = (
            find(&mut parent, e.0 as usize),
            find(&mut parent, e.1 as usize),
        );
        if a != b {
            parent[a] = b;
        }
    }
    (0..n).filter(|&i| find(&mut parent, i) == i).count()
}

/// Orthonormalise the columns (modified Gram–Schmidt, twice for stability).
fn orthonormalise(v: &mut [Vec<f64>], rng: &mut Rng) {
    for _pass in 0..2 {
        for c in 0..v.len() {
            let (done, rest) = v.split_at_mut(c);
            let col = &mut rest[0];
            for p in done.iter() {
                let dot: f64 = p.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
                col.iter_mut().zip(p).for_each(|(x, y)| *x -= dot * y);
            }
            let mut nrm = col.iter().map(|x| x * x).sum::<f64>().sqrt();
            if nrm < 1e-12 {
                col.iter_mut().for_each(|x| *x = rng.normal());
                for p in done.iter() {
                    let dot: f64 = p.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
                    col.iter_mut().zip(p).for_each(|(x, y)| *x -= dot * y);
                }
                nrm = col.iter().map(|x| x * x).sum::<f64>().sqrt();
            }
            col.iter_mut().for_each(|x| *x /= nrm);
        }
    }
}

/// Leading `want` eigenvectors (largest eigenvalues) of a symmetric positive semi-definite
/// operator on R^n, by subspace iteration with Rayleigh–Ritz; `start` columns are used as the
/// first columns of the starting block.
fn top_eigvecs(
    n: usize,
    want: usize,
    op: &(dyn Fn(&[f64], &mut [f64]) + Sync),
    start: Vec<Vec<f64>>,
    rng: &mut Rng,
    max_iter: usize,
) -> Vec<Vec<f64>> {
    let m = (want + 8).min(n);
    let mut v = start;
    while v.len() < m {
        v.push((0..n).map(|_| rng.normal()).collect());
    }
    v.truncate(m);
    orthonormalise(&mut v, rng);
    let mut w = vec![vec![0.0f64; n]; m];
    // Rayleigh–Ritz: v orthonormal, w = op(v), H = vᵀw; v and w rotated by H's eigenvectors;
    // returns the Ritz values and the largest residual |op(v_i) - θ_i v_i| of the wanted ones
    let ritz = |v: &mut Vec<Vec<f64>>, w: &mut Vec<Vec<f64>>| -> (Vec<f64>, f64) {
        w.par_iter_mut()
            .zip(v.par_iter())
            .for_each(|(wc, vc)| op(vc, wc));
        let mut h = vec![0.0f64; m * m];
        for i in 0..m {
            for j in 0..m {
                h[i * m + j] = v[i].iter().zip(&w[j]).map(|(a, b)| a * b).sum();
            }
        }
        for i in 0..m {
            for j in 0..i {
                let s = 0.5 * (h[i * m + j] + h[j * m + i]);
                h[i * m + j] = s;
                h[j * m + i] = s;
            }
        }
        let (vals, vecs) = crate::linalg::sym_eig(&h, m);
        let rotate = |x: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
            (0..m)
                .into_par_iter()
                .map(|c| {
                    let mut col = vec![0.0f64; n];
                    for (r, xr) in x.iter().enumerate() {
                        let s = vecs[r * m + c];
                        col.iter_mut().zip(xr).for_each(|(a, b)| *a += s * b);
                    }
                    col
                })
                .collect()
        };
        *v = rotate(v);
        *w = rotate(w);
        let res = (0..want)
            .map(|i| {
                v[i].iter()
                    .zip(&w[i])
                    .map(|(a, b)| (b - vals[i] * a).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(0.0f64, f64::max);
        (vals, res)
    };
    for it in 0..max_iter {
        w.par_iter_mut()
            .zip(v.par_iter())
            .for_each(|(wc, vc)| op(vc, wc));
        std::mem::swap(&mut v, &mut w);
        orthonormalise(&mut v, rng);
        if it % 10 == 9 {
            // converged as ARPACK's eigsh(tol=1e-4) that umap-learn uses: residuals below 1e-4
            // (relative to the largest eigenvalue)
            let (vals, res) = ritz(&mut v, &mut w);
            if res < 1e-4 * vals[0].abs().max(1e-300) {
                break;
            }
        }
    }
    ritz(&mut v, &mut w);
    v.truncate(want);
    v
}

/// Starting layout, scaled as umap-learn scales it (max |x| = 10 plus 1e-4 noise for spectral
/// and PCA), before the box rescaling done by the optimiser.
fn initialise(
    data: &[f32],
    n: usize,
    d: usize,
    edges: &[(u32, u32, f32)],
    init: UmapInit,
    rng: &mut Rng,
) -> Vec<[f32; 2]> {
    let raw: Vec<[f64; 2]> = match init {
        UmapInit::Random => {
            return (0..n)
                .map(|_| {
                    [
                        rng.uniform() as f32 * 20.0 - 10.0,
                        rng.uniform() as f32 * 20.0 - 10.0,
                    ]
                })
                .collect()
        }
        UmapInit::Spectral if n_components(edges, n) == 1 && n > 3 => spectral(edges, n, rng),
        _ => pca2(data, n, d, rng),
    };
    let mx = raw
        .iter()
        .flat_map(|p| p.iter().map(|v| v.abs()))
        .fold(0.0f64, f64::max)
        .max(1e-300);
    raw.iter()
        .map(|p| {
            [
                (p[0] * 10.0 / mx) as f32 + (rng.normal() * 1e-4) as f32,
                (p[1] * 10.0 / mx) as f32 + (rng.normal() * 1e-4) as f32,
            ]
        })
        .collect()
}

/// Eigenvectors 2 and 3 of the normalised Laplacian `I - D^-½ W D^-½`, found as the leading
/// eigenvectors of `(I + D^-½ W D^-½) / 2` after the trivial one (`D^½·1`).
fn spectral(edges: &[(u32, u32, f32)], n: usize, rng: &mut Rng) -> Vec<[f64; 2]> {
    let g = Csr::from_sorted(edges, n);
    let deg: Vec<f64> = (0..n)
        .map(|i| g.data[g.indptr[i]..g.indptr[i + 1]].iter().sum::<f64>())
        .collect();
    let isd: Vec<f64> = deg
        .iter()
        .map(|&v| if v > 0.0 { 1.0 / v.sqrt() } else { 0.0 })
        .collect();
    let op = |x: &[f64], y: &mut [f64]| {
        y.par_iter_mut().enumerate().for_each(|(i, yi)| {
            let mut s = 0.0;
            for p in g.indptr[i]..g.indptr[i + 1] {
                let j = g.indices[p] as usize;
                s += g.data[p] * isd[j] * x[j];
            }
            *yi = 0.5 * (x[i] + isd[i] * s);
        });
    };
    let trivial: Vec<f64> = deg.iter().map(|v| v.sqrt()).collect();
    let vecs = top_eigvecs(n, 3, &op, vec![trivial], rng, 3000);
    (0..n).map(|i| [vecs[1][i], vecs[2][i]]).collect()
}

/// Scores of the first two principal components of the row-major `n × d` data.
fn pca2(data: &[f32], n: usize, d: usize, rng: &mut Rng) -> Vec<[f64; 2]> {
    let mut mean = vec![0.0f64; d];
    for r in data.chunks(d) {
        mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let xc: Vec<f64> = data
        .chunks(d)
        .flat_map(|r| r.iter().zip(&mean).map(|(&v, m)| v as f64 - m))
        .collect();
    // covariance-vector product Xcᵀ (Xc v)
    let op = |v: &[f64], out: &mut [f64]| {
        let t: Vec<f64> = xc
            .chunks(d)
            .map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect();
        out.iter_mut().for_each(|o| *o = 0.0);
        for (r, &ti) in xc.chunks(d).zip(&t) {
            out.iter_mut().zip(r).for_each(|(o, &x)| *o += ti * x);
        }
    };
    let want = 2.min(d);
    let vecs = top_eigvecs(d, want, &op, vec![], rng, 300);
    xc.chunks(d)
        .map(|r| {
            let p0: f64 = r.iter().zip(&vecs[0]).map(|(a, b)| a * b).sum();
            let p1: f64 = if want > 1 {
                r.iter().zip(&vecs[1]).map(|(a, b)| a * b).sum()
            } else {
                0.0
            };
            [p0, p1]
        })
        .collect()
}

fn clip(v: f32) -> f32 {
    v.clamp(-4.0, 4.0)
}

/// umap-learn's `optimize_layout_euclidean` (single-threaded, `move_other=True`), after
/// rescaling the start to the box [0, 10]².
#[allow(clippy::too_many_arguments)]
fn optimize_layout(
    emb: &mut [[f32; 2]],
    edges: &[(u32, u32, f32)],
    n: usize,
    n_epochs: usize,
    a: f32,
    b: f32,
    opts: &UmapOptions,
    rng: &mut Rng,
) {
    for dim in 0..2 {
        let lo = emb.iter().map(|p| p[dim]).fold(f32::INFINITY, f32::min);
        let hi = emb.iter().map(|p| p[dim]).fold(f32::NEG_INFINITY, f32::max);
        let range = hi - lo;
        for p in emb.iter_mut() {
            p[dim] = if range > 0.0 {
                10.0 * (p[dim] - lo) / range
            } else {
                0.0
            };
        }
    }
    let wmax = edges.iter().map(|e| e.2).fold(0.0f32, f32::max) as f64;
    // make_epochs_per_sample
    let eps: Vec<f64> = edges
        .iter()
        .map(|e| {
            let ns = n_epochs as f64 * (e.2 as f64 / wmax);
            if ns > 0.0 {
                n_epochs as f64 / ns
            } else {
                -1.0
            }
        })
        .collect();
    let neg_rate = opts.negative_sample_rate as f64;
    let eps_neg: Vec<f64> = eps.iter().map(|&e| e / neg_rate).collect();
    let mut next = eps.clone();
    let mut next_neg = eps_neg.clone();
    let gamma = opts.repulsion_strength;
    let pb = bar(n_epochs as u64, "UMAP epochs", opts.progress);
    for epoch in 0..n_epochs {
        let alpha = opts.learning_rate * (1.0 - epoch as f32 / n_epochs as f32);
        let ep = epoch as f64;
        for (i, e) in edges.iter().enumerate() {
            if next[i] > ep || eps[i] <= 0.0 {
                continue;
            }
            let (j, k) = (e.0 as usize, e.1 as usize);
            let mut cur = emb[j];
            let oth = emb[k];
            let dx = cur[0] - oth[0];
            let dy = cur[1] - oth[1];
            let d2 = dx * dx + dy * dy;
            let gc = if d2 > 0.0 {
                let pb = d2.powf(b);
                -2.0 * a * b * (pb / d2) / (a * pb + 1.0)
            } else {
                0.0
            };
            let gx = clip(gc * dx) * alpha;
            let gy = clip(gc * dy) * alpha;
            cur[0] += gx;
            cur[1] += gy;
            emb[k][0] -= gx;
            emb[k][1] -= gy;
            next[i] += eps[i];
            let n_neg = ((ep - next_neg[i]) / eps_neg[i]) as usize;
            for _ in 0..n_neg {
                let kk = (rng.next_u64() % n as u64) as usize;
                if kk == j {
                    continue;
                }
                let oth = emb[kk];
                let dx = cur[0] - oth[0];
                let dy = cur[1] - oth[1];
                let d2 = dx * dx + dy * dy;
                let gc = if d2 > 0.0 {
                    2.0 * gamma * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0))
                } else {
                    0.0
                };
                if gc > 0.0 {
                    cur[0] += clip(gc * dx) * alpha;
                    cur[1] += clip(gc * dy) * alpha;
                }
            }
            emb[j] = cur;
            next_neg[i] += n_neg as f64 * eps_neg[i];
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
}

// ---------------------------------------------------------------------------------------------
// quality of a layout

fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let t = x as f64 - y as f64;
            t * t
        })
        .sum()
}

/// Indices of the `k` nearest other rows of each row (exact, f64 distances), n × k.
fn neighbours_f64(x: &[f32], n: usize, d: usize, k: usize) -> Vec<Vec<u32>> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &x[i * d..(i + 1) * d];
            let mut ds: Vec<(f64, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (sq_dist_f64(xi, &x[j * d..(j + 1) * d]), j as u32))
                .collect();
            let kk = k.min(ds.len());
            if kk < ds.len() {
                ds.select_nth_unstable_by(kk, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            }
            ds.truncate(kk);
            ds.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            ds.into_iter().map(|p| p.1).collect()
        })
        .collect()
}

fn check_pair(x: &[f32], n: usize, d: usize, y: &[f32], dy: usize, k: usize) -> Result<()> {
    check_matrix(x, n, d, "input")?;
    check_matrix(y, n, dy, "layout")?;
    if k == 0 || 2 * k >= n {
        return Err(invalid(format!(
            "n_neighbors ({k}) must be at least 1 and below half the cells ({n})"
        )));
    }
    Ok(())
}

/// sklearn's `trustworthiness(x, y, n_neighbors=k)` (euclidean): 1 minus the penalty for cells
/// that are among a cell's `k` nearest in the layout `y` (`n × dy`) but not in the input `x`
/// (`n × d`), weighted by how far down the input ranking they are. Input distances are computed
/// in f64 and ranked as float32 (sklearn returns float32 distances for float32 input). O(n²·d).
pub fn trustworthiness(
    x: &[f32],
    n: usize,
    d: usize,
    y: &[f32],
    dy: usize,
    k: usize,
) -> Result<f64> {
    check_pair(x, n, d, y, dy, k)?;
    let nn_y = neighbours_f64(y, n, dy, k);
    let t: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &x[i * d..(i + 1) * d];
            let dist: Vec<f32> = (0..n)
                .map(|j| {
                    if j == i {
                        f32::INFINITY
                    } else {
                        sq_dist_f64(xi, &x[j * d..(j + 1) * d]).sqrt() as f32
                    }
                })
                .collect();
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_by(|&a, &b| {
                dist[a as usize]
                    .total_cmp(&dist[b as usize])
                    .then(a.cmp(&b))
            });
            let mut rank = vec![0u32; n];
            for (r, &j) in order.iter().enumerate() {
                rank[j as usize] = r as u32 + 1;
            }
            nn_y[i]
                .iter()
                .map(|&j| (rank[j as usize] as i64 - k as i64).max(0) as f64)
                .sum::<f64>()
        })
        .sum();
    let (nf, kf) = (n as f64, k as f64);
    Ok(1.0 - t * (2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0))))
}

/// Mean over cells of the share of a cell's `k` nearest neighbours in the input `x` that are also
/// among its `k` nearest in the layout `y` (self excluded, exact euclidean).
pub fn knn_preservation(
    x: &[f32],
    n: usize,
    d: usize,
    y: &[f32],
    dy: usize,
    k: usize,
) -> Result<f64> {
    check_pair(x, n, d, y, dy, k)?;
    let a = neighbours_f64(x, n, d, k);
    let b = neighbours_f64(y, n, dy, k);
    let s: f64 = a
        .par_iter()
        .zip(&b)
        .map(|(p, q)| p.iter().filter(|j| q.contains(j)).count() as f64 / k as f64)
        .sum();
    Ok(s / n as f64)
}

/// The embedding `obsm[key]` of `a` as a row-major f32 matrix `(values, n, d)`, for [`umap`].
pub fn obsm_f32(a: &scllm_io::AnnData, key: &str) -> Result<(Vec<f32>, usize, usize)> {
    let src = crate::anndata_input::name(a);
    let m = a.obsm_get(key).ok_or_else(|| {
        invalid(format!(
            "{src}: field `obsm['{key}']`: no such embedding (obsm keys: {}); pass an existing key",
            crate::anndata_input::names_of(&a.obsm)
        ))
    })?;
    let (n, d) = m.shape();
    Ok((crate::anndata_input::obsm_finite(m, &src, key)?, n, d))
}

/// A 2-D layout as a dense `n × 2` float32 matrix, to store as e.g. `obsm['X_umap']`.
pub fn layout_matrix(layout: &[[f32; 2]]) -> scllm_io::Matrix {
    scllm_io::Matrix::Dense {
        nrows: layout.len(),
        ncols: 2,
        data: scllm_io::Values::F32(flatten(layout)),
    }
}

/// Flatten a 2-D layout to row-major `[x0, y0, x1, y1, ...]`.
pub fn flatten(layout: &[[f32; 2]]) -> Vec<f32> {
    layout.iter().flat_map(|p| p.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ab_params_match_umap_learn() {
        let (a, b) = find_ab_params(1.0, 0.1);
        assert!((a - 1.576943460405378).abs() < 2e-3, "a = {a}");
        assert!((b - 0.8950608781227859).abs() < 2e-3, "b = {b}");
    }

    #[test]
    fn two_blobs_separate() {
        let mut rng = Rng::new(1);
        let (n, d) = (200, 5);
        let mut x = vec![0f32; n * d];
        for i in 0..n {
            for j in 0..d {
                x[i * d + j] = rng.normal() as f32 + if i < n / 2 { 0.0 } else { 20.0 };
            }
        }
        let y = umap(&x, n, d, &UmapOptions::default()).unwrap();
        let labels: Vec<&str> = (0..n).map(|i| if i < n / 2 { "a" } else { "b" }).collect();
        let yf: Vec<f64> = flatten(&y).iter().map(|&v| v as f64).collect();
        let s = crate::metrics::silhouette_score(&yf, 2, &labels, Distance::Euclidean).unwrap();
        assert!(s > 0.8, "silhouette {s}");
        // same seed, same layout
        let y2 = umap(&x, n, d, &UmapOptions::default()).unwrap();
        assert_eq!(y, y2);
    }

    #[test]
    fn errors_are_clear() {
        assert!(umap(&[1.0; 10], 5, 2, &UmapOptions::default()).is_err());
        assert!(umap(&[f32::NAN; 64], 32, 2, &UmapOptions::default()).is_err());
        assert!(umap(&[1.0; 63], 32, 2, &UmapOptions::default()).is_err());
    }
}
