//! CellTypist's prediction on a sparse query, never densified.
//!
//! celltypist 1.7.1 (`classifier.py`, `Classifier.celltype`; `models.py`,
//! `Model.predict_labels_and_prob`) keeps the query genes the model knows, scales them with the
//! model's scaler, `z = (x - mean) / scale`, caps `z` at 10 (from above only), and takes the
//! classifier's decision function `z · coefᵀ + intercept`: it densifies the query to do so.
//! Here each cell's score starts from the score of an all-zero cell, `intercept + Σ coef ·
//! min(-mean/scale, 10)` over the matched genes, and each stored value adds
//! `coef · (min(z, 10) - min(-mean/scale, 10))`: the same sum, work proportional to the stored
//! values. Genes of the model missing from the query contribute nothing (celltypist drops their
//! coefficients rather than imputing zero expression).
//!
//! Probabilities are the sigmoid of each class's score (one-vs-rest, not normalised), as
//! celltypist ≥ 1.0 reports them. The 2020 bare-classifier models were read through
//! scikit-learn's `predict_proba` instead, the sigmoids divided by their sum
//! (`LinearClassifierMixin._predict_proba_lr`), from `log1p` of the query as stored and without
//! a scaler (repository Teichlab/celltypist, commit 3eaf88c, `celltypist/classifier.py`).

use rayon::prelude::*;
use scllm_io::Compressed;

use super::model::{CellTypistModel, ModelFormat};

/// How a stored value becomes the model's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowTransform {
    /// Already log1p(CP10k): used as stored.
    AsIs,
    /// Raw counts: scaled to 10,000 per cell (over all of the cell's genes) and log1p, in float32
    /// as scanpy's `normalize_total` and `log1p` compute them (scllm-pp `normalize.rs`).
    CountsToLogCp10k,
    /// Normalised, not logged: float32 log1p.
    Log1p,
    /// The 2020 models: float64 log1p of the stored value.
    Log1p64,
}

/// Which query column feeds which model gene.
#[derive(Clone, Debug)]
pub struct GeneMap {
    /// Per query column: the model gene's index.
    pub cols: Vec<Option<u32>>,
    pub n_matched: usize,
}

impl GeneMap {
    /// Genes matched by name; a name repeated in the query matches at its first column only
    /// (celltypist makes the query's names unique first, renaming the repeats).
    pub fn by_name(query: &[String], features: &[String]) -> GeneMap {
        let pos: std::collections::HashMap<&str, u32> = features
            .iter()
            .enumerate()
            .rev() // inserted last, so the first of a repeated model gene wins
            .map(|(i, g)| (g.as_str(), i as u32))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let cols: Vec<Option<u32>> = query
            .iter()
            .map(|g| {
                if seen.insert(g.as_str()) {
                    pos.get(g.as_str()).copied()
                } else {
                    None
                }
            })
            .collect();
        let n_matched = cols.iter().filter(|c| c.is_some()).count();
        GeneMap { cols, n_matched }
    }

    /// Column j is model gene j (the 2020 models, which carry no gene names).
    pub fn by_position(n: usize) -> GeneMap {
        GeneMap {
            cols: (0..n as u32).map(Some).collect(),
            n_matched: n,
        }
    }
}

/// Scores, `n × classes` row-major: `decision_function` (a binary model's single score `s`
/// becomes `[-s, s]`, as celltypist stacks it).
pub fn decision_matrix(
    x: &Compressed,
    map: &GeneMap,
    model: &CellTypistModel,
    transform: RowTransform,
    on_rows: &(dyn Fn(usize) + Sync),
) -> Vec<f64> {
    let rows = model.rows();
    let nf = model.n_features;
    // coefficients gene-major, so one stored value updates all classes from one contiguous row
    let mut wt = vec![0f64; nf * rows];
    for r in 0..rows {
        for f in 0..nf {
            wt[f * rows + r] = model.coef[r * nf + f];
        }
    }
    // the score of a cell with no stored value, and each matched gene's zero-expression input
    let mut z0 = vec![0f64; nf];
    let mut base = model.intercept.clone();
    if let Some(s) = &model.scaler {
        for f in map.cols.iter().flatten() {
            let f = *f as usize;
            z0[f] = ((0.0 - s.mean[f]) / s.scale[f]).min(10.0);
            for r in 0..rows {
                base[r] += wt[f * rows + r] * z0[f];
            }
        }
    }
    let nc = if rows == 1 { 2 } else { rows };
    let mut out = vec![0f64; x.nrows * nc];
    const CHUNK: usize = 256;
    out.par_chunks_mut(CHUNK * nc)
        .enumerate()
        .for_each(|(chunk, block)| {
            let mut score = vec![0f64; rows];
            let mut vals: Vec<f32> = Vec::new();
            let first = chunk * CHUNK;
            let n = block.len() / nc;
            for i in 0..n {
                let row = first + i;
                let range = x.range(row);
                vals.clear();
                vals.extend(range.clone().map(|k| x.data.get_f64(k) as f32));
                score.copy_from_slice(&base);
                let total = if transform == RowTransform::CountsToLogCp10k {
                    // scanpy: totals summed in f64, stored f32; divided by target as f32
                    let t = vals.iter().map(|&v| v as f64).sum::<f64>() as f32 / 1e4f32;
                    if t == 0.0 {
                        1.0
                    } else {
                        t
                    }
                } else {
                    1.0
                };
                for (k, &v32) in range.zip(&vals) {
                    let Some(f) = map.cols[x.indices[k] as usize] else {
                        continue;
                    };
                    let f = f as usize;
                    let v: f64 = match transform {
                        RowTransform::AsIs => v32 as f64,
                        RowTransform::CountsToLogCp10k => (v32 / total).ln_1p() as f64,
                        RowTransform::Log1p => v32.ln_1p() as f64,
                        RowTransform::Log1p64 => x.data.get_f64(k).ln_1p(),
                    };
                    let delta = match &model.scaler {
                        Some(s) => ((v - s.mean[f]) / s.scale[f]).min(10.0) - z0[f],
                        None => v,
                    };
                    if delta == 0.0 {
                        continue;
                    }
                    let w = &wt[f * rows..(f + 1) * rows];
                    for (s, &wi) in score.iter_mut().zip(w) {
                        *s += wi * delta;
                    }
                }
                let o = &mut block[i * nc..(i + 1) * nc];
                if rows == 1 {
                    o[0] = -score[0];
                    o[1] = score[0];
                } else {
                    o.copy_from_slice(&score);
                }
            }
            on_rows(n);
        });
    out
}

/// `scipy.special.expit`.
fn expit(s: f64) -> f64 {
    if s >= 0.0 {
        1.0 / (1.0 + (-s).exp())
    } else {
        let e = s.exp();
        e / (1.0 + e)
    }
}

/// Probabilities from scores, in place: the sigmoid of each score; for a 2020 model then each
/// row divided by its sum (scikit-learn's one-vs-rest `predict_proba`; a binary model's pair is
/// `[1 - p, p]` either way).
pub fn probabilities(scores: &mut [f64], n_classes: usize, format: ModelFormat) {
    scores.par_chunks_mut(n_classes).for_each(|row| {
        if n_classes == 2 && format == ModelFormat::Bare2020 {
            let p = expit(row[1]);
            row[0] = 1.0 - p;
            row[1] = p;
            return;
        }
        for v in row.iter_mut() {
            *v = expit(*v);
        }
        if format == ModelFormat::Bare2020 {
            let sum: f64 = row.iter().sum();
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
    });
}

/// Index of each row's largest value (the first on ties, as numpy's `argmax`).
pub fn argmax_rows(m: &[f64], n_classes: usize) -> Vec<u32> {
    m.chunks(n_classes)
        .map(|r| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

/// `prob match`: every class whose probability exceeds `p_thres`, joined with `|` in class
/// order; `Unassigned` when none does.
pub fn prob_match(prob: &[f64], classes: &[String], p_thres: f64) -> Vec<String> {
    prob.chunks(classes.len())
        .map(|r| {
            let hit: Vec<&str> = r
                .iter()
                .zip(classes)
                .filter(|(p, _)| **p > p_thres)
                .map(|(_, c)| c.as_str())
                .collect();
            if hit.is_empty() {
                super::UNASSIGNED.to_string()
            } else {
                hit.join("|")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::celltypist::model::Scaler;
    use scllm_io::{Matrix, Values};

    fn model(format: ModelFormat, scaler: bool) -> CellTypistModel {
        CellTypistModel {
            format,
            estimator: "sklearn.linear_model._stochastic_gradient.SGDClassifier".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            features: Some(vec!["g0".into(), "g1".into(), "g2".into()]),
            n_features: 3,
            coef: vec![1.0, -2.0, 0.5, 0.0, 1.0, 1.0, -1.0, 0.0, 3.0],
            intercept: vec![0.1, -0.2, 0.3],
            scaler: scaler.then(|| Scaler {
                mean: vec![0.5, 1.0, 0.02],
                scale: vec![2.0, 0.5, 0.001],
                with_mean: true,
            }),
            description: Default::default(),
        }
    }

    /// The dense computation celltypist does, for comparison.
    fn dense(x: &[f64], n: usize, m: &CellTypistModel) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..n {
            for r in 0..3 {
                let mut s = m.intercept[r];
                for f in 0..3 {
                    let mut z = x[i * 3 + f];
                    if let Some(sc) = &m.scaler {
                        z = ((z - sc.mean[f]) / sc.scale[f]).min(10.0);
                    }
                    s += m.coef[r * 3 + f] * z;
                }
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn sparse_scores_equal_the_dense_computation_with_the_cap() {
        let xd = [0.0, 1.5, 0.0, 2.0, 0.0, 0.9, 0.0, 0.0, 0.0];
        let x = Matrix::Dense {
            nrows: 3,
            ncols: 3,
            data: Values::F64(xd.to_vec()),
        }
        .to_csr();
        let m = model(ModelFormat::Dict, true);
        let map = GeneMap::by_position(3);
        let got = decision_matrix(&x, &map, &m, RowTransform::AsIs, &|_| {});
        let want = dense(&xd, 3, &m);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        // gene 2's z of cell 1 is (0.9 - 0.02) / 0.001 = 880: capped at 10
        assert!((got[3 + 2] - want[3 + 2]).abs() < 1e-12);
    }

    #[test]
    fn missing_genes_drop_their_coefficients() {
        // the query lacks g1: celltypist uses coef columns of g0 and g2 only
        let x = Matrix::Dense {
            nrows: 1,
            ncols: 2,
            data: Values::F64(vec![1.0, 0.5]),
        }
        .to_csr();
        let m = model(ModelFormat::Dict, true);
        let map = GeneMap::by_name(&["g2".into(), "g0".into()], m.features.as_ref().unwrap());
        let got = decision_matrix(&x, &map, &m, RowTransform::AsIs, &|_| {});
        let sc = m.scaler.as_ref().unwrap();
        let z0 = ((0.5 - sc.mean[0]) / sc.scale[0]).min(10.0);
        let z2 = ((1.0 - sc.mean[2]) / sc.scale[2]).min(10.0);
        for (r, g) in got.iter().enumerate() {
            let want = m.intercept[r] + m.coef[r * 3] * z0 + m.coef[r * 3 + 2] * z2;
            assert!((g - want).abs() < 1e-12);
        }
    }

    #[test]
    fn probabilities_and_labels_follow_celltypist() {
        let mut s = vec![0.0, 2.0, -1.0];
        probabilities(&mut s, 3, ModelFormat::Dict);
        assert_eq!(s[0], 0.5);
        let classes: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(prob_match(&s, &classes, 0.4), vec!["a|b"]);
        assert_eq!(prob_match(&s, &classes, 0.9), vec!["Unassigned"]);
        assert_eq!(argmax_rows(&[1.0, 3.0, 3.0], 3), vec![1]);
        let mut t = vec![0.0, 2.0, -1.0];
        probabilities(&mut t, 3, ModelFormat::Bare2020);
        assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn counts_are_normalised_as_scanpy_does() {
        let counts = Compressed {
            nrows: 1,
            ncols: 3,
            indptr: vec![0, 3],
            indices: vec![0, 1, 2],
            data: Values::I32(vec![3, 1, 7]),
        };
        let (n, _, _) = scllm_pp::normalize_total(&counts, Some(1e4));
        let l = scllm_pp::log1p(&n);
        let lognorm = scllm_pp::normalize::values_f32(&l).to_vec();
        let m = model(ModelFormat::Dict, true);
        let map = GeneMap::by_position(3);
        let a = decision_matrix(&counts, &map, &m, RowTransform::CountsToLogCp10k, &|_| {});
        let ln = Compressed {
            data: Values::F32(lognorm),
            ..counts.clone()
        };
        let b = decision_matrix(&ln, &map, &m, RowTransform::AsIs, &|_| {});
        assert_eq!(a, b);
    }
}
