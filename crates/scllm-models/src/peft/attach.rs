//! Attaching a strategy's adapters at a family's sites, and setting what trains.

use burn::module::Param;
use burn::tensor::{Device, Tensor};

use super::adapter::Adapter;
use super::config::{PeftConfig, PeftState, Strategy};
use super::lora::Lora;
use super::trainable::{strategy_of, Trainability};
use crate::error::{ModelError, Result};
use crate::model::CellModel;

/// Attach `strategy`'s adapters at the sites `model`'s family names and set which parameters
/// train (by structure: the head and the adapters, or everything for `full`). Works on a plain
/// device (the setting takes effect on `.train()`) or on an autodiff device. A model that
/// already has adapters, a strategy other than `full` on a model without a classifier head, and
/// a strategy the family has no site for are refused.
pub fn attach<M: CellModel>(
    mut model: M,
    strategy: Strategy,
    cfg: &PeftConfig,
    dev: &Device,
) -> Result<M> {
    if model.peft_state().is_some() {
        return Err(ModelError::Invalid(
            "the model already has adapters attached".into(),
        ));
    }
    let family = model.family();
    let d = model.d_model();
    let nlayers = model.n_layers();
    cfg.validate(strategy, d, nlayers)?;
    if strategy != Strategy::Full && model.n_classes() == 0 {
        return Err(ModelError::Invalid(format!(
            "strategy {strategy} trains the classifier head, but the model has none (build it with n_cls > 0)"
        )));
    }
    let unsupported = |what: &str| {
        ModelError::Invalid(format!(
            "{family} models cannot host the {strategy} strategy: {what}"
        ))
    };
    let hidden = cfg.bottleneck(d);
    let mut sites = model.sites();
    match strategy {
        Strategy::Full | Strategy::Head => {}
        Strategy::TokenPrompt => {
            let slot = sites
                .token
                .as_mut()
                .ok_or_else(|| unsupported("the family names no token-embedding site"))?;
            **slot = Some(Adapter::new(d, hidden, true, 1.0, dev));
        }
        Strategy::EncoderPrompt => {
            for i in cfg.encoder_prompt_layer_list(nlayers) {
                let l = &mut sites.layers[i];
                let (Some(after), Some(par)) =
                    (l.after_attention.as_mut(), l.parallel_ffn.as_mut())
                else {
                    return Err(unsupported("its layers name no adapter sites"));
                };
                **after = Some(Adapter::new(d, hidden, true, 1.0, dev));
                **par = Some(Adapter::new(
                    d,
                    hidden,
                    false,
                    cfg.parallel_adapter_scale,
                    dev,
                ));
            }
        }
        Strategy::Prefix => {
            for i in cfg.prefix_layer_list(nlayers) {
                let slot = sites.layers[i]
                    .prefix
                    .as_mut()
                    .ok_or_else(|| unsupported("its layers take no prompt tokens"))?;
                **slot = Some(Param::from_tensor(Tensor::zeros(
                    [1, cfg.prefix_tokens, d],
                    dev,
                )));
            }
        }
        Strategy::Lora => {
            for i in cfg.lora_layer_list(nlayers) {
                let targets = &mut sites.layers[i].lora;
                if targets.is_empty() {
                    return Err(unsupported("its layers name no LoRA targets"));
                }
                for t in targets.iter_mut() {
                    *t.slot = Some(Lora::new(
                        t,
                        cfg.lora_r,
                        cfg.lora_alpha,
                        cfg.lora_eval_multiplier,
                        dev,
                    ));
                }
            }
        }
    }
    drop(sites);
    model.set_peft_state(Some(PeftState {
        strategy,
        config: cfg.clone(),
    }));
    apply_trainability(&mut model);
    Ok(model)
}

/// Re-apply the strategy's trainability to every parameter (after loading tensors, which
/// makes them trainable).
pub fn apply_trainability<M: CellModel>(model: &mut M) {
    let mut t = Trainability(strategy_of(model));
    model.visit_params(&mut t);
}
