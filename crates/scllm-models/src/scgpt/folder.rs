//! A scGPT model folder as released: `args.json`, `vocab.json` and the weights.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use scllm_io::{AnnData, DataFrame};
use scllm_tokenize::scgpt::ScGptPrep;
use scllm_tokenize::{GeneMatch, GeneVocab, PrepOptions, Prepared, RowTokenizer};

use super::config::{ScGptBuild, ScGptConfig};
use super::model::ScGpt;
use super::params::canonical_key;
use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::folder::{weights_file, weights_of, EmbeddingDefaults, ModelFolder, TokenOptions};
use crate::weights::{Checkpoint, LoadReport};

/// Weights file names of a scGPT folder, in the order they are looked for.
const WEIGHTS: [&str; 4] = [
    "best_model.pt",
    "model.safetensors",
    "best_model.safetensors",
    "model.pt",
];

/// A released scGPT model folder: `args.json`, `vocab.json` (the specials `<pad>`, `<cls>`,
/// `<eoc>` appended when missing, as `embed_data` does), and the weights (`best_model.pt`, or
/// `model.safetensors` / `best_model.safetensors`).
pub struct ScGptFolder {
    pub dir: PathBuf,
    pub config: ScGptConfig,
    pub vocab: GeneVocab,
    /// The weights file, or why there is none (see [`ModelFolder::weights`]).
    pub weights: std::result::Result<PathBuf, String>,
}

impl ScGptFolder {
    /// Read `dir`; `weights`: a weights file other than the folder's own.
    pub fn open(dir: &Path, weights: Option<&Path>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::file(dir, "not a model folder (expected the released scGPT folder with best_model.pt, vocab.json, args.json)"));
        }
        let config = ScGptConfig::from_json_file(dir.join("args.json"))?;
        let mut vocab = GeneVocab::from_json_file(dir.join("vocab.json"))?;
        vocab.append_missing(&[config.pad_token.as_str(), "<cls>", "<eoc>"]);
        vocab.special(&config.pad_token)?;
        Ok(ScGptFolder {
            dir: dir.to_path_buf(),
            config,
            vocab,
            weights: weights_file(dir, weights, &WEIGHTS)?,
        })
    }

    /// The model's shape beyond `args.json`: a classifier of `n_cls` classes, and MVC with the
    /// pretraining heads (as `embed_data` builds it) when there is no classifier (the
    /// annotation tutorial builds `do_mvc=False`).
    pub fn build_args(&self, n_cls: usize, do_mvc: bool) -> Result<ScGptBuild> {
        Ok(ScGptBuild {
            ntoken: self.vocab.len(),
            pad_id: self.vocab.special(&self.config.pad_token)? as usize,
            n_cls,
            do_mvc,
        })
    }

    /// The tokenizer of `embed_data` (docs/models/scgpt.md §6) for a file whose genes matched as
    /// `genes`: expressed genes binned per cell into `n_bins`, `<cls>` first with value
    /// `pad_value`, at most `max_len` tokens (genes sampled, seeded per cell from `seed`).
    pub fn embed_tokenizer_with(
        &self,
        genes: &GeneMatch,
        max_len: usize,
        seed: u64,
    ) -> Result<scllm_tokenize::Tokenizer> {
        embed_tokenizer(&self.config, &self.vocab, genes, max_len, seed)
    }
}

impl ModelFolder for ScGptFolder {
    type Model = ScGpt;

    fn family(&self) -> Family {
        Family::ScGpt
    }
    fn dir(&self) -> &Path {
        &self.dir
    }
    fn weights(&self) -> Result<&Path> {
        weights_of(&self.dir, &self.weights)
    }
    fn n_layers(&self) -> usize {
        self.config.nlayers
    }
    fn planned_params(&self) -> u64 {
        let c = &self.config;
        let (v, d, h, l) = (
            self.vocab.len() as u64,
            c.embsize as u64,
            c.d_hid as u64,
            c.nlayers as u64,
        );
        // gene embedding, then per layer the attention (4 d²) and the feed-forward (2 d·d_hid)
        v.saturating_mul(d).saturating_add(
            l.saturating_mul(
                4u64.saturating_mul(d)
                    .saturating_mul(d)
                    .saturating_add(2u64.saturating_mul(d).saturating_mul(h)),
            ),
        )
    }
    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "scGPT: {} layers, d {}, {} heads, vocabulary {}",
            c.nlayers,
            c.embsize,
            c.nheads,
            self.vocab.len()
        )
    }
    fn base_args(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "embsize": c.embsize, "nheads": c.nheads, "d_hid": c.d_hid, "nlayers": c.nlayers,
            "n_layers_cls": c.n_layers_cls, "ntoken": self.vocab.len(), "dropout": c.dropout,
        })
    }
    fn build(&self, n_cls: usize, dev: &Device) -> Result<ScGpt> {
        ScGpt::new(&self.config, &self.build_args(n_cls, n_cls == 0)?, dev)
    }
    fn checkpoint(&self) -> Result<Checkpoint> {
        Checkpoint::open_with(self.weights()?, &canonical_key)
    }
    fn match_genes(
        &self,
        var: &DataFrame,
        gene_col: Option<&str>,
        file: &Path,
    ) -> Result<GeneMatch> {
        Ok(scllm_tokenize::match_genes(
            var,
            &self.vocab,
            gene_col,
            file,
        )?)
    }
    fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token)
    }
    fn token(&self, id: u32) -> Option<String> {
        self.vocab.token(id).map(str::to_string)
    }
    fn prepare_cells(&self, adata: &AnnData, file: &Path, opts: &PrepOptions) -> Result<Prepared> {
        let prep = ScGptPrep {
            n_bins: self.config.n_bins,
            pad_value: self.config.pad_value as f32,
            pad_token: self.config.pad_token.clone(),
        };
        Ok(scllm_tokenize::scgpt::prepare_cells(
            adata,
            file,
            &self.vocab,
            &prep,
            opts,
        )?)
    }
    fn embed_tokenizer(
        &self,
        genes: &GeneMatch,
        opts: &TokenOptions,
    ) -> Result<Box<dyn RowTokenizer>> {
        let max_len = opts.max_len.unwrap_or(self.config.max_seq_len);
        if max_len < 2 {
            return Err(ModelError::Invalid(
                "--max-len must be at least 2 (<cls> and one gene)".into(),
            ));
        }
        Ok(Box::new(
            self.embed_tokenizer_with(genes, max_len, opts.seed)?,
        ))
    }
    fn max_len(&self) -> usize {
        self.config.max_seq_len
    }
    fn finetune_max_len(&self) -> usize {
        2001
    }
    fn embedding(&self) -> EmbeddingDefaults {
        EmbeddingDefaults {
            spec: super::EMBEDDING,
            normalize: true,
            obsm_key: "X_scGPT",
        }
    }
}

/// `embed_data`'s tokenizer for the model of `cfg` and `vocab`.
fn embed_tokenizer(
    cfg: &ScGptConfig,
    vocab: &GeneVocab,
    genes: &GeneMatch,
    max_len: usize,
    seed: u64,
) -> Result<scllm_tokenize::Tokenizer> {
    let mut tc = scllm_tokenize::TokenizerConfig::embedding(max_len, cfg.n_bins, seed);
    tc.cls_value = cfg.pad_value as f32;
    tc.pad_value = cfg.pad_value as f32;
    Ok(scllm_tokenize::Tokenizer::new(
        tc,
        genes,
        vocab,
        "<cls>",
        &cfg.pad_token,
    )?)
}

/// A scGPT folder with its model loaded (what tests and benchmarks reach for).
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

/// The weights file of a scGPT model folder.
pub fn find_weights(dir: &Path) -> Result<PathBuf> {
    weights_file(dir, None, &WEIGHTS)?.map_err(|m| ModelError::file(dir, m))
}

impl ScGptModel {
    pub fn load(dir: impl AsRef<Path>, opts: &LoadOptions, device: &Device) -> Result<Self> {
        let f = ScGptFolder::open(dir.as_ref(), opts.weights.as_deref())?;
        let mut model = ScGpt::new(&f.config, &f.build_args(opts.n_cls, opts.do_mvc)?, device)?;
        let report = crate::weights::load_into(&mut model, &f.checkpoint()?, opts.strict, device)?;
        Ok(ScGptModel {
            dir: f.dir,
            config: f.config,
            vocab: f.vocab,
            model,
            report,
            device: device.clone(),
        })
    }

    /// [`ScGptFolder::embed_tokenizer_with`] of this model's folder.
    pub fn embed_tokenizer(
        &self,
        genes: &GeneMatch,
        max_len: usize,
        seed: u64,
    ) -> Result<scllm_tokenize::Tokenizer> {
        embed_tokenizer(&self.config, &self.vocab, genes, max_len, seed)
    }
}
