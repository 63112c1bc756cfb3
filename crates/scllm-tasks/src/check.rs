//! `check`: the preflight before a long run with a model of any family: how many of a file's
//! genes the model knows (and by which names), what X holds against what the model needs,
//! dense or sparse, and cells that no vocabulary gene reaches.

use std::path::PathBuf;

use scllm_io::{AnnData, Matrix};
use scllm_models::{with_folder, Family, ModelFolder};
use scllm_pp::{detect_values, ValueKind};
use scllm_tokenize::GeneMatch;
use serde::Serialize;

use crate::bad;

/// One `scllm check` run.
#[derive(Clone, Debug)]
pub struct CheckJob {
    pub input: PathBuf,
    pub model: PathBuf,
    /// Geneformer: a folder with the model's dictionary pickles (default: the model folder).
    pub dictionaries: Option<PathBuf>,
    /// `var` column naming genes (default: the family's choice: the index, `ensembl_id`).
    pub gene_col: Option<String>,
    /// Use this layer instead of X.
    pub layer: Option<String>,
    /// Fail (bad input) when fewer than this fraction of the file's genes match.
    pub min_gene_match: f64,
}

/// What the check found.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub input: String,
    pub model: String,
    pub family: Family,
    pub model_description: String,
    pub cells: usize,
    pub genes: usize,
    pub genes_matched: usize,
    pub gene_match_fraction: f64,
    /// How names were matched (`var.index`, `var['ensembl_id']`, `... via GENCODE`).
    pub matched_by: String,
    pub unmatched_examples: Vec<String>,
    /// What X (or the layer) holds: counts, lognorm, normalized, scaled, empty.
    pub values: String,
    pub values_explanation: String,
    /// Non-integer values that are all within 1e-3 of an integer: counts stored as floats.
    pub floats_that_look_like_counts: bool,
    pub storage: String,
    /// Cells with no stored value on a matched gene (the model sees an empty cell).
    pub cells_without_vocabulary_gene: usize,
    /// What the family's tokenizer needs and whether X has it.
    pub values_fit_the_model: bool,
    pub problems: Vec<String>,
}

/// Run the check. Problems (too few genes matched, values the model cannot use) are listed in
/// the report; the caller decides whether they stop the run.
pub fn check(job: &CheckJob) -> anyhow::Result<CheckReport> {
    if scllm_models::cellplm::is_cellplm_dir(&job.model) {
        return check_cellplm(job);
    }
    let folder = crate::model_dir::open(&job.model, None, job.dictionaries.as_deref())?;
    with_folder!(&folder, |f| check_with(f, job))
}

fn check_with<F: ModelFolder>(f: &F, job: &CheckJob) -> anyhow::Result<CheckReport> {
    let a = read_input(job)?;
    let genes = f.match_genes(&a.var, job.gene_col.as_deref(), &job.input)?;
    // Geneformer ranks raw counts; scBERT normalises them over its panel
    let needs_counts = matches!(f.family(), Family::Geneformer | Family::ScBert);
    let wrong_values = |kind: &str, nan: bool| {
        if needs_counts {
            format!(
                "X holds {kind} values; {} tokenises raw counts (use the counts layer with --layer)",
                f.family()
            )
        } else {
            format!(
                "X holds {kind} values{}; the model needs non-negative expression",
                if nan { " with NaN" } else { "" }
            )
        }
    };
    let model = Model {
        family: f.family(),
        description: f.describe(),
        needs_counts,
        wrong_values: &wrong_values,
    };
    report(job, &a, &genes, &model)
}

/// `check` against a CellPLM folder: genes matched by `var.index` against the config's
/// `gene_list` as `embed` matches them (docs/models/cellplm.md §2), and X's raw counts, which
/// CellPLM takes `log1p` of with no library-size normalisation.
fn check_cellplm(job: &CheckJob) -> anyhow::Result<CheckReport> {
    let unsupported = [
        (job.dictionaries.is_some(), "--dictionaries"),
        (job.gene_col.is_some(), "--gene-col"),
        (job.layer.is_some(), "--layer"),
    ];
    crate::error::refuse_flags(&unsupported, |flag| {
        format!(
            "{flag} is not supported for CellPLM models (`scllm embed` reads X's raw counts, \
             genes matched by var.index)"
        )
    })?;
    let folder = scllm_models::cellplm::CellPlmFolder::open(&job.model)?;
    let shape = folder.shape()?;
    let a = read_input(job)?;
    let genes =
        scllm_tokenize::cellplm::match_gene_list(&a.var, &folder.config.gene_list, &job.input)?;
    let wrong_values = |kind: &str, nan: bool| {
        format!(
            "X holds {kind} values{}; CellPLM embeds log1p of raw counts (put the counts in X)",
            if nan { " with NaN" } else { "" }
        )
    };
    let model = Model {
        family: Family::CellPlm,
        description: format!(
            "CellPLM: {} layers, d {}, {} heads, latent {}, {} genes ({})",
            shape.n_layers,
            shape.d_model,
            shape.heads,
            shape.gmvae.map_or(shape.latent, |(_, _, l)| l),
            folder.config.gene_list.len(),
            folder.ckpt_path.display()
        ),
        needs_counts: true,
        wrong_values: &wrong_values,
    };
    report(job, &a, &genes, &model)
}

/// What the report says of the model.
struct Model<'a> {
    family: Family,
    description: String,
    /// The family reads raw counts (not any non-negative expression).
    needs_counts: bool,
    /// The problem line for values the model cannot use (what X holds, NaN present).
    wrong_values: &'a dyn Fn(&str, bool) -> String,
}

/// The input file, once `--min-gene-match` is known to be a fraction.
fn read_input(job: &CheckJob) -> anyhow::Result<AnnData> {
    if !(0.0..=1.0).contains(&job.min_gene_match) {
        return Err(bad(format!(
            "--min-gene-match must be in [0, 1], got {}",
            job.min_gene_match
        )));
    }
    Ok(scllm_io::read_h5ad(&job.input)?)
}

/// The report of `a`'s X (or `--layer`) against a model whose genes matched as `genes`.
fn report(
    job: &CheckJob,
    a: &AnnData,
    genes: &GeneMatch,
    model: &Model,
) -> anyhow::Result<CheckReport> {
    let m: &Matrix = match &job.layer {
        None => a.x()?,
        Some(l) => a.layer(l).ok_or_else(|| {
            bad(format!(
                "{}: no layer `{l}` (layers: {})",
                job.input.display(),
                a.layers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
    };
    let storage = match m {
        Matrix::Dense { .. } => "dense",
        Matrix::Csr(_) => "sparse (CSR)",
        Matrix::Csc(_) => "sparse (CSC)",
    }
    .to_string();
    let v = detect_values(m);
    let x = scllm_pp::to_csr_f32(m);
    let vals = x.data.to_f32();
    let near_int = v.kind != ValueKind::Counts
        && !vals.is_empty()
        && vals
            .iter()
            .all(|&x| !x.is_finite() || (x - x.round()).abs() <= 1e-3);
    let empty_cells = (0..x.nrows)
        .filter(|&i| {
            let r = x.range(i);
            !x.indices[r.clone()]
                .iter()
                .zip(&vals[r])
                .any(|(&j, &val)| val != 0.0 && genes.ids[j as usize].is_some())
        })
        .count();
    let frac = genes.n_matched as f64 / genes.n_genes.max(1) as f64;
    let fits = match v.kind {
        ValueKind::Scaled | ValueKind::Empty => false,
        ValueKind::Counts => true,
        _ => !model.needs_counts,
    } && !v.has_nan;
    let mut problems = Vec::new();
    if frac < job.min_gene_match {
        problems.push(format!(
            "only {} of {} genes ({:.1}%) are in the model's vocabulary (by {}), below --min-gene-match {}",
            genes.n_matched,
            genes.n_genes,
            100.0 * frac,
            genes.key,
            job.min_gene_match
        ));
    }
    if !fits {
        problems.push((model.wrong_values)(v.kind.as_str(), v.has_nan));
    }
    Ok(CheckReport {
        input: job.input.display().to_string(),
        model: job.model.display().to_string(),
        family: model.family,
        model_description: model.description.clone(),
        cells: x.nrows,
        genes: genes.n_genes,
        genes_matched: genes.n_matched,
        gene_match_fraction: frac,
        matched_by: genes.key.clone(),
        unmatched_examples: genes.unmatched_examples.clone(),
        values: v.kind.as_str().to_string(),
        values_explanation: v.explanation.clone(),
        floats_that_look_like_counts: near_int,
        storage,
        cells_without_vocabulary_gene: empty_cells,
        values_fit_the_model: fits,
        problems,
    })
}
