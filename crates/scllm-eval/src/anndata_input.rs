//! Getting expression and labels out of AnnData the same way for every baseline: log1p(CP10k)
//! from whatever X holds (said, never guessed silently), query genes aligned to the reference's,
//! labels with missing values (NaN) left out of training and scoring, embeddings of obsm as f32.

use std::collections::HashMap;

use scllm_io::{AnnData, Compressed, Matrix, Values};
use scllm_pp::{detect_values, log1p, normalize_total, to_csr_f32, ValueKind};

use crate::{invalid, Result};

/// Log-normalised expression (CSR float32, cells × genes) and what was done to get it.
pub struct LogData {
    pub x: Compressed,
    pub genes: Vec<String>,
    /// What X held (`counts`, `lognorm`, `normalized`).
    pub input_kind: &'static str,
    /// One sentence for the user.
    pub note: String,
}

/// The display name of an AnnData's file.
pub fn name(a: &AnnData) -> String {
    a.source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<in memory>".into())
}

/// The names of an AnnData's layers or obsm entries for a message; `(none)` when empty.
pub(crate) fn names_of(items: &[(String, Matrix)]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The matrix `--layer` names (`None`: X; `raw`: `.raw.X`; else `layers[name]`), its gene names
/// and how messages call it (`X`, `.raw.X`, `layers['name']`). `no_raw_fix` is the fix a
/// missing `.raw` error suggests.
pub fn layer_matrix<'a>(
    a: &'a AnnData,
    layer: Option<&str>,
    no_raw_fix: &str,
) -> Result<(&'a Matrix, Vec<String>, String)> {
    let src = name(a);
    Ok(match layer {
        None => (a.x()?, a.var.index.clone(), "X".to_string()),
        Some("raw") => {
            let raw = a
                .raw
                .as_ref()
                .ok_or_else(|| invalid(format!("{src}: has no .raw; {no_raw_fix}")))?;
            (&raw.x, raw.var.index.clone(), ".raw.X".to_string())
        }
        Some(l) => (
            a.layer(l).ok_or_else(|| {
                invalid(format!(
                    "{src}: field `layers['{l}']`: no such layer (layers: {}); pass an existing --layer or none to use X",
                    names_of(&a.layers)
                ))
            })?,
            a.var.index.clone(),
            format!("layers['{l}']"),
        ),
    })
}

/// log1p(CP10k) of X (or of `layer`, `raw` for `.raw.X`): counts are normalised to 10,000 per
/// cell and logged, normalised values are logged, log-normalised values are used as they are;
/// scaled (negative) values are refused.
pub fn log_normalized(a: &AnnData, layer: Option<&str>) -> Result<LogData> {
    let src = name(a);
    let (m, genes, what) = layer_matrix(
        a,
        layer,
        "drop --layer raw or store raw counts in adata.raw",
    )?;
    let report = detect_values(m);
    if report.has_nan {
        return Err(invalid(format!(
            "{src}: field `{what}`: contains NaN values; remove or impute them first"
        )));
    }
    let csr = to_csr_f32(m);
    let (x, kind, note) = match report.kind {
        ValueKind::Counts => {
            let (n, _, _) = normalize_total(&csr, Some(1e4));
            (log1p(&n), "counts", "counts; normalised to 10,000 per cell and log1p-transformed")
        }
        ValueKind::Normalized => (log1p(&csr), "normalized", "normalised values; log1p-transformed"),
        ValueKind::LogNormalized => (csr, "lognorm", "log-normalised values; used as they are"),
        ValueKind::Scaled => {
            return Err(invalid(format!(
                "{src}: field `{what}`: holds scaled values (min {:.3} < 0); baselines need counts or log-normalised data: pass --layer counts (or --layer raw)",
                report.min
            )))
        }
        ValueKind::Empty => {
            return Err(invalid(format!(
                "{src}: field `{what}`: has no stored values; store counts in X"
            )))
        }
    };
    Ok(LogData {
        x,
        genes,
        input_kind: kind,
        note: format!(
            "{src}: {} cells x {} genes; {what} holds {note}",
            m.shape().0,
            m.shape().1
        ),
    })
}

/// Reorder the columns of `x` (genes `from`) to the genes `to`; genes of `to` missing from
/// `from` become zero columns. Returns the matrix and the number of genes of `to` found.
pub fn align_genes(x: &Compressed, from: &[String], to: &[String]) -> (Compressed, usize) {
    let pos: HashMap<&str, usize> = to
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let map: Vec<Option<u32>> = from
        .iter()
        .map(|g| pos.get(g.as_str()).map(|&i| i as u32))
        .collect();
    let found = map.iter().filter(|m| m.is_some()).count();
    let vals = x.data.to_f32();
    let mut indptr = vec![0u64];
    let mut indices = Vec::new();
    let mut data = Vec::new();
    let mut row: Vec<(u32, f32)> = Vec::new();
    for i in 0..x.nrows {
        row.clear();
        for k in x.range(i) {
            if let Some(j) = map[x.indices[k] as usize] {
                row.push((j, vals[k]));
            }
        }
        row.sort_unstable_by_key(|e| e.0);
        for &(j, v) in &row {
            indices.push(j);
            data.push(v);
        }
        indptr.push(indices.len() as u64);
    }
    (
        Compressed {
            nrows: x.nrows,
            ncols: to.len(),
            indptr,
            indices,
            data: Values::F32(data),
        },
        found,
    )
}

/// Labels of `obs[col]`: `(cells with a label, their labels)`; NaN labels are left out.
pub fn labeled_cells(a: &AnnData, col: &str) -> Result<(Vec<usize>, Vec<String>)> {
    let labels = a.obs_column(col)?.to_strings();
    let mut idx = Vec::new();
    let mut out = Vec::new();
    for (i, l) in labels.into_iter().enumerate() {
        if let Some(l) = l {
            idx.push(i);
            out.push(l);
        }
    }
    Ok((idx, out))
}

/// A dense row-major f32 copy of an obsm matrix (an embedding), as kNN and UMAP take it.
pub fn obsm_dense(m: &Matrix) -> Vec<f32> {
    m.to_dense_f64().into_iter().map(|v| v as f32).collect()
}

/// [`obsm_dense`] of `obsm[key]` of the file `src`, refusing NaN or infinite values (distances
/// to a NaN are NaN, and every neighbour search then answers at random).
pub fn obsm_finite(m: &Matrix, src: &str, key: &str) -> Result<Vec<f32>> {
    let x = obsm_dense(m);
    if x.iter().any(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "{src}: field `obsm['{key}']`: contains NaN or infinite values; recompute the embedding"
        )));
    }
    Ok(x)
}
