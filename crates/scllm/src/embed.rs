//! `scllm embed` (cell embeddings with a released scGPT model) and `scllm convert` (checkpoint
//! import report and safetensors export). Argument parsing and printing only; the work lives in
//! `scllm_models`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use scllm_io::{Matrix, Values};
use scllm_models::embed::{EmbedOptions, Embedder};
use scllm_models::{DeviceKind, LoadOptions, ScGptModel};
use serde_json::json;

use crate::bad;

#[derive(Args, Debug)]
#[command(
    after_help = "The reference's embed_data pipeline: genes matched to the model's vocabulary \
(symbols, or Ensembl ids via GENCODE), the expressed genes of each cell binned per cell \
(so raw counts, normalized or log1p input give the same bins), <cls> first, at most --max-len \
tokens (genes sampled, seeded per cell), the <cls> output L2-normalized into obsm. A cell's \
embedding does not depend on the other cells in its batch.\n\n\
Example (the released whole-human model):\n  \
scllm embed --model scGPT_human pbmc.h5ad -o pbmc_emb.h5ad --obsm-key X_scGPT --threads 8\n\
Example (files larger than memory: obs, var and the embeddings, X not copied):\n  \
scllm embed --model scGPT_human atlas.h5ad -o atlas_emb.h5ad --stream --json"
)]
pub struct EmbedArgs {
    /// Input .h5ad (raw counts as scGPT expects; any non-negative expression works)
    pub input: PathBuf,
    /// Model folder: best_model.pt (or model.safetensors), vocab.json, args.json (default: the
    /// shipped models/scllm-small, or $SCLLM_MODEL)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output .h5ad: the input with the embeddings in obsm (written to a temporary file, then renamed)
    #[arg(short, long)]
    pub output: PathBuf,
    /// obsm key of the embeddings
    #[arg(long, default_value = "X_scGPT")]
    pub obsm_key: String,
    /// Most cells per forward pass (a batch holds cells of one length: nothing is padded)
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Most tokens per cell, <cls> included (default: the model's max_seq_len, 1200)
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Seed of the binning tie-breaks and gene sampling (same seed, same embeddings)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, or cuda (in builds with the `cuda` feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for the kernels (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// var column holding gene names (default: var.index)
    #[arg(long)]
    pub gene_col: Option<String>,
    /// Use this layer instead of X (e.g. counts)
    #[arg(long)]
    pub layer: Option<String>,
    /// A weights file other than the folder's best_model.pt (.pt or .safetensors)
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Fail when any model weight is missing from the checkpoint or has another shape
    #[arg(long)]
    pub strict: bool,
    /// Write the checkpoint load report (loaded, skipped, missing, unexpected keys) as JSON here
    #[arg(long)]
    pub load_report: Option<PathBuf>,
    /// Read X in blocks of cells (bounded memory); the output then holds obs, var and the
    /// embeddings, not X
    #[arg(long)]
    pub stream: bool,
    /// Cells per block when streaming
    #[arg(long, default_value_t = 20000)]
    pub block_cells: usize,
    /// Print a machine-readable summary (with the load report) instead of progress
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Reads a PyTorch .pt (never executing its pickle: any object other than \
tensors is refused) or a safetensors file into the model described by args.json and vocab.json, \
reports every key (loaded, skipped for a shape mismatch, missing, unexpected), and with -o saves \
the weights as safetensors in the released layout (PyTorch names and shapes).\n\n\
Example:\n  scllm convert --model scGPT_human -o scGPT_human/model.safetensors --strict"
)]
pub struct ConvertArgs {
    /// Model folder: args.json, vocab.json and weights
    #[arg(long)]
    pub model: PathBuf,
    /// A weights file other than the folder's best_model.pt
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Write the weights as safetensors here
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Classes of the cls_decoder head to build (0: none, as in the released model)
    #[arg(long, default_value_t = 0)]
    pub n_cls: usize,
    /// Fail when any model weight is missing or has another shape
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

fn device(name: &str, threads: Option<usize>) -> anyhow::Result<scllm_models::Device> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(bad("--threads must be at least 1"));
        }
        scllm_models::set_threads(n)?;
    }
    let kind: DeviceKind = name.parse().map_err(bad)?;
    Ok(scllm_models::device(kind)?)
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    if args.batch_size == 0 {
        return Err(bad("--batch-size must be at least 1"));
    }
    if args.stream && args.layer.is_some() {
        return Err(bad(
            "--stream reads X; drop --layer or run without --stream",
        ));
    }
    let dev = device(&args.device, args.threads)?;
    let opts = LoadOptions {
        n_cls: 1,
        do_mvc: true,
        strict: args.strict,
        weights: args.weights.clone(),
    };
    let model_dir = crate::model_dir(args.model.as_deref())?;
    let model = ScGptModel::load(&model_dir, &opts, &dev)?;
    if !args.json {
        eprint!("{}", model.report.to_text());
    }
    if let Some(p) = &args.load_report {
        std::fs::write(p, serde_json::to_string_pretty(&model.report)?).map_err(|e| {
            bad(format!(
                "{}: cannot write the load report: {e}",
                p.display()
            ))
        })?;
    }
    let max_len = args.max_len.unwrap_or(model.config.max_seq_len);
    if max_len < 2 {
        return Err(bad("--max-len must be at least 2 (<cls> and one gene)"));
    }
    let eopts = EmbedOptions {
        max_len,
        batch_size: args.batch_size,
        max_batch_tokens: args.batch_size * max_len,
        seed: args.seed,
        ..EmbedOptions::default()
    };
    let d = model.config.embsize;
    let src = args.input.display().to_string();

    let style = ProgressStyle::with_template(
        "{prefix:>10} [{bar:30}] {pos}/{len} cells {per_sec} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let emb_matrix = |n: usize, emb: Vec<f32>| Matrix::Dense {
        nrows: n,
        ncols: d,
        data: Values::F32(emb),
    };
    let (n_cells, stats, n_matched, n_genes) = if args.stream {
        // X goes to the output block by block as it is read: the matrix is never whole in memory
        let backed = scllm_io::BackedAnnData::open(&args.input, "X")?;
        let (n, g) = backed.shape();
        let genes = scllm_tokenize::match_genes(
            &backed.var,
            &model.vocab,
            args.gene_col.as_deref(),
            &args.input,
        )?;
        let mut e = Embedder::new(&model, &genes, eopts)?;
        let mut w = scllm_io::backed::CsrStreamWriter::create(
            &args.output,
            g,
            scllm_io::Compression::None,
        )?;
        let bar = progress(args.json, n, &style);
        let mut emb = vec![0f32; n * d];
        for block in backed.blocks(args.block_cells.max(1)) {
            let (start, block) = block?;
            let out = &mut emb[start * d..(start + block.nrows) * d];
            e.embed_block(&block, out, &mut |k| bar.inc(k as u64))?;
            w.append(&block)?;
        }
        bar.finish();
        let obsm = vec![(args.obsm_key.clone(), emb_matrix(n, emb))];
        w.finish(&backed.obs, &backed.var, &obsm, &[])?;
        (n, e.stats, genes.n_matched, g)
    } else {
        let mut a = scllm_io::read_h5ad(&args.input)?;
        let m = match &args.layer {
            None => a.x()?,
            Some(l) => a.layer(l).ok_or_else(|| {
                let names: Vec<&str> = a.layers.iter().map(|(n, _)| n.as_str()).collect();
                bad(format!(
                    "{src}: no layer `{l}` (layers: {})",
                    names.join(", ")
                ))
            })?,
        };
        let x = scllm_pp::to_csr_f32(m);
        let (n, g) = (x.nrows, x.ncols);
        let genes = scllm_tokenize::match_genes(
            &a.var,
            &model.vocab,
            args.gene_col.as_deref(),
            &args.input,
        )?;
        let mut e = Embedder::new(&model, &genes, eopts)?;
        let bar = progress(args.json, n, &style);
        let mut emb = vec![0f32; n * d];
        e.embed_block(&x, &mut emb, &mut |k| bar.inc(k as u64))?;
        bar.finish();
        drop(x);
        a.obsm.retain(|(k, _)| k != &args.obsm_key);
        a.set_obsm(&args.obsm_key, emb_matrix(n, emb));
        scllm_io::write_h5ad(&a, &args.output, scllm_io::Compression::None)?;
        (n, e.stats, genes.n_matched, g)
    };

    let secs = t0.elapsed().as_secs_f64();
    let summary = json!({
        "input": src,
        "output": args.output.display().to_string(),
        "obsm_key": args.obsm_key,
        "cells": n_cells,
        "dim": d,
        "genes_matched": [n_matched, n_genes],
        "max_len": max_len,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "streamed": args.stream,
        "tokens": stats.tokens,
        "padded_tokens": stats.padded_tokens,
        "batches": stats.batches,
        "forward_seconds": stats.forward_seconds,
        "tokenize_seconds": stats.tokenize_seconds,
        "seconds": secs,
        "cells_per_second": n_cells as f64 / secs,
        "forward_gflops_per_second": stats.gflops_per_second(),
        "threads": scllm_models::threads(),
        "load_report": model.report,
    });
    if args.json {
        print_json(&summary)?;
    } else {
        eprintln!(
            "wrote {}: obsm['{}'] {} cells x {} ({} of {} genes in the vocabulary; {:.1} cells/s, forward {:.1} GFLOP/s, padding {:.1}%, {:.1} s)",
            args.output.display(),
            args.obsm_key,
            n_cells,
            d,
            n_matched,
            n_genes,
            n_cells as f64 / secs,
            stats.gflops_per_second(),
            100.0 * (1.0 - stats.tokens as f64 / stats.padded_tokens.max(1) as f64),
            secs
        );
    }
    Ok(())
}

/// Print JSON to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn progress(quiet: bool, n: usize, style: &ProgressStyle) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(n as u64).with_style(style.clone());
    b.set_prefix("embedding");
    b
}

pub fn run_convert(args: ConvertArgs) -> anyhow::Result<()> {
    let dev = scllm_models::device(DeviceKind::Cpu)?;
    let opts = LoadOptions {
        n_cls: args.n_cls,
        do_mvc: true,
        strict: args.strict,
        weights: args.weights.clone(),
    };
    let model = ScGptModel::load(&args.model, &opts, &dev)?;
    if let Some(o) = &args.output {
        scllm_models::save_safetensors(&model.model, o)?;
    }
    if args.json {
        let out = json!({
            "model": args.model.display().to_string(),
            "output": args.output.as_ref().map(|p| p.display().to_string()),
            "report": model.report,
        });
        print_json(&out)?;
    } else {
        eprint!("{}", model.report.to_text());
        if let Some(o) = &args.output {
            eprintln!(
                "wrote {} ({} tensors, safetensors, released layout)",
                o.display(),
                model.model.expected_keys().len()
            );
        }
    }
    Ok(())
}
