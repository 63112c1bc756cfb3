//! What a method's confidence and per-class scores are worth, per method on the main split:
//! calibration of its probabilities (ECE, reliability bins), novel-type results (AUROC / average
//! precision of `1 - confidence`, the `Unknown` threshold picked on held-out training cells and
//! its recall and false-`Unknown` rate) and conformal prediction sets calibrated on the held-out
//! cells. The computations are `scllm-eval`'s ([`scllm_eval::novelty`],
//! [`scllm_eval::calibration`], [`scllm_eval::conformal`]); here they meet the benchmark's data.

use std::collections::BTreeMap;

use scllm_eval::calibration::{calibration, Calibration, ECE_BINS};
use scllm_eval::class_scores::ScoreKind;
use scllm_eval::conformal::{
    calibration_uniforms, conformal_report, query_uniforms, ConformalCalibrator, ConformalReport,
};
use scllm_eval::novelty::{auto_threshold, novel_type_report, NovelTypeReport};

use scllm_eval::baselines::UNKNOWN;
use serde::Serialize;

use crate::method::Predictions;
use crate::Result;

/// How held-out training cells were used (configs with `novel` or `coverage`).
#[derive(Clone, Debug, Serialize)]
pub struct HeldOutSettings {
    pub novel_types: Vec<String>,
    pub n_held_out: usize,
    pub fraction: f64,
    pub unknown_quantile: f64,
    pub threshold_rule: String,
    pub coverage: Option<f64>,
}

/// The uncertainty results of one method.
#[derive(Default)]
pub struct Uncertainty {
    pub calibration: Option<Calibration>,
    pub novel_types: Option<NovelTypeReport>,
    pub conformal: Option<ConformalReport>,
    /// Per query cell: the conformal set's label (a type, `Unknown` or `ambiguous`).
    pub set_labels: Option<Vec<String>>,
    pub notes: Vec<String>,
}

/// What the runner knows beyond the predictions.
pub struct Context<'a> {
    pub truth: &'a [String],
    /// Training classes (the types a method can know).
    pub train_classes: &'a BTreeMap<String, usize>,
    pub novel: &'a [String],
    /// Held-out training cells' labels, in held-out mode.
    pub held_out_truth: Option<&'a [String]>,
    pub unknown_quantile: f64,
    pub coverage: Option<f64>,
    /// Seeds the randomised APS draws.
    pub seed: u64,
}

/// Calibration, novel-type results and conformal sets of `p` (query) and `held` (held-out cells).
pub fn assess(p: &Predictions, held: Option<&Predictions>, cx: &Context) -> Result<Uncertainty> {
    let mut u = Uncertainty::default();
    // calibration: probabilities only, on query cells of types the method was trained on
    if let (Some(conf), Some(ScoreKind::Probability)) =
        (&p.confidence, p.class_scores.as_ref().map(|s| s.kind))
    {
        let known: Vec<usize> = (0..cx.truth.len())
            .filter(|&i| cx.train_classes.contains_key(&cx.truth[i]))
            .collect();
        if !known.is_empty() {
            let c: Vec<f32> = known.iter().map(|&i| conf[i]).collect();
            let ok: Vec<bool> = known.iter().map(|&i| p.labels[i] == cx.truth[i]).collect();
            u.calibration = Some(calibration(&c, &ok, ECE_BINS)?);
        }
    }
    if !cx.novel.is_empty() {
        match &p.confidence {
            Some(conf) => {
                let t = match held.and_then(|h| h.confidence.as_ref()) {
                    Some(hc) => Some(auto_threshold(hc, cx.unknown_quantile)?),
                    None => None,
                };
                u.novel_types = Some(novel_type_report(
                    cx.truth,
                    &p.labels,
                    conf,
                    cx.novel,
                    t.as_ref(),
                    UNKNOWN,
                )?);
            }
            None => u
                .notes
                .push("novel-type results not computed: this method gives no confidence".into()),
        }
    }
    if let (Some(cov), Some(h), Some(ht)) = (cx.coverage, held, cx.held_out_truth) {
        match (&p.class_scores, &h.class_scores) {
            (Some(qs), Some(hs)) => {
                let hu = calibration_uniforms(ht.len(), cx.seed);
                let qu = query_uniforms(cx.truth.len(), cx.seed);
                let cal = ConformalCalibrator::fit_on(hs, ht, &hu, cov)?;
                u.conformal = Some(conformal_report(&cal, &qs.values, &qu, cx.truth)?);
                u.set_labels = Some(
                    cal.sets(&qs.values, &qu)
                        .iter()
                        .map(|s| cal.set_label(s, UNKNOWN))
                        .collect(),
                );
            }
            _ => u
                .notes
                .push("conformal sets not computed: this method gives no per-class scores".into()),
        }
    }
    Ok(u)
}
