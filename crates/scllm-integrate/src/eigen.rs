//! The largest-magnitude eigenpairs of a sparse symmetric matrix, which scib-metrics' kBET gets
//! from ARPACK (`scipy.sparse.linalg.eigsh(which="LM")`) for its diffusion maps.
//!
//! Lanczos with full re-orthogonalisation (twice, classical Gram-Schmidt), a fresh orthogonal
//! start vector on breakdown (a graph of several components), then the implicit-shift QL
//! algorithm on the tridiagonal matrix. With as many steps as rows this is an exact
//! eigendecomposition (what the fixtures test); above 3k + 100 rows it stops at 3k + 100 steps,
//! where the largest eigenvalues have converged and the last of the k may still move in their
//! fourth or fifth digit (ARPACK restarts until machine precision).
//!
//! Why not a crate: ARPACK bindings need Fortran and LAPACK; `faer`/`nalgebra` decompose dense
//! matrices only, O(n³) for a 10k-cell label; none of the pure-Rust Lanczos crates is maintained.

use crate::graph::Graph;

/// `y = A x` for the symmetric CSR `a` with f64 weights `w`.
fn matvec(a: &Graph, w: &[f64], x: &[f64], y: &mut [f64]) {
    for (i, yi) in y.iter_mut().enumerate() {
        let mut s = 0.0;
        for p in a.indptr[i]..a.indptr[i + 1] {
            s += w[p] * x[a.indices[p] as usize];
        }
        *yi = s;
    }
}

/// A reproducible start vector (splitmix64), unit length.
fn start_vector(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let nrm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= nrm);
    v
}

/// Removes from `v` its components along the rows of `basis` (twice, for stability).
fn orthogonalise(v: &mut [f64], basis: &[Vec<f64>]) {
    for _ in 0..2 {
        for q in basis {
            let c: f64 = q.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(q).for_each(|(x, qi)| *x -= c * qi);
        }
    }
}

/// Eigenvalues and eigenvectors of the symmetric tridiagonal matrix (diagonal `d`, off-diagonal
/// `e`, `e[i]` between rows i and i+1) by the implicit-shift QL algorithm (Bowdler, Martin,
/// Reinsch & Wilkinson 1968, as EISPACK's tql2). Returns values and row-major `m × m` vectors
/// (column j is the vector of value j).
fn tridiagonal_eig(d: &[f64], e: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let m = d.len();
    let mut d = d.to_vec();
    let mut e: Vec<f64> = e.iter().copied().chain(std::iter::once(0.0)).collect();
    e.truncate(m);
    let mut z = vec![0.0; m * m];
    for i in 0..m {
        z[i * m + i] = 1.0;
    }
    for l in 0..m {
        let mut iter = 0;
        loop {
            let mut mm = l;
            while mm + 1 < m {
                let dd = d[mm].abs() + d[mm + 1].abs();
                if e[mm].abs() <= f64::EPSILON * dd {
                    break;
                }
                mm += 1;
            }
            if mm == l {
                break;
            }
            iter += 1;
            if iter > 60 {
                break;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[mm] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut i = mm;
            let mut early = false;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[mm] = 0.0;
                    early = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                for k in 0..m {
                    let zk1 = z[k * m + i + 1];
                    let zk = z[k * m + i];
                    z[k * m + i + 1] = s * zk + c * zk1;
                    z[k * m + i] = c * zk - s * zk1;
                }
            }
            if early {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[mm] = 0.0;
        }
    }
    (d, z)
}

/// The `k` eigenpairs of largest magnitude of the symmetric matrix `a` (weights `w`, one per
/// stored entry): values in decreasing order and the vectors as row-major `n × k` (column j is
/// the vector of value j).
pub fn largest_magnitude(a: &Graph, w: &[f64], k: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let n = a.n;
    let k = k.min(n);
    let steps = n.min(3 * k + 100);
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(steps);
    let mut alpha = Vec::with_capacity(steps);
    let mut beta: Vec<f64> = Vec::with_capacity(steps);
    let mut q = start_vector(n, seed);
    let mut av = vec![0.0; n];
    for j in 0..steps {
        matvec(a, w, &q, &mut av);
        let aj: f64 = q.iter().zip(&av).map(|(x, y)| x * y).sum();
        alpha.push(aj);
        basis.push(q);
        if j + 1 == steps {
            break;
        }
        let mut r = av.clone();
        orthogonalise(&mut r, &basis);
        let mut b = r.iter().map(|x| x * x).sum::<f64>().sqrt();
        if b <= 1e-10 {
            // an invariant subspace is exhausted: go on in a new direction
            r = start_vector(n, seed.wrapping_add(j as u64 + 1));
            orthogonalise(&mut r, &basis);
            let nr = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.iter_mut().for_each(|x| *x /= nr);
            b = 0.0;
        } else {
            r.iter_mut().for_each(|x| *x /= b);
        }
        beta.push(b);
        q = r;
    }
    let m = alpha.len();
    let (theta, s) = tridiagonal_eig(&alpha, &beta);
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&x, &y| theta[y].abs().total_cmp(&theta[x].abs()));
    order.truncate(k);
    order.sort_by(|&x, &y| theta[y].total_cmp(&theta[x]));
    let values: Vec<f64> = order.iter().map(|&j| theta[j]).collect();
    let mut vectors = vec![0.0; n * k];
    for (t, qt) in basis.iter().enumerate() {
        for (c, &j) in order.iter().enumerate() {
            let coef = s[t * m + j];
            if coef != 0.0 {
                for i in 0..n {
                    vectors[i * k + c] += coef * qt[i];
                }
            }
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path graph's adjacency has eigenvalues 2cos(πj/(n+1)); a second, separate path makes the
    /// start vector run out (breakdown) and every value appear twice.
    #[test]
    fn path_graph_spectrum() {
        let n = 12;
        let mut t = Vec::new();
        for part in 0..2u32 {
            let o = part * n as u32;
            for i in 0..n as u32 {
                if i > 0 {
                    t.push((o + i, o + i - 1, 1.0f32));
                }
                if i + 1 < n as u32 {
                    t.push((o + i, o + i + 1, 1.0f32));
                }
            }
        }
        let g = Graph::from_sorted_triples(2 * n, &t);
        let w: Vec<f64> = g.weights.iter().map(|&v| v as f64).collect();
        let (vals, vecs) = largest_magnitude(&g, &w, 2 * n, 7);
        let mut want: Vec<f64> = (1..=n)
            .flat_map(|j| {
                let v = 2.0 * (std::f64::consts::PI * j as f64 / (n as f64 + 1.0)).cos();
                [v, v]
            })
            .collect();
        want.sort_by(|a, b| b.total_cmp(a));
        for (a, b) in vals.iter().zip(&want) {
            assert!((a - b).abs() < 1e-9, "{vals:?}");
        }
        // A v = λ v for the top pair
        let kk = 2 * n;
        let v0: Vec<f64> = (0..2 * n).map(|i| vecs[i * kk]).collect();
        let mut av = vec![0.0; 2 * n];
        matvec(&g, &w, &v0, &mut av);
        for i in 0..2 * n {
            assert!((av[i] - vals[0] * v0[i]).abs() < 1e-9);
        }
    }
}
