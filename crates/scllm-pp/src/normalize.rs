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
    let data = f32_values_mut(&mut x.data);
    normalize_rows(data, &x.indptr, target_sum)
}

/// A matrix's values as float32 (converted in place when stored otherwise).
fn f32_values_mut(values: &mut Values) -> &mut [f32] {
    if !matches!(values, Values::F32(_)) {
        *values = Values::F32(values.to_f32());
    }
    let Values::F32(data) = values else {
        unreachable!("converted above")
    };
    data
}

/// [`normalize_total_in_place`] with scanpy's `exclude_highly_expressed` at `max_fraction`
/// ([`normalize_rows_excluding`]): each cell's total over the genes kept and the target used.
pub fn normalize_total_in_place_excluding(
    x: &mut Compressed,
    target_sum: Option<f64>,
    max_fraction: f64,
) -> crate::Result<(Vec<f32>, f64)> {
    let data = f32_values_mut(&mut x.data);
    let (totals, target, _) = normalize_rows_excluding(
        data,
        &x.indptr,
        &x.indices,
        x.ncols,
        max_fraction,
        target_sum,
    )?;
    Ok((totals, target))
}

/// [`normalize_total_in_place`] on a CSR value array and its row offsets (a caller's buffer):
/// returns each row's total before and the target used.
pub fn normalize_rows(
    data: &mut [f32],
    indptr: &[u64],
    target_sum: Option<f64>,
) -> (Vec<f32>, f64) {
    let mut rows = row_slices_mut(data, indptr);
    match target_sum {
        // each block of rows summed and divided while it is in cache
        Some(t) => {
            let mut counts = vec![0f32; rows.len()];
            rows.par_chunks_mut(ROWS_PER_TASK)
                .zip(counts.par_chunks_mut(ROWS_PER_TASK))
                .for_each(|(r, c)| {
                    row_totals(r, c);
                    divide(r, c, t as f32);
                });
            (counts, t)
        }
        None => {
            let counts = all_row_totals(&rows);
            let t = median_f32(&counts);
            divide_all(&mut rows, &counts, t);
            (counts, t)
        }
    }
}

/// Rows per parallel task of the row-wise passes below.
const ROWS_PER_TASK: usize = 256;

/// Every row's total ([`row_totals`]), blocks of rows in parallel.
fn all_row_totals(rows: &[&mut [f32]]) -> Vec<f32> {
    let mut totals = vec![0f32; rows.len()];
    rows.par_chunks(ROWS_PER_TASK)
        .zip(totals.par_chunks_mut(ROWS_PER_TASK))
        .for_each(|(r, c)| row_totals(r, c));
    totals
}

/// Every row divided by its total over `target` ([`divide`]), blocks of rows in parallel.
fn divide_all(rows: &mut [&mut [f32]], totals: &[f32], target: f64) {
    rows.par_chunks_mut(ROWS_PER_TASK)
        .zip(totals.par_chunks(ROWS_PER_TASK))
        .for_each(|(r, c)| divide(r, c, target as f32));
}

/// Each row divided by its divisor (numpy: a float32 array / a Python float stays float32).
/// Division is exact in IEEE arithmetic at any vector width, so the AVX-512 build of the same
/// loop (chosen at run time) gives the same bits.
fn divide(rows: &mut [&mut [f32]], counts: &[f32], t32: f32) {
    #[inline(always)]
    fn each(rows: &mut [&mut [f32]], counts: &[f32], t32: f32) {
        for (row, &c) in rows.iter_mut().zip(counts) {
            let d = divisor(c / t32);
            for v in row.iter_mut() {
                *v /= d;
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f")]
        fn avx512(rows: &mut [&mut [f32]], counts: &[f32], t32: f32) {
            each(rows, counts, t32)
        }
        // SAFETY: the CPU has AVX-512F (checked just above)
        unsafe { avx512(rows, counts, t32) };
        return;
    }
    each(rows, counts, t32)
}

/// Each row's total, summed in f64 in the row's order and stored as f32 (scanpy's numba kernel
/// does the same). Four rows at a time, in step: four independent chains of additions where
/// one row alone would wait on each addition (same sums, bit for bit).
fn row_totals(rows: &[&mut [f32]], out: &mut [f32]) {
    let mut groups = rows.chunks_exact(4);
    let mut outs = out.chunks_exact_mut(4);
    for (g, o) in (&mut groups).zip(&mut outs) {
        let n = g.iter().map(|r| r.len()).min().unwrap_or(0);
        let mut s = [0f64; 4];
        for k in 0..n {
            for (acc, r) in s.iter_mut().zip(g) {
                *acc += r[k] as f64;
            }
        }
        for ((acc, r), o) in s.iter_mut().zip(g).zip(o.iter_mut()) {
            *acc = r[n..].iter().fold(*acc, |a, &v| a + v as f64);
            *o = *acc as f32;
        }
    }
    for (r, o) in groups.remainder().iter().zip(outs.into_remainder()) {
        *o = r.iter().fold(0f64, |a, &v| a + v as f64) as f32;
    }
}

/// [`normalize_rows`] with scanpy's `exclude_highly_expressed`: a gene holding more than
/// `max_fraction` of some cell's total is left out of every cell's total (scanpy's numba
/// `_normalize_csr`: the value, float32, against `max_fraction` times the float32 total in
/// float64), and the cells are scaled by the totals of the other genes. Returns those totals,
/// the target, and which genes were left out. Column indices outside `0..ncols` are refused.
pub fn normalize_rows_excluding(
    data: &mut [f32],
    indptr: &[u64],
    indices: &[u32],
    ncols: usize,
    max_fraction: f64,
    target_sum: Option<f64>,
) -> crate::Result<(Vec<f32>, f64, Vec<bool>)> {
    if indices.len() != data.len() || indices.iter().any(|&j| j as usize >= ncols) {
        return Err(crate::PpError::Invalid(format!(
            "normalize_total: {} column indices for {} values, each in 0..{ncols} needed",
            indices.len(),
            data.len()
        )));
    }
    let mut rows = row_slices_mut(data, indptr);
    let mut totals = all_row_totals(&rows);
    let row_indices = |i: usize| &indices[indptr[i] as usize..indptr[i + 1] as usize];
    let excluded: Vec<bool> = rows
        .par_iter()
        .enumerate()
        .fold(
            || vec![false; ncols],
            |mut hit, (i, row)| {
                let cut = max_fraction * totals[i] as f64;
                for (&v, &j) in row.iter().zip(row_indices(i)) {
                    if v as f64 > cut {
                        hit[j as usize] = true;
                    }
                }
                hit
            },
        )
        .reduce(
            || vec![false; ncols],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a |= b);
                a
            },
        );
    totals
        .par_iter_mut()
        .zip(rows.par_iter())
        .enumerate()
        .for_each(|(i, (t, row))| {
            let kept = row.iter().zip(row_indices(i));
            *t = kept
                .filter(|&(_, &j)| !excluded[j as usize])
                .fold(0f64, |a, (&v, _)| a + v as f64) as f32;
        });
    let target = target_sum.unwrap_or_else(|| median_f32(&totals));
    divide_all(&mut rows, &totals, target);
    Ok((totals, target, excluded))
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

/// [`log1p_values`] on one thread (`l`: `ln(base)`). Each value goes through the same scalar
/// IEEE operations (no fused multiply-add), which the compiler runs 4, 8 or 16 at a time: the
/// build for the CPU's widest vectors is chosen at run time, and every build gives the same
/// bits, so a value's result never depends on the machine's vector width or where it sits.
pub(crate) fn log1p_slice(v: &mut [f32], l: Option<f32>) {
    log1p_slice_width(v, l, log1p_width())
}

/// [`log1p_slice`] by the build of the given vector width (16 and 8 only where the CPU has
/// AVX-512F / AVX2: see [`log1p_width`]).
fn log1p_slice_width(v: &mut [f32], l: Option<f32>, width: usize) {
    #[inline(always)]
    fn each(v: &mut [f32], l: Option<f32>) {
        match l {
            Some(l) => v.iter_mut().for_each(|x| *x = log1p_one(*x) / l),
            None => v.iter_mut().for_each(|x| *x = log1p_one(*x)),
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512(v: &mut [f32], l: Option<f32>) {
            each(v, l)
        }
        #[target_feature(enable = "avx2")]
        fn avx2(v: &mut [f32], l: Option<f32>) {
            each(v, l)
        }
        match width {
            16 if std::is_x86_feature_detected!("avx512f") => {
                // SAFETY: the CPU has AVX-512F (checked in this arm's guard)
                return unsafe { avx512(v, l) };
            }
            8 if std::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU has AVX2 (checked in this arm's guard)
                return unsafe { avx2(v, l) };
            }
            _ => {}
        }
    }
    let _ = width;
    each(v, l)
}

/// The widest log1p build this CPU runs: 16 (AVX-512F), 8 (AVX2), else 4 (the baseline).
fn log1p_width() -> usize {
    static WIDTH: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WIDTH.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            return 16;
        } else if std::is_x86_feature_detected!("avx2") {
            return 8;
        }
        4
    })
}

/// `ln(1 + x)`: `ln(u) · x / (u − 1)` with `u = 1 + x` rounded, which cancels the rounding of
/// `u` (Goldberg 1991, "What every computer scientist should know about floating-point
/// arithmetic", theorem 4); `x` itself where `u` rounds to 1, `u` where it is infinite or NaN.
#[inline(always)]
fn log1p_one(x: f32) -> f32 {
    let u = x + 1.0;
    let r = ln_one(u) * (x / (u - 1.0));
    let r = if u == 1.0 { x } else { r };
    if u.is_finite() {
        r
    } else {
        u
    }
}

/// `ln(x)` as the `wide` crate's `f32x8::ln` computes it without FMA (wide 1.7, src/f32x8_.rs:
/// Cephes' `logf` polynomial, split ln 2), one value at a time and branch-free, so that the
/// compiler vectorises the loop around it.
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn ln_one(x1: f32) -> f32 {
    // wide's constants, digit for digit
    const P: [f32; 9] = [
        3.3333331174E-1,
        -2.4999993993E-1,
        2.0000714765E-1,
        -1.6668057665E-1,
        1.4249322787E-1,
        -1.2420140846E-1,
        1.1676998740E-1,
        -1.1514610310E-1,
        7.0376836292E-2,
    ];
    const LN2F_HI: f32 = 0.693359375;
    const LN2F_LO: f32 = -2.12194440e-4;
    let bits = x1.to_bits();
    // x1 = f · 2^(e + 1) with f in [0.5, 1)
    let f = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let e = f32::from_bits((bits >> 23) | 0x4b00_0000) - (8_388_608.0 + 127.0);
    let big = f > std::f32::consts::SQRT_2 * 0.5;
    let x = if big { f } else { f + f } - 1.0;
    let fe = if big { e + 1.0 } else { e };
    // wide's polynomial_8! (Estrin's scheme), each mul_add a product then a sum
    let x2 = x * x;
    let x4 = x2 * x2;
    let x8 = x4 * x4;
    let poly = x4 * (x2 * (P[7] * x + P[6]) + (x * P[5] + P[4]))
        + (x8 * P[8] + (x2 * (x * P[3] + P[2]) + (x * P[1] + P[0])));
    let res = x2 * x * poly;
    let res = fe * LN2F_LO + res;
    let res = res + (x - x2 * 0.5);
    let res = fe * LN2F_HI + res;
    // the special values, as wide selects them
    let nan_log = f32::from_bits(0x7fc0_0000 | (0x101 & 0x003f_ffff));
    let finite = x1.is_finite();
    let res = if x1 < f32::MIN_POSITIVE { nan_log } else { res };
    let res = if bits & 0x7f80_0000 == 0 {
        f32::NEG_INFINITY
    } else {
        res
    };
    let res = if finite { res } else { x1 };
    if !finite && x1.is_sign_negative() {
        nan_log
    } else {
        res
    }
}

/// Borrow the f32 values of a CSR matrix produced by this crate.
pub fn values_f32(c: &Compressed) -> &[f32] {
    f32_data(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluding_highly_expressed_leaves_dominant_genes_out_of_every_total() {
        // cell 0: gene 2 holds 90 of 100 counts; cell 1 has gene 2 at 1 of 21
        let indptr = [0u64, 3, 6];
        let indices = [0u32, 1, 2, 0, 1, 2];
        let mut data = [5f32, 5.0, 90.0, 10.0, 10.0, 1.0];
        let (totals, target, out) =
            normalize_rows_excluding(&mut data, &indptr, &indices, 3, 0.5, Some(10.0)).unwrap();
        assert_eq!(out, [false, false, true]);
        assert_eq!((totals, target), (vec![10.0, 20.0], 10.0));
        assert_eq!(data, [5.0, 5.0, 90.0, 5.0, 5.0, 0.5]);
        // an index past the genes: refused before any value changes
        let mut data = [5f32, 5.0, 90.0, 10.0, 10.0, 1.0];
        let bad = [0u32, 1, 3, 0, 1, 2];
        assert!(normalize_rows_excluding(&mut data, &indptr, &bad, 3, 0.5, None).is_err());
        assert_eq!(data, [5.0, 5.0, 90.0, 10.0, 10.0, 1.0]);
    }

    #[test]
    fn every_log1p_build_gives_the_same_bits() {
        // every 4099th float32 bit pattern (all signs, exponents, NaNs), with and without a base
        let v: Vec<f32> = (0..u32::MAX / 4099)
            .map(|i| f32::from_bits(i * 4099))
            .collect();
        for l in [None, Some(10f32.ln())] {
            let mut base = v.clone();
            log1p_slice_width(&mut base, l, 4);
            for width in [8, 16] {
                let mut w = v.clone();
                log1p_slice_width(&mut w, l, width);
                for ((x, a), b) in v.iter().zip(&base).zip(&w) {
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "x {x:e}: {a:e} (width 4) vs {b:e} (width {width})"
                    );
                }
            }
        }
    }

    #[test]
    fn row_totals_in_step_equal_each_row_summed_alone() {
        // rows of unequal lengths (some empty), values whose f64 sum depends on the order
        let mut rows: Vec<Vec<f32>> = (0..23)
            .map(|i| {
                (0..(i * 37 % 50))
                    .map(|k| 1.0 / (1.0 + ((i * 13 + k * 7) % 97) as f32) * 1e3f32.powi(k % 3))
                    .collect()
            })
            .collect();
        let alone: Vec<f32> = rows
            .iter()
            .map(|r| r.iter().fold(0f64, |a, &v| a + v as f64) as f32)
            .collect();
        let slices: Vec<&mut [f32]> = rows.iter_mut().map(|r| r.as_mut_slice()).collect();
        let mut got = vec![0f32; slices.len()];
        row_totals(&slices, &mut got);
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

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
