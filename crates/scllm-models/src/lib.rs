//! Single-cell foundation models on burn 0.22: the architectures (one file per family, modules
//! named after the reference's state-dict keys), checkpoint import from PyTorch `.pt` and
//! safetensors with a key-by-key report, and the cell-embedding pipeline.
//!
//! Inference runs on the plain (non-autodiff) device, so no gradient graph is ever built.

pub mod attention;
pub mod checkpoint;
pub mod embed;
pub mod error;
pub mod memory;
pub mod peft;
pub mod scgpt;
pub mod softmax;
pub mod torch_save;

pub use checkpoint::{load_into, save_safetensors, state_dict, Checkpoint, LoadReport};
pub use error::{ModelError, Result};
pub use peft::{
    count_params, load_adapter, load_adapter_weights, read_adapter_meta, save_adapter, sha256_file,
    AdapterMeta, BaseArgs, PeftConfig, Strategy,
};
pub use scgpt::{ScGpt, ScGptBuild, ScGptConfig};
pub use torch_save::save_pt;

use std::path::{Path, PathBuf};

pub use burn;
pub use burn::tensor::Device;
use scllm_tokenize::GeneVocab;

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

impl std::str::FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda),
            _ => Err(format!("unknown device \"{s}\" (use cpu or cuda)")),
        }
    }
}

/// The burn device for `kind`: flex on CPU; CUDA only in builds with the `cuda` feature.
pub fn device(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(ModelError::Invalid(
            "this scllm was built without CUDA support; rebuild with `--features cuda` or use --device cpu".into(),
        )),
    }
}

/// Use `n` CPU threads for the kernels (flex parallelises with rayon's global pool). Only the
/// first call in a process takes effect.
pub fn set_threads(n: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| ModelError::Invalid(format!("cannot set the thread count: {e}")))
}

/// Threads the CPU kernels use (rayon's global pool).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// A released scGPT model folder: `args.json`, `vocab.json`, and weights (`best_model.pt`,
/// or `model.safetensors` / `best_model.safetensors`).
pub struct ScGptModel {
    pub dir: PathBuf,
    pub config: ScGptConfig,
    pub vocab: GeneVocab,
    pub model: ScGpt,
    pub report: LoadReport,
    pub device: Device,
}

/// Options for [`ScGptModel::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Classes of the `cls_decoder` head (`embed_data` builds 1; the release has none).
    pub n_cls: usize,
    pub do_mvc: bool,
    /// Fail on anything missing or skipped.
    pub strict: bool,
    /// A weights file other than the folder's own.
    pub weights: Option<PathBuf>,
}

impl Default for LoadOptions {
    /// As `embed_data`: `n_cls=1, do_mvc=True`.
    fn default() -> Self {
        LoadOptions {
            n_cls: 1,
            do_mvc: true,
            strict: false,
            weights: None,
        }
    }
}

/// The weights file of a model folder.
pub fn find_weights(dir: &Path) -> Result<PathBuf> {
    for name in [
        "best_model.pt",
        "model.safetensors",
        "best_model.safetensors",
        "model.pt",
    ] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(ModelError::file(dir, "no weights found (expected best_model.pt or model.safetensors next to args.json and vocab.json)"))
}

impl ScGptModel {
    pub fn load(dir: impl AsRef<Path>, opts: &LoadOptions, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(ModelError::file(dir, "not a model folder (expected the released scGPT folder with best_model.pt, vocab.json, args.json)"));
        }
        let config = ScGptConfig::from_json_file(dir.join("args.json"))?;
        let mut vocab = GeneVocab::from_json_file(dir.join("vocab.json"))?;
        // embed_data appends missing specials the same way
        vocab.append_missing(&[config.pad_token.as_str(), "<cls>", "<eoc>"]);
        let pad_id = vocab.special(&config.pad_token)? as usize;
        let build = ScGptBuild {
            ntoken: vocab.len(),
            pad_id,
            n_cls: opts.n_cls,
            do_mvc: opts.do_mvc,
        };
        let mut model = ScGpt::new(&config, &build, device)?;
        let weights = match &opts.weights {
            Some(p) => p.clone(),
            None => find_weights(dir)?,
        };
        let ckpt = Checkpoint::open(&weights)?;
        let report = load_into(&mut model, &ckpt, opts.strict, device)?;
        Ok(ScGptModel {
            dir: dir.to_path_buf(),
            config,
            vocab,
            model,
            report,
            device: device.clone(),
        })
    }
}
