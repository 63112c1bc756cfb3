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
    if scllm_models::cellplm::is_cellplm_dir(&job.model) {
        return convert_cellplm(job, &dev);
    }
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
    let written = save_output(&model, job)?;
    Ok(ConvertOutcome {
        family: f.family(),
        report,
        written,
    })
}

/// `convert` for a CellPLM folder (`{prefix}.config.json` + `{prefix}.best.ckpt`): every tensor
/// scllm reads, under the reference's state-dict keys (`model_state_dict` of
/// `CellPLM/pipeline/__init__.py`'s checkpoints) — the pretraining parts (GMVAE variance and
/// prior, decoder) included when the checkpoint has them, so that nothing `pretrain` would
/// continue from is lost. The checkpoint's other tensors (the positional table, `norm0`) are
/// listed as unexpected, as `embed` lists them.
fn convert_cellplm(job: &ConvertJob, dev: &scllm_models::Device) -> anyhow::Result<ConvertOutcome> {
    use scllm_models::cellplm::CellPlmFolder;
    let unsupported = [
        (job.weights.is_some(), "--weights"),
        (job.dictionaries.is_some(), "--dictionaries"),
        (job.n_cls > 0, "--n-cls"),
    ];
    crate::error::refuse_flags(&unsupported, |flag| {
        format!(
            "{flag} is not supported for CellPLM models (the folder's one config + checkpoint \
             pair is converted; a CellPLM head is built by `scllm finetune`)"
        )
    })?;
    let folder = CellPlmFolder::open(&job.model)?;
    // every tensor the embedding reads must be there whatever --strict says (as `embed`)
    let (model, report) = match folder.decoder_shape()? {
        Some(_) => folder.load_pretrain(dev)?,
        None => folder.load(dev)?,
    };
    let written = save_output(&model, job)?;
    Ok(ConvertOutcome {
        family: scllm_models::Family::CellPlm,
        report,
        written,
    })
}

/// `-o`: the model's weights as safetensors in `job.precision`; the number of tensors written.
fn save_output<M: scllm_models::CellModel>(
    model: &M,
    job: &ConvertJob,
) -> anyhow::Result<Option<usize>> {
    let Some(o) = &job.output else {
        return Ok(None);
    };
    scllm_models::save_safetensors_as(model, o, job.precision)?;
    Ok(Some(scllm_models::param_table(model).len()))
}
