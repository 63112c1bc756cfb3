//! Parameter-efficient fine-tuning, written once for every family (He et al. 2024, scPEFT; see
//! `docs/models/scpeft.md`).
//!
//! Six strategies: `full` (everything trains), `head` (the classifier only), and four with a
//! frozen backbone where the adapters and the whole classifier train:
//! - `token-prompt`: one skip adapter on the token (scGPT: value) embedding;
//! - `encoder-prompt`: a skip adapter after the attention block's LayerNorm and a parallel adapter
//!   (×0.5, added after the FFN's LayerNorm) in layers 0-5;
//! - `prefix`: 64 zero-initialised prompt tokens per layer, after position 0;
//! - `lora`: rank-8 LoRA on the attention's query and value projections of every layer.
//!
//! A family names where each attaches ([`Sites`], its target map, as Hugging Face `peft` keeps
//! one per model type); [`attach()`] places the adapters there and sets what trains from the
//! structure ([`crate::params::Part`]). Adapters save apart from the base model ([`file`](mod@file)),
//! tied to the base weights by SHA-256.

pub mod adapter;
pub mod attach;
pub mod config;
pub mod file;
pub mod layer_adapters;
pub mod lora;
pub mod prefix;
pub mod sites;
pub mod trainable;

pub use adapter::Adapter;
pub use attach::{apply_trainability, attach};
pub use config::{frozen_layers, PeftConfig, PeftState, Strategy};
pub use file::{
    load_adapter, load_adapter_weights, read_adapter_meta, save_adapter, sha256_file, AdapterMeta,
    ADAPTER_META, ADAPTER_WEIGHTS,
};
pub use layer_adapters::LayerAdapters;
pub use lora::{Lora, LoraKeys, LoraLinear, LoraTarget};
pub use prefix::{has_prompts, run_layers, strip_prompts, PromptLayer};
pub use sites::{LayerSites, Sites};
pub use trainable::{param_counts, strategy_of, trains};
