//! CellPLM's pretraining parts (docs/models/cellplm.md §3.4-3.5): the GMVAE's variance and prior
//! (`latent.layers.1.inference.inference_qzyx.2.var`, `y_mu`, `y_var`) and the NB-MLP decoder
//! (`decoder.*`, `NBMLPDecoder` of `CellPLM/decoder/zinb.py`): hidden blocks Linear → PReLU →
//! Dropout → GroupNorm, each followed by its covariate tables' contribution, then the
//! negative-binomial head (`dec_1` + ReLU, `dec_mean` with `clamp(exp, 1e-5, 1e6)`, a gene-wise
//! `dec_disp` with `clamp(exp, 1e-4, 1e4)`).

use burn::module::{Module, Param};
use burn::nn::Dropout;

use crate::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::norm::{GroupNorm, GROUPS};
use crate::nn::{self, dropout::drop};

/// `nn.PReLU()`: one slope for every channel (init 0.25).
#[derive(Module, Debug)]
pub struct PRelu {
    pub weight: Param<Tensor<1>>,
}

impl PRelu {
    pub fn new(dev: &Device) -> Self {
        PRelu {
            weight: Param::from_tensor(Tensor::full([1], 0.25, dev)),
        }
    }
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let a = self.weight.val().reshape([1, 1]);
        relu(x.clone()) + (x.clone() - relu(x)) * a
    }
}

/// The GMVAE parts only training reads, with the loss weights of the config.
#[derive(Module, Debug)]
pub struct GmvaePrior {
    /// `inference_qzyx.2.var` (softplus of it is the variance)
    pub qzyx_var: Linear,
    /// `y_mu`, `y_var`: the prior of z given the cluster.
    pub y_mu: Linear,
    pub y_var: Linear,
    /// `w_li`, `w_en`, `lamda` (`OmicsFormer` defaults 1, 1, 0.5; the release 5, 5, 5).
    pub w_li: f64,
    pub w_en: f64,
    pub lamda: f64,
}

/// `decoder.covariate_layers.{i}.{name}`: `Embedding` → PReLU → GroupNorm. Without covariate
/// labels (scllm's input) the reference feeds the table's row sum, detached.
#[derive(Module, Debug)]
pub struct Covariate {
    pub table: Param<Tensor<2>>,
    pub prelu: PRelu,
    pub norm: GroupNorm,
}

/// `decoder.layers.{i}`.
#[derive(Module, Debug)]
pub struct DecoderBlock {
    /// `.0`
    pub linear: Linear,
    /// `.1`
    pub prelu: PRelu,
    /// `.2`
    pub dropout: Dropout,
    /// `.3`
    pub norm: GroupNorm,
    /// `decoder.covariate_layers.{i}`, as `(name, layer)` in the reference's order (batch,
    /// dataset, platform).
    pub covariates: Vec<Covariate>,
    #[module(skip)]
    pub covariate_names: Vec<String>,
}

/// `NBMLPDecoder`.
#[derive(Module, Debug)]
pub struct NbDecoder {
    pub blocks: Vec<DecoderBlock>,
    /// `out_layer.dec_1`
    pub dec_1: Linear,
    /// `out_layer.dec_mean.0`
    pub dec_mean: Linear,
    /// `out_layer.dec_disp` `[genes]`
    pub dec_disp: Param<Tensor<1>>,
}

/// The sizes of the pretraining parts.
#[derive(Clone, Debug)]
pub struct DecoderShape {
    pub hidden: usize,
    /// Hidden blocks (`dec_layers - 1`).
    pub blocks: usize,
    /// `dec_1`'s width (128 in the reference).
    pub n_dec_1: usize,
    /// Covariate tables per block: `(name, rows)`.
    pub covariates: Vec<(String, usize)>,
    pub w_li: f64,
    pub w_en: f64,
    pub lamda: f64,
}

/// `NB`'s `dec_1` width.
pub const N_DEC_1: usize = 128;

impl NbDecoder {
    pub fn new(z: usize, genes: usize, s: &DecoderShape, dropout: f64, dev: &Device) -> Self {
        let blocks = (0..s.blocks)
            .map(|i| DecoderBlock {
                linear: nn::linear(if i == 0 { z } else { s.hidden }, s.hidden, true, dev),
                prelu: PRelu::new(dev),
                dropout: nn::dropout(dropout),
                norm: GroupNorm::new(s.hidden, GROUPS, dev),
                covariates: s
                    .covariates
                    .iter()
                    .map(|(_, rows)| Covariate {
                        table: Param::from_tensor(Tensor::random(
                            [*rows, s.hidden],
                            burn::tensor::Distribution::Normal(0.0, 1.0),
                            dev,
                        )),
                        prelu: PRelu::new(dev),
                        norm: GroupNorm::new(s.hidden, GROUPS, dev),
                    })
                    .collect(),
                covariate_names: s.covariates.iter().map(|(n, _)| n.clone()).collect(),
            })
            .collect();
        let last = if s.blocks == 0 { z } else { s.hidden };
        NbDecoder {
            blocks,
            dec_1: nn::linear(last, s.n_dec_1, true, dev),
            dec_mean: nn::linear(s.n_dec_1, genes, true, dev),
            dec_disp: Param::from_tensor(Tensor::random(
                [genes],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                dev,
            )),
        }
    }

    /// The NB mean `[N, genes]` and dispersion `[genes]` of latents `z` `[N, latent]`.
    pub fn forward(&self, z: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        let mut x = z;
        for b in &self.blocks {
            x = b
                .norm
                .forward(drop(&b.dropout, b.prelu.forward(b.linear.forward(x))));
            for c in &b.covariates {
                let [_, h] = c.table.dims();
                let sum = c.table.val().detach().sum_dim(0).reshape([1, h]);
                x = x + c.norm.forward(c.prelu.forward(sum));
            }
        }
        let h = relu(self.dec_1.forward(x));
        let mean = self.dec_mean.forward(h).exp().clamp(1e-5, 1e6);
        let disp = self.dec_disp.val().exp().clamp(1e-4, 1e4);
        (mean, disp)
    }

    pub fn n_genes(&self) -> usize {
        self.dec_disp.lazy_shape()[0]
    }
}
