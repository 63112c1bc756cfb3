//! Train/validation splits: every cell with a given obs value held out (`--val-by donor=1015`,
//! the honest split for new donors), or a stratified random fraction with a seed; and what the
//! validation cells, never trained on, say about the fine-tuned model's confidence
//! ([`validation_calibration`]: the `Unknown` threshold and the conformal scores `annotate`
//! reads from the adapter).

use burn::tensor::Device;
use scllm_eval::class_scores::ScoreKind;
use scllm_eval::conformal::{calibration_uniforms, true_scores};
use scllm_eval::novelty::{auto_threshold, UNKNOWN_QUANTILE};
use scllm_models::peft::file::ValidationCalibration;
use scllm_models::TokenModel;

use crate::error::{invalid, Result};
use crate::labelled::AnnotationData;
use crate::predict::{predict, PredictOptions};
use crate::sampler::SplitMix64;

#[derive(Clone, Debug, PartialEq)]
pub enum SplitSpec {
    /// All cells whose `obs[column]` equals `value` are validation.
    Column { column: String, value: String },
    /// `fraction` of each class (at least one cell of every class with two or more) is
    /// validation, drawn with `seed`.
    Stratified { fraction: f64, seed: u64 },
}

impl SplitSpec {
    /// `--val-by COLUMN=VALUE`.
    pub fn parse_val_by(s: &str) -> Result<Self> {
        match s.split_once('=') {
            Some((c, v)) if !c.trim().is_empty() && !v.trim().is_empty() => Ok(SplitSpec::Column {
                column: c.trim().to_string(),
                value: v.trim().to_string(),
            }),
            _ => Err(invalid(format!(
                "--val-by expects COLUMN=VALUE (e.g. donor=1015), got \"{s}\""
            ))),
        }
    }

    pub fn stratified(fraction: f64, seed: u64) -> Self {
        SplitSpec::Stratified { fraction, seed }
    }
}

/// Indices into [`AnnotationData::cells`].
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    /// One line for the log.
    pub description: String,
    /// Things worth printing (classes only in validation, ...).
    pub warnings: Vec<String>,
}

impl AnnotationData {
    /// Split the labelled cells into training and validation.
    pub fn split(&self, spec: &SplitSpec) -> Result<Split> {
        let n = self.cells.len();
        let (train, val, description) = match spec {
            SplitSpec::Column { column, value } => {
                let col = self.obs.column(column).ok_or_else(|| {
                    invalid(format!(
                        "{}: --val-by: obs has no column `{column}`. Columns present: {}",
                        self.file.display(),
                        self.obs.column_names().join(", ")
                    ))
                })?;
                let vals = col.to_strings();
                let (mut train, mut val) = (Vec::new(), Vec::new());
                for (i, v) in vals.iter().enumerate() {
                    if v.as_deref() == Some(value.as_str()) {
                        val.push(i);
                    } else {
                        train.push(i);
                    }
                }
                if val.is_empty() {
                    let mut present: Vec<String> = vals.into_iter().flatten().collect();
                    present.sort();
                    present.dedup();
                    let shown: Vec<String> = present.iter().take(20).cloned().collect();
                    return Err(invalid(format!(
                        "{}: --val-by {column}={value}: no labelled cell has that value, so the validation set would be empty. Values present: {}{}",
                        self.file.display(),
                        shown.join(", "),
                        if present.len() > 20 { ", ..." } else { "" }
                    )));
                }
                if train.is_empty() {
                    return Err(invalid(format!(
                        "{}: --val-by {column}={value}: every labelled cell has that value, so nothing is left to train on; hold out a value that covers only part of the cells",
                        self.file.display()
                    )));
                }
                let d = format!(
                    "validation: obs['{column}'] == {value} ({} cells), training: the other {} cells",
                    val.len(),
                    train.len()
                );
                (train, val, d)
            }
            SplitSpec::Stratified { fraction, seed } => {
                if fraction.is_nan() || *fraction <= 0.0 || *fraction >= 1.0 {
                    return Err(invalid(format!(
                        "the validation fraction must lie in (0, 1), got {fraction}"
                    )));
                }
                let mut rng = SplitMix64::new(*seed);
                let k = self.classes.len();
                let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
                for (i, &l) in self.labels.iter().enumerate() {
                    by_class[l as usize].push(i);
                }
                let (mut train, mut val) = (Vec::new(), Vec::new());
                for idx in by_class.iter_mut() {
                    rng.shuffle(idx);
                    let nc = idx.len();
                    let mut nv = (fraction * nc as f64).round() as usize;
                    if nc >= 2 {
                        nv = nv.clamp(1, nc - 1);
                    } else {
                        nv = 0;
                    }
                    val.extend_from_slice(&idx[..nv]);
                    train.extend_from_slice(&idx[nv..]);
                }
                train.sort_unstable();
                val.sort_unstable();
                if train.is_empty() || val.is_empty() {
                    return Err(invalid(format!(
                        "{}: a stratified split with fraction {fraction} of {n} cells leaves an empty {} set",
                        self.file.display(),
                        if train.is_empty() { "training" } else { "validation" }
                    )));
                }
                let d = format!(
                    "validation: stratified {:.0}% (seed {seed}): {} cells, training {} cells",
                    fraction * 100.0,
                    val.len(),
                    train.len()
                );
                (train, val, d)
            }
        };
        let tc = self.class_counts(Some(&train));
        let vc = self.class_counts(Some(&val));
        let mut warnings = Vec::new();
        let only_val: Vec<String> = (0..self.classes.len())
            .filter(|&c| tc[c] == 0 && vc[c] > 0)
            .map(|c| format!("{} ({} cells)", self.classes[c], vc[c]))
            .collect();
        if !only_val.is_empty() {
            warnings.push(format!(
                "classes only in validation (the model cannot learn them): {}",
                only_val.join(", ")
            ));
        }
        Ok(Split {
            train,
            val,
            description,
            warnings,
        })
    }
}

/// Predict the validation cells of `split` with the fine-tuned `model` and keep what
/// `annotate --unknown-below auto` and `--coverage` need: the [`UNKNOWN_QUANTILE`] quantile of
/// their confidence (the `Unknown` threshold; scllm-eval's `novelty::auto_threshold`) and, per
/// class, the randomised APS scores of their true labels (scllm-eval's `conformal`; draws from
/// `seed`). `None` without validation cells.
pub fn validation_calibration<M: TokenModel>(
    model: &M,
    data: &AnnotationData,
    split: &Split,
    opts: &PredictOptions,
    dev: &Device,
    seed: u64,
) -> Result<Option<ValidationCalibration>> {
    if split.val.is_empty() {
        return Ok(None);
    }
    let cells: Vec<_> = split.val.iter().map(|&i| data.cells[i].clone()).collect();
    let pr = predict(model, &cells, opts, dev)?;
    let truth: Vec<u32> = split.val.iter().map(|&i| data.labels[i]).collect();
    calibration_of(&data.classes, &pr, &truth, &split.description, seed).map(Some)
}

/// [`validation_calibration`] from the predictions `pr` of validation cells whose labels are
/// `truth` (`description`: the split, for the rule's text).
pub fn calibration_of(
    classes: &[String],
    pr: &crate::Prediction,
    truth: &[u32],
    description: &str,
    seed: u64,
) -> Result<ValidationCalibration> {
    let t = auto_threshold(&pr.confidence, UNKNOWN_QUANTILE).map_err(|e| invalid(e.to_string()))?;
    let truth: Vec<Option<u32>> = truth.iter().map(|&c| Some(c)).collect();
    let mut per_class = true_scores(
        classes,
        ScoreKind::Probability,
        &pr.probabilities,
        &truth,
        &calibration_uniforms(truth.len(), seed),
    )
    .map_err(|e| invalid(e.to_string()))?;
    for v in per_class.iter_mut() {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    Ok(ValidationCalibration {
        n_cells: t.n_cells,
        unknown_quantile: t.quantile,
        unknown_below: t.threshold,
        rule: format!("fine-tuning validation cells ({description}): {}", t.rule),
        class_scores: per_class,
    })
}
