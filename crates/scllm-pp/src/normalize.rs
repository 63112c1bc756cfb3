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
    let mut out = x.clone();
    let (counts, target) = normalize_total_in_place(&mut out, target_sum);
    let t32 = target as f32;
    let factors = counts.iter().map(|&c| c / t32).collect();
    (out, factors, target)
}

/// [`normalize_total`] in place (values become float32): returns each cell's total before and
/// the target used.
pub fn normalize_total_in_place(x: &mut Compressed, target_sum: Option<f64>) -> (Vec<f32>, f64) {
    if !matches!(x.data, Values::F32(_)) {
        x.data = Values::F32(x.data.to_f32());
    }
    let Values::F32(data) = &mut x.data else {
        unreachable!("converted above")
    };
    normalize_rows(data, &x.indptr, target_sum)
}

/// [`normalize_total_in_place`] on a CSR value array and its row offsets (a caller's buffer):
/// returns each row's total before and the target used.
pub fn normalize_rows(
    data: &mut [f32],
    indptr: &[u64],
    target_sum: Option<f64>,
) -> (Vec<f32>, f64) {
    let mut rows = row_slices_mut(data, indptr);
    // summed in f64, stored as f32 (scanpy's numba kernel does the same)
    let counts: Vec<f32> = rows
        .par_iter()
        .map(|r| r.iter().map(|&v| v as f64).sum::<f64>() as f32)
        .collect();
    let target = target_sum.unwrap_or_else(|| median_f32(&counts));
    // numpy: float32 array / python float stays float32
    let t32 = target as f32;
    rows.par_iter_mut()
        .zip(counts.par_iter())
        .for_each(|(row, &c)| {
            let d = divisor(c / t32);
            for v in row.iter_mut() {
                *v /= d;
            }
        });
    (counts, target)
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
/// by `ln(base)` when a base is given, in float32 like numpy (within 1e-6 relative: the last
/// bit may differ, as it does between numpy builds).
pub fn log1p_values(v: &mut [f32], base: Option<f64>) {
    let l = base.map(|b| b.ln() as f32);
    v.par_chunks_mut(1 << 14).for_each(|c| log1p_slice(c, l));
}

/// [`log1p_values`] on one thread (`l`: `ln(base)`). Every value goes through the same 8-lane
/// kernel (the tail padded), so a value's result never depends on where it sits.
pub(crate) fn log1p_slice(v: &mut [f32], l: Option<f32>) {
    let run = |x: [f32; 8]| -> [f32; 8] {
        let y = log1p_x8(wide::f32x8::from(x));
        match l {
            Some(l) => (y / wide::f32x8::splat(l)).to_array(),
            None => y.to_array(),
        }
    };
    let mut lanes = v.chunks_exact_mut(8);
    for x in &mut lanes {
        let y = run(<[f32; 8]>::try_from(&*x).expect("8 lanes"));
        x.copy_from_slice(&y);
    }
    let tail = lanes.into_remainder();
    if !tail.is_empty() {
        let mut x = [0f32; 8];
        x[..tail.len()].copy_from_slice(tail);
        let n = tail.len();
        tail.copy_from_slice(&run(x)[..n]);
    }
}

/// `ln(1 + x)` of 8 values: `ln(u) · x / (u − 1)` with `u = 1 + x` rounded, which cancels
/// the rounding of `u` (Goldberg 1991, "What every computer scientist should know about
/// floating-point arithmetic", theorem 4); `x` itself where `u` rounds to 1, `u` where it is
/// infinite or NaN.
#[inline(always)]
fn log1p_x8(x: wide::f32x8) -> wide::f32x8 {
    use wide::f32x8;
    let one = f32x8::ONE;
    let u = x + one;
    let r = u.ln() * (x / (u - one));
    let r = u.simd_eq(one).select(x, r);
    (!u.is_finite()).select(u, r)
}

/// Borrow the f32 values of a CSR matrix produced by this crate.
pub fn values_f32(c: &Compressed) -> &[f32] {
    f32_data(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorised_log1p_is_within_three_ulp_of_the_exact_value() {
        // counts-like values, their normalised forms, tiny and huge ones, the special cases
        let mut v: Vec<f32> = (0..200_000).map(|i| i as f32 * 0.37).collect();
        v.extend((0..20_000).map(|i| 1e-9 * 1.7f32.powi(i % 60) * (1.0 + (i as f32) * 1e-4)));
        v.extend([
            0.0,
            -0.0,
            1e-30,
            5e-8,
            6e-8,
            1.0,
            f32::MAX,
            -0.5,
            -0.999_999,
        ]);
        let mut got = v.clone();
        log1p_values(&mut got, None);
        let mut worst = 0.0f64;
        for (&x, &y) in v.iter().zip(&got) {
            let exact = (x as f64).ln_1p();
            let ulp = (exact.abs() as f32).max(f32::MIN_POSITIVE);
            let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
            worst = worst.max((y as f64 - exact).abs() / ulp);
        }
        // measured 2.2 ulp (Cephes logf ~1 ulp, the correction's rounding another): 2.6e-7
        // relative, inside the 1e-6 the scanpy parity tests allow
        assert!(worst <= 3.0, "worst error {worst} ulp");
        let mut special = vec![f32::INFINITY, f32::NAN, -1.0, -2.0];
        log1p_values(&mut special, None);
        assert_eq!(special[0], f32::INFINITY);
        assert!(special[1].is_nan());
        assert_eq!(special[2], f32::NEG_INFINITY);
        assert!(special[3].is_nan());
        // with a base: divided by ln(base), as numpy's log1p(x) / log(base)
        let mut b = vec![3.0f32; 9];
        log1p_values(&mut b, Some(2.0));
        let want = 4f32.ln() / 2f64.ln() as f32;
        assert!(b
            .iter()
            .all(|&y| (y - want).abs() <= 2.0 * f32::EPSILON * want));
    }

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
