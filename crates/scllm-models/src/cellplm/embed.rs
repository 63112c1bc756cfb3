//! Embedding a file's cells with CellPLM (the reference's `CellEmbeddingPipeline.predict`,
//! docs/models/cellplm.md §4.1): genes matched against the config's `gene_list`, each cell's
//! `log1p` counts, the attention sets of [`Sets`], one forward pass per set, the latent means
//! back in input order. [`embed_anndata`] holds the cells in memory; [`embed_blocks`] reads X
//! block by block (`--stream`) and gives the same numbers.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use scllm_io::{AnnData, BackedAnnData, Compressed};
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
    tokenize_rows(&adata.x()?.to_csr(), &CellPlmTokenizer::new(genes))
}

/// The rows of a CSR block as the embedder reads them.
fn tokenize_rows(x: &Compressed, tok: &CellPlmTokenizer) -> Result<Vec<TokenizedCell>> {
    let data = x.data.to_f32();
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
        embed_set(model, &set_input(&cells, rows), rows, &mut latent, dev)?;
    }
    Ok(CellPlmEmbedding {
        latent,
        dim,
        genes,
        sets,
        forward_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// One set's forward pass; its latent means go to the set's rows of `latent`.
fn embed_set(
    model: &CellPlm,
    set: &SetInput,
    rows: &[usize],
    latent: &mut [f32],
    dev: &Device,
) -> Result<()> {
    crate::interrupt::check()?;
    let dim = model.latent_dim();
    let out = model.forward_set(set, dev)?;
    let z: Vec<f32> = out
        .latent
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
    for (k, &r) in rows.iter().enumerate() {
        latent[r * dim..(r + 1) * dim].copy_from_slice(&z[k * dim..(k + 1) * dim]);
    }
    Ok(())
}

/// Embed the cells of `backed` reading X `block_cells` rows at a time (`--stream`), with the
/// same sets and numbers as [`embed_anndata`]: a set runs as soon as its last cell has been read
/// and its cells are then dropped, so what is held is the embedding plus the cells of the sets
/// not yet complete (one group's cells when the file is sorted by group; `opts.batch_size`
/// bounds a set). `after_block(block, k)` sees every block once its cells are read, with the
/// `k` cells embedded meanwhile (the caller copies X to its output and moves its progress bar).
pub fn embed_blocks(
    model: &CellPlm,
    gene_list: &[String],
    backed: &BackedAnnData,
    opts: &SetOptions,
    block_cells: usize,
    dev: &Device,
    after_block: &mut dyn FnMut(&Compressed, usize) -> Result<()>,
) -> Result<CellPlmEmbedding> {
    let file = backed.path();
    let genes = match_gene_list(&backed.var, gene_list, file)?;
    let tok = CellPlmTokenizer::new(&genes);
    let n = backed.shape().0;
    let sets = Sets::build(&backed.obs, n, opts, file)?;
    // sets in the order their last cell arrives (rows ascend within a set)
    let mut order: Vec<&[usize]> = sets.sets.iter().map(Vec::as_slice).collect();
    order.sort_by_key(|rows| rows.last().copied());
    let mut order = order.into_iter().peekable();
    let dim = model.latent_dim();
    let mut latent = vec![0f32; n * dim];
    let mut pending: HashMap<usize, TokenizedCell> = HashMap::new();
    let mut forward_seconds = 0.0;
    for block in backed.blocks(block_cells) {
        let (start, block) = block?;
        let end = start + block.nrows;
        pending.extend((start..end).zip(tokenize_rows(&block, &tok)?));
        let mut embedded = 0;
        while let Some(rows) = order.next_if(|rows| rows.last().is_some_and(|&l| l < end)) {
            let cells: Vec<TokenizedCell> = rows
                .iter()
                .map(|r| {
                    pending
                        .remove(r)
                        .expect("a set runs once all its rows are read")
                })
                .collect();
            let all: Vec<usize> = (0..cells.len()).collect();
            let t0 = std::time::Instant::now();
            embed_set(model, &set_input(&cells, &all), rows, &mut latent, dev)?;
            forward_seconds += t0.elapsed().as_secs_f64();
            embedded += rows.len();
        }
        after_block(&block, embedded)?;
    }
    Ok(CellPlmEmbedding {
        latent,
        dim,
        genes,
        sets,
        forward_seconds,
    })
}
