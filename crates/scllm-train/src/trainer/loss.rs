//! Cross-entropy (optionally class-weighted, as `torch.nn.CrossEntropyLoss(weight=w)`), its
//! host-side twin for reporting, macro F1, and global gradient-norm clipping.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{Result, TrainError};

pub(crate) fn to_vec(t: Tensor<2>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))
}

pub(crate) fn scalar(t: Tensor<1>) -> Result<f64> {
    let v = t
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))?;
    Ok(v[0] as f64)
}

/// Mean (weighted) cross-entropy on the device: `sum_i w_{y_i} nll_i / sum_i w_{y_i}`, as
/// `torch.nn.CrossEntropyLoss(weight=w)`.
pub(crate) fn ce_loss(
    logits: Tensor<2>,
    targets: &[u32],
    weights: Option<&[f32]>,
    dev: &Device,
) -> Tensor<1> {
    let b = targets.len();
    let logp = log_softmax(logits, 1);
    let idx = Tensor::<2, Int>::from_data(
        TensorData::new(
            targets.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [b, 1],
        ),
        dev,
    );
    let nll = logp.gather(1, idx).reshape([b]).neg();
    match weights {
        None => nll.mean(),
        Some(w) => {
            let wi: Vec<f32> = targets.iter().map(|&t| w[t as usize]).collect();
            let total: f32 = wi.iter().sum();
            let wt = Tensor::<1>::from_data(TensorData::new(wi, [b]), dev);
            (nll * wt).sum().div_scalar(total.max(f32::MIN_POSITIVE))
        }
    }
}

/// Host-side (weighted) cross-entropy and argmax of `[b, k]` logits.
pub(crate) fn host_ce(
    logits: &[f32],
    k: usize,
    targets: &[u32],
    weights: Option<&[f32]>,
) -> (f64, f64, Vec<u32>) {
    let mut num = 0.0;
    let mut den = 0.0;
    let mut pred = Vec::with_capacity(targets.len());
    for (r, &t) in targets.iter().enumerate() {
        let row = &logits[r * k..(r + 1) * k];
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        let w = weights.map(|w| w[t as usize] as f64).unwrap_or(1.0);
        num += w * (lse - row[t as usize] as f64);
        den += w;
        pred.push(argmax(row));
    }
    (num, den, pred)
}

/// scikit-learn's `f1_score(average="macro")`: over the classes present in the truth or the
/// predictions, an undefined F1 counted as 0.
pub fn macro_f1(truth: &[u32], pred: &[u32], n_classes: usize) -> f64 {
    let mut tp = vec![0usize; n_classes];
    let mut nt = vec![0usize; n_classes];
    let mut np = vec![0usize; n_classes];
    for (&t, &p) in truth.iter().zip(pred) {
        nt[t as usize] += 1;
        np[p as usize] += 1;
        if t == p {
            tp[t as usize] += 1;
        }
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for c in 0..n_classes {
        if nt[c] + np[c] == 0 {
            continue;
        }
        n += 1;
        sum += 2.0 * tp[c] as f64 / (nt[c] + np[c]) as f64;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

pub(crate) fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (j, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = j;
        }
    }
    best as u32
}

/// `clip_grad_norm_`: scale all gradients by `max / max(norm, max)` where `norm` is the L2 norm of
/// all gradients together.
pub(crate) fn clip_global_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> Result<f64> {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        acc: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(p.id) {
                let s = g.square().sum();
                self.acc = Some(match self.acc.take() {
                    None => s,
                    Some(a) => a + s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        coef: f32,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(p.id) {
                self.grads.register::<D>(p.id, g.mul_scalar(self.coef));
            }
        }
    }
    let mut n = Norm {
        grads: &*grads,
        acc: None,
    };
    model.visit(&mut n);
    let Some(acc) = n.acc else { return Ok(0.0) };
    let norm = scalar(acc)?.sqrt();
    let coef = max_norm as f64 / (norm + 1e-6);
    if coef < 1.0 {
        model.visit(&mut Scale {
            grads,
            coef: coef as f32,
        });
    }
    Ok(norm)
}
