//! Label transfer by k nearest neighbours (brute force, exact), as scikit-learn's
//! `KNeighborsClassifier(algorithm='brute')`: cosine (`1 - cos`, clipped to [0, 2]) or euclidean
//! distance; a uniform vote (ties go to the first class in sorted order, as sklearn's mode) or a
//! distance-weighted vote (weights `1/d`; a neighbour at distance 0 takes the whole vote). The
//! confidence of a cell is the winning class's share of the vote (sklearn's `predict_proba`).

use rayon::prelude::*;

use crate::metrics::Distance;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vote {
    Majority,
    Distance,
}

impl std::str::FromStr for Vote {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "majority" | "uniform" => Ok(Vote::Majority),
            "distance" => Ok(Vote::Distance),
            o => Err(format!("unknown vote `{o}`: use majority or distance")),
        }
    }
}

fn prepare(x: &[f32], d: usize, metric: Distance) -> (Vec<f32>, Vec<f32>) {
    match metric {
        Distance::Cosine => {
            let mut y = x.to_vec();
            for r in y.chunks_mut(d) {
                let nrm = r
                    .iter()
                    .map(|v| (*v as f64) * (*v as f64))
                    .sum::<f64>()
                    .sqrt();
                if nrm > 0.0 {
                    r.iter_mut().for_each(|v| *v = (*v as f64 / nrm) as f32);
                }
            }
            (y, vec![])
        }
        Distance::Euclidean => {
            let sq = x
                .chunks(d)
                .map(|r| r.iter().map(|v| v * v).sum::<f32>())
                .collect();
            (x.to_vec(), sq)
        }
    }
}

/// The `k` nearest reference rows of every query row: `(indices, distances)`, each `nq × k`
/// row-major, nearest first. `reference` is `nr × d`, `query` is `nq × d`, row-major.
pub fn kneighbors(
    reference: &[f32],
    query: &[f32],
    d: usize,
    k: usize,
    metric: Distance,
    on_block: &(dyn Fn(usize) + Sync),
) -> (Vec<u32>, Vec<f32>) {
    let nr = reference.len() / d.max(1);
    let nq = query.len() / d.max(1);
    let k = k.min(nr);
    let (r, rsq) = prepare(reference, d, metric);
    let (q, qsq) = prepare(query, d, metric);
    const B: usize = 64;
    let blocks: Vec<(Vec<u32>, Vec<f32>)> = (0..nq.div_ceil(B))
        .into_par_iter()
        .map(|b| {
            let lo = b * B;
            let hi = (lo + B).min(nq);
            let m = hi - lo;
            let mut g = vec![0.0f32; m * nr];
            crate::linalg::sgemm_nt(&q[lo * d..hi * d], &r, m, nr, d, &mut g);
            let mut idx = Vec::with_capacity(m * k);
            let mut dist = Vec::with_capacity(m * k);
            let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
            for row in 0..m {
                best.clear();
                let gr = &g[row * nr..(row + 1) * nr];
                for (j, &s) in gr.iter().enumerate() {
                    let dj = match metric {
                        Distance::Cosine => (1.0 - s).clamp(0.0, 2.0),
                        Distance::Euclidean => (qsq[lo + row] - 2.0 * s + rsq[j]).max(0.0),
                    };
                    if best.len() == k {
                        let worst = best[k - 1];
                        if dj > worst.0 || (dj == worst.0 && j as u32 > worst.1) {
                            continue;
                        }
                        best.pop();
                    }
                    let pos =
                        best.partition_point(|&(bd, bj)| bd < dj || (bd == dj && bj < j as u32));
                    best.insert(pos, (dj, j as u32));
                }
                for &(bd, bj) in &best {
                    idx.push(bj);
                    dist.push(match metric {
                        Distance::Cosine => bd,
                        Distance::Euclidean => bd.sqrt(),
                    });
                }
            }
            on_block(m);
            (idx, dist)
        })
        .collect();
    let mut idx = Vec::with_capacity(nq * k);
    let mut dist = Vec::with_capacity(nq * k);
    for (i, d) in blocks {
        idx.extend(i);
        dist.extend(d);
    }
    (idx, dist)
}

/// Vote among neighbours: `(class codes, confidence)` per query cell.
pub fn vote(
    idx: &[u32],
    dist: &[f32],
    k: usize,
    ref_codes: &[u32],
    n_classes: usize,
    how: Vote,
) -> (Vec<u32>, Vec<f32>) {
    let (c, p, _) = vote_shares(idx, dist, k, ref_codes, n_classes, how);
    (c, p)
}

/// [`vote`] plus every class's share of the vote (sklearn's `predict_proba`), row-major
/// `cells × n_classes`.
pub fn vote_shares(
    idx: &[u32],
    dist: &[f32],
    k: usize,
    ref_codes: &[u32],
    n_classes: usize,
    how: Vote,
) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    if k == 0 {
        return (vec![], vec![], vec![]);
    }
    let rows: Vec<(u32, f32, Vec<f32>)> = idx
        .chunks(k)
        .zip(dist.chunks(k))
        .map(|(ni, nd)| {
            let mut w = vec![0.0f64; n_classes];
            match how {
                Vote::Majority => ni
                    .iter()
                    .for_each(|&j| w[ref_codes[j as usize] as usize] += 1.0),
                Vote::Distance => {
                    if nd.contains(&0.0) {
                        for (&j, &x) in ni.iter().zip(nd) {
                            if x == 0.0 {
                                w[ref_codes[j as usize] as usize] += 1.0;
                            }
                        }
                    } else {
                        for (&j, &x) in ni.iter().zip(nd) {
                            w[ref_codes[j as usize] as usize] += 1.0 / x as f64;
                        }
                    }
                }
            }
            let tot: f64 = w.iter().sum();
            let mut best = 0;
            for c in 1..n_classes {
                if w[c] > w[best] {
                    best = c;
                }
            }
            let shares = w.iter().map(|&v| (v / tot) as f32).collect();
            (best as u32, (w[best] / tot) as f32, shares)
        })
        .collect();
    let mut codes = Vec::with_capacity(rows.len());
    let mut conf = Vec::with_capacity(rows.len());
    let mut shares = Vec::with_capacity(rows.len() * n_classes);
    for (c, p, s) in rows {
        codes.push(c);
        conf.push(p);
        shares.extend(s);
    }
    (codes, conf, shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbours_and_votes_on_a_line() {
        // reference points at 0,1,2,10,11 (1-D), labels a a a b b
        let r = [0.0f32, 1.0, 2.0, 10.0, 11.0];
        let codes = [0u32, 0, 0, 1, 1];
        let q = [9.0f32, 1.2];
        let (idx, dist) = kneighbors(&r, &q, 1, 3, Distance::Euclidean, &|_| {});
        assert_eq!(&idx[..3], &[3, 4, 2]);
        assert!((dist[0] - 1.0).abs() < 1e-6 && (dist[2] - 7.0).abs() < 1e-5);
        assert_eq!(&idx[3..], &[1, 2, 0]);
        let (p, conf) = vote(&idx, &dist, 3, &codes, 2, Vote::Majority);
        assert_eq!(p, vec![1, 0]);
        assert!((conf[0] - 2.0 / 3.0).abs() < 1e-6 && conf[1] == 1.0);
    }

    #[test]
    fn distance_vote_lets_an_exact_match_win() {
        let idx = [0u32, 1, 2];
        let dist = [0.0f32, 0.1, 0.1];
        let (p, conf) = vote(&idx, &dist, 3, &[1, 0, 0], 2, Vote::Distance);
        assert_eq!((p[0], conf[0]), (1, 1.0));
        let (p, _) = vote(&idx, &dist, 3, &[1, 0, 0], 2, Vote::Majority);
        assert_eq!(p[0], 0);
    }
}
