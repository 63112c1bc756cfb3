//! From an AnnData and a label column to what the trainer reads: tokenised cells and class ids.
//!
//! As the reference (`Tutorial_Annotation`, scPEFT): genes absent from the vocabulary are removed
//! first; then `normalize_total` to 1e4, `log1p` when X holds counts (the value-kind detector
//! decides; log-normalised input is only normalised, as `data_is_raw=False`), per-cell binning into
//! `n_bins` (51), and `tokenize_and_pad_batch`: expressed genes only, `<cls>` first with value 0,
//! at most `max_len` tokens (a random subset of genes, in random order, when a cell has more).
//! Randomness (binning ties, gene sampling) is seeded per cell from `seed` and the cell's content.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use scllm_io::{AnnData, DataFrame, Matrix, Values};
use scllm_models::ScGptConfig;
use scllm_pp::{detect_values, BinRng, Binner, ValueKind};
use scllm_tokenize::{GeneMatch, GeneVocab, TokenizedCell, Tokenizer, TokenizerConfig};

use crate::error::{file_err, Result};

/// How cells are turned into tokens.
#[derive(Clone, Debug)]
pub struct PrepOptions {
    /// `var` column with gene symbols (default: `var.index`).
    pub gene_col: Option<String>,
    /// Use this layer instead of X.
    pub layer: Option<String>,
    /// Longest sequence, `<cls>` included (scPEFT 2001; `Tutorial_Annotation` 3001).
    pub max_len: usize,
    /// Bins per cell (`args.json` `n_bins`, 51).
    pub n_bins: usize,
    /// Seed of the binning tie-breaks and the gene sampling.
    pub seed: u64,
    /// Fail when fewer than this fraction of the file's genes are in the vocabulary...
    pub min_match_fraction: f64,
    /// ...or fewer than this many.
    pub min_matched: usize,
    /// Use only these vocabulary tokens (e.g. the genes an adapter was trained on, so that query
    /// cells are tokenized and binned over the same gene set); `None`: every matched gene.
    pub only_genes: Option<Vec<String>>,
}

impl Default for PrepOptions {
    fn default() -> Self {
        PrepOptions {
            gene_col: None,
            layer: None,
            max_len: 2001,
            n_bins: 51,
            seed: 0,
            min_match_fraction: 0.1,
            min_matched: 50,
            only_genes: None,
        }
    }
}

impl PrepOptions {
    /// Defaults with `n_bins` from the model's `args.json`.
    pub fn for_model(cfg: &ScGptConfig) -> Self {
        PrepOptions {
            n_bins: cfg.n_bins,
            ..Default::default()
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
    /// Whether `log1p` ran (X held counts).
    pub log1p: bool,
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
            "{}; X holds {}{}; {} cells, mean {:.0} tokens",
            self.gene_match.summary(),
            self.value_kind.as_str(),
            if self.log1p {
                " (normalize_total 1e4 + log1p + binning)"
            } else {
                " (normalize_total 1e4 + binning)"
            },
            self.cells.len(),
            self.cells.iter().map(|c| c.len()).sum::<usize>() as f64
                / self.cells.len().max(1) as f64
        )
    }
}

/// Tokenise every cell of `adata` for a scGPT model (`file` names it in messages).
pub fn prepare_cells(
    adata: &AnnData,
    file: &Path,
    vocab: &GeneVocab,
    cfg: &ScGptConfig,
    opts: &PrepOptions,
) -> Result<Prepared> {
    let m: &Matrix = match &opts.layer {
        None => adata.x()?,
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
        })?,
    };
    let mut genes = scllm_tokenize::match_genes(&adata.var, vocab, opts.gene_col.as_deref(), file)?;
    let frac = genes.n_matched as f64 / genes.n_genes.max(1) as f64;
    if genes.n_matched < opts.min_matched || frac < opts.min_match_fraction {
        return Err(file_err(
            file,
            format!(
                "only {} of {} genes ({:.1}%) are in the model's vocabulary (by {}; unmatched e.g. {}). \
                 At least {} genes and {:.0}% are needed: check that the gene names are HGNC symbols \
                 or Ensembl ids, pick the symbol column with --gene-col, or use a model whose \
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
    if let Some(only) = &opts.only_genes {
        let keep: std::collections::HashSet<u32> =
            only.iter().filter_map(|g| vocab.get(g)).collect();
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
                    "none of the {} genes the model was fine-tuned on is in this file ({});                      query and training files must name genes the same way",
                    keep.len(),
                    genes.key
                ),
            ));
        }
    }
    let report = detect_values(m);
    match report.kind {
        ValueKind::Scaled => {
            return Err(file_err(
                file,
                format!(
                    "{} holds scaled values (min {:.3}): binning needs non-negative expression. \
                     Use the counts layer (--layer counts) or the raw counts.",
                    opts.layer.as_deref().unwrap_or("X"),
                    report.min
                ),
            ))
        }
        ValueKind::Empty => {
            return Err(file_err(
                file,
                format!("{} stores no values", opts.layer.as_deref().unwrap_or("X")),
            ))
        }
        _ => {}
    }
    if report.has_nan {
        return Err(file_err(
            file,
            "the expression matrix holds NaN; remove or impute them first",
        ));
    }
    // genes absent from the vocabulary are removed before preprocessing, as the reference does
    let cols = genes.matched_columns();
    let sub = m.select_cols(&cols);
    let x = scllm_pp::to_csr_f32(&sub);
    let (x, _, _) = scllm_pp::normalize_total(&x, Some(1e4));
    let log1p = report.kind == ValueKind::Counts;
    let x = if log1p { scllm_pp::log1p(&x) } else { x };
    let (binned, _) = Binner::new(opts.n_bins, BinRng::per_cell(opts.seed)).bin_matrix(&x)?;
    let sub_match = GeneMatch {
        ids: cols.iter().map(|&j| genes.ids[j]).collect(),
        n_matched: cols.len(),
        n_genes: cols.len(),
        key: genes.key.clone(),
        unmatched_examples: vec![],
    };
    let mut tc = TokenizerConfig::finetune(opts.max_len, opts.seed);
    tc.pad_value = cfg.pad_value as f32;
    let tok = Tokenizer::new(tc, &sub_match, vocab, "<cls>", &cfg.pad_token)?;
    let vals: Vec<f32> = match &binned.data {
        Values::I64(v) => v.iter().map(|&b| b as f32).collect(),
        other => other.to_f32(),
    };
    let cells = (0..binned.nrows)
        .into_par_iter()
        .map(|i| {
            let r = binned.range(i);
            tok.tokenize_row(&binned.indices[r.clone()], &vals[r])
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Prepared {
        cells,
        gene_match: genes,
        value_kind: report.kind,
        log1p,
        pad_id: tok.pad_id,
        pad_value: tok.cfg.pad_value,
    })
}

/// Which obs column holds the labels, and what to do with rare classes.
#[derive(Clone, Debug)]
pub struct LabelOptions {
    pub label_col: String,
    /// Drop classes with fewer cells than this (reported). Without it a class with a single cell
    /// is an error: it can be neither stratified nor validated.
    pub min_cells_per_class: Option<usize>,
}

impl LabelOptions {
    pub fn new(label_col: impl Into<String>) -> Self {
        LabelOptions {
            label_col: label_col.into(),
            min_cells_per_class: None,
        }
    }
}

/// Labelled cells ready for training: `cells[i]` has class `labels[i]` (`classes` sorted).
#[derive(Clone, Debug)]
pub struct AnnotationData {
    pub file: PathBuf,
    pub label_col: String,
    pub cells: Vec<TokenizedCell>,
    pub labels: Vec<u32>,
    /// Sorted class names; a label is an index here.
    pub classes: Vec<String>,
    /// Row of each kept cell in the file.
    pub rows: Vec<usize>,
    /// `obs` of the kept cells (for `--val-by`).
    pub obs: DataFrame,
    /// Cells without a label (NaN / empty), left out.
    pub n_unlabeled: usize,
    /// Classes dropped by `min_cells_per_class`, with their cell counts.
    pub dropped_classes: Vec<(String, usize)>,
    pub gene_match: GeneMatch,
    pub value_kind: ValueKind,
    pub log1p: bool,
    pub pad_id: u32,
    pub pad_value: f32,
}

fn missing_label(s: &str) -> bool {
    let t = s.trim();
    t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("none")
}

impl AnnotationData {
    /// Read `path` and prepare its labelled cells.
    pub fn from_h5ad(
        path: impl AsRef<Path>,
        vocab: &GeneVocab,
        cfg: &ScGptConfig,
        prep: &PrepOptions,
        labels: &LabelOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        let adata = scllm_io::read_h5ad(path)?;
        Self::from_anndata(&adata, path, vocab, cfg, prep, labels)
    }

    pub fn from_anndata(
        adata: &AnnData,
        file: &Path,
        vocab: &GeneVocab,
        cfg: &ScGptConfig,
        prep: &PrepOptions,
        lopts: &LabelOptions,
    ) -> Result<Self> {
        let col = adata.obs.column(&lopts.label_col).ok_or_else(|| {
            file_err(
                file,
                format!(
                    "obs has no label column `{}`. Columns present: {}. Pass the cell-type column with --label.",
                    lopts.label_col,
                    if adata.obs.columns.is_empty() {
                        "(none)".to_string()
                    } else {
                        adata.obs.column_names().join(", ")
                    }
                ),
            )
        })?;
        let raw: Vec<Option<String>> = col
            .to_strings()
            .into_iter()
            .map(|s| s.filter(|s| !missing_label(s)))
            .collect();
        let n_unlabeled = raw.iter().filter(|s| s.is_none()).count();
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for s in raw.iter().flatten() {
            *counts.entry(s.clone()).or_default() += 1;
        }
        let mut dropped_classes = Vec::new();
        if let Some(min) = lopts.min_cells_per_class {
            for (c, &n) in &counts {
                if n < min {
                    dropped_classes.push((c.clone(), n));
                }
            }
        } else {
            let singles: Vec<&String> = counts
                .iter()
                .filter(|(_, &n)| n < 2)
                .map(|(c, _)| c)
                .collect();
            if !singles.is_empty() {
                return Err(file_err(
                    file,
                    format!(
                        "obs['{}']: class{} {} {} a single cell; a class needs at least 2 cells to be \
                         trained and validated. Drop {} from the file, or pass --min-cells-per-class 2 \
                         (or more) to leave rare classes out.",
                        lopts.label_col,
                        if singles.len() > 1 { "es" } else { "" },
                        singles
                            .iter()
                            .map(|s| format!("\"{s}\""))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if singles.len() > 1 { "have" } else { "has" },
                        if singles.len() > 1 { "them" } else { "it" },
                    ),
                ));
            }
        }
        let classes: Vec<String> = counts
            .keys()
            .filter(|c| !dropped_classes.iter().any(|(d, _)| d == *c))
            .cloned()
            .collect();
        if classes.is_empty() {
            return Err(file_err(
                file,
                format!(
                    "obs['{}'] has no usable labels ({} cells without a label{})",
                    lopts.label_col,
                    n_unlabeled,
                    if dropped_classes.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", {} classes below --min-cells-per-class",
                            dropped_classes.len()
                        )
                    }
                ),
            ));
        }
        if classes.len() < 2 {
            return Err(file_err(
                file,
                format!(
                    "obs['{}'] has a single class (\"{}\"); a classifier needs at least two",
                    lopts.label_col, classes[0]
                ),
            ));
        }
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            if let Some(s) = s {
                if let Ok(k) = classes.binary_search(s) {
                    rows.push(i);
                    labels.push(k as u32);
                }
            }
        }
        let prep_all = prepare_cells(adata, file, vocab, cfg, prep)?;
        let mut all = prep_all.cells;
        let cells: Vec<TokenizedCell> = rows
            .iter()
            .map(|&r| {
                std::mem::replace(
                    &mut all[r],
                    TokenizedCell {
                        genes: vec![],
                        values: vec![],
                    },
                )
            })
            .collect();
        Ok(AnnotationData {
            file: file.to_path_buf(),
            label_col: lopts.label_col.clone(),
            cells,
            labels,
            classes,
            obs: adata.obs.select(&rows),
            rows,
            n_unlabeled,
            dropped_classes,
            gene_match: prep_all.gene_match,
            value_kind: prep_all.value_kind,
            log1p: prep_all.log1p,
            pad_id: prep_all.pad_id,
            pad_value: prep_all.pad_value,
        })
    }

    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Cells per class among `idx` (all cells when `None`).
    pub fn class_counts(&self, idx: Option<&[usize]>) -> Vec<usize> {
        match idx {
            None => crate::sampler::class_counts(&self.labels, self.classes.len()),
            Some(idx) => {
                let l: Vec<u32> = idx.iter().map(|&i| self.labels[i]).collect();
                crate::sampler::class_counts(&l, self.classes.len())
            }
        }
    }

    /// What was read, in a few lines for the log.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} labelled cells, {} classes from obs['{}']; {}; X holds {}{}",
            self.file.display(),
            self.cells.len(),
            self.classes.len(),
            self.label_col,
            self.gene_match.summary(),
            self.value_kind.as_str(),
            if self.log1p { " (log1p applied)" } else { "" }
        );
        if self.n_unlabeled > 0 {
            s.push_str(&format!(
                "\n  {} cells without a label left out",
                self.n_unlabeled
            ));
        }
        if !self.dropped_classes.is_empty() {
            s.push_str(&format!(
                "\n  classes below --min-cells-per-class left out: {}",
                self.dropped_classes
                    .iter()
                    .map(|(c, n)| format!("{c} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    }
}
