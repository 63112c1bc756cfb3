//! `scale`: z-score each gene (unit variance, ddof=1; optionally zero mean) and clip, as scanpy.

use scllm_io::{Compressed, Matrix, Values};

use crate::hvg::mean_var;

/// Returns the scaled matrix (dense float32 when zero-centring, else CSR), the means and the stds.
pub fn scale(
    x: &Compressed,
    zero_center: bool,
    max_value: Option<f64>,
) -> (Matrix, Vec<f64>, Vec<f64>) {
    let (mean, var) = mean_var(x, None, None);
    let std: Vec<f64> = var
        .iter()
        .map(|v| if v.sqrt() == 0.0 { 1.0 } else { v.sqrt() })
        .collect();
    let vals = crate::normalize::values_f32(x);
    let clip = |v: f32| -> f32 {
        match max_value {
            Some(m) if v as f64 > m => m as f32,
            Some(m) if zero_center && (v as f64) < -m => -m as f32,
            _ => v,
        }
    };
    let (n, g) = (x.nrows, x.ncols);
    if zero_center {
        // numpy: x (f32) -= mean (f64) computes in f64 and stores f32; then /= std likewise
        let mut out = vec![0f32; n * g];
        for i in 0..n {
            let row = &mut out[i * g..(i + 1) * g];
            for (j, r) in row.iter_mut().enumerate() {
                *r = (0.0 - mean[j]) as f32;
            }
            for k in x.range(i) {
                let j = x.indices[k] as usize;
                row[j] = (vals[k] as f64 - mean[j]) as f32;
            }
            for (j, r) in row.iter_mut().enumerate() {
                *r = clip((*r as f64 / std[j]) as f32);
            }
        }
        (
            Matrix::Dense {
                nrows: n,
                ncols: g,
                data: Values::F32(out),
            },
            mean,
            std,
        )
    } else {
        let mut c = x.clone();
        let d: Vec<f32> = (0..x.nnz())
            .map(|k| clip((vals[k] as f64 / std[x.indices[k] as usize]) as f32))
            .collect();
        c.data = Values::F32(d);
        (Matrix::Csr(c), mean, std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_genes_have_zero_mean_and_unit_variance() {
        let x = Compressed {
            nrows: 3,
            ncols: 2,
            indptr: vec![0, 1, 2, 4],
            indices: vec![0, 1, 0, 1],
            data: Values::F32(vec![1., 2., 3., 4.]),
        };
        let (m, mean, _) = scale(&x, true, None);
        assert_eq!(mean, vec![4.0 / 3.0, 2.0]);
        let d = m.to_dense_f64();
        for j in 0..2 {
            let col: Vec<f64> = (0..3).map(|i| d[i * 2 + j]).collect();
            let mu = col.iter().sum::<f64>() / 3.0;
            let var = col.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / 2.0;
            assert!(mu.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{col:?}");
        }
        let (c, _, _) = scale(&x, true, Some(0.5));
        assert!(c.to_dense_f64().iter().all(|v| v.abs() <= 0.5));
    }
}
