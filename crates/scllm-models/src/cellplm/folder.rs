//! A CellPLM model folder: exactly one `{prefix}.config.json` + `{prefix}.best.ckpt` pair (any
//! prefix; other files ignored), the checkpoint a `torch.save`d dict with the weights under
//! `model_state_dict` (docs/models/cellplm.md §1.1). Shapes come from the checkpoint and must
//! agree with the config; the decoder, the positional table and the latent's training-only
//! parts are skipped and listed in the load report.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::config::CellPlmConfig;
use super::decoder::DecoderShape;
use super::model::{CellPlm, CellPlmShape};
use super::norm::GROUPS;
use super::params::GMVAE;
use crate::error::{ModelError, Result};
use crate::weights::{load_into, Checkpoint, LoadReport};

const CONFIG_SUFFIX: &str = ".config.json";
const CKPT_SUFFIX: &str = ".best.ckpt";
/// `CellTypeAnnotationDefaultModelConfig['model_dropout']`
/// (`CellPLM/pipeline/cell_type_annotation.py`).
pub const ANNOTATION_DROPOUT: f64 = 0.5;

/// An opened CellPLM folder: the pair's paths, the config, and the checkpoint's tensors (read
/// lazily).
pub struct CellPlmFolder {
    pub dir: PathBuf,
    pub prefix: String,
    pub config_path: PathBuf,
    pub ckpt_path: PathBuf,
    pub config: CellPlmConfig,
    pub checkpoint: Checkpoint,
}

/// The prefixes of `dir` holding both files of a pair (sorted), and those with only one.
fn pairs(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| ModelError::file(dir, format!("cannot list the folder: {e}")))?;
    let mut configs = Vec::new();
    let mut ckpts = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(p) = name.strip_suffix(CONFIG_SUFFIX) {
            configs.push(p.to_string());
        } else if let Some(p) = name.strip_suffix(CKPT_SUFFIX) {
            ckpts.push(p.to_string());
        }
    }
    configs.sort();
    let (both, half): (Vec<String>, Vec<String>) =
        configs.into_iter().partition(|p| ckpts.contains(p));
    let mut half = half;
    half.extend(ckpts.into_iter().filter(|p| !both.contains(p)));
    Ok((both, half))
}

/// Whether `dir` looks like a CellPLM folder (some `*.config.json` + `*.best.ckpt` pair).
pub fn is_cellplm_dir(dir: &Path) -> bool {
    pairs(dir).map(|(b, _)| !b.is_empty()).unwrap_or(false)
}

impl CellPlmFolder {
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::file(
                dir,
                "not a model folder (no such directory)",
            ));
        }
        let (both, half) = pairs(dir)?;
        let prefix = match both.as_slice() {
            [p] => p.clone(),
            [] => {
                return Err(ModelError::file(
                    dir,
                    format!(
                        "no CellPLM checkpoint: a CellPLM folder holds one `{{prefix}}{CONFIG_SUFFIX}` \
                         and `{{prefix}}{CKPT_SUFFIX}` pair with the same prefix{}",
                        if half.is_empty() {
                            String::new()
                        } else {
                            format!(" (found unpaired: {})", half.join(", "))
                        }
                    ),
                ))
            }
            many => {
                return Err(ModelError::file(
                    dir,
                    format!(
                        "{} CellPLM checkpoints ({}): keep exactly one \
                         `{{prefix}}{CONFIG_SUFFIX}` + `{{prefix}}{CKPT_SUFFIX}` pair in the folder",
                        many.len(),
                        many.join(", ")
                    ),
                ))
            }
        };
        let config_path = dir.join(format!("{prefix}{CONFIG_SUFFIX}"));
        let ckpt_path = dir.join(format!("{prefix}{CKPT_SUFFIX}"));
        let config = CellPlmConfig::from_file(&config_path)?;
        let checkpoint =
            Checkpoint::open_entry(&ckpt_path, Some("model_state_dict"), &|k| k.to_string())?;
        Ok(CellPlmFolder {
            dir: dir.to_path_buf(),
            prefix,
            config_path,
            ckpt_path,
            config,
            checkpoint,
        })
    }

    fn tensor_shape(&self, key: &str) -> Result<&[usize]> {
        self.checkpoint.shape(key).ok_or_else(|| {
            ModelError::file(
                &self.ckpt_path,
                format!("no tensor `{key}` under model_state_dict: not a CellPLM checkpoint of the released layout"),
            )
        })
    }

    fn disagree(&self, what: &str, ckpt: usize, cfg: usize) -> ModelError {
        ModelError::file(
            &self.ckpt_path,
            format!(
                "{what} is {ckpt} in the checkpoint but {cfg} in {}: the config and checkpoint \
                 are not a pair",
                self.config_path.display()
            ),
        )
    }

    /// The model's sizes, from the checkpoint's tensors, checked against the config.
    pub fn shape(&self) -> Result<CellPlmShape> {
        let cfg = &self.config;
        let emb = self.tensor_shape("embedder.feat_enc.emb")?.to_vec();
        if emb.len() != 2 {
            return Err(ModelError::file(
                &self.ckpt_path,
                "embedder.feat_enc.emb must be a [n_genes, d] matrix",
            ));
        }
        let (n_genes, d) = (emb[0], emb[1]);
        if n_genes != cfg.gene_list.len() {
            return Err(self.disagree("the gene table's row count", n_genes, cfg.gene_list.len()));
        }
        if let Some(h) = cfg.enc_hid.filter(|&h| h != d) {
            return Err(self.disagree("the hidden width (enc_hid)", d, h));
        }
        let n_layers = (0..)
            .take_while(|i| {
                self.checkpoint
                    .shape(&format!("encoder.layers.{i}.norm1.weight"))
                    .is_some()
            })
            .count();
        if let Some(l) = cfg.enc_layers.filter(|&l| l != n_layers) {
            return Err(self.disagree("the encoder layer count (enc_layers)", n_layers, l));
        }
        let n_clusters = self.tensor_shape(&format!("{GMVAE}.inference_qyx.0.logits.weight"))?[0];
        if let Some(k) = cfg.num_clusters.filter(|&k| k != n_clusters) {
            return Err(self.disagree("the GMVAE cluster count (num_clusters)", n_clusters, k));
        }
        let latent = self.tensor_shape(&format!("{GMVAE}.inference_qzyx.2.mu.weight"))?[0];
        if let Some(z) = cfg.post_latent_dim.filter(|&z| z != latent) {
            return Err(self.disagree("the latent width (post_latent_dim)", latent, z));
        }
        let hid = self.tensor_shape(&format!("{GMVAE}.inference_qzyx.0.weight"))?[0];
        let heads = cfg.enc_head;
        if d % heads != 0 || d % GROUPS != 0 {
            return Err(ModelError::file(
                &self.config_path,
                format!("hidden width {d} must divide into enc_head {heads} heads and {GROUPS} norm groups"),
            ));
        }
        let ffn = self.tensor_shape("encoder.layers.0._ff_block.0.weight")?[0];
        Ok(CellPlmShape {
            n_genes,
            d_model: d,
            n_layers,
            heads,
            ffn,
            gmvae: Some((n_clusters, hid, latent)),
            latent,
            model_dropout: cfg.model_dropout,
            pretrain: None,
        })
    }

    /// The decoder's sizes from the checkpoint (`None` without a decoder) and the GMVAE loss
    /// weights from the config.
    pub fn decoder_shape(&self) -> Result<Option<DecoderShape>> {
        if self
            .checkpoint
            .shape("decoder.out_layer.dec_disp")
            .is_none()
        {
            return Ok(None);
        }
        let blocks = (0..)
            .take_while(|i| {
                self.checkpoint
                    .shape(&format!("decoder.layers.{i}.0.weight"))
                    .is_some()
            })
            .count();
        let n_dec_1 = self.tensor_shape("decoder.out_layer.dec_1.weight")?[0];
        let hidden = if blocks > 0 {
            self.tensor_shape("decoder.layers.0.0.weight")?[0]
        } else {
            0
        };
        let covariates = ["batch", "dataset", "platform"]
            .iter()
            .filter_map(|c| {
                self.checkpoint
                    .shape(&format!("decoder.covariate_layers.0.{c}.0.weight"))
                    .map(|s| (c.to_string(), s[0]))
            })
            .collect();
        let c = &self.config;
        Ok(Some(DecoderShape {
            hidden,
            blocks,
            n_dec_1,
            covariates,
            w_li: c.w_li,
            w_en: c.w_en,
            lamda: c.lamda,
        }))
    }

    /// The pretrained model with its pretraining parts (the GMVAE's variance and prior, the
    /// decoder), every one of them read from the checkpoint: what `pretrain` continues from.
    pub fn load_pretrain(&self, dev: &Device) -> Result<(CellPlm, LoadReport)> {
        let mut shape = self.shape()?;
        shape.pretrain = Some(self.decoder_shape()?.ok_or_else(|| {
            ModelError::file(
                &self.ckpt_path,
                "no decoder (decoder.out_layer.*): a checkpoint saved without its \
                 pretraining parts cannot be pretrained further",
            )
        })?);
        let mut m = CellPlm::new(&shape, dev);
        let report = load_into(&mut m, &self.checkpoint, true, dev)?;
        Ok((m, report))
    }

    /// The pretrained model (GMVAE latent) at the checkpoint's shape with its weights, and the
    /// report of what was read and what was skipped: every tensor the embedding reads must be
    /// there; the decoder, the positional table, `norm0` and the GMVAE's variance and prior are
    /// listed as unexpected.
    pub fn load(&self, dev: &Device) -> Result<(CellPlm, LoadReport)> {
        let mut m = CellPlm::new(&self.shape()?, dev);
        let report = load_into(&mut m, &self.checkpoint, true, dev)?;
        Ok((m, report))
    }

    /// The annotation pipeline's model at the checkpoint's shape, freshly initialised (its
    /// weights not read).
    pub fn build_annotation(&self, n_classes: usize, dev: &Device) -> Result<CellPlm> {
        let mut shape = self.shape()?;
        shape.gmvae = None;
        shape.model_dropout = ANNOTATION_DROPOUT;
        let mut m = CellPlm::new(&shape, dev);
        m.new_head(n_classes, dev);
        Ok(m)
    }

    /// The annotation pipeline's model (docs/models/cellplm.md §4.2): the pretrained embedder
    /// and encoder, a new `ae` latent and an `n_classes` head, every dropout at `model_dropout`
    /// 0.5. The GMVAE and decoder weights are not loaded (listed as unexpected).
    pub fn load_annotation(&self, n_classes: usize, dev: &Device) -> Result<(CellPlm, LoadReport)> {
        let mut m = self.build_annotation(n_classes, dev)?;
        let report = load_into(&mut m, &self.checkpoint, false, dev)?;
        let fresh = |k: &str| k.starts_with("latent.layers.1.lat_2lat.") || k.starts_with("head.");
        let bad: Vec<&str> = report
            .missing
            .iter()
            .map(String::as_str)
            .filter(|k| !fresh(k))
            .chain(report.skipped.iter().map(|s| s.key.as_str()))
            .collect();
        if !bad.is_empty() {
            return Err(ModelError::file(
                &self.ckpt_path,
                format!(
                    "missing or misshapen tensors the annotation model reads: {}",
                    bad.join(", ")
                ),
            ));
        }
        Ok((m, report))
    }
}
