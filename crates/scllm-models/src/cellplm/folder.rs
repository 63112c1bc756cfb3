//! A CellPLM model folder: exactly one `{prefix}.config.json` + `{prefix}.best.ckpt` pair (any
//! prefix; other files ignored), the checkpoint a `torch.save`d dict with the weights under
//! `model_state_dict` (docs/models/cellplm.md §1.1). Shapes come from the checkpoint and must
//! agree with the config; the decoder, the positional table and the latent's training-only
//! parts are skipped and listed in the load report.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use super::config::CellPlmConfig;
use super::model::{Affine, CellPlm, FlowLayer, Lin};
use crate::error::{ModelError, Result};
use crate::weights::{Checkpoint, LoadReport};

const CONFIG_SUFFIX: &str = ".config.json";
const CKPT_SUFFIX: &str = ".best.ckpt";
/// `create_norm('groupnorm', n)`: `nn.GroupNorm(4, n)` (`CellPLM/utils/__init__.py`).
const GROUPS: usize = 4;

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

    fn shape(&self, key: &str) -> Result<&[usize]> {
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

    /// The model at the checkpoint's shape, its weights, and the report of what was read and
    /// what was skipped.
    pub fn load(&self, dev: &Device) -> Result<(CellPlm, LoadReport)> {
        let cfg = &self.config;
        let emb = self.shape("embedder.feat_enc.emb")?.to_vec();
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
        let lat = "latent.layers.1.inference";
        let n_clusters = self.shape(&format!("{lat}.inference_qyx.0.logits.weight"))?[0];
        if let Some(k) = cfg.num_clusters.filter(|&k| k != n_clusters) {
            return Err(self.disagree("the GMVAE cluster count (num_clusters)", n_clusters, k));
        }
        let latent = self.shape(&format!("{lat}.inference_qzyx.2.mu.weight"))?[0];
        if let Some(z) = cfg.post_latent_dim.filter(|&z| z != latent) {
            return Err(self.disagree("the latent width (post_latent_dim)", latent, z));
        }
        let hid = self.shape(&format!("{lat}.inference_qzyx.0.weight"))?[0];
        let heads = cfg.enc_head;
        if d % heads != 0 || d % GROUPS != 0 {
            return Err(ModelError::file(
                &self.config_path,
                format!("hidden width {d} must divide into enc_head {heads} heads and {GROUPS} norm groups"),
            ));
        }
        let ffn = self.shape("encoder.layers.0._ff_block.0.weight")?[0];

        let mut report = LoadReport {
            path: self.ckpt_path.clone(),
            format: Some(self.checkpoint.format),
            ..Default::default()
        };
        let mut r = Reader {
            f: self,
            dev,
            report: &mut report,
        };
        let gene_table = r.read("embedder.feat_enc.emb", &[n_genes, d])?;
        let extra_linear = r.lin("embedder.extra_linear.0", d, d)?;
        let extra_norm = r.affine("embedder.extra_linear.3", d)?;
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let p = format!("encoder.layers.{i}");
            let a = format!("{p}.self_attn");
            layers.push(FlowLayer {
                query: r.lin(&format!("{a}.query_projection"), d, d)?,
                key: r.lin(&format!("{a}.key_projection"), d, d)?,
                value: r.lin(&format!("{a}.value_projection"), d, d)?,
                out: r.lin(&format!("{a}.out_projection"), d, d)?,
                ff1: r.lin(&format!("{p}._ff_block.0"), d, ffn)?,
                ff2: r.lin(&format!("{p}._ff_block.3"), ffn, d)?,
                norm1: r.affine(&format!("{p}.norm1"), d)?,
                norm2: r.affine(&format!("{p}.norm2"), d)?,
            });
        }
        let pre_latent_norm = r.affine("pre_latent_norm.norm", d)?;
        let cluster_logits = r.lin(&format!("{lat}.inference_qyx.0.logits"), d, n_clusters)?;
        let qzyx_hidden = r.lin(&format!("{lat}.inference_qzyx.0"), d + n_clusters, hid)?;
        let qzyx_mu = r.lin(&format!("{lat}.inference_qzyx.2.mu"), hid, latent)?;
        // everything else (decoder, positional table, the unused `norm0`, the GMVAE's variance
        // and prior) plays no part in the embedding
        let loaded: std::collections::BTreeSet<&str> =
            report.loaded.iter().map(|s| s.as_str()).collect();
        let unused: Vec<String> = self
            .checkpoint
            .keys()
            .filter(|k| !loaded.contains(k))
            .map(str::to_string)
            .collect();
        report.unexpected = unused;
        Ok((
            CellPlm {
                gene_table,
                d_model: d,
                extra_linear,
                extra_norm,
                groups: GROUPS,
                layers,
                heads,
                pre_latent_norm,
                cluster_logits,
                qzyx_hidden,
                qzyx_mu,
            },
            report,
        ))
    }
}

/// Reads the used tensors, checking each shape and recording it as loaded.
struct Reader<'a> {
    f: &'a CellPlmFolder,
    dev: &'a Device,
    report: &'a mut LoadReport,
}

impl Reader<'_> {
    fn read(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let found = self.f.shape(key)?;
        if found != shape {
            return Err(ModelError::file(
                &self.f.ckpt_path,
                format!(
                    "`{key}` has shape {found:?}, expected {shape:?} from the model's other \
                     tensors and {}",
                    self.f.config_path.display()
                ),
            ));
        }
        let v = self.f.checkpoint.read_f32(key)?;
        self.report.loaded.push(key.to_string());
        Ok(v)
    }
    fn vec(&mut self, key: &str, n: usize) -> Result<Tensor<1>> {
        let v = self.read(key, &[n])?;
        Ok(Tensor::from_data(TensorData::new(v, [n]), self.dev))
    }
    /// PyTorch's `[out, in]` weight, held as `[in, out]`.
    fn lin(&mut self, key: &str, din: usize, dout: usize) -> Result<Lin> {
        let w = self.read(&format!("{key}.weight"), &[dout, din])?;
        let w = Tensor::<2>::from_data(TensorData::new(w, [dout, din]), self.dev).transpose();
        Ok(Lin {
            w,
            b: self.vec(&format!("{key}.bias"), dout)?,
        })
    }
    fn affine(&mut self, key: &str, d: usize) -> Result<Affine> {
        Ok(Affine {
            weight: self.vec(&format!("{key}.weight"), d)?,
            bias: self.vec(&format!("{key}.bias"), d)?,
        })
    }
}
