//! The norms of CellPLM (`create_norm` of `CellPLM/utils/__init__.py`): GroupNorm over each
//! cell's channels, shared by the embedder and the decoder, and the plain normalisation the
//! LayerNorms reuse.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

/// PyTorch's LayerNorm / GroupNorm epsilon.
pub const NORM_EPS: f64 = 1e-5;
/// `create_norm('groupnorm', n)`: `nn.GroupNorm(4, n)` (`CellPLM/utils/__init__.py`).
pub const GROUPS: usize = 4;

/// `(x − mean) / √(var + eps)` over the last axis (biased variance, as PyTorch's norms).
pub fn normalize_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let mean = x.clone().mean_dim(D - 1);
    let xc = x - mean;
    let var = xc.clone().powi_scalar(2).mean_dim(D - 1);
    xc / var.add_scalar(NORM_EPS).sqrt()
}

/// `nn.GroupNorm(groups, d)` over `[N, d]`: each cell's channels in `groups` consecutive blocks,
/// each normalised on its own, then the affine `weight` and `bias`.
#[derive(Module, Debug)]
pub struct GroupNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub groups: usize,
}

impl GroupNorm {
    pub fn new(d: usize, groups: usize, dev: &Device) -> Self {
        GroupNorm {
            weight: Param::from_tensor(Tensor::ones([d], dev)),
            bias: Param::from_tensor(Tensor::zeros([d], dev)),
            groups,
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [n, d] = x.dims();
        let g = normalize_last(x.reshape([n, self.groups, d / self.groups])).reshape([n, d]);
        g * self.weight.val().reshape([1, d]) + self.bias.val().reshape([1, d])
    }
}
