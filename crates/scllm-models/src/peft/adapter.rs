//! scPEFT's bottleneck `Adapter` (docs/models/scpeft.md §2).

use crate::nn::Linear;
use burn::module::Module;
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use crate::params::{self, ParamVisitor, Part};

/// `z = D_fc2(GELU(D_fc1(x)))`, returning `x + z` with `skip`, else `scale · z`.
#[derive(Module, Debug)]
pub struct Adapter {
    /// `D_fc1`: Linear(d → bottleneck)
    pub d_fc1: Linear,
    /// `D_fc2`: Linear(bottleneck → d)
    pub d_fc2: Linear,
    pub skip: bool,
    /// Scale of the output without skip (the parallel adapter's 0.5).
    pub scale: f64,
}

impl Adapter {
    /// PyTorch's Linear init (kaiming-uniform a=√5, bias U(±1/√fan_in)), as burn's default.
    pub fn new(d: usize, hidden: usize, skip: bool, scale: f64, dev: &Device) -> Self {
        Adapter {
            d_fc1: crate::nn::linear(d, hidden, true, dev),
            d_fc2: crate::nn::linear(hidden, d, true, dev),
            skip,
            scale,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let z = self.d_fc2.forward(gelu(self.d_fc1.forward(x.clone())));
        if self.skip {
            x + z
        } else {
            z * self.scale
        }
    }

    /// `{key}.D_fc1.*`, `{key}.D_fc2.*` (scPEFT's names).
    pub fn visit(&mut self, key: &str, v: &mut impl ParamVisitor) {
        params::linear(v, &format!("{key}.D_fc1"), Part::Adapter, &mut self.d_fc1);
        params::linear(v, &format!("{key}.D_fc2"), Part::Adapter, &mut self.d_fc2);
    }
}

/// Visit an optional adapter at `key`.
pub fn visit_opt(a: &mut Option<Adapter>, key: &str, v: &mut impl ParamVisitor) {
    if let Some(a) = a {
        a.visit(key, v);
    }
}
