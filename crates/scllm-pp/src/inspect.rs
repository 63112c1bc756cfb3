//! `scllm inspect` as one job: what a dataset holds — shape, storage, what X holds (counts,
//! log-normalized, scaled: detected by [`detect_values`], hence here and not in scllm-io),
//! layers, obsm, `.raw`, obs/var columns and label counts.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use scllm_io::{read_any, AnnData, Column};
use serde::Serialize;

use crate::{detect_values, Result};

/// One `scllm inspect` run.
#[derive(Clone, Debug)]
pub struct InspectJob {
    /// `.h5ad`, a 10x folder or a CSV table.
    pub file: PathBuf,
    /// obs column whose value counts to report (default: `cell_type` when present).
    pub label: Option<String>,
}

/// X (or a layer): how it is stored and what its values look like.
#[derive(Clone, Debug, Serialize)]
pub struct XSummary {
    pub storage: &'static str,
    pub dtype: &'static str,
    pub stored: usize,
    pub density: f64,
    /// `counts`, `lognorm`, `normalized`, `scaled` or `empty`.
    pub kind: &'static str,
    pub min: f64,
    pub max: f64,
    pub has_nan: bool,
    /// One sentence for the user.
    pub explanation: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub storage: &'static str,
    pub dtype: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct ObsmSummary {
    pub name: String,
    pub shape: [usize; 2],
}

#[derive(Clone, Debug, Serialize)]
pub struct RawSummary {
    pub n_vars: usize,
    pub kind: &'static str,
}

/// An obs or var column: its pandas kind and number of distinct values (NaN counts as one).
#[derive(Clone, Debug, Serialize)]
pub struct ColumnSummary {
    pub name: String,
    pub kind: &'static str,
    pub distinct: usize,
}

/// Cells per label, most frequent first (ties by name); NaN is `NaN (unlabeled)`.
#[derive(Clone, Debug, Serialize)]
pub struct LabelCounts {
    pub column: String,
    pub counts: Vec<(String, usize)>,
}

/// Everything `scllm inspect` reports about a dataset.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetSummary {
    pub file: Option<String>,
    pub n_obs: usize,
    pub n_vars: usize,
    pub x: XSummary,
    pub layers: Vec<LayerSummary>,
    pub obsm: Vec<ObsmSummary>,
    pub raw: Option<RawSummary>,
    pub obs: Vec<ColumnSummary>,
    pub var: Vec<ColumnSummary>,
    pub duplicate_gene_names: usize,
    pub uns: Vec<String>,
    pub labels: Option<LabelCounts>,
    /// Elements the reader met but does not model.
    pub skipped: Vec<String>,
}

/// Read `job.file` and describe it.
pub fn inspect(job: &InspectJob) -> Result<DatasetSummary> {
    let a = read_any(&job.file)?;
    describe(&a, job.label.as_deref())
}

fn label_counts(col: &Column) -> Vec<(String, usize)> {
    let mut m: BTreeMap<String, usize> = Default::default();
    for v in col.to_strings() {
        *m.entry(v.unwrap_or_else(|| "NaN (unlabeled)".into()))
            .or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn columns(cols: &[(String, Column)]) -> Vec<ColumnSummary> {
    cols.iter()
        .map(|(n, c)| {
            let distinct: HashSet<Option<String>> = c.to_strings().into_iter().collect();
            ColumnSummary {
                name: n.clone(),
                kind: c.kind(),
                distinct: distinct.len(),
            }
        })
        .collect()
}

/// Describe `a`; `label` must name an obs column when given.
pub fn describe(a: &AnnData, label: Option<&str>) -> Result<DatasetSummary> {
    let x = a.x()?;
    let report = detect_values(x);
    let label_name = match label {
        Some(l) => {
            a.obs_column(l)?;
            Some(l.to_string())
        }
        None => a.obs.column("cell_type").map(|_| "cell_type".to_string()),
    };
    let labels = label_name.map(|l| LabelCounts {
        counts: label_counts(a.obs.column(&l).expect("checked")),
        column: l,
    });
    // repeated occurrences, runs of one name counted once (as the command always reported)
    let mut dup: Vec<&String> = {
        let mut seen = HashSet::new();
        a.var.index.iter().filter(|g| !seen.insert(*g)).collect()
    };
    dup.dedup();
    Ok(DatasetSummary {
        file: a.source.as_ref().map(|p| p.display().to_string()),
        n_obs: a.n_obs(),
        n_vars: a.n_vars(),
        x: XSummary {
            storage: x.kind(),
            dtype: x.values().dtype(),
            stored: x.stored(),
            density: x.stored() as f64 / (a.n_obs() as f64 * a.n_vars() as f64).max(1.0),
            kind: report.kind.as_str(),
            min: report.min,
            max: report.max,
            has_nan: report.has_nan,
            explanation: report.explanation,
        },
        layers: a
            .layers
            .iter()
            .map(|(n, m)| LayerSummary {
                name: n.clone(),
                storage: m.kind(),
                dtype: m.values().dtype(),
                kind: detect_values(m).kind.as_str(),
            })
            .collect(),
        obsm: a
            .obsm
            .iter()
            .map(|(n, m)| ObsmSummary {
                name: n.clone(),
                shape: [m.shape().0, m.shape().1],
            })
            .collect(),
        raw: a.raw.as_ref().map(|r| RawSummary {
            n_vars: r.var.nrows(),
            kind: detect_values(&r.x).kind.as_str(),
        }),
        obs: columns(&a.obs.columns),
        var: columns(&a.var.columns),
        duplicate_gene_names: dup.len(),
        uns: a.uns.iter().map(|(k, _)| k.clone()).collect(),
        labels,
        skipped: a.skipped.clone(),
    })
}
