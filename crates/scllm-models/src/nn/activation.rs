//! `sigmoid` and exact GELU for inference: on a plain (non-autodiff) device they run on the host
//! in parallel chunks with vectorisable approximations (burn-flex's unary kernels call libm once
//! per element on one thread: ~10 % of CellPLM's embedding time, perf); on an autodiff device
//! burn's own ops run, so gradients flow.

use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{Tensor, TensorData};

use super::packed_attention::exp_approx;

/// `f` on every element on the host, in parallel chunks.
fn host_map<const D: usize>(t: Tensor<D>, f: impl Fn(f32) -> f32 + Sync + Send) -> Tensor<D> {
    use rayon::prelude::*;
    let shape = t.shape();
    let dev = t.device();
    let mut v: Vec<f32> = match t.clone().into_data().convert::<f32>().try_into_vec::<f32>() {
        Ok(v) => v,
        Err(_) => return t,
    };
    v.par_chunks_mut(1 << 15).for_each(|c| {
        for x in c.iter_mut() {
            *x = f(*x);
        }
    });
    Tensor::from_data(TensorData::new(v, shape), &dev)
}

#[inline(always)]
fn sigmoid_approx(x: f32) -> f32 {
    let e = exp_approx(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 {
        s
    } else {
        e * s
    }
}

/// `0.5·x·(1 + erf(x/√2))`, erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
#[inline(always)]
fn gelu_approx(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let erf = 1.0 - poly * exp_approx(-z * z);
    let erf = if x >= 0.0 { erf } else { -erf };
    0.5 * x * (1.0 + erf)
}

/// The logistic sigmoid (approximated on the host off autodiff; within 1e-6).
pub fn fast_sigmoid<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.device().is_autodiff() {
        sigmoid(t)
    } else {
        host_map(t, sigmoid_approx)
    }
}

/// Exact (erf) GELU (approximated on the host off autodiff; within 2e-7 relative).
pub fn fast_gelu<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.device().is_autodiff() {
        gelu(t)
    } else {
        host_map(t, gelu_approx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approximations_follow_burns_exact_ops() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 200.0).collect();
        let dev = burn::tensor::Device::flex();
        let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &dev);
        let exact = |t: Tensor<1>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let s = exact(sigmoid(t.clone()));
        let g = exact(gelu(t.clone()));
        let fs = exact(fast_sigmoid(t.clone()));
        let fg = exact(fast_gelu(t));
        for i in 0..xs.len() {
            assert!((fs[i] - s[i]).abs() < 1e-6, "sigmoid({})", xs[i]);
            assert!(
                (fg[i] - g[i]).abs() < 1e-6 * (1.0 + g[i].abs()),
                "gelu({})",
                xs[i]
            );
        }
    }
}
