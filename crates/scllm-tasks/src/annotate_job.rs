//! What one `scllm annotate` run is told (any family): the job struct the CLI builds.

use std::path::PathBuf;

use scllm_eval::novelty::UnknownBelow;

/// One `scllm annotate` run.
#[derive(Clone, Debug)]
pub struct AnnotateJob {
    pub query: PathBuf,
    /// The base model folder the adapter was trained on.
    pub model: PathBuf,
    /// Adapter folder written by `finetune`.
    pub adapter: PathBuf,
    pub output: PathBuf,
    /// Geneformer: a folder with the model's dictionary pickles (default: the model folder).
    pub dictionaries: Option<PathBuf>,
    /// Label cells whose confidence is below this `Unknown` (`auto`: the adapter's validation
    /// threshold).
    pub unknown_below: Option<UnknownBelow>,
    /// Conformal prediction sets at this coverage, calibrated on the adapter's validation cells.
    pub coverage: Option<f64>,
    /// `obsm` key of the adapted model's cell embeddings (default: the family's key +
    /// `_adapted`).
    pub obsm_key: Option<String>,
    /// Longest cell in tokens (default: the family's fine-tuning length, as the adapter was
    /// trained).
    pub max_len: Option<usize>,
    /// Cells per forward pass (token families, default 64); CellPLM: cut each group into
    /// attention sets of at most this many cells (default: whole groups).
    pub batch_size: Option<usize>,
    /// CellPLM: the `obs` column whose groups are attention sets (default `batch` where the
    /// file has it; `none`: all cells one set).
    pub group_by: Option<String>,
    pub gene_col: Option<String>,
    pub seed: u64,
    pub progress: bool,
    /// Number format of the linear layers' products (`scllm_models::nn::precision`).
    pub precision: scllm_models::Precision,
    /// Keep the adapted model for the next call in this process ([`crate::model_cache`]; the
    /// Python package asks, the CLI does not).
    pub keep_model: bool,
}

impl AnnotateJob {
    /// What the adapted model's load depends on ([`crate::model_cache::key`]).
    pub(crate) fn load_key(&self) -> String {
        let mut paths = vec![self.model.as_path(), self.adapter.as_path()];
        paths.extend(self.dictionaries.as_deref());
        let options = format!("annotate precision={:?}", self.precision);
        crate::model_cache::key(&paths, &options)
    }
}
