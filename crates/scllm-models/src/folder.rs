//! A model folder of any family: the one reader of a family's files (config, vocabulary,
//! weights), how the family tokenises a file's cells, and which family a folder holds.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use scllm_io::{AnnData, DataFrame};
use scllm_tokenize::{GeneMatch, PrepOptions, Prepared, RowTokenizer};

use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::model::{EmbeddingSpec, TokenModel};
use crate::weights::{load_into, Checkpoint, LoadReport};

/// How a family's cell embedding is made and stored.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddingDefaults {
    pub spec: EmbeddingSpec,
    /// L2-normalise each embedding (scGPT's `embed_data` does).
    pub normalize: bool,
    /// Where users of the family look for it (`obsm['X_scGPT']`, `obsm['X_geneformer']`).
    pub obsm_key: &'static str,
}

/// Tokenisation options for embedding a file (each family's defaults where `None`).
#[derive(Clone, Debug, Default)]
pub struct TokenOptions {
    /// Longest sequence, special tokens included.
    pub max_len: Option<usize>,
    /// Seed of the tokenisation's randomness (scGPT's binning ties and gene sampling).
    pub seed: u64,
}

/// A model folder of one family: what every command needs from it.
pub trait ModelFolder: Sized + Send + Sync {
    type Model: TokenModel;

    fn family(&self) -> Family;
    fn dir(&self) -> &Path;
    /// The weights file the model loads from (a folder opened for its configuration alone, as
    /// `finetune --dry-run` does, may have none: then this is the error saying so).
    fn weights(&self) -> Result<&Path>;
    /// Encoder layers of the model.
    fn n_layers(&self) -> usize;
    /// A lower bound on the model's parameter count from its configuration alone (embedding
    /// tables and encoder layers), so a configuration that does not belong to its weights
    /// (`nlayers` 100000) is refused before it is allocated.
    fn planned_params(&self) -> u64;
    /// One line: family, shape, vocabulary.
    fn describe(&self) -> String;
    /// What `adapter.json` records about the base model.
    fn base_args(&self) -> serde_json::Value;

    /// The model at the folder's shape, randomly initialised, with a classifier head of `n_cls`
    /// classes (0: none, the pretraining heads instead).
    fn build(&self, n_cls: usize, dev: &Device) -> Result<Self::Model>;
    /// The weights file, its keys read as the family spells them.
    fn checkpoint(&self) -> Result<Checkpoint>;

    /// [`Self::build`] then the weights by name and shape, reported key by key; with `strict`,
    /// anything missing or skipped is an error.
    fn load(&self, n_cls: usize, strict: bool, dev: &Device) -> Result<(Self::Model, LoadReport)> {
        let ckpt = self.checkpoint()?;
        check_planned_size(self.dir(), self.planned_params(), &ckpt, self.weights()?)?;
        let mut m = self.build(n_cls, dev)?;
        let report = load_into(&mut m, &ckpt, strict, dev)?;
        Ok((m, report))
    }

    /// The vocabulary id of each of a file's genes (`gene_col`: the `var` column naming them).
    fn match_genes(
        &self,
        var: &DataFrame,
        gene_col: Option<&str>,
        file: &Path,
    ) -> Result<GeneMatch>;
    /// A vocabulary token's id, and back (adapters record the genes they were trained on).
    fn token_id(&self, token: &str) -> Option<u32>;
    fn token(&self, id: u32) -> Option<String>;

    /// Every cell of a file as the family's fine-tuning and prediction read it.
    fn prepare_cells(&self, adata: &AnnData, file: &Path, opts: &PrepOptions) -> Result<Prepared>;
    /// The tokenizer of the family's embedding pipeline for a file whose genes matched as
    /// `genes`.
    fn embed_tokenizer(
        &self,
        genes: &GeneMatch,
        opts: &TokenOptions,
    ) -> Result<Box<dyn RowTokenizer>>;
    fn embedding(&self) -> EmbeddingDefaults;
    /// The longest input fine-tuning and prediction tokenise to by default (scGPT: scPEFT's
    /// 2001; others: [`Self::max_len`]).
    fn finetune_max_len(&self) -> usize {
        self.max_len()
    }
    /// The family's longest input, special tokens included (scGPT: `max_seq_len`; Geneformer:
    /// its model input size).
    fn max_len(&self) -> usize;
    /// The `obs` column holding each cell's total count over all genes, where the family's
    /// tokenizer normalises by it (Geneformer's `n_counts`).
    fn totals_column(&self) -> Option<&'static str> {
        None
    }
    /// The family's own rule for answering "unknown": a cell whose highest class probability is
    /// below this is not assigned (scBERT's `predict.py`: 0.5); `None`: the family has none.
    fn default_unknown_below(&self) -> Option<f64> {
        None
    }
}

/// Refuse a configuration that describes a model more than twice the size of the weights it
/// comes with (plus 1M parameters of slack for heads a checkpoint may lack): building it would
/// allocate what the configuration claims, however small the checkpoint.
fn check_planned_size(dir: &Path, planned: u64, ckpt: &Checkpoint, weights: &Path) -> Result<()> {
    let stored: u64 = ckpt
        .keys()
        .filter_map(|k| ckpt.shape(k))
        .map(|s| s.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64)))
        .fold(0u64, u64::saturating_add);
    if planned > stored.saturating_mul(2).saturating_add(1 << 20) {
        return Err(ModelError::file(
            dir,
            format!(
                "the configuration describes a model of at least {planned} parameters, but {} holds {stored}: the configuration does not belong to these weights (check its layer count and sizes)",
                weights.display()
            ),
        ));
    }
    Ok(())
}

/// A model folder of whichever family it holds; [`open`] detects it.
pub enum AnyFolder {
    ScGpt(Box<crate::scgpt::ScGptFolder>),
    Geneformer(Box<crate::geneformer::GeneformerFolder>),
    ScBert(Box<crate::scbert::ScBertFolder>),
}

/// Run `$body` with `$f` bound to (a reference to) the folder of whichever family the
/// `&AnyFolder` `$any` holds (a generic function over [`ModelFolder`] is then instantiated once
/// per family).
#[macro_export]
macro_rules! with_folder {
    ($any:expr, |$f:ident| $body:expr) => {
        match $any {
            $crate::folder::AnyFolder::ScGpt(boxed) => {
                let $f = &**boxed;
                $body
            }
            $crate::folder::AnyFolder::Geneformer(boxed) => {
                let $f = &**boxed;
                $body
            }
            $crate::folder::AnyFolder::ScBert(boxed) => {
                let $f = &**boxed;
                $body
            }
        }
    };
}

impl AnyFolder {
    pub fn family(&self) -> Family {
        with_folder!(self, |f| f.family())
    }
    pub fn dir(&self) -> &Path {
        with_folder!(self, |f| f.dir())
    }
}

/// Which family `dir` holds, from its files: `args.json` (scGPT), `scbert_config.json` (scBERT),
/// `config.json` with `model_type` "bert" (Geneformer), or a `{prefix}.config.json` +
/// `{prefix}.best.ckpt` pair (CellPLM). Anything else is an error naming what
/// was looked for.
pub fn detect(dir: &Path) -> Result<Family> {
    if !dir.is_dir() {
        return Err(ModelError::file(
            dir,
            "not a model folder (no such directory)",
        ));
    }
    if dir.join("args.json").is_file() {
        return Ok(Family::ScGpt);
    }
    if dir.join(crate::scbert::config::CONFIG_FILE).is_file() {
        return Ok(Family::ScBert);
    }
    let config = dir.join("config.json");
    if config.is_file() {
        let text = std::fs::read_to_string(&config)
            .map_err(|e| ModelError::file(&config, format!("cannot read: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::file(&config, format!("not JSON: {e}")))?;
        return match v.get("model_type").and_then(|t| t.as_str()) {
            Some("bert") => Ok(Family::Geneformer),
            other => Err(ModelError::file(
                &config,
                format!(
                    "model_type {} is not a family scllm runs (Geneformer folders say \"bert\")",
                    other.map_or("missing".to_string(), |t| format!("\"{t}\""))
                ),
            )),
        };
    }
    if crate::cellplm::is_cellplm_dir(dir) {
        return Ok(Family::CellPlm);
    }
    Err(ModelError::file(
        dir,
        "no known model family here: looked for args.json (scGPT, with vocab.json and \
         best_model.pt), scbert_config.json (scBERT, with gene_panel.txt and a .pth \
         checkpoint), config.json with model_type \"bert\" (Geneformer, with \
         model.safetensors or pytorch_model.bin) and a {prefix}.config.json + \
         {prefix}.best.ckpt pair (CellPLM)",
    ))
}

/// What a folder may be opened with beyond its own files.
#[derive(Clone, Debug, Default)]
pub struct FolderOptions {
    /// A weights file other than the folder's own.
    pub weights: Option<PathBuf>,
    /// Geneformer: a folder holding the dictionary pickles (default: the model folder, else the
    /// bundled V1 set).
    pub dictionaries: Option<PathBuf>,
}

/// Open the model folder `dir` (its family detected).
pub fn open(dir: &Path, opts: &FolderOptions) -> Result<AnyFolder> {
    let w = opts.weights.as_deref();
    Ok(match detect(dir)? {
        Family::ScGpt => AnyFolder::ScGpt(Box::new(crate::scgpt::ScGptFolder::open(dir, w)?)),
        Family::Geneformer => AnyFolder::Geneformer(Box::new(
            crate::geneformer::GeneformerFolder::open(dir, w, opts.dictionaries.as_deref())?,
        )),
        Family::ScBert => AnyFolder::ScBert(Box::new(crate::scbert::ScBertFolder::open(dir, w)?)),
        // cells are CellPLM's tokens: its folder is `crate::cellplm::CellPlmFolder`, run by the
        // set-wise paths of embed, finetune and annotate
        Family::CellPlm => {
            return Err(ModelError::file(
                dir,
                "a CellPLM folder ({prefix}.config.json + {prefix}.best.ckpt): `scllm embed`, \
                 `finetune` and `annotate` run CellPLM; this command does not support it yet",
            ))
        }
    })
}

/// `weights` if given (it must exist), else the first of `names` in `dir`; the error is kept
/// for [`ModelFolder::weights`] when the folder has none.
pub fn weights_file(
    dir: &Path,
    weights: Option<&Path>,
    names: &[&str],
) -> Result<std::result::Result<PathBuf, String>> {
    if let Some(w) = weights {
        if !w.is_file() {
            return Err(ModelError::file(w, "no such weights file"));
        }
        return Ok(Ok(w.to_path_buf()));
    }
    Ok(names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no weights found (expected one of {})", names.join(", "))))
}

/// The weights path of a folder, or the error [`weights_file`] kept.
pub(crate) fn weights_of<'a>(
    dir: &Path,
    w: &'a std::result::Result<PathBuf, String>,
) -> Result<&'a Path> {
    w.as_deref().map_err(|m| ModelError::file(dir, m.clone()))
}
