//! SingleR-style annotation (Aran et al. 2019) against per-type reference profiles:
//!
//! 1. the profile of a type is the per-gene median of its reference cells (log data);
//! 2. markers: for every ordered pair of types (A, B), the `de_n` genes with the largest positive
//!    `median_A - median_B` (SingleR's default `de_n = round(500·(2/3)^log2(n_types))`);
//! 3. each query cell is scored by Spearman correlation with every profile on the union of markers;
//! 4. fine-tuning: keep the types scoring within `tune_thresh` (0.05) of the best, recompute the
//!    correlations on the markers between those types only, and repeat until one type is left or
//!    the set stops shrinking; the best of the last round is the label.
//!
//! The confidence of a cell is its first-round correlation with the type finally assigned.
//! (SingleR proper correlates with every reference cell and takes the 80% quantile per type;
//! this is its aggregated-reference mode.)

use std::collections::HashMap;
use std::sync::RwLock;

use rayon::prelude::*;
use scllm_io::Compressed;

use crate::linalg::transpose_csr;

/// Settings with SingleR's defaults.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CorrelationOptions {
    /// Marker genes per ordered pair of types (None: SingleR's default from the number of types).
    pub de_n: Option<usize>,
    pub tune_thresh: f64,
    pub fine_tune: bool,
}

impl Default for CorrelationOptions {
    fn default() -> Self {
        CorrelationOptions {
            de_n: None,
            tune_thresh: 0.05,
            fine_tune: true,
        }
    }
}

/// A trained reference: profiles (`n_types × n_genes`, row-major) and pairwise markers.
pub struct Reference {
    pub n_types: usize,
    pub n_genes: usize,
    pub profiles: Vec<f64>,
    /// `markers[a * n_types + b]`: genes up in a versus b.
    pub markers: Vec<Vec<u32>>,
    pub de_n: usize,
    opts: CorrelationOptions,
    cache: RwLock<HashMap<Vec<u32>, std::sync::Arc<RankedSet>>>,
}

/// Profiles ranked on one gene set, centred, for fast Spearman.
struct RankedSet {
    genes: Vec<u32>,
    /// per type in the set: centred ranks and their norm
    ranks: Vec<(Vec<f64>, f64)>,
}

/// Average ranks (1-based; ties share their mean rank), as scipy's `rankdata`.
pub fn rankdata(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            r[o] = avg;
        }
        i = j + 1;
    }
    r
}

fn centred(r: Vec<f64>) -> (Vec<f64>, f64) {
    let m = r.iter().sum::<f64>() / r.len().max(1) as f64;
    let c: Vec<f64> = r.into_iter().map(|v| v - m).collect();
    let n = c.iter().map(|v| v * v).sum::<f64>().sqrt();
    (c, n)
}

fn median_sparse(mut nz: Vec<f64>, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    // the n - nz.len() zeros plus the stored values, sorted
    let zeros = n - nz.len();
    nz.sort_by(|a, b| a.total_cmp(b));
    let neg = nz.partition_point(|&v| v < 0.0);
    let at = |k: usize| -> f64 {
        if k < neg {
            nz[k]
        } else if k < neg + zeros {
            0.0
        } else {
            nz[k - zeros]
        }
    };
    if n % 2 == 1 {
        at(n / 2)
    } else {
        (at(n / 2 - 1) + at(n / 2)) / 2.0
    }
}

impl Reference {
    /// Build profiles and markers from CSR log data `x` (cells × genes) and class codes.
    pub fn train(
        x: &Compressed,
        codes: &[u32],
        n_types: usize,
        opts: CorrelationOptions,
    ) -> Reference {
        let g = x.ncols;
        let xt = transpose_csr(x);
        let vals = xt.data.to_f64();
        let mut sizes = vec![0usize; n_types];
        for &c in codes {
            sizes[c as usize] += 1;
        }
        let per_gene: Vec<Vec<f64>> = (0..g)
            .into_par_iter()
            .map(|j| {
                let mut nz: Vec<Vec<f64>> = vec![Vec::new(); n_types];
                for k in xt.range(j) {
                    nz[codes[xt.indices[k] as usize] as usize].push(vals[k]);
                }
                nz.into_iter()
                    .enumerate()
                    .map(|(t, v)| median_sparse(v, sizes[t]))
                    .collect()
            })
            .collect();
        let mut profiles = vec![0.0; n_types * g];
        for (j, m) in per_gene.iter().enumerate() {
            for t in 0..n_types {
                profiles[t * g + j] = m[t];
            }
        }
        let de_n = opts.de_n.unwrap_or_else(|| {
            (500.0 * (2.0f64 / 3.0).powf((n_types as f64).log2())).round() as usize
        });
        let markers: Vec<Vec<u32>> = (0..n_types * n_types)
            .into_par_iter()
            .map(|ab| {
                let (a, b) = (ab / n_types, ab % n_types);
                if a == b {
                    return vec![];
                }
                let mut diff: Vec<(f64, u32)> = (0..g)
                    .map(|j| (profiles[a * g + j] - profiles[b * g + j], j as u32))
                    .filter(|(d, _)| *d > 0.0)
                    .collect();
                diff.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                diff.truncate(de_n);
                diff.into_iter().map(|(_, j)| j).collect()
            })
            .collect();
        Reference {
            n_types,
            n_genes: g,
            profiles,
            markers,
            de_n,
            opts,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Marker genes among the types in `set` (sorted, unique).
    pub fn genes_for(&self, set: &[u32]) -> Vec<u32> {
        let mut genes: Vec<u32> = Vec::new();
        for &a in set {
            for &b in set {
                if a != b {
                    genes.extend(&self.markers[a as usize * self.n_types + b as usize]);
                }
            }
        }
        genes.sort_unstable();
        genes.dedup();
        genes
    }

    fn ranked(&self, set: &[u32]) -> std::sync::Arc<RankedSet> {
        if let Some(r) = self.cache.read().unwrap().get(set) {
            return r.clone();
        }
        let genes = self.genes_for(set);
        let ranks = set
            .iter()
            .map(|&t| {
                let v: Vec<f64> = genes
                    .iter()
                    .map(|&j| self.profiles[t as usize * self.n_genes + j as usize])
                    .collect();
                centred(rankdata(&v))
            })
            .collect();
        let r = std::sync::Arc::new(RankedSet { genes, ranks });
        self.cache.write().unwrap().insert(set.to_vec(), r.clone());
        r
    }

    /// Spearman correlation of the dense cell vector `cell` (all genes) with each type in `set`.
    fn scores(&self, cell: &[f64], set: &[u32]) -> Vec<f64> {
        let rs = self.ranked(set);
        if rs.genes.len() < 2 {
            return vec![0.0; set.len()];
        }
        let v: Vec<f64> = rs.genes.iter().map(|&j| cell[j as usize]).collect();
        let (qc, qn) = centred(rankdata(&v));
        rs.ranks
            .iter()
            .map(|(pc, pn)| {
                if qn == 0.0 || *pn == 0.0 {
                    0.0
                } else {
                    qc.iter().zip(pc).map(|(a, b)| a * b).sum::<f64>() / (qn * pn)
                }
            })
            .collect()
    }

    fn within(&self, set: &[u32], s: &[f64]) -> Vec<u32> {
        let best = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        set.iter()
            .zip(s)
            .filter(|(_, &v)| v >= best - self.opts.tune_thresh)
            .map(|(&t, _)| t)
            .collect()
    }

    /// Label one cell given as a dense vector over the reference genes: `(type, confidence)`.
    pub fn classify(&self, cell: &[f64]) -> (u32, f32) {
        let (l, c, _) = self.classify_scored(cell);
        (l, c)
    }

    /// [`Reference::classify`] plus the first-round correlation with every type.
    pub fn classify_scored(&self, cell: &[f64]) -> (u32, f32, Vec<f64>) {
        let all: Vec<u32> = (0..self.n_types as u32).collect();
        let first = self.scores(cell, &all);
        let argmax = |set: &[u32], s: &[f64]| -> u32 {
            let mut b = 0;
            for i in 1..s.len() {
                if s[i] > s[b] {
                    b = i;
                }
            }
            set[b]
        };
        let mut label = argmax(&all, &first);
        if self.opts.fine_tune {
            let mut set = self.within(&all, &first);
            while set.len() > 1 {
                let s = self.scores(cell, &set);
                label = argmax(&set, &s);
                let next = self.within(&set, &s);
                if next.len() == set.len() {
                    break;
                }
                set = next;
                if set.len() == 1 {
                    label = set[0];
                }
            }
            if set.len() == 1 {
                label = set[0];
            }
        }
        let conf = first[label as usize] as f32;
        (label, conf, first)
    }

    /// Label every cell of CSR `x` (columns = the reference genes).
    pub fn classify_all(
        &self,
        x: &Compressed,
        on_cell: &(dyn Fn() + Sync),
    ) -> (Vec<u32>, Vec<f32>) {
        let (l, c, _) = self.classify_all_scored(x, on_cell);
        (l, c)
    }

    /// [`Reference::classify_all`] plus every cell's first-round correlation with every type,
    /// row-major `cells × n_types`.
    pub fn classify_all_scored(
        &self,
        x: &Compressed,
        on_cell: &(dyn Fn() + Sync),
    ) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let vals = x.data.to_f64();
        let rows: Vec<(u32, f32, Vec<f64>)> = (0..x.nrows)
            .into_par_iter()
            .map_init(
                || vec![0.0f64; self.n_genes],
                |buf, i| {
                    for k in x.range(i) {
                        buf[x.indices[k] as usize] = vals[k];
                    }
                    let r = self.classify_scored(buf);
                    for k in x.range(i) {
                        buf[x.indices[k] as usize] = 0.0;
                    }
                    on_cell();
                    r
                },
            )
            .collect();
        let mut labels = Vec::with_capacity(rows.len());
        let mut conf = Vec::with_capacity(rows.len());
        let mut scores = Vec::with_capacity(rows.len() * self.n_types);
        for (l, c, s) in rows {
            labels.push(l);
            conf.push(c);
            scores.extend(s.iter().map(|&v| v as f32));
        }
        (labels, conf, scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rankdata_averages_ties() {
        assert_eq!(rankdata(&[0.0, 2.0, 0.0, 1.0]), vec![1.5, 4.0, 1.5, 3.0]);
    }

    #[test]
    fn median_with_implicit_zeros() {
        assert_eq!(median_sparse(vec![3.0, 1.0], 5), 0.0);
        assert_eq!(median_sparse(vec![3.0, 1.0, 2.0], 4), 1.5);
        assert_eq!(median_sparse(vec![-1.0], 2), -0.5);
    }
}
