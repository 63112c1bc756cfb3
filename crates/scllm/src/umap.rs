//! `scllm umap`: arguments into a [`UmapJob`], printing. The work (a 2-D UMAP layout of an
//! embedding, or of PCA of the log data, stored in `obsm['X_umap']` and drawn coloured by obs
//! columns) is `scllm_eval::umap_file::umap_file`.

use std::path::PathBuf;

use clap::Args;
use scllm_eval::umap_file::{umap_file, UmapJob};

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

pub fn run(args: UmapArgs) -> anyhow::Result<()> {
    let s = umap_file(&UmapJob {
        file: args.file.clone(),
        use_rep: args.use_rep.clone(),
        color: args.color.clone(),
        plot: args.plot.clone(),
        output: args.output.clone(),
        n_neighbors: args.n_neighbors,
        min_dist: args.min_dist,
        seed: args.seed,
        progress: !args.json,
    })?;
    if args.json {
        // through a Value, so keys print sorted as they always have
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&s)?)?
        );
    } else {
        eprintln!(
            "UMAP of {} cells on {} in {:.1} s{}{}",
            s.cells,
            s.representation,
            s.seconds,
            s.plot
                .as_ref()
                .map(|p| format!("; picture {p}"))
                .unwrap_or_default(),
            s.output
                .as_ref()
                .map(|p| format!("; obsm['X_umap'] in {p}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
