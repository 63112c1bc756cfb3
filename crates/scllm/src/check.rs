//! `scllm check FILE --model DIR`: arguments into a [`CheckJob`], printing. The work is
//! `scllm_tasks::check`.

use std::path::PathBuf;

use clap::Args;
use scllm_tasks::check::{check, CheckJob};
use scllm_tasks::{bad, model_dir};

#[derive(Args, Debug)]
#[command(
    after_help = "The preflight before a long run, for a model of any family: how many of the \
file's genes are in the model's vocabulary (gene symbols, or Ensembl ids with or without a \
version, through the bundled GENCODE map; Geneformer also by var['ensembl_id']), what X holds \
(raw counts, log-normalized, scaled, floats that look like counts) against what the model needs \
(Geneformer, scBERT, CellPLM: raw counts; CellPLM matches var.index against its config's \
gene_list, as embed does), dense or sparse, and how many cells have no vocabulary gene. Exits \
with 2 when fewer than --min-gene-match of the genes match or the values do not fit.\n\n\
Example:\n  \
scllm check pbmc.h5ad --model scGPT_human\n  \
scllm check pbmc.h5ad --model Geneformer-V1-10M --min-gene-match 0.5 --json"
)]
pub struct CheckArgs {
    /// The .h5ad to check
    pub input: PathBuf,
    /// Model folder of any family (default: the shipped models/scllm-small, or $SCLLM_MODEL)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Geneformer: a folder holding the model's dictionary pickles (default: the model folder)
    #[arg(long, value_name = "DIR")]
    pub dictionaries: Option<PathBuf>,
    /// var column naming genes (default: the index; Geneformer: var['ensembl_id'] when present)
    #[arg(long)]
    pub gene_col: Option<String>,
    /// Check this layer instead of X
    #[arg(long)]
    pub layer: Option<String>,
    /// Fail when fewer than this fraction of the genes match the vocabulary
    #[arg(long, default_value_t = 0.1)]
    pub min_gene_match: f64,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CheckArgs) -> anyhow::Result<()> {
    let r = check(&CheckJob {
        input: a.input.clone(),
        model: model_dir::resolve(a.model.as_deref())?,
        dictionaries: a.dictionaries.clone(),
        gene_col: a.gene_col.clone(),
        layer: a.layer.clone(),
        min_gene_match: a.min_gene_match,
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{} against {}", r.input, r.model_description);
        println!(
            "  genes: {} of {} in the vocabulary ({:.1}%, by {}){}",
            r.genes_matched,
            r.genes,
            100.0 * r.gene_match_fraction,
            r.matched_by,
            if r.unmatched_examples.is_empty() {
                String::new()
            } else {
                format!("; not matched e.g. {}", r.unmatched_examples.join(", "))
            }
        );
        println!(
            "  X: {} {} ({}){}",
            r.storage,
            r.values,
            r.values_explanation,
            if r.floats_that_look_like_counts {
                "; the floats are whole numbers: counts stored as floats"
            } else {
                ""
            }
        );
        println!(
            "  cells: {} ({} with no vocabulary gene)",
            r.cells, r.cells_without_vocabulary_gene
        );
        println!(
            "  fits the model: {}",
            if r.problems.is_empty() { "yes" } else { "no" }
        );
    }
    if !r.problems.is_empty() {
        return Err(bad(format!("{}: {}", r.input, r.problems.join("; "))));
    }
    Ok(())
}
