//! The one interface every model family implements, and the input it takes.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use crate::error::Result;
use crate::family::Family;
use crate::nn::{Linear, Precision};
use crate::params::{Layout, ParamVisitor, Part};
use crate::peft::config::PeftState;
use crate::peft::sites::Sites;

/// Host-side inputs of one right-padded batch of token sequences, row-major `[batch, seq_len]`:
/// token ids, a value per token (scGPT's binned expression; families that read only tokens
/// ignore it) and the padding.
pub struct BatchInput<'a> {
    pub batch: usize,
    pub seq_len: usize,
    pub genes: &'a [i64],
    pub values: &'a [f32],
    /// `true` at padded positions.
    pub padding: &'a [bool],
}

impl<'a> BatchInput<'a> {
    /// The model input of a padded batch (`scllm_tokenize::pad_batch`).
    pub fn of(b: &'a scllm_tokenize::Batch) -> Self {
        BatchInput {
            batch: b.size(),
            seq_len: b.seq_len,
            genes: &b.genes,
            values: &b.values,
            padding: &b.padding,
        }
    }

    /// Each cell's real length, when the batch is right-padded.
    pub fn lengths(&self) -> Option<Vec<usize>> {
        crate::nn::right_padded_lengths(self.padding, self.batch, self.seq_len)
    }
}

/// Logits and the cell representation the classifier read, for one batch.
pub struct Classified {
    /// `[B, n_classes]`
    pub logits: Tensor<2>,
    /// `[B, d]`
    pub cell_emb: Tensor<2>,
}

/// How a cell embedding is read off the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The first position (`<cls>` where the family has one).
    Cls,
    /// The mean over the cell's real tokens (special tokens excluded as the family defines).
    Mean,
}

/// Which layer and pooling give a cell embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingSpec {
    pub pooling: Pooling,
    /// 0: the last layer's output; -k: the output k layers before it (Geneformer's `emb_layer`:
    /// -1, its default, is the second-to-last layer).
    pub layer: i32,
}

/// A model of one family: what import, export, the load report, adapters and parameter counts
/// need from it. A family implements it once, in its own folder.
pub trait CellModel: Module + Clone + Send + Sync + std::fmt::Debug + Sized + 'static {
    fn family(&self) -> Family;

    /// Pair every parameter with its state-dict key (the reference's names, PyTorch layout) and
    /// its [`crate::params::Part`]. This is the whole mapping between checkpoints and the model.
    fn visit_params<V: ParamVisitor>(&mut self, v: &mut V);

    /// Where adapters attach (the family's target map).
    fn sites(&mut self) -> Sites<'_>;

    /// The adapter strategy attached by [`crate::peft::attach()`] (`None`: the plain model).
    fn peft_state(&self) -> Option<&PeftState>;
    fn set_peft_state(&mut self, state: Option<PeftState>);

    /// Width of the hidden states.
    fn d_model(&self) -> usize;
    /// Encoder layers.
    fn n_layers(&self) -> usize;
    /// Classes of the classifier head (0: none).
    fn n_classes(&self) -> usize;
    /// A freshly initialised classifier head for `n` classes (the family's reference head).
    fn set_head(&mut self, n: usize, dev: &Device);

    /// Converts every linear layer's weights once for inference in `precision`
    /// ([`crate::nn::precision`]); f32 drops the converted copies. The parameters stay as
    /// loaded (training, saving and the load report see f32).
    fn set_precision(&mut self, precision: Precision) {
        struct SetPrecision(Precision);
        impl ParamVisitor for SetPrecision {
            fn param<const D: usize>(
                &mut self,
                _: &str,
                _: Part,
                _: Layout,
                _: &mut Param<Tensor<D>>,
            ) {
            }
            fn linear_layer(&mut self, _: &str, m: &mut Linear) {
                m.set_precision(self.0);
            }
        }
        self.visit_params(&mut SetPrecision(precision));
    }
}

/// A family whose cells are token sequences (scGPT, Geneformer, scBERT): what the embedder, the
/// mini-batch trainer and prediction need on top of [`CellModel`]. CellPLM, whose tokens are
/// whole cells attending to each other in sets, implements [`CellModel`] only and has its own
/// set-wise paths (`crate::cellplm`).
pub trait TokenModel: CellModel {
    /// Cell embeddings `[B, d]` of a batch on the inference device, read as `spec` says; a
    /// family refuses a spec it cannot give.
    fn embed(&self, batch: &BatchInput, spec: &EmbeddingSpec, dev: &Device) -> Result<Tensor<2>>;

    /// Class logits and the representation the head reads (training on an autodiff device,
    /// prediction on a plain one).
    fn classify(&self, batch: &BatchInput, dev: &Device) -> Result<Classified>;

    /// Floating-point operations of [`Self::embed`] with `spec` on a `[b, l]` batch
    /// (multiply-add = 2), for throughput reports.
    fn embed_flops(&self, b: usize, l: usize, spec: &EmbeddingSpec) -> f64;
}
