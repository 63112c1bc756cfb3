//! How far two embeddings of the same cells agree (`scllm embed --precision P --check N`):
//! the cosine of each cell's two vectors, how many of its 10 nearest neighbours (cosine,
//! itself excluded) the two share, and, given labels, whether a leave-one-out 10-NN vote
//! predicts the same label on both.

use crate::knn::{kneighbors, vote, Vote};
use crate::metrics::Distance;

/// Neighbours per cell for the neighbour overlap and the label vote.
pub const K: usize = 10;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Agreement {
    pub cells: usize,
    /// The cosine of each cell's two vectors: minimum, 1st and 5th percentile, median, mean.
    pub cosine: CosineSummary,
    /// Mean share of a cell's `K` nearest neighbours found in both embeddings.
    pub neighbours_shared: f64,
    pub labels: Option<LabelAgreement>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CosineSummary {
    pub min: f64,
    pub p01: f64,
    pub p05: f64,
    pub median: f64,
    pub mean: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct LabelAgreement {
    /// Share of cells whose leave-one-out `K`-NN label is the same on both embeddings.
    pub same_prediction: f64,
    /// The vote's accuracy against the labels, on the reference embedding and on the other.
    pub accuracy_reference: f64,
    pub accuracy_other: f64,
}

/// Compares `other` with `reference` (both `cells × d`, row-major); `labels`: class codes of
/// the cells and their number.
pub fn agreement(
    reference: &[f32],
    other: &[f32],
    d: usize,
    labels: Option<(&[u32], usize)>,
) -> Agreement {
    assert_eq!(reference.len(), other.len(), "same cells");
    let n = reference.len() / d.max(1);
    let mut cos: Vec<f64> = reference
        .chunks(d)
        .zip(other.chunks(d))
        .map(|(a, b)| cosine(a, b))
        .collect();
    cos.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if cos.is_empty() {
            f64::NAN
        } else {
            cos[((cos.len() - 1) as f64 * p).round() as usize]
        }
    };
    let cosine = CosineSummary {
        min: q(0.0),
        p01: q(0.01),
        p05: q(0.05),
        median: q(0.5),
        mean: cos.iter().sum::<f64>() / n.max(1) as f64,
    };
    let k = K.min(n.saturating_sub(1));
    let (na, da) = neighbours(reference, d, k);
    let (nb, db) = neighbours(other, d, k);
    let shared = if k == 0 {
        f64::NAN
    } else {
        na.chunks(k)
            .zip(nb.chunks(k))
            .map(|(a, b)| a.iter().filter(|i| b.contains(i)).count() as f64 / k as f64)
            .sum::<f64>()
            / n as f64
    };
    let labels = labels.filter(|_| k > 0).map(|(codes, n_classes)| {
        let ref_codes: Vec<u32> = codes.to_vec();
        let (pa, _) = vote(&na, &da, k, &ref_codes, n_classes, Vote::Majority);
        let (pb, _) = vote(&nb, &db, k, &ref_codes, n_classes, Vote::Majority);
        let share = |f: &dyn Fn(usize) -> bool| (0..n).filter(|&i| f(i)).count() as f64 / n as f64;
        LabelAgreement {
            same_prediction: share(&|i| pa[i] == pb[i]),
            accuracy_reference: share(&|i| pa[i] == codes[i]),
            accuracy_other: share(&|i| pb[i] == codes[i]),
        }
    });
    Agreement {
        cells: n,
        cosine,
        neighbours_shared: shared,
        labels,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return if aa == bb { 1.0 } else { 0.0 };
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Each cell's `k` nearest other cells (cosine): `(indices, distances)`, `n × k`.
fn neighbours(x: &[f32], d: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
    let n = x.len() / d.max(1);
    if k == 0 {
        return (vec![], vec![]);
    }
    let (idx, dist) = kneighbors(x, x, d, k + 1, Distance::Cosine, &|_| {});
    let mut oi = Vec::with_capacity(n * k);
    let mut od = Vec::with_capacity(n * k);
    for (row, (i, dd)) in idx.chunks(k + 1).zip(dist.chunks(k + 1)).enumerate() {
        // drop the cell itself (or, for a duplicate cell, the farthest of the k + 1)
        let skip = i.iter().position(|&j| j as usize == row).unwrap_or(k);
        for (t, (&j, &dj)) in i.iter().zip(dd).enumerate() {
            if t != skip {
                oi.push(j);
                od.push(dj);
            }
        }
    }
    (oi, od)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_embeddings_agree_fully() {
        let x: Vec<f32> = (0..60).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let codes: Vec<u32> = (0..20).map(|i| (i % 2) as u32).collect();
        let a = agreement(&x, &x, 3, Some((&codes, 2)));
        assert_eq!(a.cells, 20);
        assert!((a.cosine.min - 1.0).abs() < 1e-12);
        assert!((a.neighbours_shared - 1.0).abs() < 1e-12);
        assert_eq!(a.labels.unwrap().same_prediction, 1.0);
    }

    #[test]
    fn a_rotated_embedding_shows_in_the_cosine_not_the_neighbours() {
        // the same geometry rotated by 90° in the first two axes: cosines 0 where a cell lies
        // in that plane, identical neighbourhoods
        let x: Vec<f32> = (0..40).flat_map(|i| [i as f32, 1.0]).collect();
        let y: Vec<f32> = x.chunks(2).flat_map(|r| [-r[1], r[0]]).collect();
        let a = agreement(&x, &y, 2, None);
        assert!(a.cosine.median.abs() < 1e-9 && a.cosine.mean.abs() < 1e-9);
        assert!((a.neighbours_shared - 1.0).abs() < 1e-12);
    }
}
