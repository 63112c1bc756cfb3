//! `scllm integrate METHOD`: arguments into a job, printing. The work is in scllm-integrate
//! (`harmony_file::harmony_file`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use scllm_integrate::harmony::HarmonyOptions;
use scllm_integrate::harmony_file::{harmony_file, HarmonyJob};

#[derive(Args, Debug)]
pub struct IntegrateArgs {
    #[command(subcommand)]
    pub method: IntegrateMethod,
}

#[derive(Subcommand, Debug)]
pub enum IntegrateMethod {
    /// Harmony (Korsunsky et al. 2019) on obsm['X_pca'], as harmonypy: obsm['X_pca_harmony']
    Harmony(HarmonyArgs),
}

#[derive(Args, Debug)]
#[command(
    after_help = "Harmony runs as harmonypy 2.1.0 does (same defaults; the same seed gives its \
k-means start, so its numbers). Without obsm['X_pca'], a 50-component PCA of log1p(CP10k) of X \
is computed first and stored as obsm['X_pca'].\n\n\
Example:\n  \
scllm integrate harmony pbmc.h5ad --batch donor -o pbmc_harmony.h5ad\n  \
scllm evaluate-embedding pbmc_harmony.h5ad --use-rep X_pca --use-rep X_pca_harmony --batch donor"
)]
pub struct HarmonyArgs {
    /// Input .h5ad
    pub file: PathBuf,
    /// obs column with the batches
    #[arg(long)]
    pub batch: String,
    /// Output .h5ad: the input plus obsm[--key-added]
    #[arg(short, long)]
    pub output: PathBuf,
    /// obsm key of the embedding to correct
    #[arg(long, default_value = "X_pca")]
    pub use_rep: String,
    /// obsm key to store the corrected embedding under
    #[arg(long, default_value = "X_pca_harmony")]
    pub key_added: String,
    /// Diversity penalty (higher: more mixing)
    #[arg(long, default_value_t = 2.0)]
    pub theta: f32,
    /// Ridge penalty; default: estimated per cluster (harmony2's alpha rule)
    #[arg(long)]
    pub lambda: Option<f32>,
    /// Soft-clustering width
    #[arg(long, default_value_t = 0.1)]
    pub sigma: f32,
    /// Clusters (default: min(cells / 30, 100))
    #[arg(long)]
    pub nclust: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub max_iter_harmony: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Print a JSON summary
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: IntegrateArgs) -> anyhow::Result<()> {
    match args.method {
        IntegrateMethod::Harmony(a) => run_harmony(a),
    }
}

fn run_harmony(a: HarmonyArgs) -> anyhow::Result<()> {
    let s = harmony_file(&HarmonyJob {
        file: a.file,
        output: a.output,
        batch: a.batch,
        use_rep: a.use_rep,
        key_added: a.key_added,
        options: HarmonyOptions {
            theta: a.theta,
            lambda: a.lambda,
            sigma: a.sigma,
            nclust: a.nclust,
            max_iter_harmony: a.max_iter_harmony,
            random_state: a.seed,
            ..Default::default()
        },
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        eprintln!(
            "Harmony on {} ({} cells x {} dims, {} batches, {} clusters): {} round(s), {} in {:.1} s; obsm['{}'] in {}",
            s.representation,
            s.cells,
            s.dims,
            s.batches.len(),
            s.clusters,
            s.iterations,
            if s.converged { "converged" } else { "not converged" },
            s.seconds,
            s.key_added,
            s.output
        );
    }
    Ok(())
}
