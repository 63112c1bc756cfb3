//! celltypist's majority voting (`classifier.py`, `Classifier.majority_vote`): within each
//! over-cluster the most frequent predicted label wins and is given to all its cells; a cluster
//! whose winner holds fewer than `min_prop` of its cells is `Heterogeneous`.
//!
//! pandas' `crosstab` orders the labels as sorted strings and `idxmax` keeps the first maximum,
//! so a tie goes to the label that sorts first.

use std::collections::BTreeMap;

/// The label of clusters whose winner is below `min_prop`.
pub const HETEROGENEOUS: &str = "Heterogeneous";

/// The majority label of each cell's cluster.
pub fn majority_vote(labels: &[String], clusters: &[String], min_prop: f64) -> Vec<String> {
    // cluster -> label -> count, labels sorted
    let mut votes: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for (l, c) in labels.iter().zip(clusters) {
        *votes
            .entry(c.as_str())
            .or_default()
            .entry(l.as_str())
            .or_default() += 1;
    }
    let winner: BTreeMap<&str, String> = votes
        .iter()
        .map(|(c, counts)| {
            let total: usize = counts.values().sum();
            let (best, n) = counts
                .iter()
                .fold(("", 0usize), |b, (l, &n)| if n > b.1 { (l, n) } else { b });
            let freq = n as f64 / total as f64;
            let w = if freq < min_prop {
                HETEROGENEOUS.to_string()
            } else {
                best.to_string()
            };
            (*c, w)
        })
        .collect();
    clusters
        .iter()
        .map(|c| winner[c.as_str()].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_most_frequent_label_wins_and_ties_go_to_the_first_sorted() {
        let labels = s(&["b", "a", "b", "c", "a", "x"]);
        let clusters = s(&["0", "0", "0", "1", "1", "2"]);
        assert_eq!(
            majority_vote(&labels, &clusters, 0.0),
            s(&["b", "b", "b", "a", "a", "x"])
        );
        // 2 of 3 = 0.67 < 0.7: heterogeneous; cluster 1 (1 of 2) too
        assert_eq!(
            majority_vote(&labels, &clusters, 0.7),
            s(&[
                "Heterogeneous",
                "Heterogeneous",
                "Heterogeneous",
                "Heterogeneous",
                "Heterogeneous",
                "x"
            ])
        );
    }
}
