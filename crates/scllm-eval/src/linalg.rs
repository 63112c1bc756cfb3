//! The little dense linear algebra the baselines need, in plain Rust on top of `matrixmultiply`
//! (already in the dependency graph through ndarray): `A·Bᵀ` products, a symmetric eigensolver
//! (cyclic Jacobi) and a randomized PCA (Halko et al. 2011, as scikit-learn's
//! `randomized_svd`) of a sparse matrix centred on the fly.

use rayon::prelude::*;
use scllm_io::Compressed;

use crate::Rng;

/// `c (m×n) = a (m×k) · b (n×k)ᵀ`, all row-major, f64.
pub fn dgemm_nt(a: &[f64], b: &[f64], m: usize, n: usize, k: usize, c: &mut [f64]) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            1,
            k as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `c (m×n) = a (m×k) · b (n×k)ᵀ`, all row-major, f32.
pub fn sgemm_nt(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            1,
            k as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Eigen-decomposition of the symmetric `n×n` row-major matrix `a` by cyclic Jacobi rotations.
/// Returns eigenvalues in descending order and the eigenvectors as columns of a row-major matrix.
pub fn sym_eig(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum::<f64>();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let app = a[p * n + p];
                let aqq = a[q * n + q];
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let vals = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vecs = vec![0.0; n * n];
    for (newc, &oldc) in order.iter().enumerate() {
        for r in 0..n {
            vecs[r * n + newc] = v[r * n + oldc];
        }
    }
    (vals, vecs)
}

/// Orthonormalise the columns of the row-major `n×l` matrix `y` in place (modified Gram–Schmidt,
/// twice for stability). Columns that vanish are left as zeros.
fn orthonormalize(y: &mut [f64], n: usize, l: usize) {
    let mut cols: Vec<Vec<f64>> = (0..l)
        .map(|c| (0..n).map(|r| y[r * l + c]).collect())
        .collect();
    for _ in 0..2 {
        for c in 0..l {
            let (done, rest) = cols.split_at_mut(c);
            let col = &mut rest[0];
            for q in done.iter() {
                let d: f64 = q.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
                col.iter_mut().zip(q).for_each(|(x, qv)| *x -= d * qv);
            }
            let nrm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            if nrm > 1e-300 {
                col.iter_mut().for_each(|v| *v /= nrm);
            } else {
                col.iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }
    for (c, col) in cols.iter().enumerate() {
        for r in 0..n {
            y[r * l + c] = col[r];
        }
    }
}

/// `(X - 1μᵀ) · W` for CSR `x` (n×g, f32 values) and row-major `w` (g×l).
fn centered_mul(x: &Compressed, vals: &[f32], mean: &[f64], w: &[f64], l: usize) -> Vec<f64> {
    let mut shift = vec![0.0; l];
    for (g, &m) in mean.iter().enumerate() {
        for c in 0..l {
            shift[c] += m * w[g * l + c];
        }
    }
    let mut out = vec![0.0; x.nrows * l];
    out.par_chunks_mut(l).enumerate().for_each(|(i, row)| {
        row.copy_from_slice(&shift);
        row.iter_mut().for_each(|v| *v = -*v);
        for k in x.range(i) {
            let g = x.indices[k] as usize;
            let v = vals[k] as f64;
            let wr = &w[g * l..g * l + l];
            for c in 0..l {
                row[c] += v * wr[c];
            }
        }
    });
    out
}

/// `(X - 1μᵀ)ᵀ · Y` given `xt`, the CSR of Xᵀ (g×n), and row-major `y` (n×l).
fn centered_tmul(xt: &Compressed, vals: &[f32], mean: &[f64], y: &[f64], l: usize) -> Vec<f64> {
    let n = xt.ncols;
    let mut colsum = vec![0.0; l];
    for i in 0..n {
        for c in 0..l {
            colsum[c] += y[i * l + c];
        }
    }
    let mut out = vec![0.0; xt.nrows * l];
    out.par_chunks_mut(l).enumerate().for_each(|(g, row)| {
        for c in 0..l {
            row[c] = -mean[g] * colsum[c];
        }
        for k in xt.range(g) {
            let i = xt.indices[k] as usize;
            let v = vals[k] as f64;
            let yr = &y[i * l..i * l + l];
            for c in 0..l {
                row[c] += v * yr[c];
            }
        }
    });
    out
}

/// The CSR storage of `xᵀ` (genes × cells) from CSR `x`: the CSC storage of `x`.
pub fn transpose_csr(x: &Compressed) -> Compressed {
    let c = scllm_io::Matrix::Csr(x.clone()).to_csc();
    Compressed {
        nrows: x.ncols,
        ncols: x.nrows,
        indptr: c.indptr,
        indices: c.indices,
        data: c.data,
    }
}

/// A fitted PCA: `components` is row-major g×k (genes × PCs).
#[derive(Clone, Debug)]
pub struct Pca {
    pub mean: Vec<f64>,
    pub components: Vec<f64>,
    pub n_genes: usize,
    pub n_comps: usize,
    pub explained_variance: Vec<f64>,
}

fn f32_vals(x: &Compressed) -> Vec<f32> {
    x.data.to_f32()
}

impl Pca {
    /// Randomized PCA of CSR `x` (cells × genes), centred, `k` components, `n_iter` power
    /// iterations (scikit-learn uses 7 for few components; 4 is plenty for label transfer).
    pub fn fit(x: &Compressed, k: usize, n_iter: usize, seed: u64) -> Pca {
        let (n, g) = (x.nrows, x.ncols);
        let k = k.min(n.min(g)).max(1);
        let l = (k + 10).min(n.min(g)).max(k);
        let vals = f32_vals(x);
        let mut mean = vec![0.0; g];
        for (kk, &j) in x.indices.iter().enumerate() {
            mean[j as usize] += vals[kk] as f64;
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let xt = transpose_csr(x);
        let xt_vals = f32_vals(&xt);
        let mut rng = Rng::new(seed);
        let omega: Vec<f64> = (0..g * l).map(|_| rng.normal()).collect();
        let mut y = centered_mul(x, &vals, &mean, &omega, l);
        orthonormalize(&mut y, n, l);
        for _ in 0..n_iter {
            let mut z = centered_tmul(&xt, &xt_vals, &mean, &y, l);
            orthonormalize(&mut z, g, l);
            y = centered_mul(x, &vals, &mean, &z, l);
            orthonormalize(&mut y, n, l);
        }
        // B = Qᵀ A, held as Bᵀ (g×l)
        let bt = centered_tmul(&xt, &xt_vals, &mean, &y, l);
        // B Bᵀ (l×l) = btᵀ bt
        let mut bbt = vec![0.0; l * l];
        for gi in 0..g {
            let r = &bt[gi * l..gi * l + l];
            for a in 0..l {
                for b in a..l {
                    bbt[a * l + b] += r[a] * r[b];
                }
            }
        }
        for a in 0..l {
            for b in 0..a {
                bbt[a * l + b] = bbt[b * l + a];
            }
        }
        let (lam, u) = sym_eig(&bbt, l);
        let mut comps = vec![0.0; g * k];
        for c in 0..k {
            let s = lam[c].max(0.0).sqrt();
            if s == 0.0 {
                continue;
            }
            for gi in 0..g {
                let mut v = 0.0;
                for a in 0..l {
                    v += bt[gi * l + a] * u[a * l + c];
                }
                comps[gi * k + c] = v / s;
            }
        }
        Pca {
            mean,
            components: comps,
            n_genes: g,
            n_comps: k,
            explained_variance: lam[..k].iter().map(|v| v / (n.max(2) - 1) as f64).collect(),
        }
    }

    /// Coordinates of the cells of CSR `x` (same genes as the fit) on the components, f32 row-major.
    pub fn transform(&self, x: &Compressed) -> Vec<f32> {
        let vals = f32_vals(x);
        centered_mul(x, &vals, &self.mean, &self.components, self.n_comps)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_recovers_known_eigenvalues() {
        // [[2,1],[1,2]] has eigenvalues 3 and 1
        let (vals, vecs) = sym_eig(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12);
        // first eigenvector is (1,1)/sqrt2 up to sign
        assert!((vecs[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((vecs[0] - vecs[2]).abs() < 1e-12);
    }

    #[test]
    fn pca_of_rank_one_data_finds_the_direction() {
        // rows = t * (1, 2, 0) + small offsets; first PC ∝ (1,2,0)
        let mut data = Vec::new();
        let mut indices = Vec::new();
        let mut indptr = vec![0u64];
        for i in 0..50 {
            let t = i as f32 - 25.0;
            data.extend([t, 2.0 * t]);
            indices.extend([0u32, 1]);
            indptr.push(indices.len() as u64);
        }
        let x = Compressed {
            nrows: 50,
            ncols: 3,
            indptr,
            indices,
            data: scllm_io::Values::F32(data),
        };
        let p = Pca::fit(&x, 1, 2, 0);
        let c = &p.components;
        let norm = (1.0f64 + 4.0).sqrt();
        assert!((c[0].abs() - 1.0 / norm).abs() < 1e-9, "{c:?}");
        assert!((c[1].abs() - 2.0 / norm).abs() < 1e-9, "{c:?}");
        assert!(c[2].abs() < 1e-9);
    }
}
