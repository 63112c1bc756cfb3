//! `{prefix}.config.json`: the keyword arguments of the reference's `OmicsFormer`
//! (docs/models/cellplm.md §1.2). Only what the embedding path reads is kept; the shapes
//! themselves come from the checkpoint and are checked against these.

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};

/// What scllm reads of a CellPLM config.
#[derive(Clone, Debug)]
pub struct CellPlmConfig {
    /// The model's genes (Ensembl ids), in gene-table row order.
    pub gene_list: Vec<String>,
    pub enc_hid: Option<usize>,
    pub enc_layers: Option<usize>,
    /// `OmicsFormer`'s default 8 when the file leaves it out (as the released config does).
    pub enc_head: usize,
    pub post_latent_dim: Option<usize>,
    pub num_clusters: Option<usize>,
    /// The dropout of every layer when training (the release's 0.2); `OmicsFormer`'s default 0.1
    /// when absent.
    pub model_dropout: f64,
    /// The GMVAE loss's weights and floor (`w_li`, `w_en`, `lamda`; `OmicsFormer` defaults 1, 1,
    /// 0.5 when absent).
    pub w_li: f64,
    pub w_en: f64,
    pub lamda: f64,
}

const DEFAULT_HEADS: usize = 8;
const DEFAULT_DROPOUT: f64 = 0.1;

impl CellPlmConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::file(path, format!("cannot read: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::file(path, format!("not JSON: {e}")))?;
        Self::from_value(&v, path)
    }

    pub fn from_value(v: &Value, path: &Path) -> Result<Self> {
        let err = |m: String| ModelError::file(path, m);
        let gene_list = match v.get("gene_list") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|g| g.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| err("`gene_list` must be a list of Ensembl id strings".into()))?,
            _ => {
                return Err(err(
                    "no `gene_list` (the model's genes, a list of Ensembl ids in gene-table \
                     order): a CellPLM config lists them; use the config.json released with the \
                     checkpoint"
                        .into(),
                ))
            }
        };
        let usize_of = |k: &str| -> Result<Option<usize>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| err(format!("`{k}` must be a non-negative integer"))),
            }
        };
        // the embedding path implements exactly the released architecture's choices
        let expect = |k: &str, want: &str, default: Option<&str>| -> Result<()> {
            let got = match v.get(k) {
                Some(Value::String(s)) => Some(s.as_str()),
                None | Some(Value::Null) => default,
                Some(_) => None,
            };
            if got == Some(want) {
                Ok(())
            } else {
                Err(err(format!(
                    "`{k}` is {}; scllm runs CellPLM with `{k}` \"{want}\" only (the released \
                     model's)",
                    v.get(k).map_or("missing".into(), |x| x.to_string())
                )))
            }
        };
        expect("enc_mod", "flowformer", None)?;
        expect("latent_mod", "gmvae", Some("vae"))?;
        expect("norm", "groupnorm", Some("layernorm"))?;
        for k in ["dsbn", "input_covariate"] {
            if v.get(k).and_then(Value::as_bool).unwrap_or(false) {
                return Err(err(format!(
                    "`{k}` true is not supported (the released model has it false)"
                )));
            }
        }
        if v.get("cat_pe").and_then(Value::as_bool).unwrap_or(true)
            && !matches!(v.get("pe_type"), Some(Value::Null))
        {
            return Err(err(
                "`cat_pe` true (or missing) is not supported: the released model sets it false, \
                 so its positional encoding adds 0"
                    .into(),
            ));
        }
        let enc_head = usize_of("enc_head")?.unwrap_or(DEFAULT_HEADS);
        if enc_head == 0 {
            return Err(err("`enc_head` must be at least 1".into()));
        }
        let f64_of = |k: &str, default: f64| -> Result<f64> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_f64()
                    .ok_or_else(|| err(format!("`{k}` must be a number"))),
            }
        };
        let model_dropout = match v.get("model_dropout") {
            None | Some(Value::Null) => DEFAULT_DROPOUT,
            Some(x) => x
                .as_f64()
                .filter(|p| (0.0..1.0).contains(p))
                .ok_or_else(|| err("`model_dropout` must be a number in [0, 1)".into()))?,
        };
        Ok(CellPlmConfig {
            gene_list,
            enc_hid: usize_of("enc_hid")?,
            enc_layers: usize_of("enc_layers")?,
            enc_head,
            post_latent_dim: usize_of("post_latent_dim")?,
            num_clusters: usize_of("num_clusters")?,
            model_dropout,
            w_li: f64_of("w_li", 1.0)?,
            w_en: f64_of("w_en", 1.0)?,
            lamda: f64_of("lamda", 0.5)?,
        })
    }
}
