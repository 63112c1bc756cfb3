//! FAVOR+ attention with the softmax kernel, as scBERT's `performer_pytorch` computes it
//! (`softmax_kernel` + `linear_attention`, docs/models/scbert.md §2.3), and the Gaussian
//! orthogonal random projection a freshly built layer draws (§2.4).

use burn::tensor::{Device, Distribution, Tensor, TensorData};

/// `softmax_kernel`'s `eps`.
const KERNEL_EPS: f64 = 1e-4;

/// Non-causal linear attention of one batch `[B, h, n, dh]` with the random projection
/// `p` `[m, dh]`.
///
/// Features: `x' = m^-1/2 · (exp(c·x Pᵀ − ‖x‖² c²/2 − max) + 1e-4)`, `c = dh^-1/4`; the query's max
/// is per token (over its m features), the key's over all of a cell's heads, tokens and
/// features. The reference takes the key max over the whole batch tensor, so its outputs change
/// with the batch; it predicts one cell at a time, and so does this function per cell (the max
/// of each cell's own `[h, n, m]` block), in every batch (§2.3).
pub fn favor_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, p: Tensor<2>) -> Tensor<4> {
    let [b, h, n, dh] = q.dims();
    let q = features(q, p.clone(), false);
    let k = features(k, p, true);
    let m = k.dims()[3];
    // linear_attention: D⁻¹ (q' (k'ᵀ v)), D = q' · Σ_n k'
    let k_sum = k.clone().sum_dim(2).reshape([b, h, m, 1]);
    let denom = q.clone().matmul(k_sum); // [b, h, n, 1]
    let context = k.swap_dims(2, 3).matmul(v); // [b, h, m, dh]
    let out = q.matmul(context);
    debug_assert_eq!(out.dims(), [b, h, n, dh]);
    out / denom
}

/// `softmax_kernel(x, projection_matrix=p, is_query=!key)`.
fn features(x: Tensor<4>, p: Tensor<2>, key: bool) -> Tensor<4> {
    let [b, h, n, dh] = x.dims();
    let m = p.dims()[0];
    let c = (dh as f64).powf(-0.25);
    let ratio = (m as f64).powf(-0.5);
    // (c·x) Pᵀ as one product over every row of the batch
    let dash = (x.clone() * c)
        .reshape([b * h * n, dh])
        .matmul(p.transpose())
        .reshape([b, h, n, m]);
    let diag = (x.clone() * x).sum_dim(3) * (c * c / 2.0); // [b, h, n, 1]
    let max = if key {
        // one max per cell: over its heads, tokens and features
        dash.clone()
            .reshape([b, h * n * m])
            .max_dim(1)
            .reshape([b, 1, 1, 1])
    } else {
        dash.clone().max_dim(3)
    };
    ((dash - diag - max).exp() + KERNEL_EPS) * ratio
}

/// `gaussian_orthogonal_random_matrix(m, dh, scaling=0)`: blocks of `dh` orthonormal rows (QR of
/// a Gaussian `dh × dh` matrix; here Gram-Schmidt, which gives the same distribution), the last
/// block cut to the remaining rows, each row scaled by the norm of a Gaussian `dh`-vector.
pub fn gaussian_orthogonal(m: usize, dh: usize, dev: &Device) -> Tensor<2> {
    let gauss = |rows: usize| -> Vec<f64> {
        Tensor::<2>::random([rows, dh], Distribution::Normal(0.0, 1.0), dev)
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("f64 data")
    };
    let mut out = Vec::with_capacity(m * dh);
    while out.len() < m * dh {
        let mut block = gauss(dh);
        for i in 0..dh {
            let (done, rest) = block.split_at_mut(i * dh);
            let row = &mut rest[..dh];
            for j in 0..i {
                let prev = &done[j * dh..(j + 1) * dh];
                let dot: f64 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                row.iter_mut().zip(prev).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = row.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            row.iter_mut().for_each(|a| *a /= norm);
        }
        let take = (m * dh - out.len()).min(dh * dh);
        out.extend_from_slice(&block[..take]);
    }
    let norms = gauss(m);
    for (r, row) in out.chunks_mut(dh).enumerate() {
        let s = norms[r * dh..(r + 1) * dh]
            .iter()
            .map(|a| a * a)
            .sum::<f64>()
            .sqrt();
        row.iter_mut().for_each(|a| *a *= s);
    }
    let data: Vec<f32> = out.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [m, dh]), dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_blocks_have_orthogonal_rows() {
        let dev = Device::flex();
        let p = gaussian_orthogonal(10, 4, &dev);
        let v = p.into_data().try_to_vec::<f32>().unwrap();
        // rows 0..4 of a block: pairwise orthogonal
        let row = |i: usize| &v[i * 4..(i + 1) * 4];
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        for i in 0..4 {
            for j in 0..i {
                assert!(dot(row(i), row(j)).abs() < 1e-4, "{i} {j}");
            }
        }
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn key_max_is_per_cell() {
        // a cell's output must not change when another cell joins its batch
        let dev = Device::flex();
        let p = gaussian_orthogonal(6, 4, &dev);
        let t = |s: f64| Tensor::<4>::random([1, 2, 5, 4], Distribution::Normal(0.0, s), &dev);
        let (q1, k1, v1) = (t(1.0), t(1.0), t(1.0));
        let (q2, k2, v2) = (t(3.0), t(3.0), t(1.0));
        let alone = favor_attention(q1.clone(), k1.clone(), v1.clone(), p.clone());
        let both = favor_attention(
            Tensor::cat(vec![q1, q2], 0),
            Tensor::cat(vec![k1, k2], 0),
            Tensor::cat(vec![v1, v2], 0),
            p,
        )
        .narrow(0, 0, 1);
        let d: f32 = (alone - both).abs().max().into_scalar();
        assert!(d < 1e-6, "{d}");
    }
}
