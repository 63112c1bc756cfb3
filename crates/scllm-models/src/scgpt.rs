//! scGPT (`scgpt.model.TransformerModel`, PyPI scgpt 0.2.4) on burn.
//!
//! Module and field names follow the reference's state-dict keys, and [`ScGpt::visit_params`] is the one
//! place that pairs each parameter with its key: loading, saving and the key report all walk it.
//! Post-LN encoder layers with packed QKV (`self_attn.Wqkv`, rows `[q; k; v]`, heads consecutive),
//! ReLU FFN of width `d_hid`, no final norm, `<cls>` at position 0 as the cell embedding.

use std::collections::BTreeMap;
use std::path::Path;

use crate::softmax::{softmax_last, softmax_last_dropout};
use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::activation::{leaky_relu, relu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::attention::packed_self_attention;
use crate::error::{ModelError, Result};
use crate::peft::{Adapter, LoraQv, PeftState};

/// `args.json` of a released scGPT model, field for field (the scGPT_human file's 47 fields).
/// Sizes (`embsize`, `nheads`, `d_hid`, `nlayers`, `n_layers_cls`) always come from here; fields
/// the model does not read are kept so the file round-trips. Unknown fields land in `extra`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScGptConfig {
    pub embsize: usize,
    pub nheads: usize,
    pub d_hid: usize,
    pub nlayers: usize,
    #[serde(default = "default_n_layers_cls")]
    pub n_layers_cls: usize,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    #[serde(default = "default_n_bins")]
    pub n_bins: usize,
    #[serde(default = "default_pad_token")]
    pub pad_token: String,
    #[serde(default = "default_pad_value", serialize_with = "whole_as_int")]
    pub pad_value: f64,
    #[serde(default = "default_mask_value", serialize_with = "whole_as_int")]
    pub mask_value: f64,
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    #[serde(default)]
    pub input_style: Option<String>,
    #[serde(default)]
    pub input_emb_style: Option<String>,
    #[serde(default)]
    pub trunc_by_sample: Option<bool>,
    #[serde(default)]
    pub data_source: Option<String>,
    #[serde(default)]
    pub save_dir: Option<String>,
    #[serde(default)]
    pub load_model: Option<String>,
    #[serde(default)]
    pub n_hvg: Option<serde_json::Value>,
    #[serde(default)]
    pub valid_size_or_ratio: Option<f64>,
    #[serde(default)]
    pub dist_backend: Option<String>,
    #[serde(default)]
    pub grad_accu_steps: Option<usize>,
    #[serde(default)]
    pub training_tasks: Option<String>,
    #[serde(default)]
    pub dist_url: Option<String>,
    #[serde(default)]
    pub mask_ratio: Option<Vec<f64>>,
    #[serde(default)]
    pub vocab_path: Option<String>,
    #[serde(default)]
    pub rank: Option<usize>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub scheduler_interval: Option<usize>,
    #[serde(default)]
    pub scheduler_factor: Option<f64>,
    #[serde(default)]
    pub warmup_ratio_or_step: Option<f64>,
    #[serde(default)]
    pub no_cls: Option<bool>,
    #[serde(default)]
    pub no_cce: Option<bool>,
    #[serde(default)]
    pub fp16: Option<bool>,
    #[serde(default)]
    pub fast_transformer: Option<bool>,
    #[serde(default)]
    pub log_interval: Option<usize>,
    #[serde(default)]
    pub save_interval: Option<usize>,
    #[serde(default, rename = "USE_CLS")]
    pub use_cls: Option<bool>,
    #[serde(default, rename = "USE_CCE")]
    pub use_cce: Option<bool>,
    #[serde(default, rename = "MVC")]
    pub mvc: Option<bool>,
    #[serde(default, rename = "USE_GENERATIVE_TRAINING")]
    pub use_generative_training: Option<bool>,
    #[serde(default)]
    pub world_size: Option<usize>,
    #[serde(default)]
    pub distributed: Option<bool>,
    #[serde(default)]
    pub local_rank: Option<usize>,
    #[serde(default)]
    pub gpu: Option<usize>,
    /// Fields this struct does not name (fine-tuning runs add their own).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The release writes `-2`, not `-2.0`: keep whole numbers integral so the file round-trips.
fn whole_as_int<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn default_n_layers_cls() -> usize {
    3
}
fn default_dropout() -> f64 {
    0.2
}
fn default_n_bins() -> usize {
    51
}
fn default_pad_token() -> String {
    "<pad>".into()
}
fn default_pad_value() -> f64 {
    -2.0
}
fn default_mask_value() -> f64 {
    -1.0
}
fn default_max_seq_len() -> usize {
    1200
}

impl ScGptConfig {
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::file(path, format!("cannot read: {e}")))?;
        let cfg: ScGptConfig = serde_json::from_str(&text).map_err(|e| {
            ModelError::file(path, format!("not a scGPT args.json: {e} (expected the released model's args.json, with embsize, nheads, d_hid, nlayers)"))
        })?;
        cfg.validate().map_err(|m| ModelError::file(path, m))?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.embsize == 0 || self.nheads == 0 || self.nlayers == 0 || self.d_hid == 0 {
            return Err("embsize, nheads, nlayers and d_hid must be positive".into());
        }
        if !self.embsize.is_multiple_of(self.nheads) {
            return Err(format!(
                "embsize {} is not a multiple of nheads {}",
                self.embsize, self.nheads
            ));
        }
        if let Some(s) = &self.input_emb_style {
            if s != "continuous" {
                return Err(format!(
                    "input_emb_style \"{s}\" is not supported (released models use \"continuous\")"
                ));
            }
        }
        if self.n_layers_cls == 0 {
            return Err("n_layers_cls must be at least 1".into());
        }
        Ok(())
    }
}

/// What a model needs beyond `args.json`: the vocabulary size and `<pad>` id (from `vocab.json`)
/// and which heads to build (the reference's `n_cls` and `do_mvc` arguments).
#[derive(Clone, Debug)]
pub struct ScGptBuild {
    pub ntoken: usize,
    pub pad_id: usize,
    pub n_cls: usize,
    pub do_mvc: bool,
}

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
    /// `value_encoder.Space_Adapter` (scPEFT gene token prompt, §2.3)
    pub space_adapter: Option<Adapter>,
    pub dropout: Dropout,
}

/// `self_attn`: one packed in-projection (the release's `Wqkv`, = torch's `in_proj_*`) and `out_proj`.
#[derive(Module, Debug)]
pub struct MultiheadAttention {
    /// `self_attn.Wqkv` (Rust field names are snake case)
    pub wqkv: Linear,
    pub out_proj: Linear,
    pub nheads: usize,
    /// Attention-probability dropout (training only; inference keeps the fused kernel).
    pub dropout: Dropout,
    /// `self_attn.Wqkv.lora_{A,B}` (scPEFT LoRA on q and v, §2.6)
    pub lora: Option<LoraQv>,
}

/// `transformer_encoder.layers.{i}`: post-LN, ReLU FFN of width `d_hid`, with the reference's
/// dropouts (`dropout` inside the FFN, `dropout1`/`dropout2` on the residual branches) and the
/// optional scPEFT modules of §2.4-2.5.
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
    /// `Space_Adapter` (skip) applied after LN1 (gene encoder prompt)
    pub space_adapter: Option<Adapter>,
    /// `MLP_Adapter` (no skip) parallel to the FFN, added after LN2 times `mlp_adapter_scale`
    pub mlp_adapter: Option<Adapter>,
    pub mlp_adapter_scale: f64,
    /// `prompt_embeddings` `[1, n_tokens, d]` (prefix prompt)
    pub prompt_embeddings: Option<Param<Tensor<3>>>,
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
    /// The scPEFT strategy attached by [`ScGpt::with_peft`] (`None`: the plain model, all trainable).
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

/// Host-side inputs of one padded batch, row-major `[batch, seq_len]`.
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
}

/// The reference clamps values at `max_value=512` before the value MLP.
const VALUE_MAX: f32 = 512.0;
const LN_EPS: f64 = 1e-5;

fn linear(din: usize, dout: usize, bias: bool, dev: &Device) -> Linear {
    LinearConfig::new(din, dout).with_bias(bias).init(dev)
}
fn norm(d: usize, dev: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(LN_EPS).init(dev)
}
fn dropout(p: f64) -> Dropout {
    DropoutConfig::new(p).init()
}

/// Inverted dropout with burn's `Dropout` semantics (active only in training, see
/// [`is_training`]; kept values scaled by 1/(1-p)), but with the mask drawn in parallel by a
/// counter-based generator keyed from the device RNG (so `Device::seed` still fixes it). burn's
/// `random_like` draws every element through one host ChaCha stream: that was ~30% of a
/// fine-tuning step (perf, small config), mostly the B·h·L² attention-probability masks.
pub(crate) fn drop<const D: usize>(d: &Dropout, x: Tensor<D>) -> Tensor<D> {
    match dropout_mask(d, &x) {
        Some(mask) => x * mask,
        None => x,
    }
}

/// The scaled keep-mask [`drop`] multiplies `x` by (values 0 or 1/(1-p), shaped as `x`), or `None`
/// where dropout is the identity (p = 0, or not training).
pub(crate) fn dropout_mask<const D: usize>(d: &Dropout, x: &Tensor<D>) -> Option<Tensor<D>> {
    use rayon::prelude::*;
    if d.prob <= 0.0 || !is_training(d, x) {
        return None;
    }
    let dev = x.device();
    let shape = x.shape();
    // 4 uniform floats from the device RNG (23 random mantissa bits each) key the mask
    let key = Tensor::<1>::random([4], burn::tensor::Distribution::Default, &dev)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 key")
        .iter()
        .fold(0u64, |k, f| (k << 16) ^ (k >> 48) ^ f.to_bits() as u64);
    let keep = 1.0 - d.prob;
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0f32; shape.num_elements()];
    const CHUNK: usize = 1 << 15;
    mask.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        let mut state = key ^ (c as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        // one SplitMix64 draw decides two elements (its high and low 32 bits)
        for pair in out.chunks_mut(2) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            for (v, u) in pair.iter_mut().zip([z >> 32, z & 0xFFFF_FFFF]) {
                *v = if u < threshold { scale } else { 0.0 };
            }
        }
    });
    Some(Tensor::<D>::from_data(TensorData::new(mask, shape), &dev))
}

/// Whether `x` runs in training mode: on an autodiff device with the module's training flag on
/// (burn's `Dropout` rule; `valid()` switches it off).
pub(crate) fn is_training<const D: usize>(flag: &Dropout, x: &Tensor<D>) -> bool {
    flag.training.is_enabled() && x.device().is_autodiff()
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
                    wqkv: linear(d, 3 * d, true, dev),
                    out_proj: linear(d, d, true, dev),
                    nheads: cfg.nheads,
                    dropout: dropout(p),
                    lora: None,
                },
                linear1: linear(d, cfg.d_hid, true, dev),
                linear2: linear(cfg.d_hid, d, true, dev),
                norm1: norm(d, dev),
                norm2: norm(d, dev),
                dropout: dropout(p),
                dropout1: dropout(p),
                dropout2: dropout(p),
                space_adapter: None,
                mlp_adapter: None,
                mlp_adapter_scale: 0.5,
                prompt_embeddings: None,
            })
            .collect();
        let cls_decoder = (build.n_cls > 0).then(|| ClsDecoder {
            linears: (1..cfg.n_layers_cls)
                .map(|_| linear(d, d, true, dev))
                .collect(),
            norms: (1..cfg.n_layers_cls).map(|_| norm(d, dev)).collect(),
            out_layer: linear(d, build.n_cls, true, dev),
        });
        let mvc_decoder = build.do_mvc.then(|| MvcDecoder {
            gene2query: linear(d, d, true, dev),
            w: linear(d, d, false, dev),
        });
        Ok(ScGpt {
            encoder: GeneEncoder {
                embedding,
                enc_norm: norm(d, dev),
            },
            value_encoder: ContinuousValueEncoder {
                linear1: linear(1, d, true, dev),
                linear2: linear(d, d, true, dev),
                norm: norm(d, dev),
                space_adapter: None,
                dropout: dropout(p),
            },
            transformer_encoder: TransformerEncoder { layers },
            decoder: ExprDecoder {
                fc: vec![
                    linear(d, d, true, dev),
                    linear(d, d, true, dev),
                    linear(d, 1, true, dev),
                ],
            },
            cls_decoder,
            mvc_decoder,
            peft: None,
        })
    }

    pub fn d_model(&self) -> usize {
        self.encoder.enc_norm.gamma.dims()[0]
    }

    /// Pair every parameter with its state-dict key (the reference's names, PyTorch layout).
    /// This is the whole mapping between the checkpoint and the model.
    pub fn visit_params(&mut self, v: &mut impl ParamVisitor) {
        v.embedding("encoder.embedding", &mut self.encoder.embedding);
        v.layer_norm("encoder.enc_norm", &mut self.encoder.enc_norm);
        v.linear("value_encoder.linear1", &mut self.value_encoder.linear1);
        v.linear("value_encoder.linear2", &mut self.value_encoder.linear2);
        v.layer_norm("value_encoder.norm", &mut self.value_encoder.norm);
        if let Some(a) = &mut self.value_encoder.space_adapter {
            a.visit("value_encoder.Space_Adapter", v);
        }
        for (i, l) in self.transformer_encoder.layers.iter_mut().enumerate() {
            let p = format!("transformer_encoder.layers.{i}");
            v.linear(&format!("{p}.self_attn.Wqkv"), &mut l.self_attn.wqkv);
            if let Some(lora) = &mut l.self_attn.lora {
                // PyTorch layout as loralib stores them: A [2r, d], B [2d, r]
                v.tensor2(&format!("{p}.self_attn.Wqkv.lora_A"), &mut lora.lora_a);
                v.tensor2(&format!("{p}.self_attn.Wqkv.lora_B"), &mut lora.lora_b);
            }
            v.linear(
                &format!("{p}.self_attn.out_proj"),
                &mut l.self_attn.out_proj,
            );
            v.linear(&format!("{p}.linear1"), &mut l.linear1);
            v.linear(&format!("{p}.linear2"), &mut l.linear2);
            v.layer_norm(&format!("{p}.norm1"), &mut l.norm1);
            v.layer_norm(&format!("{p}.norm2"), &mut l.norm2);
            if let Some(a) = &mut l.space_adapter {
                a.visit(&format!("{p}.Space_Adapter"), v);
            }
            if let Some(a) = &mut l.mlp_adapter {
                a.visit(&format!("{p}.MLP_Adapter"), v);
            }
            if let Some(pe) = &mut l.prompt_embeddings {
                v.tensor3(&format!("{p}.prompt_embeddings"), pe);
            }
        }
        for (i, l) in self.decoder.fc.iter_mut().enumerate() {
            v.linear(&format!("decoder.fc.{}", 2 * i), l); // nn.Sequential: activations at odd indices
        }
        if let Some(c) = &mut self.cls_decoder {
            for (i, (l, n)) in c.linears.iter_mut().zip(c.norms.iter_mut()).enumerate() {
                v.linear(&format!("cls_decoder._decoder.{}", 3 * i), l); // [Linear, ReLU, LN] per block
                v.layer_norm(&format!("cls_decoder._decoder.{}", 3 * i + 2), n);
            }
            v.linear("cls_decoder.out_layer", &mut c.out_layer);
        }
        if let Some(m) = &mut self.mvc_decoder {
            v.linear("mvc_decoder.gene2query", &mut m.gene2query);
            v.linear("mvc_decoder.W", &mut m.w);
        }
    }

    /// State-dict keys and PyTorch-layout shapes the model expects.
    pub fn expected_keys(&self) -> Vec<(String, Vec<usize>)> {
        let mut c = KeyLister(Vec::new());
        self.clone().visit_params(&mut c);
        c.0
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
        let (h, layers) = self.transformer_encoder.forward(embed.clone(), mask);
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
        if self.transformer_encoder.has_prefix() {
            // prompts change every position's context: run the whole stack
            let (_, h) = self.embed_tokens(genes, values);
            let (h, _) = self.transformer_encoder.forward(h, mask);
            let [n, _, d] = h.dims();
            return h.narrow(1, 0, 1).reshape([n, d]);
        }
        let (_, mut h) = self.embed_tokens(genes, values);
        let lengths = right_padded_lengths(b.padding, b.batch, b.seq_len);
        let lengths = lengths.as_deref();
        let layers = &self.transformer_encoder.layers;
        let (last, rest) = layers.split_last().expect("at least one layer");
        for l in rest {
            h = l.forward_cells(h, mask.clone(), lengths);
        }
        let cls_mask = key_padding_mask(b.padding, b.batch, 1, b.seq_len, dev);
        last.forward_first(h, cls_mask, lengths)
    }
}

/// Each row's real length when every row's padding is a suffix (as `pad_batch` pads), else
/// `None`.
pub fn right_padded_lengths(padding: &[bool], b: usize, l: usize) -> Option<Vec<usize>> {
    (0..b)
        .map(|r| {
            let row = &padding[r * l..(r + 1) * l];
            let n = row.iter().position(|&p| p).unwrap_or(l);
            row[n..].iter().all(|&p| p).then_some(n)
        })
        .collect()
}

/// `[B, 1, Lq, Lk]` with `true` where the key is padding, or `None` when nothing is padded.
/// Built on the host once per batch and shared by every layer and head.
pub fn key_padding_mask(
    padding: &[bool],
    b: usize,
    lq: usize,
    lk: usize,
    dev: &Device,
) -> Option<Tensor<4, Bool>> {
    if !padding.iter().any(|&p| p) {
        return None;
    }
    let mut m = Vec::with_capacity(b * lq * lk);
    for r in 0..b {
        let row = &padding[r * lk..(r + 1) * lk];
        for _ in 0..lq {
            m.extend_from_slice(row);
        }
    }
    Some(Tensor::<4, Bool>::from_data(
        TensorData::new(m, [b, 1, lq, lk]),
        dev,
    ))
}

/// Which query positions self-attention computes (keys and values are always all positions).
#[derive(Clone, Copy, Debug)]
enum Queries {
    All,
    /// position 0 (`<cls>`) only
    First,
    /// all but the `n` prompt positions after `<cls>`
    SkipPrompts(usize),
}

impl MultiheadAttention {
    /// Self-attention over `x` `[B, L, d]` for the query positions `queries` selects. With the
    /// cells' real `lengths` (a right-padded batch; `mask` is then their key-padding mask),
    /// inference on flex takes [`packed_self_attention`], which skips the padding.
    fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        queries: Queries,
        lengths: Option<&[usize]>,
    ) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let (h, dh) = (self.nheads, d / self.nheads);
        let training = is_training(&self.dropout, &x);
        let mut qkv = self.wqkv.forward(x.clone());
        if let Some(lora) = &self.lora {
            qkv = qkv + lora.delta(x, training);
        }
        let first_only = match queries {
            Queries::All => Some(false),
            Queries::First => Some(true),
            Queries::SkipPrompts(_) => None,
        };
        if let (Some(lengths), Some(first_only), false) = (lengths, first_only, training) {
            if let Some(o) = packed_self_attention(&qkv, h, lengths, first_only) {
                return self.out_proj.forward(o);
            }
        }
        let qkv = qkv.reshape([b, l, 3, h, dh]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(2, i, 1)
                .reshape([b, l, h, dh])
                .swap_dims(1, 2)
        };
        let (mut q, k, v) = (part(0), part(1), part(2));
        let lq = match queries {
            Queries::All => l,
            Queries::First => {
                q = q.narrow(2, 0, 1);
                1
            }
            Queries::SkipPrompts(n) => {
                q = Tensor::cat(
                    vec![q.clone().narrow(2, 0, 1), q.narrow(2, 1 + n, l - 1 - n)],
                    2,
                );
                l - n
            }
        };
        let o = if training {
            // training: softmax(QKᵀ/√dh + mask) with dropout on the probabilities, as torch's MHA.
            // (burn's fused `attention` has no backward of its own: under autodiff it falls back
            // to these ops with a composed softmax, slower than `softmax_last`.)
            let lk = k.dims()[2];
            let mut s = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt());
            if let Some(m) = mask {
                s = s.mask_fill(m.expand([b, h, lq, lk]), f32::NEG_INFINITY);
            }
            let p = match dropout_mask(&self.dropout, &s) {
                Some(m) => softmax_last_dropout(s, m),
                None => softmax_last(s),
            };
            p.matmul(v)
        } else {
            // fused kernel (tiled flash attention on flex); scale 1/sqrt(dh) as torch's MHA
            attention(q, k, v, mask, None, AttentionModuleOptions::default())
        };
        self.out_proj.forward(o.swap_dims(1, 2).reshape([b, lq, d]))
    }
}

impl EncoderLayer {
    /// `h = LN1(h + Dropout(MHA(h))); h = LN2(h + Dropout(W2 Dropout(relu(W1 h))))` (dropouts are
    /// no-ops at inference), with the gene-encoder-prompt adapters of §2.4 when attached.
    pub fn forward(&self, h: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        self.forward_cells(h, mask, None)
    }

    /// [`Self::forward`] on a right-padded batch whose cells have the real `lengths` (`mask` is
    /// their key-padding mask): at inference on flex, padded positions are skipped (their
    /// output rows are then not attention outputs; nothing may read them).
    pub fn forward_cells(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        lengths: Option<&[usize]>,
    ) -> Tensor<3> {
        let a = self
            .self_attn
            .forward(h.clone(), mask, Queries::All, lengths);
        self.after_attention(h, a)
    }

    /// The layer's output without the `n` prompt positions after `<cls>` (`[B, L - n, d]`): every
    /// position still attends to the prompts, but no prompt position is computed as a query, as
    /// nothing reads it (the next layer replaces the prompts, or the stack ends). `mask` is
    /// `[B, 1, L - n, L]`.
    pub fn forward_skipping_prompts(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        n: usize,
    ) -> Tensor<3> {
        let a = self
            .self_attn
            .forward(h.clone(), mask, Queries::SkipPrompts(n), None);
        self.after_attention(strip_prompts(h, n), a)
    }

    /// The layer's output at position 0 only, `[B, d]`; `mask` is `[B, 1, 1, L]`, `lengths` as
    /// in [`Self::forward_cells`].
    pub fn forward_first(
        &self,
        h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        lengths: Option<&[usize]>,
    ) -> Tensor<2> {
        let [b, _, d] = h.dims();
        let h0 = h.clone().narrow(1, 0, 1);
        let a = self.self_attn.forward(h, mask, Queries::First, lengths);
        self.after_attention(h0, a).reshape([b, d])
    }

    /// Residual + LN1, the space adapter, the FFN sub-block and the parallel MLP adapter.
    fn after_attention(&self, h: Tensor<3>, a: Tensor<3>) -> Tensor<3> {
        let mut h = self.norm1.forward(h + drop(&self.dropout1, a));
        if let Some(s) = &self.space_adapter {
            h = s.forward(h);
        }
        let f = self
            .linear2
            .forward(drop(&self.dropout, relu(self.linear1.forward(h.clone()))));
        let y = self.norm2.forward(h.clone() + drop(&self.dropout2, f));
        match &self.mlp_adapter {
            Some(m) => y + m.forward(h) * self.mlp_adapter_scale,
            None => y,
        }
    }
}

impl TransformerEncoder {
    pub fn has_prefix(&self) -> bool {
        self.layers.iter().any(|l| l.prompt_embeddings.is_some())
    }

    /// Run every layer; returns the last output and each layer's output, all of length L.
    /// Prefix prompts (§2.5): at the first layer with `prompt_embeddings` they are inserted right
    /// after `<cls>` (the padding mask gains never-masked entries there), at later such layers
    /// the previous prompt outputs are replaced, and after the last layer they are stripped.
    /// A layer whose prompt outputs would be replaced or stripped right after it skips computing
    /// them (same result, less work: their queries, FFN rows and activations).
    pub fn forward(
        &self,
        mut h: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
    ) -> (Tensor<3>, Vec<Tensor<3>>) {
        let mut outs = Vec::with_capacity(self.layers.len());
        // prompt positions in the current `h`, and in the sequence the prompts lengthen
        let (mut in_h, mut n_prompt) = (0usize, 0usize);
        let mut mask_cur = mask.clone();
        for (i, l) in self.layers.iter().enumerate() {
            if let Some(p) = &l.prompt_embeddings {
                let [b, len, d] = h.dims();
                let t = p.dims()[1];
                let prompts = p.val().expand([b, t, d]);
                let cls = h.clone().narrow(1, 0, 1);
                let rest = h.narrow(1, 1 + in_h, len - 1 - in_h);
                h = Tensor::cat(vec![cls, prompts, rest], 1);
                in_h = t;
                if n_prompt == 0 {
                    mask_cur = mask.clone().map(|m| extend_mask(m, t));
                    n_prompt = t;
                }
            }
            let next_replaces = self
                .layers
                .get(i + 1)
                .is_none_or(|n| n.prompt_embeddings.is_some());
            if in_h > 0 && next_replaces {
                let [_, len, _] = h.dims();
                let m = mask_cur.clone().map(|m| m.narrow(2, 0, len - in_h));
                h = l.forward_skipping_prompts(h, m, in_h);
                in_h = 0;
            } else {
                h = l.forward(h, mask_cur.clone());
            }
            outs.push(strip_prompts(h.clone(), in_h));
        }
        (strip_prompts(h, in_h), outs)
    }
}

/// `[x_cls, x[1 + n..]]`: the sequence without `n` prompt positions after `<cls>`.
fn strip_prompts(h: Tensor<3>, n: usize) -> Tensor<3> {
    if n == 0 {
        return h;
    }
    let len = h.dims()[1];
    let cls = h.clone().narrow(1, 0, 1);
    Tensor::cat(vec![cls, h.narrow(1, 1 + n, len - 1 - n)], 1)
}

/// A `[B, 1, L, L]` key-padding mask for the sequence with `t` never-masked positions inserted
/// after `<cls>`: `[B, 1, L + t, L + t]`.
fn extend_mask(m: Tensor<4, Bool>, t: usize) -> Tensor<4, Bool> {
    let [b, _, _, lk] = m.dims();
    let row = m.narrow(2, 0, 1); // every query row is the same key-padding row
    let dev = row.device();
    let free =
        Tensor::<4, Bool>::from_data(TensorData::new(vec![false; b * t], [b, 1, 1, t]), &dev);
    let row = Tensor::cat(
        vec![row.clone().narrow(3, 0, 1), free, row.narrow(3, 1, lk - 1)],
        3,
    );
    row.expand([b, 1, lk + t, lk + t])
}

impl ExprDecoder {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let x = leaky_relu(self.fc[0].forward(x), 0.01);
        let x = leaky_relu(self.fc[1].forward(x), 0.01);
        self.fc[2].forward(x).squeeze_dim::<2>(2)
    }
}

impl ClsDecoder {
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        for (l, n) in self.linears.iter().zip(&self.norms) {
            x = n.forward(relu(l.forward(x)));
        }
        self.out_layer.forward(x)
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

/// Walks parameters with their state-dict keys (see [`ScGpt::visit_params`]).
pub trait ParamVisitor {
    fn linear(&mut self, key: &str, m: &mut Linear);
    fn layer_norm(&mut self, key: &str, m: &mut LayerNorm);
    fn embedding(&mut self, key: &str, m: &mut Embedding);
    /// A bare 2-D parameter stored as-is (PyTorch layout), e.g. `lora_A`.
    fn tensor2(&mut self, key: &str, p: &mut Param<Tensor<2>>);
    /// A bare 3-D parameter stored as-is, e.g. `prompt_embeddings`.
    fn tensor3(&mut self, key: &str, p: &mut Param<Tensor<3>>);
}

struct KeyLister(Vec<(String, Vec<usize>)>);
impl ParamVisitor for KeyLister {
    fn linear(&mut self, key: &str, m: &mut Linear) {
        let [din, dout] = m.weight.dims();
        self.0.push((format!("{key}.weight"), vec![dout, din]));
        if m.bias.is_some() {
            self.0.push((format!("{key}.bias"), vec![dout]));
        }
    }
    fn layer_norm(&mut self, key: &str, m: &mut LayerNorm) {
        let [d] = m.gamma.dims();
        self.0.push((format!("{key}.weight"), vec![d]));
        self.0.push((format!("{key}.bias"), vec![d]));
    }
    fn embedding(&mut self, key: &str, m: &mut Embedding) {
        self.0
            .push((format!("{key}.weight"), m.weight.dims().to_vec()));
    }
    fn tensor2(&mut self, key: &str, p: &mut Param<Tensor<2>>) {
        self.0.push((key.to_string(), p.dims().to_vec()));
    }
    fn tensor3(&mut self, key: &str, p: &mut Param<Tensor<3>>) {
        self.0.push((key.to_string(), p.dims().to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ones(dev: &Device) -> Tensor<2> {
        Tensor::<2>::ones([500, 400], dev)
    }

    /// The parallel-mask dropout keeps a fraction 1-p of the values, scaled by 1/(1-p), is
    /// reproducible under `Device::seed`, and is the identity outside training.
    #[test]
    fn dropout_rate_scale_seed_and_inference() {
        let plain = Device::flex();
        let dev = plain.clone().autodiff();
        let d = DropoutConfig::new(0.2).init();
        let run = |seed: u64| -> Vec<f32> {
            dev.seed(seed);
            drop(&d, ones(&dev))
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let a = run(1);
        let zeros = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
        assert!((zeros - 0.2).abs() < 0.005, "dropped fraction {zeros}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert_eq!(a, run(1), "same seed, same mask");
        assert_ne!(a, run(2), "another seed, another mask");
        // inference: plain device, or a module switched off by valid()
        let x: Vec<f32> = drop(&d, ones(&plain)).into_data().try_to_vec().unwrap();
        assert!(x.iter().all(|&v| v == 1.0));
    }
}
