//! `normalize_total` and `log1p`, with scanpy's float32 arithmetic so results agree bit for bit.

use rayon::prelude::*;
use scllm_io::{Compressed, Matrix, Values};

/// The matrix as CSR float32 (scanpy casts integer counts to float32 the same way).
pub fn to_csr_f32(m: &Matrix) -> Compressed {
    let mut c = m.to_csr();
    if !matches!(c.data, Values::F32(_)) {
        c.data = Values::F32(c.data.to_f32());
    }
    c
}

fn f32_data(c: &Compressed) -> &[f32] {
    match &c.data {
        Values::F32(v) => v,
        _ => panic!("internal: expected float32 CSR (call to_csr_f32 first)"),
    }
}

/// Total counts per cell, summed in f64 and stored as f32 (scanpy's numba kernel does the same).
pub fn counts_per_cell(x: &Compressed) -> Vec<f32> {
    (0..x.nrows)
        .map(|i| x.range(i).map(|k| x.data.get_f64(k)).sum::<f64>() as f32)
        .collect()
}

/// What a cell with size factor `f` (`total / target`) is divided by: zero-total cells are
/// divided by 1 (no division by zero), so they stay zero.
pub(crate) fn divisor(f: f32) -> f32 {
    if f == 0.0 {
        1.0
    } else {
        f
    }
}

/// Scale each cell to `target_sum` total counts (default: the median of cell totals, as scanpy
/// does for CSR input). Cells with zero total stay zero. Returns the normalised matrix and the
/// per-cell factors (`counts / target_sum`).
pub fn normalize_total(x: &Compressed, target_sum: Option<f64>) -> (Compressed, Vec<f32>, f64) {
    let counts = counts_per_cell(x);
    let target = target_sum.unwrap_or_else(|| median_f32(&counts));
    // numpy: float32 array / python float stays float32
    let t32 = target as f32;
    let factors: Vec<f32> = counts.iter().map(|&c| c / t32).collect();
    let mut out = to_csr_f32(&Matrix::Csr(x.clone()));
    let Values::F32(data) = &mut out.data else {
        unreachable!()
    };
    let indptr = &out.indptr;
    // per-row slices, processed in parallel
    row_slices_mut(data, indptr)
        .into_par_iter()
        .zip(factors.par_iter())
        .for_each(|(row, &f)| {
            let d = divisor(f);
            for v in row.iter_mut() {
                *v /= d;
            }
        });
    (out, factors, target)
}

/// The rows of a CSR value array as disjoint mutable slices, for per-row work in parallel.
pub fn row_slices_mut<'a>(data: &'a mut [f32], indptr: &[u64]) -> Vec<&'a mut [f32]> {
    let mut rows = Vec::with_capacity(indptr.len().saturating_sub(1));
    let mut rest = data;
    for w in indptr.windows(2) {
        let (a, b) = rest.split_at_mut((w[1] - w[0]) as usize);
        rows.push(a);
        rest = b;
    }
    rows
}

fn median_f32(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s: Vec<f32> = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2] as f64
    } else {
        // numpy's median of float32 averages in float32
        ((s[n / 2 - 1] + s[n / 2]) / 2.0) as f64
    }
}

/// Natural-log `log1p` of every stored value (zeros stay zero), in float32 like numpy.
pub fn log1p(x: &Compressed) -> Compressed {
    let mut out = to_csr_f32(&Matrix::Csr(x.clone()));
    if let Values::F32(d) = &mut out.data {
        log1p_values(d, None);
    }
    out
}

/// `log1p` then division by `ln(base)` (scanpy's `base=` argument).
pub fn log1p_base(x: &Compressed, base: f64) -> Compressed {
    let mut out = to_csr_f32(&Matrix::Csr(x.clone()));
    if let Values::F32(d) = &mut out.data {
        log1p_values(d, Some(base));
    }
    out
}

/// `log1p` of values in place (a CSR value array or a dense matrix: zeros stay zero), divided
/// by `ln(base)` when a base is given, in float32 like numpy.
pub fn log1p_values(v: &mut [f32], base: Option<f64>) {
    v.par_iter_mut().for_each(|x| *x = x.ln_1p());
    if let Some(b) = base {
        let l = b.ln() as f32;
        v.par_iter_mut().for_each(|x| *x /= l);
    }
}

/// Borrow the f32 values of a CSR matrix produced by this crate.
pub fn values_f32(c: &Compressed) -> &[f32] {
    f32_data(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Compressed {
        Compressed {
            nrows: 3,
            ncols: 3,
            indptr: vec![0, 2, 2, 5],
            indices: vec![0, 2, 0, 1, 2],
            data: Values::I32(vec![1, 3, 2, 2, 4]),
        }
    }

    #[test]
    fn normalize_total_scales_rows_and_keeps_empty_cells_zero() {
        let (n, f, t) = normalize_total(&m(), Some(1e4));
        assert_eq!(t, 1e4);
        assert_eq!(f, vec![4.0 / 1e4, 0.0, 8.0 / 1e4]);
        let d = values_f32(&n);
        assert_eq!(
            d,
            &[
                1.0 / (4.0f32 / 1e4),
                3.0 / (4.0f32 / 1e4),
                2500.0,
                2500.0,
                5000.0
            ]
        );
        assert_eq!(n.range(1).len(), 0);
        // default target: median of totals (4, 0, 8) = 4
        let (_, _, t) = normalize_total(&m(), None);
        assert_eq!(t, 4.0);
    }

    #[test]
    fn log1p_is_natural_log() {
        let l = log1p(&m());
        assert!((values_f32(&l)[0] - 2f32.ln()).abs() < 1e-7);
        let l2 = log1p_base(&m(), 2.0);
        assert!((values_f32(&l2)[0] - 1.0).abs() < 1e-6);
    }
}
