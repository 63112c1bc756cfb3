//! Harmony batch integration (Korsunsky et al. 2019, Nat Methods 16:1289; the harmony2
//! variant with per-cluster ridge penalties), as PyPI `harmonypy==2.1.0` runs it.
//!
//! The algorithm follows harmonypy's C++ backend (harmonypy (slowkow/harmonypy, file
//! src/harmony.cpp)) step by step: the same seeded generator and k-means start, the same
//! block order in the soft-clustering update, the same objective, convergence tests and
//! ridge solve. Numbers are `f32` wherever harmonypy keeps `float` (embeddings, assignments,
//! centroids, O and E) and `f64` where it accumulates in `double` (objective terms, the
//! ridge system's sums and solve): matching its precision is what keeps the corrected
//! embedding within rounding of harmonypy's rather than merely close. Sums run in the same
//! order and over the same pieces of cells (runs of at most 1,024 cells), so results do
//! not depend on the number of rayon threads. For the same reason the K × d products are
//! plain loops in harmonypy's order rather than `matrixmultiply` calls, whose blocking would
//! reorder the f32 sums; harmonypy itself uses no BLAS.
//!
//! Scope: one batch variable (harmonypy's `vars_use` with one column) and one theta, sigma
//! and lambda for all batches and clusters.

// Index loops keep harmonypy's order of operations visible, which the parity depends on.
#![allow(clippy::needless_range_loop)]

mod init;
mod ridge;
mod rng;

use crate::{invalid, Result};
use rayon::prelude::*;
use rng::Mt19937;

/// Cells per task, and the pieces harmonypy sums cell-wise quantities over.
pub(crate) const CHUNK: usize = 1024;

/// Convergence window of the k-means rounds (harmonypy's `window_size`).
const WINDOW: usize = 3;

/// Options of [`harmony`], with `harmonypy.run_harmony`'s names and defaults (2.1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct HarmonyOptions {
    /// Diversity penalty, the same for every batch (`theta`, default 2).
    pub theta: f32,
    /// Ridge penalty for every batch (`lamb`); `None` (the default) estimates it in each
    /// cluster as `alpha` × the cluster's expected cells of the batch (harmony2).
    pub lambda: Option<f32>,
    /// Scale of the estimated ridge penalty (`alpha`, default 0.2); unused with `lambda`.
    pub alpha: f32,
    /// Soft-clustering bandwidth, the same for every cluster (`sigma`, default 0.1).
    pub sigma: f32,
    /// Number of clusters (`nclust`); `None` is harmonypy's `min(round(n / 30), 100)`.
    pub nclust: Option<usize>,
    /// Protection against over-correction of small batches (`tau`, default 0: off).
    pub tau: f32,
    /// Fraction of cells reassigned at a time (`block_size`, default 0.05).
    pub block_size: f32,
    /// Maximum correction rounds (`max_iter_harmony`, default 10).
    pub max_iter_harmony: usize,
    /// Soft k-means rounds per correction round (`max_iter_kmeans`, default 4).
    pub max_iter_kmeans: usize,
    /// Relative change of the windowed k-means objective that stops the rounds
    /// (`epsilon_cluster`, default 1e-3).
    pub epsilon_cluster: f32,
    /// Relative decrease of the objective that ends the correction (`epsilon_harmony`,
    /// default 1e-2).
    pub epsilon_harmony: f32,
    /// A cluster corrects a batch only where more than this fraction of the batch's cells
    /// weigh in it (`batch_prop_cutoff`, default 1e-5).
    pub batch_prop_cutoff: f32,
    /// Seed (`random_state`, default 0): the same seed gives harmonypy's k-means start and
    /// block order, and the same bits on every run.
    pub random_state: u32,
    /// Starting centroids instead of the seeded k-means: `d × nclust`, row-major (the layout
    /// of harmonypy's `Harmony.Y`; `run_harmony(..., max_iter_harmony=0).Y` is the start
    /// harmonypy itself uses). The generator is still advanced as the k-means would advance
    /// it, so the rest of the run draws what harmonypy draws.
    pub init_centroids: Option<Vec<f32>>,
}

impl Default for HarmonyOptions {
    fn default() -> Self {
        Self {
            theta: 2.0,
            lambda: None,
            alpha: 0.2,
            sigma: 0.1,
            nclust: None,
            tau: 0.0,
            block_size: 0.05,
            max_iter_harmony: 10,
            max_iter_kmeans: 4,
            epsilon_cluster: 1e-3,
            epsilon_harmony: 1e-2,
            batch_prop_cutoff: 1e-5,
            random_state: 0,
            init_centroids: None,
        }
    }
}

/// What [`harmony`] returns.
#[derive(Debug, Clone)]
pub struct HarmonyResult {
    /// The corrected embedding, `n × d` row-major (harmonypy's `Z_corr`, which scanpy's
    /// `harmony_integrate` stores as `obsm['X_pca_harmony']`).
    pub corrected: Vec<f32>,
    /// Cells.
    pub n: usize,
    /// Components.
    pub d: usize,
    /// Clusters used.
    pub nclust: usize,
    /// Correction rounds run.
    pub iterations: usize,
    /// Whether the objective's relative decrease fell below `epsilon_harmony`.
    pub converged: bool,
    /// The objective after initialisation and after each round (`objective_harmony`).
    pub objective: Vec<f32>,
    /// Soft k-means rounds of each correction round (`kmeans_rounds`).
    pub kmeans_rounds: Vec<usize>,
    /// Final centroids on the unit sphere, `d × nclust` row-major (harmonypy's `Y`).
    pub centroids: Vec<f32>,
    /// Final soft cluster assignments, `n × nclust` row-major (harmonypy's `R`).
    pub assignments: Vec<f32>,
}

/// Harmony-correct the embedding `pcs` (`n × d`, row-major, e.g. `obsm['X_pca']`) of cells
/// in batches `batches` (one code in `0..n_batches` per cell).
///
/// Bad input (fewer than two non-empty batches, `n < nclust`, NaN or infinite values, a
/// `batches` or `init_centroids` of the wrong length, `d == 0`, options out of range) gives
/// [`crate::IntegrateError::Invalid`] naming the field; a run that breaks down numerically
/// (for example a `lambda` of 0 that leaves a ridge system singular) also gives `Invalid`,
/// naming the option to change.
pub fn harmony(
    pcs: &[f32],
    n: usize,
    d: usize,
    batches: &[u32],
    n_batches: usize,
    opts: &HarmonyOptions,
) -> Result<HarmonyResult> {
    let k = validate(pcs, n, d, batches, n_batches, opts)?;
    let mut h = Harmony::new(pcs, n, d, batches, n_batches, k, opts);
    h.init(opts.init_centroids.as_deref())?;
    let mut converged = false;
    let mut iterations = 0;
    for _ in 0..opts.max_iter_harmony {
        iterations += 1;
        h.cluster()?;
        h.moe_correct_ridge()?;
        let len = h.objective_harmony.len();
        if converged_by(
            h.objective_harmony[len - 2],
            h.objective_harmony[len - 1],
            opts.epsilon_harmony,
        ) {
            converged = true;
            break;
        }
    }
    if h.zc.iter().any(|v| !v.is_finite()) {
        return Err(numerical("corrected coordinates are not finite"));
    }
    let mut centroids = vec![0f32; d * k];
    for c in 0..k {
        for a in 0..d {
            centroids[a * k + c] = h.y[c * d + a];
        }
    }
    Ok(HarmonyResult {
        corrected: h.zc,
        n,
        d,
        nclust: k,
        iterations,
        converged,
        objective: h.objective_harmony,
        kmeans_rounds: h.kmeans_rounds,
        centroids,
        assignments: h.r,
    })
}

/// harmonypy's default number of clusters: `min(round(n / 30), 100)`, with Python's
/// round-half-to-even.
pub fn default_nclust(n: usize) -> usize {
    let x = n as f64 / 30.0;
    let r = x.round();
    let r = if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - 1.0
    } else {
        r
    };
    (r as usize).min(100)
}

fn validate(
    pcs: &[f32],
    n: usize,
    d: usize,
    batches: &[u32],
    n_batches: usize,
    opts: &HarmonyOptions,
) -> Result<usize> {
    if d == 0 {
        return Err(invalid(
            "pcs: d (components per cell) is 0; pass at least one principal component",
        ));
    }
    if n == 0 {
        return Err(invalid(
            "pcs: no cells (n = 0); pass at least one cell per batch",
        ));
    }
    if pcs.len() != n * d {
        return Err(invalid(format!(
            "pcs: {} values is not n × d = {n} × {d}; pass the embedding row-major, one row per cell",
            pcs.len()
        )));
    }
    if let Some(i) = pcs.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "pcs: cell {} component {} is {}; remove or impute cells with NaN or infinite values",
            i / d,
            i % d,
            pcs[i]
        )));
    }
    if batches.len() != n {
        return Err(invalid(format!(
            "batches: {} codes for n = {n} cells; give one batch code per cell",
            batches.len()
        )));
    }
    let mut sizes = vec![0usize; n_batches];
    for (i, &b) in batches.iter().enumerate() {
        match sizes.get_mut(b as usize) {
            Some(s) => *s += 1,
            None => {
                return Err(invalid(format!(
                    "batches: cell {i} has code {b}, not below n_batches = {n_batches}; number batches 0..n_batches"
                )))
            }
        }
    }
    if sizes.iter().filter(|&&s| s > 0).count() < 2 {
        return Err(invalid(
            "batches: all cells are in one batch; Harmony needs cells from at least two batches",
        ));
    }
    let k = match opts.nclust {
        Some(0) => return Err(invalid("nclust: 0 clusters; use at least 1")),
        Some(k) => k,
        None => match default_nclust(n) {
            0 => {
                return Err(invalid(format!(
                    "nclust: the default min(round(n / 30), 100) is 0 for n = {n} cells; set nclust (1..={n}) explicitly"
                )))
            }
            k => k,
        },
    };
    if n < k {
        return Err(invalid(format!(
            "nclust: {k} clusters but only n = {n} cells; lower nclust to at most {n}"
        )));
    }
    let finite_nonneg = |name: &str, v: f32| -> Result<()> {
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err(invalid(format!(
                "{name}: {v} is not a finite number >= 0; use e.g. the default"
            )))
        }
    };
    finite_nonneg("theta", opts.theta)?;
    finite_nonneg("alpha", opts.alpha)?;
    finite_nonneg("tau", opts.tau)?;
    finite_nonneg("batch_prop_cutoff", opts.batch_prop_cutoff)?;
    if let Some(l) = opts.lambda {
        finite_nonneg("lambda", l)?;
    }
    if !(opts.sigma.is_finite() && opts.sigma > 0.0) {
        return Err(invalid(format!(
            "sigma: {} is not a finite number > 0; use e.g. the default 0.1",
            opts.sigma
        )));
    }
    if !(opts.block_size > 0.0 && opts.block_size <= 1.0) {
        return Err(invalid(format!(
            "block_size: {} is not in (0, 1]; use e.g. the default 0.05",
            opts.block_size
        )));
    }
    if opts.epsilon_cluster.is_nan() || opts.epsilon_harmony.is_nan() {
        return Err(invalid(
            "epsilon_cluster/epsilon_harmony: NaN; use numbers such as the defaults",
        ));
    }
    if let Some(y) = &opts.init_centroids {
        if y.len() != d * k {
            return Err(invalid(format!(
                "init_centroids: {} values is not d × nclust = {d} × {k}; pass harmonypy's Y (d × nclust, row-major)",
                y.len()
            )));
        }
        if y.iter().any(|v| !v.is_finite()) {
            return Err(invalid(
                "init_centroids: NaN or infinite values; pass finite centroids",
            ));
        }
    }
    Ok(k)
}

fn numerical(what: &str) -> crate::IntegrateError {
    invalid(format!(
        "harmony: {what} (numerical breakdown); raise sigma, lambda or alpha, or lower theta"
    ))
}

/// harmonypy's `objective_converged`: a relative decrease below epsilon (an increase, or a
/// non-finite objective, does not converge).
fn converged_by(old: f32, new: f32, epsilon: f32) -> bool {
    if !old.is_finite() || !new.is_finite() || !epsilon.is_finite() {
        return false;
    }
    if old == 0.0 {
        return new == 0.0;
    }
    let delta = (old - new) / old.abs();
    delta >= 0.0 && delta < epsilon
}

/// Sum in Armadillo's order (two interleaved partial sums), as harmonypy's `accumulate`.
fn accumulate(x: &[f32]) -> f32 {
    let (mut a, mut b) = (0f32, 0f32);
    let mut j = 1;
    while j < x.len() {
        a += x[j - 1];
        b += x[j];
        j += 2;
    }
    if j - 1 < x.len() {
        a += x[j - 1];
    }
    a + b
}

/// Dot product in eight partial sums combined pairwise, as harmonypy's `dot`.
pub(crate) fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n = a.len();
    let mut i = 0;
    while i + 8 <= n {
        for l in 0..8 {
            acc[l] += a[i + l] * b[i + l];
        }
        i += 8;
    }
    let mut l = 0;
    while i < n {
        acc[l] += a[i] * b[i];
        i += 1;
        l += 1;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Scale to unit L2 norm (Armadillo's `normalise`: the norm from two interleaved sums of
/// squares; a zero vector is left alone).
fn unit_length(x: &mut [f32]) {
    let (mut a, mut b) = (0f32, 0f32);
    let mut i = 0;
    while i + 1 < x.len() {
        a += x[i] * x[i];
        b += x[i + 1] * x[i + 1];
        i += 2;
    }
    if i < x.len() {
        a += x[i] * x[i];
    }
    let norm = (a + b).sqrt();
    if norm != 0.0 && norm.is_finite() {
        for v in x.iter_mut() {
            *v /= norm;
        }
    }
}

/// Softmax of logits in place (shift by the max, exp, divide by the sum); false if the sum
/// is not finite and positive.
fn softmax(x: &mut [f32]) -> bool {
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for v in x.iter_mut() {
        *v = (*v - max).exp();
    }
    let total = accumulate(x);
    if !(total.is_finite() && total > 0.0) {
        return false;
    }
    for v in x.iter_mut() {
        *v /= total;
    }
    true
}

/// The running state, laid out cell by cell: `zc`, `zo` are n × d, `r` and `dist` n × K,
/// `y` K × d (one centroid per row), `o` and `e` B × K (one batch per row).
struct Harmony {
    n: usize,
    d: usize,
    k: usize,
    nb: usize,
    zo: Vec<f32>,
    zc: Vec<f32>,
    y: Vec<f32>,
    r: Vec<f32>,
    dist: Vec<f32>,
    o: Vec<f32>,
    e: Vec<f32>,
    batch: Vec<u32>,
    /// Cells of each batch in increasing order: `cells[offsets[b]..offsets[b + 1]]`.
    cells: Vec<u32>,
    offsets: Vec<usize>,
    batch_sizes: Vec<f32>,
    pr_b: Vec<f32>,
    sigma: Vec<f32>,
    theta: Vec<f32>,
    lambda: Option<f32>,
    alpha: f32,
    block_size: f32,
    max_iter_kmeans: usize,
    epsilon_cluster: f32,
    cutoff: f32,
    rng: Mt19937,
    objective_kmeans: Vec<f32>,
    objective_harmony: Vec<f32>,
    kmeans_rounds: Vec<usize>,
}

impl Harmony {
    fn new(
        pcs: &[f32],
        n: usize,
        d: usize,
        batches: &[u32],
        nb: usize,
        k: usize,
        opts: &HarmonyOptions,
    ) -> Self {
        let mut offsets = vec![0usize; nb + 1];
        for &b in batches {
            offsets[b as usize + 1] += 1;
        }
        for b in 0..nb {
            offsets[b + 1] += offsets[b];
        }
        let mut next = offsets[..nb].to_vec();
        let mut cells = vec![0u32; n];
        for (j, &b) in batches.iter().enumerate() {
            cells[next[b as usize]] = j as u32;
            next[b as usize] += 1;
        }
        let batch_sizes: Vec<f32> = (0..nb)
            .map(|b| (offsets[b + 1] - offsets[b]) as f32)
            .collect();
        // harmonypy computes these in float32 (NumPy): Pr_b = N_b / N, and with tau > 0,
        // theta * (1 - exp(-(N_b / (nclust * tau))^2)).
        let pr_b: Vec<f32> = batch_sizes.iter().map(|&s| s / n as f32).collect();
        let theta: Vec<f32> = if opts.tau > 0.0 {
            let scale = (k as f64 * f64::from(opts.tau)) as f32;
            batch_sizes
                .iter()
                .map(|&s| {
                    let x = s / scale;
                    opts.theta * (1.0 - (-(x * x)).exp())
                })
                .collect()
        } else {
            vec![opts.theta; nb]
        };
        let mut zc = pcs.to_vec();
        zc.par_chunks_mut(d).for_each(unit_length);
        Self {
            n,
            d,
            k,
            nb,
            zo: pcs.to_vec(),
            zc,
            y: vec![0f32; k * d],
            r: vec![0f32; n * k],
            dist: vec![0f32; n * k],
            o: vec![0f32; nb * k],
            e: vec![0f32; nb * k],
            batch: batches.to_vec(),
            cells,
            offsets,
            batch_sizes,
            pr_b,
            sigma: vec![opts.sigma; k],
            theta,
            lambda: opts.lambda,
            alpha: opts.alpha,
            block_size: opts.block_size,
            max_iter_kmeans: opts.max_iter_kmeans,
            epsilon_cluster: opts.epsilon_cluster,
            cutoff: opts.batch_prop_cutoff,
            rng: Mt19937::new(opts.random_state),
            objective_kmeans: Vec::new(),
            objective_harmony: Vec::new(),
            kmeans_rounds: Vec::new(),
        }
    }

    fn init(&mut self, given: Option<&[f32]>) -> Result<()> {
        let (n, d, k) = (self.n, self.d, self.k);
        match given {
            Some(y) => {
                // d × K row-major → one centroid per row; skip the k-means draws.
                for c in 0..k {
                    for a in 0..d {
                        self.y[c * d + a] = y[a * k + c];
                    }
                }
                self.rng.discard((k as u64) * (n as u64 + 1));
            }
            None => self.y = init::kmeans_init(&self.zc, n, d, k, &mut self.rng),
        }
        self.y.par_chunks_mut(d).for_each(unit_length);
        self.assign_without_diversity()?;
        self.rebuild_o_e();
        self.compute_objective();
        let last = *self.objective_kmeans.last().unwrap_or(&f32::NAN);
        self.objective_harmony.push(last);
        Ok(())
    }

    /// Cosine distances `2 (1 - y·z)` to every centroid and `R = softmax(-dist / sigma)`,
    /// without the diversity penalty.
    fn assign_without_diversity(&mut self) -> Result<()> {
        let (d, k) = (self.d, self.k);
        let (y, zc, sigma) = (&self.y, &self.zc, &self.sigma);
        let ok = self
            .dist
            .par_chunks_mut(CHUNK * k)
            .zip(self.r.par_chunks_mut(CHUNK * k))
            .enumerate()
            .map(|(t, (dist, r))| {
                let mut ok = true;
                for (jj, (dist, r)) in dist.chunks_mut(k).zip(r.chunks_mut(k)).enumerate() {
                    let x = &zc[(t * CHUNK + jj) * d..][..d];
                    for c in 0..k {
                        let yc = &y[c * d..(c + 1) * d];
                        let mut s = 0f32;
                        for a in 0..d {
                            s += x[a] * yc[a];
                        }
                        let distance = 2.0f32 * (1.0f32 - s);
                        dist[c] = distance;
                        r[c] = (-distance) / sigma[c];
                    }
                    ok &= softmax(r);
                }
                ok
            })
            .reduce(|| true, |a, b| a && b);
        if ok {
            Ok(())
        } else {
            Err(numerical("cluster assignments do not normalise"))
        }
    }

    /// `E = rowsum(R) Pr_b'`, and `O(:, b)` the sum of R over batch b's cells, summed in
    /// runs of at most [`CHUNK`] cells added in order.
    fn rebuild_o_e(&mut self) {
        let k = self.k;
        let chunk_sums: Vec<Vec<f32>> = self
            .r
            .par_chunks(CHUNK * k)
            .map(|r| {
                let mut acc = vec![0f32; k];
                for cell in r.chunks(k) {
                    for (a, &v) in acc.iter_mut().zip(cell) {
                        *a += v;
                    }
                }
                acc
            })
            .collect();
        let mut totals = vec![0f32; k];
        for s in &chunk_sums {
            for (t, &v) in totals.iter_mut().zip(s) {
                *t += v;
            }
        }
        for b in 0..self.nb {
            for c in 0..k {
                self.e[b * k + c] = totals[c] * self.pr_b[b];
            }
        }
        self.o.fill(0.0);
        for b in 0..self.nb {
            let cells = &self.cells[self.offsets[b]..self.offsets[b + 1]];
            for run in cells.chunks(CHUNK) {
                let s = sum_cells(&self.r, k, run);
                for (o, v) in self.o[b * k..(b + 1) * k].iter_mut().zip(s) {
                    *o += v;
                }
            }
        }
    }

    /// The k-means error and entropy over all cells, then the recorded objective.
    fn compute_objective(&mut self) {
        let k = self.k;
        let sigma = &self.sigma;
        let parts: Vec<(f64, f64)> = self
            .r
            .par_chunks(CHUNK * k)
            .zip(self.dist.par_chunks(CHUNK * k))
            .map(|(r, dist)| {
                let (mut error, mut entropy) = (0f64, 0f64);
                for (&p, (&dd, &s)) in r.iter().zip(dist.iter().zip(sigma.iter().cycle())) {
                    error += f64::from(p) * f64::from(dd);
                    if p > 0.0 {
                        entropy += f64::from(s) * f64::from(p * p.ln());
                    }
                }
                (error, entropy)
            })
            .collect();
        let (mut error, mut entropy) = (0f64, 0f64);
        for (a, b) in parts {
            error += a;
            entropy += b;
        }
        self.record_objective(error, entropy);
    }

    /// Add the cross-entropy term (from O and E) and record the objective, scaled by 2000 / N.
    fn record_objective(&mut self, error: f64, entropy: f64) {
        let k = self.k;
        let norm_const = 2000.0f32 / self.n as f32;
        let mut cross = 0f64;
        for b in 0..self.nb {
            for c in 0..k {
                let e = self.e[b * k + c];
                let o = self.o[b * k + c];
                let ratio = (o + e + 1.0) / (2.0 * e + 1.0);
                let term = ratio.ln() * self.theta[b] * self.sigma[c] * o;
                cross += f64::from(term);
            }
        }
        let total = (error as f32 + entropy as f32 + cross as f32) * norm_const;
        self.objective_kmeans.push(total);
    }

    fn cluster(&mut self) -> Result<()> {
        if self.objective_harmony.len() > 1 {
            let d = self.d;
            self.zc.par_chunks_mut(d).for_each(unit_length);
            self.assign_without_diversity()?;
            self.rebuild_o_e();
        }
        let mut rounds = 0;
        for i in 0..self.max_iter_kmeans {
            let (error, entropy) = self.update_r()?;
            self.record_objective(error, entropy);
            rounds = i + 1;
            if i > WINDOW && self.kmeans_converged() {
                break;
            }
        }
        self.kmeans_rounds.push(rounds);
        let last = *self.objective_kmeans.last().unwrap_or(&f32::NAN);
        self.objective_harmony.push(last);
        Ok(())
    }

    /// harmonypy's `check_convergence(0)`: the windowed objective's relative change.
    fn kmeans_converged(&self) -> bool {
        let obj = &self.objective_kmeans;
        let n = obj.len();
        if n <= WINDOW + 1 {
            return false;
        }
        let (mut old, mut new) = (0f32, 0f32);
        for i in 0..WINDOW {
            old += obj[n - 2 - i];
            new += obj[n - 1 - i];
        }
        (old - new).abs() / old.abs() < self.epsilon_cluster
    }

    /// One pass of the soft-clustering update: cells in a shuffled order, a block at a time,
    /// are taken out of O and E, reassigned with the diversity penalty, and put back.
    /// Returns the k-means error and entropy of the new assignments.
    fn update_r(&mut self) -> Result<(f64, f64)> {
        let (n, k, nb) = (self.n, self.k, self.nb);
        let mut order: Vec<u32> = (0..n as u32).collect();
        self.rng.shuffle(&mut order);
        // As harmonypy: block_size is a float; the block count in double.
        let n_blocks = (1.0f64 / f64::from(self.block_size)).ceil() as usize;
        let per_block = ((n as f32 * self.block_size) as usize).max(1);

        let (mut error, mut entropy) = (0f64, 0f64);
        let mut log_div = vec![0f32; nb * k];
        for i in 0..n_blocks {
            let lo = i * per_block;
            if lo >= n {
                break;
            }
            let hi = if i == n_blocks - 1 {
                n
            } else {
                (i + 1) * per_block
            };
            // The block's cells grouped by batch (stable), in runs of at most CHUNK.
            let block = &order[lo..hi];
            let mut counts = vec![0usize; nb + 1];
            for &j in block {
                counts[self.batch[j as usize] as usize + 1] += 1;
            }
            for b in 0..nb {
                counts[b + 1] += counts[b];
            }
            let mut grouped = vec![0u32; block.len()];
            let mut next = counts[..nb].to_vec();
            for &j in block {
                let b = self.batch[j as usize] as usize;
                grouped[next[b]] = j;
                next[b] += 1;
            }
            let mut runs: Vec<(usize, usize, usize)> = Vec::new();
            for b in 0..nb {
                let mut s = counts[b];
                while s < counts[b + 1] {
                    let end = (s + CHUNK).min(counts[b + 1]);
                    runs.push((b, s, end));
                    s = end;
                }
            }

            // Take the block out of O and E.
            let mut totals = vec![0f32; k];
            for &(b, s, end) in &runs {
                let sums = sum_cells(&self.r, k, &grouped[s..end]);
                for c in 0..k {
                    self.o[b * k + c] -= sums[c];
                    totals[c] += sums[c];
                }
            }
            for b in 0..nb {
                for c in 0..k {
                    let removed = totals[c] * self.pr_b[b];
                    self.e[b * k + c] -= removed;
                }
            }

            // log of the diversity penalty: theta_b (log(2E + 1) - log(O + E + 1)).
            for b in 0..nb {
                for c in 0..k {
                    let e = self.e[b * k + c];
                    let o = self.o[b * k + c];
                    let diff = (2.0 * e + 1.0).ln() - (o + e + 1.0).ln();
                    log_div[b * k + c] = diff * self.theta[b];
                }
            }

            // Reassign each run's cells with O and E frozen (new rows written back below).
            let (dist, sigma) = (&self.dist, &self.sigma);
            let results: Vec<Reassigned> = runs
                .par_iter()
                .map(|&(b, s, end)| {
                    let div = &log_div[b * k..(b + 1) * k];
                    let mut out = Reassigned {
                        rows: vec![0f32; (end - s) * k],
                        sums: vec![0f32; k],
                        error: 0.0,
                        entropy: 0.0,
                        ok: true,
                    };
                    for (&j, logits) in grouped[s..end].iter().zip(out.rows.chunks_mut(k)) {
                        let dj = &dist[j as usize * k..(j as usize + 1) * k];
                        for c in 0..k {
                            logits[c] = (-dj[c]) / sigma[c] + div[c];
                        }
                        let max = logits
                            .iter()
                            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
                        let (mut weighted, mut weighted_shifted) = (0f64, 0f64);
                        for c in 0..k {
                            let shifted = logits[c] - max;
                            let ex = shifted.exp();
                            logits[c] = ex;
                            let w = f64::from(sigma[c]) * f64::from(ex);
                            weighted += w;
                            weighted_shifted += w * f64::from(shifted);
                        }
                        let total = accumulate(logits);
                        if !(total.is_finite() && total > 0.0) {
                            out.ok = false;
                            continue;
                        }
                        let mut cell_error = 0f64;
                        for c in 0..k {
                            let p = logits[c] / total;
                            logits[c] = p;
                            out.sums[c] += p;
                            cell_error += f64::from(p) * f64::from(dj[c]);
                        }
                        out.error += cell_error;
                        let t = f64::from(total);
                        out.entropy += (weighted_shifted - t.ln() * weighted) / t;
                    }
                    out
                })
                .collect();
            for (&(_, s, end), res) in runs.iter().zip(&results) {
                for (&j, row) in grouped[s..end].iter().zip(res.rows.chunks(k)) {
                    self.r[j as usize * k..(j as usize + 1) * k].copy_from_slice(row);
                }
            }

            // Put the block back.
            let mut totals = vec![0f32; k];
            for (&(b, _, _), res) in runs.iter().zip(&results) {
                for c in 0..k {
                    self.o[b * k + c] += res.sums[c];
                    totals[c] += res.sums[c];
                }
            }
            for b in 0..nb {
                for c in 0..k {
                    let added = totals[c] * self.pr_b[b];
                    self.e[b * k + c] += added;
                }
            }
            for res in &results {
                if !res.ok {
                    return Err(numerical("cluster assignments do not normalise"));
                }
                error += res.error;
                entropy += res.entropy;
            }
        }
        Ok((error, entropy))
    }
}

/// Sum of R's rows over `cells`, in order.
fn sum_cells(r: &[f32], k: usize, cells: &[u32]) -> Vec<f32> {
    let mut acc = vec![0f32; k];
    for &j in cells {
        for (a, &v) in acc.iter_mut().zip(&r[j as usize * k..(j as usize + 1) * k]) {
            *a += v;
        }
    }
    acc
}

/// One run's reassigned rows of R, their column sums and objective terms.
struct Reassigned {
    rows: Vec<f32>,
    sums: Vec<f32>,
    error: f64,
    entropy: f64,
    ok: bool,
}
