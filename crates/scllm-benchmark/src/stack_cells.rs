//! Two cell sets with the same genes as one AnnData (cells of `a`, then of `b`), so a method
//! trained once predicts the query and the held-out training cells in one run.
//!
//! Kept: X and the layers both have (as CSR; values of one dtype, else float64), `.raw` when
//! both have it over the same genes, `var` and `uns` of `a`, and the `obs` columns both have
//! (numbers as float64 when both are numeric, else categorical text). `obsm`/`obsp` are dropped:
//! a method computes its own embeddings.

use scllm_io::{AnnData, Column, Compressed, DataFrame, Matrix, Raw, Values};

use crate::{BenchError, Result};

fn stack_values(a: &Values, b: &Values) -> Values {
    match (a, b) {
        (Values::F32(x), Values::F32(y)) => Values::F32([x.as_slice(), y].concat()),
        (Values::F64(x), Values::F64(y)) => Values::F64([x.as_slice(), y].concat()),
        (Values::I32(x), Values::I32(y)) => Values::I32([x.as_slice(), y].concat()),
        (Values::I64(x), Values::I64(y)) => Values::I64([x.as_slice(), y].concat()),
        _ => Values::F64([a.to_f64(), b.to_f64()].concat()),
    }
}

/// Rows of `a` then rows of `b`, as CSR.
pub fn stack_rows(a: &Matrix, b: &Matrix) -> Matrix {
    let (ca, cb) = (a.to_csr(), b.to_csr());
    let off = *ca.indptr.last().unwrap_or(&0);
    let mut indptr = ca.indptr.clone();
    indptr.extend(cb.indptr.iter().skip(1).map(|p| p + off));
    Matrix::Csr(Compressed {
        nrows: ca.nrows + cb.nrows,
        ncols: ca.ncols,
        indptr,
        indices: [ca.indices.as_slice(), &cb.indices].concat(),
        data: stack_values(&ca.data, &cb.data),
    })
}

fn numeric(c: &Column) -> bool {
    matches!(
        c,
        Column::F64(_)
            | Column::F32(_)
            | Column::I64(_)
            | Column::I32(_)
            | Column::NullableInt { .. }
    )
}

fn stack_column(a: &Column, b: &Column) -> Column {
    if numeric(a) && numeric(b) {
        let v = (0..a.len())
            .map(|i| a.get_f64(i).unwrap_or(f64::NAN))
            .chain((0..b.len()).map(|i| b.get_f64(i).unwrap_or(f64::NAN)))
            .collect();
        Column::F64(v)
    } else {
        let v: Vec<Option<String>> = a.to_strings().into_iter().chain(b.to_strings()).collect();
        Column::categorical_from(&v)
    }
}

fn stack_obs(a: &DataFrame, b: &DataFrame) -> DataFrame {
    let mut out = DataFrame::new([a.index.as_slice(), &b.index].concat());
    out.index_name = a.index_name.clone();
    for (name, ca) in &a.columns {
        if let Some(cb) = b.column(name) {
            out.set(name, stack_column(ca, cb));
        }
    }
    out
}

/// The cells of `a` then those of `b` (same genes in the same order).
pub fn stack_cells(a: &AnnData, b: &AnnData) -> Result<AnnData> {
    if a.var.index != b.var.index {
        return Err(BenchError::Method(format!(
            "internal: cannot stack cell sets with different genes ({} vs {})",
            a.n_vars(),
            b.n_vars()
        )));
    }
    let x = match (&a.x, &b.x) {
        (Some(x), Some(y)) => Some(stack_rows(x, y)),
        _ => None,
    };
    let layers = a
        .layers
        .iter()
        .filter_map(|(n, m)| {
            b.layers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, m2)| (n.clone(), stack_rows(m, m2)))
        })
        .collect();
    let raw = match (&a.raw, &b.raw) {
        (Some(ra), Some(rb)) if ra.var.index == rb.var.index => Some(Raw {
            x: stack_rows(&ra.x, &rb.x),
            var: ra.var.clone(),
            varm: ra.varm.clone(),
        }),
        _ => None,
    };
    Ok(AnnData {
        x,
        obs: stack_obs(&a.obs, &b.obs),
        var: a.var.clone(),
        layers,
        raw,
        uns: a.uns.clone(),
        source: a.source.clone(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_csr_rows_stack_in_order() {
        let a = Matrix::Dense {
            nrows: 2,
            ncols: 2,
            data: Values::F32(vec![1.0, 0.0, 0.0, 2.0]),
        };
        let b = Matrix::Dense {
            nrows: 1,
            ncols: 2,
            data: Values::F64(vec![0.0, 3.0]),
        };
        let m = stack_rows(&a, &b);
        assert_eq!(m.shape(), (3, 2));
        assert_eq!(m.to_dense_f64(), vec![1.0, 0.0, 0.0, 2.0, 0.0, 3.0]);
    }
}
