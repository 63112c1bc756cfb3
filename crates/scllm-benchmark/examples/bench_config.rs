//! Run a benchmark config with the built-in baselines only (no model methods registered):
//!
//! `cargo run --release -p scllm-benchmark --example bench_config -- CONFIG.toml REPORT_DIR [--no-fewshot]`
//!
//! Writes REPORT_DIR/{results.json,results.md,predictions.tsv} and prints the main table.
//! `scllm benchmark` is the same with the model methods registered.

use scllm_benchmark::{
    load_config, render_main_table, run_benchmark, write_report, MethodRegistry, RunOptions,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if pos.len() != 2 {
        eprintln!("usage: bench_config CONFIG.toml REPORT_DIR [--no-fewshot]");
        std::process::exit(2);
    }
    let opts = RunOptions {
        progress: true,
        skip_fewshot: args.iter().any(|a| a == "--no-fewshot"),
    };
    let run = || -> scllm_benchmark::Result<()> {
        let cfg = load_config(pos[0])?;
        let report = run_benchmark(&cfg, &MethodRegistry::with_baselines(), &opts)?;
        let files = write_report(&report, std::path::Path::new(pos[1]), None)?;
        println!("{}", render_main_table(&report));
        for f in files {
            eprintln!("wrote {}", f.display());
        }
        if !report.failures().is_empty() {
            std::process::exit(1);
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
