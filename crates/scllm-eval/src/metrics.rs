//! Classification and clustering metrics computed as scikit-learn computes them, so a number
//! printed by `scllm evaluate` is the number a reviewer gets from sklearn on the same labels.
//!
//! Conventions followed (scikit-learn 1.x):
//! * classes are the sorted union of true and predicted labels (`unique_labels`);
//! * an ill-defined precision/recall/F1 (no predicted / no true cells of a class) is 0
//!   (`zero_division="warn"` returns 0), and such classes still count in the macro average;
//! * balanced accuracy averages recall over classes present in the truth only;
//! * silhouette: a cell alone in its cluster scores 0; cosine distance is `1 - cos`, clipped to
//!   [0, 2]; euclidean distance uses `sqrt(|x|² - 2x·y + |y|²)` clipped at 0, self-distance 0;
//! * NMI uses the arithmetic mean of the entropies; ARI the pair-counting formula.

use rayon::prelude::*;
use serde::Serialize;

use crate::{encode_labels, invalid, Result};

/// One row of the per-class table.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClassRow {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Cells of this class in the truth.
    pub support: u64,
    /// Cells predicted as this class.
    pub predicted: u64,
}

/// Everything `classification_report` and friends give, on one set of predictions.
#[derive(Clone, Debug, Serialize)]
pub struct ClassificationReport {
    pub n: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub precision_weighted: f64,
    pub recall_weighted: f64,
    pub f1_weighted: f64,
    /// Sorted union of true and predicted labels; the order of rows and columns below.
    pub labels: Vec<String>,
    pub per_class: Vec<ClassRow>,
    /// `confusion[t][p]`: cells of true class `t` predicted as `p` (sklearn's layout).
    pub confusion: Vec<Vec<u64>>,
}

fn div0(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// Classification metrics of `pred` against `truth` (same length, at least one cell).
pub fn classification_report<S: AsRef<str>, T: AsRef<str>>(
    truth: &[S],
    pred: &[T],
) -> Result<ClassificationReport> {
    if truth.len() != pred.len() {
        return Err(invalid(format!(
            "truth has {} labels but predictions have {}",
            truth.len(),
            pred.len()
        )));
    }
    if truth.is_empty() {
        return Err(invalid("no labeled cells to score"));
    }
    let all: Vec<&str> = truth
        .iter()
        .map(|s| s.as_ref())
        .chain(pred.iter().map(|s| s.as_ref()))
        .collect();
    let (labels, codes) = encode_labels(&all);
    let n = truth.len();
    let k = labels.len();
    let mut cm = vec![vec![0u64; k]; k];
    for i in 0..n {
        cm[codes[i] as usize][codes[n + i] as usize] += 1;
    }
    let tp: Vec<f64> = (0..k).map(|c| cm[c][c] as f64).collect();
    let support: Vec<u64> = cm.iter().map(|r| r.iter().sum()).collect();
    let predicted: Vec<u64> = (0..k).map(|c| cm.iter().map(|r| r[c]).sum()).collect();
    let mut per_class = Vec::with_capacity(k);
    for c in 0..k {
        let p = div0(tp[c], predicted[c] as f64);
        let r = div0(tp[c], support[c] as f64);
        // sklearn >= 1.3: F = 2tp / (2tp + fp + fn)
        let f = div0(2.0 * tp[c], (predicted[c] + support[c]) as f64);
        per_class.push(ClassRow {
            label: labels[c].clone(),
            precision: p,
            recall: r,
            f1: f,
            support: support[c],
            predicted: predicted[c],
        });
    }
    let mean = |f: &dyn Fn(&ClassRow) -> f64| per_class.iter().map(f).sum::<f64>() / k as f64;
    let total: f64 = support.iter().sum::<u64>() as f64;
    let wmean = |f: &dyn Fn(&ClassRow) -> f64| {
        per_class
            .iter()
            .map(|r| f(r) * r.support as f64)
            .sum::<f64>()
            / total
    };
    let present: Vec<&ClassRow> = per_class.iter().filter(|r| r.support > 0).collect();
    let balanced = present.iter().map(|r| r.recall).sum::<f64>() / present.len() as f64;
    Ok(ClassificationReport {
        n,
        accuracy: tp.iter().sum::<f64>() / n as f64,
        balanced_accuracy: balanced,
        precision_macro: mean(&|r| r.precision),
        recall_macro: mean(&|r| r.recall),
        f1_macro: mean(&|r| r.f1),
        precision_weighted: wmean(&|r| r.precision),
        recall_weighted: wmean(&|r| r.recall),
        f1_weighted: wmean(&|r| r.f1),
        labels,
        per_class,
        confusion: cm,
    })
}

/// Contingency table of two labelings (rows: `a` classes, columns: `b` classes).
fn contingency<S: AsRef<str>, T: AsRef<str>>(a: &[S], b: &[T]) -> Result<Vec<Vec<u64>>> {
    if a.len() != b.len() {
        return Err(invalid(format!(
            "labelings differ in length ({} vs {})",
            a.len(),
            b.len()
        )));
    }
    let (ca, xa) = encode_labels(a);
    let (cb, xb) = encode_labels(b);
    let mut t = vec![vec![0u64; cb.len()]; ca.len()];
    for i in 0..a.len() {
        t[xa[i] as usize][xb[i] as usize] += 1;
    }
    Ok(t)
}

/// Adjusted Rand index (sklearn `adjusted_rand_score`).
pub fn adjusted_rand_score<S: AsRef<str>, T: AsRef<str>>(truth: &[S], pred: &[T]) -> Result<f64> {
    let t = contingency(truth, pred)?;
    let n: i128 = truth.len() as i128;
    let sum_sq: i128 = t.iter().flatten().map(|&v| (v as i128) * (v as i128)).sum();
    let rows: Vec<i128> = t.iter().map(|r| r.iter().sum::<u64>() as i128).collect();
    let cols: Vec<i128> = (0..t.first().map_or(0, |r| r.len()))
        .map(|j| t.iter().map(|r| r[j]).sum::<u64>() as i128)
        .collect();
    // pair_confusion_matrix
    let tp = sum_sq - n;
    let fp = cols.iter().map(|c| c * c).sum::<i128>() - sum_sq;
    let fnn = rows.iter().map(|r| r * r).sum::<i128>() - sum_sq;
    let tn = n * n - fp - fnn - sum_sq;
    if fnn == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = 2.0 * ((tp as f64) * (tn as f64) - (fnn as f64) * (fp as f64));
    let den = ((tp + fnn) as f64) * ((fnn + tn) as f64) + ((tp + fp) as f64) * ((fp + tn) as f64);
    Ok(num / den)
}

fn entropy(counts: &[u64]) -> f64 {
    let tot: f64 = counts.iter().sum::<u64>() as f64;
    if tot == 0.0 {
        return 1.0;
    }
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / tot;
            p * p.ln()
        })
        .sum::<f64>()
}

/// Normalized mutual information with the arithmetic mean of entropies (sklearn's default).
pub fn normalized_mutual_info_score<S: AsRef<str>, T: AsRef<str>>(
    truth: &[S],
    pred: &[T],
) -> Result<f64> {
    let t = contingency(truth, pred)?;
    let (kr, kc) = (t.len(), t.first().map_or(0, |r| r.len()));
    if (kr == 1 && kc == 1) || (kr == 0 && kc == 0) {
        return Ok(1.0);
    }
    let n: f64 = truth.len() as f64;
    let rows: Vec<u64> = t.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<u64> = (0..kc).map(|j| t.iter().map(|r| r[j]).sum()).collect();
    let mut mi = 0.0;
    for (i, r) in t.iter().enumerate() {
        for (j, &v) in r.iter().enumerate() {
            if v > 0 {
                let v = v as f64;
                mi += v / n * ((v * n) / (rows[i] as f64 * cols[j] as f64)).ln();
            }
        }
    }
    // sklearn clips tiny negatives from rounding
    let mi = mi.max(0.0);
    if mi == 0.0 {
        return Ok(0.0);
    }
    let norm = (entropy(&rows) + entropy(&cols)) / 2.0;
    Ok(mi / norm)
}

/// Distance for the silhouette and the kNN baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    Euclidean,
    Cosine,
}

impl std::str::FromStr for Distance {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "euclidean" => Ok(Distance::Euclidean),
            "cosine" => Ok(Distance::Cosine),
            o => Err(format!("unknown distance `{o}`: use euclidean or cosine")),
        }
    }
}

/// Mean silhouette coefficient of `labels` on the row-major embedding `x` (`n` rows × `d`),
/// as sklearn's `silhouette_score(x, labels, metric=...)` on all cells. Needs 2 ≤ clusters ≤ n-1.
pub fn silhouette_score<S: AsRef<str> + Sync>(
    x: &[f64],
    d: usize,
    labels: &[S],
    metric: Distance,
) -> Result<f64> {
    let n = labels.len();
    if x.len() != n * d {
        return Err(invalid(format!(
            "embedding has {} values, expected {} cells x {} dims",
            x.len(),
            n,
            d
        )));
    }
    let (classes, codes) = encode_labels(labels);
    let k = classes.len();
    if k < 2 || k > n.saturating_sub(1) {
        return Err(invalid(format!(
            "silhouette needs 2 to n_cells-1 clusters; got {k} clusters for {n} cells"
        )));
    }
    let mut sizes = vec![0usize; k];
    for &c in &codes {
        sizes[c as usize] += 1;
    }
    // prepared rows: normalised for cosine, squared norms for euclidean
    let (y, sq): (Vec<f64>, Vec<f64>) = match metric {
        Distance::Cosine => {
            let mut y = x.to_vec();
            for r in y.chunks_mut(d.max(1)) {
                let nrm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                if nrm > 0.0 {
                    r.iter_mut().for_each(|v| *v /= nrm);
                }
            }
            (y, vec![])
        }
        Distance::Euclidean => {
            let sq = x
                .chunks(d.max(1))
                .map(|r| r.iter().map(|v| v * v).sum())
                .collect();
            (x.to_vec(), sq)
        }
    };
    const B: usize = 256;
    let scores: Vec<f64> = (0..n.div_ceil(B))
        .into_par_iter()
        .flat_map_iter(|b| {
            let lo = b * B;
            let hi = (lo + B).min(n);
            let m = hi - lo;
            let mut g = vec![0.0f64; m * n];
            crate::linalg::dgemm_nt(&y[lo * d..hi * d], &y, m, n, d, &mut g);
            let mut out = Vec::with_capacity(m);
            for r in 0..m {
                let i = lo + r;
                let mut sums = vec![0.0f64; k];
                for j in 0..n {
                    let dist = if i == j {
                        0.0
                    } else {
                        match metric {
                            Distance::Cosine => (1.0 - g[r * n + j]).clamp(0.0, 2.0),
                            Distance::Euclidean => {
                                (sq[i] - 2.0 * g[r * n + j] + sq[j]).max(0.0).sqrt()
                            }
                        }
                    };
                    sums[codes[j] as usize] += dist;
                }
                let ci = codes[i] as usize;
                if sizes[ci] <= 1 {
                    out.push(0.0);
                    continue;
                }
                let a = sums[ci] / (sizes[ci] - 1) as f64;
                let bmin = (0..k)
                    .filter(|&c| c != ci)
                    .map(|c| sums[c] / sizes[c] as f64)
                    .fold(f64::INFINITY, f64::min);
                let s = (bmin - a) / a.max(bmin);
                out.push(if s.is_nan() { 0.0 } else { s });
            }
            out
        })
        .collect();
    Ok(scores.iter().sum::<f64>() / n as f64)
}
