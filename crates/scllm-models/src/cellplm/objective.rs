//! CellPLM's pretraining loss over one set (docs/models/cellplm.md §3.4, §3.6): the GMVAE's
//! latent loss plus the negative-binomial reconstruction of the raw counts
//! (`NBReconstructionLoss` of `CellPLM/objective/zinb.py`, `dae=True`).
//!
//! - GMVAE (`GMVAELatentLayer`): in training the cluster is a Gumbel-softmax sample (soft,
//!   τ = 1) and z = μ + √(σ² + 1e-10)·ε; otherwise the cluster is the argmax one-hot and z = μ
//!   (scllm's deterministic path, §7.4). Loss `w_li·max(λ, mean_cells[log N(z; μ, σ²) −
//!   log N(z; μ_y, σ²_y)]) + w_en·max(λ, log K − H(q(y|x)))`, variances + 1e-8; a term below its
//!   floor λ is the constant λ (no gradient), as Python's `max` of a float and a tensor.
//! - NB: over the cells with a masked entry (every cell when nothing is masked), each cell's NB
//!   mean rescaled to its library size, the NLL summed over the genes of the list; plus, with a
//!   mask, the same NLL over the masked entries only (mean and dispersion zero elsewhere, the
//!   mean rescaled to the masked counts' sum). Averaged over those cells.
//!
//! The input is in gene-list space: the released objective indexes the input and the decoder's
//! output with one gene mask, so genes a file lacks count as observed zeros.

use burn::tensor::activation::{log_softmax, relu, softmax, softplus};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::model::{argmax_one_hot, CellPlm, SetInput};
use crate::error::{ModelError, Result};
use crate::nn;

const NB_EPS: f64 = 1e-10;
const VAR_EPS: f64 = 1e-8;

/// One set's pretraining input.
pub struct PretrainInput<'a> {
    /// What the embedder reads: the cells' entries after masking (`log1p` counts).
    pub input: SetInput<'a>,
    /// The raw counts `[N, genes of the list]`, row-major (unmasked).
    pub counts: &'a [f32],
    /// 1 at a masked entry, `[N, genes]` (`None`: nothing masked).
    pub mask: Option<&'a [f32]>,
}

/// The loss and what it was computed from.
pub struct PretrainOutput {
    pub latent_loss: Tensor<1>,
    pub nb_loss: Tensor<1>,
    /// `[N, genes]`, `[genes]`
    pub mean: Tensor<2>,
    pub disp: Tensor<1>,
}

/// `ln Γ(x)` for x > 0, element-wise and differentiable: Stirling's series at x + 6, shifted
/// back with the recurrence (error < 1e-10 for x > 0 in f64; f32 rounding dominates).
fn lgamma<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let mut shift = x.clone().log();
    for k in 1..6 {
        shift = shift + x.clone().add_scalar(k as f64).log();
    }
    let z = x.add_scalar(6.0);
    let zi = z.clone().recip();
    let zi2 = zi.clone() * zi.clone();
    let series = zi.clone().mul_scalar(1.0 / 12.0)
        - (zi.clone() * zi2.clone()).mul_scalar(1.0 / 360.0)
        + (zi * zi2.clone() * zi2).mul_scalar(1.0 / 1260.0);
    let stirling = (z.clone().sub_scalar(0.5)) * z.clone().log() - z
        + series.add_scalar(0.5 * (2.0 * std::f64::consts::PI).ln());
    stirling - shift
}

/// The NB negative log-likelihood, entry-wise.
fn nb_nll(truth: Tensor<2>, mean: Tensor<2>, disp: Tensor<2>) -> Tensor<2> {
    let t1 = lgamma(disp.clone().add_scalar(NB_EPS)) + lgamma(truth.clone().add_scalar(1.0))
        - lgamma(truth.clone() + disp.clone().add_scalar(NB_EPS));
    let t2 = (disp.clone() + truth.clone())
        * (mean.clone() / disp.clone().add_scalar(NB_EPS))
            .add_scalar(1.0)
            .log()
        + truth * (disp.add_scalar(NB_EPS).log() - mean.add_scalar(NB_EPS).log());
    t1 + t2
}

/// `mean` rescaled so each row sums to `truth`'s row sum.
fn to_library_size(mean: Tensor<2>, truth: &Tensor<2>) -> Tensor<2> {
    let s = mean.clone().sum_dim(1);
    mean / s * truth.clone().sum_dim(1)
}

/// `log N(x; mu, var)` summed over the last axis, `[N]`.
fn log_normal(x: Tensor<2>, mu: Tensor<2>, var: Tensor<2>) -> Tensor<1> {
    let var = var.add_scalar(VAR_EPS);
    let [n, _] = x.dims();
    let e = var.clone().log() + (x - mu).powi_scalar(2) / var;
    e.add_scalar((2.0 * std::f64::consts::PI).ln())
        .sum_dim(1)
        .mul_scalar(-0.5)
        .reshape([n])
}

/// `max(floor, t)` as the reference's Python `max`: `t` when it is larger, else the constant.
fn floor_at(t: Tensor<1>, floor: f64, dev: &Device) -> Result<Tensor<1>> {
    let v: Vec<f32> = t
        .clone()
        .detach()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
    Ok(if (v[0] as f64) > floor {
        t
    } else {
        Tensor::from_data(TensorData::new(vec![floor as f32], [1]), dev)
    })
}

impl CellPlm {
    /// The pretraining loss of one set (training mode draws the GMVAE's noise).
    pub fn pretrain_loss(&self, p: &PretrainInput, dev: &Device) -> Result<PretrainOutput> {
        let (g, prior, decoder) = match (&self.gmvae, &self.gmvae_prior, &self.decoder) {
            (Some(g), Some(pr), Some(d)) => (g, pr, d),
            _ => {
                return Err(ModelError::Invalid(
                    "this CellPLM model has no decoder or GMVAE prior to pretrain".into(),
                ))
            }
        };
        let n = p.input.genes.len();
        let genes = decoder.n_genes();
        if p.counts.len() != n * genes || p.mask.is_some_and(|m| m.len() != n * genes) {
            return Err(ModelError::Invalid(format!(
                "pretraining counts and mask must be [{n} cells, {genes} genes]"
            )));
        }
        let (_, _, h) = self.pre_latent(&p.input, dev)?;
        let training = nn::is_training(&self.embedder.dropout, &h);
        let logits = g.cluster_logits.forward(h.clone());
        let k = self.n_clusters();
        let y = if training {
            // Gumbel(0, 1) noise, as `GumbelSoftmax.sample_gumbel`
            let u = Tensor::<2>::random([n, k], Distribution::Default, dev);
            let gumbel = u
                .add_scalar(1e-20)
                .log()
                .neg()
                .add_scalar(1e-20)
                .log()
                .neg();
            softmax(logits.clone() + gumbel, 1)
        } else {
            argmax_one_hot(&logits, dev)?
        };
        let t = relu(g.qzyx_hidden.forward(Tensor::cat(vec![h, y.clone()], 1)));
        let mu = g.qzyx_mu.forward(t.clone());
        let var = softplus(prior.qzyx_var.forward(t), 1.0);
        let z = if training {
            let eps = Tensor::<2>::random(mu.shape(), Distribution::Normal(0.0, 1.0), dev);
            mu.clone() + var.clone().add_scalar(1e-10).sqrt() * eps
        } else {
            mu.clone()
        };
        let y_mu = prior.y_mu.forward(y.clone());
        let y_var = softplus(prior.y_var.forward(y), 1.0);
        let gauss =
            (log_normal(z.clone(), mu.clone(), var) - log_normal(z.clone(), y_mu, y_var)).mean();
        let prob = softmax(logits.clone(), 1);
        let entropy = (prob * log_softmax(logits, 1)).sum_dim(1).mean().neg();
        let cat = entropy.neg().add_scalar((k as f64).ln()).reshape([1]);
        let latent_loss = floor_at(gauss, prior.lamda, dev)?.mul_scalar(prior.w_li)
            + floor_at(cat, prior.lamda, dev)?.mul_scalar(prior.w_en);

        let (mean, disp) = decoder.forward(if training { z } else { mu });
        let truth = Tensor::<2>::from_data(TensorData::new(p.counts.to_vec(), [n, genes]), dev);
        let disp2 = disp.clone().reshape([1, genes]).repeat_dim(0, n);
        let (rows, mask) = match p.mask {
            Some(m) => {
                let rows: Vec<i64> = (0..n)
                    .filter(|&i| m[i * genes..(i + 1) * genes].iter().any(|&v| v > 0.0))
                    .map(|i| i as i64)
                    .collect();
                let mask = Tensor::<2>::from_data(TensorData::new(m.to_vec(), [n, genes]), dev);
                (rows, Some(mask))
            }
            None => ((0..n as i64).collect(), None),
        };
        if rows.is_empty() {
            return Err(ModelError::Invalid(
                "a pretraining set with a mask needs at least one masked cell".into(),
            ));
        }
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows.clone(), [rows.len()]), dev);
        let pick = |t: Tensor<2>| t.select(0, idx.clone());
        let truth_r = pick(truth.clone());
        let mut nll = nb_nll(
            truth_r.clone(),
            to_library_size(pick(mean.clone()), &truth_r),
            pick(disp2.clone()),
        );
        if let Some(mask) = mask {
            let tm = pick(truth * mask.clone());
            let mm = to_library_size(pick(mean.clone() * mask.clone()), &tm);
            nll = nll + nb_nll(tm, mm, pick(disp2 * mask));
        }
        let nb_loss = nll.sum_dim(1).mean();
        Ok(PretrainOutput {
            latent_loss,
            nb_loss,
            mean,
            disp,
        })
    }
}
