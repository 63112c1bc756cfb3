//! Softmax over the last axis with a backward pass of its own, for attention in training.
//!
//! Under autodiff, burn 0.22 composes softmax from five recorded ops (max, sub, exp, sum, div),
//! and exp's backward computes exp again: perf put the pieces at ~15 % of a small-config
//! fine-tuning step. Here the forward is the backend's own softmax (flex: one fused row kernel)
//! and the backward is the closed form from the saved output, `dx = y ⊙ (g − Σⱼ gⱼ yⱼ)`.
//! With attention dropout, `z = softmax(x) ⊙ m` is one op whose backward needs only `y` and `z`,
//! `dx = g ⊙ z − y ⊙ Σⱼ gⱼ zⱼ`, so the mask is not kept for the backward pass: one `[B,h,L,L]`
//! tensor less per layer. Burn's backend-extension API is how a custom op gets its backward;
//! backends not listed below (CUDA) keep burn's composed ops, which compute the same function.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata,
};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

#[backend_extension(Flex, Autodiff)]
pub trait LastAxisSoftmax: Backend {
    /// `softmax(x)` along the last axis.
    fn last_axis_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let rank = x.shape().num_dims();
        Self::softmax(x, rank - 1)
    }

    /// The input gradient of [`Self::last_axis_softmax`] from its output `y` and the output
    /// gradient `grad`: `y ⊙ (grad − Σ(grad ⊙ y))`, the sum along the last axis.
    fn last_axis_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let rank = y.shape().num_dims();
        let dot = Self::float_sum_dim(Self::float_mul(grad.clone(), y.clone()), rank - 1);
        Self::float_mul(y, Self::float_sub(grad, dot))
    }

    /// `softmax(x) ⊙ mask` along the last axis (attention dropout; `mask` holds 0 or 1/(1-p)).
    fn last_axis_softmax_dropout(
        x: FloatTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::float_mul(Self::last_axis_softmax(x), mask)
    }

    /// The input gradient of [`Self::last_axis_softmax_dropout`] from `y = softmax(x)`, its output
    /// `z` and the output gradient: `grad ⊙ z − y ⊙ Σ(grad ⊙ z)`.
    fn last_axis_softmax_dropout_backward(
        y: FloatTensor<Self>,
        z: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let rank = y.shape().num_dims();
        let gz = Self::float_mul(grad, z);
        let dot = Self::float_sum_dim(gz.clone(), rank - 1);
        Self::float_sub(gz, Self::float_mul(y, dot))
    }
}

impl LastAxisSoftmax for Flex {}

impl<B: Backend + LastAxisSoftmax, C: CheckpointStrategy> LastAxisSoftmax for Autodiff<B, C> {
    fn last_axis_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxBackward;

        impl<B: Backend + LastAxisSoftmax> Backward<B, 1> for SoftmaxBackward {
            // the forward's output: all the backward needs
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let y = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::last_axis_softmax_backward(y, grad)
                });
            }
        }

        let (x, node) = x.into_parts();
        match SoftmaxBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::last_axis_softmax(x);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::last_axis_softmax(x)),
        }
    }

    fn last_axis_softmax_dropout(
        x: FloatTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxDropoutBackward;

        impl<B: Backend + LastAxisSoftmax> Backward<B, 1> for SoftmaxDropoutBackward {
            // (softmax(x), the output): the mask is not kept
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (y, z) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::last_axis_softmax_dropout_backward(y, z, grad)
                });
            }
        }

        // the mask is a constant: only x is a parent
        let mask = mask.into_primitive();
        let (x, node) = x.into_parts();
        match SoftmaxDropoutBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::last_axis_softmax(x);
                let z = B::float_mul(y.clone(), mask);
                prep.finish((y, z.clone()), z)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::last_axis_softmax_dropout(x, mask)),
        }
    }
}

/// Softmax along the last axis of `x`; on flex (with or without autodiff) through
/// [`LastAxisSoftmax`], elsewhere through burn's `softmax`.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if has_own_backward(&x.device()) {
        Tensor::from_dispatch(<Dispatch as LastAxisSoftmax>::last_axis_softmax(
            x.into_dispatch(),
        ))
    } else {
        softmax(x, D - 1)
    }
}

/// `softmax_last(x) * mask` (attention dropout; `mask` a constant of 0 and 1/(1-p)), keeping
/// only the softmax and the output for the backward pass on flex.
pub fn softmax_last_dropout<const D: usize>(x: Tensor<D>, mask: Tensor<D>) -> Tensor<D> {
    if has_own_backward(&x.device()) {
        Tensor::from_dispatch(<Dispatch as LastAxisSoftmax>::last_axis_softmax_dropout(
            x.into_dispatch(),
            mask.into_dispatch(),
        ))
    } else {
        softmax(x, D - 1) * mask
    }
}

/// Whether [`softmax_last`] takes the [`LastAxisSoftmax`] path on `device`.
fn has_own_backward(device: &Device) -> bool {
    matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn values(t: Tensor<3>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Same values and the same input gradient as burn's composed softmax, with masked (−∞)
    /// entries as attention has them, under a non-trivial upstream gradient.
    #[test]
    fn matches_burns_softmax_forward_and_backward() {
        let dev = Device::flex().autodiff();
        assert!(has_own_backward(&dev) && has_own_backward(&Device::flex()));
        // fixed pseudo-random data (no device RNG: other tests seed it concurrently)
        let noise = |seed: u64, sd: f32| -> Vec<f32> {
            let mut st = seed;
            (0..3 * 5 * 37)
                .map(|_| {
                    st = st
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((st >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * sd
                })
                .collect()
        };
        let x0 = Tensor::<3>::from_data(TensorData::new(noise(1, 5.0), [3, 5, 37]), &dev);
        let mut mask = vec![false; 3 * 5 * 37];
        for (i, m) in mask.iter_mut().enumerate() {
            *m = i % 37 >= 30 && i % 2 == 0;
        }
        let mask =
            Tensor::<3, burn::tensor::Bool>::from_data(TensorData::new(mask, [3, 5, 37]), &dev);
        let x0 = x0.mask_fill(mask, f32::NEG_INFINITY).detach();
        let w = Tensor::<3>::from_data(TensorData::new(noise(2, 1.0), [3, 5, 37]), &dev);

        // the values of f(x0) and the gradient of Σ w⊙f(x) at x0
        let run = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
            let x = x0.clone().require_grad();
            let y = f(x.clone());
            let grads = (y.clone() * w.clone()).sum().backward();
            let g = x.grad(&grads).unwrap();
            (values(y.inner()), values(g))
        };
        let ours = |x: Tensor<3>| {
            Tensor::from_dispatch(<Dispatch as LastAxisSoftmax>::last_axis_softmax(
                x.into_dispatch(),
            ))
        };
        let (y_ours, g_ours) = run(&ours);
        let (y_ref, g_ref) = run(&|x| softmax(x, 2));
        assert!(max_abs_diff(&y_ours, &y_ref) < 1e-6);
        assert!(
            max_abs_diff(&g_ours, &g_ref) < 1e-5,
            "{}",
            max_abs_diff(&g_ours, &g_ref)
        );
        assert!(g_ours.iter().all(|v| v.is_finite()));
        // rows sum to one; masked entries get no probability and no gradient
        for row in y_ours.chunks(37) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // inference (no autodiff) gives the same values
        let y_plain = values(softmax_last(x0.clone().inner()));
        assert!(max_abs_diff(&y_plain, &y_ref) < 1e-6);

        // with a dropout mask (0 or 1/(1-p)): same as softmax followed by the multiplication
        let m: Vec<f32> = (0..3 * 5 * 37)
            .map(|i| if i % 5 == 1 { 0.0 } else { 1.25 })
            .collect();
        let m = Tensor::<3>::from_data(TensorData::new(m, [3, 5, 37]), &dev);
        let ours = |x: Tensor<3>| {
            Tensor::from_dispatch(<Dispatch as LastAxisSoftmax>::last_axis_softmax_dropout(
                x.into_dispatch(),
                m.clone().into_dispatch(),
            ))
        };
        let (z_ours, g_ours) = run(&ours);
        let (z_ref, g_ref) = run(&|x| softmax(x, 2) * m.clone());
        assert!(max_abs_diff(&z_ours, &z_ref) < 1e-6);
        assert!(
            max_abs_diff(&g_ours, &g_ref) < 1e-5,
            "{}",
            max_abs_diff(&g_ours, &g_ref)
        );
        assert!(z_ours.iter().filter(|&&v| v == 0.0).count() >= 3 * 5 * 37 / 5);
    }
}
