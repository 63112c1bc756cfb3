//! Embedding a file's cells with CellPLM (the reference's `CellEmbeddingPipeline.predict`,
//! docs/models/cellplm.md §4.1): genes matched against the config's `gene_list`, each cell's
//! `log1p` counts, the attention sets of [`Sets`], one forward pass per set, the latent means
//! back in input order.

use std::path::Path;

use burn::tensor::Device;
use scllm_io::AnnData;
use scllm_tokenize::cellplm::{match_gene_list, CellPlmTokenizer};
use scllm_tokenize::{GeneMatch, RowTokenizer, TokenizedCell};

use super::model::{CellPlm, SetInput};
use super::sets::{SetOptions, Sets};
use crate::error::{ModelError, Result};

/// Where users look for CellPLM's embedding.
pub const OBSM_KEY: &str = "X_cellplm";

/// A file's CellPLM embeddings.
pub struct CellPlmEmbedding {
    /// `[n_cells, dim]`, row-major, rows in input order.
    pub latent: Vec<f32>,
    pub dim: usize,
    pub genes: GeneMatch,
    pub sets: Sets,
    /// Seconds in the model's forward passes (the rest of the call: gene matching, reading the
    /// cells, grouping).
    pub forward_seconds: f64,
}

/// Every cell of `adata` as the embedder reads it (gene-table rows, `log1p` counts), from `X`
/// holding raw counts.
pub fn read_cells(adata: &AnnData, genes: &GeneMatch) -> Result<Vec<TokenizedCell>> {
    let x = adata.x()?.to_csr();
    let data = x.data.to_f32();
    let tok = CellPlmTokenizer::new(genes);
    (0..x.nrows)
        .map(|i| {
            let r = x.range(i);
            Ok(tok.tokenize_row(&x.indices[r.clone()], &data[r], 0.0)?)
        })
        .collect()
}

/// The input of one set.
pub fn set_input<'a>(cells: &'a [TokenizedCell], rows: &[usize]) -> SetInput<'a> {
    SetInput {
        genes: rows.iter().map(|&r| cells[r].genes.as_slice()).collect(),
        values: rows.iter().map(|&r| cells[r].values.as_slice()).collect(),
    }
}

/// Embed every cell of `adata` (`file` names it in errors).
pub fn embed_anndata(
    model: &CellPlm,
    gene_list: &[String],
    adata: &AnnData,
    file: &Path,
    opts: &SetOptions,
    dev: &Device,
) -> Result<CellPlmEmbedding> {
    let genes = match_gene_list(&adata.var, gene_list, file)?;
    let cells = read_cells(adata, &genes)?;
    let sets = Sets::build(&adata.obs, cells.len(), opts, file)?;
    let dim = model.latent_dim();
    let mut latent = vec![0f32; cells.len() * dim];
    let t0 = std::time::Instant::now();
    for rows in &sets.sets {
        crate::interrupt::check()?;
        let out = model.forward_set(&set_input(&cells, rows), dev)?;
        let z: Vec<f32> = out
            .latent
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
        for (k, &r) in rows.iter().enumerate() {
            latent[r * dim..(r + 1) * dim].copy_from_slice(&z[k * dim..(k + 1) * dim]);
        }
    }
    Ok(CellPlmEmbedding {
        latent,
        dim,
        genes,
        sets,
        forward_seconds: t0.elapsed().as_secs_f64(),
    })
}
