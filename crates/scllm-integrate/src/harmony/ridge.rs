//! Harmony's correction step (harmonypy (slowkow/harmonypy, file src/harmony.cpp),
//! `moe_correct_ridge` and `solve_ridge_cluster`, for one batch variable): per cluster, a
//! ridge regression of the cells' original coordinates, weighted by their assignment, on an
//! intercept and their batch; each batch's coefficients times the cell's assignment are
//! subtracted, and the intercepts become the new centroids. Sums and the solve are in f64,
//! as harmonypy keeps them: with a small penalty the system is nearly singular.

#![allow(clippy::needless_range_loop)]

use super::{unit_length, Harmony, CHUNK};
use crate::{invalid, Result};
use rayon::prelude::*;

/// One cluster's solution: the centroid (intercept coefficients) and each kept batch's
/// correction direction.
struct Solved {
    centroid: Vec<f64>,
    directions: Vec<(usize, Vec<f32>)>,
}

impl Harmony {
    /// The mixture-of-experts ridge correction: per cluster, regress the cells' embeddings
    /// (weighted by R) on an intercept and their batch, and subtract each batch's term.
    pub(super) fn moe_correct_ridge(&mut self) -> Result<()> {
        let (d, k, nb) = (self.d, self.k, self.nb);
        // The batches each cluster corrects: those with more than `cutoff` of their cells
        // in it, when at least two qualify.
        let mut keeps: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (c, keep) in keeps.iter_mut().enumerate() {
            let qualifies: Vec<usize> = (0..nb)
                .filter(|&b| self.o[b * k + c] / self.batch_sizes[b] > self.cutoff)
                .collect();
            if qualifies.len() > 1 {
                *keep = qualifies;
            }
        }
        let mut used = vec![false; nb];
        for keep in &keeps {
            for &b in keep {
                used[b] = true;
            }
        }
        let rz = self.batch_coordinate_sums(&used);

        // Solve each cluster's system; m[b] is batch b's correction, K × d (zero where a
        // cluster does not correct b).
        let solved: Vec<Option<Solved>> = (0..k)
            .into_par_iter()
            .map(|c| {
                if keeps[c].is_empty() {
                    return Ok(None);
                }
                self.solve_cluster(c, &keeps[c], &rz).map(Some)
            })
            .collect::<Result<_>>()?;
        let mut m: Vec<Vec<f32>> = (0..nb)
            .map(|b| {
                if used[b] {
                    vec![0f32; k * d]
                } else {
                    Vec::new()
                }
            })
            .collect();
        for (c, s) in solved.into_iter().enumerate() {
            if let Some(Solved {
                centroid,
                directions,
            }) = s
            {
                for a in 0..d {
                    self.y[c * d + a] = centroid[a] as f32;
                }
                for (b, w) in directions {
                    m[b][c * d..(c + 1) * d].copy_from_slice(&w);
                }
            }
        }

        // Z_corr = Z_orig - sum_k R(k, j) m[batch(j)](k, :).
        let (zo, r, batch) = (&self.zo, &self.r, &self.batch);
        self.zc
            .par_chunks_mut(CHUNK * d)
            .enumerate()
            .for_each(|(t, out)| {
                let mut sum = vec![0f32; d];
                for (jj, out) in out.chunks_mut(d).enumerate() {
                    let j = t * CHUNK + jj;
                    let z = &zo[j * d..(j + 1) * d];
                    let mb = &m[batch[j] as usize];
                    if mb.is_empty() {
                        out.copy_from_slice(z);
                        continue;
                    }
                    sum.fill(0.0);
                    let rj = &r[j * k..(j + 1) * k];
                    for c in 0..k {
                        let rc = rj[c];
                        for (s, &w) in sum.iter_mut().zip(&mb[c * d..(c + 1) * d]) {
                            *s += w * rc;
                        }
                    }
                    for a in 0..d {
                        out[a] = z[a] - sum[a];
                    }
                }
            });
        self.y.par_chunks_mut(d).for_each(unit_length);
        Ok(())
    }

    /// Per used batch b, `rz[b]` (K × (d + 1), f64): for every cluster the R-weighted sum of
    /// the batch's original coordinates, then the sum of R. Accumulated four cells at a time
    /// in runs of cells, as harmonypy does.
    fn batch_coordinate_sums(&self, used: &[bool]) -> Vec<Vec<f64>> {
        let (d, k) = (self.d, self.k);
        let run_size = CHUNK.max(self.n.div_ceil(1024));
        (0..self.nb)
            .into_par_iter()
            .map(|b| {
                if !used[b] {
                    return Vec::new();
                }
                let cells = &self.cells[self.offsets[b]..self.offsets[b + 1]];
                let mut out: Vec<f64> = Vec::new();
                for (ri, run) in cells.chunks(run_size).enumerate() {
                    let mut acc = vec![0f64; k * (d + 1)];
                    let (sums, totals) = acc.split_at_mut(k * d);
                    let mut rc = vec![0f64; 4 * k];
                    for group in run.chunks(4) {
                        let mut zs: [&[f32]; 4] = [&[]; 4];
                        for slot in 0..4 {
                            let rs = &mut rc[slot * k..(slot + 1) * k];
                            match group.get(slot) {
                                Some(&j) => {
                                    let j = j as usize;
                                    zs[slot] = &self.zo[j * d..(j + 1) * d];
                                    for (c, t) in totals.iter_mut().enumerate() {
                                        rs[c] = f64::from(self.r[j * k + c]);
                                        *t += rs[c];
                                    }
                                }
                                None => {
                                    zs[slot] = zs[0];
                                    rs.fill(0.0);
                                }
                            }
                        }
                        let (r0, rest) = rc.split_at(k);
                        let (r1, rest) = rest.split_at(k);
                        let (r2, r3) = rest.split_at(k);
                        for a in 0..d {
                            let (z0, z1, z2, z3) = (
                                f64::from(zs[0][a]),
                                f64::from(zs[1][a]),
                                f64::from(zs[2][a]),
                                f64::from(zs[3][a]),
                            );
                            let row = &mut sums[a * k..(a + 1) * k];
                            for c in 0..k {
                                row[c] += z0 * r0[c] + z1 * r1[c] + z2 * r2[c] + z3 * r3[c];
                            }
                        }
                    }
                    if ri == 0 {
                        out = acc;
                    } else {
                        for (o, v) in out.iter_mut().zip(&acc) {
                            *o += v;
                        }
                    }
                }
                out
            })
            .collect()
    }

    /// Cluster c's ridge system over the intercept and its kept batches, solved in f64: the
    /// batch rows are diagonal, so they are eliminated first (the arrowhead inverse R harmony
    /// uses) and the intercept's 1 × 1 Schur complement is solved by Cholesky. Returns the
    /// centroid (the intercept coefficients) and each kept batch's correction direction.
    fn solve_cluster(&self, c: usize, keep: &[usize], rz: &[Vec<f64>]) -> Result<Solved> {
        let (d, k) = (self.d, self.k);
        let at = |b: usize, a: usize| rz[b][a * k + c];
        let penalty = |b: usize| -> f64 {
            match self.lambda {
                None => f64::from(self.alpha * self.e[b * k + c]),
                Some(l) => f64::from(l),
            }
        };
        let mut total = 0f64;
        let mut coupling = Vec::with_capacity(keep.len());
        let mut diag = Vec::with_capacity(keep.len());
        let mut rhs = vec![0f64; d];
        for &b in keep {
            let o = at(b, d);
            total += o;
            coupling.push(o);
            diag.push(o + penalty(b));
        }
        for &b in keep {
            for (a, v) in rhs.iter_mut().enumerate() {
                *v += at(b, a);
            }
        }
        // The intercept is unpenalised: harmonypy's scalar lamb puts 0 in front.
        let mut s = total;
        let largest = s;
        for (j, &b) in keep.iter().enumerate() {
            if coupling[j] == 0.0 {
                continue;
            }
            let scale = coupling[j] / diag[j];
            s -= scale * coupling[j];
            for (a, v) in rhs.iter_mut().enumerate() {
                *v -= scale * at(b, a);
            }
        }
        if s.is_nan() || s <= 1e-10 * largest {
            return Err(invalid(
                "lambda: the ridge system is singular (lambda or alpha is zero or too small); use a positive lambda or alpha",
            ));
        }
        let root = s.sqrt();
        for v in rhs.iter_mut() {
            *v /= root;
        }
        for v in rhs.iter_mut() {
            *v /= root;
        }
        let dirs = keep
            .iter()
            .enumerate()
            .map(|(j, &b)| {
                let w: Vec<f32> = (0..d)
                    .map(|a| {
                        let mut w = at(b, a);
                        if coupling[j] != 0.0 {
                            w -= coupling[j] * rhs[a];
                        }
                        (w / diag[j]) as f32
                    })
                    .collect();
                (b, w)
            })
            .collect();
        Ok(Solved {
            centroid: rhs,
            directions: dirs,
        })
    }
}
