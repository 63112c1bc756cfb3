//! `scllm umap`: a 2-D UMAP layout of an embedding (or of PCA of the log data), stored in
//! `obsm['X_umap']` and drawn coloured by obs columns.

use std::path::PathBuf;

use clap::Args;
use scllm_eval::plot::{plot_embedding, plot_embedding_pair, ScatterOptions};
use scllm_eval::umap::{layout_matrix, obsm_f32, umap, UmapOptions};
use scllm_io::{read_h5ad, write_h5ad, AnnData, Compression};
use serde_json::json;

use crate::bad;

#[derive(Args, Debug)]
#[command(
    after_help = "The layout follows umap-learn (15 neighbours, min_dist 0.1, spectral \
initialisation, seeded SGD): same seed, same picture. Exact neighbours make it quadratic in \
cells; up to ~50k cells is practical. Without --use-rep, the layout is computed on the first 50 \
principal components of log1p(CP10k) of X.\n\n\
Example:\n  \
scllm embed --model scGPT_human pbmc.h5ad -o emb.h5ad\n  \
scllm umap emb.h5ad --use-rep X_scGPT --color cell_type --plot umap.png -o emb_umap.h5ad\n  \
scllm umap pred.h5ad --color cell_type --color predicted_cell_type --plot truth_vs_pred.svg"
)]
pub struct UmapArgs {
    /// Input .h5ad
    pub file: PathBuf,
    /// obsm key of the embedding to lay out (default: PCA of the log-normalised X)
    #[arg(long)]
    pub use_rep: Option<String>,
    /// obs column(s) to colour by; two columns draw side by side (e.g. truth and prediction)
    #[arg(long)]
    pub color: Vec<String>,
    /// Picture to write (.png or .svg)
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Output .h5ad: the input plus obsm['X_umap']
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, default_value_t = 15)]
    pub n_neighbors: usize,
    #[arg(long, default_value_t = 0.1)]
    pub min_dist: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print a JSON summary
    #[arg(long)]
    pub json: bool,
}

fn pca_of_log(a: &AnnData, seed: u64) -> anyhow::Result<(Vec<f32>, usize, usize)> {
    let log = scllm_eval::data::log_normalized(a, None)?;
    let pca = scllm_eval::linalg::Pca::fit(&log.x, 50, 4, seed);
    let x = pca.transform(&log.x);
    Ok((x, log.x.nrows, pca.n_comps))
}

fn labels(a: &AnnData, col: &str) -> anyhow::Result<Vec<String>> {
    let c = a.obs_column(col).map_err(|_| {
        bad(format!(
            "{}: field `obs['{col}']`: no such column (columns: {}); pass one of them to --color",
            scllm_eval::data::name(a),
            a.obs.column_names().join(", ")
        ))
    })?;
    Ok((0..a.n_obs())
        .map(|i| c.get_str(i).unwrap_or_else(|| "nan".into()))
        .collect())
}

pub fn run(args: UmapArgs) -> anyhow::Result<()> {
    if args.plot.is_none() && args.output.is_none() {
        return Err(bad(
            "nothing to write: pass --plot FILE.png and/or -o OUT.h5ad",
        ));
    }
    if args.color.len() > 2 {
        return Err(bad("--color takes one column, or two to draw side by side"));
    }
    if args.plot.is_some() && args.color.is_empty() {
        return Err(bad("--plot needs --color COLUMN (e.g. --color cell_type)"));
    }
    let t0 = std::time::Instant::now();
    let mut a = read_h5ad(&args.file)?;
    let cols: Vec<Vec<String>> = args
        .color
        .iter()
        .map(|c| labels(&a, c))
        .collect::<anyhow::Result<_>>()?;
    let (x, n, d, rep) = match &args.use_rep {
        Some(k) => {
            let (x, n, d) = obsm_f32(&a, k)?;
            (x, n, d, format!("obsm['{k}']"))
        }
        None => {
            let (x, n, d) = pca_of_log(&a, args.seed)?;
            (x, n, d, format!("PCA ({d} components) of log1p(CP10k) X"))
        }
    };
    let opts = UmapOptions {
        n_neighbors: args.n_neighbors,
        min_dist: args.min_dist,
        seed: args.seed,
        progress: !args.json,
        ..Default::default()
    };
    let layout = umap(&x, n, d, &opts)?;
    let title = format!(
        "{} — UMAP of {rep}",
        args.file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    if let Some(p) = &args.plot {
        let so = ScatterOptions::default();
        match cols.as_slice() {
            [one] => plot_embedding(p, &layout, one, &title, &so)?,
            [truth, pred] => plot_embedding_pair(p, &layout, truth, pred, &title, &so)?,
            _ => unreachable!("checked above"),
        }
    }
    if let Some(o) = &args.output {
        a.obsm.retain(|(k, _)| k != "X_umap");
        a.set_obsm("X_umap", layout_matrix(&layout));
        write_h5ad(&a, o, Compression::None)?;
    }
    let summary = json!({
        "input": args.file.display().to_string(),
        "cells": n,
        "representation": rep,
        "dims": d,
        "plot": args.plot.as_ref().map(|p| p.display().to_string()),
        "output": args.output.as_ref().map(|p| p.display().to_string()),
        "seconds": t0.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "UMAP of {n} cells on {rep} in {:.1} s{}{}",
            t0.elapsed().as_secs_f64(),
            args.plot
                .as_ref()
                .map(|p| format!("; picture {}", p.display()))
                .unwrap_or_default(),
            args.output
                .as_ref()
                .map(|p| format!("; obsm['X_umap'] in {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}
