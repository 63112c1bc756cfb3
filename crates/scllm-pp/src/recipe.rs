//! `scllm preprocess` as one job: read → input layer → unique gene names → vocabulary genes →
//! filter cells/genes → normalize_total → log1p → highly variable genes → scale → binning → write,
//! each step's result kept under the name scanpy/scGPT users expect (`X_normed`, `X_log1p`,
//! `X_scaled`, `X_binned` + `obsm['bin_edges']`, `var['highly_variable']`). With
//! [`PreprocessJob::stream`] the bounded-memory path of [`crate::stream`] runs instead.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use scllm_io::{
    read_any, write_h5ad, AnnData, BackedAnnData, Column, Compressed, Compression, DataFrame,
    Matrix, UnsValue, Values,
};
use serde::Serialize;

use crate::binning::{BinRng, Binner};
use crate::stream::{preprocess_stream, refuse, StreamOptions};
use crate::{
    check_nonnegative, detect_values, filter_cells, filter_genes, highly_variable_genes, log1p,
    normalize_total, normalize_total_in_place_excluding, scale, to_csr_f32, Batches, CellFilter,
    Cutoffs, GeneFilter, HvgFlavor, HvgOptions, PpError, Result, ValueKind,
};

/// What `normalize_total` scales every cell to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TotalTarget {
    /// This total (scanpy's `target_sum`, 1e4 for CP10k).
    Sum(f64),
    /// The median cell total (scanpy's default when `target_sum` is None); in memory only.
    Median,
}

/// One `scllm preprocess` run: which steps, on which input, into which output.
#[derive(Clone, Debug)]
pub struct PreprocessJob {
    /// `.h5ad`, a 10x folder or a CSV table (cells as rows).
    pub input: PathBuf,
    /// The output `.h5ad` (written to a temporary file, then renamed).
    pub output: PathBuf,
    /// Use this layer as the input matrix instead of X; `raw` uses `.raw.X`.
    pub layer: Option<String>,
    /// scanpy `filter_cells`.
    pub min_genes: Option<usize>,
    pub min_counts: Option<f64>,
    /// scanpy `filter_genes` (`min_counts` of a gene).
    pub min_cells: Option<usize>,
    pub min_gene_counts: Option<f64>,
    /// `normalize_total` → layer `X_normed`.
    pub normalize_total: Option<TotalTarget>,
    /// scanpy's `exclude_highly_expressed` at this `max_fraction`: genes holding more than it of
    /// some cell's total are left out of every cell's total (needs `normalize_total`).
    pub exclude_highly_expressed: Option<f64>,
    /// `log1p` of the normalized (or input) values → layer `X_log1p`.
    pub log1p: bool,
    /// Number of highly variable genes → `var['highly_variable']` and friends.
    pub hvg: Option<usize>,
    pub hvg_flavor: HvgFlavor,
    /// Without `hvg`: seurat / cell_ranger genes selected by mean and dispersion bounds, as
    /// scanpy's `highly_variable_genes` without `n_top_genes` (with `hvg`, scanpy ignores them).
    pub hvg_cutoffs: Option<Cutoffs>,
    /// obs column naming batches (seurat_v3).
    pub batch_key: Option<String>,
    /// Keep only the highly variable genes.
    pub subset_hvg: bool,
    /// z-score genes → dense layer `X_scaled`, clipped at ±`max_value`.
    pub scale: bool,
    pub max_value: Option<f64>,
    /// scGPT per-cell binning into this many bins → layer `X_binned`, `obsm['bin_edges']`.
    pub bin: Option<usize>,
    /// Seed of the binning's tie-breaks.
    pub seed: u32,
    /// Tie-breaks from numpy's legacy stream (scGPT's own bins) instead of per-cell seeds.
    pub numpy_rng: bool,
    /// Keep only the genes of this scGPT vocabulary (`vocab.json`), matched by a [`VocabMatcher`].
    pub vocab: Option<PathBuf>,
    /// var column holding gene symbols (default: var.index).
    pub gene_col: Option<String>,
    /// Fail early when this obs column is missing.
    pub label: Option<String>,
    /// Make duplicate gene names unique instead of failing.
    pub make_unique: bool,
    pub compression: Compression,
    /// Read the input in blocks of `block_cells` cells (bounded memory); X of the output is then
    /// the transformed matrix. Filters on cells, a fixed target, log1p and seurat_v3 only.
    pub stream: bool,
    pub block_cells: usize,
    /// Notes and progress bars on stderr.
    pub progress: bool,
}

impl PreprocessJob {
    /// A job with the defaults of `scllm preprocess`: no step at all until some are switched on.
    pub fn new(input: PathBuf, output: PathBuf) -> Self {
        PreprocessJob {
            input,
            output,
            layer: None,
            min_genes: None,
            min_counts: None,
            min_cells: None,
            min_gene_counts: None,
            normalize_total: None,
            exclude_highly_expressed: None,
            log1p: false,
            hvg: None,
            hvg_flavor: HvgFlavor::SeuratV3,
            hvg_cutoffs: None,
            batch_key: None,
            subset_hvg: false,
            scale: false,
            max_value: None,
            bin: None,
            seed: 0,
            numpy_rng: false,
            vocab: None,
            gene_col: None,
            label: None,
            make_unique: false,
            compression: Compression::None,
            stream: false,
            block_cells: 2000,
            progress: true,
        }
    }
}

/// The vocabulary id of every gene (column) of a dataset, `None` when absent.
#[derive(Clone, Debug)]
pub struct VocabMatch {
    pub ids: Vec<Option<u32>>,
    /// One line for the user, e.g. "1212 of 1287 genes matched the vocabulary (by var['x'])".
    pub summary: String,
}

/// Matches a dataset's genes to a vocabulary file. Vocabularies (and the Ensembl → symbol map)
/// belong to scllm-tokenize, which builds on this crate, so the caller hands the matching in.
pub trait VocabMatcher {
    /// Match the genes of `var` (names from `gene_col` or the index) of `file` to `vocab`.
    fn match_vocab(
        &self,
        vocab: &Path,
        var: &DataFrame,
        gene_col: Option<&str>,
        file: &Path,
    ) -> std::result::Result<VocabMatch, Box<dyn std::error::Error + Send + Sync>>;
}

/// What an in-memory run did.
#[derive(Clone, Debug, Serialize)]
pub struct PreprocessSummary {
    pub input: String,
    pub output: String,
    /// What X held as read (`counts`, `lognorm`, ...).
    pub input_kind: &'static str,
    /// Before and after filtering.
    pub cells: [usize; 2],
    pub genes: [usize; 2],
    /// The `normalize_total` target used (the median when asked for).
    pub target_sum: Option<f64>,
    pub highly_variable: Option<usize>,
    pub steps: Vec<String>,
    pub layers: Vec<String>,
    pub seconds: f64,
}

/// What a streamed run did.
#[derive(Clone, Debug, Serialize)]
pub struct StreamedSummary {
    pub input: String,
    pub output: String,
    /// Read and written.
    pub cells: [usize; 2],
    pub genes: usize,
    /// Stored values of the output's X.
    pub stored: u64,
    pub highly_variable: Option<usize>,
    pub seconds: f64,
    pub streamed: bool,
}

/// The summary of either path; serialises as the one it holds.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum PreprocessOutcome {
    InMemory(PreprocessSummary),
    Streamed(StreamedSummary),
}

fn note(show: bool, msg: String) {
    if show {
        eprintln!("{msg}");
    }
}

fn invalid(msg: impl Into<String>) -> PpError {
    PpError::Invalid(msg.into())
}

/// Run `job`. `vocab` matches genes to `job.vocab` (needed only when that is set).
pub fn preprocess(
    job: &PreprocessJob,
    vocab: Option<&dyn VocabMatcher>,
) -> Result<PreprocessOutcome> {
    if job.stream {
        preprocess_streamed(job).map(PreprocessOutcome::Streamed)
    } else {
        preprocess_in_memory(job, vocab).map(PreprocessOutcome::InMemory)
    }
}

fn preprocess_in_memory(
    job: &PreprocessJob,
    vocab: Option<&dyn VocabMatcher>,
) -> Result<PreprocessSummary> {
    let t0 = Instant::now();
    let show = job.progress;
    let mut a = read_any(&job.input)?;
    let src = job.input.display().to_string();
    if let Some(l) = &job.label {
        a.obs_column(l)?;
    }
    if let Some(layer) = &job.layer {
        let m = if layer == "raw" {
            let raw = a
                .raw
                .as_ref()
                .ok_or_else(|| invalid(format!("{src}: has no .raw to use as input")))?;
            if raw.var.index != a.var.index {
                a.var = raw.var.clone();
            }
            raw.x.clone()
        } else {
            a.layer(layer).cloned().ok_or_else(|| {
                invalid(format!(
                    "{src}: no layer `{layer}` (layers: {})",
                    a.layers
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?
        };
        a.x = Some(m);
        a.raw = None;
    }
    // duplicate gene names break matching and every downstream join
    {
        let mut seen = std::collections::HashSet::new();
        let dups: Vec<&String> = a.var.index.iter().filter(|g| !seen.insert(*g)).collect();
        if !dups.is_empty() {
            if job.make_unique {
                scllm_io::text::make_unique(&mut a.var.index);
            } else {
                return Err(invalid(format!(
                    "{src}: var.index has {} duplicate gene names (e.g. {}); pass --make-unique (as anndata's var_names_make_unique) or fix the file",
                    dups.len(),
                    dups.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    if let Some(vp) = &job.vocab {
        let matcher = vocab.ok_or_else(|| {
            invalid("--vocab: no vocabulary matcher was given to scllm_pp::recipe::preprocess")
        })?;
        let m = matcher
            .match_vocab(vp, &a.var, job.gene_col.as_deref(), &job.input)
            .map_err(PpError::Vocab)?;
        note(show, format!("{src}: {}", m.summary));
        let cols: Vec<usize> = (0..m.ids.len()).filter(|&j| m.ids[j].is_some()).collect();
        a = a.select_vars(&cols);
        a.var.set(
            "id_in_vocab",
            Column::I64(cols.iter().map(|&j| m.ids[j].unwrap() as i64).collect()),
        );
    }
    let report = detect_values(a.x()?);
    note(
        show,
        format!(
            "{src}: {} cells x {} genes; X holds {}",
            a.n_obs(),
            a.n_vars(),
            report.explanation
        ),
    );
    if report.has_nan {
        return Err(refuse::non_finite(&src));
    }

    let (n0, g0) = (a.n_obs(), a.n_vars());
    if job.min_genes.is_some() || job.min_counts.is_some() {
        let (f, removed) = filter_cells(
            &a,
            &CellFilter {
                min_genes: job.min_genes,
                min_counts: job.min_counts,
                ..Default::default()
            },
        )
        .map_err(|e| invalid(format!("{src}: {e}")))?;
        note(
            show,
            format!("filter_cells: removed {removed} cells, {} left", f.n_obs()),
        );
        a = f;
    }
    if job.min_cells.is_some() || job.min_gene_counts.is_some() {
        let (f, removed) = filter_genes(
            &a,
            &GeneFilter {
                min_cells: job.min_cells,
                min_counts: job.min_gene_counts,
                ..Default::default()
            },
        )
        .map_err(|e| invalid(format!("{src}: {e}")))?;
        note(
            show,
            format!("filter_genes: removed {removed} genes, {} left", f.n_vars()),
        );
        a = f;
    }

    // Work on borrowed matrices (X or a layer by name) so each matrix exists once in memory.
    let x_is_csr_f32 = matches!(a.x()?, Matrix::Csr(c) if matches!(c.data, Values::F32(_)));
    let counts_owned: Option<Compressed> = if x_is_csr_f32 {
        None
    } else {
        Some(to_csr_f32(a.x()?))
    };
    let mut last: &str = "X";
    let mut steps: Vec<String> = Vec::new();
    let mut target_used = None;
    if job.exclude_highly_expressed.is_some() && job.normalize_total.is_none() {
        return Err(invalid(
            "--exclude-highly-expressed changes normalize_total's totals: add --normalize-total",
        ));
    }
    if job
        .exclude_highly_expressed
        .is_some_and(|f| !(f > 0.0 && f <= 1.0))
    {
        return Err(invalid(
            "--exclude-highly-expressed: the fraction must be in (0, 1] (scanpy's default 0.05)",
        ));
    }
    if let Some(t) = job.normalize_total {
        if report.kind == ValueKind::Scaled {
            return Err(refuse::scaled(&src));
        }
        if report.kind == ValueKind::LogNormalized {
            note(show, "note: X already looks log-normalized; normalize_total on it changes values but not scGPT's bins".into());
        }
        let target = match t {
            TotalTarget::Sum(s) => Some(s),
            TotalTarget::Median => None,
        };
        let (n, used) = match job.exclude_highly_expressed {
            None => {
                let (n, _, used) = normalize_total(csr(&a, &counts_owned, "X"), target);
                (n, used)
            }
            Some(f) => {
                let mut n = csr(&a, &counts_owned, "X").clone();
                let (_, used) = normalize_total_in_place_excluding(&mut n, target, f)
                    .map_err(|e| refuse::in_file(&src, e))?;
                (n, used)
            }
        };
        target_used = Some(used);
        a.set_layer("X_normed", Matrix::Csr(n));
        last = "X_normed";
        steps.push(match job.exclude_highly_expressed {
            None => format!("normalize_total({used})"),
            Some(f) => format!("normalize_total({used}, excluding genes above {f} of a cell)"),
        });
    }
    if job.log1p {
        check_nonnegative(csr(&a, &counts_owned, last), "log1p", "log1p")
            .map_err(|e| refuse::in_file(&src, e))?;
        if report.kind == ValueKind::LogNormalized && job.normalize_total.is_none() {
            note(show, "note: X already looks log-normalized; applying log1p again (scGPT skips it when data_is_raw=False)".into());
        }
        let l = log1p(csr(&a, &counts_owned, last));
        a.set_layer("X_log1p", Matrix::Csr(l));
        last = "X_log1p";
        steps.push("log1p".into());
        a.set_uns("log1p", UnsValue::Dict(vec![]));
    }
    let mut hvg_summary = None;
    if job.hvg.is_some() || job.hvg_cutoffs.is_some() {
        let flavor = job.hvg_flavor;
        let cutoffs = match (job.hvg, job.hvg_cutoffs) {
            (Some(n), Some(_)) => {
                // scanpy: "If n_top_genes is not None, the cutoffs are ignored"
                note(
                    show,
                    format!("warning: --hvg {n} is given, so the mean/dispersion bounds are ignored (as scanpy)"),
                );
                None
            }
            (None, Some(_)) if flavor == HvgFlavor::SeuratV3 => {
                return Err(invalid(
                    "--hvg-min-mean/--hvg-max-mean/--hvg-min-disp/--hvg-max-disp select seurat or cell_ranger genes: add --hvg-flavor seurat (or cell_ranger), or give --hvg N for seurat_v3",
                ));
            }
            (_, c) => c,
        };
        let batches: Option<Vec<u32>> = match &job.batch_key {
            None => None,
            Some(k) => Some(batch_ids(a.obs_column(k)?, k, &src)?),
        };
        let input = match flavor {
            HvgFlavor::SeuratV3 => {
                if report.kind != ValueKind::Counts {
                    note(
                        show,
                        format!(
                            "warning: seurat_v3 expects raw counts, but X holds {}",
                            report.kind.as_str()
                        ),
                    );
                }
                "X"
            }
            _ => {
                if job.log1p {
                    last
                } else if report.kind == ValueKind::LogNormalized {
                    "X"
                } else {
                    return Err(invalid(format!(
                        "--hvg-flavor {}: needs log-normalized data; add --normalize-total --log1p (or use seurat_v3 on counts)",
                        flavor.as_str()
                    )));
                }
            }
        };
        let opts = HvgOptions {
            cutoffs,
            ..HvgOptions::new(job.hvg.unwrap_or(0), flavor)
        };
        let r = highly_variable_genes(
            csr(&a, &counts_owned, input),
            &opts,
            batches.as_deref().map(|ids| Batches {
                ids,
                gene_names: Some(&a.var.index),
            }),
        )
        .map_err(|e| refuse::in_file(&src, e))?;
        r.write_var(&mut a.var);
        a.set_uns(
            "hvg",
            UnsValue::Dict(vec![(
                "flavor".into(),
                UnsValue::Str(flavor.as_str().into()),
            )]),
        );
        hvg_summary = Some(r.n_selected());
        steps.push(match (job.hvg, cutoffs) {
            (_, Some(c)) => format!(
                "highly_variable_genes({}, mean in ({}, {}), dispersion in ({}, {}))",
                flavor.as_str(),
                c.min_mean,
                c.max_mean,
                c.min_disp,
                c.max_disp
            ),
            (n, None) => format!(
                "highly_variable_genes({}, {})",
                flavor.as_str(),
                n.unwrap_or(0)
            ),
        });
        if job.subset_hvg {
            let keep: Vec<usize> = (0..a.n_vars()).filter(|&j| r.highly_variable[j]).collect();
            // counts_owned (a converted X) would need subsetting too; X itself is subset by select_vars
            if counts_owned.is_some() {
                return Err(invalid("--subset-hvg needs X stored as CSR float32 (convert once with `scllm preprocess IN -o OUT`)"));
            }
            a = a.select_vars(&keep);
            steps.push("subset_hvg".into());
        }
    }
    if job.scale {
        let (s, mean, std) = scale(csr(&a, &counts_owned, last), true, job.max_value);
        a.set_layer("X_scaled", s);
        a.var.set("mean", Column::F64(mean));
        a.var.set("std", Column::F64(std));
        steps.push("scale".into());
    }
    if let Some(n_bins) = job.bin {
        let rng = if job.numpy_rng {
            BinRng::numpy(job.seed)
        } else {
            BinRng::per_cell(job.seed as u64)
        };
        let (b, edges) = Binner::new(n_bins, rng).bin_matrix(csr(&a, &counts_owned, last))?;
        a.set_layer("X_binned", Matrix::Csr(b));
        a.set_obsm(
            "bin_edges",
            Matrix::Dense {
                nrows: a.n_obs(),
                ncols: n_bins,
                data: Values::F64(edges),
            },
        );
        steps.push(format!("binning({n_bins})"));
    }
    a.set_uns(
        "scllm_preprocess",
        UnsValue::Dict(vec![
            ("input".into(), UnsValue::Str(src.clone())),
            (
                "input_kind".into(),
                UnsValue::Str(report.kind.as_str().into()),
            ),
            ("steps".into(), UnsValue::Array(Column::Str(steps.clone()))),
            (
                "version".into(),
                UnsValue::Str(env!("CARGO_PKG_VERSION").into()),
            ),
        ]),
    );
    write_h5ad(&a, &job.output, job.compression)?;
    Ok(PreprocessSummary {
        input: src,
        output: job.output.display().to_string(),
        input_kind: report.kind.as_str(),
        cells: [n0, a.n_obs()],
        genes: [g0, a.n_vars()],
        target_sum: target_used,
        highly_variable: hvg_summary,
        steps,
        layers: a.layers.iter().map(|(n, _)| n.clone()).collect(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Batch id per cell (levels in sorted order, as numpy's `unique`), or an error when a cell has none.
fn batch_ids(col: &Column, key: &str, file: &str) -> Result<Vec<u32>> {
    let labels = col.to_strings();
    if labels.iter().any(|l| l.is_none()) {
        return Err(invalid(format!(
            "{file}: obs['{key}'] has missing values; every cell needs a batch"
        )));
    }
    let mut levels: Vec<&String> = labels.iter().flatten().collect();
    levels.sort();
    levels.dedup();
    Ok(labels
        .iter()
        .flatten()
        .map(|l| levels.binary_search(&l).unwrap() as u32)
        .collect())
}

/// The CSR float32 matrix called `name` ("X" or a layer this recipe wrote).
fn csr<'a>(a: &'a AnnData, converted_x: &'a Option<Compressed>, name: &str) -> &'a Compressed {
    let m = if name == "X" {
        if let Some(c) = converted_x {
            return c;
        }
        a.x.as_ref()
    } else {
        a.layer(name)
    };
    match m {
        Some(Matrix::Csr(c)) => c,
        _ => unreachable!("internal: {name} is not a CSR matrix written by preprocess"),
    }
}

fn preprocess_streamed(job: &PreprocessJob) -> Result<StreamedSummary> {
    let t0 = Instant::now();
    let unsupported: Vec<&str> = [
        (job.layer.is_some(), "--layer"),
        (job.min_cells.is_some(), "--min-cells"),
        (job.min_gene_counts.is_some(), "--min-gene-counts"),
        (job.subset_hvg, "--subset-hvg"),
        (
            job.hvg_cutoffs.is_some(),
            "--hvg-min-mean/--hvg-max-mean/--hvg-min-disp/--hvg-max-disp",
        ),
        (job.scale, "--scale"),
        (job.bin.is_some(), "--bin"),
        (job.vocab.is_some(), "--vocab"),
        (job.make_unique, "--make-unique"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    if !unsupported.is_empty() {
        return Err(invalid(format!(
            "--stream does not support {} (run without --stream)",
            unsupported.join(", ")
        )));
    }
    let src = BackedAnnData::open(&job.input, "X")?;
    let sname = job.input.display().to_string();
    if let Some(l) = &job.label {
        if src.obs.column(l).is_none() {
            return Err(invalid(format!(
                "{sname}: obs has no column `{l}` (columns: {})",
                src.obs.column_names().join(", ")
            )));
        }
    }
    let target = match job.normalize_total {
        None => None,
        Some(TotalTarget::Median) => {
            return Err(invalid(
                "--stream needs a fixed --normalize-total target (e.g. 1e4), not the median",
            ))
        }
        Some(TotalTarget::Sum(t)) => Some(t),
    };
    let batch = match &job.batch_key {
        None => None,
        Some(k) => {
            let col = src
                .obs
                .column(k)
                .ok_or_else(|| invalid(format!("{sname}: obs has no column `{k}`")))?;
            Some(batch_ids(col, k, &sname)?)
        }
    };
    let (n, g) = src.shape();
    note(
        job.progress,
        format!(
            "{sname}: {n} cells x {g} genes ({} {}, {} stored), streaming in blocks of {}",
            "X",
            src.dtype(),
            src.stored(),
            job.block_cells
        ),
    );
    let opts = StreamOptions {
        block_cells: job.block_cells,
        min_genes: job.min_genes,
        min_counts: job.min_counts,
        target_sum: target,
        log1p: job.log1p,
        hvg: job.hvg.map(|k| HvgOptions::new(k, job.hvg_flavor)),
        batch,
        compression: job.compression,
        source: Some(job.input.clone()),
    };
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {pos}/{len} cells {per_sec} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    // one bar per pass over the input: statistics, then transform + write
    let mut bar: Option<(usize, ProgressBar)> = None;
    let quiet = !job.progress;
    let summary = preprocess_stream(&src, &job.output, &opts, |pass, done| {
        if quiet {
            return;
        }
        if bar.as_ref().map(|(p, _)| *p) != Some(pass) {
            if let Some((_, b)) = bar.take() {
                b.finish();
            }
            let b = ProgressBar::new(n as u64).with_style(style.clone());
            b.set_prefix(if pass == 1 { "statistics" } else { "transform" });
            bar = Some((pass, b));
        }
        bar.as_ref().unwrap().1.set_position(done as u64);
    })?;
    if let Some((_, b)) = bar.take() {
        b.finish();
    }
    Ok(StreamedSummary {
        input: sname,
        output: job.output.display().to_string(),
        cells: [summary.cells_in, summary.cells_out],
        genes: summary.genes,
        stored: summary.nnz_out,
        highly_variable: summary.hvg.as_ref().map(|h| h.n_selected()),
        seconds: t0.elapsed().as_secs_f64(),
        streamed: true,
    })
}
