//! Preprocessing in bounded memory: the input is read in blocks of cells, twice at most
//! (statistics, then transform + write), so millions of cells need memory for one block plus
//! per-gene and per-cell vectors. Numbers equal the in-memory path's (same arithmetic, same order
//! per gene).

use std::path::Path;

use rayon::prelude::*;
use scllm_io::backed::CsrStreamWriter;
use scllm_io::{BackedAnnData, Column, Compressed, Compression, DataFrame, UnsValue, Values};

use crate::hvg::{v3_select, HvgFlavor, HvgOptions, HvgResult, V3Batch};
use crate::{PpError, Result};

#[derive(Clone, Debug)]
pub struct StreamOptions {
    pub block_cells: usize,
    pub min_genes: Option<usize>,
    pub min_counts: Option<f64>,
    /// normalize_total to this target (a number; the median needs a full pass and is refused)
    pub target_sum: Option<f64>,
    pub log1p: bool,
    /// seurat_v3 only (the other flavours need the log data in memory)
    pub hvg: Option<HvgOptions>,
    /// batch id per input cell, for seurat_v3
    pub batch: Option<Vec<u32>>,
    pub compression: Compression,
}

#[derive(Debug)]
pub struct StreamSummary {
    pub cells_in: usize,
    pub cells_out: usize,
    pub genes: usize,
    pub nnz_out: u64,
    pub hvg: Option<HvgResult>,
}

fn keep_cell(idx_vals: &[f32], o: &StreamOptions) -> bool {
    let genes = idx_vals.iter().filter(|&&v| v > 0.0).count();
    let total: f64 = idx_vals.iter().map(|&v| v as f64).sum();
    o.min_genes.is_none_or(|m| genes >= m) && o.min_counts.is_none_or(|m| total >= m)
}

fn f32_block(b: Compressed) -> (Compressed, Vec<f32>) {
    let vals = match &b.data {
        Values::F32(v) => v.clone(),
        other => other.to_f32(),
    };
    (b, vals)
}

/// Run the pipeline from `src` (its X) to a new `.h5ad` at `out` whose X is the transformed
/// matrix (CSR float32) and whose var carries the HVG columns. `progress(pass, rows_done)`.
pub fn preprocess_stream(
    src: &BackedAnnData,
    out: &Path,
    o: &StreamOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<StreamSummary> {
    let (n, ng) = src.shape();
    let io = |e: scllm_io::IoError| PpError::Invalid(e.to_string());
    if let Some(h) = &o.hvg {
        if h.flavor != HvgFlavor::SeuratV3 {
            return Err(PpError::Invalid(
                "streaming supports the seurat_v3 HVG flavor (on counts); seurat/cell_ranger need the log data in memory".into(),
            ));
        }
    }
    let ids: Vec<u32> = o.batch.clone().unwrap_or_else(|| vec![0; n]);
    if ids.len() != n {
        return Err(PpError::Invalid(format!(
            "{} batch labels for {n} cells",
            ids.len()
        )));
    }
    let mut levels = ids.clone();
    levels.sort_unstable();
    levels.dedup();
    let slot: std::collections::HashMap<u32, usize> =
        levels.iter().enumerate().map(|(i, &b)| (b, i)).collect();
    let mut state: Vec<V3Batch> = levels.iter().map(|_| V3Batch::new(ng)).collect();
    let mut all = V3Batch::new(ng);
    let mut kept = vec![true; n];

    // pass 1: filters and moments (only needed for HVG)
    if let Some(h) = &o.hvg {
        for blk in src.blocks(o.block_cells) {
            let (start, b) = blk.map_err(io)?;
            let (b, vals) = f32_block(b);
            for i in 0..b.nrows {
                let r = b.range(i);
                let (idx, v) = (&b.indices[r.clone()], &vals[r]);
                if let Some(bad) = v.iter().find(|x| **x < 0.0 || x.is_nan()) {
                    return Err(PpError::Invalid(format!(
                        "cell {}: value {bad}; seurat_v3 and normalize_total need non-negative counts",
                        start + i
                    )));
                }
                let c = start + i;
                kept[c] = keep_cell(v, o);
                if kept[c] {
                    state[slot[&ids[c]]].add_moments(idx, v);
                    all.add_moments(idx, v);
                }
            }
            progress(1, start + b.nrows);
        }
        for (b, st) in levels.iter().zip(state.iter_mut()) {
            st.fit(h.span, &b.to_string())?;
        }
    }

    // pass 2: clipped sums, transform, write
    let mut w = CsrStreamWriter::create(out, ng, o.compression).map_err(io)?;
    let mut nnz: u64 = 0;
    let t32 = o.target_sum.map(|t| t as f32);
    for blk in src.blocks(o.block_cells) {
        let (start, b) = blk.map_err(io)?;
        let (b, vals) = f32_block(b);
        let rows: Vec<usize> = (0..b.nrows)
            .filter(|&i| {
                let c = start + i;
                if o.hvg.is_none() {
                    kept[c] = keep_cell(&vals[b.range(i)], o);
                }
                kept[c]
            })
            .collect();
        if o.hvg.is_some() {
            for &i in &rows {
                let r = b.range(i);
                state[slot[&ids[start + i]]].add_clipped(&b.indices[r.clone()], &vals[r]);
            }
        }
        // transform the kept rows in parallel
        let done: Vec<(Vec<u32>, Vec<f32>)> = rows
            .par_iter()
            .map(|&i| {
                let r = b.range(i);
                let idx = b.indices[r.clone()].to_vec();
                let mut v = vals[r].to_vec();
                if let Some(t) = t32 {
                    let total = v.iter().map(|&x| x as f64).sum::<f64>() as f32;
                    let f = total / t;
                    let d = if f == 0.0 { 1.0 } else { f };
                    v.iter_mut().for_each(|x| *x /= d);
                }
                if o.log1p {
                    v.iter_mut().for_each(|x| *x = x.ln_1p());
                }
                (idx, v)
            })
            .collect();
        let mut indptr = vec![0u64];
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for (idx, v) in done {
            indices.extend(idx);
            data.extend(v);
            indptr.push(indices.len() as u64);
        }
        let nb = indptr.len() - 1;
        nnz += data.len() as u64;
        w.append(&Compressed {
            nrows: nb,
            ncols: ng,
            indptr,
            indices,
            data: Values::F32(data),
        })
        .map_err(io)?;
        progress(2, start + b.nrows);
    }
    let keep_idx: Vec<usize> = (0..n).filter(|&c| kept[c]).collect();
    if keep_idx.is_empty() {
        return Err(PpError::Invalid(
            "no cells left after filtering; lower --min-genes/--min-counts".into(),
        ));
    }
    let obs = src.obs.select(&keep_idx);
    let mut var: DataFrame = src.var.clone();
    let hvg = o.hvg.as_ref().map(|h| {
        let (mut means, mut variances) = (vec![0.0; ng], vec![0.0; ng]);
        let nn = all.n;
        for j in 0..ng {
            means[j] = all.sum[j] / nn;
            variances[j] = (all.sumsq[j] / nn - means[j] * means[j])
                * if nn > 1.0 { nn / (nn - 1.0) } else { 1.0 };
        }
        v3_select(&state, means, variances, h.n_top_genes, o.batch.is_some())
    });
    if let Some(h) = &hvg {
        h.write_var(&mut var);
    }
    let mut steps = Vec::new();
    if let Some(t) = o.target_sum {
        steps.push(format!("normalize_total({t})"));
    }
    if o.log1p {
        steps.push("log1p".to_string());
    }
    if let Some(h) = &o.hvg {
        steps.push(format!(
            "highly_variable_genes(seurat_v3, {})",
            h.n_top_genes
        ));
    }
    let uns = vec![(
        "scllm_preprocess".to_string(),
        UnsValue::Dict(vec![
            ("steps".into(), UnsValue::Array(Column::Str(steps))),
            ("streamed".into(), UnsValue::Bool(true)),
        ]),
    )];
    let rows = w.rows_written();
    w.finish(&obs, &var, &uns).map_err(io)?;
    Ok(StreamSummary {
        cells_in: n,
        cells_out: rows,
        genes: ng,
        nnz_out: nnz,
        hvg,
    })
}
