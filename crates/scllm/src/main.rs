//! The `scllm` command: argument parsing and printing only; the work lives in the crates.

mod annotate;
mod baseline;
mod benchmark;
mod check;
mod embed;
mod evaluate;
mod evaluate_embedding;
mod finetune;
mod inspect;
mod integrate;
mod preprocess;
mod pretrain;
mod umap;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "scllm",
    version,
    about = "Single-cell foundation models (scGPT, Geneformer, scBERT, CellPLM) with honest baselines",
    long_about = "scllm reads AnnData .h5ad (also 10x mtx folders and CSV), preprocesses exactly as scanpy and scGPT do, and runs single-cell foundation models on CPU or GPU.\n\nRun `scllm COMMAND --help` for each command's options and an example."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe a dataset: shape, what X holds (counts / log-normalized / scaled), columns, labels
    Inspect(inspect::InspectArgs),
    /// Filter, normalize, log1p, select highly variable genes, scale and bin (scanpy/scGPT layers)
    Preprocess(preprocess::PreprocessArgs),
    /// Cell embeddings with a model of any family (obsm['X_scGPT'], obsm['X_geneformer'])
    Embed(embed::EmbedArgs),
    /// Preflight a dataset against a model: genes matched, what X holds, cells without genes
    Check(check::CheckArgs),
    /// Check a checkpoint against its model (loaded/skipped/missing/unexpected keys); save as safetensors
    Convert(embed::ConvertArgs),
    /// Score predictions, an embedding or a clustering against true labels (scikit-learn's metrics)
    Evaluate(evaluate::EvaluateArgs),
    /// scIB metrics of embeddings (bio conservation, batch correction), as scib-metrics
    EvaluateEmbedding(evaluate_embedding::EvaluateEmbeddingArgs),
    /// Batch integration of an embedding: harmony (obsm['X_pca_harmony'])
    Integrate(integrate::IntegrateArgs),
    /// Adapt a model to labelled cells: full, head, prefix, lora, token-prompt, encoder-prompt
    Finetune(finetune::FinetuneArgs),
    /// Pretrain a scGPT-style model (masked expression + cell embedding) on many .h5ad files
    Pretrain(pretrain::PretrainArgs),
    /// Predict cell types of a query with a fine-tuned adapter (Unknown below a confidence)
    Annotate(annotate::AnnotateArgs),
    /// Run a benchmark config: baselines, model embeddings + kNN, fine-tuning strategies; report
    Benchmark(benchmark::BenchmarkArgs),
    /// 2-D UMAP of an embedding (or PCA of the data), stored in obsm['X_umap'] and drawn as PNG/SVG
    Umap(umap::UmapArgs),
    /// Classical annotators to beat: logreg (L1, CV'd C), knn (label transfer), correlation (SingleR-style)
    Baseline(baseline::BaselineArgs),
    /// Literature: bioRxiv / Europe PMC search, full text, and a knowledge graph of papers
    Papers(scllm_papers::cli::PapersArgs),
}

/// Bad input (exit 2) versus a failure of scllm itself (exit 1).
fn exit_code(e: &anyhow::Error) -> i32 {
    let papers_input = e.chain().any(|cause| {
        cause
            .downcast_ref::<scllm_papers::PapersError>()
            .is_some_and(scllm_papers::PapersError::is_bad_input)
    });
    if scllm_tasks::is_bad_input(e) || papers_input {
        2
    } else {
        1
    }
}

pub use scllm_tasks::bad;

fn main() {
    // `scllm inspect --json | head -1`: a closed pipe ends the process quietly, as for any Unix
    // filter (Rust ignores SIGPIPE, so the next print would panic instead)
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // a damaged HDF5 heap makes the library loop forever: report it and exit instead
    scllm_io::h5ad::guard::exit_on_damage();
    scllm_models::memory::reuse_freed_memory();
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Preprocess(a) => preprocess::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Convert(a) => embed::run_convert(a),
        Command::Check(a) => check::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::EvaluateEmbedding(a) => evaluate_embedding::run(a),
        Command::Integrate(a) => integrate::run(a),
        Command::Baseline(a) => baseline::run(a),
        Command::Umap(a) => umap::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Pretrain(a) => pretrain::run(a),
        Command::Annotate(a) => annotate::run(a),
        Command::Benchmark(a) => benchmark::run(a),
        Command::Papers(a) => scllm_papers::cli::run(a),
    };
    if let Err(e) = res {
        // messages quote file contents (labels, names): never send their control characters
        eprintln!("error: {}", scllm_io::printable(&scllm_tasks::one_line(&e)));
        std::process::exit(exit_code(&e));
    }
}
