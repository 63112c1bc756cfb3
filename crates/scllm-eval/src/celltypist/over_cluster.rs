//! An over-clustering for majority voting when the user gives none, after celltypist's own
//! recipe (`classifier.py`, `Classifier._construct_neighbor_graph` and `over_cluster`): an
//! existing `obsm['X_pca']` if present, else genes seen in at least 5 cells, the 2,500 most
//! variable (scanpy's `seurat` flavour on the log data), each scaled to unit variance, 50
//! principal components; a 10-nearest-neighbour graph with UMAP connectivities (scanpy's
//! `neighbors`); Leiden on modularity at resolution 5, 10, 15, 20, 25 or 30 for fewer than 5k,
//! 20k, 40k, 100k, 200k cells and above.
//!
//! It is close to, not the same as, celltypist's: scanpy's PCA (ARPACK), the ±10 clip of its
//! scaling (left out here so the matrix stays sparse: PCA centres implicitly) and igraph's Leiden
//! (its random order, two iterations) cannot be reproduced number for number, so clusters and
//! hence majority-voting labels may differ from celltypist's. For celltypist's exact labels pass
//! its clustering as an obs column (`--over-clustering COL`).
//!
//! Leiden is the `leiden-rs` crate (modularity with a resolution, seeded); the kNN graph is the
//! one this crate's UMAP builds (exact neighbours: O(n²), minutes beyond ~50k cells).

use scllm_io::{Compressed, Matrix, Values};
use scllm_pp::{highly_variable_genes, HvgFlavor, HvgOptions};

use crate::linalg::Pca;
use crate::{invalid, Result};

/// celltypist's default resolution for `n` cells.
pub fn default_resolution(n: usize) -> f64 {
    match n {
        n if n < 5_000 => 5.0,
        n if n < 20_000 => 10.0,
        n if n < 40_000 => 15.0,
        n if n < 100_000 => 20.0,
        n if n < 200_000 => 25.0,
        _ => 30.0,
    }
}

/// Principal components of log data `x` (cells × genes, CSR float32) as celltypist computes them
/// before the graph: row-major `n × comps`.
pub fn pca_of_log_data(x: &Compressed, seed: u64) -> Result<(Vec<f32>, usize)> {
    // genes in at least 5 cells (scanpy's filter_genes(min_cells=5))
    let mut cells = vec![0usize; x.ncols];
    for &j in &x.indices {
        cells[j as usize] += 1;
    }
    let kept: Vec<usize> = (0..x.ncols).filter(|&j| cells[j] >= 5).collect();
    if kept.len() < 2 {
        return Err(invalid(
            "over-clustering: fewer than 2 genes are expressed in 5 or more cells; pass --over-clustering COL",
        ));
    }
    let xs = select_columns(x, &kept);
    let n_top = 2500.min(kept.len());
    let hv = highly_variable_genes(&xs, &HvgOptions::new(n_top, HvgFlavor::Seurat), None)?;
    let genes: Vec<usize> = (0..kept.len()).filter(|&j| hv.highly_variable[j]).collect();
    let mut xh = select_columns(&xs, &genes);
    // unit variance (ddof = 1, as scanpy's scale); centring is PCA's
    let (_, var) = scllm_pp::hvg::mean_var(&xh, None, None);
    if let Values::F32(d) = &mut xh.data {
        for (k, v) in d.iter_mut().enumerate() {
            let sd = var[xh.indices[k] as usize].sqrt();
            if sd > 0.0 {
                *v = (*v as f64 / sd) as f32;
            }
        }
    }
    let pca = Pca::fit(&xh, 50, 7, seed);
    Ok((pca.transform(&xh), pca.n_comps))
}

/// Leiden clusters of the 10-NN graph of `emb` (row-major `n × d`), numbered by decreasing
/// size from "0".
pub fn leiden_clusters(
    emb: &[f32],
    n: usize,
    d: usize,
    resolution: f64,
    seed: u64,
) -> Result<Vec<String>> {
    let edges = crate::umap::connectivities(emb, n, d, 10);
    let membership = leiden_membership(
        n,
        edges
            .iter()
            .filter(|e| e.0 < e.1)
            .map(|&(i, j, w)| (i as usize, j as usize, w as f64)),
        resolution,
        seed,
    )
    .map_err(|e| invalid(format!("over-clustering: {e}")))?;
    // scanpy numbers leiden's clusters by size, largest first
    let k = membership.iter().copied().max().map_or(0, |m| m + 1);
    let mut size = vec![0usize; k];
    for &c in &membership {
        size[c] += 1;
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| size[b].cmp(&size[a]).then(a.cmp(&b)));
    let mut rank = vec![0usize; k];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r;
    }
    Ok(membership.iter().map(|&c| rank[c].to_string()).collect())
}

/// Leiden communities (modularity at `resolution`, seeded; `leiden-rs`) of the undirected
/// weighted graph on `n` nodes whose edges (each pair once) are `edges`: each node's community.
pub fn leiden_membership(
    n: usize,
    edges: impl Iterator<Item = (usize, usize, f64)>,
    resolution: f64,
    seed: u64,
) -> std::result::Result<Vec<usize>, String> {
    let mut b = leiden_rs::GraphDataBuilder::new(n);
    for (i, j, w) in edges {
        b.add_edge(i, j, w).map_err(|e| e.to_string())?;
    }
    let graph = b.build().map_err(|e| e.to_string())?;
    let config = leiden_rs::LeidenConfig {
        resolution,
        seed: Some(seed),
        ..Default::default()
    };
    let out = leiden_rs::Leiden::new(config)
        .run(&graph)
        .map_err(|e| e.to_string())?;
    Ok((0..n).map(|i| out.partition.community_of(i)).collect())
}

/// Columns `cols` of CSR float32 `x`, in that order.
fn select_columns(x: &Compressed, cols: &[usize]) -> Compressed {
    match Matrix::Csr(x.clone()).select_cols(cols) {
        Matrix::Csr(c) => c,
        other => other.to_csr(),
    }
}
