//! scPEFT adapters on scGPT (He et al. 2024; reference: laolintou/scPEFT `model_prompt.py` +
//! `transformer_.py`, and the working prefix prompt of coffee19850519/scPEFT_reproduction), see
//! `shared/docs/reference-models.md` §2.
//!
//! Six strategies: `full` (everything trains), `head` (the `cls_decoder` only), and four with a
//! frozen backbone where the adapters and the whole `cls_decoder` train:
//! - `token-prompt`: one skip adapter in the value encoder, after its LayerNorm (§2.3);
//! - `encoder-prompt`: a skip `Space_Adapter` after LN1 and a parallel `MLP_Adapter` (×0.5,
//!   added after LN2) in layers 0-5 (§2.4);
//! - `prefix`: 64 zero-initialised prompt tokens per layer, after `<cls>` (§2.5);
//! - `lora`: rank-8 LoRA on q and v of the packed `Wqkv` in every layer, plus the `Wqkv` bias (§2.6).
//!
//! Adapter tensors carry the reference's state-dict keys (see [`ScGpt::visit_params`]); which
//! parameters train follows the reference's name rule ([`is_trainable`]). Adapters save apart from
//! the base model ([`save_adapter`] / [`load_adapter`]), tied to the base weights by SHA-256.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_into, write_atomic, write_tensors, Checkpoint, Saver};
use crate::error::{ModelError, Result};
use crate::scgpt::{ParamVisitor, ScGpt, ScGptBuild, ScGptConfig};

/// How a model is fine-tuned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Every parameter trains (the paper's "Full_finetune").
    Full,
    /// Only the `cls_decoder` trains ("Cls_finetune").
    Head,
    /// Deep prefix prompts (`prefix_prompt`).
    Prefix,
    /// LoRA on q and v (`LoRA`).
    Lora,
    /// Value-encoder adapter (`Gene_token_prompt`).
    TokenPrompt,
    /// Per-layer adapters (`Gene_encoder_prompt`).
    EncoderPrompt,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::Full,
        Strategy::Head,
        Strategy::Prefix,
        Strategy::Lora,
        Strategy::TokenPrompt,
        Strategy::EncoderPrompt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Full => "full",
            Strategy::Head => "head",
            Strategy::Prefix => "prefix",
            Strategy::Lora => "lora",
            Strategy::TokenPrompt => "token-prompt",
            Strategy::EncoderPrompt => "encoder-prompt",
        }
    }

    /// Whether the backbone stays frozen (everything but `full`).
    pub fn freezes_backbone(self) -> bool {
        self != Strategy::Full
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Strategy::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!("unknown strategy \"{s}\" (use full, head, prefix, lora, token-prompt or encoder-prompt)")
            })
    }
}

/// Adapter options, with the v1 reference defaults (§2.2-2.6).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PeftConfig {
    /// Adapter bottleneck width = floor(ratio · d) (0.25: 512 → 128).
    pub adapter_mlp_ratio: f64,
    /// Layers with the two encoder-prompt adapters; `None`: the first 6 (reference:
    /// `[1]*6 + [0]*6`), or all of a model with fewer layers.
    pub encoder_prompt_layers: Option<Vec<usize>>,
    /// Scale of the parallel `MLP_Adapter` (reference `self.scale = 0.5`).
    pub parallel_adapter_scale: f64,
    /// Prefix prompt tokens per layer (reference `num_tokens` 64).
    pub prefix_tokens: usize,
    /// Layers with a prefix prompt; `None`: all (reference `n_layers_conf = [1]*12`).
    pub prefix_layers: Option<Vec<usize>>,
    /// LoRA rank (loralib `r`).
    pub lora_r: usize,
    /// LoRA alpha; the update is scaled by alpha / r.
    pub lora_alpha: f64,
    /// Layers with LoRA; `None`: all (v1; the reproduction repo and v2 use 0-5).
    pub lora_layers: Option<Vec<usize>>,
    /// How many ΔW the LoRA layers add at inference. 1 is the mathematically intended model;
    /// 2 reproduces the reference's evaluation quirk (§2.6: loralib merges ΔW into `Wqkv.weight`
    /// on `eval()` and the custom attention adds it again). A parity option only; training
    /// always uses one ΔW.
    pub lora_eval_multiplier: f64,
}

impl Default for PeftConfig {
    fn default() -> Self {
        PeftConfig {
            adapter_mlp_ratio: 0.25,
            encoder_prompt_layers: None,
            parallel_adapter_scale: 0.5,
            prefix_tokens: 64,
            prefix_layers: None,
            lora_r: 8,
            lora_alpha: 1.0,
            lora_layers: None,
            lora_eval_multiplier: 1.0,
        }
    }
}

impl PeftConfig {
    /// The adapter bottleneck width for model width `d`.
    pub fn bottleneck(&self, d: usize) -> usize {
        (self.adapter_mlp_ratio * d as f64).floor() as usize
    }

    fn layers_or_all(v: &Option<Vec<usize>>, nlayers: usize) -> Vec<usize> {
        v.clone().unwrap_or_else(|| (0..nlayers).collect())
    }
    pub fn encoder_prompt_layer_list(&self, nlayers: usize) -> Vec<usize> {
        self.encoder_prompt_layers
            .clone()
            .unwrap_or_else(|| (0..nlayers.min(6)).collect())
    }
    pub fn prefix_layer_list(&self, nlayers: usize) -> Vec<usize> {
        Self::layers_or_all(&self.prefix_layers, nlayers)
    }
    pub fn lora_layer_list(&self, nlayers: usize) -> Vec<usize> {
        Self::layers_or_all(&self.lora_layers, nlayers)
    }

    /// Check the options against a model of width `d` and `nlayers` layers.
    pub fn validate(&self, strategy: Strategy, d: usize, nlayers: usize) -> Result<()> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        let check_layers = |name: &str, l: &[usize]| -> Result<()> {
            if let Some(&i) = l.iter().find(|&&i| i >= nlayers) {
                return bad(format!(
                    "{name}: layer {i} does not exist (the model has {nlayers} layers, 0..{})",
                    nlayers - 1
                ));
            }
            if l.is_empty() {
                return bad(format!("{name}: no layer selected"));
            }
            Ok(())
        };
        match strategy {
            Strategy::TokenPrompt | Strategy::EncoderPrompt => {
                if self.bottleneck(d) == 0 || !self.adapter_mlp_ratio.is_finite() {
                    return bad(format!(
                        "adapter_mlp_ratio {} gives an empty bottleneck for width {d}",
                        self.adapter_mlp_ratio
                    ));
                }
                if strategy == Strategy::EncoderPrompt {
                    check_layers(
                        "encoder_prompt_layers",
                        &self.encoder_prompt_layer_list(nlayers),
                    )?;
                }
            }
            Strategy::Prefix => {
                if self.prefix_tokens == 0 {
                    return bad("prefix_tokens must be at least 1".into());
                }
                check_layers("prefix_layers", &self.prefix_layer_list(nlayers))?;
            }
            Strategy::Lora => {
                if self.lora_r == 0 {
                    return bad("lora_r must be at least 1".into());
                }
                check_layers("lora_layers", &self.lora_layer_list(nlayers))?;
            }
            Strategy::Full | Strategy::Head => {}
        }
        Ok(())
    }
}

/// The strategy attached to a model.
#[derive(Clone, Debug, PartialEq)]
pub struct PeftState {
    pub strategy: Strategy,
    pub config: PeftConfig,
}

/// scPEFT `Adapter`: `z = D_fc2(GELU(D_fc1(x)))`, returning `x + z` with `skip`, else `z`.
#[derive(Module, Debug)]
pub struct Adapter {
    /// `D_fc1`: Linear(d → bottleneck)
    pub d_fc1: Linear,
    /// `D_fc2`: Linear(bottleneck → d)
    pub d_fc2: Linear,
    pub skip: bool,
}

impl Adapter {
    /// PyTorch's Linear init (kaiming-uniform a=√5, bias U(±1/√fan_in)), as burn's default.
    pub fn new(d: usize, hidden: usize, skip: bool, dev: &Device) -> Self {
        Adapter {
            d_fc1: LinearConfig::new(d, hidden).init(dev),
            d_fc2: LinearConfig::new(hidden, d).init(dev),
            skip,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let z = self.d_fc2.forward(gelu(self.d_fc1.forward(x.clone())));
        if self.skip {
            x + z
        } else {
            z
        }
    }

    pub(crate) fn visit(&mut self, key: &str, v: &mut impl ParamVisitor) {
        v.linear(&format!("{key}.D_fc1"), &mut self.d_fc1);
        v.linear(&format!("{key}.D_fc2"), &mut self.d_fc2);
    }
}

/// loralib `MergedLinear(d, 3d, r, enable_lora=[True, False, True])` on the packed `Wqkv`:
/// `lora_A [2r, d]` (rows 0..r: A_q, r..2r: A_v) and `lora_B [2d, r]` (rows 0..d: B_q, d..2d: B_v);
/// `Δqkv = s · [x A_qᵀ B_qᵀ ; 0 ; x A_vᵀ B_vᵀ]` with s = alpha / r. k is untouched.
#[derive(Module, Debug)]
pub struct LoraQv {
    pub lora_a: Param<Tensor<2>>,
    pub lora_b: Param<Tensor<2>>,
    /// alpha / r
    pub scaling: f64,
    /// ΔW multiplier outside training (see [`PeftConfig::lora_eval_multiplier`]).
    pub eval_multiplier: f64,
}

impl LoraQv {
    /// A: kaiming-uniform a=√5 (U(±1/√d)); B: zeros, so a fresh LoRA leaves the model unchanged.
    pub fn new(d: usize, r: usize, alpha: f64, eval_multiplier: f64, dev: &Device) -> Self {
        let bound = 1.0 / (d as f64).sqrt();
        LoraQv {
            lora_a: Param::from_tensor(Tensor::random(
                [2 * r, d],
                Distribution::Uniform(-bound, bound),
                dev,
            )),
            lora_b: Param::from_tensor(Tensor::zeros([2 * d, r], dev)),
            scaling: alpha / r as f64,
            eval_multiplier,
        }
    }

    /// The LoRA update of the packed projection for `x` `[B, L, d]`: `[B, L, 3d]`.
    pub fn delta(&self, x: Tensor<3>, training: bool) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let r = self.lora_a.dims()[0] / 2;
        let x = x.reshape([b * l, d]);
        let a = self.lora_a.val();
        let bm = self.lora_b.val();
        let xa = x.matmul(a.transpose()); // [n, 2r]
        let dq = xa
            .clone()
            .narrow(1, 0, r)
            .matmul(bm.clone().narrow(0, 0, d).transpose());
        let dv = xa.narrow(1, r, r).matmul(bm.narrow(0, d, d).transpose());
        let dk = dq.zeros_like();
        let mult = if training { 1.0 } else { self.eval_multiplier };
        (Tensor::cat(vec![dq, dk, dv], 1) * (self.scaling * mult)).reshape([b, l, 3 * d])
    }
}

/// The reference's trainability rule (§2.7), by state-dict key: `full` trains everything, `head`
/// the names containing `cls`; the frozen-backbone strategies unfreeze names containing `lora_`,
/// `cls`, `prompt_embeddings` or `Adapter`, and for LoRA also the `Wqkv.bias` of the LoRA layers.
pub fn is_trainable(strategy: Strategy, key: &str, lora_layers: &[usize]) -> bool {
    match strategy {
        Strategy::Full => true,
        Strategy::Head => key.contains("cls"),
        _ => {
            if ["lora_", "cls", "prompt_embeddings", "Adapter"]
                .iter()
                .any(|p| key.contains(p))
            {
                return true;
            }
            strategy == Strategy::Lora
                && lora_layers
                    .iter()
                    .any(|i| key == format!("transformer_encoder.layers.{i}.self_attn.Wqkv.bias"))
        }
    }
}

/// Sets each parameter's gradient requirement from its key.
struct Trainability<'a> {
    rule: &'a dyn Fn(&str) -> bool,
}

fn set_rg<const D: usize>(p: &mut Param<Tensor<D>>, on: bool) {
    *p = p.clone().set_require_grad(on);
}

impl ParamVisitor for Trainability<'_> {
    fn linear(&mut self, key: &str, m: &mut Linear) {
        set_rg(&mut m.weight, (self.rule)(&format!("{key}.weight")));
        if let Some(b) = &mut m.bias {
            set_rg(b, (self.rule)(&format!("{key}.bias")));
        }
    }
    fn layer_norm(&mut self, key: &str, m: &mut LayerNorm) {
        set_rg(&mut m.gamma, (self.rule)(&format!("{key}.weight")));
        if let Some(b) = &mut m.beta {
            set_rg(b, (self.rule)(&format!("{key}.bias")));
        }
    }
    fn embedding(&mut self, key: &str, m: &mut Embedding) {
        set_rg(&mut m.weight, (self.rule)(&format!("{key}.weight")));
    }
    fn tensor2(&mut self, key: &str, p: &mut Param<Tensor<2>>) {
        set_rg(p, (self.rule)(key));
    }
    fn tensor3(&mut self, key: &str, p: &mut Param<Tensor<3>>) {
        set_rg(p, (self.rule)(key));
    }
}

impl ScGpt {
    /// The strategy in force (`full` for a plain model).
    pub fn strategy(&self) -> Strategy {
        self.peft
            .as_ref()
            .map(|p| p.strategy)
            .unwrap_or(Strategy::Full)
    }

    /// Whether the parameter under `key` trains under this model's strategy.
    pub fn is_trainable(&self, key: &str) -> bool {
        let n = self.transformer_encoder.layers.len();
        match &self.peft {
            None => true,
            Some(p) => is_trainable(p.strategy, key, &p.config.lora_layer_list(n)),
        }
    }

    /// Attach the strategy's adapters (placed as in §2.3-2.6) and set which parameters train
    /// (§2.7). Works on a plain device (the setting takes effect on `.train()`) or on an autodiff
    /// device. A model that already has adapters is refused.
    pub fn with_peft(mut self, strategy: Strategy, cfg: &PeftConfig, dev: &Device) -> Result<Self> {
        if self.peft.is_some() {
            return Err(ModelError::Invalid(
                "the model already has adapters attached".into(),
            ));
        }
        let d = self.d_model();
        let nlayers = self.transformer_encoder.layers.len();
        cfg.validate(strategy, d, nlayers)?;
        if strategy != Strategy::Full && self.cls_decoder.is_none() {
            return Err(ModelError::Invalid(format!(
                "strategy {strategy} trains the cls_decoder, but the model has none (build it with n_cls > 0)"
            )));
        }
        let hidden = cfg.bottleneck(d);
        match strategy {
            Strategy::Full | Strategy::Head => {}
            Strategy::TokenPrompt => {
                self.value_encoder.space_adapter = Some(Adapter::new(d, hidden, true, dev));
            }
            Strategy::EncoderPrompt => {
                for i in cfg.encoder_prompt_layer_list(nlayers) {
                    let l = &mut self.transformer_encoder.layers[i];
                    l.space_adapter = Some(Adapter::new(d, hidden, true, dev));
                    l.mlp_adapter = Some(Adapter::new(d, hidden, false, dev));
                    l.mlp_adapter_scale = cfg.parallel_adapter_scale;
                }
            }
            Strategy::Prefix => {
                for i in cfg.prefix_layer_list(nlayers) {
                    self.transformer_encoder.layers[i].prompt_embeddings = Some(
                        Param::from_tensor(Tensor::zeros([1, cfg.prefix_tokens, d], dev)),
                    );
                }
            }
            Strategy::Lora => {
                for i in cfg.lora_layer_list(nlayers) {
                    self.transformer_encoder.layers[i].self_attn.lora = Some(LoraQv::new(
                        d,
                        cfg.lora_r,
                        cfg.lora_alpha,
                        cfg.lora_eval_multiplier,
                        dev,
                    ));
                }
            }
        }
        self.peft = Some(PeftState {
            strategy,
            config: cfg.clone(),
        });
        self.apply_trainability();
        Ok(self)
    }

    /// Re-apply the strategy's trainability to every parameter (after loading tensors, which
    /// makes them trainable).
    pub fn apply_trainability(&mut self) {
        let n = self.transformer_encoder.layers.len();
        let state = self
            .peft
            .as_ref()
            .map(|p| (p.strategy, p.config.lora_layer_list(n)));
        let rule = move |k: &str| match &state {
            None => true,
            Some((s, lora)) => is_trainable(*s, k, lora),
        };
        let mut t = Trainability { rule: &rule };
        self.visit_params(&mut t);
    }

    /// `(trainable, total)` parameter counts under the model's strategy.
    pub fn param_counts(&self) -> (usize, usize) {
        let mut trainable = 0;
        let mut total = 0;
        for (k, shape) in self.expected_keys() {
            let n: usize = shape.iter().product();
            total += n;
            if self.is_trainable(&k) {
                trainable += n;
            }
        }
        (trainable, total)
    }

    /// Every parameter key with its PyTorch-layout shape and whether it trains.
    pub fn param_table(&self) -> Vec<(String, Vec<usize>, bool)> {
        self.expected_keys()
            .into_iter()
            .map(|(k, s)| {
                let t = self.is_trainable(&k);
                (k, s, t)
            })
            .collect()
    }
}

/// `(trainable, total)` parameter counts of a model of this shape under `strategy`, from the
/// shapes alone (no weights, no tensors): what `finetune --dry-run` reports from `args.json` and
/// `vocab.json`. Agrees with [`ScGpt::param_counts`] (tested).
///
/// Whole-human config, n_cls = 8, no MVC: full 51 335 689; token-prompt 663 176; encoder-prompt
/// 2 112 008; prefix 924 680; lora (v1, 12 layers) 746 504. The paper reports 1.27M for LoRA,
/// which the reference code does not give: r = 8 on q and v of all 12 layers plus the Wqkv
/// biases is 215 040 adapter parameters, 0.75M with the classifier (§2.7; the extra 0.53M is the
/// size of one more classifier or expression decoder).
pub fn count_params(
    cfg: &ScGptConfig,
    build: &ScGptBuild,
    strategy: Strategy,
    peft: &PeftConfig,
) -> Result<(usize, usize)> {
    let d = cfg.embsize;
    let nl = cfg.nlayers;
    peft.validate(strategy, d, nl)?;
    let lin = |i: usize, o: usize| i * o + o;
    let ln = 2 * d;
    let embed = build.ntoken * d + ln;
    let value = lin(1, d) + lin(d, d) + ln;
    let layer = lin(d, 3 * d) + lin(d, d) + lin(d, cfg.d_hid) + lin(cfg.d_hid, d) + 2 * ln;
    let expr = 2 * lin(d, d) + lin(d, 1);
    let cls = if build.n_cls > 0 {
        (cfg.n_layers_cls - 1) * (lin(d, d) + ln) + lin(d, build.n_cls)
    } else {
        0
    };
    let mvc = if build.do_mvc { lin(d, d) + d * d } else { 0 };
    let base = embed + value + nl * layer + expr + cls + mvc;
    let h = peft.bottleneck(d);
    let adapter = lin(d, h) + lin(h, d);
    let (adapters, extra_trainable) = match strategy {
        Strategy::Full | Strategy::Head => (0, 0),
        Strategy::TokenPrompt => (adapter, 0),
        Strategy::EncoderPrompt => (2 * adapter * peft.encoder_prompt_layer_list(nl).len(), 0),
        Strategy::Prefix => (peft.prefix_tokens * d * peft.prefix_layer_list(nl).len(), 0),
        Strategy::Lora => {
            let n = peft.lora_layer_list(nl).len();
            (n * (2 * peft.lora_r * d + 2 * d * peft.lora_r), n * 3 * d)
        }
    };
    let total = base + adapters;
    let trainable = match strategy {
        Strategy::Full => total,
        Strategy::Head => cls,
        _ => adapters + extra_trainable + cls,
    };
    Ok((trainable, total))
}

/// Adapter file format version written by [`save_adapter`].
pub const ADAPTER_FORMAT_VERSION: u32 = 1;

/// The base model's shape, recorded with an adapter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BaseArgs {
    pub embsize: usize,
    pub nheads: usize,
    pub d_hid: usize,
    pub nlayers: usize,
    pub n_layers_cls: usize,
    pub ntoken: usize,
    pub dropout: f64,
}

impl BaseArgs {
    pub fn new(cfg: &ScGptConfig, ntoken: usize) -> Self {
        BaseArgs {
            embsize: cfg.embsize,
            nheads: cfg.nheads,
            d_hid: cfg.d_hid,
            nlayers: cfg.nlayers,
            n_layers_cls: cfg.n_layers_cls,
            ntoken,
            dropout: cfg.dropout,
        }
    }
}

/// `adapter.json`: what an adapter needs beyond its tensors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdapterMeta {
    pub format_version: u32,
    pub strategy: Strategy,
    pub peft: PeftConfig,
    /// Classes of the `cls_decoder`.
    pub n_cls: usize,
    /// Class names, index = class id.
    pub labels: Vec<String>,
    /// Genes the model was fine-tuned on (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genes: Option<Vec<String>>,
    /// SHA-256 (hex) of the base weights file the adapter was trained on.
    pub base_weights_sha256: String,
    pub base_args: BaseArgs,
}

impl AdapterMeta {
    /// The meta of `model` (its strategy and options) with the given labels and base.
    pub fn for_model(
        model: &ScGpt,
        cfg: &ScGptConfig,
        labels: Vec<String>,
        genes: Option<Vec<String>>,
        base_weights_sha256: String,
    ) -> Self {
        let ntoken = model.encoder.embedding.weight.dims()[0];
        let n_cls = model
            .cls_decoder
            .as_ref()
            .map(|c| c.out_layer.weight.dims()[1])
            .unwrap_or(0);
        AdapterMeta {
            format_version: ADAPTER_FORMAT_VERSION,
            strategy: model.strategy(),
            peft: model
                .peft
                .as_ref()
                .map(|p| p.config.clone())
                .unwrap_or_default(),
            n_cls,
            labels,
            genes,
            base_weights_sha256,
            base_args: BaseArgs::new(cfg, ntoken),
        }
    }
}

pub const ADAPTER_WEIGHTS: &str = "adapter.safetensors";
pub const ADAPTER_META: &str = "adapter.json";

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let path = path.as_ref();
    let mut f = std::fs::File::open(path)
        .map_err(|e| ModelError::file(path, format!("cannot open: {e}")))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ModelError::file(path, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Write `dir/adapter.safetensors` (the trainable tensors, `cls_decoder` included, under the
/// reference's keys; every tensor for `full`) and `dir/adapter.json`, each atomically. The base
/// weights are never written.
pub fn save_adapter(model: &ScGpt, dir: impl AsRef<Path>, meta: &AdapterMeta) -> Result<()> {
    let dir = dir.as_ref();
    if meta.strategy != model.strategy() {
        return Err(ModelError::Invalid(format!(
            "adapter meta says {}, the model has {}",
            meta.strategy,
            model.strategy()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ModelError::file(dir, format!("cannot create: {e}")))?;
    let mut s = Saver { out: Vec::new() };
    model.clone().visit_params(&mut s);
    let tensors: Vec<_> = s
        .out
        .into_iter()
        .filter(|(k, _, _)| model.is_trainable(k))
        .collect();
    write_tensors(&dir.join(ADAPTER_WEIGHTS), tensors)?;
    let json = serde_json::to_vec_pretty(meta)
        .map_err(|e| ModelError::Backend(format!("adapter.json: {e}")))?;
    write_atomic(&dir.join(ADAPTER_META), &json)
}

/// Read `dir/adapter.json`.
pub fn read_adapter_meta(dir: impl AsRef<Path>) -> Result<AdapterMeta> {
    let path = dir.as_ref().join(ADAPTER_META);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ModelError::file(&path, format!("cannot read: {e} (expected an adapter folder written by scllm finetune, with adapter.json and adapter.safetensors)")))?;
    let meta: AdapterMeta = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(&path, format!("not an adapter.json: {e}")))?;
    if meta.format_version != ADAPTER_FORMAT_VERSION {
        return Err(ModelError::file(
            &path,
            format!(
                "adapter format version {} is not supported (this scllm reads version {ADAPTER_FORMAT_VERSION})",
                meta.format_version
            ),
        ));
    }
    Ok(meta)
}

/// Load adapter tensors from a safetensors file into `model` (which must already have the
/// adapters attached): every trainable tensor must be in the file with its shape, and the file
/// must hold nothing else. Trainability is re-applied afterwards.
pub fn load_adapter_weights(model: &mut ScGpt, file: impl AsRef<Path>, dev: &Device) -> Result<()> {
    let file = file.as_ref();
    let ckpt = Checkpoint::open(file)?;
    let report = load_into(model, &ckpt, false, dev)?;
    let mut problems = Vec::new();
    let missing: Vec<&String> = report
        .missing
        .iter()
        .filter(|k| model.is_trainable(k))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "missing {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !report.skipped.is_empty() {
        problems.push(format!(
            "shape mismatch {}",
            report
                .skipped
                .iter()
                .map(|s| format!("{} (file {:?}, model {:?})", s.key, s.found, s.expected))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !report.unexpected.is_empty() {
        problems.push(format!("unexpected {}", report.unexpected.join(", ")));
    }
    model.apply_trainability();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ModelError::file(
            file,
            format!(
                "does not fit the model's {} adapters: {}",
                model.strategy(),
                problems.join("; ")
            ),
        ))
    }
}

/// Attach the adapter saved in `dir` to `base` and load its tensors. `base_sha256` is the hash of
/// the base weights file `base` was loaded from ([`sha256_file`]); it must be the one the adapter
/// was trained on. A `cls_decoder` of another class count is rebuilt to the adapter's.
pub fn load_adapter(
    mut base: ScGpt,
    dir: impl AsRef<Path>,
    base_sha256: &str,
    dev: &Device,
) -> Result<(ScGpt, AdapterMeta)> {
    let dir = dir.as_ref();
    let meta = read_adapter_meta(dir)?;
    if !meta.base_weights_sha256.eq_ignore_ascii_case(base_sha256) {
        return Err(ModelError::Invalid(format!(
            "{}: the adapter was trained on base weights with SHA-256 {}, but the base model given has {}; \
             load the base model it was trained on (the same best_model.pt / model.safetensors), or fine-tune \
             the adapter again on this one",
            dir.display(),
            meta.base_weights_sha256,
            base_sha256
        )));
    }
    let d = base.d_model();
    let nlayers = base.transformer_encoder.layers.len();
    let a = &meta.base_args;
    if a.embsize != d || a.nlayers != nlayers {
        return Err(ModelError::Invalid(format!(
            "{}: the adapter is for a model with embsize {} and {} layers, the base has {d} and {nlayers}",
            dir.display(),
            a.embsize,
            a.nlayers
        )));
    }
    let n_cls_now = base
        .cls_decoder
        .as_ref()
        .map(|c| c.out_layer.weight.dims()[1]);
    if meta.n_cls > 0 && n_cls_now != Some(meta.n_cls) {
        let linears = (1..a.n_layers_cls.max(1))
            .map(|_| LinearConfig::new(d, d).init(dev))
            .collect();
        let norms = (1..a.n_layers_cls.max(1))
            .map(|_| {
                burn::nn::LayerNormConfig::new(d)
                    .with_epsilon(1e-5)
                    .init(dev)
            })
            .collect();
        base.cls_decoder = Some(crate::scgpt::ClsDecoder {
            linears,
            norms,
            out_layer: LinearConfig::new(d, meta.n_cls).init(dev),
        });
    }
    let mut model = base.with_peft(meta.strategy, &meta.peft, dev)?;
    load_adapter_weights(&mut model, dir.join(ADAPTER_WEIGHTS), dev)?;
    Ok((model, meta))
}
