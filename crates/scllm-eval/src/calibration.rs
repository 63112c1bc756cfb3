//! Calibration of a method's probabilities: expected calibration error and the reliability
//! diagram's bins (Guo et al. 2017, "On Calibration of Modern Neural Networks", §2).
//!
//! Bins: `n_bins` (default [`ECE_BINS`] = 15) equal-width intervals `((b-1)/M, b/M]` of the
//! confidence (the probability of the predicted label); a cell with confidence `c` falls in bin
//! `clip(ceil(c·M) - 1, 0, M-1)` (so `c = 0` joins the first bin). Per bin: the cells' mean
//! confidence and accuracy (share predicted right). `ECE = Σ_b (n_b / n) · |acc_b - conf_b|`,
//! empty bins contributing 0; `MCE` is the largest `|acc_b - conf_b|` over non-empty bins. The
//! fixture script `tools/make_novel_fixture.py` computes the same in numpy.

use serde::Serialize;

use crate::{invalid, Result};

/// Default number of equal-width confidence bins.
pub const ECE_BINS: usize = 15;

/// One bin of the reliability diagram.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean confidence of its cells (`None` when empty).
    pub mean_confidence: Option<f64>,
    /// Share of its cells predicted right (`None` when empty).
    pub accuracy: Option<f64>,
}

/// Calibration of one method's probabilities on a set of cells.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Calibration {
    pub n_cells: usize,
    pub n_bins: usize,
    /// Expected calibration error.
    pub ece: f64,
    /// Maximum calibration error.
    pub mce: f64,
    /// Mean confidence and accuracy over all cells (their gap is the over-/under-confidence).
    pub mean_confidence: f64,
    pub accuracy: f64,
    pub bins: Vec<ReliabilityBin>,
    pub definition: String,
}

/// The bin of confidence `c` among `m` (see the module docs).
pub fn bin_of(c: f64, m: usize) -> usize {
    let b = (c * m as f64).ceil() as i64 - 1;
    b.clamp(0, m as i64 - 1) as usize
}

/// Calibration of `confidence` (probability of the predicted label, per cell) given whether each
/// prediction was right.
pub fn calibration(confidence: &[f32], correct: &[bool], n_bins: usize) -> Result<Calibration> {
    if confidence.len() != correct.len() {
        return Err(invalid(format!(
            "calibration: {} confidences for {} cells",
            confidence.len(),
            correct.len()
        )));
    }
    if confidence.is_empty() {
        return Err(invalid("calibration: no cell to measure"));
    }
    if n_bins == 0 {
        return Err(invalid("calibration: needs at least one bin"));
    }
    let n = confidence.len();
    let mut cnt = vec![0usize; n_bins];
    let mut sc = vec![0.0f64; n_bins];
    let mut sa = vec![0.0f64; n_bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let c = c as f64;
        let b = bin_of(c, n_bins);
        cnt[b] += 1;
        sc[b] += c;
        sa[b] += ok as u8 as f64;
    }
    let (mut ece, mut mce) = (0.0f64, 0.0f64);
    let mut bins = Vec::with_capacity(n_bins);
    for b in 0..n_bins {
        let (mc, ac) = if cnt[b] > 0 {
            let mc = sc[b] / cnt[b] as f64;
            let ac = sa[b] / cnt[b] as f64;
            let gap = (ac - mc).abs();
            ece += cnt[b] as f64 / n as f64 * gap;
            mce = mce.max(gap);
            (Some(mc), Some(ac))
        } else {
            (None, None)
        };
        bins.push(ReliabilityBin {
            lower: b as f64 / n_bins as f64,
            upper: (b + 1) as f64 / n_bins as f64,
            count: cnt[b],
            mean_confidence: mc,
            accuracy: ac,
        });
    }
    Ok(Calibration {
        n_cells: n,
        n_bins,
        ece,
        mce,
        mean_confidence: sc.iter().sum::<f64>() / n as f64,
        accuracy: sa.iter().sum::<f64>() / n as f64,
        bins,
        definition: format!(
            "{n_bins} equal-width bins ((b-1)/{n_bins}, b/{n_bins}] of the predicted label's probability; ECE = sum over bins of (cells in bin / cells) * |accuracy - mean confidence|"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_right_closed() {
        assert_eq!(bin_of(0.0, 10), 0);
        assert_eq!(bin_of(0.1, 10), 0);
        assert_eq!(bin_of(0.1000001, 10), 1);
        assert_eq!(bin_of(1.0, 10), 9);
    }

    #[test]
    fn perfectly_calibrated_halves() {
        let c = [0.5f32; 4];
        let ok = [true, false, true, false];
        let r = calibration(&c, &ok, 15).unwrap();
        assert_eq!(r.ece, 0.0);
        let r = calibration(&[0.9, 0.9], &[false, false], 10).unwrap();
        assert!((r.ece - 0.9f32 as f64).abs() < 1e-12);
    }
}
