//! bf16 products on AVX-512 BF16 (`vdpbf16ps`) with the right operand packed once: `C = s·A·B +
//! bias` for a row-major bf16 `A` read in place, a [`PackedB`] and an f32 `C` written straight
//! from the f32 accumulators.
//!
//! Why not gemmkit here (it stays the kernel on CPUs without AVX-512 BF16, and for int8): its
//! bf16 dot family packs both operands on every call (`FORCE_PACK_LHS`/`_RHS` in gemmkit's
//! `src/kernel/mixed.rs`), so a linear layer repacks its weight for every block of rows, a
//! prepacked weight (`prepack_rhs`) needs a column-major output, and its output is bf16 (one
//! more rounding, one more pass to widen). Measured on the project's AMD EPYC (AVX-512 BF16,
//! one thread, 512×512×1536, docs/precision.md): gemmkit 4.05 ms (199 GFLOP/s) plus the widening
//! pass, this kernel 3.54 ms (228 GFLOP/s) with bias and f32 output, and its error to an f64
//! product of the same bf16 inputs 5e-6 instead of 3e-2 (no rounding of the output).
//!
//! Layout: the `k × n` right operand in panels of [`PANEL`] columns; inside a panel, for each
//! pair of rows (`k` depth steps 2q, 2q+1) the panel's columns, each as its two bf16 values side
//! by side: the operand `vdpbf16ps` takes, 16 columns per register. The left operand needs no
//! packing: each row's pair `A[i, 2q..2q+2]` is already two adjacent bf16, broadcast as one
//! 32-bit value. The micro-kernel keeps 6 × [`PANEL`] f32 sums in 24 registers.

use gemmkit::bf16;

use super::convert_loops::to_bf16;

/// Registers of 16 f32 columns per panel.
const VECS: usize = 4;
/// Columns per packed panel.
pub const PANEL: usize = VECS * 16;
/// Rows per micro-kernel call (6 × 4 sums + 4 panel loads + 1 broadcast ≤ 32 registers).
const ROWS: usize = 6;

/// Whether this CPU runs [`gemm()`] (AVX-512F and AVX-512 BF16).
pub fn cpu_has() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A `k × n` right operand in the layout [`gemm()`] reads (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    data: Vec<bf16>,
}

impl PackedB {
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Packs `w` (`[k, n]` row-major f32, a linear layer's weight in burn's layout), rounding
    /// each value to the nearest bf16.
    pub fn from_f32(w: &[f32], k: usize, n: usize) -> PackedB {
        assert_eq!(w.len(), k * n, "weight shape");
        let mut p = PackedB::default();
        p.fill(k, n, |r, c| to_bf16(w[r * n + c]));
        p
    }

    /// Packs the `k × n` bf16 matrix whose element `(r, c)` is `src[r·rs + c·cs]`, reusing this
    /// buffer (attention packs Kᵀ and V of every cell and head).
    pub fn pack_strided(&mut self, src: &[bf16], k: usize, n: usize, rs: usize, cs: usize) {
        if k > 0 && n > 0 {
            assert!(
                (k - 1) * rs + (n - 1) * cs < src.len(),
                "operand out of range"
            );
        }
        self.fill(k, n, |r, c| src[r * rs + c * cs]);
    }

    fn fill(&mut self, k: usize, n: usize, at: impl Fn(usize, usize) -> bf16) {
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(PANEL);
        self.k = k;
        self.n = n;
        self.data.clear();
        self.data.resize(panels * pairs * PANEL * 2, bf16::ZERO);
        if self.data.is_empty() {
            // no depth (or no column): nothing to pack, and chunks of 0 would panic
            return;
        }
        for (p, panel) in self.data.chunks_exact_mut(pairs * PANEL * 2).enumerate() {
            let c0 = p * PANEL;
            let cols = (n - c0).min(PANEL);
            for (q, step) in panel.chunks_exact_mut(PANEL * 2).enumerate() {
                let r = 2 * q;
                for c in 0..cols {
                    step[2 * c] = at(r, c0 + c);
                    if r + 1 < k {
                        step[2 * c + 1] = at(r + 1, c0 + c);
                    }
                }
            }
        }
    }
}

/// `c[i·ldc + j] = scale · Σ_r a[i·lda + r] · B[r, j] + bias[j]` for `i < m`, `j < b.n()`,
/// accumulated in f32 by `vdpbf16ps` (pairs of products summed in f32 and added).
///
/// # Panics
/// If the CPU lacks the instructions ([`cpu_has`]) or a slice is too short for the shapes.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    a: &[bf16],
    lda: usize,
    m: usize,
    b: &PackedB,
    scale: f32,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        lda >= k && (m - 1) * lda + k <= a.len(),
        "left operand shape"
    );
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "output shape");
    assert!(bias.is_none_or(|b| b.len() >= n), "bias shape");
    // SAFETY: the asserts above bound every read of `a`/`bias` and write of `c`
    unsafe { gemm_raw(a.as_ptr(), lda, m, b, scale, bias, c.as_mut_ptr(), ldc) }
}

/// [`gemm()`] into a raw output (attention heads write their columns of a shared output).
///
/// # Safety
/// `a` is valid for reads of `m` rows of `b.k()` values at stride `lda`; `c` for writes of `m`
/// rows of `b.n()` values at stride `ldc`, written by no one else meanwhile; `bias` (if any)
/// holds ≥ `b.n()` values.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_raw(
    a: *const bf16,
    lda: usize,
    m: usize,
    b: &PackedB,
    scale: f32,
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
) {
    assert!(cpu_has(), "bf16_dot::gemm needs AVX-512 BF16");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the features (asserted); the caller bounds the pointers
    unsafe {
        avx512::gemm(a, lda, m, b, scale, bias, c, ldc)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, lda, m, b, scale, bias, c, ldc);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PackedB, PANEL, ROWS, VECS};
    use gemmkit::bf16;

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn gemm(
        a: *const bf16,
        lda: usize,
        m: usize,
        b: &PackedB,
        scale: f32,
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: the callers bound every pointer (see `gemm_raw`)
        unsafe {
            let (k, n) = (b.k, b.n);
            let panel_len = k.div_ceil(2) * PANEL * 2;
            for p in 0..n.div_ceil(PANEL) {
                let c0 = p * PANEL;
                let cols = (n - c0).min(PANEL);
                let bp = b.data.as_ptr().add(p * panel_len);
                let bias = bias.map(|b| b.as_ptr().add(c0));
                let mut i = 0;
                // every call: rows i..i+R < m of `a` and `c`, this panel's columns
                while i + ROWS <= m {
                    tile::<ROWS>(
                        a.add(i * lda),
                        lda,
                        k,
                        bp,
                        scale,
                        bias,
                        c.add(i * ldc + c0),
                        ldc,
                        cols,
                    );
                    i += ROWS;
                }
                let (a, c) = (a.add(i * lda), c.add(i * ldc + c0));
                match m - i {
                    0 => {}
                    1 => tile::<1>(a, lda, k, bp, scale, bias, c, ldc, cols),
                    2 => tile::<2>(a, lda, k, bp, scale, bias, c, ldc, cols),
                    3 => tile::<3>(a, lda, k, bp, scale, bias, c, ldc, cols),
                    4 => tile::<4>(a, lda, k, bp, scale, bias, c, ldc, cols),
                    _ => tile::<5>(a, lda, k, bp, scale, bias, c, ldc, cols),
                }
            }
        }
    }

    /// One depth pair: the panel's 4 registers times each row's broadcast pair.
    #[inline(always)]
    unsafe fn step<const R: usize>(
        acc: &mut [[__m512; VECS]; R],
        bp: *const bf16,
        pairs: &[i32; R],
    ) {
        // SAFETY: the callers bound every pointer (see `gemm_raw`)
        unsafe {
            let mut bv = [_mm512_setzero_si512(); VECS];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_si512(bp.add(v * 32) as *const __m512i);
            }
            for (acc, &pair) in acc.iter_mut().zip(pairs) {
                let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
                for (s, bv) in acc.iter_mut().zip(&bv) {
                    *s = _mm512_dpbf16_ps(*s, av, std::mem::transmute::<__m512i, __m512bh>(*bv));
                }
            }
        }
    }

    /// `R` rows × one panel: the whole depth in registers, then `scale · sum + bias` stored
    /// (masked past `cols`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn tile<const R: usize>(
        a: *const bf16,
        lda: usize,
        k: usize,
        b: *const bf16,
        scale: f32,
        bias: Option<*const f32>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        // SAFETY: the callers bound every pointer (see `gemm_raw`)
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); VECS]; R];
            let mut bp = b;
            for q in 0..k / 2 {
                // two adjacent bf16 of row r as one 32-bit value (the lower at the lower address)
                let pairs: [i32; R] = std::array::from_fn(|r| {
                    (a.add(r * lda + 2 * q) as *const i32).read_unaligned()
                });
                step(&mut acc, bp, &pairs);
                bp = bp.add(PANEL * 2);
            }
            if k % 2 == 1 {
                // the last depth step alone; its partner in the panel is 0
                let pairs: [i32; R] =
                    std::array::from_fn(|r| (*a.add(r * lda + k - 1)).to_bits() as i32);
                step(&mut acc, bp, &pairs);
            }
            let sv = _mm512_set1_ps(scale);
            for v in 0..VECS {
                let c0 = v * 16;
                if c0 >= cols {
                    break;
                }
                let mask: __mmask16 = if cols - c0 >= 16 {
                    0xffff
                } else {
                    (1u16 << (cols - c0)) - 1
                };
                let bv = match bias {
                    Some(b) => _mm512_maskz_loadu_ps(mask, b.add(c0)),
                    None => _mm512_setzero_ps(),
                };
                for (r, acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(
                        c.add(r * ldc + c0),
                        mask,
                        _mm512_fmadd_ps(acc[v], sv, bv),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::convert_loops::widen;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Every shape edge (rows past a multiple of 6, columns past a panel and inside one, odd
    /// depth, a row stride wider than the depth, a scale and a bias) against an f64 product of
    /// the same bf16 values: f32 sums of exact products, so within a few f32 ulps of Σ|a·b|.
    #[test]
    fn equals_an_f64_product_of_the_same_bf16_values() {
        if !cpu_has() {
            eprintln!("skipped: this CPU has no AVX-512 BF16 (gemmkit's kernels run instead)");
            return;
        }
        for (m, k, n) in [
            (1, 1, 1),
            (7, 33, 70),
            (13, 64, 64),
            (6, 512, 129),
            (25, 17, 200),
        ] {
            let lda = k + 3;
            let a: Vec<bf16> = values(m * lda, 3).into_iter().map(to_bf16).collect();
            let w = values(k * n, 5);
            let bias = values(n, 7);
            let scale = 0.125;
            let b = PackedB::from_f32(&w, k, n);
            let ldc = n + 2;
            let mut c = vec![f32::NAN; m * ldc];
            gemm(&a, lda, m, &b, scale, Some(&bias), &mut c, ldc);
            for i in 0..m {
                for j in 0..n {
                    let (mut want, mut mag) = (0f64, 0f64);
                    for r in 0..k {
                        let p = widen(a[i * lda + r]) as f64 * widen(to_bf16(w[r * n + j])) as f64;
                        want += p;
                        mag += p.abs();
                    }
                    let want = scale as f64 * want + bias[j] as f64;
                    let got = c[i * ldc + j] as f64;
                    let tol =
                        4.0 * f32::EPSILON as f64 * (scale as f64 * mag + bias[j].abs() as f64);
                    assert!(
                        (got - want).abs() <= tol,
                        "{m}×{k}×{n} ({i}, {j}): {got} vs {want}"
                    );
                }
                // the padding between rows is not written
                assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()));
            }
        }
    }

    /// A strided pack (attention's Kᵀ: depth along a row, columns a row stride apart) gives the
    /// same product as packing the same values from a row-major f32 copy.
    #[test]
    fn strided_packing_equals_row_major_packing() {
        if !cpu_has() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let (k, n, stride) = (16, 37, 48);
        let src: Vec<bf16> = values(n * stride, 9).into_iter().map(to_bf16).collect();
        let mut strided = PackedB::default();
        strided.pack_strided(&src, k, n, 1, stride);
        let dense: Vec<f32> = (0..k * n)
            .map(|i| widen(src[(i % n) * stride + i / n]))
            .collect();
        let plain = PackedB::from_f32(&dense, k, n);
        assert_eq!(strided.data, plain.data);
        let a: Vec<bf16> = values(5 * k, 11).into_iter().map(to_bf16).collect();
        let (mut x, mut y) = (vec![0f32; 5 * n], vec![0f32; 5 * n]);
        gemm(&a, k, 5, &strided, 1.0, None, &mut x, n);
        gemm(&a, k, 5, &plain, 1.0, None, &mut y, n);
        assert_eq!(x, y);
    }
}
