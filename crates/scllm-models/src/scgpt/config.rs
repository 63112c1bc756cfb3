//! `args.json` of a scGPT model folder (docs/models/scgpt.md §1.2).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// `args.json` of a released scGPT model, field for field (the scGPT_human file's 47 fields).
/// Sizes (`embsize`, `nheads`, `d_hid`, `nlayers`, `n_layers_cls`) always come from here; fields
/// the model does not read are kept so the file round-trips. Unknown fields land in `extra`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScGptConfig {
    pub embsize: usize,
    pub nheads: usize,
    pub d_hid: usize,
    pub nlayers: usize,
    #[serde(default = "default_n_layers_cls")]
    pub n_layers_cls: usize,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    #[serde(default = "default_n_bins")]
    pub n_bins: usize,
    #[serde(default = "default_pad_token")]
    pub pad_token: String,
    #[serde(default = "default_pad_value", serialize_with = "whole_as_int")]
    pub pad_value: f64,
    #[serde(default = "default_mask_value", serialize_with = "whole_as_int")]
    pub mask_value: f64,
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    #[serde(default)]
    pub input_style: Option<String>,
    #[serde(default)]
    pub input_emb_style: Option<String>,
    #[serde(default)]
    pub trunc_by_sample: Option<bool>,
    #[serde(default)]
    pub data_source: Option<String>,
    #[serde(default)]
    pub save_dir: Option<String>,
    #[serde(default)]
    pub load_model: Option<String>,
    #[serde(default)]
    pub n_hvg: Option<serde_json::Value>,
    #[serde(default)]
    pub valid_size_or_ratio: Option<f64>,
    #[serde(default)]
    pub dist_backend: Option<String>,
    #[serde(default)]
    pub grad_accu_steps: Option<usize>,
    #[serde(default)]
    pub training_tasks: Option<String>,
    #[serde(default)]
    pub dist_url: Option<String>,
    #[serde(default)]
    pub mask_ratio: Option<Vec<f64>>,
    #[serde(default)]
    pub vocab_path: Option<String>,
    #[serde(default)]
    pub rank: Option<usize>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub scheduler_interval: Option<usize>,
    #[serde(default)]
    pub scheduler_factor: Option<f64>,
    #[serde(default)]
    pub warmup_ratio_or_step: Option<f64>,
    #[serde(default)]
    pub no_cls: Option<bool>,
    #[serde(default)]
    pub no_cce: Option<bool>,
    #[serde(default)]
    pub fp16: Option<bool>,
    #[serde(default)]
    pub fast_transformer: Option<bool>,
    #[serde(default)]
    pub log_interval: Option<usize>,
    #[serde(default)]
    pub save_interval: Option<usize>,
    #[serde(default, rename = "USE_CLS")]
    pub use_cls: Option<bool>,
    #[serde(default, rename = "USE_CCE")]
    pub use_cce: Option<bool>,
    #[serde(default, rename = "MVC")]
    pub mvc: Option<bool>,
    #[serde(default, rename = "USE_GENERATIVE_TRAINING")]
    pub use_generative_training: Option<bool>,
    #[serde(default)]
    pub world_size: Option<usize>,
    #[serde(default)]
    pub distributed: Option<bool>,
    #[serde(default)]
    pub local_rank: Option<usize>,
    #[serde(default)]
    pub gpu: Option<usize>,
    /// Fields this struct does not name (fine-tuning runs add their own).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The release writes `-2`, not `-2.0`: keep whole numbers integral so the file round-trips.
fn whole_as_int<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn default_n_layers_cls() -> usize {
    3
}
fn default_dropout() -> f64 {
    0.2
}
fn default_n_bins() -> usize {
    51
}
fn default_pad_token() -> String {
    "<pad>".into()
}
fn default_pad_value() -> f64 {
    -2.0
}
fn default_mask_value() -> f64 {
    -1.0
}
fn default_max_seq_len() -> usize {
    1200
}

impl ScGptConfig {
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::file(path, format!("cannot read: {e}")))?;
        let cfg: ScGptConfig = serde_json::from_str(&text).map_err(|e| {
            ModelError::file(path, format!("not a scGPT args.json: {e} (expected the released model's args.json, with embsize, nheads, d_hid, nlayers)"))
        })?;
        cfg.validate().map_err(|m| ModelError::file(path, m))?;
        Ok(cfg)
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self.embsize == 0 || self.nheads == 0 || self.nlayers == 0 || self.d_hid == 0 {
            return Err("embsize, nheads, nlayers and d_hid must be positive".into());
        }
        if !self.embsize.is_multiple_of(self.nheads) {
            return Err(format!(
                "embsize {} is not a multiple of nheads {}",
                self.embsize, self.nheads
            ));
        }
        if let Some(s) = &self.input_emb_style {
            if s != "continuous" {
                return Err(format!(
                    "input_emb_style \"{s}\" is not supported (released models use \"continuous\")"
                ));
            }
        }
        if self.n_layers_cls == 0 {
            return Err("n_layers_cls must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }
}

/// What a model needs beyond `args.json`: the vocabulary size and `<pad>` id (from `vocab.json`)
/// and which heads to build (the reference's `n_cls` and `do_mvc` arguments).
#[derive(Clone, Debug)]
pub struct ScGptBuild {
    pub ntoken: usize,
    pub pad_id: usize,
    pub n_cls: usize,
    pub do_mvc: bool,
}
