//! `filter_cells` / `filter_genes` as scanpy defines them: a cell's counts are the sum of its row,
//! its genes the number of non-zero entries; the kept rows get `obs['n_counts']`/`obs['n_genes']`
//! (genes: `var['n_counts']`/`var['n_cells']`) for the criteria that were used.

use scllm_io::{AnnData, Column, Compressed};

use crate::{PpError, Result};

#[derive(Clone, Copy, Debug, Default)]
pub struct CellFilter {
    pub min_counts: Option<f64>,
    pub min_genes: Option<usize>,
    pub max_counts: Option<f64>,
    pub max_genes: Option<usize>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct GeneFilter {
    pub min_counts: Option<f64>,
    pub min_cells: Option<usize>,
    pub max_counts: Option<f64>,
    pub max_cells: Option<usize>,
}

fn row_stats(x: &Compressed) -> (Vec<f64>, Vec<i64>) {
    (0..x.nrows)
        .map(|i| {
            let r = x.range(i);
            let mut s = 0.0;
            let mut n = 0;
            for k in r {
                let v = x.data.get_f64(k);
                s += v;
                n += (v > 0.0) as i64;
            }
            (s, n)
        })
        .unzip()
}

fn col_stats(x: &Compressed) -> (Vec<f64>, Vec<i64>) {
    let mut s = vec![0.0; x.ncols];
    let mut n = vec![0i64; x.ncols];
    for k in 0..x.nnz() {
        let v = x.data.get_f64(k);
        let j = x.indices[k] as usize;
        s[j] += v;
        n[j] += (v > 0.0) as i64;
    }
    (s, n)
}

fn keep(
    counts: &[f64],
    n: &[i64],
    min_c: Option<f64>,
    max_c: Option<f64>,
    min_n: Option<usize>,
    max_n: Option<usize>,
) -> Vec<usize> {
    (0..counts.len())
        .filter(|&i| {
            min_c.is_none_or(|m| counts[i] >= m)
                && max_c.is_none_or(|m| counts[i] <= m)
                && min_n.is_none_or(|m| n[i] >= m as i64)
                && max_n.is_none_or(|m| n[i] <= m as i64)
        })
        .collect()
}

/// The cells (rows) or genes (columns) that pass, and the per-item numbers scanpy records for
/// them (`n_genes`/`n_counts`, or `n_cells`/`n_counts`), for the criteria that were used.
pub struct Passing {
    pub kept: Vec<usize>,
    pub columns: Vec<(&'static str, Column)>,
}

/// The cells of `x` passing every given threshold. Errors when none is left.
pub fn cells_passing(x: &Compressed, f: &CellFilter) -> Result<Passing> {
    let (counts, genes) = row_stats(x);
    let kept = keep(
        &counts,
        &genes,
        f.min_counts,
        f.max_counts,
        f.min_genes,
        f.max_genes,
    );
    if kept.is_empty() {
        return Err(PpError::Invalid(format!(
            "no cells left after filtering ({} cells had {}–{} genes and {}–{} counts); lower --min-genes/--min-counts",
            x.nrows,
            genes.iter().min().unwrap_or(&0),
            genes.iter().max().unwrap_or(&0),
            counts.iter().cloned().fold(f64::INFINITY, f64::min),
            counts.iter().cloned().fold(0.0, f64::max),
        )));
    }
    let mut columns = Vec::new();
    if f.min_genes.is_some() || f.max_genes.is_some() {
        columns.push((
            "n_genes",
            Column::I64(kept.iter().map(|&i| genes[i]).collect()),
        ));
    }
    if f.min_counts.is_some() || f.max_counts.is_some() {
        columns.push((
            "n_counts",
            Column::F32(kept.iter().map(|&i| counts[i] as f32).collect()),
        ));
    }
    Ok(Passing { kept, columns })
}

/// The genes of `x` passing every given threshold. Errors when none is left.
pub fn genes_passing(x: &Compressed, f: &GeneFilter) -> Result<Passing> {
    let (counts, cells) = col_stats(x);
    let kept = keep(
        &counts,
        &cells,
        f.min_counts,
        f.max_counts,
        f.min_cells,
        f.max_cells,
    );
    if kept.is_empty() {
        return Err(PpError::Invalid(format!(
            "no genes left after filtering {} genes; lower --min-cells/--min-gene-counts",
            x.ncols
        )));
    }
    let mut columns = Vec::new();
    if f.min_cells.is_some() || f.max_cells.is_some() {
        columns.push((
            "n_cells",
            Column::I64(kept.iter().map(|&j| cells[j]).collect()),
        ));
    }
    if f.min_counts.is_some() || f.max_counts.is_some() {
        columns.push((
            "n_counts",
            Column::F32(kept.iter().map(|&j| counts[j] as f32).collect()),
        ));
    }
    Ok(Passing { kept, columns })
}

/// Keep cells passing every given threshold. Errors when none is left.
pub fn filter_cells(adata: &AnnData, f: &CellFilter) -> Result<(AnnData, usize)> {
    let x = adata
        .x()
        .map_err(|e| PpError::Invalid(e.to_string()))?
        .to_csr();
    let p = cells_passing(&x, f)?;
    let mut out = adata.select_obs(&p.kept);
    for (name, col) in p.columns {
        out.obs.set(name, col);
    }
    Ok((out, x.nrows - p.kept.len()))
}

/// Keep genes passing every given threshold. Errors when none is left.
pub fn filter_genes(adata: &AnnData, f: &GeneFilter) -> Result<(AnnData, usize)> {
    let x = adata
        .x()
        .map_err(|e| PpError::Invalid(e.to_string()))?
        .to_csr();
    let p = genes_passing(&x, f)?;
    let mut out = adata.select_vars(&p.kept);
    for (name, col) in p.columns {
        out.var.set(name, col);
    }
    Ok((out, x.ncols - p.kept.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use scllm_io::{DataFrame, Matrix, Values};

    fn ad() -> AnnData {
        let x = Compressed {
            nrows: 3,
            ncols: 3,
            indptr: vec![0, 2, 2, 5],
            indices: vec![0, 2, 0, 1, 2],
            data: Values::F32(vec![1., 3., 2., 2., 4.]),
        };
        AnnData::new(
            Matrix::Csr(x),
            DataFrame::new(vec!["a".into(), "b".into(), "c".into()]),
            DataFrame::new(vec!["g1".into(), "g2".into(), "g3".into()]),
        )
    }

    #[test]
    fn cells_and_genes_filter_like_scanpy() {
        let (out, removed) = filter_cells(
            &ad(),
            &CellFilter {
                min_genes: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(out.obs.index, vec!["a", "c"]);
        assert_eq!(out.obs.column("n_genes"), Some(&Column::I64(vec![2, 3])));
        let (g, removed) = filter_genes(
            &ad(),
            &GeneFilter {
                min_cells: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(g.var.index, vec!["g1", "g3"]);
        assert_eq!(g.x().unwrap().to_dense_f64(), vec![1., 3., 0., 0., 2., 4.]);
    }

    #[test]
    fn filtering_everything_is_an_error() {
        let e = filter_cells(
            &ad(),
            &CellFilter {
                min_counts: Some(100.0),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("no cells left"), "{e}");
    }
}
