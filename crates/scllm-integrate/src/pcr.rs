//! Principal component regression on the batch (Büttner et al. 2019), as scib-metrics'
//! `principal_component_regression(categorical=True)` and `pcr_comparison`
//! (scib_metrics/utils/_pcr.py, metrics/_pcr_comparison.py).
//!
//! The reference regresses every principal component (all of them: `n_components=None`) on the
//! centred one-hot batch and weights each R² by the component's variance. Regressing a centred
//! column on a centred one-hot design leaves the within-batch sum of squares, so R²·variance of
//! a component is its between-batch sum of squares over n - 1, and the weighted mean is
//! Σ between-batch SS / Σ total SS. That sum is invariant under the rotation PCA applies, so it
//! is computed here on the embedding itself, in f64, without the SVD.

/// Variance explained by the batch (`principal_component_regression`, categorical) of the
/// row-major `n × d` matrix.
pub fn pcr(x: &[f32], n: usize, d: usize, batch: &[u32], n_batches: usize) -> f64 {
    let mut mean = vec![0.0f64; d];
    let mut bsum = vec![0.0f64; n_batches * d];
    let mut bcnt = vec![0usize; n_batches];
    for (i, r) in x.chunks(d).enumerate().take(n) {
        let b = batch[i] as usize;
        bcnt[b] += 1;
        for j in 0..d {
            mean[j] += r[j] as f64;
            bsum[b * d + j] += r[j] as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let total: f64 = x
        .chunks(d)
        .take(n)
        .map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(&v, m)| (v as f64 - m).powi(2))
                .sum::<f64>()
        })
        .sum();
    let between: f64 = (0..n_batches)
        .filter(|&b| bcnt[b] > 0)
        .map(|b| {
            (0..d)
                .map(|j| {
                    let mb = bsum[b * d + j] / bcnt[b] as f64;
                    bcnt[b] as f64 * (mb - mean[j]).powi(2)
                })
                .sum::<f64>()
        })
        .sum();
    if total == 0.0 {
        return 0.0;
    }
    between / total
}

/// `pcr_comparison` (scaled): how much of the batch's share of variance before integration is
/// gone after, (pre - post) / pre, floored at 0.
pub fn pcr_comparison(pre: f64, post: f64) -> f64 {
    ((pre - post) / pre).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked: 1-D values 0, 2 (batch a) and 10, 12 (batch b): total SS about the mean 6 is
    /// 36+16+16+36 = 104, between SS 2·(1-6)² + 2·(11-6)² = 100.
    #[test]
    fn pcr_of_two_batches_on_a_line() {
        let v = pcr(&[0.0, 2.0, 10.0, 12.0], 4, 1, &[0, 0, 1, 1], 2);
        assert!((v - 100.0 / 104.0).abs() < 1e-12);
        assert_eq!(pcr_comparison(0.5, 0.6), 0.0);
        assert!((pcr_comparison(0.5, 0.1) - 0.8).abs() < 1e-12);
    }
}
