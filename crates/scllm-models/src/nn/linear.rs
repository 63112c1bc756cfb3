//! PyTorch's `Linear` as every family holds it: burn's parameters and product, plus weights
//! converted for a reduced inference precision ([`super::precision`]) when the model was set to
//! one. The converted copy is made once ([`Linear::set_precision`], after loading) and used only
//! on the plain (non-autodiff) flex device; training, other backends and f32 use burn's product.

use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata};
use burn::module::{Module, Param};
use burn::tensor::module::linear;
use burn::tensor::{DType, Tensor, TensorData};

use super::precision::{LowWeights, Precision, MIN_INPUTS};

#[derive(Module, Debug)]
pub struct Linear {
    /// `[d_in, d_out]` (burn's layout; PyTorch stores `[d_out, d_in]`).
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    /// The weights converted for a reduced precision (see [`Linear::set_precision`]).
    #[module(skip)]
    pub low: Option<Arc<LowWeights>>,
}

impl From<burn::nn::Linear> for Linear {
    fn from(l: burn::nn::Linear) -> Self {
        Linear {
            weight: l.weight,
            bias: l.bias,
            low: None,
        }
    }
}

impl Linear {
    /// `x W + b` over the last axis of `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(low) = &self.low {
            if applies(&x, low) {
                return Tensor::from_dispatch(
                    <Dispatch as LowPrecisionLinear>::low_precision_linear(
                        x.into_dispatch(),
                        low.clone(),
                    ),
                );
            }
        }
        linear(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }

    /// Converts the current weights for inference in `precision` (f32 drops a converted copy).
    /// Layers with fewer than [`MIN_INPUTS`] inputs stay f32. The parameters themselves are
    /// untouched: training, saving and the load report see the f32 weights. Weights changed
    /// afterwards (an optimizer step) need a new call.
    pub fn set_precision(&mut self, precision: Precision) {
        let [d_in, d_out] = self.weight.dims();
        self.low = if precision == Precision::F32 || !self.converts() {
            None
        } else {
            let host = |d: TensorData| {
                d.convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32 after convert")
            };
            let w = host(self.weight.val().into_data());
            let b = self.bias.as_ref().map(|b| host(b.val().into_data()));
            LowWeights::convert(&w, b, d_in, d_out, precision).map(Arc::new)
        };
    }

    /// Whether [`Self::set_precision`] converts this layer (it has at least [`MIN_INPUTS`]
    /// inputs); `convert --precision` stores exactly these weights reduced.
    pub fn converts(&self) -> bool {
        self.weight.dims()[0] >= MIN_INPUTS
    }

    /// The precision this layer's products run in at inference.
    pub fn precision(&self) -> Precision {
        self.low.as_ref().map_or(Precision::F32, |l| l.precision())
    }
}

/// The converted product applies to `x`: a plain flex f32 tensor (no autodiff) whose last axis
/// is the layer's input.
fn applies<const D: usize>(x: &Tensor<D>, low: &LowWeights) -> bool {
    !x.is_autodiff()
        && x.dtype() == DType::F32
        && x.dims()[D - 1] == low.d_in()
        && matches!(
            x.device().as_dispatch().clone().inner(),
            DispatchDevice::Flex(_)
        )
}

#[backend_extension(Flex)]
pub trait LowPrecisionLinear: Backend {
    /// `x W + b` over the last axis of `x` with the converted weights `low`.
    fn low_precision_linear(x: FloatTensor<Self>, low: Arc<LowWeights>) -> FloatTensor<Self>;
}

impl LowPrecisionLinear for Flex {
    fn low_precision_linear(x: FlexTensor, low: Arc<LowWeights>) -> FlexTensor {
        let x = if x.is_contiguous() && x.layout().start_offset() == 0 {
            x
        } else {
            x.to_contiguous()
        };
        let mut shape = x.shape().to_vec();
        let rows = shape[..shape.len() - 1].iter().product();
        let out = low.forward(x.storage::<f32>(), rows);
        *shape.last_mut().expect("rank ≥ 1") = low.d_out();
        FlexTensor::from_data(TensorData::new(out, shape))
    }
}
