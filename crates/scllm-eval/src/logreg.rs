//! L1-regularised logistic regression, one-vs-rest, solved as liblinear solves it
//! (`solve_l1r_lr`: newGLMNET — Yuan, Ho & Lin 2012 — a proximal Newton method whose
//! sub-problems are solved by coordinate descent, with shrinking), so that it answers the same
//! optimisation problem as scikit-learn's `LogisticRegression(penalty='l1', solver='liblinear')`:
//!
//! `min_w ‖w‖₁ + C Σᵢ log(1 + exp(-yᵢ wᵀxᵢ))`, with the intercept as an extra feature of value 1
//! (`intercept_scaling=1`) that is penalised like the others, one binary problem per class.
//!
//! Probabilities follow scikit-learn's one-vs-rest rule: the per-class sigmoids, normalised to sum
//! to one. The binary problems (and cross-validation folds) run in parallel.

// the solver mirrors liblinear's indexed loops line for line
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;
use scllm_io::Compressed;

use crate::Rng;

/// Solver settings; the defaults are scikit-learn's.
#[derive(Clone, Copy, Debug)]
pub struct SolverOptions {
    /// Stopping tolerance on the L1 norm of the minimum-norm subgradient, relative to its start.
    pub tol: f64,
    /// Maximum Newton iterations (scikit-learn's `max_iter`).
    pub max_iter: usize,
    pub seed: u64,
}

impl Default for SolverOptions {
    fn default() -> Self {
        SolverOptions {
            tol: 1e-4,
            max_iter: 100,
            seed: 1,
        }
    }
}

/// Features by rows: the CSR storage of Xᵀ (features × cells), with the intercept feature
/// appended as the last row (all ones). Built once, shared by every binary problem.
pub struct Design {
    pub n_cells: usize,
    /// Number of features including the intercept.
    pub n_features: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl Design {
    /// From CSR `x` (cells × genes, any value type).
    pub fn new(x: &Compressed) -> Design {
        let xt = crate::linalg::transpose_csr(x);
        let mut indptr: Vec<usize> = xt.indptr.iter().map(|&v| v as usize).collect();
        let mut indices = xt.indices.clone();
        let mut values = xt.data.to_f32();
        indices.extend(0..x.nrows as u32);
        values.extend(std::iter::repeat_n(1.0f32, x.nrows));
        indptr.push(indices.len());
        Design {
            n_cells: x.nrows,
            n_features: x.ncols + 1,
            indptr,
            indices,
            values,
        }
    }
    #[inline]
    fn col(&self, j: usize) -> (&[u32], &[f32]) {
        let r = self.indptr[j]..self.indptr[j + 1];
        (&self.indices[r.clone()], &self.values[r])
    }
}

/// Solve one binary problem. `pos[i]`: cell i is the positive class; `c[i]`: its weight C
/// (0 leaves the cell out, which is how cross-validation folds are made). `w` is the start
/// (warm start) and the result.
pub fn solve_binary(d: &Design, pos: &[bool], c: &[f64], w: &mut [f64], opts: &SolverOptions) {
    let l = d.n_cells;
    let w_size = d.n_features;
    let max_newton_iter = opts.max_iter;
    let max_iter = 1000;
    let max_num_linesearch = 20;
    let nu = 1e-12;
    let sigma = 0.01;
    let mut inner_eps = 1.0;
    // liblinear (as bundled in scikit-learn) tightens the tolerance of the L1 solvers by the
    // share of the smaller class: eps · min(#pos, #neg) / l
    let used = c.iter().filter(|&&v| v > 0.0).count();
    let npos = (0..l).filter(|&i| pos[i] && c[i] > 0.0).count();
    let eps = opts.tol * (npos.min(used - npos).max(1)) as f64 / used.max(1) as f64;
    let mut rng = Rng::new(opts.seed);

    let mut index: Vec<usize> = (0..w_size).collect();
    let mut wpd = w.to_vec();
    let mut hdiag = vec![0.0; w_size];
    let mut grad = vec![0.0; w_size];
    let mut xjneg_sum = vec![0.0; w_size];
    let mut xtd = vec![0.0; l];
    let mut exp_wtx = vec![0.0; l];
    let mut exp_wtx_new = vec![0.0; l];
    let mut tau = vec![0.0; l];
    let mut dd = vec![0.0; l];

    let mut w_norm = 0.0;
    for j in 0..w_size {
        w_norm += w[j].abs();
        let (idx, val) = d.col(j);
        for (&i, &v) in idx.iter().zip(val) {
            let i = i as usize;
            let v = v as f64;
            exp_wtx[i] += w[j] * v;
            if !pos[i] {
                xjneg_sum[j] += c[i] * v;
            }
        }
    }
    for i in 0..l {
        exp_wtx[i] = exp_wtx[i].exp();
        let t = 1.0 / (1.0 + exp_wtx[i]);
        tau[i] = c[i] * t;
        dd[i] = c[i] * exp_wtx[i] * t * t;
    }

    let mut active_size = w_size;
    let mut gmax_old = f64::INFINITY;
    let mut gnorm1_init = -1.0;
    let mut newton_iter = 0;
    while newton_iter < max_newton_iter {
        let mut gmax_new: f64 = 0.0;
        let mut gnorm1_new = 0.0;
        let mut s = 0;
        while s < active_size {
            let j = index[s];
            hdiag[j] = nu;
            let mut tmp = 0.0;
            let (idx, val) = d.col(j);
            for (&i, &v) in idx.iter().zip(val) {
                let i = i as usize;
                let v = v as f64;
                hdiag[j] += v * v * dd[i];
                tmp += v * tau[i];
            }
            grad[j] = -tmp + xjneg_sum[j];
            let gp = grad[j] + 1.0;
            let gn = grad[j] - 1.0;
            let violation;
            if w[j] == 0.0 {
                if gp < 0.0 {
                    violation = -gp;
                } else if gn > 0.0 {
                    violation = gn;
                } else if gp > gmax_old / l as f64 && gn < -gmax_old / l as f64 {
                    active_size -= 1;
                    index.swap(s, active_size);
                    continue;
                } else {
                    violation = 0.0;
                }
            } else if w[j] > 0.0 {
                violation = gp.abs();
            } else {
                violation = gn.abs();
            }
            gmax_new = gmax_new.max(violation);
            gnorm1_new += violation;
            s += 1;
        }
        if newton_iter == 0 {
            gnorm1_init = gnorm1_new;
        }
        if gnorm1_new <= eps * gnorm1_init {
            if active_size == w_size {
                break;
            }
            active_size = w_size;
            gmax_old = f64::INFINITY;
            continue;
        }
        gmax_old = gmax_new;

        // coordinate descent on the quadratic model
        let mut qp_active_size = active_size;
        let mut qp_gmax_old = f64::INFINITY;
        xtd.iter_mut().for_each(|v| *v = 0.0);
        let mut iter = 0;
        while iter < max_iter {
            let mut qp_gmax_new: f64 = 0.0;
            let mut qp_gnorm1_new = 0.0;
            for s in 0..qp_active_size {
                let r = s + rng.below(qp_active_size - s);
                index.swap(s, r);
            }
            let mut s = 0;
            while s < qp_active_size {
                let j = index[s];
                let h = hdiag[j];
                let (idx, val) = d.col(j);
                let mut g = grad[j] + (wpd[j] - w[j]) * nu;
                for (&i, &v) in idx.iter().zip(val) {
                    let i = i as usize;
                    g += v as f64 * dd[i] * xtd[i];
                }
                let gp = g + 1.0;
                let gn = g - 1.0;
                let violation;
                if wpd[j] == 0.0 {
                    if gp < 0.0 {
                        violation = -gp;
                    } else if gn > 0.0 {
                        violation = gn;
                    } else if gp > qp_gmax_old / l as f64 && gn < -qp_gmax_old / l as f64 {
                        qp_active_size -= 1;
                        index.swap(s, qp_active_size);
                        continue;
                    } else {
                        violation = 0.0;
                    }
                } else if wpd[j] > 0.0 {
                    violation = gp.abs();
                } else {
                    violation = gn.abs();
                }
                qp_gmax_new = qp_gmax_new.max(violation);
                qp_gnorm1_new += violation;
                let z = if gp < h * wpd[j] {
                    -gp / h
                } else if gn > h * wpd[j] {
                    -gn / h
                } else {
                    -wpd[j]
                };
                s += 1;
                if z.abs() < 1.0e-12 {
                    continue;
                }
                let z = z.clamp(-10.0, 10.0);
                wpd[j] += z;
                for (&i, &v) in idx.iter().zip(val) {
                    xtd[i as usize] += v as f64 * z;
                }
            }
            iter += 1;
            if qp_gnorm1_new <= inner_eps * gnorm1_init {
                if qp_active_size == active_size {
                    break;
                }
                qp_active_size = active_size;
                qp_gmax_old = f64::INFINITY;
                continue;
            }
            qp_gmax_old = qp_gmax_new;
        }

        // line search
        let mut delta = 0.0;
        let mut w_norm_new = 0.0;
        for j in 0..w_size {
            delta += grad[j] * (wpd[j] - w[j]);
            if wpd[j] != 0.0 {
                w_norm_new += wpd[j].abs();
            }
        }
        delta += w_norm_new - w_norm;
        let mut negsum_xtd = 0.0;
        for i in 0..l {
            if !pos[i] {
                negsum_xtd += c[i] * xtd[i];
            }
        }
        let mut num_linesearch = 0;
        while num_linesearch < max_num_linesearch {
            let mut cond = w_norm_new - w_norm + negsum_xtd - sigma * delta;
            for i in 0..l {
                let exp_xtd = xtd[i].exp();
                exp_wtx_new[i] = exp_wtx[i] * exp_xtd;
                if c[i] != 0.0 {
                    cond += c[i] * ((1.0 + exp_wtx_new[i]) / (exp_xtd + exp_wtx_new[i])).ln();
                }
            }
            if cond <= 0.0 {
                w_norm = w_norm_new;
                w.copy_from_slice(&wpd);
                for i in 0..l {
                    exp_wtx[i] = exp_wtx_new[i];
                    let t = 1.0 / (1.0 + exp_wtx[i]);
                    tau[i] = c[i] * t;
                    dd[i] = c[i] * exp_wtx[i] * t * t;
                }
                break;
            }
            w_norm_new = 0.0;
            for j in 0..w_size {
                wpd[j] = (w[j] + wpd[j]) * 0.5;
                if wpd[j] != 0.0 {
                    w_norm_new += wpd[j].abs();
                }
            }
            delta *= 0.5;
            negsum_xtd *= 0.5;
            xtd.iter_mut().for_each(|v| *v *= 0.5);
            num_linesearch += 1;
        }
        if num_linesearch >= max_num_linesearch {
            // too many halvings: recompute exp(wᵀx) from w to shed rounding error
            exp_wtx.iter_mut().for_each(|v| *v = 0.0);
            for j in 0..w_size {
                if w[j] == 0.0 {
                    continue;
                }
                let (idx, val) = d.col(j);
                for (&i, &v) in idx.iter().zip(val) {
                    exp_wtx[i as usize] += w[j] * v as f64;
                }
            }
            for v in exp_wtx.iter_mut() {
                *v = v.exp();
            }
            wpd.copy_from_slice(w);
        }
        if iter == 1 {
            inner_eps *= 0.25;
        }
        newton_iter += 1;
    }
}

/// A fitted one-vs-rest model: `coef[k]` holds the gene weights of class k, then its intercept.
#[derive(Clone, Debug)]
pub struct LogReg {
    pub coef: Vec<Vec<f64>>,
    pub c: f64,
}

/// Fit one binary problem per class (in parallel). `y[i]`: class code of cell i; `mask[i]`:
/// whether cell i is used. With two classes a single problem is solved, as scikit-learn does.
pub fn fit(
    d: &Design,
    y: &[u32],
    n_classes: usize,
    mask: &[bool],
    c: f64,
    warm: Option<&[Vec<f64>]>,
    opts: &SolverOptions,
) -> LogReg {
    let weights: Vec<f64> = mask.iter().map(|&m| if m { c } else { 0.0 }).collect();
    let problems = if n_classes == 2 { 1 } else { n_classes };
    let coef = (0..problems)
        .into_par_iter()
        .map(|k| {
            // binary: class 1 is the positive class (sklearn's LabelEncoder order)
            let target = if n_classes == 2 { 1 } else { k as u32 };
            let pos: Vec<bool> = y.iter().map(|&v| v == target).collect();
            let mut w = match warm {
                Some(ws) => ws[k].clone(),
                None => vec![0.0; d.n_features],
            };
            let o = SolverOptions {
                seed: opts.seed.wrapping_add(k as u64),
                ..*opts
            };
            solve_binary(d, &pos, &weights, &mut w, &o);
            w
        })
        .collect();
    LogReg { coef, c }
}

impl LogReg {
    /// Number of non-zero gene weights (intercepts excluded), over all classes.
    pub fn nonzero_genes(&self) -> usize {
        let g = self.coef[0].len() - 1;
        (0..g)
            .filter(|&j| self.coef.iter().any(|w| w[j] != 0.0))
            .count()
    }

    /// Decision values (cells × problems) for CSR `x` with the training genes as columns.
    pub fn decision(&self, x: &Compressed) -> Vec<Vec<f64>> {
        let vals = x.data.to_f32();
        (0..x.nrows)
            .into_par_iter()
            .map(|i| {
                self.coef
                    .iter()
                    .map(|w| {
                        let mut s = *w.last().unwrap();
                        for k in x.range(i) {
                            s += w[x.indices[k] as usize] * vals[k] as f64;
                        }
                        s
                    })
                    .collect()
            })
            .collect()
    }

    /// Predicted class codes and their probability, per cell (scikit-learn's OvR normalisation).
    pub fn predict(&self, x: &Compressed, n_classes: usize) -> (Vec<u32>, Vec<f32>) {
        let dec = self.decision(x);
        dec.iter()
            .map(|d| {
                if n_classes == 2 {
                    let p1 = 1.0 / (1.0 + (-d[0]).exp());
                    if d[0] > 0.0 {
                        (1, p1 as f32)
                    } else {
                        (0, (1.0 - p1) as f32)
                    }
                } else {
                    let p: Vec<f64> = d.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
                    let tot: f64 = p.iter().sum();
                    let (best, _) =
                        d.iter()
                            .enumerate()
                            .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                                if v > bv {
                                    (i, v)
                                } else {
                                    (bi, bv)
                                }
                            });
                    (best as u32, (p[best] / tot) as f32)
                }
            })
            .unzip()
    }
}

impl LogReg {
    /// Every class's probability per cell (scikit-learn's OvR `predict_proba`: each problem's
    /// sigmoid, normalised to sum 1; two classes: `[1 - p, p]`), row-major `cells × n_classes`.
    pub fn predict_proba(&self, x: &Compressed, n_classes: usize) -> Vec<f32> {
        let dec = self.decision(x);
        let mut out = Vec::with_capacity(dec.len() * n_classes);
        for d in &dec {
            if n_classes == 2 {
                let p1 = 1.0 / (1.0 + (-d[0]).exp());
                out.push((1.0 - p1) as f32);
                out.push(p1 as f32);
            } else {
                let p: Vec<f64> = d.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
                let tot: f64 = p.iter().sum();
                out.extend(p.iter().map(|v| (v / tot) as f32));
            }
        }
        out
    }
}

/// Stratified fold assignment (cells of each class dealt round-robin after a seeded shuffle).
pub fn stratified_folds(y: &[u32], n_classes: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut fold = vec![0usize; y.len()];
    let mut start = 0;
    for c in 0..n_classes {
        let mut members: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c as u32).collect();
        rng.shuffle(&mut members);
        for (r, &i) in members.iter().enumerate() {
            fold[i] = (start + r) % k;
        }
        start += members.len();
    }
    fold
}

/// One point of the cross-validation curve.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CvPoint {
    pub c: f64,
    pub mean_accuracy: f64,
    pub fold_accuracy: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
/// k-fold cross-validated accuracy for each C of `grid` (folds run in parallel). Every fit
/// starts from zero, as scikit-learn's: liblinear's stopping rule is relative to the first
/// iterate's violation, so a warm start from the previous C's solution made it far stricter and
/// one fold/C pair could run to the iteration limits (the default grid on 9,523 kang2018_pbmc
/// cells did not finish in 26 minutes).
pub fn cross_validate(
    d: &Design,
    x: &Compressed,
    y: &[u32],
    n_classes: usize,
    grid: &[f64],
    folds: usize,
    opts: &SolverOptions,
    on_fit: &(dyn Fn() + Sync),
) -> Vec<CvPoint> {
    let fold_of = stratified_folds(y, n_classes, folds, opts.seed);
    let mut grid_sorted = grid.to_vec();
    grid_sorted.sort_by(|a, b| a.total_cmp(b));
    let per_fold: Vec<Vec<f64>> = (0..folds)
        .into_par_iter()
        .map(|f| {
            let mask: Vec<bool> = fold_of.iter().map(|&g| g != f).collect();
            let test: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] == f).collect();
            let xt = x.select_major(&test, true);
            grid_sorted
                .iter()
                .map(|&c| {
                    let m = fit(d, y, n_classes, &mask, c, None, opts);
                    let (pred, _) = m.predict(&xt, n_classes);
                    let acc = test.iter().zip(&pred).filter(|(&i, &p)| y[i] == p).count() as f64
                        / test.len().max(1) as f64;
                    on_fit();
                    acc
                })
                .collect()
        })
        .collect();
    grid_sorted
        .iter()
        .enumerate()
        .map(|(gi, &c)| {
            let fa: Vec<f64> = per_fold.iter().map(|f| f[gi]).collect();
            CvPoint {
                c,
                mean_accuracy: fa.iter().sum::<f64>() / fa.len() as f64,
                fold_accuracy: fa,
            }
        })
        .collect()
}
