//! Harmony's starting centroids, as harmonypy 2.1.0 picks them (harmonypy (slowkow/harmonypy,
//! file src/harmony.cpp), `kmeans_init`, which follows R harmony2): K random cells, each
//! replaced by a cell drawn with weight proportional to its cosine distance from it (the
//! smallest `-ln(u) / distance`, an exponential race), then 10 Lloyd steps with Armadillo's
//! arithmetic, tie-breaking and empty-cluster recovery.
//!
//! Why not a generic k-means++ with several starts, or a crate (linfa-clustering pulls ndarray
//! and a dozen crates)? Drawing from the same generator in the same order reproduces
//! harmonypy's start for the same `random_state`, which no other k-means can.

use super::rng::Mt19937;
use super::{dot8, CHUNK};
use rayon::prelude::*;

/// Centroids (k × d, one per row) of the unit-length cells `x` (n × d).
pub(super) fn kmeans_init(x: &[f32], n: usize, d: usize, k: usize, rng: &mut Mt19937) -> Vec<f32> {
    let mut y = vec![0f32; k * d];
    for i in 0..k {
        // round(u * N), clamped: u may round up to N.
        let idx = ((rng.uniform01_f32() * n as f32).round() as usize).min(n - 1);
        y[i * d..(i + 1) * d].copy_from_slice(&x[idx * d..(idx + 1) * d]);
    }

    let mut chosen = vec![false; n];
    let mut prob = vec![0f32; n];
    let mut draws = vec![0f32; n];
    for i in 0..k {
        for u in draws.iter_mut() {
            *u = rng.uniform01_f32();
        }
        let centre = y[i * d..(i + 1) * d].to_vec();
        prob.par_chunks_mut(CHUNK)
            .zip(draws.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(t, (p, u))| {
                for (jj, (p, &u)) in p.iter_mut().zip(u).enumerate() {
                    let j = t * CHUNK + jj;
                    let distance = ((1.0f32 - dot8(&centre, &x[j * d..(j + 1) * d])) * 2.0).abs();
                    *p = (-u.ln()) / (distance + 1e-10f32);
                }
            });
        let max_prob = prob
            .iter()
            .fold(f32::NEG_INFINITY, |m, &p| if p > m { p } else { m });
        for (p, &c) in prob.iter_mut().zip(&chosen) {
            if c {
                *p = max_prob;
            }
        }
        let mut best = first_min(&prob);
        while chosen[best] {
            prob[best] = prob
                .iter()
                .fold(f32::NEG_INFINITY, |m, &p| if p > m { p } else { m });
            best = first_min(&prob);
        }
        chosen[best] = true;
        y[i * d..(i + 1) * d].copy_from_slice(&x[best * d..(best + 1) * d]);
    }

    let mut spare = rng.clone();
    for _ in 0..10 {
        lloyd_step(&mut y, x, n, d, k, &mut spare);
    }
    y
}

/// The first index of the smallest value (0 when none is below +inf).
fn first_min(v: &[f32]) -> usize {
    let mut best = 0;
    let mut min = f32::INFINITY;
    for (j, &p) in v.iter().enumerate() {
        if p < min {
            min = p;
            best = j;
        }
    }
    best
}

/// One step of `arma::kmeans(means, X, k, keep_existing, 1)`: each cell to its nearest mean
/// (squared distance summed over even and odd dimensions apart; the first mean on ties), then
/// each mean to the average of its cells, summed in cell order. A mean left with no cells
/// takes the last cell of a mean with at least two, in decreasing mean order; beyond those
/// Armadillo draws a random cell from its own generator, which we cannot follow, so we draw
/// from `spare` (a copy of the stream: the main stream must stay aligned with harmonypy's).
/// Where Armadillo gives up (no mean to borrow from) the means are kept as they are.
fn lloyd_step(means: &mut [f32], x: &[f32], n: usize, d: usize, k: usize, spare: &mut Mt19937) {
    let mut assignment = vec![0usize; n];
    assignment
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(t, out)| {
            for (jj, a) in out.iter_mut().enumerate() {
                let cell = &x[(t * CHUNK + jj) * d..][..d];
                let mut min_dist = f32::INFINITY;
                let mut best = 0;
                for g in 0..k {
                    let mean = &means[g * d..(g + 1) * d];
                    let (mut acc1, mut acc2) = (0f32, 0f32);
                    let mut i = 0;
                    while i + 1 < d {
                        let ta = cell[i] - mean[i];
                        let tb = cell[i + 1] - mean[i + 1];
                        acc1 += ta * ta;
                        acc2 += tb * tb;
                        i += 2;
                    }
                    if i < d {
                        let ta = cell[i] - mean[i];
                        acc1 += ta * ta;
                    }
                    let dist = acc1 + acc2;
                    if dist < min_dist {
                        min_dist = dist;
                        best = g;
                    }
                }
                *a = best;
            }
        });

    let mut sums = vec![0f32; k * d];
    let mut counts = vec![0usize; k];
    let mut last_cell = vec![0usize; k];
    for (j, &g) in assignment.iter().enumerate() {
        for (s, &v) in sums[g * d..(g + 1) * d]
            .iter_mut()
            .zip(&x[j * d..(j + 1) * d])
        {
            *s += v;
        }
        counts[g] += 1;
        last_cell[g] = j;
    }
    let mut new_means = vec![0f32; k * d];
    for g in 0..k {
        if counts[g] > 0 {
            let c = counts[g] as f32;
            for (m, &s) in new_means[g * d..(g + 1) * d].iter_mut().zip(&sums[g * d..]) {
                *m = s / c;
            }
        }
    }
    let dead: Vec<usize> = (0..k).filter(|&g| counts[g] == 0).collect();
    if !dead.is_empty() {
        let live: Vec<usize> = (0..k).rev().filter(|&g| counts[g] >= 2).collect();
        if live.is_empty() {
            return;
        }
        for (used, &g) in dead.iter().enumerate() {
            let cell = match live.get(used) {
                Some(&l) => last_cell[l],
                None => spare.below(n as u64) as usize,
            };
            new_means[g * d..(g + 1) * d].copy_from_slice(&x[cell * d..(cell + 1) * d]);
        }
    }
    if new_means.iter().all(|v| v.is_finite()) {
        means.copy_from_slice(&new_means);
    }
}
