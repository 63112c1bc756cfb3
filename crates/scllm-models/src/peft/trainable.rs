//! What trains under a strategy: decided by the [`Part`] each parameter is visited as.

use burn::module::Param;
use burn::tensor::Tensor;

use super::config::Strategy;
use crate::model::CellModel;
use crate::param_table::param_table;
use crate::params::{Layout, ParamVisitor, Part};

/// The strategy in force on `model` (`full` for a plain model).
pub fn strategy_of<M: CellModel>(model: &M) -> Strategy {
    model
        .peft_state()
        .map(|p| p.strategy)
        .unwrap_or(Strategy::Full)
}

/// Whether a parameter of `part` trains under `strategy`.
pub fn trains(strategy: Strategy, part: Part) -> bool {
    match part {
        Part::Frozen => false,
        Part::Head => true,
        Part::Backbone => strategy == Strategy::Full,
        Part::Adapter => strategy != Strategy::Head,
    }
}

/// `(trainable, total)` parameter counts of `model` under its strategy.
pub fn param_counts<M: crate::CellModel>(model: &M) -> (usize, usize) {
    let s = strategy_of(model);
    param_table(model).iter().fold((0, 0), |(t, n), p| {
        (
            t + if trains(s, p.part) { p.numel() } else { 0 },
            n + p.numel(),
        )
    })
}

/// Sets each parameter's gradient requirement from its part and the strategy.
pub(crate) struct Trainability(pub Strategy);

impl ParamVisitor for Trainability {
    fn param<const D: usize>(
        &mut self,
        _key: &str,
        part: Part,
        _layout: Layout,
        p: &mut Param<Tensor<D>>,
    ) {
        *p = p.clone().set_require_grad(trains(self.0, part));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_trains_under_each_strategy() {
        use Strategy::*;
        for s in Strategy::ALL {
            assert!(trains(s, Part::Head), "{s}: the head always trains");
            assert!(!trains(s, Part::Frozen), "{s}: frozen never trains");
            assert_eq!(trains(s, Part::Backbone), s == Full, "{s}");
        }
        assert!(!trains(Head, Part::Adapter));
        for s in [Prefix, Lora, TokenPrompt, EncoderPrompt] {
            assert!(trains(s, Part::Adapter), "{s}");
        }
    }
}
