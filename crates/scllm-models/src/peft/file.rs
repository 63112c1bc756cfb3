//! Adapter files: `adapter.safetensors` (the trainable tensors under the family's keys) and
//! `adapter.json` (strategy, options, labels, genes, and the SHA-256 of the base weights), written
//! apart from the never-modified base model.

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::attach::{apply_trainability, attach};
use super::config::{PeftConfig, Strategy};
use super::trainable::{strategy_of, trains};
use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::model::CellModel;
use crate::weights::{load_into, params, save::write_atomic, write_tensors, Checkpoint};

/// Adapter file format version written by [`save_adapter`]. Version 1 (scGPT only) had no
/// `family`, `d_model` or `n_layers`; it still reads.
pub const ADAPTER_FORMAT_VERSION: u32 = 2;

pub const ADAPTER_WEIGHTS: &str = "adapter.safetensors";
pub const ADAPTER_META: &str = "adapter.json";

/// `adapter.json`: what an adapter needs beyond its tensors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdapterMeta {
    pub format_version: u32,
    /// The base model's family (version 1 files: scGPT).
    #[serde(default = "scgpt")]
    pub family: Family,
    pub strategy: Strategy,
    pub peft: PeftConfig,
    /// Classes of the classifier head.
    pub n_cls: usize,
    /// Class names, index = class id.
    pub labels: Vec<String>,
    /// Genes the model was fine-tuned on (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genes: Option<Vec<String>>,
    /// SHA-256 (hex) of the base weights file the adapter was trained on.
    pub base_weights_sha256: String,
    /// The base model's configuration as the family records it (scGPT: `embsize`, `nlayers`, ...).
    pub base_args: serde_json::Value,
    /// Width and depth of the base model (version 1 files: `base_args.embsize` / `nlayers`).
    #[serde(default)]
    pub d_model: Option<usize>,
    #[serde(default)]
    pub n_layers: Option<usize>,
    /// What the fine-tuning validation cells (held out of training) said about the model's
    /// confidence, for `annotate --unknown-below auto` and `--coverage`; absent in adapters
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationCalibration>,
}

/// Confidence of the fine-tuning validation cells (scllm-train's `validation_calibration`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct ValidationCalibration {
    /// Validation cells predicted.
    pub n_cells: usize,
    /// The quantile of their confidence taken as the `Unknown` threshold.
    pub unknown_quantile: f64,
    /// Cells whose confidence is below this are `Unknown` (`--unknown-below auto`).
    pub unknown_below: f64,
    /// The rule, in words.
    pub rule: String,
    /// Per class (index = class id): the non-conformity (APS) scores of the true label of that
    /// class's validation cells, ascending, for conformal sets at any coverage.
    pub class_scores: Vec<Vec<f64>>,
}

fn scgpt() -> Family {
    Family::ScGpt
}

impl AdapterMeta {
    /// The meta of `model` (its strategy and options) with the given labels and base.
    pub fn for_model<M: CellModel>(
        model: &M,
        base_args: serde_json::Value,
        labels: Vec<String>,
        genes: Option<Vec<String>>,
        base_weights_sha256: String,
    ) -> Self {
        AdapterMeta {
            format_version: ADAPTER_FORMAT_VERSION,
            family: model.family(),
            strategy: strategy_of(model),
            peft: model
                .peft_state()
                .map(|p| p.config.clone())
                .unwrap_or_default(),
            n_cls: model.n_classes(),
            labels,
            genes,
            base_weights_sha256,
            base_args,
            d_model: Some(model.d_model()),
            n_layers: Some(model.n_layers()),
            validation: None,
        }
    }

    /// The base model's width and depth the adapter was trained on.
    fn base_shape(&self) -> (Option<usize>, Option<usize>) {
        let arg = |k: &str| {
            self.base_args
                .get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
        };
        (
            self.d_model.or_else(|| arg("embsize")),
            self.n_layers.or_else(|| arg("nlayers")),
        )
    }
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let path = path.as_ref();
    let mut f = std::fs::File::open(path)
        .map_err(|e| ModelError::file(path, format!("cannot open: {e}")))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ModelError::file(path, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Write `dir/adapter.safetensors` (the tensors that train under the model's strategy, the
/// classifier included; every tensor for `full`) and `dir/adapter.json`, each atomically. The
/// base weights are never written.
pub fn save_adapter<M: CellModel>(
    model: &M,
    dir: impl AsRef<Path>,
    meta: &AdapterMeta,
) -> Result<()> {
    let dir = dir.as_ref();
    let strategy = strategy_of(model);
    if meta.strategy != strategy {
        return Err(ModelError::Invalid(format!(
            "adapter meta says {}, the model has {strategy}",
            meta.strategy
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ModelError::file(dir, format!("cannot create: {e}")))?;
    let tensors: Vec<_> = params(model)
        .into_iter()
        .filter(|p| trains(strategy, p.part))
        .map(|p| (p.key, p.shape, p.data))
        .collect();
    write_tensors(&dir.join(ADAPTER_WEIGHTS), tensors)?;
    let json = serde_json::to_vec_pretty(meta)
        .map_err(|e| ModelError::Backend(format!("adapter.json: {e}")))?;
    write_atomic(&dir.join(ADAPTER_META), &json)
}

/// Read `dir/adapter.json`.
pub fn read_adapter_meta(dir: impl AsRef<Path>) -> Result<AdapterMeta> {
    let path = dir.as_ref().join(ADAPTER_META);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ModelError::file(&path, format!("cannot read: {e} (expected an adapter folder written by scllm finetune, with adapter.json and adapter.safetensors)")))?;
    let meta: AdapterMeta = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(&path, format!("not an adapter.json: {e}")))?;
    if !(1..=ADAPTER_FORMAT_VERSION).contains(&meta.format_version) {
        return Err(ModelError::file(
            &path,
            format!(
                "adapter format version {} is not supported (this scllm reads versions 1 to {ADAPTER_FORMAT_VERSION})",
                meta.format_version
            ),
        ));
    }
    Ok(meta)
}

/// Load adapter tensors from a safetensors file into `model` (which must already have the
/// adapters attached): every trainable tensor must be in the file with its shape, and the file
/// must hold nothing else. Trainability is re-applied afterwards.
pub fn load_adapter_weights<M: CellModel>(
    model: &mut M,
    file: impl AsRef<Path>,
    dev: &Device,
) -> Result<()> {
    let file = file.as_ref();
    let ckpt = Checkpoint::open(file)?;
    let report = load_into(model, &ckpt, false, dev)?;
    let strategy = strategy_of(model);
    let trainable: std::collections::HashSet<String> = crate::param_table::param_table(model)
        .into_iter()
        .filter(|p| trains(strategy, p.part))
        .map(|p| p.key)
        .collect();
    let mut problems = Vec::new();
    let missing: Vec<&str> = report
        .missing
        .iter()
        .filter(|k| trainable.contains(*k))
        .map(|s| s.as_str())
        .collect();
    if !missing.is_empty() {
        problems.push(format!("missing {}", missing.join(", ")));
    }
    if !report.skipped.is_empty() {
        problems.push(format!(
            "shape mismatch {}",
            report
                .skipped
                .iter()
                .map(|s| format!("{} (file {:?}, model {:?})", s.key, s.found, s.expected))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !report.unexpected.is_empty() {
        problems.push(format!("unexpected {}", report.unexpected.join(", ")));
    }
    apply_trainability(model);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ModelError::file(
            file,
            format!(
                "does not fit the model's {strategy} adapters: {}",
                problems.join("; ")
            ),
        ))
    }
}

/// Attach the adapter saved in `dir` to `base` and load its tensors. `base_sha256` is the hash of
/// the base weights file `base` was loaded from ([`sha256_file`]); it must be the one the adapter
/// was trained on. A classifier head of another class count is rebuilt to the adapter's.
pub fn load_adapter<M: CellModel>(
    mut base: M,
    dir: impl AsRef<Path>,
    base_sha256: &str,
    dev: &Device,
) -> Result<(M, AdapterMeta)> {
    let dir = dir.as_ref();
    let meta = read_adapter_meta(dir)?;
    if meta.family != base.family() {
        return Err(ModelError::Invalid(format!(
            "{}: the adapter was trained on a {} model, the base model given is {}",
            dir.display(),
            meta.family,
            base.family()
        )));
    }
    if !meta.base_weights_sha256.eq_ignore_ascii_case(base_sha256) {
        return Err(ModelError::Invalid(format!(
            "{}: the adapter was trained on base weights with SHA-256 {}, but the base model given has {}; \
             load the base model it was trained on (the same weights file), or fine-tune \
             the adapter again on this one",
            dir.display(),
            meta.base_weights_sha256,
            base_sha256
        )));
    }
    let (d, nlayers) = (base.d_model(), base.n_layers());
    if let (Some(ad), Some(al)) = meta.base_shape() {
        if ad != d || al != nlayers {
            return Err(ModelError::Invalid(format!(
                "{}: the adapter is for a model of width {ad} with {al} layers, the base has {d} and {nlayers}",
                dir.display()
            )));
        }
    }
    if meta.n_cls > 0 && base.n_classes() != meta.n_cls {
        base.set_head(meta.n_cls, dev);
    }
    let mut model = attach(base, meta.strategy, &meta.peft, dev)?;
    load_adapter_weights(&mut model, dir.join(ADAPTER_WEIGHTS), dev)?;
    Ok((model, meta))
}
