//! `convert`: a checkpoint's key-by-key load report against its model folder, and the weights
//! saved as safetensors in the family's own layout.

use std::path::PathBuf;

use scllm_models::{with_folder, LoadReport, ModelFolder};

/// One `scllm convert` run.
#[derive(Clone, Debug)]
pub struct ConvertJob {
    /// The model folder (any family).
    pub model: PathBuf,
    /// A weights file other than the folder's own.
    pub weights: Option<PathBuf>,
    /// Geneformer: a folder with the model's dictionary pickles (default: the model folder).
    pub dictionaries: Option<PathBuf>,
    /// Write the weights as safetensors here.
    pub output: Option<PathBuf>,
    /// Classes of the classifier head to build (0: none, as in a released model).
    pub n_cls: usize,
    /// Fail when any model weight is missing or has another shape.
    pub strict: bool,
    /// Store the linear layers' weights in this precision (bf16; f32 keeps every tensor f32).
    pub precision: scllm_models::Precision,
}

/// What a convert run found and wrote.
pub struct ConvertOutcome {
    pub family: scllm_models::Family,
    pub report: LoadReport,
    /// Tensors written to the output.
    pub written: Option<usize>,
}

pub fn convert(job: &ConvertJob) -> anyhow::Result<ConvertOutcome> {
    let dev = scllm_models::device(scllm_models::DeviceKind::Cpu)?;
    let folder = crate::model_dir::open(
        &job.model,
        job.weights.as_deref(),
        job.dictionaries.as_deref(),
    )?;
    with_folder!(&folder, |f| convert_with(f, job, &dev))
}

fn convert_with<F: ModelFolder>(
    f: &F,
    job: &ConvertJob,
    dev: &scllm_models::Device,
) -> anyhow::Result<ConvertOutcome> {
    let (model, report) = f.load(job.n_cls, job.strict, dev)?;
    let written = match &job.output {
        Some(o) => {
            scllm_models::save_safetensors_as(&model, o, job.precision)?;
            Some(scllm_models::param_table(&model).len())
        }
        None => None,
    };
    Ok(ConvertOutcome {
        family: f.family(),
        report,
        written,
    })
}
