//! `scllm benchmark CONFIG.toml -o REPORT_DIR`: arguments into a [`BenchmarkJob`], printing. The
//! engine is `scllm-benchmark`; the model methods and the run are `scllm_tasks::bench_methods`.

use std::path::PathBuf;

use clap::Args;
use scllm_benchmark::integration::render_integration_table;
use scllm_benchmark::integration_config::{task_of, Task};
use scllm_benchmark::render_main_table;
use scllm_tasks::bench_methods::{benchmark, BenchmarkJob};
use scllm_tasks::integration_bench::integration_benchmark;

#[derive(Args, Debug)]
#[command(
    after_help = "With `task = \"integration\"` the config names one file, the label and batch \
columns and embedding methods (pca, harmony, embed, embed:<model folder>, finetune:<strategy>: \
the config's model fine-tuned on the cells' labels, so not zero-shot); every embedding gets \
the scIB metrics (as `scllm evaluate-embedding`), ranked by the total score; REPORT_DIR receives \
results.json, results.md and scib_results.{png,svg} (configs/*_integration.toml).\n\n\
Otherwise (annotation) the config names the data, the label column, the split (a held-out \
obs value, a stratified fraction, or two files), the methods and their options, and optionally \
few-shot settings; see configs/README.md. Methods: logreg, knn-pca, correlation (baselines), \
embed-knn (kNN on the model's zero-shot cell embeddings; scgpt-knn is the same), the model folder of any family, finetune:<strategy> (full, head, prefix, lora, \
token-prompt, encoder-prompt). REPORT_DIR receives results.json, results.md (the main table, \
the rare-type table, few-shot tables), predictions.tsv and pictures (confusion matrix and \
per-class F1 per method, PNG and SVG). With `novel = [\"type\", ...]` those types leave \
training and stay in the query; with `novel` or `coverage = 0.9` a share of the training cells is \
held out to pick each method's Unknown threshold and calibrate conformal prediction sets, and the \
report adds novel-type results (AUROC, average precision, novel recall and false-Unknown rate at \
that threshold), calibration (ECE, reliability diagrams) and conformal coverage per class.\n\n\
Example (the committed fixtures, seconds on 2 cores):\n  \
scllm benchmark configs/tiny_kang_fixture.toml -o report/\n  \
scllm benchmark configs/kang2018_pbmc_lodo.toml -o kang_report/ --no-fewshot --json\n  \
scllm benchmark configs/pancreas_novel.toml -o pancreas_novel/"
)]
pub struct BenchmarkArgs {
    /// Benchmark config (TOML)
    pub config: PathBuf,
    /// Report folder
    #[arg(short, long)]
    pub output: PathBuf,
    /// Skip the few-shot settings of the config
    #[arg(long)]
    pub no_fewshot: bool,
    /// Print results.json instead of the table
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BenchmarkArgs) -> anyhow::Result<()> {
    let job = BenchmarkJob {
        config: args.config.clone(),
        output: args.output.clone(),
        skip_fewshot: args.no_fewshot,
        progress: !args.json,
    };
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| scllm_tasks::bad(format!("{}: {e}", args.config.display())))?;
    if task_of(&text, &args.config)? == Task::Integration {
        return run_integration(&job, &args);
    }
    let (report, files) = benchmark(&job)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render_main_table(&report));
        eprintln!("report: {} ({} files)", args.output.display(), files.len());
    }
    failed(report.failures().iter().map(|m| m.name.as_str()).collect())
}

/// `task = "integration"`: every method's embedding scored with the scIB metrics.
fn run_integration(job: &BenchmarkJob, args: &BenchmarkArgs) -> anyhow::Result<()> {
    let (report, files) = integration_benchmark(job)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render_integration_table(&report));
        eprintln!("report: {} ({} files)", args.output.display(), files.len());
    }
    failed(report.failures().iter().map(|m| m.name.as_str()).collect())
}

/// The run's error when methods failed (their results.json entries say why).
fn failed(names: Vec<&str>) -> anyhow::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{} method(s) failed: {} (see results.json for why; the others' results were written)",
        names.len(),
        names.join(", ")
    )
}
