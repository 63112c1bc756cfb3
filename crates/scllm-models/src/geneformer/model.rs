//! Geneformer: Hugging Face's BERT (`BertForMaskedLM` / `BertForSequenceClassification`) on burn
//! (docs/models/geneformer.md §4-6). Post-LN layers; modules named after the state-dict keys
//! (paired with them in `params.rs`); the scPEFT adapters in the slots `sites.rs` names.

use burn::module::{Module, Param};
use burn::nn::{Dropout, Embedding, EmbeddingConfig, Initializer, LayerNorm, LinearConfig};

use crate::nn::Linear;
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::config::BertConfig;
use crate::error::{ModelError, Result};
use crate::model::{BatchInput, Pooling};
use crate::nn::EncoderBlock;
use crate::nn::{self, attend, drop, is_training, key_padding_mask, Queries};
use crate::peft::{has_prompts, run_layers, Adapter, LayerAdapters, LoraLinear, PeftState};

/// `bert.embeddings`: word + token type 0 + absolute position, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    /// `LayerNorm`
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// Gene token prompt: a skip adapter on the embedding output, after its LayerNorm.
    pub space_adapter: Option<Adapter>,
}

/// `attention.self`: separate query, key and value projections.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: LoraLinear,
    pub key: Linear,
    pub value: LoraLinear,
    pub heads: usize,
    /// `attention_probs_dropout_prob` (training only).
    pub dropout: Dropout,
}

/// `attention.output` / `output`: dense, dropout, LayerNorm of the residual sum.
#[derive(Module, Debug)]
pub struct BertOutput {
    pub dense: Linear,
    /// `LayerNorm`
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

/// `bert.encoder.layer.{i}`.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// `attention.self`
    pub attention: BertSelfAttention,
    /// `attention.output`
    pub attention_output: BertOutput,
    /// `intermediate.dense`
    pub intermediate: Linear,
    /// `output`
    pub output: BertOutput,
    /// `hidden_act`: GELU (exact) when set, ReLU otherwise (Geneformer's).
    pub gelu: bool,
    /// The scPEFT slots: after the attention block's LayerNorm, parallel to the feed-forward
    /// block, prefix prompts.
    pub adapters: LayerAdapters,
}

/// Geneformer: `bert.*`, and for classification `bert.pooler.dense` + `classifier`.
#[derive(Module, Debug)]
pub struct Geneformer {
    pub embeddings: BertEmbeddings,
    /// `bert.encoder.layer`
    pub layers: Vec<BertLayer>,
    /// `bert.pooler.dense` (tanh of position 0 of the last layer).
    pub pooler: Option<Linear>,
    /// `classifier`
    pub classifier: Option<Linear>,
    pub classifier_dropout: Dropout,
    /// Mean pooling leaves out the first and last token (V2's `<cls>` and `<eos>`).
    pub has_specials: bool,
    /// `initializer_range`, for a new head.
    pub init_std: f64,
    #[module(skip)]
    pub peft: Option<PeftState>,
}

/// Which encoder outputs a forward pass returns.
pub struct GeneformerOutput {
    /// `hidden_states`: the embedding output, then each layer's output (`[B, L, d]`).
    pub hidden_states: Vec<Tensor<3>>,
    /// Classifier logits, when the model has the head.
    pub logits: Option<Tensor<2>>,
}

/// `BertPreTrainedModel._init_weights`: weights N(0, `initializer_range`), biases zero.
fn linear(din: usize, dout: usize, std: f64, dev: &Device) -> Linear {
    let mut l = LinearConfig::new(din, dout)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(dev);
    l.bias = Some(Param::from_tensor(Tensor::zeros([dout], dev)));
    l.into()
}

/// Embeddings N(0, `initializer_range`), the padding row zero.
fn embedding(n: usize, d: usize, std: f64, pad: Option<usize>, dev: &Device) -> Embedding {
    let mut e = EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(dev);
    if let Some(p) = pad.filter(|&p| p < n) {
        let w = e
            .weight
            .val()
            .slice_assign([p..p + 1, 0..d], Tensor::zeros([1, d], dev));
        e.weight = Param::from_tensor(w);
    }
    e
}

impl Geneformer {
    /// A randomly initialised model of `cfg`'s shape (Hugging Face's BERT init) with a
    /// classifier of `n_cls` classes (0: none); `has_specials`: the token dictionary has
    /// `<cls>`/`<eos>` (V2).
    pub fn new(cfg: &BertConfig, n_cls: usize, has_specials: bool, dev: &Device) -> Result<Self> {
        cfg.validate().map_err(ModelError::Invalid)?;
        let d = cfg.hidden_size;
        let std = cfg.initializer_range;
        let eps = cfg.layer_norm_eps;
        let hp = cfg.hidden_dropout_prob;
        let out = |din: usize| BertOutput {
            dense: linear(din, d, std, dev),
            layer_norm: nn::layer_norm(d, eps, dev),
            dropout: nn::dropout(hp),
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertSelfAttention {
                    query: LoraLinear::new(linear(d, d, std, dev)),
                    key: linear(d, d, std, dev),
                    value: LoraLinear::new(linear(d, d, std, dev)),
                    heads: cfg.num_attention_heads,
                    dropout: nn::dropout(cfg.attention_probs_dropout_prob),
                },
                attention_output: out(d),
                intermediate: linear(d, cfg.intermediate_size, std, dev),
                output: out(cfg.intermediate_size),
                gelu: cfg.hidden_act == "gelu",
                adapters: LayerAdapters::none(),
            })
            .collect();
        let mut m = Geneformer {
            embeddings: BertEmbeddings {
                word_embeddings: embedding(cfg.vocab_size, d, std, cfg.pad_token_id, dev),
                position_embeddings: embedding(cfg.max_position_embeddings, d, std, None, dev),
                token_type_embeddings: embedding(cfg.type_vocab_size, d, std, None, dev),
                layer_norm: nn::layer_norm(d, eps, dev),
                dropout: nn::dropout(hp),
                space_adapter: None,
            },
            layers,
            pooler: None,
            classifier: None,
            classifier_dropout: nn::dropout(cfg.classifier_dropout.unwrap_or(hp)),
            has_specials,
            init_std: std,
            peft: None,
        };
        if n_cls > 0 {
            m.new_head(n_cls, dev);
        }
        Ok(m)
    }

    /// `BertForSequenceClassification`'s head, freshly initialised: the pooler and a linear
    /// classifier of `n` classes.
    pub fn new_head(&mut self, n: usize, dev: &Device) {
        let d = self.d_model();
        self.pooler = Some(linear(d, d, self.init_std, dev));
        self.classifier = Some(linear(d, n, self.init_std, dev));
    }

    pub fn d_model(&self) -> usize {
        self.embeddings.layer_norm.gamma.dims()[0]
    }

    fn max_positions(&self) -> usize {
        self.embeddings.position_embeddings.weight.dims()[0]
    }

    /// Device tensors for a host batch: token ids and the key-padding mask.
    pub fn inputs(
        &self,
        b: &BatchInput,
        dev: &Device,
    ) -> Result<(Tensor<2, Int>, Option<Tensor<4, Bool>>)> {
        let (n, l) = (b.batch, b.seq_len);
        if l > self.max_positions() {
            return Err(ModelError::Invalid(format!(
                "a cell of {l} tokens is longer than the model's {} positions",
                self.max_positions()
            )));
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(b.genes.to_vec(), [n, l]), dev);
        Ok((ids, key_padding_mask(b.padding, n, l, l, dev)))
    }

    /// The embedding output: `LN(word + token_type[0] + position)`, the token adapter, dropout.
    pub fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let e = &self.embeddings;
        let [b, l] = ids.dims();
        let dev = ids.device();
        let positions = Tensor::<1, Int>::arange(0..l as i64, &dev)
            .reshape([1, l])
            .expand([b, l]);
        let types = Tensor::<2, Int>::zeros([b, l], &dev);
        // Hugging Face's order: (word + token type) + position
        let h = e.word_embeddings.forward(ids) + e.token_type_embeddings.forward(types);
        let h = h + e.position_embeddings.forward(positions);
        let mut h = e.layer_norm.forward(h);
        if let Some(a) = &e.space_adapter {
            h = a.forward(h);
        }
        drop(&e.dropout, h)
    }

    /// `hidden_states` of the first `n_layers` layers (the embedding output first) and the
    /// classifier's logits when every layer ran and the model has the head.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask: Option<Tensor<4, Bool>>,
        n_layers: usize,
    ) -> GeneformerOutput {
        let h0 = self.embed_tokens(ids);
        let layers = &self.layers[..n_layers.min(self.layers.len())];
        let (last, outs) = run_layers(layers, h0.clone(), mask);
        let logits = (n_layers >= self.layers.len())
            .then(|| self.head(last.narrow(1, 0, 1).squeeze_dim::<2>(1)))
            .flatten();
        let mut hidden_states = vec![h0];
        hidden_states.extend(outs);
        GeneformerOutput {
            hidden_states,
            logits,
        }
    }

    /// Pooler and classifier on the last layer's position 0 `[B, d]`: `(pooled, logits)`.
    fn pool(&self, first: Tensor<2>) -> Option<(Tensor<2>, Tensor<2>)> {
        let (p, c) = (self.pooler.as_ref()?, self.classifier.as_ref()?);
        let pooled = p.forward(first).tanh();
        let logits = c.forward(drop(&self.classifier_dropout, pooled.clone()));
        Some((pooled, logits))
    }

    fn head(&self, first: Tensor<2>) -> Option<Tensor<2>> {
        self.pool(first).map(|(_, l)| l)
    }

    /// The output of the first `n` layers `[B, L, d]` on the inference path (padding skipped in
    /// attention on flex).
    fn encode(&self, b: &BatchInput, dev: &Device, n: usize) -> Result<Tensor<3>> {
        let (ids, mask) = self.inputs(b, dev)?;
        let mut h = self.embed_tokens(ids);
        let layers = &self.layers[..n];
        if has_prompts(&self.layers) {
            return Ok(run_layers(layers, h, mask).0);
        }
        let lengths = b.lengths();
        for l in layers {
            h = l.forward_cells(h, mask.clone(), lengths.as_deref());
        }
        Ok(h)
    }

    /// Position 0 of the last layer `[B, d]`; the last layer computes only that row.
    fn encode_first(&self, b: &BatchInput, dev: &Device) -> Result<Tensor<2>> {
        let n = self.layers.len();
        if has_prompts(&self.layers) {
            let (ids, mask) = self.inputs(b, dev)?;
            let h = run_layers(&self.layers, self.embed_tokens(ids), mask).0;
            return Ok(h.narrow(1, 0, 1).squeeze_dim::<2>(1));
        }
        let h = self.encode(b, dev, n - 1)?;
        let cls_mask = key_padding_mask(b.padding, b.batch, 1, b.seq_len, dev);
        let lengths = b.lengths();
        Ok(self.layers[n - 1].forward_first(h, cls_mask, lengths.as_deref()))
    }

    /// The cell embedding of `EmbExtractor`: layer `num_layers + layer` of `hidden_states`
    /// (`layer` 0: the last, -1: the second-to-last), pooled over the cell's tokens (`Mean`;
    /// V2 without `<cls>`/`<eos>`) or at position 0 (`Cls`, V2 only).
    pub fn embedding(
        &self,
        b: &BatchInput,
        pooling: Pooling,
        layer: i32,
        dev: &Device,
    ) -> Result<Tensor<2>> {
        let n = self.layers.len() as i64;
        let upto = n + layer as i64;
        if layer > 0 || upto < 0 {
            return Err(ModelError::Invalid(format!(
                "--emb-layer {layer} does not exist: 0 is the last of the model's {n} layers, -{n} the embedding output"
            )));
        }
        let upto = upto as usize;
        if pooling == Pooling::Cls && !self.has_specials {
            return Err(ModelError::Invalid(
                "--emb-mode cls needs a <cls> token, which V1 dictionaries lack (position 0 is the \
                 top-ranked gene); use --emb-mode cell (Geneformer's EmbExtractor switches to it \
                 with a warning)"
                    .into(),
            ));
        }
        if pooling == Pooling::Cls && upto == self.layers.len() && !has_prompts(&self.layers) {
            return self.encode_first(b, dev);
        }
        let h = self.encode(b, dev, upto)?;
        let [bn, l, d] = h.dims();
        if pooling == Pooling::Cls {
            return Ok(h.narrow(1, 0, 1).reshape([bn, d]));
        }
        // mean over the real tokens (without <cls> and <eos> where the dictionary has them):
        // a 0/1 weight row per cell, summed, then divided by the count, as
        // `mean_nonpadding_embs` does
        let lengths = b
            .lengths()
            .ok_or_else(|| ModelError::Invalid("cells must be right-padded".into()))?;
        let mut w = vec![0f32; bn * l];
        let mut counts = vec![0f32; bn];
        for (c, &len) in lengths.iter().enumerate() {
            let (from, to) = if self.has_specials {
                (1, len.saturating_sub(1))
            } else {
                (0, len)
            };
            for p in from..to.max(from) {
                w[c * l + p] = 1.0;
            }
            counts[c] = to.saturating_sub(from).max(1) as f32;
        }
        let dev = h.device();
        let w = Tensor::<3>::from_data(TensorData::new(w, [bn, 1, l]), &dev);
        let counts = Tensor::<2>::from_data(TensorData::new(counts, [bn, 1]), &dev);
        Ok(w.matmul(h).reshape([bn, d]) / counts)
    }

    /// Class logits and the pooled representation they read.
    pub fn classify_batch(&self, b: &BatchInput, dev: &Device) -> Result<(Tensor<2>, Tensor<2>)> {
        let no_head = || {
            ModelError::Invalid(
                "the model has no classification head (pooler + classifier): build it with n_cls > 0"
                    .into(),
            )
        };
        let first = if dev.is_autodiff() {
            let (ids, mask) = self.inputs(b, dev)?;
            let h = run_layers(&self.layers, self.embed_tokens(ids), mask).0;
            h.narrow(1, 0, 1).squeeze_dim::<2>(1)
        } else {
            self.encode_first(b, dev)?
        };
        let (pooled, logits) = self.pool(first).ok_or_else(no_head)?;
        Ok((logits, pooled))
    }
}

impl BertSelfAttention {
    fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        queries: Queries,
        lengths: Option<&[usize]>,
    ) -> Tensor<3> {
        let training = is_training(&self.dropout, &x);
        // Q, K and V side by side: the layout the shared attention reads
        let (q, k, v) = (&self.query.linear, &self.key, &self.value.linear);
        // (reduced precision: the three converted layers, each its own product)
        let plain =
            !training && self.query.lora.is_none() && self.value.lora.is_none() && q.low.is_none();
        let qkv = match (&q.bias, &k.bias, &v.bias) {
            // inference: one product with the three weights side by side (the input is read and
            // packed once, and the output needs no concatenation)
            (Some(bq), Some(bk), Some(bv)) if plain => {
                let w = Tensor::cat(vec![q.weight.val(), k.weight.val(), v.weight.val()], 1);
                let b = Tensor::cat(vec![bq.val(), bk.val(), bv.val()], 0);
                burn::tensor::module::linear(x, w, Some(b))
            }
            _ => Tensor::cat(
                vec![
                    self.query.forward(x.clone(), training),
                    self.key.forward(x.clone()),
                    self.value.forward(x, training),
                ],
                2,
            ),
        };
        let precision = self.query.linear.precision();
        attend(
            qkv,
            self.heads,
            mask,
            queries,
            lengths,
            &self.dropout,
            precision,
        )
    }
}

impl BertOutput {
    /// `LayerNorm(residual + dropout(dense(x)))`.
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm
            .forward(residual + drop(&self.dropout, self.dense.forward(x)))
    }
}

impl EncoderBlock for BertLayer {
    fn self_attention(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        queries: Queries,
        lengths: Option<&[usize]>,
    ) -> Tensor<3> {
        self.attention.forward(h, mask, queries, lengths)
    }

    /// The attention output block, the adapters, and the feed-forward block.
    fn after_attention(&self, h: Tensor<3>, a: Tensor<3>) -> Tensor<3> {
        let h = self
            .adapters
            .after_attention(self.attention_output.forward(a, h));
        let i = self.intermediate.forward(h.clone());
        let i = if self.gelu { gelu(i) } else { relu(i) };
        let y = self.output.forward(i, h.clone());
        self.adapters.add_parallel(y, h)
    }

    fn prompt_tokens(&self) -> Option<&Param<Tensor<3>>> {
        self.adapters.prompt.as_ref()
    }
}
