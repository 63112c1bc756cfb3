//! `scllm evaluate-embedding`: arguments into an [`EvaluateEmbeddingJob`], printing. The work
//! (the scIB metrics of each embedding, as scib-metrics' Benchmarker reports them) is
//! `scllm_integrate::evaluate_embedding::evaluate_embedding`.

use std::path::PathBuf;

use clap::Args;
use scllm_integrate::evaluate_embedding::{
    evaluate_embedding, EvaluateEmbeddingJob, EvaluateEmbeddingReport,
};
use scllm_integrate::scib::ScibOptions;

#[derive(Args, Debug)]
#[command(
    after_help = "The metrics are scib-metrics' (Benchmarker defaults): bio conservation = \
isolated labels, k-means NMI and ARI, label silhouette, cLISI; batch correction = BRAS, iLISI, \
kBET per label, graph connectivity, PCR comparison; Total = 0.4 x batch + 0.6 x bio. \
Neighbours are exact euclidean (90 for LISI, 50 for kBET, 15 for graph connectivity and \
Leiden). The PCR comparison measures against --pre-rep, or a 50-component PCA of X as \
stored (give X log-normalised, as the Benchmarker expects). Silhouettes and the kNN are \
quadratic in cells.\n\n\
Example:\n  \
scllm integrate harmony pbmc.h5ad --batch donor -o pbmc_harmony.h5ad\n  \
scllm embed --model models/scgpt pbmc_harmony.h5ad -o emb.h5ad\n  \
scllm evaluate-embedding emb.h5ad --use-rep X_pca --use-rep X_pca_harmony --use-rep X_scGPT \\\n    \
--label cell_type --batch donor --plots scib/"
)]
pub struct EvaluateEmbeddingArgs {
    /// An .h5ad file with the embeddings in obsm and the label and batch columns in obs
    pub file: PathBuf,
    /// obsm key of an embedding to score (repeat for several: one table)
    #[arg(long = "use-rep", value_name = "KEY", required = true)]
    pub use_rep: Vec<String>,
    /// obs column with the cell types
    #[arg(long, default_value = "cell_type")]
    pub label: String,
    /// obs column with the batches
    #[arg(long)]
    pub batch: String,
    /// obsm key of the unintegrated embedding for the PCR comparison (default: PCA-50 of X)
    #[arg(long, value_name = "KEY")]
    pub pre_rep: Option<String>,
    /// Also Leiden NMI/ARI (best of resolutions 0.2..2.0; off in the Benchmarker's defaults)
    #[arg(long)]
    pub leiden: bool,
    /// Leave out the k-means NMI/ARI
    #[arg(long)]
    pub no_kmeans: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the results table and per-embedding UMAPs (PNG and SVG) into this folder
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Print the full report as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EvaluateEmbeddingArgs) -> anyhow::Result<()> {
    let report = evaluate_embedding(&EvaluateEmbeddingJob {
        file: args.file,
        use_rep: args.use_rep,
        label: args.label,
        batch: args.batch,
        pre_rep: args.pre_rep,
        options: ScibOptions {
            leiden: args.leiden,
            kmeans: !args.no_kmeans,
            seed: args.seed,
            progress: !args.json,
            ..Default::default()
        },
        plots: args.plots,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Metrics as rows, embeddings as columns (the transpose of scib-metrics' table, so that many
/// metrics fit a terminal).
fn print_table(r: &EvaluateEmbeddingReport) {
    println!(
        "{}: {} cells, {} labels ({}), {} batches ({}); PCR against {}",
        r.file,
        r.cells,
        r.labels.len(),
        r.label,
        r.batches.len(),
        r.batch,
        r.pre_rep
    );
    let Some(first) = r.embeddings.first() else {
        return;
    };
    let w = r
        .embeddings
        .iter()
        .map(|e| e.key.len().max(8))
        .collect::<Vec<_>>();
    print!("{:<20}", "");
    for (e, w) in r.embeddings.iter().zip(&w) {
        print!("  {:>w$}", e.key);
    }
    println!();
    for (i, m) in first.scores.metrics.iter().enumerate() {
        print!("{:<20}", m.name);
        for (e, w) in r.embeddings.iter().zip(&w) {
            let v = e.scores.metrics[i].value;
            if v.is_nan() {
                print!("  {:>w$}", "n/a");
            } else {
                print!("  {:>w$.4}", v);
            }
        }
        println!();
    }
    for p in &r.plots {
        eprintln!("wrote {p}");
    }
}
