//! `scllm baseline NAME`: arguments into a [`BaselineJob`], printing. The work (the classical
//! annotators a reviewer expects next to a foundation model) is `scllm_eval::baselines::baseline`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use scllm_eval::baselines::{baseline, BaselineJob, BaselineOptions, Method};
use scllm_eval::knn::Vote;
use scllm_eval::Distance;

use crate::bad;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BaselineName {
    /// L1-regularised one-vs-rest logistic regression on log-normalised HVGs, C by 5-fold CV
    /// (liblinear's problem; Boiarsky et al. 2023)
    Logreg,
    /// k-nearest-neighbour label transfer on an obsm embedding or on PCA of the log data
    Knn,
    /// SingleR-style Spearman correlation to per-type median profiles on pairwise markers,
    /// with fine-tuning
    Correlation,
}

#[derive(Args, Debug)]
#[command(
    after_help = "X may hold counts (normalised to log1p(CP10k) automatically) or \
log-normalised values; cells whose label is NaN are left out of training and scoring. The query \
is written to OUT with obs['predicted_cell_type'] (categorical), obs['prediction_confidence'] \
(float32: probability for logreg, vote share for knn, Spearman rho for correlation) and \
uns['scllm_baseline'] (method, chosen C / k / genes). When the query has the label column, \
metrics are printed too.\n\n\
Example (leave-donor-out on the committed fixtures):\n  \
scllm baseline logreg --train tests/fixtures/eval/kang_ref.h5ad --label cell_type \\\n    \
tests/fixtures/eval/kang_query.h5ad -o kang_logreg.h5ad --json\n  \
scllm baseline knn --train ref.h5ad --label cell_type --use-rep X_scgpt query.h5ad -o out.h5ad\n  \
scllm baseline correlation --train ref.h5ad --label cell_type query.h5ad -o out.h5ad --unknown-below 0.3"
)]
pub struct BaselineArgs {
    /// Which baseline
    #[arg(value_enum)]
    pub name: BaselineName,
    /// Query .h5ad to annotate
    pub query: PathBuf,
    /// Reference .h5ad with labels
    #[arg(long)]
    pub train: PathBuf,
    /// obs column of the reference holding the labels
    #[arg(long, default_value = "cell_type")]
    pub label: String,
    /// Output .h5ad (the query plus predictions)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Label cells whose confidence is below P as `Unknown`
    #[arg(long, value_name = "P")]
    pub unknown_below: Option<f64>,
    /// Use this layer of both files instead of X (`raw` for .raw.X)
    #[arg(long)]
    pub layer: Option<String>,
    /// Highly variable genes selected on the reference (logreg, knn on PCA); 0 = all genes
    #[arg(long, default_value_t = 2000)]
    pub n_hvg: usize,
    /// HVG flavor on the reference's log data: seurat or cell_ranger
    #[arg(long, default_value = "seurat")]
    pub hvg_flavor: String,
    /// logreg: fixed C (inverse regularisation); skips cross-validation
    #[arg(long = "c", value_name = "C")]
    pub c: Option<f64>,
    /// logreg: the C values cross-validation chooses from
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    pub c_grid: Vec<f64>,
    /// logreg: cross-validation folds
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// logreg: stopping tolerance (scikit-learn's tol)
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
    /// logreg: maximum Newton iterations per binary problem (scikit-learn's max_iter)
    #[arg(long, default_value_t = 100)]
    pub max_iter: usize,
    /// knn: neighbours
    #[arg(short, long, default_value_t = 15)]
    pub k: usize,
    /// knn: obsm key of an embedding present in both files (default: PCA of the log data)
    #[arg(long)]
    pub use_rep: Option<String>,
    /// knn: principal components when no --use-rep
    #[arg(long, default_value_t = 50)]
    pub n_pcs: usize,
    /// knn: majority or distance (1/d weighted) vote
    #[arg(long, default_value = "majority")]
    pub vote: String,
    /// knn: cosine or euclidean
    #[arg(long, default_value = "cosine")]
    pub metric: String,
    /// correlation: marker genes per pair of types (default: SingleR's 500·(2/3)^log2(types))
    #[arg(long)]
    pub de_n: Option<usize>,
    /// correlation: fine-tuning keeps types within this of the best score
    #[arg(long, default_value_t = 0.05)]
    pub tune_thresh: f64,
    /// correlation: skip fine-tuning
    #[arg(long)]
    pub no_fine_tune: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print a JSON summary (with metrics when the query has the label column)
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let method = match args.name {
        BaselineName::Logreg => Method::Logreg,
        BaselineName::Knn => Method::Knn,
        BaselineName::Correlation => Method::Correlation,
    };
    let mut o = BaselineOptions::new(method, &args.label);
    o.layer = args.layer.clone();
    o.n_hvg = args.n_hvg;
    o.hvg_flavor = args.hvg_flavor.parse().map_err(bad)?;
    o.unknown_below = args.unknown_below;
    o.c = args.c;
    o.c_grid = args.c_grid.clone();
    o.folds = args.folds;
    o.solver.tol = args.tol;
    o.solver.max_iter = args.max_iter;
    o.k = args.k;
    o.use_rep = args.use_rep.clone();
    o.n_pcs = args.n_pcs;
    o.vote = args.vote.parse::<Vote>().map_err(bad)?;
    o.metric = args.metric.parse::<Distance>().map_err(bad)?;
    o.correlation.de_n = args.de_n;
    o.correlation.tune_thresh = args.tune_thresh;
    o.correlation.fine_tune = !args.no_fine_tune;
    o.seed = args.seed;
    o.progress = !args.json;
    let out = baseline(&BaselineJob {
        reference: args.train.clone(),
        query: args.query.clone(),
        output: args.output.clone(),
        options: o,
    })?;
    if args.json {
        // through a Value, so keys print sorted as they always have
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&out)?)?
        );
        return Ok(());
    }
    let s = &out.summary;
    for n in &s.notes {
        eprintln!("{n}");
    }
    eprintln!(
        "{}: trained on {} labeled cells ({} unlabeled skipped), {} classes, {} genes; {:.2}s train, {:.2}s predict",
        s.method, s.n_train, s.n_reference_unlabeled, s.classes.len(), s.n_genes, s.train_seconds, s.predict_seconds
    );
    if !s.cv.is_empty() {
        let curve: Vec<String> =
            s.cv.iter()
                .map(|p| format!("C={}: {:.4}", p.c, p.mean_accuracy))
                .collect();
        eprintln!("{}-fold CV accuracy: {}", args.folds, curve.join(", "));
    }
    eprintln!("parameters: {}", serde_json::to_string(&s.params)?);
    if s.n_unknown > 0 {
        eprintln!(
            "{} of {} query cells below {} -> Unknown",
            s.n_unknown,
            s.n_query,
            args.unknown_below.unwrap_or(0.0)
        );
    }
    if let Some(m) = &s.metrics {
        println!(
            "query obs['{}'] ({} labeled cells): accuracy {:.4}, balanced accuracy {:.4}, macro F1 {:.4}",
            s.label, m.n, m.accuracy, m.balanced_accuracy, m.f1_macro
        );
    }
    println!(
        "wrote {} ({} cells, obs['predicted_cell_type'])",
        out.output, s.n_query
    );
    Ok(())
}
