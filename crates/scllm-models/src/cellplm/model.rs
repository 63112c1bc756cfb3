//! CellPLM's `OmicsFormer` on burn (docs/models/cellplm.md §3, §4): the embedder's sparse product
//! with the gene table, Linear + ReLU + Dropout + GroupNorm, pre-LN Flowformer layers over the
//! cells of one set, the pre-latent LayerNorm, then either the GMVAE's mean with the cluster
//! taken as the argmax of its logits (the embedding, §7.4) or the annotation pipeline's `ae`
//! latent and MLP head (§4.2). Modules are named after the state-dict keys (paired with them in
//! `params.rs`); adapters sit in the slots `sites.rs` names. Dropout is active on an autodiff
//! device in training mode only, as everywhere in scllm.

use burn::module::{Module, Param};
use burn::nn::{Dropout, LayerNorm};

use crate::nn::Linear;
use burn::tensor::activation::{gelu, relu, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::decoder::{DecoderShape, GmvaePrior, NbDecoder};
use super::norm::{GroupNorm, GROUPS, NORM_EPS};
use crate::error::{ModelError, Result};
use crate::nn::{self, dropout::drop};
use crate::peft::{Adapter, LayerAdapters, LoraLinear, PeftState};

/// Flow-Attention's epsilon (`CellPLM/layer/flowformer.py`).
const FLOW_EPS: f64 = 1e-6;
/// `Flow_Attention`'s own output dropout (`drop_out=0.01`, never set by `FlowformerLayer`).
const ATTN_DROPOUT: f64 = 0.01;

/// `embedder`: `OmicsEmbeddingLayer` with the positional encoding off (`cat_pe=False`).
#[derive(Module, Debug)]
pub struct Embedder {
    /// `feat_enc.emb` `[n_genes, d]`
    pub gene_table: Param<Tensor<2>>,
    /// `extra_linear.0`
    pub extra_linear: Linear,
    /// `extra_linear.2`
    pub dropout: Dropout,
    /// `extra_linear.3`
    pub extra_norm: GroupNorm,
}

/// `encoder.layers.{i}.self_attn`: non-causal `Flow_Attention`.
#[derive(Module, Debug)]
pub struct FlowAttention {
    pub query: LoraLinear,
    pub key: Linear,
    pub value: LoraLinear,
    pub out: Linear,
    pub dropout: Dropout,
    pub heads: usize,
}

/// `encoder.layers.{i}`: a pre-LN `FlowformerLayer`.
#[derive(Module, Debug)]
pub struct FlowLayer {
    pub self_attn: FlowAttention,
    /// `_ff_block.0` and `_ff_block.3`; `_ff_block.2` and `.4` are dropouts of `model_dropout`.
    pub ff1: Linear,
    pub ff2: Linear,
    /// `dropout1` (after the attention) and the feed-forward block's two dropouts: one
    /// probability, `model_dropout`.
    pub dropout: Dropout,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    /// Encoder-prompt adapters: a skip adapter on the attention branch's output, an adapter
    /// parallel to the feed-forward block fed its normed input (as scBERT's pre-LN placement;
    /// docs/models/cellplm.md §7.6).
    pub adapters: LayerAdapters,
}

/// `latent.layers.1.inference` of the GMVAE, the parts the embedding reads:
/// `inference_qyx.0.logits`, `inference_qzyx.0`, `inference_qzyx.2.mu`.
#[derive(Module, Debug)]
pub struct GmvaeInference {
    pub cluster_logits: Linear,
    pub qzyx_hidden: Linear,
    pub qzyx_mu: Linear,
}

/// `head.mlp` of `AnnotationHead` with `dec_layers=1`: `[Dropout(model_dropout), Linear]`.
#[derive(Module, Debug)]
pub struct AnnotationHead {
    pub dropout: Dropout,
    /// `head.mlp.1`
    pub linear: Linear,
}

/// CellPLM's `OmicsFormer`, at the checkpoint's shape: the GMVAE latent (zero-shot embedding)
/// or the annotation pipeline's `ae` latent with its classifier head.
#[derive(Module, Debug)]
pub struct CellPlm {
    pub embedder: Embedder,
    /// Gene token prompt: a skip adapter on each cell's token (the embedder's output), the
    /// place where scGPT's sits on its token embedding.
    pub token_adapter: Option<Adapter>,
    /// `encoder.layers`
    pub layers: Vec<FlowLayer>,
    /// `pre_latent_norm.norm`
    pub pre_latent_norm: LayerNorm,
    /// `latent.layers.1` of a pretrained (`gmvae`) model.
    pub gmvae: Option<GmvaeInference>,
    /// `latent.layers.1.lat_2lat.0` of the annotation model (`latent_mod='ae'`): a Linear, no
    /// activation.
    pub lat_2lat: Option<Linear>,
    /// `head` of the annotation model.
    pub head: Option<AnnotationHead>,
    /// The GMVAE's variance and prior, for pretraining.
    pub gmvae_prior: Option<GmvaePrior>,
    /// `decoder`: the NB-MLP decoder, for pretraining.
    pub decoder: Option<NbDecoder>,
    /// `model_dropout`: the annotation pipeline sets 0.5.
    pub model_dropout: f64,
    #[module(skip)]
    pub peft: Option<PeftState>,
}

/// Every intermediate of one set's forward pass, `[N, ·]` each.
pub struct SetOutput {
    /// The embedder's output (after its GroupNorm).
    pub embedder: Tensor<2>,
    /// Each encoder layer's output.
    pub hidden: Vec<Tensor<2>>,
    /// The GMVAE's cluster logits.
    pub logits: Tensor<2>,
    /// The latent mean: the cell embedding.
    pub latent: Tensor<2>,
}

/// One set of cells as the embedder reads it: per cell, gene-table rows and `log1p` counts
/// (`scllm_tokenize::cellplm::CellPlmTokenizer`).
pub struct SetInput<'a> {
    pub genes: Vec<&'a [u32]>,
    pub values: Vec<&'a [f32]>,
}

/// The sizes a new model is built at.
#[derive(Clone, Debug)]
pub struct CellPlmShape {
    pub n_genes: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub heads: usize,
    pub ffn: usize,
    /// The GMVAE's clusters, hidden width and latent width (`None`: the `ae` latent).
    pub gmvae: Option<(usize, usize, usize)>,
    /// `post_latent_dim` of the `ae` latent.
    pub latent: usize,
    pub model_dropout: f64,
    /// The pretraining parts (GMVAE prior and decoder; needs `gmvae`).
    pub pretrain: Option<DecoderShape>,
}

/// The one-hot `[N, K]` of each row's argmax (the first of ties).
pub(crate) fn argmax_one_hot(logits: &Tensor<2>, dev: &Device) -> Result<Tensor<2>> {
    let [n, k] = logits.dims();
    let host: Vec<f32> = logits
        .clone()
        .detach()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
    let mut onehot = vec![0f32; n * k];
    for (c, row) in host.chunks_exact(k).enumerate() {
        let mut best = 0;
        for (j, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = j;
            }
        }
        onehot[c * k + best] = 1.0;
    }
    Ok(Tensor::from_data(TensorData::new(onehot, [n, k]), dev))
}

impl FlowAttention {
    /// `Flow_Attention.forward` over one set of `N` cells.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [n, d] = x.dims();
        let heads = self.heads;
        let dh = d / heads;
        let training = nn::is_training(&self.dropout, &x);
        let x3 = x.unsqueeze_dim::<3>(0);
        // [N, H, dh]: a reshape of the projections' contiguous [N, d], so the elementwise work
        // runs on contiguous memory; heads go to the front only for the two products
        let split = |t: Tensor<3>| t.reshape([n, heads, dh]);
        let q = sigmoid(split(self.query.forward(x3.clone(), training)));
        let k = sigmoid(split(self.key.forward(x3.clone())));
        let v = split(self.value.forward(x3, training));
        let e = FLOW_EPS;
        let qe = q.clone().add_scalar(e);
        let ke = k.clone().add_scalar(e);
        // incoming and outgoing flow, per query and per key: [N, H, 1]
        let sink_in = (qe.clone() * k.clone().sum_dim(0).add_scalar(e))
            .sum_dim(2)
            .recip();
        let source_out = (ke.clone() * q.clone().sum_dim(0).add_scalar(e))
            .sum_dim(2)
            .recip();
        // conservation refine
        let conserved_sink = (qe * (k.clone() * source_out).sum_dim(0).add_scalar(e)).sum_dim(2);
        let conserved_source = (ke * (q.clone() * sink_in.clone()).sum_dim(0).add_scalar(e))
            .sum_dim(2)
            .clamp(-1.0, 1.0);
        // competition and allocation (queries and keys are the same cells: L/S = 1); the
        // allocation scales each query row, so it is folded in before the product
        let allocation = sigmoid(conserved_sink);
        let competition = softmax(conserved_source, 0).mul_scalar(n as f64);
        let heads_first = |t: Tensor<3>| t.swap_dims(0, 1); // [H, N, ·]
        let kv = heads_first(k)
            .swap_dims(1, 2)
            .matmul(heads_first(v * competition)); // [H, dh, dh]
        let y = heads_first(q * (sink_in * allocation)).matmul(kv); // [H, N, dh]
        let y = self.out.forward(y.swap_dims(0, 1).reshape([n, d]));
        drop(&self.dropout, y)
    }
}

impl FlowLayer {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [n, d] = x.dims();
        let a = drop(
            &self.dropout,
            self.self_attn.forward(self.norm1.forward(x.clone())),
        );
        let a = self
            .adapters
            .after_attention(a.reshape([1, n, d]))
            .reshape([n, d]);
        let x = x + a;
        let u = self.norm2.forward(x.clone());
        let f = drop(&self.dropout, gelu(self.ff1.forward(u.clone())));
        let y = drop(&self.dropout, self.ff2.forward(f));
        let y = self
            .adapters
            .add_parallel(y.reshape([1, n, d]), u.reshape([1, n, d]))
            .reshape([n, d]);
        x + y
    }
}

impl CellPlm {
    /// A freshly initialised model (PyTorch's default inits; the gene table `randn · 0.005` as
    /// `OmicsEmbedder`): what a checkpoint is loaded into.
    pub fn new(s: &CellPlmShape, dev: &Device) -> Self {
        let d = s.d_model;
        let p = s.model_dropout;
        let layers = (0..s.n_layers)
            .map(|_| FlowLayer {
                self_attn: FlowAttention {
                    query: LoraLinear::new(nn::linear(d, d, true, dev)),
                    key: nn::linear(d, d, true, dev),
                    value: LoraLinear::new(nn::linear(d, d, true, dev)),
                    out: nn::linear(d, d, true, dev),
                    dropout: nn::dropout(ATTN_DROPOUT),
                    heads: s.heads,
                },
                ff1: nn::linear(d, s.ffn, true, dev),
                ff2: nn::linear(s.ffn, d, true, dev),
                dropout: nn::dropout(p),
                norm1: nn::layer_norm(d, NORM_EPS, dev),
                norm2: nn::layer_norm(d, NORM_EPS, dev),
                adapters: LayerAdapters::none(),
            })
            .collect();
        let gmvae = s.gmvae.map(|(k, hid, z)| GmvaeInference {
            cluster_logits: nn::linear(d, k, true, dev),
            qzyx_hidden: nn::linear(d + k, hid, true, dev),
            qzyx_mu: nn::linear(hid, z, true, dev),
        });
        let lat_2lat = s
            .gmvae
            .is_none()
            .then(|| nn::linear(d, s.latent, true, dev));
        let (gmvae_prior, decoder) = match (&s.pretrain, s.gmvae) {
            (Some(p), Some((k, hid, z))) => (
                Some(GmvaePrior {
                    qzyx_var: nn::linear(hid, z, true, dev),
                    y_mu: nn::linear(k, z, true, dev),
                    y_var: nn::linear(k, z, true, dev),
                    w_li: p.w_li,
                    w_en: p.w_en,
                    lamda: p.lamda,
                }),
                Some(NbDecoder::new(z, s.n_genes, p, s.model_dropout, dev)),
            ),
            _ => (None, None),
        };
        CellPlm {
            embedder: Embedder {
                gene_table: Param::from_tensor(Tensor::random(
                    [s.n_genes, d],
                    burn::tensor::Distribution::Normal(0.0, 0.005),
                    dev,
                )),
                extra_linear: nn::linear(d, d, true, dev),
                dropout: nn::dropout(p),
                extra_norm: GroupNorm::new(d, GROUPS, dev),
            },
            token_adapter: None,
            layers,
            pre_latent_norm: nn::layer_norm(d, NORM_EPS, dev),
            gmvae,
            lat_2lat,
            head: None,
            gmvae_prior,
            decoder,
            model_dropout: p,
            peft: None,
        }
    }

    pub fn d_model(&self) -> usize {
        self.embedder.gene_table.lazy_shape()[1]
    }
    pub fn n_genes(&self) -> usize {
        self.embedder.gene_table.lazy_shape()[0]
    }
    pub fn heads(&self) -> usize {
        self.layers.first().map_or(1, |l| l.self_attn.heads)
    }
    /// Width of the cell embedding: the GMVAE's latent, else the `ae` latent.
    pub fn latent_dim(&self) -> usize {
        match (&self.gmvae, &self.lat_2lat) {
            (Some(g), _) => g.qzyx_mu.weight.lazy_shape()[1],
            (None, Some(l)) => l.weight.lazy_shape()[1],
            (None, None) => self.d_model(),
        }
    }
    pub fn n_clusters(&self) -> usize {
        self.gmvae
            .as_ref()
            .map_or(0, |g| g.cluster_logits.weight.lazy_shape()[1])
    }
    pub fn n_classes(&self) -> usize {
        self.head
            .as_ref()
            .map_or(0, |h| h.linear.weight.lazy_shape()[1])
    }

    /// The annotation pipeline's latent (docs/models/cellplm.md §4.2): the GMVAE dropped, a new
    /// `ae` latent (`Linear(d → latent)`, the GMVAE's latent width) unless there is one.
    pub fn to_annotation(&mut self, dev: &Device) {
        if self.lat_2lat.is_none() {
            let z = self.latent_dim();
            self.lat_2lat = Some(nn::linear(self.d_model(), z, true, dev));
        }
        self.gmvae = None;
        self.gmvae_prior = None;
        self.decoder = None;
    }

    /// Every dropout of the model at `p` (the annotation pipeline's `model_dropout` 0.5; the
    /// attention's own 0.01 stays).
    pub fn set_dropout(&mut self, p: f64) {
        self.model_dropout = p;
        self.embedder.dropout = nn::dropout(p);
        for l in &mut self.layers {
            l.dropout = nn::dropout(p);
        }
        if let Some(h) = &mut self.head {
            h.dropout = nn::dropout(p);
        }
        if let Some(d) = &mut self.decoder {
            for b in &mut d.blocks {
                b.dropout = nn::dropout(p);
            }
        }
    }

    /// A fresh annotation head for `n` classes on the `ae` latent (PyTorch's default init).
    pub fn new_head(&mut self, n: usize, dev: &Device) {
        self.head = Some(AnnotationHead {
            dropout: nn::dropout(self.model_dropout),
            linear: nn::linear(self.latent_dim(), n, true, dev),
        });
    }

    /// `OmicsEmbedder`: `log1p(X) @ emb[gene_idx]`, the sum of each cell's genes' table rows
    /// weighted by log-expression (a cell with no matched gene gives zeros). Computed as a dense
    /// product over the rows the set's cells express, in chunks of cells (the reference's
    /// sparse product, as a matrix product the kernels run fast; a cell's row depends on it
    /// alone). The rows are gathered on the device, so the table's gradient flows in training.
    fn gene_sum(&self, set: &SetInput, dev: &Device) -> Result<Tensor<2>> {
        const CHUNK: usize = 512;
        let d = self.d_model();
        let rows = self.n_genes();
        let mut local = vec![usize::MAX; rows];
        let mut used: Vec<i64> = Vec::new();
        for genes in &set.genes {
            for &g in genes.iter() {
                let g = g as usize;
                if g >= rows {
                    return Err(ModelError::Invalid(format!(
                        "gene-table row {g} out of range ({rows} rows)"
                    )));
                }
                if local[g] == usize::MAX {
                    local[g] = used.len();
                    used.push(g as i64);
                }
            }
        }
        let n = set.genes.len();
        let u = used.len();
        if u == 0 {
            return Ok(Tensor::zeros([n, d], dev));
        }
        let idx = Tensor::<1, Int>::from_data(TensorData::new(used, [u]), dev);
        let table = self.embedder.gene_table.val().select(0, idx);
        let mut parts = Vec::with_capacity(n.div_ceil(CHUNK));
        for start in (0..n).step_by(CHUNK) {
            let c = CHUNK.min(n - start);
            let mut x = vec![0f32; c * u];
            for k in 0..c {
                let row = &mut x[k * u..(k + 1) * u];
                for (&g, &v) in set.genes[start + k]
                    .iter()
                    .zip(set.values[start + k].iter())
                {
                    // a gene listed twice in the file counts twice
                    row[local[g as usize]] += v;
                }
            }
            let x = Tensor::<2>::from_data(TensorData::new(x, [c, u]), dev);
            parts.push(x.matmul(table.clone()));
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// The embedder and the encoder layers over one set: the embedder's output and each layer's
    /// output.
    pub(crate) fn encode(
        &self,
        set: &SetInput,
        dev: &Device,
    ) -> Result<(Tensor<2>, Vec<Tensor<2>>)> {
        if set.genes.is_empty() {
            return Err(ModelError::Invalid(
                "an attention set needs at least one cell".into(),
            ));
        }
        let e = &self.embedder;
        let h = self.gene_sum(set, dev)?;
        let h = drop(&e.dropout, relu(e.extra_linear.forward(h)));
        let mut h = e.extra_norm.forward(h);
        if let Some(a) = &self.token_adapter {
            let [n, d] = h.dims();
            h = a.forward(h.reshape([1, n, d])).reshape([n, d]);
        }
        let embedder = h.clone();
        let mut hidden = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            h = l.forward(h);
            hidden.push(h.clone());
        }
        Ok((embedder, hidden))
    }

    /// [`Self::encode`] and the pre-latent norm of the last hidden state: what every latent
    /// (GMVAE or `ae`) reads.
    pub(crate) fn pre_latent(
        &self,
        set: &SetInput,
        dev: &Device,
    ) -> Result<(Tensor<2>, Vec<Tensor<2>>, Tensor<2>)> {
        let (embedder, hidden) = self.encode(set, dev)?;
        let h = self
            .pre_latent_norm
            .forward(hidden.last().cloned().unwrap_or_else(|| embedder.clone()));
        Ok((embedder, hidden, h))
    }

    /// The zero-shot forward pass of one attention set through the GMVAE (the cells attend to
    /// each other, so a cell's output depends on the set it is in).
    pub fn forward_set(&self, set: &SetInput, dev: &Device) -> Result<SetOutput> {
        let g = self.gmvae.as_ref().ok_or_else(|| {
            ModelError::Invalid(
                "this CellPLM model has no GMVAE latent (a fine-tuned annotation model): \
                 embed with the pretrained folder"
                    .into(),
            )
        })?;
        let (embedder, hidden, h) = self.pre_latent(set, dev)?;
        let logits = g.cluster_logits.forward(h.clone());
        // the cluster: argmax of the logits (the reference adds Gumbel noise even in eval)
        let y = argmax_one_hot(&logits, dev)?;
        let t = relu(g.qzyx_hidden.forward(Tensor::cat(vec![h, y], 1)));
        let latent = g.qzyx_mu.forward(t);
        Ok(SetOutput {
            embedder,
            hidden,
            logits,
            latent,
        })
    }

    /// The annotation model over one set: the `ae` latent `[N, latent]` and the head's logits
    /// `[N, classes]` for every cell (the reference's head reads only the cells of its loss
    /// mask; the rows are the same).
    pub fn classify_set(&self, set: &SetInput, dev: &Device) -> Result<(Tensor<2>, Tensor<2>)> {
        let (lat, head) = match (&self.lat_2lat, &self.head) {
            (Some(l), Some(h)) => (l, h),
            _ => {
                return Err(ModelError::Invalid(
                    "this CellPLM model has no annotation head (fine-tune it first)".into(),
                ))
            }
        };
        let (_, _, h) = self.pre_latent(set, dev)?;
        let z = lat.forward(h);
        let logits = head.linear.forward(drop(&head.dropout, z.clone()));
        Ok((z, logits))
    }

    /// Floating-point operations of one set of `n` cells expressing `u` distinct genes
    /// (multiply-add = 2), for throughput reports.
    pub fn set_flops(&self, n: usize, u: usize) -> f64 {
        let d = self.d_model() as f64;
        let n = n as f64;
        let ffn = self
            .layers
            .first()
            .map_or(0.0, |l| l.ff1.weight.lazy_shape()[1] as f64);
        let per_layer =
            2.0 * n * (4.0 * d * d + 2.0 * d * ffn) + 4.0 * n * d * d / self.heads() as f64;
        2.0 * n * u as f64 * d + 2.0 * n * d * d + self.layers.len() as f64 * per_layer
    }
}
