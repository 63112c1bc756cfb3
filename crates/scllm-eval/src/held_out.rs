//! Held-out reference cells: a seeded, stratified share of the labelled reference kept out of
//! training, on which a method's confidence is measured to pick the `Unknown` threshold
//! ([`crate::novelty::auto_threshold`]) and to calibrate conformal sets
//! ([`crate::conformal`]) without looking at the query.

use std::collections::BTreeMap;

use crate::Rng;

/// Default share of the labelled reference held out.
pub const HELD_OUT_FRACTION: f64 = 0.2;

/// Split positions `0..labels.len()` into `(kept for training, held out)`, both sorted: per
/// class, `round(fraction · n)` cells after a seeded shuffle, at most `n - 1` (a class keeps at
/// least one training cell; a class of one cell is never held out).
pub fn stratified_holdout<S: AsRef<str>>(
    labels: &[S],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by.entry(l.as_ref()).or_default().push(i);
    }
    let mut rng = Rng::new(seed);
    let (mut keep, mut held) = (Vec::new(), Vec::new());
    for (_, mut v) in by {
        rng.shuffle(&mut v);
        let n = v.len();
        let k = ((fraction * n as f64).round() as usize).min(n.saturating_sub(1));
        held.extend_from_slice(&v[..k]);
        keep.extend_from_slice(&v[k..]);
    }
    keep.sort_unstable();
    held.sort_unstable();
    (keep, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_keeps_a_training_cell() {
        let l = ["a", "a", "a", "a", "a", "b", "b", "c"];
        let (keep, held) = stratified_holdout(&l, 0.4, 0);
        assert_eq!(keep.len() + held.len(), l.len());
        // a: round(2.0) = 2, b: round(0.8) = 1, c: min(0, 0) = 0
        assert_eq!(held.len(), 3);
        assert!(keep.contains(&7));
        assert_eq!(stratified_holdout(&l, 0.4, 0), (keep, held));
    }
}
