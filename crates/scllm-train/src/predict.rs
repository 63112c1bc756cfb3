//! Predictions of a fine-tuned classifier on the inference device.

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use scllm_models::{BatchInput, TokenModel};
use scllm_tokenize::{pad_batch, TokenizedCell};

use crate::error::{invalid, Result, TrainError};
use crate::sampler::{epoch_batches, SplitMix64};
use crate::trainer::loss::argmax;

/// Per cell, in the input order.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Argmax of the logits (an index into the class list).
    pub class_ids: Vec<u32>,
    /// Softmax probability of the predicted class.
    pub confidence: Vec<f32>,
    /// `<cls>` output of the last layer (not normalised), row-major `[n, dim]`.
    pub embeddings: Vec<f32>,
    pub dim: usize,
    /// Softmax probabilities, row-major `[n, n_classes]`.
    pub probabilities: Vec<f32>,
    pub n_classes: usize,
}

/// Batching of [`predict`].
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// `<pad>` id and value of the tokenizer (`AnnotationData::pad_id` / `pad_value`).
    pub pad_id: u32,
    pub pad_value: f32,
    /// Most cells per forward pass.
    pub batch_size: usize,
    /// Most cells × padded length per forward pass.
    pub max_batch_tokens: usize,
    /// Progress bar on stderr.
    pub progress: bool,
}

impl PredictOptions {
    pub fn new(pad_id: u32, pad_value: f32) -> Self {
        PredictOptions {
            pad_id,
            pad_value,
            batch_size: 64,
            max_batch_tokens: 64 * 2001,
            progress: true,
        }
    }
}

/// Classify `cells` with `model` (put on the inference device with `Module::valid`, so a model
/// straight from training works too). `dev`: the device (autodiff or not; its plain form is used).
/// Batches hold cells of similar length.
pub fn predict<M: TokenModel>(
    model: &M,
    cells: &[TokenizedCell],
    opts: &PredictOptions,
    dev: &Device,
) -> Result<Prediction> {
    let PredictOptions {
        pad_id,
        pad_value,
        batch_size,
        max_batch_tokens,
        progress,
    } = opts.clone();
    if batch_size == 0 {
        return Err(invalid("--batch-size must be at least 1"));
    }
    let dev = dev.clone().without_autodiff();
    let model = model.valid();
    let n = cells.len();
    let lengths: Vec<usize> = cells.iter().map(|c| c.len()).collect();
    let order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(0);
    let batches = epoch_batches(
        &order,
        &lengths,
        batch_size,
        max_batch_tokens,
        true,
        &mut rng,
    );
    let bar = if progress {
        let b = ProgressBar::new(n as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} cells {per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_prefix("predict");
        b
    } else {
        ProgressBar::hidden()
    };
    scllm_eval::progress::follow(&bar, "predict", n as u64);
    let mut class_ids = vec![0u32; n];
    let mut confidence = vec![0f32; n];
    let mut embeddings: Vec<f32> = Vec::new();
    let mut probabilities: Vec<f32> = Vec::new();
    let (mut dim, mut k) = (0usize, 0usize);
    for b in batches {
        scllm_models::interrupt::check()?;
        let refs: Vec<(usize, &TokenizedCell)> = b.iter().map(|&i| (i, &cells[i])).collect();
        let pb = pad_batch(&refs, pad_id, pad_value);
        let input = BatchInput::of(&pb);
        let out = model.classify(&input, &dev)?;
        let [_, kk] = out.logits.dims();
        let [_, d] = out.cell_emb.dims();
        if embeddings.is_empty() {
            dim = d;
            k = kk;
            embeddings = vec![0f32; n * d];
            probabilities = vec![0f32; n * kk];
        }
        let logits = vecf(out.logits)?;
        let emb = vecf(out.cell_emb)?;
        for (r, &cell) in b.iter().enumerate() {
            let row = &logits[r * k..(r + 1) * k];
            let (p, c) = softmax_argmax(row);
            class_ids[cell] = c;
            confidence[cell] = p[c as usize];
            probabilities[cell * k..(cell + 1) * k].copy_from_slice(&p);
            embeddings[cell * dim..(cell + 1) * dim].copy_from_slice(&emb[r * dim..(r + 1) * dim]);
        }
        bar.inc(b.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Prediction {
        class_ids,
        confidence,
        embeddings,
        dim,
        probabilities,
        n_classes: k,
    })
}

/// The softmax of one row of logits (in f64) and its argmax.
pub(crate) fn softmax_argmax(row: &[f32]) -> (Vec<f32>, u32) {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
    let p = row
        .iter()
        .map(|&x| ((x as f64 - m).exp() / z) as f32)
        .collect();
    (p, argmax(row))
}

pub(crate) fn vecf(t: burn::tensor::Tensor<2>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))
}
