//! `scllm inspect` as one job: what a dataset holds — shape, storage, what X holds (counts,
//! log-normalized, scaled: detected by [`detect_values`], hence here and not in scllm-io),
//! layers, obsm, `.raw`, obs/var columns and label counts.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use scllm_io::h5ad::Outline;
use scllm_io::{is_h5ad_path, read_any, AnnData, BackedAnnData, Column, Values};
use serde::Serialize;

use crate::{detect_values, Result, ValueReport, ValueScan};

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

/// An `.h5ad` whose X would take more memory than this is scanned in blocks of rows instead of
/// read whole (a million cells × 2,000 genes dense is 8 GB).
const STREAM_ABOVE_BYTES: u64 = 1 << 30;
/// Rows per block of a streamed scan.
const BLOCK_ROWS: usize = 4096;

/// Read `job.file` and describe it (in blocks of rows when X would take over 1 GiB).
pub fn inspect(job: &InspectJob) -> Result<DatasetSummary> {
    inspect_in_blocks_above(job, STREAM_ABOVE_BYTES)
}

/// [`inspect`], reading X in blocks when it would take more than `bytes` in memory.
pub fn inspect_in_blocks_above(job: &InspectJob, bytes: u64) -> Result<DatasetSummary> {
    if is_h5ad_path(&job.file) {
        let outline = scllm_io::h5ad::outline(&job.file)?;
        // CSC cannot be read by cells: such a file is read whole, as before
        if outline.x_bytes > bytes && !outline.x_by_columns {
            return inspect_in_blocks(job, &outline);
        }
    }
    let a = read_any(&job.file)?;
    describe(&a, job.label.as_deref())
}

/// The summary of a large `.h5ad` in the memory of `obs`/`var` and one block of rows: X scanned
/// block by block, layers, obsm, raw and uns named from the file's outline but not scanned.
fn inspect_in_blocks(job: &InspectJob, outline: &Outline) -> Result<DatasetSummary> {
    let b = BackedAnnData::open(&job.file, "X")?;
    let mut scan = ValueScan::default();
    for block in b.blocks(BLOCK_ROWS) {
        let block = block?.1;
        scan.add_rows(&block);
        // blocks come as CSR: a dense X's zeros are stored values, as when read whole
        if b.storage() == "dense" && block.data.len() < block.nrows * block.ncols {
            scan.add_values(&Values::F64(vec![0.0]));
        }
    }
    let (n, g) = b.shape();
    let x = x_summary(
        b.storage(),
        b.dtype(),
        b.stored() as usize,
        n,
        g,
        scan.finish(),
    );
    let shell = AnnData {
        obs: b.obs.clone(),
        var: b.var.clone(),
        source: Some(job.file.clone()),
        ..AnnData::default()
    };
    let mut s = frame_summary(&shell, job.label.as_deref(), x)?;
    let unscanned = "not scanned (X read in blocks)";
    s.layers = outline
        .layers
        .iter()
        .map(|(name, _)| LayerSummary {
            name: name.clone(),
            storage: "unread",
            dtype: "unread",
            kind: unscanned,
        })
        .collect();
    s.obsm = outline
        .obsm
        .iter()
        .filter_map(|(name, shape)| {
            shape.map(|(r, c)| ObsmSummary {
                name: name.clone(),
                shape: [r, c],
            })
        })
        .collect();
    s.raw = outline.raw.map(|(_, g)| RawSummary {
        n_vars: g,
        kind: unscanned,
    });
    s.uns = outline.uns.clone();
    Ok(s)
}

fn x_summary(
    storage: &'static str,
    dtype: &'static str,
    stored: usize,
    n_obs: usize,
    n_vars: usize,
    report: ValueReport,
) -> XSummary {
    XSummary {
        storage,
        dtype,
        stored,
        density: stored as f64 / (n_obs as f64 * n_vars as f64).max(1.0),
        kind: report.kind.as_str(),
        min: report.min,
        max: report.max,
        has_nan: report.has_nan,
        explanation: report.explanation,
    }
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
    let xs = x_summary(
        x.kind(),
        x.values().dtype(),
        x.stored(),
        a.n_obs(),
        a.n_vars(),
        detect_values(x),
    );
    let mut s = frame_summary(a, label, xs)?;
    s.layers = a
        .layers
        .iter()
        .map(|(n, m)| LayerSummary {
            name: n.clone(),
            storage: m.kind(),
            dtype: m.values().dtype(),
            kind: detect_values(m).kind.as_str(),
        })
        .collect();
    s.obsm = a
        .obsm
        .iter()
        .map(|(n, m)| ObsmSummary {
            name: n.clone(),
            shape: [m.shape().0, m.shape().1],
        })
        .collect();
    s.raw = a.raw.as_ref().map(|r| RawSummary {
        n_vars: r.var.nrows(),
        kind: detect_values(&r.x).kind.as_str(),
    });
    Ok(s)
}

/// What `obs`, `var` and `uns` of `a` tell, around the summary of X (layers, obsm and raw left
/// empty).
fn frame_summary(a: &AnnData, label: Option<&str>, x: XSummary) -> Result<DatasetSummary> {
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
        x,
        layers: Vec::new(),
        obsm: Vec::new(),
        raw: None,
        obs: columns(&a.obs.columns),
        var: columns(&a.var.columns),
        duplicate_gene_names: dup.len(),
        uns: a.uns.iter().map(|(k, _)| k.clone()).collect(),
        labels,
        skipped: a.skipped.clone(),
    })
}
