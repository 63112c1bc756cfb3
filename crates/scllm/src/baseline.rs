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
    /// A released CellTypist model (--model FILE.pkl) as celltypist 1.7.1 annotates, sparse:
    /// best match or prob match, majority voting over an over-clustering; no --train
    Celltypist,
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
scllm baseline correlation --train ref.h5ad --label cell_type query.h5ad -o out.h5ad --unknown-below 0.3\n\n\
celltypist writes obs['predicted_labels'], obs['over_clustering'], obs['majority_voting'], \
obs['conf_score'] (celltypist's names) and the probability matrix as obsm['celltypist_probability'] \
(columns: uns['celltypist']['classes']); its pickle is read as data, never run:\n  \
scllm baseline celltypist query.h5ad --model Immune_All_Low.pkl --majority-voting -o out.h5ad\n  \
scllm baseline celltypist query.h5ad --model cd8.pkl --mode prob_match --p-thres 0.3 \\\n    \
--over-clustering leiden -o out.h5ad"
)]
pub struct BaselineArgs {
    /// Which baseline
    #[arg(value_enum)]
    pub name: BaselineName,
    /// Query .h5ad to annotate
    pub query: PathBuf,
    /// Reference .h5ad with labels (every baseline but celltypist)
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// obs column of the reference holding the labels
    #[arg(long, default_value = "cell_type")]
    pub label: String,
    /// Output .h5ad (the query plus predictions)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Label cells whose confidence is below P as `Unknown`; `auto`: P is the 0.05 quantile of
    /// the confidence of a stratified 20% of the labelled reference cells held out of training
    /// (the model then trains on the other 80%; P and its rule go to uns['scllm_baseline'])
    #[arg(long, value_name = "P|auto")]
    pub unknown_below: Option<scllm_eval::novelty::UnknownBelow>,
    /// Conformal prediction sets at this coverage (e.g. 0.9): class-conditional split-conformal
    /// sets (APS on probabilities) calibrated on a stratified 20% of the labelled reference
    /// cells held out of training; obs['prediction_set'], obs['conformal_label'] (`Unknown` for
    /// an empty set, `ambiguous` for several), obs['prediction_set_size']
    #[arg(long, value_name = "C")]
    pub coverage: Option<f64>,
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
    /// celltypist: the model .pkl (or .pkl.gz)
    #[arg(long, value_name = "FILE.pkl")]
    pub model: Option<PathBuf>,
    /// celltypist: `best_match` (highest score) or `prob_match` (every type above --p-thres,
    /// joined with `|`; `Unassigned` when none)
    #[arg(long, default_value = "best_match")]
    pub mode: String,
    /// celltypist: probability threshold of prob_match
    #[arg(long, default_value_t = 0.5)]
    pub p_thres: f64,
    /// celltypist: refine labels by majority vote within each over-cluster
    #[arg(long)]
    pub majority_voting: bool,
    /// celltypist: obs column holding the over-clustering (implies --majority-voting); without
    /// it one is computed (Leiden on a 10-NN graph; labels may then differ from celltypist's)
    #[arg(long, value_name = "COL")]
    pub over_clustering: Option<String>,
    /// celltypist: minimum share of a cluster's winning label, else `Heterogeneous`
    #[arg(long, default_value_t = 0.0)]
    pub min_prop: f64,
    /// celltypist: Leiden resolution of the computed over-clustering (default: celltypist's,
    /// 5 to 30 by cell count)
    #[arg(long)]
    pub resolution: Option<f64>,
    /// celltypist: also write the scores as obsm['celltypist_decision']
    #[arg(long)]
    pub decision: bool,
    /// Print a JSON summary (with metrics when the query has the label column)
    #[arg(long)]
    pub json: bool,
}

fn run_celltypist(args: BaselineArgs) -> anyhow::Result<()> {
    use scllm_eval::celltypist::{celltypist, CellTypistJob, CellTypistOptions};
    if args.train.is_some() {
        return Err(bad(
            "celltypist takes a trained model (--model FILE.pkl), not --train",
        ));
    }
    if args.coverage.is_some() {
        return Err(bad(
            "celltypist: --coverage needs held-out labelled reference cells, which a released model does not bring; use --mode prob_match --p-thres P",
        ));
    }
    if args.unknown_below.is_some() {
        return Err(bad(
            "celltypist: --unknown-below does not apply; use --mode prob_match --p-thres P (cells no type reaches become Unassigned)",
        ));
    }
    let model = args
        .model
        .clone()
        .ok_or_else(|| bad("celltypist needs --model FILE.pkl (a CellTypist model)"))?;
    let options = CellTypistOptions {
        mode: args.mode.parse().map_err(bad)?,
        p_thres: args.p_thres,
        majority_voting: args.majority_voting,
        over_clustering: args.over_clustering.clone(),
        min_prop: args.min_prop,
        resolution: args.resolution,
        layer: args.layer.clone(),
        label: args.label.clone(),
        decision: args.decision,
        seed: args.seed,
        progress: !args.json,
    };
    let out = celltypist(&CellTypistJob {
        query: args.query.clone(),
        model,
        output: args.output.clone(),
        options,
    })?;
    if args.json {
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
        "celltypist: {} cell types, {} of {} model genes in the query; {} mode; {:.2}s",
        s.classes.len(),
        s.n_genes_matched,
        s.n_model_genes,
        args.mode,
        s.predict_seconds + s.majority_voting_seconds
    );
    if let Some(m) = &s.metrics {
        println!(
            "query obs['{}'] ({} labeled cells): accuracy {:.4}, macro F1 {:.4}",
            args.label, m.n, m.accuracy, m.f1_macro
        );
    }
    println!(
        "wrote {} ({} cells, obs['predicted_labels']{})",
        out.output,
        s.n_query,
        if s.majority_voting {
            ", obs['majority_voting']"
        } else {
            ""
        }
    );
    Ok(())
}

pub fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let method = match args.name {
        BaselineName::Logreg => Method::Logreg,
        BaselineName::Knn => Method::Knn,
        BaselineName::Correlation => Method::Correlation,
        BaselineName::Celltypist => return run_celltypist(args),
    };
    let train = args.train.clone().ok_or_else(|| {
        bad(format!(
            "{} needs --train REF.h5ad (a reference with labels)",
            method.as_str()
        ))
    })?;
    let mut o = BaselineOptions::new(method, &args.label);
    o.layer = args.layer.clone();
    o.n_hvg = args.n_hvg;
    o.hvg_flavor = args.hvg_flavor.parse().map_err(bad)?;
    match args.unknown_below {
        Some(scllm_eval::novelty::UnknownBelow::Fixed(p)) => o.unknown_below = Some(p),
        Some(scllm_eval::novelty::UnknownBelow::Auto) => o.unknown_below_auto = true,
        None => {}
    }
    o.coverage = args.coverage;
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
        reference: train,
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
            s.params
                .get("unknown_below")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0)
        );
    }
    if let Some(p) = &s.prediction_sets {
        eprintln!(
            "conformal sets at coverage {}: mean size {:.2}, {} empty (Unknown), {} ambiguous",
            p.coverage, p.mean_set_size, p.unknown, p.ambiguous
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
