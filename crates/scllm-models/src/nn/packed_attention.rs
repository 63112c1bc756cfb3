//! Self-attention for inference on flex, straight from the packed QKV projection and each
//! cell's real length.
//!
//! burn 0.22's fused `attention` on flex takes `[B, h, L, dh]` query/key/value tensors (three
//! strided views of the `Wqkv` output, made contiguous first), scores every padded key and query,
//! and runs its softmax with a scalar `exp` per score: perf put the attention kernel's own
//! loops, `expf` and the head-splitting copies at ~30 % of an embedding run (full-size model,
//! kang2018 cells). Here each (cell, head, query block) reads its rows of the `[B, L, 3d]`
//! projection in place (gemm takes strides), scores only the cell's real keys, takes the
//! softmax with a vectorised `exp` (AVX-512 or AVX2 when the CPU has them), and writes its
//! columns of the `[B, Lq, d]` output that `out_proj` reads. Padded query rows come out zero
//! (as PyTorch's nested-tensor fast path leaves them); nothing reads them.
//!
//! Only the plain (non-autodiff) flex device takes this path; training and other backends use
//! burn's ops (see `super::self_attention::attend`).

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata};
use burn::tensor::{DType, Tensor, TensorData};
use gemmkit::{bf16, MatMut, MatRef, Parallelism};
use rayon::prelude::*;

use super::bf16_dot::{self, PackedB};
use super::convert_loops::{round_bf16, to_bf16, widen_scaled};
use super::precision::{own_bf16_dot, Precision};

/// Query rows per task: a block's scores (`QUERY_BLOCK × keys` floats, ≤ 600 KB at 1,200 keys)
/// stay in L2 between the two matrix products.
const QUERY_BLOCK: usize = 128;

#[backend_extension(Flex)]
pub trait PackedSelfAttention: Backend {
    /// `softmax(Q Kᵀ/√dh) V` per head for every cell `c` over its first `lengths[c]` positions,
    /// from `qkv` `[B, L, 3d]` (`Wqkv`'s output: Q, K, V side by side, heads contiguous within
    /// each). Returns `[B, Lq, d]` with `Lq = 1` (`<cls>` only) when `first_only`, else `L`;
    /// rows at or past a cell's length are zero.
    ///
    /// `bf16`: both products take bf16 operands (Q, K, V, the probabilities) with f32 sums
    /// ([`super::precision`]); the softmax stays f32.
    fn packed_self_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        lengths: Vec<usize>,
        first_only: bool,
        bf16: bool,
    ) -> FloatTensor<Self>;
}

impl PackedSelfAttention for Flex {
    fn packed_self_attention(
        qkv: FlexTensor,
        heads: usize,
        lengths: Vec<usize>,
        first_only: bool,
        bf16: bool,
    ) -> FlexTensor {
        let qkv = if qkv.is_contiguous() && qkv.layout().start_offset() == 0 {
            qkv
        } else {
            qkv.to_contiguous()
        };
        let shape = qkv.shape();
        let (b, l, d3) = (shape[0], shape[1], shape[2]);
        let shape = [b, l, d3 / 3];
        let out = if bf16 && own_bf16_dot() {
            attend_bf16_dot(qkv.storage::<f32>(), shape, heads, &lengths, first_only)
        } else if bf16 {
            attend_bf16(qkv.storage::<f32>(), shape, heads, &lengths, first_only)
        } else {
            attend(qkv.storage::<f32>(), shape, heads, &lengths, first_only)
        };
        let lq = if first_only { 1 } else { l };
        FlexTensor::from_data(TensorData::new(out, [b, lq, d3 / 3]))
    }
}

/// [`PackedSelfAttention`] on `qkv` `[B, L, 3d]` where it applies: a plain flex f32 tensor (no
/// autodiff). `None` elsewhere: the caller runs burn's attention instead. Any reduced
/// `precision` runs both products in bf16 (int8 attention would need per-head scales).
pub fn packed_self_attention(
    qkv: &Tensor<3>,
    heads: usize,
    lengths: &[usize],
    first_only: bool,
    precision: Precision,
) -> Option<Tensor<3>> {
    let [b, l, d3] = qkv.dims();
    let applies = !qkv.is_autodiff()
        && qkv.dtype() == DType::F32
        && matches!(
            qkv.device().as_dispatch().clone().inner(),
            DispatchDevice::Flex(_)
        )
        && lengths.len() == b
        && lengths.iter().all(|&n| (1..=l).contains(&n))
        && d3 % (3 * heads) == 0;
    applies.then(|| {
        Tensor::from_dispatch(<Dispatch as PackedSelfAttention>::packed_self_attention(
            qkv.clone().into_dispatch(),
            heads,
            lengths.to_vec(),
            first_only,
            precision != Precision::F32,
        ))
    })
}

/// Output pointer shared by tasks that write disjoint (rows, head columns) of it (also the
/// scBERT FAVOR+ kernel's).
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: every task writes its own rows × head columns; no two tasks overlap.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element `offset` floats in (a method, so closures capture the whole `Sync` wrapper).
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// The kernel of [`PackedSelfAttention`] on `qkv` `[b, l, 3d]` (row-major); returns `[b, Lq, d]`.
fn attend(
    qkv: &[f32],
    [b, l, d]: [usize; 3],
    heads: usize,
    lengths: &[usize],
    first_only: bool,
) -> Vec<f32> {
    let dh = d / heads;
    let lq = if first_only { 1 } else { l };
    let mut out = vec![0f32; b * lq * d];
    let tasks = tasks(lengths, heads, first_only);
    let dst = OutPtr(out.as_mut_ptr());
    let scale = 1.0 / (dh as f32).sqrt();
    let row = 3 * d; // stride between positions in qkv
    tasks
        .into_par_iter()
        .for_each_init(Vec::<f32>::new, |scores, (c, h, q0, q1)| {
            let n = lengths[c];
            let m = q1 - q0;
            let base = c * l * row;
            let q = &qkv[base + q0 * row + h * dh..];
            let k = &qkv[base + d + h * dh..];
            let v = &qkv[base + 2 * d + h * dh..];
            scores.clear();
            scores.resize(m * n, 0.0);
            // SAFETY: the pointers and strides address rows < L of this cell, columns of this
            // head (inside `qkv` and `out`); the output block is this task's alone.
            unsafe {
                // scores[m, n] = scale · Q[q0..q1] · K[..n]ᵀ
                gemm::gemm(
                    m,
                    n,
                    dh,
                    scores.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    q.as_ptr(),
                    1,
                    row as isize,
                    k.as_ptr(),
                    row as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            let sums: Vec<f32> = scores.chunks_exact_mut(n).map(exp_shifted_row).collect();
            let o = dst.at((c * lq + q0) * d + h * dh);
            unsafe {
                // out[q0..q1, head] = P · V[..n]
                gemm::gemm(
                    m,
                    dh,
                    n,
                    o,
                    1,
                    d as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    n as isize,
                    v.as_ptr(),
                    1,
                    row as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            // softmax's normalisation on the dh outputs rather than the n probabilities
            for (i, s) in sums.iter().enumerate() {
                let inv = 1.0 / s;
                for j in 0..dh {
                    unsafe { *o.add(i * d + j) *= inv };
                }
            }
        });
    out
}

/// (cell, head, query rows q0..q1) of every task.
fn tasks(lengths: &[usize], heads: usize, first_only: bool) -> Vec<(usize, usize, usize, usize)> {
    let mut tasks = Vec::new();
    for (c, &n) in lengths.iter().enumerate() {
        let nq = if first_only { 1 } else { n };
        for h in 0..heads {
            for q0 in (0..nq).step_by(QUERY_BLOCK) {
                tasks.push((c, h, q0, (q0 + QUERY_BLOCK).min(nq)));
            }
        }
    }
    tasks
}

/// [`attend`] with both products in bf16 (gemmkit; f32 sums, each product's output rounded to
/// bf16 once): Q, K, V converted once, the probabilities per block; the scale, the softmax and
/// its normalisation in f32.
fn attend_bf16(
    qkv: &[f32],
    [b, l, d]: [usize; 3],
    heads: usize,
    lengths: &[usize],
    first_only: bool,
) -> Vec<f32> {
    let dh = d / heads;
    let lq = if first_only { 1 } else { l };
    let mut out = vec![0f32; b * lq * d];
    let qkv = to_bf16_parallel(qkv);
    let dst = OutPtr(out.as_mut_ptr());
    let scale = 1.0 / (dh as f32).sqrt();
    let row = 3 * d; // stride between positions in qkv
    tasks(lengths, heads, first_only)
        .into_par_iter()
        .for_each_init(
            || (Vec::<bf16>::new(), Vec::<f32>::new(), Vec::<bf16>::new()),
            |(s16, scores, o16), (c, h, q0, q1)| {
                let n = lengths[c];
                let m = q1 - q0;
                let base = c * l * row;
                let q = &qkv[base + q0 * row + h * dh..];
                let k = &qkv[base + d + h * dh..];
                let v = &qkv[base + 2 * d + h * dh..];
                // scores[m, n] = Q[q0..q1] · K[..n]ᵀ
                s16.clear();
                s16.resize(m * n, bf16::ZERO);
                gemmkit::gemm(
                    bf16::ONE,
                    MatRef::new(q, m, dh, row as isize, 1),
                    MatRef::new(k, dh, n, 1, row as isize),
                    bf16::ZERO,
                    MatMut::new(s16, m, n, n as isize, 1),
                    Parallelism::Serial,
                );
                scores.resize(m * n, 0.0);
                widen_scaled(s16, scale, scores);
                let sums: Vec<f32> = scores.chunks_exact_mut(n).map(exp_shifted_row).collect();
                round_bf16(scores, s16);
                // o[m, dh] = P · V[..n]
                o16.clear();
                o16.resize(m * dh, bf16::ZERO);
                gemmkit::gemm(
                    bf16::ONE,
                    MatRef::new(s16, m, n, n as isize, 1),
                    MatRef::new(v, n, dh, row as isize, 1),
                    bf16::ZERO,
                    MatMut::new(o16, m, dh, dh as isize, 1),
                    Parallelism::Serial,
                );
                let o = dst.at((c * lq + q0) * d + h * dh);
                for (i, s) in sums.iter().enumerate() {
                    // SAFETY: row i < m of this task's block, the dh columns of its head: this
                    // task's alone
                    let o = unsafe { std::slice::from_raw_parts_mut(o.add(i * d), dh) };
                    widen_scaled(&o16[i * dh..(i + 1) * dh], 1.0 / s, o);
                }
            },
        );
    out
}

/// [`attend_bf16`] on [`bf16_dot`] (CPUs with AVX-512 BF16): one task per (cell, head) packs
/// Kᵀ and V once for all its query blocks; the scores come out f32 (scaled in the product's
/// epilogue), the softmax writes the probabilities as bf16 in the same pass as the `exp`, and
/// `P·V` writes f32 straight into the output, normalised afterwards. No product's output is
/// rounded to bf16, unlike gemmkit's (see `bf16_dot` for the measurements).
fn attend_bf16_dot(
    qkv: &[f32],
    [b, l, d]: [usize; 3],
    heads: usize,
    lengths: &[usize],
    first_only: bool,
) -> Vec<f32> {
    let dh = d / heads;
    let lq = if first_only { 1 } else { l };
    let mut out = vec![0f32; b * lq * d];
    let qkv = to_bf16_parallel(qkv);
    let dst = OutPtr(out.as_mut_ptr());
    let scale = 1.0 / (dh as f32).sqrt();
    let row = 3 * d; // stride between positions in qkv
    let pairs: Vec<(usize, usize)> = (0..b)
        .flat_map(|c| (0..heads).map(move |h| (c, h)))
        .collect();
    pairs.into_par_iter().for_each_init(
        <(PackedB, PackedB, Vec<f32>, Vec<bf16>, Vec<f32>)>::default,
        |(kt, vp, scores, p16, sums), (c, h)| {
            let n = lengths[c];
            let nq = if first_only { 1 } else { n };
            let base = c * l * row + h * dh;
            // Kᵀ [dh, n]: element (i, j) is K[j, i]; V [n, dh]
            kt.pack_strided(&qkv[base + d..], dh, n, 1, row);
            vp.pack_strided(&qkv[base + 2 * d..], n, dh, row, 1);
            for q0 in (0..nq).step_by(QUERY_BLOCK) {
                let m = (q0 + QUERY_BLOCK).min(nq) - q0;
                let q = &qkv[base + q0 * row..];
                scores.resize(m * n, 0.0);
                // scores[m, n] = scale · Q[q0..q1] · K[..n]ᵀ
                bf16_dot::gemm(q, row, m, kt, scale, None, scores, n);
                p16.resize(m * n, bf16::ZERO);
                sums.clear();
                sums.extend(
                    scores
                        .chunks_exact(n)
                        .zip(p16.chunks_exact_mut(n))
                        .map(|(s, p)| exp_shifted_to_bf16(s, p)),
                );
                let o = dst.at((c * lq + q0) * d + h * dh);
                // SAFETY: rows q0..q1 of this cell's output, this head's dh columns: this
                // task's alone; `p16` holds m rows of n
                unsafe { bf16_dot::gemm_raw(p16.as_ptr(), n, m, vp, 1.0, None, o, d) };
                for (i, s) in sums.iter().enumerate() {
                    // SAFETY: as above
                    let o = unsafe { std::slice::from_raw_parts_mut(o.add(i * d), dh) };
                    let inv = 1.0 / s;
                    o.iter_mut().for_each(|v| *v *= inv);
                }
            }
        },
    );
    out
}

/// Every value of `qkv` rounded to bf16, in parallel blocks.
fn to_bf16_parallel(qkv: &[f32]) -> Vec<bf16> {
    let mut out = vec![bf16::ZERO; qkv.len()];
    out.par_chunks_mut(1 << 16)
        .zip(qkv.par_chunks(1 << 16))
        .for_each(|(d, s)| round_bf16(s, d));
    out
}

/// `p[j] ← bf16(exp(s[j] − max(s)))`, returning the sum of the unrounded values (the softmax's
/// denominator, as [`exp_shifted_row`] gives it).
fn exp_shifted_to_bf16(s: &[f32], p: &mut [bf16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512_for_exp() {
            // SAFETY: the CPU has the features the function is compiled for
            return unsafe { exp_shifted_to_bf16_avx512(s, p) };
        }
    }
    exp_shifted_to_bf16_portable(s, p)
}

/// Whether the CPU has every feature the softmax passes' AVX-512 builds are compiled for.
#[cfg(target_arch = "x86_64")]
fn avx512_for_exp() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,fma")]
unsafe fn exp_shifted_to_bf16_avx512(s: &[f32], p: &mut [bf16]) -> f32 {
    exp_shifted_to_bf16_portable(s, p)
}

/// 16 lane-wise accumulators, so the reductions vectorise (see [`exp_shifted_row_portable`]).
#[inline(always)]
fn exp_shifted_to_bf16_portable(s: &[f32], p: &mut [bf16]) -> f32 {
    const W: usize = 16;
    let max = lane_max(s);
    let mut acc = [0f32; W];
    let mut src = s.chunks_exact(W);
    let mut dst = p.chunks_exact_mut(W);
    for (x, y) in (&mut src).zip(&mut dst) {
        for i in 0..W {
            let e = exp_approx(x[i] - max);
            acc[i] += e;
            y[i] = to_bf16(e);
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (&x, y) in src.remainder().iter().zip(dst.into_remainder()) {
        let e = exp_approx(x - max);
        sum += e;
        *y = to_bf16(e);
    }
    sum
}

/// `row[j] ← exp(row[j] − max(row))`, returning the row's new sum.
fn exp_shifted_row(row: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512_for_exp() {
            // SAFETY: the CPU has the features the function is compiled for
            return unsafe { exp_shifted_row_avx512(row) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above
            return unsafe { exp_shifted_row_avx2(row) };
        }
    }
    exp_shifted_row_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,fma")]
unsafe fn exp_shifted_row_avx512(row: &mut [f32]) -> f32 {
    exp_shifted_row_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_row_avx2(row: &mut [f32]) -> f32 {
    exp_shifted_row_portable(row)
}

/// Written as lane-wise loops over 16 accumulators so the compiler vectorises it for whatever
/// features the caller enables (the reductions would not vectorise as one serial sum).
#[inline(always)]
fn exp_shifted_row_portable(row: &mut [f32]) -> f32 {
    const W: usize = 16;
    let max = lane_max(row);
    for x in row.iter_mut() {
        *x = exp_approx(*x - max);
    }
    let mut acc = [0f32; W];
    let mut chunks = row.chunks_exact(W);
    for ch in &mut chunks {
        for i in 0..W {
            acc[i] += ch[i];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// The largest value of `row` (−∞ when empty), over 16 lane-wise maxima so it vectorises.
#[inline(always)]
fn lane_max(row: &[f32]) -> f32 {
    const W: usize = 16;
    let mut mx = [f32::NEG_INFINITY; W];
    let mut chunks = row.chunks_exact(W);
    for ch in &mut chunks {
        for i in 0..W {
            mx[i] = if ch[i] > mx[i] { ch[i] } else { mx[i] };
        }
    }
    let mut max = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in chunks.remainder() {
        max = max.max(x);
    }
    max
}

/// `eˣ` for `x ≤ 0` to within ~2 ulp (0 below −87): `x = k·ln2 + r`, `|r| ≤ ln2/2`, a degree-7
/// Taylor polynomial for `eʳ`, and `2ᵏ` put in the exponent bits. Branch-free, division-free and
/// without a float → int cast (Rust's saturating `as i32` does not vectorise: LLVM emitted a
/// scalar convert and two compares per lane), so it vectorises.
#[inline(always)]
pub(crate) fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = C1 - C2 with C1 = 355/512, so k·C1 is exact (Cephes' split)
    const C1: f32 = 355.0 / 512.0;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer, which then sits in the low mantissa bits
    const ROUND: f32 = 12_582_912.0;
    let xc = if x < -87.0 { -87.0 } else { x };
    let t = xc * LOG2E + ROUND;
    let kf = t - ROUND;
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (xc - kf * C1) - kf * C2;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let y = p * f32::from_bits(((k + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Bool, Device};

    #[test]
    fn exp_approx_is_within_two_ulp_of_libm() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (a, e) = (exp_approx(x), x.exp());
            worst = worst.max((a - e).abs() / e);
        }
        assert!(worst < 2.5e-7, "max relative error {worst:e}");
        assert_eq!(exp_approx(0.0), 1.0);
        assert_eq!(exp_approx(-200.0), 0.0);
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        // every dispatch variant gives the same sums as the portable one
        let row: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.13).collect();
        let (mut a, mut b) = (row.clone(), row.clone());
        let (sa, sb) = (exp_shifted_row(&mut a), exp_shifted_row_portable(&mut b));
        assert!((sa - sb).abs() <= 1e-5 * sb, "{sa} vs {sb}");
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-6));
    }

    /// Same outputs as burn's fused attention with a key-padding mask, at every real query row,
    /// for cells of several lengths (one longer than a query block), all heads, and `<cls>` only.
    #[test]
    fn matches_burns_attention_with_a_key_padding_mask() {
        let dev = Device::flex();
        let (b, l, heads, dh) = (3usize, 150usize, 4usize, 16usize);
        let d = heads * dh;
        let lengths = vec![150usize, 37, 1];
        let mut st = 7u64;
        let data: Vec<f32> = (0..b * l * 3 * d)
            .map(|_| {
                st = st
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((st >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect();
        let qkv = Tensor::<3>::from_data(TensorData::new(data, [b, l, 3 * d]), &dev);

        let split = |i: usize| {
            qkv.clone()
                .reshape([b, l, 3, heads, dh])
                .narrow(2, i, 1)
                .reshape([b, l, heads, dh])
                .swap_dims(1, 2)
        };
        let mut pad = Vec::new();
        for &n in &lengths {
            for _ in 0..l {
                pad.extend((0..l).map(|k| k >= n));
            }
        }
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(pad, [b, 1, l, l]), &dev);
        let want = attention(
            split(0),
            split(1),
            split(2),
            Some(mask),
            None,
            AttentionModuleOptions::default(),
        )
        .swap_dims(1, 2)
        .reshape([b, l, d]);
        let want: Vec<f32> = want.into_data().try_to_vec::<f32>().unwrap();

        // every query position in `precision`: the worst difference at real query rows (padded
        // rows must be zero)
        let all_rows = |precision: Precision| {
            let got = packed_self_attention(&qkv, heads, &lengths, false, precision)
                .expect("flex f32 applies");
            assert_eq!(got.dims(), [b, l, d]);
            let got: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
            let mut worst = 0f32;
            for (c, &n) in lengths.iter().enumerate() {
                for q in 0..l {
                    let r = (c * l + q) * d;
                    for j in 0..d {
                        if q < n {
                            worst = worst.max((got[r + j] - want[r + j]).abs());
                        } else {
                            assert_eq!(got[r + j], 0.0, "padded query row {q} of cell {c}");
                        }
                    }
                }
            }
            (got, worst)
        };
        let (got, worst) = all_rows(Precision::F32);
        assert!(worst < 1e-5, "max abs diff {worst:e}");
        let first = packed_self_attention(&qkv, heads, &lengths, true, Precision::F32).unwrap();
        assert_eq!(first.dims(), [b, 1, d]);
        let first: Vec<f32> = first.into_data().try_to_vec::<f32>().unwrap();
        for c in 0..b {
            for j in 0..d {
                let (a, z) = (first[c * d + j], got[c * l * d + j]);
                assert!((a - z).abs() < 1e-6, "cell {c}: <cls> only {a} vs {z}");
            }
        }
        // bf16 products (the outputs are averages of values in ±2: bf16 keeps ~3 digits)
        let (_, worst) = all_rows(Precision::Bf16);
        assert!(worst < 2e-2 && worst > 1e-5, "bf16: max abs diff {worst:e}");
        // autodiff tensors are not taken
        let ad = qkv.clone().autodiff();
        assert!(packed_self_attention(&ad, heads, &lengths, false, Precision::F32).is_none());
    }
}
