//! A scBERT model folder (docs/models/scbert.md §4): the checkpoint as scBERT saves it (a
//! `.pth` holding `torch.save({..., 'model_state_dict': ..., ...})`, any file name:
//! `panglao_pretrain.pth`, a fine-tuned `*_best.pth`), `scbert_config.json` (the architecture
//! numbers scBERT's scripts pass in code) and `gene_panel.txt` (the panel in model order). Other
//! files and subfolders are ignored. Sizes the config leaves out (random features, feed-forward
//! width, a fine-tuned head's widths) are read from the checkpoint's tensors.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use scllm_io::{AnnData, DataFrame};
use scllm_tokenize::scbert::{Panel, PANEL_FILE};
use scllm_tokenize::{GeneMatch, PrepOptions, Prepared, RowTokenizer};

use super::config::{ScBertConfig, CONFIG_FILE};
use super::model::{ScBert, HEAD_HIDDEN};
use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::folder::{weights_of, EmbeddingDefaults, ModelFolder, TokenOptions};
use crate::model::{EmbeddingSpec, Pooling};
use crate::weights::Checkpoint;

/// The entry of scBERT's checkpoint dict that holds the weights.
pub const WEIGHTS_ENTRY: &str = "model_state_dict";

/// File endings a weights file may have.
const WEIGHT_ENDINGS: [&str; 3] = ["pth", "pt", "safetensors"];

/// `predict.py`'s `--unassign_thres` default: a cell whose top probability is below it is
/// "Unassigned".
pub const UNASSIGN_THRES: f64 = 0.5;

pub struct ScBertFolder {
    pub dir: PathBuf,
    /// The architecture, with `nb_features` and `ff_mult` as the checkpoint holds them.
    pub config: ScBertConfig,
    pub panel: Panel,
    /// Widths of the classifier's `fc1` and `fc2` (a fine-tuned checkpoint's, else
    /// `finetune.py`'s 512 and 128).
    pub head_hidden: (usize, usize),
    /// The weights file, or why there is none (see [`ModelFolder::weights`]).
    pub weights: std::result::Result<PathBuf, String>,
}

/// A checkpoint key as the model names it: DistributedDataParallel's `module.` prefix dropped
/// (scBERT saves `model.module.state_dict()`, which has none; a `model.state_dict()` of the
/// wrapped model has it).
pub fn canonical_key(key: &str) -> String {
    key.strip_prefix("module.").unwrap_or(key).to_string()
}

/// The folder's one weights file (`.pth`, `.pt` or `.safetensors`), or why there is none.
fn find_weights(dir: &Path) -> Result<std::result::Result<PathBuf, String>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| ModelError::file(dir, format!("cannot list: {e}")))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| WEIGHT_ENDINGS.contains(&x))
        })
        .collect();
    found.sort();
    Ok(match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(
            "no weights found (expected one scBERT checkpoint, e.g. panglao_pretrain.pth \
                  or a fine-tuned *_best.pth)"
                .into(),
        ),
        _ => Err(format!(
            "holds several checkpoints ({}): keep one in the folder or name it with --weights",
            found
                .iter()
                .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    })
}

impl ScBertFolder {
    /// Read `dir`; `weights`: a weights file other than the folder's own.
    pub fn open(dir: &Path, weights: Option<&Path>) -> Result<Self> {
        let cfg_path = dir.join(CONFIG_FILE);
        let mut config = ScBertConfig::from_json_file(&cfg_path)?;
        let panel = Panel::from_file(dir.join(PANEL_FILE))?;
        let weights = match weights {
            Some(w) if !w.is_file() => return Err(ModelError::file(w, "no such weights file")),
            Some(w) => Ok(w.to_path_buf()),
            None => find_weights(dir)?,
        };
        let mut head_hidden = HEAD_HIDDEN;
        if let Ok(w) = &weights {
            let ckpt = Checkpoint::open_entry(w, Some(WEIGHTS_ENTRY), &canonical_key)?;
            shapes_from(&ckpt, &mut config, &mut head_hidden, &cfg_path)?;
        }
        if panel.len() + 1 != config.max_seq_len {
            return Err(ModelError::file(
                dir.join(PANEL_FILE),
                format!(
                    "holds {} genes, but the model reads {} genes (max_seq_len {} in {CONFIG_FILE}: \
                     the panel plus the appended token). Use the panel the model was trained on, \
                     in its order",
                    panel.len(),
                    config.max_seq_len - 1,
                    config.max_seq_len
                ),
            ));
        }
        config
            .validate()
            .map_err(|m| ModelError::file(&cfg_path, m))?;
        Ok(ScBertFolder {
            dir: dir.to_path_buf(),
            config,
            panel,
            head_hidden,
            weights,
        })
    }

    /// `num_tokens - 2`: the highest bin.
    pub fn bin_num(&self) -> u32 {
        (self.config.num_tokens.saturating_sub(2)) as u32
    }
}

/// Check the config against the checkpoint's tensors and take the sizes the config leaves out.
fn shapes_from(
    ckpt: &Checkpoint,
    cfg: &mut ScBertConfig,
    head_hidden: &mut (usize, usize),
    cfg_path: &Path,
) -> Result<()> {
    let wpath = ckpt.path.clone();
    let shape = |k: &str| -> Result<Vec<usize>> {
        ckpt.shape(k).map(|s| s.to_vec()).ok_or_else(|| {
            ModelError::file(
                &wpath,
                format!(
                    "has no tensor `{k}` under `{WEIGHTS_ENTRY}`: not a scBERT (PerformerLM) \
                     checkpoint"
                ),
            )
        })
    };
    let disagree = |what: String| ModelError::file(cfg_path, what);
    let tok = shape("token_emb.weight")?;
    let pos = shape("pos_emb.emb.weight")?;
    if tok != [cfg.num_tokens, cfg.dim] {
        return Err(disagree(format!(
            "says num_tokens {} and dim {}, but the checkpoint's token_emb.weight is {tok:?}",
            cfg.num_tokens, cfg.dim
        )));
    }
    if pos != [cfg.max_seq_len, cfg.dim] {
        return Err(disagree(format!(
            "says max_seq_len {} and dim {}, but the checkpoint's position table \
             pos_emb.emb.weight is {pos:?} (its rows are the panel genes plus the appended token)",
            cfg.max_seq_len, cfg.dim
        )));
    }
    let depth = (0..)
        .take_while(|i| {
            ckpt.shape(&format!("performer.net.layers.{i}.0.fn.to_q.weight"))
                .is_some()
        })
        .count();
    if depth != cfg.depth {
        return Err(disagree(format!(
            "says depth {}, but the checkpoint has {depth} layers",
            cfg.depth
        )));
    }
    let q = shape("performer.net.layers.0.0.fn.to_q.weight")?;
    if q != [cfg.inner_dim(), cfg.dim] {
        return Err(disagree(format!(
            "says heads {} × dim_head {} = {}, but the checkpoint's to_q.weight is {q:?}",
            cfg.heads,
            cfg.dim_head,
            cfg.inner_dim()
        )));
    }
    let p = shape("performer.net.layers.0.0.fn.fast_attention.projection_matrix")?;
    if p[1] != cfg.dim_head || cfg.nb_features.is_some_and(|m| m != p[0]) {
        return Err(disagree(format!(
            "says dim_head {} and nb_features {}, but the checkpoint's projection_matrix is {p:?}",
            cfg.dim_head,
            cfg.nb_features()
        )));
    }
    cfg.nb_features = Some(p[0]);
    let w1 = shape("performer.net.layers.0.1.fn.fn.w1.weight")?;
    if !w1[0].is_multiple_of(cfg.dim) || cfg.ff_mult.is_some_and(|f| f * cfg.dim != w1[0]) {
        return Err(disagree(format!(
            "says ff_mult {}, but the checkpoint's w1.weight is {w1:?} (dim {})",
            cfg.ff_mult(),
            cfg.dim
        )));
    }
    cfg.ff_mult = Some(w1[0] / cfg.dim);
    if let (Some(f1), Some(f2)) = (
        ckpt.shape("to_out.fc1.weight"),
        ckpt.shape("to_out.fc2.weight"),
    ) {
        *head_hidden = (f1[0], f2[0]);
    }
    Ok(())
}

impl ModelFolder for ScBertFolder {
    type Model = ScBert;

    fn family(&self) -> Family {
        Family::ScBert
    }
    fn dir(&self) -> &Path {
        &self.dir
    }
    fn weights(&self) -> Result<&Path> {
        weights_of(&self.dir, &self.weights)
    }
    fn n_layers(&self) -> usize {
        self.config.depth
    }
    fn planned_params(&self) -> u64 {
        let c = &self.config;
        let (d, inner, l) = (c.dim as u64, c.inner_dim() as u64, c.depth as u64);
        let ff = 2u64
            .saturating_mul(d)
            .saturating_mul(d)
            .saturating_mul(c.ff_mult() as u64);
        // token table, then per layer q/k/v/out (4 d·inner) and the feed-forward
        (c.num_tokens as u64).saturating_mul(d).saturating_add(
            l.saturating_mul(
                4u64.saturating_mul(d)
                    .saturating_mul(inner)
                    .saturating_add(ff),
            ),
        )
    }
    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "scBERT: {} layers, dim {}, {} heads × {}, {} random features, panel of {} genes ({})",
            c.depth,
            c.dim,
            c.heads,
            c.dim_head,
            c.nb_features(),
            self.panel.len(),
            self.panel.source.display()
        )
    }
    fn base_args(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.config).expect("serialisable");
        v["panel_genes"] = serde_json::json!(self.panel.len());
        v
    }
    fn build(&self, n_cls: usize, dev: &Device) -> Result<ScBert> {
        ScBert::new(&self.config, n_cls, self.head_hidden, dev)
    }
    fn checkpoint(&self) -> Result<Checkpoint> {
        Checkpoint::open_entry(self.weights()?, Some(WEIGHTS_ENTRY), &canonical_key)
    }
    fn match_genes(
        &self,
        var: &DataFrame,
        gene_col: Option<&str>,
        file: &Path,
    ) -> Result<GeneMatch> {
        Ok(self.panel.match_genes(var, gene_col, file)?)
    }
    fn token_id(&self, token: &str) -> Option<u32> {
        self.panel.position(token)
    }
    fn token(&self, id: u32) -> Option<String> {
        self.panel.gene(id).map(str::to_string)
    }
    fn prepare_cells(&self, adata: &AnnData, file: &Path, opts: &PrepOptions) -> Result<Prepared> {
        Ok(self
            .panel
            .prepare_cells(adata, file, opts, self.bin_num())?)
    }
    fn embed_tokenizer(
        &self,
        genes: &GeneMatch,
        opts: &TokenOptions,
    ) -> Result<Box<dyn RowTokenizer>> {
        if let Some(m) = opts.max_len.filter(|&m| m != self.max_len()) {
            return Err(ModelError::Invalid(format!(
                "--max-len {m}: scBERT reads every cell as its whole panel plus one token ({} \
                 tokens); leave --max-len out",
                self.max_len()
            )));
        }
        Ok(Box::new(self.panel.tokenizer(genes, self.bin_num())?))
    }
    fn embedding(&self) -> EmbeddingDefaults {
        // the mean over the panel positions of the final norm's output (the encodings the
        // classifier head reads; BioLLM's scBERT cell embedding), docs/models/scbert.md §4
        EmbeddingDefaults {
            spec: EmbeddingSpec {
                pooling: Pooling::Mean,
                layer: 0,
            },
            normalize: false,
            obsm_key: "X_scBERT",
        }
    }
    fn max_len(&self) -> usize {
        self.config.max_seq_len
    }
    fn default_unknown_below(&self) -> Option<f64> {
        Some(UNASSIGN_THRES)
    }
}
