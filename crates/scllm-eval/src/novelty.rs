//! Novel cell types: how well a method's confidence tells cells of types its reference lacks
//! ("novel") from cells of types it was trained on ("known"), and the `Unknown` threshold picked
//! without looking at the query.
//!
//! * Ranking: novel cells are the positive class and each cell is scored by `1 - confidence`
//!   (higher = more likely novel). [`roc_auc`] and [`average_precision`] are scikit-learn's
//!   `roc_auc_score` and `average_precision_score` on those scores (ties handled as sklearn does:
//!   one ROC / precision-recall point per distinct score).
//! * Threshold ([`auto_threshold`]): the `q`-quantile (numpy's default linear interpolation,
//!   `np.quantile(conf, q)`) of the confidence of held-out reference cells, i.e. cells of known
//!   types the model was not trained on. A cell whose confidence is below it is `Unknown`. On
//!   cells like the held-out ones this flags about a fraction `q` of known cells (the target
//!   false-`Unknown` rate); the default is [`UNKNOWN_QUANTILE`] = 0.05. No query label is used.
//! * [`novel_type_report`]: known-type accuracy and macro-F1 (before and after the threshold),
//!   novel recall as `Unknown`, false-`Unknown` rate, AUROC and average precision.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::{classification_report, invalid, Result};

/// Default quantile of held-out confidences used as the `Unknown` threshold.
pub const UNKNOWN_QUANTILE: f64 = 0.05;

/// The rule [`auto_threshold`] applies, in words (written to reports and `uns`).
pub const THRESHOLD_RULE: &str = "the q-quantile (numpy linear interpolation) of the confidence of held-out reference cells of known types; cells below it are Unknown";

/// `--unknown-below`: a fixed confidence, or `auto` (picked on held-out reference cells).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnknownBelow {
    Fixed(f64),
    Auto,
}

impl std::str::FromStr for UnknownBelow {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(UnknownBelow::Auto);
        }
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(UnknownBelow::Fixed)
            .ok_or_else(|| {
                format!("`{s}`: give a number (e.g. 0.5) or `auto` (the threshold is then picked on held-out reference cells)")
            })
    }
}

/// numpy's `np.quantile(v, q)` with the default `linear` method (same operations, so the same
/// bits for the same inputs). `None` for an empty input.
pub fn quantile_linear(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let h = (n - 1) as f64 * q;
    let lo = h.floor();
    let g = h - lo;
    let lo = (lo as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (s[lo], s[hi]);
    let d = b - a;
    // numpy's `_lerp`: from the upper end when gamma >= 0.5
    Some(if g >= 0.5 {
        b - d * (1.0 - g)
    } else {
        a + d * g
    })
}

/// A threshold picked on held-out reference cells.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AutoThreshold {
    /// Cells whose confidence is below this are `Unknown`.
    pub threshold: f64,
    /// The quantile of held-out confidences used.
    pub quantile: f64,
    /// Held-out reference cells it was computed on.
    pub n_cells: usize,
    pub rule: String,
}

/// The `q`-quantile of `held_out_confidence` (see the module docs).
pub fn auto_threshold(held_out_confidence: &[f32], q: f64) -> Result<AutoThreshold> {
    if !(0.0..=1.0).contains(&q) {
        return Err(invalid(format!(
            "unknown quantile {q}: must be between 0 and 1 (e.g. 0.05)"
        )));
    }
    let v: Vec<f64> = held_out_confidence
        .iter()
        .map(|&c| c as f64)
        .filter(|c| c.is_finite())
        .collect();
    let t = quantile_linear(&v, q)
        .ok_or_else(|| invalid("no held-out reference cell to pick the Unknown threshold on"))?;
    Ok(AutoThreshold {
        threshold: t,
        quantile: q,
        n_cells: v.len(),
        rule: THRESHOLD_RULE.to_string(),
    })
}

/// Scores sorted descending with the positives counted at each distinct score:
/// `(true positives, false positives)` cumulated, one entry per distinct score.
fn curve(score: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in idx.iter().enumerate() {
        if positive[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last = k + 1 == idx.len() || score[idx[k + 1]] != score[i];
        if last {
            out.push((tp, fp));
        }
    }
    out
}

/// scikit-learn's `roc_auc_score(positive, score)`; `None` when one class is absent.
pub fn roc_auc(score: &[f64], positive: &[bool]) -> Option<f64> {
    let c = curve(score, positive);
    let (p, n) = *c.last()?;
    if p == 0.0 || n == 0.0 {
        return None;
    }
    // trapezoids over (fpr, tpr), starting at (0, 0)
    let (mut x0, mut y0, mut area) = (0.0, 0.0, 0.0);
    for &(tp, fp) in &c {
        let (x, y) = (fp / n, tp / p);
        area += (x - x0) * (y + y0) / 2.0;
        x0 = x;
        y0 = y;
    }
    Some(area)
}

/// scikit-learn's `average_precision_score(positive, score)`: `Σ (R_i - R_{i-1}) P_i` over
/// distinct scores, descending. `None` without positives.
pub fn average_precision(score: &[f64], positive: &[bool]) -> Option<f64> {
    let c = curve(score, positive);
    let (p, _) = *c.last()?;
    if p == 0.0 {
        return None;
    }
    let (mut r0, mut ap) = (0.0, 0.0);
    for &(tp, fp) in &c {
        let r = tp / p;
        let prec = tp / (tp + fp);
        ap += (r - r0) * prec;
        r0 = r;
    }
    Some(ap)
}

/// Results with the threshold applied.
#[derive(Clone, Debug, Serialize)]
pub struct AtThreshold {
    pub threshold: AutoThreshold,
    /// Novel cells labelled `Unknown` (confidence below the threshold) / novel cells.
    pub novel_recall: Option<f64>,
    /// Known cells labelled `Unknown` / known cells.
    pub false_unknown_rate: Option<f64>,
    /// On known cells, `Unknown` counted as wrong.
    pub known_accuracy: Option<f64>,
    pub known_f1_macro: Option<f64>,
    pub n_unknown: usize,
}

/// Novel-type results of one method on one query.
#[derive(Clone, Debug, Serialize)]
pub struct NovelTypeReport {
    pub novel_types: Vec<String>,
    pub n_novel: usize,
    pub n_known: usize,
    /// What ranks cells as novel.
    pub score: String,
    /// On known-type cells, the method's own labels (no rejection).
    pub known_accuracy: Option<f64>,
    /// Macro-F1 over the known types present among the known cells (sklearn's `f1_score` with
    /// `labels` = those types), no rejection.
    pub known_f1_macro: Option<f64>,
    /// Novel (positive) vs known by `1 - confidence`; `None` when either group is empty.
    pub auroc: Option<f64>,
    pub average_precision: Option<f64>,
    /// With the threshold picked on held-out reference cells, when there is one.
    pub at_threshold: Option<AtThreshold>,
}

/// Accuracy and macro-F1 (over the truth's classes) of `pred` against `truth`.
fn acc_f1(truth: &[&str], pred: &[&str]) -> Result<(Option<f64>, Option<f64>)> {
    if truth.is_empty() {
        return Ok((None, None));
    }
    let r = classification_report(truth, pred)?;
    let known: BTreeSet<&str> = truth.iter().copied().collect();
    let f1s: Vec<f64> = r
        .per_class
        .iter()
        .filter(|row| known.contains(row.label.as_str()))
        .map(|row| row.f1)
        .collect();
    Ok((
        Some(r.accuracy),
        Some(f1s.iter().sum::<f64>() / f1s.len() as f64),
    ))
}

/// The novel-type report of one method: `truth` and `pred` (the method's labels, no rejection)
/// and `confidence` per query cell; `novel` the types withheld from training; `threshold` the one
/// picked on held-out reference cells.
pub fn novel_type_report(
    truth: &[String],
    pred: &[String],
    confidence: &[f32],
    novel: &[String],
    threshold: Option<&AutoThreshold>,
    unknown_label: &str,
) -> Result<NovelTypeReport> {
    if truth.len() != pred.len() || truth.len() != confidence.len() {
        return Err(invalid(format!(
            "novel-type report: {} truth labels, {} predictions, {} confidences",
            truth.len(),
            pred.len(),
            confidence.len()
        )));
    }
    let nov: BTreeSet<&str> = novel.iter().map(|s| s.as_str()).collect();
    let is_novel: Vec<bool> = truth.iter().map(|t| nov.contains(t.as_str())).collect();
    let known: Vec<usize> = (0..truth.len()).filter(|&i| !is_novel[i]).collect();
    let n_novel = truth.len() - known.len();
    let kt: Vec<&str> = known.iter().map(|&i| truth[i].as_str()).collect();
    let kp: Vec<&str> = known.iter().map(|&i| pred[i].as_str()).collect();
    let (known_accuracy, known_f1_macro) = acc_f1(&kt, &kp)?;
    let score: Vec<f64> = confidence.iter().map(|&c| 1.0 - c as f64).collect();
    let auroc = roc_auc(&score, &is_novel);
    let average_precision = average_precision(&score, &is_novel);
    let at_threshold = match threshold {
        None => None,
        Some(t) => {
            let rejected: Vec<bool> = confidence
                .iter()
                .map(|&c| (c as f64) < t.threshold)
                .collect();
            let frac = |idx: &mut dyn Iterator<Item = usize>| {
                let (mut k, mut n) = (0usize, 0usize);
                for i in idx {
                    n += 1;
                    k += rejected[i] as usize;
                }
                (n > 0).then(|| k as f64 / n as f64)
            };
            let novel_recall = frac(&mut (0..truth.len()).filter(|&i| is_novel[i]));
            let false_unknown_rate = frac(&mut known.iter().copied());
            let kpr: Vec<&str> = known
                .iter()
                .map(|&i| {
                    if rejected[i] {
                        unknown_label
                    } else {
                        pred[i].as_str()
                    }
                })
                .collect();
            let (a, f) = acc_f1(&kt, &kpr)?;
            Some(AtThreshold {
                threshold: t.clone(),
                novel_recall,
                false_unknown_rate,
                known_accuracy: a,
                known_f1_macro: f,
                n_unknown: rejected.iter().filter(|&&r| r).count(),
            })
        }
    };
    Ok(NovelTypeReport {
        novel_types: novel.to_vec(),
        n_novel,
        n_known: known.len(),
        score: "1 - confidence (higher = more likely novel)".into(),
        known_accuracy,
        known_f1_macro,
        auroc,
        average_precision,
        at_threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_numpy_on_small_cases() {
        // np.quantile([3, 1, 2, 4], 0.05) = 1.15; np.quantile([1, 2], 0.5) = 1.5
        assert!((quantile_linear(&[3.0, 1.0, 2.0, 4.0], 0.05).unwrap() - 1.15).abs() < 1e-12);
        assert_eq!(quantile_linear(&[1.0, 2.0], 0.5), Some(1.5));
        assert_eq!(quantile_linear(&[7.0], 0.3), Some(7.0));
        assert_eq!(quantile_linear(&[], 0.3), None);
    }

    #[test]
    fn auroc_and_ap_of_a_perfect_and_a_tied_ranking() {
        let pos = [true, true, false, false];
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &pos), Some(1.0));
        assert_eq!(roc_auc(&[0.5; 4], &pos), Some(0.5));
        assert_eq!(average_precision(&[0.5; 4], &pos), Some(0.5));
        assert_eq!(roc_auc(&[0.5; 2], &[true, true]), None);
    }

    #[test]
    fn unknown_below_parses_numbers_and_auto() {
        assert_eq!("auto".parse::<UnknownBelow>(), Ok(UnknownBelow::Auto));
        assert_eq!("0.4".parse::<UnknownBelow>(), Ok(UnknownBelow::Fixed(0.4)));
        assert!("high".parse::<UnknownBelow>().is_err());
    }
}
