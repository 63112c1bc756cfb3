//! scBERT's `PerformerLM` on burn (docs/models/scbert.md §2): token embedding of the bins plus
//! the frozen gene2vec table by position, pre-LN Performer layers with FAVOR+ attention
//! ([`super::favor`]), the final LayerNorm, and either the pretraining output layer or
//! `finetune.py`'s classifier head (§3.1). Modules are named after the state-dict keys (paired
//! with them in `params.rs`); adapters sit in the slots `sites.rs` names.

use burn::module::{Module, Param};
use burn::nn::{Dropout, Embedding, EmbeddingConfig, Initializer, LayerNorm};

use crate::nn::Linear;
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::config::ScBertConfig;
use super::favor::{favor_attention, gaussian_orthogonal};
use super::favor_flex::favor_flex;
use crate::error::{ModelError, Result};
use crate::model::BatchInput;
use crate::nn::{self, is_training};
use crate::peft::{Adapter, LayerAdapters, LoraLinear, PeftState};

/// `finetune.py`'s `Identity` head widths: `fc1` 512 (a literal there), `h_dim=128`.
pub const HEAD_HIDDEN: (usize, usize) = (512, 128);

/// `nn.LayerNorm`'s default epsilon.
const LN_EPS: f64 = 1e-5;

/// `performer.net.layers.{i}.0`: `PreLayerNorm(SelfAttention)`.
#[derive(Module, Debug)]
pub struct PerformerAttention {
    /// `.0.norm`
    pub norm: LayerNorm,
    /// `.0.fn.to_q` (no bias: `qkv_bias=False`)
    pub to_q: LoraLinear,
    pub to_k: Linear,
    pub to_v: LoraLinear,
    pub to_out: Linear,
    /// `.0.fn.fast_attention.projection_matrix` `[m, dim_head]`: a buffer of the reference,
    /// stored in the checkpoint, never trained (and never redrawn here).
    pub projection_matrix: Param<Tensor<2>>,
    pub heads: usize,
    /// Dropout 0 (the reference's `attn_dropout`); carries the module's training flag.
    pub dropout: Dropout,
}

/// `performer.net.layers.{i}.1`: `PreLayerNorm(Chunk(FeedForward))`.
#[derive(Module, Debug)]
pub struct PerformerFeedForward {
    /// `.1.norm`
    pub norm: LayerNorm,
    /// `.1.fn.fn.w1`
    pub w1: Linear,
    /// `.1.fn.fn.w2`
    pub w2: Linear,
}

/// One Performer layer: `h + Attn(LN(h))`, then `h + FF(LN(h))`.
#[derive(Module, Debug)]
pub struct PerformerLayer {
    pub attention: PerformerAttention,
    pub feed_forward: PerformerFeedForward,
    /// Encoder-prompt adapters: a skip adapter on the attention branch's output, an adapter
    /// parallel to the feed-forward block fed the block's normed input (scllm's placement on a
    /// pre-LN layer; docs/models/scbert.md §4).
    pub adapters: LayerAdapters,
}

/// `finetune.py`'s `Identity` head (it replaces `to_out`): `conv1 = Conv2d(1, 1, (1, dim))` over
/// each position of the normed encodings, ReLU, then `fc1` (positions → 512), ReLU, `fc2`
/// (→ 128), ReLU, `fc3` (→ classes); its dropouts are 0.
#[derive(Module, Debug)]
pub struct ClassifierHead {
    /// `to_out.conv1.weight` `[1, 1, 1, dim]`
    pub conv1_weight: Param<Tensor<4>>,
    /// `to_out.conv1.bias` `[1]`
    pub conv1_bias: Param<Tensor<1>>,
    pub fc1: Linear,
    pub fc2: Linear,
    pub fc3: Linear,
}

/// scBERT's `PerformerLM`.
#[derive(Module, Debug)]
pub struct ScBert {
    /// `token_emb`: one row per bin value.
    pub token_emb: Embedding,
    /// `pos_emb.emb.weight` `[max_seq_len, dim]`: the frozen gene2vec table (float64 in the
    /// checkpoint, held as f32 here; §7).
    pub pos_emb: Param<Tensor<2>>,
    /// Gene token prompt: a skip adapter on the embedding sum (scPEFT's `Space_Adapter`).
    pub token_adapter: Option<Adapter>,
    /// `performer.net.layers`
    pub layers: Vec<PerformerLayer>,
    /// `norm`: the final LayerNorm.
    pub norm: LayerNorm,
    /// `to_out`: the pretraining output layer (dim → num_tokens), on a model without a
    /// classifier.
    pub to_out: Option<Linear>,
    /// `to_out` of a fine-tuned model: the classifier head.
    pub classifier: Option<ClassifierHead>,
    /// Widths of a new classifier head's `fc1` and `fc2`.
    pub head_hidden: (usize, usize),
    #[module(skip)]
    pub peft: Option<PeftState>,
}

impl ClassifierHead {
    /// PyTorch's default init (kaiming-uniform a=√5, bias U(±1/√fan_in)) for every layer.
    pub fn new(
        dim: usize,
        positions: usize,
        hidden: (usize, usize),
        n: usize,
        dev: &Device,
    ) -> Self {
        let bound = 1.0 / (dim as f64).sqrt();
        let u = Distribution::Uniform(-bound, bound);
        ClassifierHead {
            conv1_weight: Param::from_tensor(Tensor::random([1, 1, 1, dim], u, dev)),
            conv1_bias: Param::from_tensor(Tensor::random([1], u, dev)),
            fc1: nn::linear(positions, hidden.0, true, dev),
            fc2: nn::linear(hidden.0, hidden.1, true, dev),
            fc3: nn::linear(hidden.1, n, true, dev),
        }
    }

    /// Logits `[B, n]` of the normed encodings `[B, L, dim]` (L must be `fc1`'s input width).
    pub fn forward(&self, enc: Tensor<3>) -> Tensor<2> {
        let [b, l, d] = enc.dims();
        let w = self.conv1_weight.val().reshape([d, 1]);
        let x = enc.reshape([b * l, d]).matmul(w) + self.conv1_bias.val().reshape([1, 1]);
        let x = relu(x).reshape([b, l]);
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }

    pub fn n_classes(&self) -> usize {
        self.fc3.weight.lazy_shape()[1]
    }

    /// Positions `fc1` reads.
    pub fn positions(&self) -> usize {
        self.fc1.weight.lazy_shape()[0]
    }
}

impl PerformerAttention {
    /// `to_out(FAVOR+(to_q(x'), to_k(x'), to_v(x')))`, `x' = LN(x)`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let training = is_training(&self.dropout, &x);
        let x = self.norm.forward(x);
        let [b, n, _] = x.dims();
        let h = self.heads;
        let q = self.to_q.forward(x.clone(), training);
        let k = self.to_k.forward(x.clone());
        let v = self.to_v.forward(x, training);
        let inner = q.dims()[2];
        let p = self.projection_matrix.val();
        // inference on flex: the blocked kernel; training and other backends: burn's ops
        if let Some(out) = favor_flex(&q, &k, &v, &p, h) {
            return self.to_out.forward(out);
        }
        let dh = inner / h;
        let split = |t: Tensor<3>| t.reshape([b, n, h, dh]).swap_dims(1, 2);
        let out = favor_attention(split(q), split(k), split(v), p);
        self.to_out
            .forward(out.swap_dims(1, 2).reshape([b, n, inner]))
    }
}

impl PerformerLayer {
    fn forward(&self, h: Tensor<3>) -> Tensor<3> {
        let a = self
            .adapters
            .after_attention(self.attention.forward(h.clone()));
        let h = h + a;
        let f = &self.feed_forward;
        let u = f.norm.forward(h.clone());
        let y = f.w2.forward(gelu(f.w1.forward(u.clone())));
        h + self.adapters.add_parallel(y, u)
    }
}

impl ScBert {
    /// A randomly initialised model of `cfg`'s shape (PyTorch's default inits; the gene2vec
    /// table N(0, 1) with the last row zero, the projections Gaussian orthogonal as the
    /// reference draws them) with a classifier of `n_cls` classes whose hidden widths are
    /// `head_hidden` (0 classes: the pretraining output layer instead).
    pub fn new(
        cfg: &ScBertConfig,
        n_cls: usize,
        head_hidden: (usize, usize),
        dev: &Device,
    ) -> Result<Self> {
        cfg.validate().map_err(ModelError::Invalid)?;
        let (d, inner) = (cfg.dim, cfg.inner_dim());
        let ff = d * cfg.ff_mult();
        let layers = (0..cfg.depth)
            .map(|_| PerformerLayer {
                attention: PerformerAttention {
                    norm: nn::layer_norm(d, LN_EPS, dev),
                    to_q: LoraLinear::new(nn::linear(d, inner, false, dev)),
                    to_k: nn::linear(d, inner, false, dev),
                    to_v: LoraLinear::new(nn::linear(d, inner, false, dev)),
                    to_out: nn::linear(inner, d, true, dev),
                    projection_matrix: Param::from_tensor(gaussian_orthogonal(
                        cfg.nb_features(),
                        cfg.dim_head,
                        dev,
                    ))
                    .set_require_grad(false),
                    heads: cfg.heads,
                    dropout: nn::dropout(0.0),
                },
                feed_forward: PerformerFeedForward {
                    norm: nn::layer_norm(d, LN_EPS, dev),
                    w1: nn::linear(d, ff, true, dev),
                    w2: nn::linear(ff, d, true, dev),
                },
                adapters: LayerAdapters::none(),
            })
            .collect();
        let n = cfg.max_seq_len;
        let pos = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), dev)
            .slice_assign([n - 1..n, 0..d], Tensor::zeros([1, d], dev));
        let mut m = ScBert {
            token_emb: EmbeddingConfig::new(cfg.num_tokens, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 1.0,
                })
                .init(dev),
            pos_emb: Param::from_tensor(pos).set_require_grad(false),
            token_adapter: None,
            layers,
            norm: nn::layer_norm(d, LN_EPS, dev),
            to_out: Some(nn::linear(d, cfg.num_tokens, true, dev)),
            classifier: None,
            head_hidden,
            peft: None,
        };
        if n_cls > 0 {
            m.new_head(n_cls, dev);
        }
        Ok(m)
    }

    /// `finetune.py`'s head for `n` classes, freshly initialised, in place of `to_out`.
    pub fn new_head(&mut self, n: usize, dev: &Device) {
        self.classifier = Some(ClassifierHead::new(
            self.d_model(),
            self.positions(),
            self.head_hidden,
            n,
            dev,
        ));
        self.to_out = None;
    }

    pub fn d_model(&self) -> usize {
        self.norm.gamma.lazy_shape()[0]
    }

    /// `max_seq_len`: the rows of the gene2vec table.
    pub fn positions(&self) -> usize {
        self.pos_emb.lazy_shape()[0]
    }

    pub fn num_tokens(&self) -> usize {
        self.token_emb.weight.lazy_shape()[0]
    }

    /// The bins of a batch as a device tensor `[B, L]`, refused when the batch is padded, longer
    /// than the model's positions, or holds a value that is not a token.
    pub fn inputs(&self, b: &BatchInput, dev: &Device) -> Result<Tensor<2, Int>> {
        let (n, l) = (b.batch, b.seq_len);
        if b.padding.iter().any(|&p| p) {
            return Err(ModelError::Invalid(
                "scBERT reads every cell at its full panel length: a padded batch is not an input"
                    .into(),
            ));
        }
        if l > self.positions() {
            return Err(ModelError::Invalid(format!(
                "a cell of {l} tokens is longer than the model's {} positions",
                self.positions()
            )));
        }
        let nt = self.num_tokens() as i64;
        if let Some(&t) = b.genes.iter().find(|&&t| t < 0 || t >= nt) {
            return Err(ModelError::Invalid(format!(
                "token value {t} is not one of the model's {nt} tokens (bins 0..{})",
                nt - 2
            )));
        }
        Ok(Tensor::from_data(
            TensorData::new(b.genes.to_vec(), [n, l]),
            dev,
        ))
    }

    /// `token_emb(x) + pos_emb(arange(L))`, then the token adapter.
    pub fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let l = ids.dims()[1];
        let pos = self.pos_emb.val().narrow(0, 0, l).unsqueeze_dim::<3>(0);
        let h = self.token_emb.forward(ids) + pos;
        match &self.token_adapter {
            Some(a) => a.forward(h),
            None => h,
        }
    }

    /// The embedding output, then the output of each of the first `n` layers.
    pub fn hidden_states(&self, ids: Tensor<2, Int>, n: usize) -> Vec<Tensor<3>> {
        let mut out = vec![self.embed_tokens(ids)];
        for l in &self.layers[..n.min(self.layers.len())] {
            let h = l.forward(out.last().expect("one").clone());
            out.push(h);
        }
        out
    }

    /// The output of the first `n` layers `[B, L, d]`; with every layer, the final norm's output
    /// (`return_encodings=True`). Cells run one at a time, so no batch holds more than one
    /// cell's `[heads, L, m]` feature tensors.
    pub fn encode(&self, ids: Tensor<2, Int>, n: usize) -> Tensor<3> {
        let b = ids.dims()[0];
        let one = |ids: Tensor<2, Int>| {
            let mut h = self.embed_tokens(ids);
            for l in &self.layers[..n] {
                h = l.forward(h);
            }
            if n == self.layers.len() {
                h = self.norm.forward(h);
            }
            h
        };
        if b == 1 {
            return one(ids);
        }
        Tensor::cat(
            (0..b).map(|i| one(ids.clone().narrow(0, i, 1))).collect(),
            0,
        )
    }

    /// The mean over the panel positions (the appended last token excluded) of `h` `[B, L, d]`.
    pub fn panel_mean(h: Tensor<3>) -> Tensor<2> {
        let [b, l, d] = h.dims();
        h.narrow(1, 0, l - 1).mean_dim(1).reshape([b, d])
    }

    /// The cell embedding: the panel mean of the final norm's output (`layer` 0), or of the
    /// output of layer `depth + layer` (negative `layer`, no final norm).
    pub fn embedding(&self, b: &BatchInput, layer: i32, dev: &Device) -> Result<Tensor<2>> {
        let n = self.layers.len() as i64;
        let upto = n + layer as i64;
        if layer > 0 || upto < 0 {
            return Err(ModelError::Invalid(format!(
                "--emb-layer {layer} does not exist: 0 is the final norm's output after the \
                 model's {n} layers, -{n} the embedding sum"
            )));
        }
        if b.seq_len < 2 {
            return Err(ModelError::Invalid(
                "a scBERT cell needs its panel and the appended token".into(),
            ));
        }
        let ids = self.inputs(b, dev)?;
        Ok(Self::panel_mean(self.encode(ids, upto as usize)))
    }

    /// Class logits and the cell embedding (the panel mean of the encodings the head reads).
    pub fn classify_batch(&self, b: &BatchInput, dev: &Device) -> Result<(Tensor<2>, Tensor<2>)> {
        let head = self.classifier.as_ref().ok_or_else(|| {
            ModelError::Invalid(
                "the model has no classification head (finetune.py's Identity): build it with n_cls > 0"
                    .into(),
            )
        })?;
        if b.seq_len != head.positions() {
            return Err(ModelError::Invalid(format!(
                "the classifier reads {} positions (fc1), the cells have {}",
                head.positions(),
                b.seq_len
            )));
        }
        let ids = self.inputs(b, dev)?;
        let enc = self.encode(ids, self.layers.len());
        let emb = Self::panel_mean(enc.clone());
        Ok((head.forward(enc), emb))
    }

    /// Multiply-adds ×2 of one forward over `run` layers for `b` cells of `l` tokens.
    pub fn flops(&self, b: usize, l: usize, run: usize) -> f64 {
        let a = &self.layers[0].attention;
        let [m, dh] = a.projection_matrix.lazy_shape().dims::<2>();
        let inner = a.to_out.weight.lazy_shape()[0];
        let ff = self.layers[0].feed_forward.w1.weight.lazy_shape()[1] as f64;
        let (b, l, d) = (b as f64, l as f64, self.d_model() as f64);
        let (m, dh, inner, h) = (m as f64, dh as f64, inner as f64, a.heads as f64);
        let linear = 2.0 * b * l * (4.0 * d * inner + 2.0 * d * ff);
        // q' and k' projections, k'ᵀv, q'·context, q'·Σk'
        let favor = 2.0 * b * h * l * m * (4.0 * dh + 1.0);
        run as f64 * (linear + favor)
    }
}
