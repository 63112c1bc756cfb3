//! Single-cell foundation models on burn 0.22, every family through one interface
//! ([`CellModel`]): the architectures (one folder per family, modules named after the
//! reference's state-dict keys), checkpoint import from PyTorch `.pt` and safetensors with a
//! key-by-key report ([`weights`]), adapters written once and attached at the sites each family
//! names ([`peft`]), and the cell-embedding pipeline ([`embed`]).
//!
//! Inference runs on the plain (non-autodiff) device, so no gradient graph is ever built.

pub mod cellplm;
pub mod embed;
pub mod error;
pub mod family;
pub mod folder;
pub mod geneformer;
pub mod interrupt;
pub mod memory;
pub mod model;
pub mod nn;
pub mod param_table;
pub mod params;
pub mod peft;
pub mod scbert;
pub mod scgpt;
pub mod weights;

pub use error::{ModelError, Result};
pub use family::Family;
pub use folder::{
    open as open_folder, AnyFolder, EmbeddingDefaults, FolderOptions, ModelFolder, TokenOptions,
};
pub use geneformer::{BertConfig, Geneformer, GeneformerFolder};
pub use model::{BatchInput, CellModel, Classified, EmbeddingSpec, Pooling, TokenModel};
pub use nn::Precision;
pub use param_table::{param_table, ParamInfo};
pub use params::Part;
pub use peft::{
    attach, load_adapter, load_adapter_weights, param_counts, read_adapter_meta, save_adapter,
    sha256_file, AdapterMeta, PeftConfig, Strategy,
};
pub use scbert::{ScBert, ScBertConfig, ScBertFolder};
pub use scgpt::{
    find_weights, LoadOptions, ScGpt, ScGptBuild, ScGptConfig, ScGptFolder, ScGptModel,
};
pub use weights::{
    load_into, save_pt, save_safetensors, save_safetensors_as, state_dict, Checkpoint, LoadReport,
};

pub use burn;
pub use burn::tensor::Device;

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
    // rayon's global pool is built once per process: a later call (the Python package, a Dask
    // worker running shard after shard) may ask for the count it already has
    match rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
        Ok(()) => Ok(()),
        Err(_) if rayon::current_num_threads() == n => Ok(()),
        Err(_) => Err(ModelError::Invalid(format!(
            "cannot set the thread count to {n}: this process already runs its kernels on {} \
             threads (the count is fixed by its first use); pass threads={0} or start a new process",
            rayon::current_num_threads()
        ))),
    }
}

/// Threads the CPU kernels use (rayon's global pool).
pub fn threads() -> usize {
    rayon::current_num_threads()
}
