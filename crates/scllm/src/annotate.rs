//! `scllm annotate`: arguments into an [`AnnotateJob`], printing. The work is
//! `scllm_tasks::annotate`.

use std::path::PathBuf;

use clap::Args;
use scllm_eval::novelty::UnknownBelow;
use scllm_tasks::annotate::{annotate, AnnotateJob};
use scllm_tasks::{bad, model_dir};

#[derive(Args, Debug)]
#[command(after_help = "Writes obs['predicted_cell_type'] (categorical), \
obs['prediction_confidence'] (float32, softmax probability of the prediction) and the adapted \
model's cell embeddings in obsm (default key X_scGPT_adapted, X_geneformer_adapted). With --unknown-below P, cells \
whose confidence is below P are labelled Unknown (a type the reference lacks is the usual \
reason); --unknown-below auto takes the threshold fine-tuning picked on its validation cells \
(the 0.05 quantile of their confidence, stored in adapter.json). --coverage 0.9 adds conformal \
prediction sets calibrated on those validation cells (class-conditional, APS): \
obs['prediction_set'] (the labels the model cannot rule out, joined by |), \
obs['conformal_label'] (the label, Unknown for an empty set, ambiguous for several) and \
obs['prediction_set_size']. Thresholds and rules go to uns['scllm_annotate']. The adapter must have been trained on this base model: its recorded SHA-256 of the \
base weights is checked.\n\n\
Example:\n  \
scllm finetune --model scGPT_human --train ref.h5ad --method encoder-prompt -o ad/\n  \
scllm annotate --model scGPT_human --adapter ad/ query.h5ad -o annotated.h5ad --unknown-below 0.5\n  \
scllm annotate --model scGPT_human --adapter ad/ query.h5ad -o annotated.h5ad --unknown-below auto --coverage 0.9\n  \
scllm evaluate annotated.h5ad --truth cell_type --pred predicted_cell_type")]
pub struct AnnotateArgs {
    /// Query .h5ad
    pub query: PathBuf,
    /// Base model folder (default: the shipped models/scllm-small, or $SCLLM_MODEL)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Geneformer: a folder holding the model's dictionary pickles (token_dictionary.pkl,
    /// gene_median_dictionary.pkl, or the V2 *_gc104M.pkl set; default: the model folder, else
    /// the V1 dictionaries bundled with scllm)
    #[arg(long, value_name = "DIR")]
    pub dictionaries: Option<PathBuf>,
    /// Adapter folder written by `scllm finetune`
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[arg(short, long)]
    pub output: PathBuf,
    /// Label cells whose confidence is below P as `Unknown`; `auto`: the threshold picked on
    /// the fine-tuning validation cells (stored in the adapter). Without it, the family's own
    /// rule applies where it has one (scBERT: 0.5, as its predict.py; scGPT and Geneformer: none)
    #[arg(long, value_name = "P|auto")]
    pub unknown_below: Option<UnknownBelow>,
    /// Conformal prediction sets at this coverage (e.g. 0.9), calibrated on the fine-tuning
    /// validation cells stored in the adapter
    #[arg(long, value_name = "C")]
    pub coverage: Option<f64>,
    /// obsm key for the adapted model's cell embeddings (default: the family's key + _adapted,
    /// e.g. X_scGPT_adapted)
    #[arg(long)]
    pub obsm_key: Option<String>,
    /// Longest cell in tokens (default: the family's fine-tuning length: scGPT 2001, Geneformer
    /// its model input size)
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Cells per forward pass (default 64); CellPLM: cut each obs group into attention sets of
    /// at most this many cells (default: whole groups)
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// CellPLM: obs column whose groups are attention sets (default: `batch` where the file has
    /// it; `none`: all cells one set). A cell's prediction depends on the cells of its set
    #[arg(long, value_name = "COL")]
    pub group_by: Option<String>,
    #[arg(long)]
    pub gene_col: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number format of the linear layers' products: f32, bf16 or int8 (see `scllm embed
    /// --help`; default: bf16 where the CPU has AVX-512 BF16, else f32); recorded in
    /// `uns['scllm_annotate']['precision']`
    #[arg(long, value_name = "f32|bf16|int8")]
    pub precision: Option<scllm_models::Precision>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: AnnotateArgs) -> anyhow::Result<()> {
    let adapter = a.adapter.clone().ok_or_else(|| {
        bad("--adapter ADAPTER_DIR is required: a base model has no trained classifier. Train one with `scllm finetune`, or transfer labels zero-shot with `scllm embed` then `scllm baseline knn --use-rep X_scGPT`")
    })?;
    let (precision, defaulted) = scllm_models::Precision::or_cpu_default(a.precision);
    let mut s = annotate(&AnnotateJob {
        query: a.query.clone(),
        model: model_dir::resolve(a.model.as_deref())?,
        adapter,
        output: a.output.clone(),
        dictionaries: a.dictionaries.clone(),
        unknown_below: a.unknown_below,
        coverage: a.coverage,
        obsm_key: a.obsm_key.clone(),
        max_len: a.max_len,
        batch_size: a.batch_size,
        group_by: a.group_by.clone(),
        gene_col: a.gene_col.clone(),
        seed: a.seed,
        progress: !a.json,
        precision,
        keep_model: false,
    })?;
    s["precision_default"] = defaulted.into();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        eprintln!(
            "annotated {} cells with the {} adapter ({} Unknown; {}) → {}",
            s["cells"],
            s["strategy"].as_str().unwrap_or(""),
            s["unknown"],
            s["kernel"].as_str().unwrap_or(""),
            a.output.display()
        );
        if defaulted {
            eprintln!("{}", crate::embed::default_note(precision));
        }
        if let Some(t) = s["unknown_below"].as_f64() {
            eprintln!("  Unknown below confidence {t:.4}");
        }
        if let Some(m) = s["prediction_sets"]["mean_set_size"].as_f64() {
            eprintln!(
                "  conformal sets at coverage {}: mean size {m:.2}, {} Unknown (empty), {} ambiguous",
                s["prediction_sets"]["coverage"],
                s["prediction_sets"]["unknown"],
                s["prediction_sets"]["ambiguous"]
            );
        }
        if let Some(c) = s["predicted_counts"].as_object() {
            for (k, v) in c {
                eprintln!("  {k:<30} {v}");
            }
        }
    }
    Ok(())
}
