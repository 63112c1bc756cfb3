use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use scllm_io::{read_any, write_h5ad, Column, Compression, Matrix, UnsValue, Values};
use scllm_pp::{
    binning::{BinRng, Binner},
    detect_values, filter_cells, filter_genes, highly_variable_genes, log1p, normalize_total,
    scale, to_csr_f32, CellFilter, GeneFilter, HvgFlavor, HvgOptions, ValueKind,
};
use serde_json::json;

use crate::bad;

#[derive(Args, Debug)]
#[command(
    after_help = "Layers are named as scanpy/scGPT users expect: X stays as read (after filtering); \
X_normed, X_log1p, X_scaled, X_binned (+ obsm['bin_edges']) and var['highly_variable'] are added.\n\n\
Example (scGPT-style input on a raw-count file, HVGs per donor):\n  \
scllm preprocess tests/fixtures/data/kang2018_pbmc_400.h5ad -o kang_pp.h5ad \\\n    \
--min-genes 10 --normalize-total 1e4 --log1p --hvg 300 --hvg-flavor seurat_v3 --batch-key donor --bin 51"
)]
pub struct PreprocessArgs {
    /// Input: .h5ad, a 10x folder or a CSV table (cells as rows)
    pub input: PathBuf,
    /// Output .h5ad (written to a temporary file, then renamed)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Use this layer as the input matrix instead of X (e.g. `counts`); `raw` uses .raw.X
    #[arg(long)]
    pub layer: Option<String>,
    /// Drop cells with fewer expressed genes (scanpy filter_cells min_genes)
    #[arg(long)]
    pub min_genes: Option<usize>,
    /// Drop cells with fewer total counts (scanpy filter_cells min_counts)
    #[arg(long)]
    pub min_counts: Option<f64>,
    /// Drop genes expressed in fewer cells (scanpy filter_genes min_cells)
    #[arg(long)]
    pub min_cells: Option<usize>,
    /// Drop genes with fewer total counts (scanpy filter_genes min_counts)
    #[arg(long)]
    pub min_gene_counts: Option<f64>,
    /// Scale every cell to this total (scanpy normalize_total; 1e4 when given without a value,
    /// the median cell total when given as `median`) -> layer X_normed
    #[arg(long, num_args = 0..=1, default_missing_value = "1e4", value_name = "TARGET")]
    pub normalize_total: Option<String>,
    /// Natural-log log1p of the normalized (or input) values -> layer X_log1p
    #[arg(long)]
    pub log1p: bool,
    /// Select this many highly variable genes -> var['highly_variable'] and friends
    #[arg(long, value_name = "N")]
    pub hvg: Option<usize>,
    /// seurat_v3 (on counts), seurat or cell_ranger (on log data)
    #[arg(long, default_value = "seurat_v3")]
    pub hvg_flavor: String,
    /// obs column naming batches for seurat_v3 (e.g. donor)
    #[arg(long)]
    pub batch_key: Option<String>,
    /// Keep only the highly variable genes in the output
    #[arg(long)]
    pub subset_hvg: bool,
    /// z-score genes (scanpy scale) -> dense layer X_scaled
    #[arg(long)]
    pub scale: bool,
    /// Clip scaled values at ±this value
    #[arg(long)]
    pub max_value: Option<f64>,
    /// scGPT per-cell binning into N bins (51 for scGPT) -> layer X_binned, obsm['bin_edges']
    #[arg(long, value_name = "N")]
    pub bin: Option<usize>,
    /// Seed of the binning's tie-breaking
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Draw tie-breaks from numpy's legacy stream (np.random.seed(seed), cells in order) to
    /// reproduce scGPT's own bins exactly; the default seeds each cell from its content instead
    #[arg(long)]
    pub numpy_rng: bool,
    /// Keep only genes in this scGPT vocabulary (vocab.json), as scGPT does before preprocessing;
    /// adds var['id_in_vocab']
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// var column holding gene symbols (default: var.index; Ensembl ids are mapped via GENCODE)
    #[arg(long)]
    pub gene_col: Option<String>,
    /// Check that this obs label column exists (fails early instead of after the work)
    #[arg(long)]
    pub label: Option<String>,
    /// Make duplicate gene names unique (CD3E, CD3E-1, ...) instead of failing
    #[arg(long)]
    pub make_unique: bool,
    /// Dataset compression in the output: none, gzip or lzf
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Stream the input in blocks of cells (bounded memory, for files larger than RAM). X of the
    /// output is then the transformed matrix; supports --min-genes/--min-counts,
    /// --normalize-total TARGET, --log1p and --hvg with seurat_v3 (+ --batch-key)
    #[arg(long)]
    pub stream: bool,
    /// Cells per block when streaming (2,000 measured as fast as 20,000 with a quarter of the memory)
    #[arg(long, default_value_t = 2000)]
    pub block_cells: usize,
    /// Print a machine-readable summary
    #[arg(long)]
    pub json: bool,
}

fn note(json: bool, msg: String) {
    if !json {
        eprintln!("{msg}");
    }
}

pub fn run(args: PreprocessArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let compression: Compression = args.compression.parse().map_err(bad)?;
    let flavor: HvgFlavor = args.hvg_flavor.parse().map_err(bad)?;
    if args.stream {
        return run_stream(&args, compression, flavor, t0);
    }
    let mut a = read_any(&args.input)?;
    let src = args.input.display().to_string();
    if let Some(l) = &args.label {
        a.obs_column(l)?;
    }
    if let Some(layer) = &args.layer {
        let m = if layer == "raw" {
            let raw = a
                .raw
                .as_ref()
                .ok_or_else(|| bad(format!("{src}: has no .raw to use as input")))?;
            if raw.var.index != a.var.index {
                a.var = raw.var.clone();
            }
            raw.x.clone()
        } else {
            a.layer(layer).cloned().ok_or_else(|| {
                bad(format!(
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
            if args.make_unique {
                scllm_io::text::make_unique(&mut a.var.index);
            } else {
                return Err(bad(format!(
                    "{src}: var.index has {} duplicate gene names (e.g. {}); pass --make-unique (as anndata's var_names_make_unique) or fix the file",
                    dups.len(),
                    dups.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    if let Some(vp) = &args.vocab {
        let vocab = scllm_tokenize::GeneVocab::from_json_file(vp)?;
        let m = scllm_tokenize::match_genes(&a.var, &vocab, args.gene_col.as_deref(), &args.input)?;
        note(args.json, format!("{src}: {}", m.summary()));
        let cols = m.matched_columns();
        a = a.select_vars(&cols);
        a.var.set(
            "id_in_vocab",
            Column::I64(cols.iter().map(|&j| m.ids[j].unwrap() as i64).collect()),
        );
    }
    let report = detect_values(a.x()?);
    note(
        args.json,
        format!(
            "{src}: {} cells x {} genes; X holds {}",
            a.n_obs(),
            a.n_vars(),
            report.explanation
        ),
    );
    if report.has_nan {
        return Err(bad(format!(
            "{src}: X contains NaN values; remove or impute them first"
        )));
    }

    let (n0, g0) = (a.n_obs(), a.n_vars());
    if args.min_genes.is_some() || args.min_counts.is_some() {
        let (f, removed) = filter_cells(
            &a,
            &CellFilter {
                min_genes: args.min_genes,
                min_counts: args.min_counts,
                ..Default::default()
            },
        )
        .map_err(|e| bad(format!("{src}: {e}")))?;
        note(
            args.json,
            format!("filter_cells: removed {removed} cells, {} left", f.n_obs()),
        );
        a = f;
    }
    if args.min_cells.is_some() || args.min_gene_counts.is_some() {
        let (f, removed) = filter_genes(
            &a,
            &GeneFilter {
                min_cells: args.min_cells,
                min_counts: args.min_gene_counts,
                ..Default::default()
            },
        )
        .map_err(|e| bad(format!("{src}: {e}")))?;
        note(
            args.json,
            format!("filter_genes: removed {removed} genes, {} left", f.n_vars()),
        );
        a = f;
    }

    // Work on borrowed matrices (X or a layer by name) so each matrix exists once in memory.
    let x_is_csr_f32 = matches!(a.x()?, Matrix::Csr(c) if matches!(c.data, Values::F32(_)));
    let counts_owned: Option<scllm_io::Compressed> = if x_is_csr_f32 {
        None
    } else {
        Some(to_csr_f32(a.x()?))
    };
    let mut last: &str = "X";
    let mut steps: Vec<String> = Vec::new();
    let mut target_used = None;
    if let Some(t) = &args.normalize_total {
        if report.kind == ValueKind::Scaled {
            return Err(bad(format!(
                "{src}: X is scaled (has negative values); normalize_total needs counts. Use --layer counts or --layer raw"
            )));
        }
        if report.kind == ValueKind::LogNormalized {
            note(args.json, "note: X already looks log-normalized; normalize_total on it changes values but not scGPT's bins".into());
        }
        let target = if t == "median" {
            None
        } else {
            Some(t.parse::<f64>().map_err(|_| {
                bad(format!(
                    "--normalize-total: `{t}` is not a number or `median`"
                ))
            })?)
        };
        let (n, _, used) = normalize_total(csr(&a, &counts_owned, "X"), target);
        target_used = Some(used);
        a.set_layer("X_normed", Matrix::Csr(n));
        last = "X_normed";
        steps.push(format!("normalize_total({used})"));
    }
    if args.log1p {
        scllm_pp::check_nonnegative(csr(&a, &counts_owned, last), "log1p", "log1p")?;
        if report.kind == ValueKind::LogNormalized && args.normalize_total.is_none() {
            note(args.json, "note: X already looks log-normalized; applying log1p again (scGPT skips it when data_is_raw=False)".into());
        }
        let l = log1p(csr(&a, &counts_owned, last));
        a.set_layer("X_log1p", Matrix::Csr(l));
        last = "X_log1p";
        steps.push("log1p".into());
        a.set_uns("log1p", UnsValue::Dict(vec![]));
    }
    let mut hvg_summary = None;
    if let Some(n_top) = args.hvg {
        let batches: Option<Vec<u32>> = match &args.batch_key {
            None => None,
            Some(k) => Some(batch_ids(a.obs_column(k)?, k, &src)?),
        };
        let input = match flavor {
            HvgFlavor::SeuratV3 => {
                if report.kind != ValueKind::Counts {
                    note(
                        args.json,
                        format!(
                            "warning: seurat_v3 expects raw counts, but X holds {}",
                            report.kind.as_str()
                        ),
                    );
                }
                "X"
            }
            _ => {
                if args.log1p {
                    last
                } else if report.kind == ValueKind::LogNormalized {
                    "X"
                } else {
                    return Err(bad(format!(
                        "--hvg-flavor {}: needs log-normalized data; add --normalize-total --log1p (or use seurat_v3 on counts)",
                        args.hvg_flavor
                    )));
                }
            }
        };
        let r = highly_variable_genes(
            csr(&a, &counts_owned, input),
            &HvgOptions::new(n_top, flavor),
            batches.as_deref(),
        )?;
        r.write_var(&mut a.var);
        a.set_uns(
            "hvg",
            UnsValue::Dict(vec![(
                "flavor".into(),
                UnsValue::Str(args.hvg_flavor.clone()),
            )]),
        );
        hvg_summary = Some(r.n_selected());
        steps.push(format!(
            "highly_variable_genes({}, {n_top})",
            args.hvg_flavor
        ));
        if args.subset_hvg {
            let keep: Vec<usize> = (0..a.n_vars()).filter(|&j| r.highly_variable[j]).collect();
            // counts_owned (a converted X) would need subsetting too; X itself is subset by select_vars
            if counts_owned.is_some() {
                return Err(bad("--subset-hvg needs X stored as CSR float32 (convert once with `scllm preprocess IN -o OUT`)"));
            }
            a = a.select_vars(&keep);
            steps.push("subset_hvg".into());
        }
    }
    if args.scale {
        let (s, mean, std) = scale(csr(&a, &counts_owned, last), true, args.max_value);
        a.set_layer("X_scaled", s);
        a.var.set("mean", Column::F64(mean));
        a.var.set("std", Column::F64(std));
        steps.push("scale".into());
    }
    if let Some(n_bins) = args.bin {
        let rng = if args.numpy_rng {
            BinRng::numpy(args.seed)
        } else {
            BinRng::per_cell(args.seed as u64)
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
    write_h5ad(&a, &args.output, compression)?;
    let summary = json!({
        "input": src,
        "output": args.output.display().to_string(),
        "input_kind": report.kind.as_str(),
        "cells": [n0, a.n_obs()],
        "genes": [g0, a.n_vars()],
        "target_sum": target_used,
        "highly_variable": hvg_summary,
        "steps": steps,
        "layers": a.layers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "seconds": t0.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "wrote {}: {} cells x {} genes; steps: {}; layers: {} ({:.2} s)",
            args.output.display(),
            a.n_obs(),
            a.n_vars(),
            if steps.is_empty() {
                "none".to_string()
            } else {
                steps.join(" → ")
            },
            summary["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(", "),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Batch id per cell (levels in sorted order, as numpy's `unique`), or an error when a cell has none.
fn batch_ids(col: &Column, key: &str, file: &str) -> anyhow::Result<Vec<u32>> {
    let labels = col.to_strings();
    if labels.iter().any(|l| l.is_none()) {
        return Err(bad(format!(
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

/// The CSR float32 matrix called `name` ("X" or a layer this command wrote).
fn csr<'a>(
    a: &'a scllm_io::AnnData,
    converted_x: &'a Option<scllm_io::Compressed>,
    name: &str,
) -> &'a scllm_io::Compressed {
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

fn run_stream(
    args: &PreprocessArgs,
    compression: Compression,
    flavor: HvgFlavor,
    t0: Instant,
) -> anyhow::Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    let unsupported: Vec<&str> = [
        (args.layer.is_some(), "--layer"),
        (args.min_cells.is_some(), "--min-cells"),
        (args.min_gene_counts.is_some(), "--min-gene-counts"),
        (args.subset_hvg, "--subset-hvg"),
        (args.scale, "--scale"),
        (args.bin.is_some(), "--bin"),
        (args.vocab.is_some(), "--vocab"),
        (args.make_unique, "--make-unique"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    if !unsupported.is_empty() {
        return Err(bad(format!(
            "--stream does not support {} (run without --stream)",
            unsupported.join(", ")
        )));
    }
    let src = scllm_io::BackedAnnData::open(&args.input, "X")?;
    let sname = args.input.display().to_string();
    if let Some(l) = &args.label {
        if src.obs.column(l).is_none() {
            return Err(bad(format!(
                "{sname}: obs has no column `{l}` (columns: {})",
                src.obs.column_names().join(", ")
            )));
        }
    }
    let target = match args.normalize_total.as_deref() {
        None => None,
        Some("median") => {
            return Err(bad(
                "--stream needs a fixed --normalize-total target (e.g. 1e4), not the median",
            ))
        }
        Some(t) => Some(
            t.parse::<f64>()
                .map_err(|_| bad(format!("--normalize-total: `{t}` is not a number")))?,
        ),
    };
    let batch = match &args.batch_key {
        None => None,
        Some(k) => {
            let col = src
                .obs
                .column(k)
                .ok_or_else(|| bad(format!("{sname}: obs has no column `{k}`")))?;
            Some(batch_ids(col, k, &sname)?)
        }
    };
    let (n, g) = src.shape();
    note(
        args.json,
        format!(
            "{sname}: {n} cells x {g} genes ({} {}, {} stored), streaming in blocks of {}",
            "X",
            src.dtype(),
            src.stored(),
            args.block_cells
        ),
    );
    let opts = scllm_pp::stream::StreamOptions {
        block_cells: args.block_cells,
        min_genes: args.min_genes,
        min_counts: args.min_counts,
        target_sum: target,
        log1p: args.log1p,
        hvg: args.hvg.map(|k| HvgOptions::new(k, flavor)),
        batch,
        compression,
    };
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {pos}/{len} cells {per_sec} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let mut bar: Option<(usize, ProgressBar)> = None;
    let quiet = args.json;
    let summary = scllm_pp::stream::preprocess_stream(&src, &args.output, &opts, |pass, done| {
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
    let out = json!({
        "input": sname,
        "output": args.output.display().to_string(),
        "cells": [summary.cells_in, summary.cells_out],
        "genes": summary.genes,
        "stored": summary.nnz_out,
        "highly_variable": summary.hvg.as_ref().map(|h| h.n_selected()),
        "seconds": t0.elapsed().as_secs_f64(),
        "streamed": true,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "wrote {}: {} cells x {} genes, {} stored values ({:.1} s, streamed)",
            args.output.display(),
            summary.cells_out,
            summary.genes,
            summary.nnz_out,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
