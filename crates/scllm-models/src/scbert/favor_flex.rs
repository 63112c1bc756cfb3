//! FAVOR+ for inference on flex, in row blocks, without a cell's `[heads, L, m]` feature
//! tensors (docs/models/scbert.md §2.3, §4.3).
//!
//! [`super::favor::favor_attention`] in burn ops holds a cell's query and key features whole
//! (`heads × 16,907 × 266` floats, 180 MB each at the released shape, and as many again for each
//! elementwise step). Here each (head, block of rows) computes its projections with one matrix
//! product into a buffer that stays in cache, and the features never exist whole:
//! 1. per head, one pass over its keys: `Σ_n exp(dk − diag − M_h)` and its product with `v`,
//!    against the head's running max `M_h` (rescaled when it grows, as an online softmax does);
//! 2. the cell's max `M` over all heads; since `k' = m^-1/2 (exp(dk − diag − M_h) e^(M_h − M) +
//!    1e-4)`, `Σ_n k'` and the context `k'ᵀ v` follow from step 1 with one scale per head (and
//!    `n`, `Σ_n v` for the 1e-4): the reference's key features, without a second pass;
//! 3. per (head, block), the query features, then `q' · context / (q' · Σ_n k')`.
//!
//! Only the plain (non-autodiff) flex device takes this path; training and other backends use
//! the burn ops.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::nn::packed_attention::{exp_approx, OutPtr};

/// Rows per block: a block's features (`ROWS × m` floats, 272 KB at m = 266) stay in L2 between
/// the two matrix products.
const ROWS: usize = 256;

/// `softmax_kernel`'s `eps`.
const EPS: f32 = 1e-4;

#[backend_extension(Flex)]
pub trait FavorAttention: Backend {
    /// FAVOR+ of `q`, `k`, `v` `[B, L, heads · dim_head]` (the projections' outputs, heads
    /// contiguous) with the projection `p` `[m, dim_head]`; the key max per cell. Returns
    /// `[B, L, heads · dim_head]`, the heads merged as `to_out` reads them.
    fn favor_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        p: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;
}

fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    }
}

impl FavorAttention for Flex {
    fn favor_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        p: FlexTensor,
        heads: usize,
    ) -> FlexTensor {
        let (q, k, v, p) = (contiguous(q), contiguous(k), contiguous(v), contiguous(p));
        let s = q.shape();
        let (b, l, inner) = (s[0], s[1], s[2]);
        let m = p.shape()[0];
        let dh = inner / heads;
        let shape = Shape {
            l,
            heads,
            dh,
            m,
            c: (dh as f32).powf(-0.25),
        };
        let mut out = vec![0f32; b * l * inner];
        for c in 0..b {
            let at = c * l * inner..(c + 1) * l * inner;
            favor_cell(
                &q.storage::<f32>()[at.clone()],
                &k.storage::<f32>()[at.clone()],
                &v.storage::<f32>()[at.clone()],
                p.storage::<f32>(),
                shape,
                &mut out[at],
            );
        }
        FlexTensor::from_data(TensorData::new(out, [b, l, inner]))
    }
}

/// [`FavorAttention`] where it applies: plain flex f32 tensors. `None` elsewhere: the caller
/// runs the burn ops.
pub fn favor_flex(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    p: &Tensor<2>,
    heads: usize,
) -> Option<Tensor<3>> {
    let applies = !q.is_autodiff()
        && q.dtype() == DType::F32
        && p.dtype() == DType::F32
        && matches!(
            q.device().as_dispatch().clone().inner(),
            DispatchDevice::Flex(_)
        )
        && q.dims()[2].is_multiple_of(heads)
        && q.dims()[2] / heads == p.dims()[1];
    applies.then(|| {
        Tensor::from_dispatch(<Dispatch as FavorAttention>::favor_attention(
            q.clone().into_dispatch(),
            k.clone().into_dispatch(),
            v.clone().into_dispatch(),
            p.clone().into_dispatch(),
            heads,
        ))
    })
}

#[derive(Clone, Copy)]
struct Shape {
    l: usize,
    heads: usize,
    dh: usize,
    m: usize,
    /// `dim_head^-1/4`
    c: f32,
}

impl Shape {
    fn inner(self) -> usize {
        self.heads * self.dh
    }
    fn blocks(self) -> impl Iterator<Item = (usize, usize)> {
        let l = self.l;
        (0..l).step_by(ROWS).map(move |r0| (r0, (r0 + ROWS).min(l)))
    }
}

/// `buf[rows, m] = x[r0..r1, head h] · psᵀ` (`ps` = the projection times `dim_head^-1/4`), and
/// each row's `‖x‖² c²/2`.
fn project(
    x: &[f32],
    ps: &[f32],
    s: Shape,
    h: usize,
    (r0, r1): (usize, usize),
    buf: &mut Vec<f32>,
    diag: &mut Vec<f32>,
) {
    let (rows, inner, dh, m, c) = (r1 - r0, s.inner(), s.dh, s.m, s.c);
    buf.clear();
    buf.resize(rows * m, 0.0);
    let x0 = &x[r0 * inner + h * dh..];
    // SAFETY: rows r0..r1 and the head's columns lie inside `x`; `buf` is rows × m
    unsafe {
        gemm::gemm(
            rows,
            m,
            dh,
            buf.as_mut_ptr(),
            1,
            m as isize,
            false,
            x0.as_ptr(),
            1,
            inner as isize,
            ps.as_ptr(),
            dh as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    diag.clear();
    diag.extend((0..rows).map(|i| {
        let row = &x0[i * inner..i * inner + dh];
        row.iter().map(|a| a * a).sum::<f32>() / 2.0 * (c * c)
    }));
}

/// The key side of one head: `Σ_n exp(dk − diag − M_h)` per feature and
/// `Σ_n exp(dk − diag − M_h)ᵀ v`, with `M_h` the head's own max, `Σ_n v`, and `M_h`.
struct KeySums {
    max: f32,
    e_sum: Vec<f32>,
    e_v: Vec<f32>,
    v_sum: Vec<f32>,
}

/// One head's keys in one pass over the rows: each block's projection is exponentiated against
/// the running max, and what was summed before is rescaled when the max grows (the online
/// softmax's device), so every key projection is computed once.
fn key_sums(k: &[f32], v: &[f32], ps: &[f32], s: Shape, h: usize) -> KeySums {
    let (dh, m, inner) = (s.dh, s.m, s.inner());
    let (mut buf, mut diag) = (Vec::new(), Vec::new());
    let mut max = f32::NEG_INFINITY;
    let mut e_sum = vec![0f32; m];
    let mut e_v = vec![0f32; m * dh];
    let mut v_sum = vec![0f32; dh];
    for (r0, r1) in s.blocks() {
        project(k, ps, s, h, (r0, r1), &mut buf, &mut diag);
        let bmax = block_max(&buf);
        if bmax > max {
            if max > f32::NEG_INFINITY {
                let scale = (max - bmax).exp();
                e_sum.iter_mut().for_each(|x| *x *= scale);
                e_v.iter_mut().for_each(|x| *x *= scale);
            }
            max = bmax;
        }
        key_rows(&mut buf, &diag, m, max, &mut e_sum);
        let v0 = &v[r0 * inner + h * dh..];
        for i in 0..r1 - r0 {
            add_to(&mut v_sum, &v0[i * inner..i * inner + dh]);
        }
        // SAFETY: e_v is m × dh; buf is rows × m (read transposed); v's block rows and head
        // columns lie inside `v`
        unsafe {
            gemm::gemm(
                m,
                dh,
                r1 - r0,
                e_v.as_mut_ptr(),
                1,
                dh as isize,
                true,
                buf.as_ptr(),
                m as isize,
                1,
                v0.as_ptr(),
                1,
                inner as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
    KeySums {
        max,
        e_sum,
        e_v,
        v_sum,
    }
}

/// One cell: `q`, `k`, `v` `[L, heads · dh]`, `p` `[m, dh]`; writes `out` `[L, heads · dh]`.
fn favor_cell(q: &[f32], k: &[f32], v: &[f32], p: &[f32], s: Shape, out: &mut [f32]) {
    let (dh, m, inner) = (s.dh, s.m, s.inner());
    let c = s.c;
    let ratio = (m as f32).powf(-0.5);
    let ps: Vec<f32> = p.iter().map(|x| x * c).collect();
    // keys, per head against its own max; then the cell's max M over all heads:
    // k' = ratio·(exp(dk − diag − M_h)·e^(M_h − M) + eps), so Σ_n k' and k'ᵀv follow from the
    // head's sums with a scale, and eps enters through n and Σ_n v
    let heads: Vec<KeySums> = (0..s.heads)
        .into_par_iter()
        .map(|h| key_sums(k, v, &ps, s, h))
        .collect();
    let cell_max = heads
        .iter()
        .map(|x| x.max)
        .fold(f32::NEG_INFINITY, f32::max);
    let n = s.l as f32;
    let per_head: Vec<(Vec<f32>, Vec<f32>)> = heads
        .into_iter()
        .map(|x| {
            let scale = (x.max - cell_max).exp();
            let k_sum = x
                .e_sum
                .iter()
                .map(|e| ratio * (e * scale + n * EPS))
                .collect();
            let context = x
                .e_v
                .chunks_exact(dh)
                .flat_map(|row| {
                    row.iter()
                        .zip(&x.v_sum)
                        .map(|(e, vs)| ratio * (e * scale + EPS * vs))
                        .collect::<Vec<_>>()
                })
                .collect();
            (k_sum, context)
        })
        .collect();
    // queries, per (head, block): their features and the output rows
    let tasks: Vec<(usize, usize, usize)> = (0..s.heads)
        .flat_map(|h| s.blocks().map(move |(r0, r1)| (h, r0, r1)))
        .collect();
    let dst = OutPtr(out.as_mut_ptr());
    tasks.par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(buf, diag), &(h, r0, r1)| {
            let (k_sum, context) = &per_head[h];
            project(q, &ps, s, h, (r0, r1), buf, diag);
            let denom: Vec<f32> = buf
                .chunks_exact_mut(m)
                .zip(diag.iter())
                .map(|(row, &d)| query_row(row, d, ratio, k_sum))
                .collect();
            let o = dst.at(r0 * inner + h * dh);
            // SAFETY: this task's rows × head columns of `out`, written by it alone
            unsafe {
                gemm::gemm(
                    r1 - r0,
                    dh,
                    m,
                    o,
                    1,
                    inner as isize,
                    false,
                    buf.as_ptr(),
                    1,
                    m as isize,
                    context.as_ptr(),
                    1,
                    dh as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                for (i, d) in denom.iter().enumerate() {
                    let inv = 1.0 / d;
                    for j in 0..dh {
                        *o.add(i * inner + j) *= inv;
                    }
                }
            }
        },
    );
}

/// A function whose body is compiled for AVX-512 or AVX2+FMA when the CPU has them (chosen at
/// run time), else for the baseline; the loops it calls are written lane-wise and inlined, so
/// they vectorise for whichever it runs.
macro_rules! simd_fn {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        fn $name($($a: $t),*) $(-> $r)? {
            #[inline(always)]
            fn portable($($a: $t),*) $(-> $r)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,fma")]
                unsafe fn v4($($a: $t),*) $(-> $r)? {
                    portable($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($a: $t),*) $(-> $r)? {
                    portable($($a),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `v4` is compiled for
                    return unsafe { v4($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above
                    return unsafe { v3($($a),*) };
                }
            }
            portable($($a),*)
        }
    };
}

simd_fn! {
    /// A block of key projections `buf` `[rows, m]` (row `i`'s diagonal term `diag[i]`) as
    /// `exp(dk − diag − max)`, summed per feature into `e_sum`.
    fn key_rows(buf: &mut [f32], diag: &[f32], m: usize, max: f32, e_sum: &mut [f32]) {
        for (row, &d) in buf.chunks_exact_mut(m).zip(diag) {
            features(row, d + max, 1.0, 0.0);
            add_to(e_sum, row);
        }
    }
}

simd_fn! {
    /// A query projection row as its features (max over the row), returning `q' · Σ_n k'`.
    fn query_row(row: &mut [f32], diag: f32, ratio: f32, k_sum: &[f32]) -> f32 {
        let shift = diag + max_of(row);
        features(row, shift, ratio, EPS);
        dot(row, k_sum)
    }
}

simd_fn! {
    /// The largest element (−∞ for none).
    fn block_max(x: &[f32]) -> f32 {
        max_of(x)
    }
}

/// `row ← ratio · (exp(row − shift) + eps)`.
#[inline(always)]
fn features(row: &mut [f32], shift: f32, ratio: f32, eps: f32) {
    for x in row.iter_mut() {
        *x = ratio * (exp_approx(*x - shift) + eps);
    }
}

/// Lanes of the reductions below: 16 partial results, so they vectorise.
const W: usize = 16;

#[inline(always)]
fn max_of(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; W];
    let mut chunks = x.chunks_exact(W);
    for ch in &mut chunks {
        for i in 0..W {
            acc[i] = if ch[i] > acc[i] { ch[i] } else { acc[i] };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    acc.iter().copied().fold(tail, f32::max)
}

/// `Σ a·b`.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; W];
    let (mut ca, mut cb) = (a.chunks_exact(W), b.chunks_exact(W));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..W {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `acc += x`.
#[inline(always)]
fn add_to(acc: &mut [f32], x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
}

#[cfg(test)]
mod tests {
    use super::super::favor::{favor_attention, gaussian_orthogonal};
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    /// The blocked kernel gives the burn-ops FAVOR+ (which the fixture checks against the
    /// reference) on cells longer than a block, two at once.
    #[test]
    fn matches_the_burn_ops_version() {
        let dev = Device::flex();
        let (b, l, h, dh, m) = (2, 600, 3, 8, 20);
        let p = gaussian_orthogonal(m, dh, &dev);
        let t = |s: f64| Tensor::<3>::random([b, l, h * dh], Distribution::Normal(0.0, s), &dev);
        // keys growing along the rows (the running max rises block by block) and per head
        let ramp: Vec<f32> = (0..l * h * dh)
            .map(|i| {
                (0.3 + 1.5 * (i / (h * dh)) as f32 / l as f32) * (1 + (i % (h * dh)) / dh) as f32
            })
            .collect();
        let ramp = Tensor::<3>::from_data(TensorData::new(ramp, [1, l, h * dh]), &dev);
        let (q, k, v) = (t(1.5), t(1.0) * ramp, t(1.0));
        let fast = favor_flex(&q, &k, &v, &p, h).expect("flex applies");
        let split = |x: Tensor<3>| x.reshape([b, l, h, dh]).swap_dims(1, 2);
        let slow = favor_attention(split(q), split(k), split(v), p)
            .swap_dims(1, 2)
            .reshape([b, l, h * dh]);
        let d: f32 = (fast - slow.clone()).abs().max().into_scalar();
        let scale: f32 = slow.abs().max().into_scalar();
        assert!(d <= 1e-5 * scale.max(1.0), "{d} (scale {scale})");
    }
}
