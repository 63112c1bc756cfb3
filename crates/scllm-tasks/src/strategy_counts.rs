//! Trainable and total parameters of every adaptation strategy a family hosts (`finetune
//! --dry-run`).

use scllm_models::peft::attach;
use scllm_models::{param_counts, CellModel, Device, Family, PeftConfig, Strategy};

/// Trainable and total parameters of one strategy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StrategyCount {
    pub method: Strategy,
    pub trainable: usize,
    pub total: usize,
    pub trainable_fraction: f64,
}

/// Parameter counts of every strategy `family` hosts, attached to `base` (which has its head).
pub fn strategy_counts<M: CellModel>(
    base: &M,
    family: Family,
    peft: &PeftConfig,
    dev: &Device,
) -> anyhow::Result<Vec<StrategyCount>> {
    let mut rows = Vec::new();
    // a strategy the family cannot host (scBERT, CellPLM: prefix) has no row
    for s in Strategy::ALL.into_iter().filter(|&s| family.supports(s)) {
        let mut p = peft.clone();
        if s == Strategy::Full {
            // freezing layers is an option of full fine-tuning too; other knobs do not apply
            p = PeftConfig {
                freeze_layers: peft.freeze_layers,
                ..PeftConfig::default()
            };
        }
        let m = attach(base.clone(), s, &p, dev)?;
        let (trainable, total) = param_counts(&m);
        rows.push(StrategyCount {
            method: s,
            trainable,
            total,
            trainable_fraction: trainable as f64 / total as f64,
        });
    }
    Ok(rows)
}
