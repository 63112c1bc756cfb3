//! From an AnnData and a label column to what the trainer reads: a family's tokenised cells with
//! class ids. The tokenisation is the family's (scllm-tokenize's `scgpt::prepare_cells`,
//! `geneformer::prepare_cells`); here are the labels: missing ones left out, rare classes
//! refused or dropped, classes sorted.

use std::path::{Path, PathBuf};

use scllm_io::{AnnData, DataFrame};
use scllm_pp::ValueKind;
use scllm_tokenize::{GeneMatch, Prepared, TokenizedCell};

use crate::error::{file_err, Result};

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
    /// The family's preprocessing, for the log.
    pub steps: String,
    pub pad_id: u32,
    pub pad_value: f32,
}

fn missing_label(s: &str) -> bool {
    let t = s.trim();
    t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("none")
}

impl AnnotationData {
    /// The labelled cells of `adata` (`file` names it in messages), tokenised by `prepare`
    /// (called once on the whole AnnData, after the labels passed their checks).
    pub fn from_anndata<E>(
        adata: &AnnData,
        file: &Path,
        lopts: &LabelOptions,
        prepare: impl FnOnce(&AnnData) -> std::result::Result<Prepared, E>,
    ) -> Result<Self>
    where
        crate::TrainError: From<E>,
    {
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
        let prep_all = prepare(adata)?;
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
            steps: prep_all.steps,
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
            "{}: {} labelled cells, {} classes from obs['{}']; {}; X holds {} ({})",
            self.file.display(),
            self.cells.len(),
            self.classes.len(),
            self.label_col,
            self.gene_match.summary(),
            self.value_kind.as_str(),
            self.steps
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
