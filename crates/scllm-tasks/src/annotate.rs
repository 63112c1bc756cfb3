//! `annotate`: cell types of a query predicted by a base model with a saved adapter (any
//! family), `Unknown` below a confidence (a number, or `auto`: the threshold fine-tuning picked on
//! its validation cells and stored in the adapter), and conformal prediction sets (`--coverage`,
//! calibrated on the same validation cells).

use std::path::Path;

use scllm_eval::novelty::UnknownBelow;
use scllm_io::AnnData;
use scllm_models::peft::file::ValidationCalibration;
use scllm_models::{
    load_adapter, read_adapter_meta, sha256_file, with_folder, AdapterMeta, CellModel, Device,
    ModelFolder, TokenModel,
};
use scllm_tokenize::PrepOptions;
use scllm_train::{predict, AnnotationData, PredictOptions, TrainConfig};

pub use crate::annotate_job::AnnotateJob;
use crate::annotation_output::{validation_needed, write_annotation, AnnotatedBy, Annotation};
use crate::bad;
use crate::cells::Cells;
use crate::model_cache;

/// The base model of `model` with the adapter of `adapter` attached (its hash checked).
pub fn load_adapted<F: ModelFolder>(
    folder: &F,
    adapter: &Path,
) -> anyhow::Result<(F::Model, AdapterMeta)> {
    let meta = read_adapter_meta(adapter)?;
    let sha = sha256_file(folder.weights()?)?;
    let dev = Device::flex();
    let (base, _) = folder.load(meta.n_cls, false, &dev)?;
    Ok(load_adapter(base, adapter, &sha, &dev)?)
}

/// How query cells are tokenised and batched.
pub struct QueryOptions {
    pub max_len: usize,
    pub batch_size: usize,
    pub gene_col: Option<String>,
    pub seed: u64,
    pub progress: bool,
    /// Tokenize over these genes only: the adapter's training genes (`adapter.json` `genes`), so
    /// query cells see the gene set, and hence scGPT's per-cell bins, the model was trained on.
    pub only_genes: Option<Vec<String>>,
}

/// Predict the cells of `adata` (tokenised as the family's fine-tuning does) with the adapted
/// model `m` of `folder`.
pub fn annotate_cells<F: ModelFolder>(
    folder: &F,
    m: &F::Model,
    classes: &[String],
    adata: &AnnData,
    file: &Path,
    q: &QueryOptions,
) -> anyhow::Result<Annotation> {
    let prep = PrepOptions {
        max_len: q.max_len,
        gene_col: q.gene_col.clone(),
        seed: q.seed,
        only_genes: q.only_genes.clone(),
        ..PrepOptions::default()
    };
    let p = folder.prepare_cells(adata, file, &prep)?;
    let mut po = PredictOptions::new(p.pad_id, p.pad_value);
    po.batch_size = q.batch_size;
    po.max_batch_tokens = q.batch_size * q.max_len;
    po.progress = q.progress;
    let pr = predict(m, &p.cells, &po, &Device::flex())?;
    Ok(Annotation {
        labels: pr
            .class_ids
            .iter()
            .map(|&c| classes[c as usize].clone())
            .collect(),
        confidence: pr.confidence,
        probabilities: pr.probabilities,
        embeddings: pr.embeddings,
        dim: pr.dim,
        n_genes: p.gene_match.n_matched,
    })
}

/// Run `job`: write `obs['predicted_cell_type']`, `obs['prediction_confidence']` and the adapted
/// embeddings to `job.output`. Returns the summary.
pub fn annotate(job: &AnnotateJob) -> anyhow::Result<serde_json::Value> {
    annotate_from(job, Cells::File)
}

/// [`annotate`] on cells the caller holds: the predictions, embeddings and `uns` entry go into
/// `a` (nothing is read or written; `job.query` names the cells in messages). On error `a` is
/// unchanged.
pub fn annotate_in_memory(
    job: &AnnotateJob,
    a: &mut scllm_io::AnnData,
) -> anyhow::Result<serde_json::Value> {
    annotate_from(job, Cells::Memory(a))
}

fn annotate_from(job: &AnnotateJob, cells: Cells) -> anyhow::Result<serde_json::Value> {
    if let Some(UnknownBelow::Fixed(p)) = job.unknown_below {
        if !(0.0..=1.0).contains(&p) {
            return Err(bad(format!(
                "--unknown-below must be in [0, 1] or `auto`, got {p}"
            )));
        }
    }
    if let Some(c) = job.coverage {
        if !(c > 0.0 && c < 1.0) {
            return Err(bad(format!(
                "--coverage must be strictly between 0 and 1 (e.g. 0.9), got {c}"
            )));
        }
    }
    scllm_models::nn::precision::kernel(job.precision).map_err(bad)?;
    if scllm_models::folder::detect(&job.model)? == scllm_models::Family::CellPlm {
        return crate::cellplm_annotation::annotate_cellplm(job, cells);
    }
    if job.batch_size == Some(0) {
        return Err(bad("--batch-size must be at least 1"));
    }
    if job.group_by.is_some() {
        return Err(bad(
            "--group-by applies to models whose cells attend to each other (CellPLM); this \
             model predicts each cell on its own",
        ));
    }
    let folder = crate::model_dir::open(&job.model, None, job.dictionaries.as_deref())?;
    with_folder!(&folder, |f| annotate_with(f, job, cells))
}

fn annotate_with<F: ModelFolder>(
    folder: &F,
    job: &AnnotateJob,
    mut cells: Cells,
) -> anyhow::Result<serde_json::Value> {
    let t0 = std::time::Instant::now();
    let ((m, meta), reused) = model_cache::get_or_load(
        job.keep_model,
        || job.load_key(),
        || {
            let (mut m, meta) = load_adapted(folder, &job.adapter)?;
            m.set_precision(job.precision);
            Ok((m, meta))
        },
    )?;
    validation_needed(job, &meta)?;
    let mut owned = None;
    let (adata, write) = cells.get(&job.query, &mut owned)?;
    let ann = annotate_cells(
        folder,
        &m,
        &meta.labels,
        adata,
        &job.query,
        &QueryOptions {
            max_len: job.max_len.unwrap_or_else(|| folder.finetune_max_len()),
            batch_size: job.batch_size.unwrap_or(64),
            gene_col: job.gene_col.clone(),
            seed: job.seed,
            progress: job.progress,
            only_genes: meta.genes.clone(),
        },
    )?;
    let mut summary = write_annotation(
        job,
        adata,
        write,
        &meta,
        ann,
        &AnnotatedBy {
            family: folder.family(),
            default_unknown_below: folder.default_unknown_below(),
            obsm_key: folder.embedding().obsm_key,
            uns: Vec::new(),
        },
        t0,
    )?;
    summary["model_reused"] = reused.into();
    Ok(summary)
}

/// What the fine-tuning validation cells of `split` say about `model`'s confidence (stored in
/// the adapter): scllm-train's [`scllm_train::validation::validation_calibration`] with the
/// training run's evaluation batching.
pub fn calibrate_on_validation<M: TokenModel>(
    model: &M,
    data: &AnnotationData,
    split: &scllm_train::Split,
    tc: &TrainConfig,
) -> anyhow::Result<Option<ValidationCalibration>> {
    let mut po = PredictOptions::new(data.pad_id, data.pad_value);
    po.batch_size = tc.eval_batch_size.max(1);
    po.max_batch_tokens = tc.max_batch_tokens.max(po.batch_size);
    po.progress = false;
    Ok(scllm_train::validation::validation_calibration(
        model,
        data,
        split,
        &po,
        &Device::flex(),
        tc.seed,
    )?)
}
