//! `scllm inspect`: arguments into an [`InspectJob`], printing. The description is
//! `scllm_pp::inspect` (what X holds is detected by scllm-pp).

use std::path::PathBuf;

use clap::Args;
use scllm_io::printable;
use scllm_pp::inspect::{inspect, ColumnSummary, InspectJob};

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  scllm inspect tests/fixtures/data/kang2018_pbmc_400.h5ad --label cell_type\n  scllm inspect data.h5ad --json | jq .x.kind"
)]
pub struct InspectArgs {
    /// An .h5ad file, a 10x folder (matrix.mtx + features.tsv + barcodes.tsv) or a CSV table
    pub file: PathBuf,
    /// obs column whose value counts to show (default: cell_type when present)
    #[arg(long)]
    pub label: Option<String>,
    /// Print machine-readable JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let s = inspect(&InspectJob {
        file: args.file.clone(),
        label: args.label.clone(),
    })?;
    if args.json {
        // through a Value, so keys print sorted as they always have
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&s)?)?
        );
        return Ok(());
    }
    println!("{}", printable(&args.file.display().to_string()));
    println!("  {} cells x {} genes", s.n_obs, s.n_vars);
    let x = &s.x;
    println!(
        "  X: {} {} ({} stored, density {:.3}) — {}",
        x.storage, x.dtype, x.stored, x.density, x.explanation
    );
    if x.has_nan {
        println!("  warning: X contains NaN or infinite values");
    }
    for l in &s.layers {
        println!(
            "  layer {}: {} {} ({})",
            printable(&l.name),
            l.storage,
            l.dtype,
            l.kind
        );
    }
    if let Some(r) = &s.raw {
        println!("  raw: {} genes ({})", r.n_vars, r.kind);
    }
    for o in &s.obsm {
        println!(
            "  obsm {}: {}x{}",
            printable(&o.name),
            o.shape[0],
            o.shape[1]
        );
    }
    let cols = |cs: &[ColumnSummary]| -> String {
        cs.iter()
            .map(|c| {
                format!(
                    "{} ({}, {} distinct)",
                    printable(&c.name),
                    c.kind,
                    c.distinct
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  obs: {}", cols(&s.obs));
    println!("  var: {}", cols(&s.var));
    if s.duplicate_gene_names > 0 {
        println!(
            "  warning: {} gene names occur more than once in var.index",
            s.duplicate_gene_names
        );
    }
    if let Some(l) = &s.labels {
        println!("  labels in obs['{}']:", printable(&l.column));
        for (label, n) in &l.counts {
            println!("    {n:>7}  {}", printable(label));
        }
    }
    for sk in &s.skipped {
        println!("  not read: {}", printable(sk));
    }
    Ok(())
}
