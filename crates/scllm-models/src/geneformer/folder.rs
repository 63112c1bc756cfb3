//! A Geneformer model folder as Hugging Face holds it: `config.json`, `model.safetensors` or
//! `pytorch_model.bin`, and Geneformer's dictionaries (V1: `token_dictionary.pkl`,
//! `gene_median_dictionary.pkl`; V2: the `*_gc104M.pkl` set), found in the folder, given in
//! another folder, or the bundled V1 pair.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use scllm_io::{AnnData, DataFrame};
use scllm_tokenize::geneformer::{Dictionaries, DictionaryFiles, Series};
use scllm_tokenize::{GeneMatch, PrepOptions, Prepared, RowTokenizer};

use super::config::BertConfig;
use super::model::Geneformer;
use super::params::canonical_key;
use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::folder::{weights_file, weights_of, EmbeddingDefaults, ModelFolder, TokenOptions};
use crate::model::{EmbeddingSpec, Pooling};
use crate::weights::Checkpoint;

/// Weights file names, in the order they are looked for.
const WEIGHTS: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

pub struct GeneformerFolder {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub dictionaries: Dictionaries,
    /// The weights file, or why there is none (see [`ModelFolder::weights`]).
    pub weights: std::result::Result<PathBuf, String>,
}

impl GeneformerFolder {
    /// Read `dir`; `weights`: a weights file other than the folder's own; `dictionaries`: a
    /// folder holding Geneformer's dictionary pickles (default: `dir`, else the bundled V1 set).
    pub fn open(dir: &Path, weights: Option<&Path>, dictionaries: Option<&Path>) -> Result<Self> {
        let config = BertConfig::from_json_file(dir.join("config.json"))?;
        let weights = weights_file(dir, weights, &WEIGHTS)?;
        let files = DictionaryFiles::find(dictionaries.unwrap_or(dir));
        let dictionaries = Dictionaries::load(&files, dir)?;
        if dictionaries.vocab_size() != config.vocab_size {
            return Err(ModelError::file(
                dir,
                format!(
                    "the token dictionary ({}) has {} tokens, but config.json's vocab_size is {}: \
                     the dictionaries are not the ones this model was trained with (a V2 dictionary \
                     with a V1 checkpoint, or the reverse?). Put the model's own dictionaries in the \
                     folder or name their folder with --dictionaries",
                    dictionaries.source,
                    dictionaries.vocab_size(),
                    config.vocab_size
                ),
            ));
        }
        Ok(GeneformerFolder {
            dir: dir.to_path_buf(),
            config,
            dictionaries,
            weights,
        })
    }

    pub fn series(&self) -> Series {
        self.dictionaries.series
    }
}

impl ModelFolder for GeneformerFolder {
    type Model = Geneformer;

    fn family(&self) -> Family {
        Family::Geneformer
    }
    fn dir(&self) -> &Path {
        &self.dir
    }
    fn weights(&self) -> Result<&Path> {
        weights_of(&self.dir, &self.weights)
    }
    fn n_layers(&self) -> usize {
        self.config.num_hidden_layers
    }
    fn planned_params(&self) -> u64 {
        let c = &self.config;
        let (h, i, l) = (
            c.hidden_size as u64,
            c.intermediate_size as u64,
            c.num_hidden_layers as u64,
        );
        let tables = (c.vocab_size as u64).saturating_add(c.max_position_embeddings as u64);
        // token and position tables, then per layer the attention (4 h²) and the feed-forward
        tables.saturating_mul(h).saturating_add(
            l.saturating_mul(
                4u64.saturating_mul(h)
                    .saturating_mul(h)
                    .saturating_add(2u64.saturating_mul(h).saturating_mul(i)),
            ),
        )
    }
    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "Geneformer {:?}: {} layers, d {}, {} heads, vocabulary {} ({})",
            self.series(),
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.vocab_size,
            self.dictionaries.source
        )
    }
    fn base_args(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads, "intermediate_size": c.intermediate_size,
            "vocab_size": c.vocab_size, "series": self.series(),
        })
    }
    fn build(&self, n_cls: usize, dev: &Device) -> Result<Geneformer> {
        Geneformer::new(&self.config, n_cls, self.series() == Series::V2, dev)
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
        Ok(self.dictionaries.match_genes(var, gene_col, file)?)
    }
    fn token_id(&self, token: &str) -> Option<u32> {
        self.dictionaries.token_ids.get(token).copied()
    }
    fn token(&self, id: u32) -> Option<String> {
        self.dictionaries.token(id).map(str::to_string)
    }
    fn prepare_cells(&self, adata: &AnnData, file: &Path, opts: &PrepOptions) -> Result<Prepared> {
        let mut o = opts.clone();
        o.max_len = o.max_len.min(self.max_len());
        Ok(self.dictionaries.prepare_cells(adata, file, &o)?)
    }
    fn embed_tokenizer(
        &self,
        genes: &GeneMatch,
        opts: &TokenOptions,
    ) -> Result<Box<dyn RowTokenizer>> {
        let max_len = opts.max_len.unwrap_or(self.max_len()).min(self.max_len());
        Ok(Box::new(self.dictionaries.tokenizer(genes, Some(max_len))?))
    }
    fn embedding(&self) -> EmbeddingDefaults {
        // EmbExtractor's defaults: emb_layer -1 (the second-to-last layer); the mean over the
        // cell's genes for V1 (it has no <cls>), <cls> for V2 (the current package's default)
        let pooling = match self.series() {
            Series::V1 => Pooling::Mean,
            Series::V2 => Pooling::Cls,
        };
        EmbeddingDefaults {
            spec: EmbeddingSpec { pooling, layer: -1 },
            normalize: false,
            obsm_key: "X_geneformer",
        }
    }
    fn max_len(&self) -> usize {
        self.series()
            .model_input_size()
            .min(self.config.max_position_embeddings)
    }
    fn totals_column(&self) -> Option<&'static str> {
        Some("n_counts")
    }
}
