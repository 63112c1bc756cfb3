//! Column means and mean-centred rows of a row-major embedding: every quadratic kernel here
//! (silhouettes, the all-pairs pass, k-means, kBET's diffusion neighbours) expands
//! |a|² + |b|² - 2a·b, and centring first keeps that cancellation small.

/// The mean of each of the `d` columns of the row-major `x`, summed in f64.
pub(crate) fn column_means(x: &[f32], d: usize) -> Vec<f64> {
    let mut mean = vec![0.0f64; d];
    let mut n = 0usize;
    for r in x.chunks(d.max(1)) {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64;
        }
        n += 1;
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    mean
}

/// `x` with its column means (rounded to f32) subtracted, in f32.
pub(crate) fn centred(x: &[f32], d: usize) -> Vec<f32> {
    let mean: Vec<f32> = column_means(x, d).iter().map(|&m| m as f32).collect();
    x.chunks(d.max(1))
        .flat_map(|r| r.iter().zip(&mean).map(|(v, m)| v - m))
        .collect()
}
