//! `scllm evaluate`: arguments into an [`EvaluateJob`], printing. The work (scikit-learn's
//! metrics on predictions, an embedding or a clustering, and the pictures) is
//! `scllm_eval::evaluation::evaluate_file`.

use std::path::PathBuf;

use clap::Args;
use scllm_eval::evaluation::{evaluate_file, EvaluateJob, EvaluateOptions};
use scllm_eval::Distance;

use crate::bad;

#[derive(Args, Debug)]
#[command(
    after_help = "Metrics are scikit-learn's (accuracy_score, balanced_accuracy_score, \
precision/recall/f1 macro and weighted with zero_division=0, confusion_matrix, silhouette_score, \
adjusted_rand_score, normalized_mutual_info_score) on the cells whose truth label is not NaN. \
Predictions of `Unknown` count as a class; accuracy on the other cells is shown too.\n\n\
Example:\n  \
scllm baseline logreg --train ref.h5ad --label cell_type query.h5ad -o pred.h5ad\n  \
scllm evaluate pred.h5ad --truth cell_type --pred predicted_cell_type\n  \
scllm evaluate emb.h5ad --truth cell_type --embedding X_scgpt --cluster leiden --json\n  \
scllm evaluate pred.h5ad --pred predicted_cell_type --embedding X_scGPT --plots report/\n\n\
--plots DIR writes confusion.{png,svg} and per_class_f1.{png,svg} (with --pred), and \
umap.{png,svg} (with --embedding: truth, or truth beside prediction)."
)]
pub struct EvaluateArgs {
    /// An .h5ad file holding the truth column (and predictions / embedding / clustering)
    pub file: PathBuf,
    /// obs column with the true labels (NaN = unlabeled, left out)
    #[arg(long, default_value = "cell_type")]
    pub truth: String,
    /// obs column with predicted labels: classification metrics, per-class table, confusion matrix
    #[arg(long)]
    pub pred: Option<String>,
    /// obsm key of an embedding: silhouette score of the truth labels on it
    #[arg(long)]
    pub embedding: Option<String>,
    /// Silhouette distance(s): euclidean, cosine or both
    #[arg(long, default_value = "both")]
    pub metric: String,
    /// obs column with a clustering (e.g. leiden): ARI and NMI against the truth
    #[arg(long)]
    pub cluster: Option<String>,
    /// Silhouette is quadratic in cells: above this many, a seeded random subset is scored
    #[arg(long, default_value_t = 20000)]
    pub silhouette_max_cells: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write pictures (PNG and SVG) into this folder
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Print the full report as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let distances = match args.metric.as_str() {
        "both" => vec![Distance::Euclidean, Distance::Cosine],
        m => vec![m.parse::<Distance>().map_err(bad)?],
    };
    let out = evaluate_file(&EvaluateJob {
        file: args.file.clone(),
        options: EvaluateOptions {
            truth: args.truth.clone(),
            pred: args.pred.clone(),
            embedding: args.embedding.clone(),
            distances,
            cluster: args.cluster.clone(),
            silhouette_max_cells: args.silhouette_max_cells,
            seed: args.seed,
        },
        plots: args.plots.clone(),
        progress: !args.json,
    })?;
    if args.json {
        // through a Value, so keys print sorted as they always have
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&out)?)?
        );
        return Ok(());
    }
    let rep = &out.report;
    let pictures = out.plots.unwrap_or_default();
    println!(
        "{}: {} cells, {} scored against obs['{}'] ({} unlabeled skipped)",
        rep.file, rep.n_cells, rep.n_scored, rep.truth, rep.n_unlabeled_skipped
    );
    if let Some(c) = &rep.classification {
        println!(
            "\npredictions obs['{}']:",
            rep.pred.as_deref().unwrap_or("")
        );
        println!("  accuracy           {:.4}", c.accuracy);
        println!("  balanced accuracy  {:.4}", c.balanced_accuracy);
        println!(
            "  macro     precision {:.4}  recall {:.4}  F1 {:.4}",
            c.precision_macro, c.recall_macro, c.f1_macro
        );
        println!(
            "  weighted  precision {:.4}  recall {:.4}  F1 {:.4}",
            c.precision_weighted, c.recall_weighted, c.f1_weighted
        );
        if rep.n_unknown > 0 {
            println!(
                "  Unknown: {} cells; accuracy on the others {:.4}",
                rep.n_unknown,
                rep.accuracy_on_accepted.unwrap_or(f64::NAN)
            );
        }
        if rep.n_missing_pred > 0 {
            println!(
                "  missing (NaN) predictions: {} (counted as `nan`)",
                rep.n_missing_pred
            );
        }
        let w = c.labels.iter().map(|l| l.len()).max().unwrap_or(5).max(5);
        println!(
            "\n  {:<w$}  precision  recall     F1  support  predicted",
            "class"
        );
        for r in &c.per_class {
            println!(
                "  {:<w$}  {:>9.4}  {:>6.4}  {:>5.4}  {:>7}  {:>9}",
                r.label, r.precision, r.recall, r.f1, r.support, r.predicted
            );
        }
        println!("\n  confusion matrix (rows: truth, columns: predicted, order as above)");
        for (l, row) in c.labels.iter().zip(&c.confusion) {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:>6}")).collect();
            println!("  {:<w$} {}", l, cells.join(""));
        }
    }
    for s in &rep.silhouette {
        println!(
            "\nsilhouette obsm['{}'] ({:?}): {:.4} on {} cells{}",
            s.embedding,
            s.metric,
            s.score,
            s.n_cells,
            if s.subsampled { " (random subset)" } else { "" }
        );
    }
    if !pictures.is_empty() {
        println!("\npictures: {}", pictures.join(", "));
    }
    if let (Some(ari), Some(nmi)) = (rep.ari, rep.nmi) {
        println!(
            "\nclustering obs['{}']: ARI {:.4}  NMI {:.4}",
            rep.cluster.as_deref().unwrap_or(""),
            ari,
            nmi
        );
    }
    Ok(())
}
