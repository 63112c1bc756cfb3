//! scGPT (`scgpt.model.TransformerModel`, PyPI scgpt 0.2.4) on burn (docs/models/scgpt.md §4).
//!
//! Module and field names follow the reference's state-dict keys (paired with them in
//! `params.rs`). Post-LN encoder layers with packed QKV (`self_attn.Wqkv`, rows `[q; k; v]`,
//! heads consecutive), ReLU FFN of width `d_hid`, no final norm, `<cls>` at position 0 as the
//! cell embedding. The scPEFT adapters sit in the slots `sites.rs` names.

use burn::module::{Module, Param};
use burn::nn::{Dropout, Embedding, EmbeddingConfig, Initializer, LayerNorm};

use crate::nn::Linear;
use burn::tensor::activation::{leaky_relu, relu, sigmoid};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::config::{ScGptBuild, ScGptConfig};
use crate::error::{ModelError, Result};
use crate::model::BatchInput;
use crate::nn::{self, attend, drop, is_training, key_padding_mask, EncoderBlock, Queries};
use crate::peft::{has_prompts, run_layers, Adapter, LayerAdapters, LoraLinear, PeftState};

/// `encoder`: `Embedding(ntoken, d, padding_idx=<pad>)` then LayerNorm.
#[derive(Module, Debug)]
pub struct GeneEncoder {
    pub embedding: Embedding,
    pub enc_norm: LayerNorm,
}

/// `value_encoder`: `clamp(max=512)` → Linear(1→d) → ReLU → Linear(d→d) → LayerNorm
/// (→ the token-prompt `Space_Adapter`) → dropout (active only when training on an autodiff device).
#[derive(Module, Debug)]
pub struct ContinuousValueEncoder {
    pub linear1: Linear,
    pub linear2: Linear,
    pub norm: LayerNorm,
    /// `value_encoder.Space_Adapter` (gene token prompt)
    pub space_adapter: Option<Adapter>,
    pub dropout: Dropout,
}

/// `self_attn`: one packed in-projection (the release's `Wqkv`, = torch's `in_proj_*`) and `out_proj`.
#[derive(Module, Debug)]
pub struct MultiheadAttention {
    /// `self_attn.Wqkv` with its optional LoRA on q and v (`Wqkv.lora_{A,B}`)
    pub wqkv: LoraLinear,
    pub out_proj: Linear,
    pub nheads: usize,
    /// Attention-probability dropout (training only; inference keeps the fused kernel).
    pub dropout: Dropout,
}

/// `transformer_encoder.layers.{i}`: post-LN, ReLU FFN of width `d_hid`, with the reference's
/// dropouts (`dropout` inside the FFN, `dropout1`/`dropout2` on the residual branches) and the
/// optional scPEFT modules.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub self_attn: MultiheadAttention,
    pub linear1: Linear,
    pub linear2: Linear,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub dropout: Dropout,
    pub dropout1: Dropout,
    pub dropout2: Dropout,
    /// The scPEFT slots: after LN1, parallel to the FFN, prefix prompts.
    pub adapters: LayerAdapters,
}

#[derive(Module, Debug)]
pub struct TransformerEncoder {
    pub layers: Vec<EncoderLayer>,
}

/// `decoder` (ExprDecoder): `fc.{0,2,4}` = Linear(d→d), LeakyReLU, Linear(d→d), LeakyReLU, Linear(d→1).
#[derive(Module, Debug)]
pub struct ExprDecoder {
    /// Holds `fc.0`, `fc.2`, `fc.4` (the activations sit at the odd indices).
    pub fc: Vec<Linear>,
}

/// `cls_decoder`: `_decoder.{3i}` Linear(d→d), ReLU, `_decoder.{3i+2}` LayerNorm, × (n_layers_cls-1),
/// then `out_layer` Linear(d→n_cls).
#[derive(Module, Debug)]
pub struct ClsDecoder {
    pub linears: Vec<Linear>,
    pub norms: Vec<LayerNorm>,
    pub out_layer: Linear,
}

/// `mvc_decoder` ("inner product"): `pred_j = W(sigmoid(gene2query(e_g_j))) · cell_emb`.
#[derive(Module, Debug)]
pub struct MvcDecoder {
    pub gene2query: Linear,
    /// `mvc_decoder.W`
    pub w: Linear,
}

#[derive(Module, Debug)]
pub struct ScGpt {
    pub encoder: GeneEncoder,
    pub value_encoder: ContinuousValueEncoder,
    pub transformer_encoder: TransformerEncoder,
    pub decoder: ExprDecoder,
    pub cls_decoder: Option<ClsDecoder>,
    pub mvc_decoder: Option<MvcDecoder>,
    /// `n_layers_cls` of `args.json` (the head's depth, for a new classifier head).
    pub n_layers_cls: usize,
    /// The adapter strategy attached by [`crate::peft::attach()`] (`None`: the plain model).
    #[module(skip)]
    pub peft: Option<PeftState>,
}

/// Every output of a full forward pass (the fixture's names).
pub struct ScGptOutput {
    /// Post-LN gene-token embeddings `[B, L, d]` (MVC's input).
    pub gene_embs: Tensor<3>,
    /// Transformer input `gene_embs + value_encoder(values)`.
    pub embed: Tensor<3>,
    /// Output of each encoder layer.
    pub layers: Vec<Tensor<3>>,
    /// `<cls>` row of the last layer `[B, d]`.
    pub cell_emb: Tensor<2>,
    /// ExprDecoder `[B, L]`.
    pub mlm_output: Tensor<2>,
    pub mvc_output: Option<Tensor<2>>,
    pub cls_output: Option<Tensor<2>>,
}

/// The reference clamps values at `max_value=512` before the value MLP.
const VALUE_MAX: f32 = 512.0;
pub(crate) const LN_EPS: f64 = 1e-5;

fn norm(d: usize, dev: &Device) -> LayerNorm {
    nn::layer_norm(d, LN_EPS, dev)
}

impl ClsDecoder {
    /// The reference's `ClsDecoder(d, n_cls, nlayers=n_layers_cls)`, freshly initialised.
    pub fn new(d: usize, n_cls: usize, n_layers_cls: usize, dev: &Device) -> Self {
        let blocks = n_layers_cls.max(1) - 1;
        ClsDecoder {
            linears: (0..blocks).map(|_| nn::linear(d, d, true, dev)).collect(),
            norms: (0..blocks).map(|_| norm(d, dev)).collect(),
            out_layer: nn::linear(d, n_cls, true, dev),
        }
    }

    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        for (l, n) in self.linears.iter().zip(&self.norms) {
            x = n.forward(relu(l.forward(x)));
        }
        self.out_layer.forward(x)
    }
}

impl ScGpt {
    /// A randomly initialised model of the given shape (the reference's init for the token table:
    /// U(-0.1, 0.1) with the `<pad>` row zero; burn's defaults elsewhere).
    pub fn new(cfg: &ScGptConfig, build: &ScGptBuild, dev: &Device) -> Result<Self> {
        cfg.validate().map_err(ModelError::Invalid)?;
        let p = cfg.dropout;
        if build.pad_id >= build.ntoken {
            return Err(ModelError::Invalid(format!(
                "<pad> id {} outside the vocabulary of {}",
                build.pad_id, build.ntoken
            )));
        }
        let d = cfg.embsize;
        let mut embedding = EmbeddingConfig::new(build.ntoken, d)
            .with_initializer(Initializer::Uniform {
                min: -0.1,
                max: 0.1,
            })
            .init(dev);
        let w = embedding.weight.val();
        let w = w.slice_assign(
            [build.pad_id..build.pad_id + 1, 0..d],
            Tensor::zeros([1, d], dev),
        );
        embedding.weight = Param::from_tensor(w);
        let layers = (0..cfg.nlayers)
            .map(|_| EncoderLayer {
                self_attn: MultiheadAttention {
                    wqkv: LoraLinear::new(nn::linear(d, 3 * d, true, dev)),
                    out_proj: nn::linear(d, d, true, dev),
                    nheads: cfg.nheads,
                    dropout: nn::dropout(p),
                },
                linear1: nn::linear(d, cfg.d_hid, true, dev),
                linear2: nn::linear(cfg.d_hid, d, true, dev),
                norm1: norm(d, dev),
                norm2: norm(d, dev),
                dropout: nn::dropout(p),
                dropout1: nn::dropout(p),
                dropout2: nn::dropout(p),
                adapters: LayerAdapters::none(),
            })
            .collect();
        let cls_decoder =
            (build.n_cls > 0).then(|| ClsDecoder::new(d, build.n_cls, cfg.n_layers_cls, dev));
        let mvc_decoder = build.do_mvc.then(|| MvcDecoder {
            gene2query: nn::linear(d, d, true, dev),
            w: nn::linear(d, d, false, dev),
        });
        Ok(ScGpt {
            encoder: GeneEncoder {
                embedding,
                enc_norm: norm(d, dev),
            },
            value_encoder: ContinuousValueEncoder {
                linear1: nn::linear(1, d, true, dev),
                linear2: nn::linear(d, d, true, dev),
                norm: norm(d, dev),
                space_adapter: None,
                dropout: nn::dropout(p),
            },
            transformer_encoder: TransformerEncoder { layers },
            decoder: ExprDecoder {
                fc: vec![
                    nn::linear(d, d, true, dev),
                    nn::linear(d, d, true, dev),
                    nn::linear(d, 1, true, dev),
                ],
            },
            cls_decoder,
            mvc_decoder,
            n_layers_cls: cfg.n_layers_cls,
            peft: None,
        })
    }

    pub fn d_model(&self) -> usize {
        self.encoder.enc_norm.gamma.dims()[0]
    }

    /// Device tensors for a host batch.
    pub fn inputs(
        &self,
        b: &BatchInput,
        dev: &Device,
    ) -> (Tensor<2, Int>, Tensor<2>, Option<Tensor<4, Bool>>) {
        let (n, l) = (b.batch, b.seq_len);
        let genes = Tensor::<2, Int>::from_data(TensorData::new(b.genes.to_vec(), [n, l]), dev);
        let values = Tensor::<2>::from_data(TensorData::new(b.values.to_vec(), [n, l]), dev);
        (genes, values, key_padding_mask(b.padding, n, l, l, dev))
    }

    /// `gene_embs` and the transformer input `gene_embs + value_encoder(values)`.
    pub fn embed_tokens(&self, genes: Tensor<2, Int>, values: Tensor<2>) -> (Tensor<3>, Tensor<3>) {
        let gene_embs = self
            .encoder
            .enc_norm
            .forward(self.encoder.embedding.forward(genes));
        let v = values.clamp_max(VALUE_MAX).unsqueeze_dim::<3>(2);
        let ve = &self.value_encoder;
        let mut v = ve
            .norm
            .forward(ve.linear2.forward(relu(ve.linear1.forward(v))));
        if let Some(a) = &ve.space_adapter {
            v = a.forward(v);
        }
        let v = drop(&ve.dropout, v);
        let h = gene_embs.clone() + v;
        (gene_embs, h)
    }

    /// Every output the reference's `forward(..., CLS=True, MVC=True)` gives, plus each layer.
    pub fn forward(
        &self,
        genes: Tensor<2, Int>,
        values: Tensor<2>,
        mask: Option<Tensor<4, Bool>>,
    ) -> ScGptOutput {
        let (gene_embs, embed) = self.embed_tokens(genes, values);
        let (h, layers) = run_layers(&self.transformer_encoder.layers, embed.clone(), mask);
        let [b, _, d] = h.dims();
        let cell_emb = h.clone().narrow(1, 0, 1).reshape([b, d]);
        let mlm_output = self.decoder.forward(h);
        let mvc_output = self
            .mvc_decoder
            .as_ref()
            .map(|m| m.forward(cell_emb.clone(), gene_embs.clone()));
        let cls_output = self
            .cls_decoder
            .as_ref()
            .map(|c| c.forward(cell_emb.clone()));
        ScGptOutput {
            gene_embs,
            embed,
            layers,
            cell_emb,
            mlm_output,
            mvc_output,
            cls_output,
        }
    }

    /// The `<cls>` output of the last layer (`embed_data`'s cell embedding before L2
    /// normalisation), `[B, d]`. The last layer computes only the `<cls>` row: nothing else
    /// of it is read.
    pub fn encode_cls(&self, b: &BatchInput, dev: &Device) -> Tensor<2> {
        let (genes, values, mask) = self.inputs(b, dev);
        let layers = &self.transformer_encoder.layers;
        if has_prompts(layers) {
            // prompts change every position's context: run the whole stack
            let (_, h) = self.embed_tokens(genes, values);
            let (h, _) = run_layers(layers, h, mask);
            let [n, _, d] = h.dims();
            return h.narrow(1, 0, 1).reshape([n, d]);
        }
        let (_, mut h) = self.embed_tokens(genes, values);
        let lengths = b.lengths();
        let lengths = lengths.as_deref();
        let (last, rest) = layers.split_last().expect("at least one layer");
        for l in rest {
            h = l.forward_cells(h, mask.clone(), lengths);
        }
        let cls_mask = key_padding_mask(b.padding, b.batch, 1, b.seq_len, dev);
        last.forward_first(h, cls_mask, lengths)
    }
}

impl MultiheadAttention {
    /// Self-attention over `x` `[B, L, d]` for the query positions `queries` selects (see
    /// [`attend`]).
    fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        queries: Queries,
        lengths: Option<&[usize]>,
    ) -> Tensor<3> {
        let training = is_training(&self.dropout, &x);
        let qkv = self.wqkv.forward(x, training);
        let precision = self.wqkv.linear.precision();
        let o = attend(
            qkv,
            self.nheads,
            mask,
            queries,
            lengths,
            &self.dropout,
            precision,
        );
        self.out_proj.forward(o)
    }
}

impl EncoderBlock for EncoderLayer {
    fn self_attention(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        queries: Queries,
        lengths: Option<&[usize]>,
    ) -> Tensor<3> {
        self.self_attn.forward(h, mask, queries, lengths)
    }

    /// `h = LN1(h + Dropout(a))`, the space adapter, the FFN sub-block
    /// `LN2(h + Dropout(W2 Dropout(relu(W1 h))))` and the parallel MLP adapter (dropouts are
    /// no-ops at inference).
    fn after_attention(&self, h: Tensor<3>, a: Tensor<3>) -> Tensor<3> {
        let h = self
            .adapters
            .after_attention(self.norm1.forward(h + drop(&self.dropout1, a)));
        let f = self
            .linear2
            .forward(drop(&self.dropout, relu(self.linear1.forward(h.clone()))));
        let y = self.norm2.forward(h.clone() + drop(&self.dropout2, f));
        self.adapters.add_parallel(y, h)
    }

    fn prompt_tokens(&self) -> Option<&Param<Tensor<3>>> {
        self.adapters.prompt.as_ref()
    }
}

impl ExprDecoder {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let x = leaky_relu(self.fc[0].forward(x), 0.01);
        let x = leaky_relu(self.fc[1].forward(x), 0.01);
        self.fc[2].forward(x).squeeze_dim::<2>(2)
    }
}

impl MvcDecoder {
    pub fn forward(&self, cell_emb: Tensor<2>, gene_embs: Tensor<3>) -> Tensor<2> {
        let q = sigmoid(self.gene2query.forward(gene_embs));
        let w = self.w.forward(q); // [B, L, d]
        let [b, d] = cell_emb.dims();
        w.matmul(cell_emb.reshape([b, d, 1])).squeeze_dim::<2>(2)
    }
}
