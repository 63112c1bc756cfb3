//! Writing a query's conformal prediction sets ([`crate::conformal`]) into its `obs` and `uns`:
//! the one layout `scllm annotate --coverage` and `scllm baseline --coverage` share.
//!
//! * `obs['prediction_set']`: the set's labels joined by `|` (empty string: no label fits);
//! * `obs['conformal_label']`: the single label, `Unknown` for an empty set, `ambiguous` for
//!   several;
//! * `obs['prediction_set_size']`;
//! * `uns` entries `coverage` and `conformal_rule` (score, and which cells calibrated it).

use scllm_io::{Column, DataFrame, UnsValue};
use serde::Serialize;

use crate::conformal::ConformalCalibrator;

/// What the sets of a query came to.
#[derive(Clone, Debug, Serialize)]
pub struct SetSummary {
    pub coverage: f64,
    pub mean_set_size: f64,
    /// Cells with an empty set (`Unknown`).
    pub unknown: usize,
    /// Cells with several labels (`ambiguous`).
    pub ambiguous: usize,
}

/// Write `sets` (one per cell, class indices of `cal`) to `obs`; returns the `uns` entries
/// describing them (`calibrated_on` says which held-out cells fitted `cal`) and the summary.
pub fn write_prediction_sets(
    obs: &mut DataFrame,
    cal: &ConformalCalibrator,
    sets: &[Vec<u32>],
    calibrated_on: &str,
) -> (Vec<(String, UnsValue)>, SetSummary) {
    let text: Vec<Option<String>> = sets.iter().map(|s| Some(cal.set_text(s))).collect();
    let label: Vec<Option<String>> = sets
        .iter()
        .map(|s| Some(cal.set_label(s, "Unknown")))
        .collect();
    obs.set("prediction_set", Column::categorical_from(&text));
    obs.set("conformal_label", Column::categorical_from(&label));
    obs.set(
        "prediction_set_size",
        Column::I64(sets.iter().map(|s| s.len() as i64).collect()),
    );
    let uns = vec![
        ("coverage".to_string(), UnsValue::F64(cal.coverage)),
        (
            "conformal_rule".to_string(),
            UnsValue::Str(format!(
                "split-conformal, class-conditional, {}; calibrated on {calibrated_on}",
                cal.kind.rule()
            )),
        ),
    ];
    let n = sets.len().max(1) as f64;
    let summary = SetSummary {
        coverage: cal.coverage,
        mean_set_size: sets.iter().map(|s| s.len()).sum::<usize>() as f64 / n,
        unknown: sets.iter().filter(|s| s.is_empty()).count(),
        ambiguous: sets.iter().filter(|s| s.len() > 1).count(),
    };
    (uns, summary)
}
