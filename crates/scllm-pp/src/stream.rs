//! Preprocessing in bounded memory: the input is read in blocks of cells, twice at most
//! (statistics, then transform + write), so millions of cells need memory for one block plus
//! per-gene and per-cell vectors. Numbers equal the in-memory path's (same arithmetic, same order
//! per gene).

use std::path::{Path, PathBuf};

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
    /// The input file: named in messages about its values, and its `uns` copied into the output.
    pub source: Option<PathBuf>,
}

#[derive(Debug)]
pub struct StreamSummary {
    pub cells_in: usize,
    pub cells_out: usize,
    pub genes: usize,
    pub nnz_out: u64,
    pub hvg: Option<HvgResult>,
}

/// The errors of values the preprocessing cannot use, worded the same in memory and streamed
/// (`src`: the input file as the user named it).
pub(crate) mod refuse {
    use crate::PpError;

    /// NaN or ±infinity anywhere (the value detection counts both as one kind of bad value).
    pub(crate) fn non_finite(src: &str) -> PpError {
        PpError::Invalid(format!(
            "{src}: X contains NaN or infinite values; remove or impute them first"
        ))
    }

    /// A value error of a step (negative counts for log1p or seurat_v3) with the file it is in.
    pub(crate) fn in_file(src: &str, e: PpError) -> PpError {
        match e {
            PpError::Negative { .. } | PpError::NaN { .. } => {
                PpError::Invalid(format!("{src}: X: {e}"))
            }
            other => other,
        }
    }

    pub(crate) fn scaled(src: &str) -> PpError {
        PpError::Invalid(format!(
            "{src}: X is scaled (has negative values); normalize_total needs counts. Use --layer counts or --layer raw (without --stream)"
        ))
    }
}

/// The in-memory path's checks of one block's stored values, in its order: NaN or infinite
/// values anywhere, then negatives, for normalize_total in any cell and for log1p and
/// seurat_v3 in the cells kept (`row` numbers them as the in-memory path does, after filtering).
fn check_block(
    b: &Compressed,
    vals: &[f32],
    kept_rows: &[usize],
    kept_before: usize,
    o: &StreamOptions,
    src: &str,
) -> Result<()> {
    if vals.iter().all(|v| v.is_finite() && *v >= 0.0) {
        return Ok(()); // the usual case, one pass
    }
    if vals.iter().any(|v| !v.is_finite()) {
        return Err(refuse::non_finite(src));
    }
    if o.target_sum.is_some() {
        return Err(refuse::scaled(src));
    }
    let (what, need) = if o.log1p {
        ("log1p", "log1p")
    } else if o.hvg.is_some() {
        ("highly_variable_genes", "the seurat_v3 flavor (raw counts)")
    } else {
        return Ok(()); // no step that needs counts
    };
    for (j, &i) in kept_rows.iter().enumerate() {
        if let Some(k) = b.range(i).find(|&k| vals[k] < 0.0) {
            let e = PpError::Negative {
                what: what.into(),
                need: need.into(),
                value: vals[k],
                row: kept_before + j,
                col: b.indices[k] as usize,
            };
            return Err(refuse::in_file(src, e));
        }
    }
    Ok(())
}

fn keep_cell(idx_vals: &[f32], o: &StreamOptions) -> bool {
    let genes = idx_vals.iter().filter(|&&v| v > 0.0).count();
    let total: f64 = idx_vals.iter().map(|&v| v as f64).sum();
    o.min_genes.is_none_or(|m| genes >= m) && o.min_counts.is_none_or(|m| total >= m)
}

/// Per-gene tallies of small integer values (1..=HIST_MAX) plus an overflow list, enough to
/// compute clipped sums exactly once the clip values are known.
struct ClipHist {
    counts: Vec<u32>,
    overflow: Vec<(u32, f32)>,
    overflowed: bool,
}

const HIST_MAX: usize = 64;
const OVERFLOW_BUDGET: usize = 16 << 20; // 16 M entries = 128 MiB

impl ClipHist {
    fn new(ng: usize) -> Self {
        ClipHist {
            counts: vec![0; ng * HIST_MAX],
            overflow: Vec::new(),
            overflowed: false,
        }
    }
    #[inline]
    fn add(&mut self, idx: &[u32], vals: &[f32]) {
        if self.overflowed {
            return;
        }
        for (&j, &v) in idx.iter().zip(vals) {
            let k = v as usize;
            if k as f32 == v && (1..=HIST_MAX).contains(&k) {
                self.counts[j as usize * HIST_MAX + k - 1] += 1;
            } else {
                self.overflow.push((j, v));
            }
        }
        if self.overflow.len() > OVERFLOW_BUDGET {
            self.overflowed = true;
            self.overflow = Vec::new();
        }
    }
    fn clipped_sums(&self, st: &mut V3Batch) {
        for (j, (cs, cq)) in st.csum.iter_mut().zip(st.csq.iter_mut()).enumerate() {
            let clip = st.clip[j];
            for k in 0..HIST_MAX {
                let c = self.counts[j * HIST_MAX + k];
                if c > 0 {
                    let e = ((k + 1) as f64).min(clip);
                    *cs += c as f64 * e;
                    *cq += c as f64 * e * e;
                }
            }
        }
        for &(j, v) in &self.overflow {
            let e = (v as f64).min(st.clip[j as usize]);
            st.csum[j as usize] += e;
            st.csq[j as usize] += e * e;
        }
    }
}

/// normalize_total (to `target`, zero-total cells left at zero) and log1p of one cell's stored
/// values, `src` → `dst`: the in-memory path's operations ([`crate::normalize`]: the same
/// divisor, the same vectorised log1p), so the bits are the same.
fn transform_row(src: &[f32], dst: &mut [f32], target: Option<f32>, log1p: bool) {
    match target {
        Some(t) => {
            let d =
                crate::normalize::divisor(src.iter().map(|&x| x as f64).sum::<f64>() as f32 / t);
            for (o, &v) in dst.iter_mut().zip(src) {
                *o = v / d;
            }
        }
        None => dst.copy_from_slice(src),
    }
    if log1p {
        crate::normalize::log1p_slice(dst, None);
    }
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
    // Clipped sums need the fitted trend, which needs every cell first. Integer counts are
    // tallied per gene in a histogram during the single pass, so the clipped sums come from the
    // histograms afterwards; values the histogram cannot hold go to an overflow list, and only if
    // that list outgrows its budget is the input read a second time.
    let mut hists: Vec<ClipHist> = levels.iter().map(|_| ClipHist::new(ng)).collect();

    let src_name = o
        .source
        .as_ref()
        .map_or_else(|| "input".to_string(), |p| p.display().to_string());
    let mut w = CsrStreamWriter::create(out, ng, o.compression).map_err(io)?;
    if let Some(p) = &o.source {
        w.keep_uns_of(p);
    }
    let mut nnz: u64 = 0;
    let mut kept_before = 0usize;
    let t32 = o.target_sum.map(|t| t as f32);
    // Three stages on their own threads: one reads the next block from HDF5, this one computes
    // the current block, one writes the previous block (HDF5 calls are serialised by
    // hdf5-metno's lock, so reading and writing take turns; the arithmetic overlaps both).
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for blk in src.blocks(o.block_cells) {
                if tx.send(blk).is_err() {
                    break; // the consumer stopped on an error
                }
            }
        });
        let (to_writer, written) = std::sync::mpsc::sync_channel::<Compressed>(1);
        // written blocks come back so their buffers are reused
        let (give_back, reuse) = std::sync::mpsc::channel::<Compressed>();
        let w = &mut w;
        let writer = scope.spawn(move || -> Result<()> {
            for block in written {
                w.append(&block).map_err(io)?;
                let _ = give_back.send(block);
            }
            Ok(())
        });
        for blk in rx {
            let (mut out_idx, mut out_val) = match reuse.try_recv() {
                Ok(Compressed {
                    indices,
                    data: Values::F32(v),
                    ..
                }) => (indices, v),
                _ => (Vec::new(), Vec::new()),
            };
            let (start, mut b) = blk.map_err(io)?;
            let vals: Vec<f32> = match std::mem::replace(&mut b.data, Values::F32(Vec::new())) {
                Values::F32(v) => v,
                other => other.to_f32(),
            };
            let rows: Vec<usize> = (0..b.nrows)
                .filter(|&i| {
                    let c = start + i;
                    kept[c] = keep_cell(&vals[b.range(i)], o);
                    kept[c]
                })
                .collect();
            check_block(&b, &vals, &rows, kept_before, o, &src_name)?;
            kept_before += rows.len();
            let spans: Vec<(usize, usize)> = rows
                .iter()
                .map(|&i| (b.range(i).start, b.range(i).end))
                .collect();
            // the output block's row pointers; its values are written straight into out_val
            let mut indptr = Vec::with_capacity(rows.len() + 1);
            indptr.push(0u64);
            for &(a, z) in &spans {
                indptr.push(indptr[indptr.len() - 1] + (z - a) as u64);
            }
            out_val.clear();
            out_val.resize(indptr[rows.len()] as usize, 0.0);
            let dst = crate::normalize::row_slices_mut(&mut out_val, &indptr);
            // HVG statistics on the counts and the transform run side by side
            let vals = &vals;
            // (values checked above: non-negative counts wherever a step needs them)
            let stats = || {
                if o.hvg.is_none() {
                    return;
                }
                for &i in &rows {
                    let r = b.range(i);
                    let (idx, v) = (&b.indices[r.clone()], &vals[r]);
                    let k = slot[&ids[start + i]];
                    state[k].add_moments(idx, v);
                    all.add_moments(idx, v);
                    hists[k].add(idx, v);
                }
            };
            let transform = || {
                dst.into_par_iter()
                    .zip(spans.par_iter())
                    .for_each(|(out, &(a, z))| transform_row(&vals[a..z], out, t32, o.log1p));
            };
            rayon::join(stats, transform);
            out_idx.clear();
            for &(a, z) in &spans {
                out_idx.extend_from_slice(&b.indices[a..z]);
            }
            nnz += out_val.len() as u64;
            let block = Compressed {
                nrows: rows.len(),
                ncols: ng,
                indptr,
                indices: std::mem::take(&mut out_idx),
                data: Values::F32(std::mem::take(&mut out_val)),
            };
            if to_writer.send(block).is_err() {
                break; // the writer stopped on an error: reported below
            }
            progress(1, start + b.nrows);
        }
        drop(to_writer);
        writer.join().expect("the writer thread does not panic")
    })?;
    if let Some(h) = &o.hvg {
        for (b, st) in levels.iter().zip(state.iter_mut()) {
            st.fit(h.span, &b.to_string())?;
        }
        if hists.iter().all(|h| !h.overflowed) {
            for (st, h) in state.iter_mut().zip(&hists) {
                h.clipped_sums(st);
            }
        } else {
            // second pass, statistics only
            for blk in src.blocks(o.block_cells) {
                let (start, b) = blk.map_err(io)?;
                let vals = b.data.to_f32();
                for i in 0..b.nrows {
                    if kept[start + i] {
                        let r = b.range(i);
                        state[slot[&ids[start + i]]].add_clipped(&b.indices[r.clone()], &vals[r]);
                    }
                }
                progress(2, start + b.nrows);
            }
        }
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
    // over the input's own uns (copied whole by the writer), as the in-memory path records them
    let mut uns = vec![(
        "scllm_preprocess".to_string(),
        UnsValue::Dict(vec![
            ("steps".into(), UnsValue::Array(Column::Str(steps))),
            ("streamed".into(), UnsValue::Bool(true)),
        ]),
    )];
    if o.log1p {
        uns.push(("log1p".into(), UnsValue::Dict(vec![])));
    }
    let rows = w.rows_written();
    w.finish(&obs, &var, &[], &uns).map_err(io)?;
    Ok(StreamSummary {
        cells_in: n,
        cells_out: rows,
        genes: ng,
        nnz_out: nnz,
        hvg,
    })
}

#[cfg(test)]
mod tests {
    use super::transform_row;

    /// A row's transform gives the bits of the in-memory path (normalize_total's division,
    /// then `log1p_values` on the whole value array), for integers, fractions and zero totals,
    /// wherever a value sits in its row.
    #[test]
    fn transform_equals_the_in_memory_operations() {
        let rows: [&[f32]; 4] = [
            &[1.0, 2.0, 1.0, 63.0, 64.0, 65.0, 2.0, 1000.0, 1.0],
            &[0.5, 1.0, 1.5, 1.0, 0.25],
            &[0.0, 0.0],
            &[3.0],
        ];
        for src in rows {
            for (target, log1p) in [(Some(1e4f32), true), (Some(1e4), false), (None, true)] {
                let mut got = vec![0f32; src.len()];
                transform_row(src, &mut got, target, log1p);
                let total = src.iter().map(|&x| x as f64).sum::<f64>() as f32;
                let mut want: Vec<f32> = src
                    .iter()
                    .map(|&v| match target {
                        Some(t) if total != 0.0 => v / (total / t),
                        _ => v,
                    })
                    .collect();
                if log1p {
                    // elsewhere in a longer array: the result depends on the value alone
                    let mut long = vec![7.0f32; 13];
                    long.extend(&want);
                    crate::normalize::log1p_values(&mut long, None);
                    want.copy_from_slice(&long[13..]);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{src:?} {target:?} {log1p}");
            }
        }
    }
}
