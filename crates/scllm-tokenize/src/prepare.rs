//! What every family's input preparation shares: the options, the result, the gene-match rule
//! and the checks on what X holds.

use std::path::Path;

use scllm_io::{AnnData, Matrix};
use scllm_pp::{detect_values, ValueKind};

use crate::vocab::GeneMatch;
use crate::{Result, TokenizeError, TokenizedCell};

/// How a file's cells are turned into a family's tokens.
#[derive(Clone, Debug)]
pub struct PrepOptions {
    /// `var` column with gene names (default: `var.index`).
    pub gene_col: Option<String>,
    /// Use this layer instead of X.
    pub layer: Option<String>,
    /// Longest sequence, special tokens included (scGPT: scPEFT 2001, `Tutorial_Annotation`
    /// 3001; Geneformer: the family's own limit applies when this is larger).
    pub max_len: usize,
    /// Seed of the tokenisation's randomness (scGPT's binning tie-breaks and gene sampling).
    pub seed: u64,
    /// Fail when fewer than this fraction of the file's genes are in the vocabulary...
    pub min_match_fraction: f64,
    /// ...or fewer than this many.
    pub min_matched: usize,
    /// Use only these vocabulary tokens (e.g. the genes an adapter was trained on, so that query
    /// cells are tokenized over the same gene set); `None`: every matched gene.
    pub only_genes: Option<Vec<String>>,
}

impl Default for PrepOptions {
    fn default() -> Self {
        PrepOptions {
            gene_col: None,
            layer: None,
            max_len: 2001,
            seed: 0,
            min_match_fraction: 0.1,
            min_matched: 50,
            only_genes: None,
        }
    }
}

/// Tokenised cells of a file, in row order, and how they were made.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub cells: Vec<TokenizedCell>,
    pub gene_match: GeneMatch,
    /// What X (or the layer) held.
    pub value_kind: ValueKind,
    /// The preprocessing the family applied, for the log (e.g. "normalize_total 1e4 + log1p +
    /// binning").
    pub steps: String,
    pub pad_id: u32,
    pub pad_value: f32,
}

impl Prepared {
    pub fn lengths(&self) -> Vec<usize> {
        self.cells.iter().map(|c| c.len()).collect()
    }
    /// One line for the log.
    pub fn summary(&self) -> String {
        format!(
            "{}; X holds {} ({}); {} cells, mean {:.0} tokens",
            self.gene_match.summary(),
            self.value_kind.as_str(),
            self.steps,
            self.cells.len(),
            self.cells.iter().map(|c| c.len()).sum::<usize>() as f64
                / self.cells.len().max(1) as f64
        )
    }
}

pub(crate) fn file_err(file: &Path, message: impl Into<String>) -> TokenizeError {
    TokenizeError::File {
        path: file.to_path_buf(),
        message: message.into(),
    }
}

/// Every cell's number in `obs[column]`, when the column exists and no cell lacks it.
pub fn obs_numbers(obs: &scllm_io::DataFrame, column: &str) -> Option<Vec<f64>> {
    let col = obs.column(column)?;
    (0..col.len()).map(|i| col.get_f64(i)).collect()
}

/// X, or the layer the options name.
pub fn input_matrix<'a>(adata: &'a AnnData, file: &Path, opts: &PrepOptions) -> Result<&'a Matrix> {
    match &opts.layer {
        None => adata.x().map_err(Into::into),
        Some(l) => adata.layer(l).ok_or_else(|| {
            let names: Vec<&str> = adata.layers.iter().map(|(n, _)| n.as_str()).collect();
            file_err(
                file,
                format!(
                    "no layer `{l}` (layers: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        }),
    }
}

/// Refuse a match below the options' minimum, saying how to fix it.
pub fn check_match(genes: &GeneMatch, file: &Path, opts: &PrepOptions) -> Result<()> {
    let frac = genes.n_matched as f64 / genes.n_genes.max(1) as f64;
    if genes.n_matched < opts.min_matched || frac < opts.min_match_fraction {
        return Err(file_err(
            file,
            format!(
                "only {} of {} genes ({:.1}%) are in the model's vocabulary (by {}; unmatched e.g. {}). \
                 At least {} genes and {:.0}% are needed: check that the gene names are HGNC symbols \
                 or Ensembl ids, pick the gene column with --gene-col, or use a model whose \
                 vocabulary covers this species/panel.",
                genes.n_matched,
                genes.n_genes,
                100.0 * frac,
                genes.key,
                genes.unmatched_examples.join(", "),
                opts.min_matched,
                100.0 * opts.min_match_fraction
            ),
        ));
    }
    Ok(())
}

/// Keep only the matches whose token is in `only` (by `token_of`); an empty result is an error.
pub fn restrict_to(
    genes: &mut GeneMatch,
    only: &[String],
    token_id: impl Fn(&str) -> Option<u32>,
    file: &Path,
) -> Result<()> {
    let keep: std::collections::HashSet<u32> = only.iter().filter_map(|g| token_id(g)).collect();
    for id in genes.ids.iter_mut() {
        if id.is_some_and(|i| !keep.contains(&i)) {
            *id = None;
        }
    }
    genes.n_matched = genes.ids.iter().filter(|i| i.is_some()).count();
    if genes.n_matched == 0 {
        return Err(file_err(
            file,
            format!(
                "none of the {} genes the model was fine-tuned on is in this file ({}); \
                 query and training files must name genes the same way",
                keep.len(),
                genes.key
            ),
        ));
    }
    Ok(())
}

/// What `m` holds, refusing what no family can tokenise (scaled values, NaN, nothing stored).
pub fn check_values(m: &Matrix, file: &Path, opts: &PrepOptions) -> Result<ValueKind> {
    let report = detect_values(m);
    let what = opts.layer.as_deref().unwrap_or("X");
    match report.kind {
        ValueKind::Scaled => {
            return Err(file_err(
                file,
                format!(
                "{what} holds scaled values (min {:.3}): the models need non-negative expression. \
                     Use the counts layer (--layer counts) or the raw counts.",
                report.min
            ),
            ))
        }
        ValueKind::Empty => return Err(file_err(file, format!("{what} stores no values"))),
        _ => {}
    }
    if report.has_nan {
        return Err(file_err(
            file,
            "the expression matrix holds NaN; remove or impute them first",
        ));
    }
    Ok(report.kind)
}
