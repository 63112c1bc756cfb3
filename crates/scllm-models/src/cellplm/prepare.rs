//! A file's cells as CellPLM's annotation pipeline reads them (docs/models/cellplm.md §2, §5):
//! at fine-tuning, the 3,000 most variable genes of the file (`seurat_v3` on the counts, as
//! `Pipeline.common_preprocess`) that are in the model's `gene_list`; at prediction, the genes
//! the model was fine-tuned on. Each cell is its matched entries' gene-table rows and `log1p`
//! counts.

use std::collections::HashSet;
use std::path::Path;

use scllm_io::AnnData;
use scllm_pp::{highly_variable_genes, to_csr_f32, HvgFlavor, HvgOptions};
use scllm_tokenize::cellplm::match_gene_list;
use scllm_tokenize::prepare::check_values;
use scllm_tokenize::{GeneMatch, PrepOptions, Prepared};

use super::embed::read_cells;
use crate::error::{ModelError, Result};

/// `CellTypeAnnotationDefaultPipelineConfig['hvg']`.
pub const ANNOTATION_HVG: usize = 3000;

/// Which of the matched genes a run reads.
#[derive(Clone, Debug)]
pub enum GeneSubset<'a> {
    /// Every gene of `gene_list` in the file (the embedding).
    All,
    /// The `n` most variable genes of the file (seurat_v3 on its counts), then those in
    /// `gene_list` (fine-tuning; all genes when the file has no more than `n`).
    Hvg(usize),
    /// These genes of `gene_list` (prediction with a fine-tuned model: its genes).
    Fixed(&'a [String]),
}

/// The cells of `adata` (X holding raw counts) restricted to `subset`.
pub fn prepare_cells(
    adata: &AnnData,
    gene_list: &[String],
    file: &Path,
    subset: &GeneSubset,
) -> Result<Prepared> {
    let x = adata.x()?;
    let value_kind = check_values(x, file, &PrepOptions::default())?;
    let mut genes = match_gene_list(&adata.var, gene_list, file)?;
    let steps = match subset {
        GeneSubset::All => "log1p of X".to_string(),
        GeneSubset::Hvg(n) if *n < genes.n_genes => {
            let hv = highly_variable_genes(
                &to_csr_f32(x),
                &HvgOptions::new(*n, HvgFlavor::SeuratV3),
                None,
            )?;
            for (id, keep) in genes.ids.iter_mut().zip(&hv.highly_variable) {
                if !keep {
                    *id = None;
                }
            }
            format!("{n} highly variable genes (seurat_v3) in the gene list, log1p of X")
        }
        GeneSubset::Hvg(_) => "every gene (no more than the HVG count), log1p of X".to_string(),
        GeneSubset::Fixed(keep) => {
            let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
            for id in genes.ids.iter_mut() {
                if id.is_some_and(|i| !keep.contains(gene_list[i as usize].as_str())) {
                    *id = None;
                }
            }
            format!("the model's {} fine-tuned genes, log1p of X", keep.len())
        }
    };
    genes.n_matched = genes.ids.iter().filter(|i| i.is_some()).count();
    if genes.n_matched == 0 {
        return Err(ModelError::file(
            file,
            "none of its genes is among the genes the CellPLM model reads (after the gene \
             selection); check var.index holds Ensembl ids or symbols of the training file's \
             genes",
        ));
    }
    let cells = read_cells(adata, &genes)?;
    Ok(Prepared {
        cells,
        gene_match: genes,
        value_kind,
        steps,
        pad_id: 0,
        pad_value: 0.0,
    })
}

/// The `gene_list` entries a file's match reads (sorted, unique): what a fine-tuned model
/// records as its genes.
pub fn genes_read(genes: &GeneMatch, gene_list: &[String]) -> Vec<String> {
    let mut ids: Vec<u32> = genes.ids.iter().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|i| gene_list[i as usize].clone())
        .collect()
}
