//! `scbert_config.json`: the architecture numbers of a scBERT `PerformerLM` (docs/models/
//! scbert.md §2), one field per constructor argument of the reference. scBERT's own scripts pass
//! them in code; scllm reads them from this file, and reads every other size (random features,
//! feed-forward width, the classifier's hidden widths) from the checkpoint's tensors.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The file name in a model folder.
pub const CONFIG_FILE: &str = "scbert_config.json";

/// `PerformerLM(num_tokens, max_seq_len, dim, depth, heads, dim_head)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScBertConfig {
    /// Token values: `bin_num + 2` (7: bins 0..5 and the mask token 6).
    pub num_tokens: usize,
    /// Width of the hidden states (200 released).
    pub dim: usize,
    /// Performer layers (6 released).
    pub depth: usize,
    pub heads: usize,
    /// Width of one head (64 released; the attention's inner width is `heads · dim_head`).
    pub dim_head: usize,
    /// Positions: the gene panel plus the appended token (16,907 released).
    pub max_seq_len: usize,
    /// Random features of FAVOR+; default `int(dim_head · ln dim_head)` (the reference's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nb_features: Option<usize>,
    /// Feed-forward width as a multiple of `dim`; default 4 (the reference's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ff_mult: Option<usize>,
}

impl ScBertConfig {
    /// The released `panglao_pretrain.pth` shape.
    pub fn released() -> Self {
        ScBertConfig {
            num_tokens: 7,
            dim: 200,
            depth: 6,
            heads: 10,
            dim_head: 64,
            max_seq_len: 16_907,
            nb_features: None,
            ff_mult: None,
        }
    }

    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ModelError::file(
                path,
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "not found: a scBERT model folder holds {CONFIG_FILE} with the architecture \
                         numbers scBERT's scripts pass in code, e.g. {}",
                        serde_json::to_string(&Self::released()).expect("serialisable")
                    )
                } else {
                    format!("cannot read: {e}")
                },
            )
        })?;
        let cfg: ScBertConfig = serde_json::from_str(&text).map_err(|e| {
            ModelError::file(
                path,
                format!(
                    "not a scBERT config: {e} (expected num_tokens, dim, depth, heads, dim_head, \
                     max_seq_len; optional nb_features, ff_mult)"
                ),
            )
        })?;
        cfg.validate().map_err(|m| ModelError::file(path, m))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let sizes = [
            ("num_tokens", self.num_tokens),
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
            ("dim_head", self.dim_head),
            ("max_seq_len", self.max_seq_len),
            ("nb_features", self.nb_features()),
            ("ff_mult", self.ff_mult()),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if self.max_seq_len < 2 {
            return Err("max_seq_len must be at least 2 (one gene and the appended token)".into());
        }
        Ok(())
    }

    /// `heads · dim_head`.
    pub fn inner_dim(&self) -> usize {
        self.heads * self.dim_head
    }

    /// `nb_features`, or the reference's default `int(dim_head · ln dim_head)` (266 for 64).
    pub fn nb_features(&self) -> usize {
        self.nb_features
            .unwrap_or_else(|| (self.dim_head as f64 * (self.dim_head as f64).ln()) as usize)
    }

    pub fn ff_mult(&self) -> usize {
        self.ff_mult.unwrap_or(4)
    }

    /// Genes of the panel: every position but the appended one.
    pub fn n_genes(&self) -> usize {
        self.max_seq_len - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_defaults_are_the_reference_ones() {
        let c = ScBertConfig::released();
        assert_eq!(c.nb_features(), 266);
        assert_eq!(c.inner_dim(), 640);
        assert_eq!(c.ff_mult(), 4);
        assert_eq!(c.n_genes(), 16_906);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_fields_and_zero_sizes_are_refused() {
        let bad: std::result::Result<ScBertConfig, _> = serde_json::from_str(
            r#"{"num_tokens":7,"dim":200,"depth":6,"heads":10,"dim_head":64,"max_seq_len":16907,"dimm":1}"#,
        );
        assert!(bad.is_err());
        let mut c = ScBertConfig::released();
        c.heads = 0;
        assert!(c.validate().unwrap_err().contains("heads"));
    }
}
