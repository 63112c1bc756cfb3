//! Conformal prediction sets: split-conformal, class-conditional ("Mondrian"), with the adaptive
//! prediction sets (APS) score of Romano, Sesia & Candès 2020 ("Classification with Valid and
//! Adaptive Coverage", NeurIPS), randomised as in the paper.
//!
//! * Score of label `y` for a cell with class probabilities `π` (APS): the total probability of
//!   the classes ranked above `y` when classes are sorted by `π` descending (ties: lower class
//!   index first), plus `U·π_y`, with one `U ~ Uniform(0, 1)` per cell ([`uniforms`], seeded).
//!   A label the model finds likely has a small score. Without the `U` (`U = 1`, the
//!   non-randomised score) a confident model's true-label scores pile up at 1.0 (a unanimous kNN
//!   vote, a saturated softmax) and `q_k = 1` then keeps every class: the randomisation is what
//!   breaks those ties.
//! * Methods whose per-class scores are similarities rather than probabilities (the SingleR-style
//!   correlation's Spearman ρ) use `1 - s_y`: a valid nonconformity score, so the same
//!   class-conditional guarantee holds, but no APS (its cumulative sum needs probabilities).
//! * Calibration on held-out reference cells (never the query): for each class `k` with `n_k`
//!   held-out cells, `q_k` is the `⌈(n_k + 1)·coverage⌉`-th smallest of their true-label scores
//!   (the `(n+1)` finite-sample correction); when that rank exceeds `n_k` (too few cells, e.g. a
//!   class with none), `q_k = +∞` and the class is never ruled out.
//! * Set of a cell: every class `k` whose score is `≤ q_k`. Then, for cells of a known class,
//!   `P(y ∈ set | y = k) ≥ coverage` (exchangeability assumed). An empty set is `Unknown` (no
//!   known type fits), a set of several is `ambiguous`.
//!
//! The fixture script `tools/make_novel_fixture.py` holds a numpy implementation of the same
//! rule the tests compare against.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::class_scores::ClassScores;
pub use crate::class_scores::ScoreKind;
use crate::{invalid, Result};

/// Default target coverage.
pub const DEFAULT_COVERAGE: f64 = 0.9;
/// Label of a cell whose set holds several classes.
pub const AMBIGUOUS: &str = "ambiguous";

impl ScoreKind {
    /// The score rule, in words.
    pub fn rule(&self) -> &'static str {
        match self {
            ScoreKind::Probability => "APS (Romano et al. 2020), randomised: total probability of the classes ranked above the label plus U times its own, U ~ Uniform(0, 1) per cell",
            ScoreKind::Similarity => "1 - similarity of the label (scores are not probabilities, so no APS)",
        }
    }
}

/// `n` draws of `U ~ Uniform(0, 1)` from `seed` (one per cell, for [`aps_scores`]).
pub fn uniforms(n: usize, seed: u64) -> Vec<f64> {
    let mut r = crate::Rng::new(seed);
    (0..n).map(|_| r.uniform()).collect()
}

/// The draws of `n` calibration (held-out) cells for run seed `seed`: a stream apart from
/// [`query_uniforms`]'s, so a query cell never reuses a calibration cell's draw.
pub fn calibration_uniforms(n: usize, seed: u64) -> Vec<f64> {
    uniforms(n, seed ^ 0x0CA1_1B4A_7E00_0001)
}

/// The draws of `n` query cells for run seed `seed`.
pub fn query_uniforms(n: usize, seed: u64) -> Vec<f64> {
    uniforms(n, seed ^ 0x0DE5_7000_0000_0002)
}

/// Randomised APS scores of every class for one cell's probabilities `p` and its draw `u`
/// (`u = 1`: non-randomised).
pub fn aps_scores(p: &[f32], u: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    // stable: ties keep the lower class index first (numpy's argsort(-p, kind="stable"))
    order.sort_by(|&a, &b| p[b].partial_cmp(&p[a]).unwrap_or(std::cmp::Ordering::Equal));
    let mut out = vec![0.0; p.len()];
    let mut before = 0.0f64;
    for j in order {
        let pj = p[j] as f64;
        out[j] = before + u * pj;
        before += pj;
    }
    out
}

/// Nonconformity of every class for one cell's scores `row` (`u`: the cell's draw, used by APS).
pub fn nonconformity(row: &[f32], kind: ScoreKind, u: f64) -> Vec<f64> {
    match kind {
        ScoreKind::Probability => aps_scores(row, u),
        ScoreKind::Similarity => row.iter().map(|&s| 1.0 - s as f64).collect(),
    }
}

/// The class-conditional quantile of `scores` at `coverage` (see the module docs); `+∞` when
/// there are too few scores.
pub fn conformal_quantile(scores: &[f64], coverage: f64) -> f64 {
    let n = scores.len();
    // the 1e-9 keeps e.g. 10 × 0.9 = 9.000000000000002 from asking for the 10th of 9
    let k = ((n as f64 + 1.0) * coverage - 1e-9).ceil().max(1.0) as usize;
    if k > n {
        return f64::INFINITY;
    }
    let mut s = scores.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[k - 1]
}

/// Per-class quantiles fitted on held-out cells.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConformalCalibrator {
    pub coverage: f64,
    pub kind: ScoreKind,
    pub classes: Vec<String>,
    /// `q_k`; `None` = `+∞` (too few held-out cells of the class to rule it out ever).
    pub quantiles: Vec<Option<f64>>,
    /// Held-out cells per class.
    pub n_calibration: Vec<usize>,
}

impl ConformalCalibrator {
    /// Fit from the true-label scores of held-out cells, grouped by class (index = class).
    pub fn from_true_scores(
        classes: Vec<String>,
        kind: ScoreKind,
        per_class: &[Vec<f64>],
        coverage: f64,
    ) -> Result<Self> {
        if !(coverage > 0.0 && coverage < 1.0) {
            return Err(invalid(format!(
                "coverage {coverage}: must be strictly between 0 and 1 (e.g. 0.9)"
            )));
        }
        if per_class.len() != classes.len() {
            return Err(invalid(format!(
                "conformal calibration: scores for {} classes, {} class names",
                per_class.len(),
                classes.len()
            )));
        }
        let quantiles = per_class
            .iter()
            .map(|s| {
                let q = conformal_quantile(s, coverage);
                q.is_finite().then_some(q)
            })
            .collect();
        Ok(ConformalCalibrator {
            coverage,
            kind,
            classes,
            quantiles,
            n_calibration: per_class.iter().map(|s| s.len()).collect(),
        })
    }

    /// Fit from held-out cells: `scores` row-major `n × classes`, `truth` each cell's class index
    /// (`None`: a label the method does not have, skipped), `u` each cell's draw.
    pub fn fit(
        classes: Vec<String>,
        kind: ScoreKind,
        scores: &[f32],
        truth: &[Option<u32>],
        u: &[f64],
        coverage: f64,
    ) -> Result<Self> {
        let per_class = true_scores(&classes, kind, scores, truth, u)?;
        Self::from_true_scores(classes, kind, &per_class, coverage)
    }

    /// Fit on the [`ClassScores`] of held-out cells whose true labels are `truth` (labels the
    /// method does not have are skipped).
    pub fn fit_on<S: AsRef<str>>(
        held_out: &ClassScores,
        truth: &[S],
        u: &[f64],
        coverage: f64,
    ) -> Result<Self> {
        let t = held_out.index_of(truth);
        Self::fit(
            held_out.classes.clone(),
            held_out.kind,
            &held_out.values,
            &t,
            u,
            coverage,
        )
    }

    /// The prediction set (class indices, ascending) of one cell's scores and draw `u`.
    pub fn set(&self, row: &[f32], u: f64) -> Vec<u32> {
        let nc = nonconformity(row, self.kind, u);
        (0..nc.len())
            .filter(|&k| self.quantiles[k].is_none_or(|q| nc[k] <= q))
            .map(|k| k as u32)
            .collect()
    }

    /// Sets of every cell of `scores` (row-major `n × classes`), `u` one draw per cell.
    pub fn sets(&self, scores: &[f32], u: &[f64]) -> Vec<Vec<u32>> {
        scores
            .chunks(self.classes.len().max(1))
            .zip(u)
            .map(|(r, &u)| self.set(r, u))
            .collect()
    }

    /// `Unknown` for an empty set, the class for one, `ambiguous` for several.
    pub fn set_label(&self, set: &[u32], unknown: &str) -> String {
        match set {
            [] => unknown.to_string(),
            [k] => self.classes[*k as usize].clone(),
            _ => AMBIGUOUS.to_string(),
        }
    }

    /// The set's class names joined by `|`.
    pub fn set_text(&self, set: &[u32]) -> String {
        set.iter()
            .map(|&k| self.classes[k as usize].as_str())
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// True-label nonconformity scores of held-out cells, grouped by class.
pub fn true_scores(
    classes: &[String],
    kind: ScoreKind,
    scores: &[f32],
    truth: &[Option<u32>],
    u: &[f64],
) -> Result<Vec<Vec<f64>>> {
    let k = classes.len();
    if k == 0 || scores.len() != truth.len() * k || u.len() != truth.len() {
        return Err(invalid(format!(
            "conformal calibration: {} scores and {} draws for {} cells × {k} classes",
            scores.len(),
            u.len(),
            truth.len()
        )));
    }
    let mut per_class = vec![Vec::new(); k];
    for ((row, t), &u) in scores.chunks(k).zip(truth).zip(u) {
        if let Some(t) = *t {
            let nc = nonconformity(row, kind, u);
            per_class[t as usize].push(nc[t as usize]);
        }
    }
    Ok(per_class)
}

/// Coverage and set size of one true class of the query.
#[derive(Clone, Debug, Serialize)]
pub struct ClassCoverage {
    pub label: String,
    /// Whether the method knows this class (has it among its labels).
    pub known: bool,
    pub n_calibration: usize,
    /// `q_k` (`None`: +∞, or a class the method does not know).
    pub quantile: Option<f64>,
    pub n_query: usize,
    /// Share of its cells whose set holds the true label (known classes only).
    pub coverage: Option<f64>,
    pub mean_set_size: f64,
    /// Share of its cells with an empty set (`Unknown`).
    pub share_empty: f64,
}

/// Conformal sets of one method on one query.
#[derive(Clone, Debug, Serialize)]
pub struct ConformalReport {
    pub coverage_target: f64,
    pub score: String,
    pub rule: String,
    pub n_calibration: usize,
    /// Query cells of classes the method knows, and what their sets did.
    pub n_known: usize,
    pub coverage_known: Option<f64>,
    pub mean_set_size_known: Option<f64>,
    pub share_singleton_known: Option<f64>,
    pub share_ambiguous_known: Option<f64>,
    pub share_empty_known: Option<f64>,
    /// Query cells of classes the method does not know (novel types).
    pub n_unseen: usize,
    /// Share of them with an empty set, i.e. labelled `Unknown`.
    pub unseen_share_empty: Option<f64>,
    pub unseen_mean_set_size: Option<f64>,
    pub per_class: Vec<ClassCoverage>,
}

/// Score the sets `cal` gives the query cells (`scores` row-major `n × classes`) against `truth`.
pub fn conformal_report(
    cal: &ConformalCalibrator,
    scores: &[f32],
    u: &[f64],
    truth: &[String],
) -> Result<ConformalReport> {
    let k = cal.classes.len();
    if scores.len() != truth.len() * k || u.len() != truth.len() {
        return Err(invalid(format!(
            "conformal sets: {} scores for {} cells × {k} classes",
            scores.len(),
            truth.len()
        )));
    }
    let idx: BTreeMap<&str, usize> = cal
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let sets = cal.sets(scores, u);
    // per true class: cells, covered, total size, empty
    let mut acc: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    for (t, s) in truth.iter().zip(&sets) {
        let e = acc.entry(t.as_str()).or_default();
        e.0 += 1;
        if let Some(&c) = idx.get(t.as_str()) {
            e.1 += s.contains(&(c as u32)) as usize;
        }
        e.2 += s.len();
        e.3 += s.is_empty() as usize;
    }
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    let mut per_class = Vec::new();
    let (mut nk, mut cov, mut size, mut single, mut amb, mut empty) = (0, 0, 0, 0, 0, 0);
    let (mut nu, mut uempty, mut usize_) = (0, 0, 0);
    for (t, s) in truth.iter().zip(&sets) {
        if idx.contains_key(t.as_str()) {
            nk += 1;
            size += s.len();
            single += (s.len() == 1) as usize;
            amb += (s.len() > 1) as usize;
            empty += s.is_empty() as usize;
        } else {
            nu += 1;
            uempty += s.is_empty() as usize;
            usize_ += s.len();
        }
    }
    for (t, &(n, c, sz, e)) in &acc {
        let ci = idx.get(t).copied();
        if ci.is_some() {
            cov += c;
        }
        per_class.push(ClassCoverage {
            label: t.to_string(),
            known: ci.is_some(),
            n_calibration: ci.map(|i| cal.n_calibration[i]).unwrap_or(0),
            quantile: ci.and_then(|i| cal.quantiles[i]),
            n_query: n,
            coverage: ci.and_then(|_| ratio(c, n)),
            mean_set_size: sz as f64 / n as f64,
            share_empty: e as f64 / n as f64,
        });
    }
    Ok(ConformalReport {
        coverage_target: cal.coverage,
        score: cal.kind.rule().to_string(),
        rule: "split-conformal, class-conditional: q_k = the ceil((n_k+1)*coverage)-th smallest true-label score of the n_k held-out reference cells of class k (+inf when that exceeds n_k); a cell's set holds every class whose score is <= q_k; empty set = Unknown, several = ambiguous".into(),
        n_calibration: cal.n_calibration.iter().sum(),
        n_known: nk,
        coverage_known: ratio(cov, nk),
        mean_set_size_known: ratio(size, nk),
        share_singleton_known: ratio(single, nk),
        share_ambiguous_known: ratio(amb, nk),
        share_empty_known: ratio(empty, nk),
        n_unseen: nu,
        unseen_share_empty: ratio(uempty, nu),
        unseen_mean_set_size: ratio(usize_, nu),
        per_class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aps_cumulates_in_probability_order() {
        let s = aps_scores(&[0.2, 0.5, 0.3], 1.0);
        assert!((s[1] - 0.5).abs() < 1e-7);
        assert!((s[2] - 0.8).abs() < 1e-7);
        assert!((s[0] - 1.0).abs() < 1e-6);
        // ties: lower index first
        let s = aps_scores(&[0.5, 0.5], 1.0);
        assert_eq!((s[0], s[1]), (0.5, 1.0));
        // randomised: the class's own mass scaled by u
        let s = aps_scores(&[0.5, 0.5], 0.25);
        assert_eq!((s[0], s[1]), (0.125, 0.625));
    }

    #[test]
    fn quantile_uses_the_finite_sample_rank() {
        let v: Vec<f64> = (1..=9).map(|i| i as f64).collect();
        // ceil(10 * 0.9) = 9 -> the 9th smallest
        assert_eq!(conformal_quantile(&v, 0.9), 9.0);
        // 8 cells: ceil(9 * 0.9) = 9 > 8 -> never ruled out
        assert_eq!(conformal_quantile(&v[..8], 0.9), f64::INFINITY);
        assert_eq!(conformal_quantile(&[], 0.9), f64::INFINITY);
    }

    #[test]
    fn sets_and_their_labels() {
        let cal = ConformalCalibrator {
            coverage: 0.9,
            kind: ScoreKind::Probability,
            classes: vec!["a".into(), "b".into()],
            quantiles: vec![Some(0.6), Some(0.95)],
            n_calibration: vec![10, 10],
        };
        // a: 0.7 > 0.6 out; b: 1.0 > 0.95 out -> empty
        assert_eq!(cal.set(&[0.7, 0.3], 1.0), Vec::<u32>::new());
        assert_eq!(cal.set_label(&[], "Unknown"), "Unknown");
        // a: 0.55 in; b: 1.0 out
        assert_eq!(cal.set(&[0.55, 0.45], 1.0), vec![0]);
        // b: 0.9 in, a: 1.0 out
        assert_eq!(cal.set(&[0.1, 0.9], 1.0), vec![1]);
        assert_eq!(cal.set_label(&[0, 1], "Unknown"), AMBIGUOUS);
        assert_eq!(cal.set_text(&[0, 1]), "a|b");
    }
}
