//! The six strategies, their options (the v1 reference defaults), and the state a model
//! carries once adapters are attached.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

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

/// Adapter options, with the v1 reference defaults (docs/models/scpeft.md §2-6).
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
    /// 2 reproduces the reference's evaluation quirk (docs/models/scpeft.md §6.4: loralib merges ΔW into `Wqkv.weight`
    /// on `eval()` and the custom attention adds it again). A parity option only; training
    /// always uses one ΔW.
    pub lora_eval_multiplier: f64,
    /// Layers `0..freeze_layers` never train, whatever the strategy (Geneformer's
    /// `Classifier(freeze_layers=K)`, which freezes `bert.encoder.layer[:K]`).
    pub freeze_layers: usize,
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
            freeze_layers: 0,
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
        if self.freeze_layers > nlayers {
            return bad(format!(
                "freeze_layers {} is more than the model's {nlayers} layers",
                self.freeze_layers
            ));
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

/// Layers `0..k` a family visits as [`crate::params::Part::Frozen`] (the `freeze_layers` option).
pub fn frozen_layers(state: Option<&PeftState>) -> usize {
    state.map(|p| p.config.freeze_layers).unwrap_or(0)
}
