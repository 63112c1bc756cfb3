//! Learning curves: loss and accuracy against epoch, train and validation, side by side.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{draw_title, render, DResult, Figure};
use super::line_chart::{line_panel, Line};
use crate::{invalid, Result};

/// One epoch of a training run, as the learning curves draw it; any field may be missing.
/// scllm-train's `EpochLog::to_record` makes them from `train_log.jsonl`, where the log is read
/// next to its writer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochRecord {
    pub epoch: Option<f64>,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub train_acc: Option<f64>,
    pub val_acc: Option<f64>,
    /// Drawn in the accuracy panel when present.
    pub val_macro_f1: Option<f64>,
}

struct Curves {
    recs: Vec<EpochRecord>,
    title: String,
}

type Getter = fn(&EpochRecord) -> Option<f64>;

impl Curves {
    fn x(&self, i: usize) -> f64 {
        self.recs[i].epoch.unwrap_or((i + 1) as f64)
    }

    fn lines<'a>(&self, series: &[(&'a str, Getter, RGBColor)]) -> Vec<Line<'a>> {
        series
            .iter()
            .map(|(name, g, c)| {
                let pts = (0..self.recs.len())
                    .filter_map(|i| g(&self.recs[i]).map(|v| (self.x(i), v)))
                    .collect();
                (*name, pts, *c)
            })
            .collect()
    }
}

impl Figure for Curves {
    fn size(&self) -> (u32, u32) {
        (1200, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static,
    {
        draw_title(root, &self.title, 22, 22.0)?;
        let body = root.margin(44, 0, 0, 0);
        let halves = body.split_evenly((1, 2));
        let blue = RGBColor(0x1f, 0x77, 0xb4);
        let orange = RGBColor(0xff, 0x7f, 0x0e);
        let green = RGBColor(0x2c, 0xa0, 0x2c);
        line_panel(
            &halves[0],
            "loss",
            "epoch",
            "loss",
            &self.lines(&[
                ("train", |r| r.train_loss, blue),
                ("validation", |r| r.val_loss, orange),
            ]),
            SeriesLabelPosition::UpperRight,
        )?;
        line_panel(
            &halves[1],
            "accuracy",
            "epoch",
            "accuracy / F1",
            &self.lines(&[
                ("train", |r| r.train_acc, blue),
                ("validation", |r| r.val_acc, orange),
                ("validation macro F1", |r| r.val_macro_f1, green),
            ]),
            SeriesLabelPosition::LowerRight,
        )?;
        Ok(())
    }
}

/// Loss and accuracy against epoch (train and validation), side by side, from the records of a
/// training log. A record without `epoch` is placed at its 1-based position in the log.
pub fn plot_learning_curves(
    path: impl AsRef<Path>,
    records: &[EpochRecord],
    title: &str,
) -> Result<()> {
    let any = records.iter().any(|r| {
        r.train_loss.is_some()
            || r.val_loss.is_some()
            || r.train_acc.is_some()
            || r.val_acc.is_some()
            || r.val_macro_f1.is_some()
    });
    if !any {
        return Err(invalid(
            "nothing to plot: the training log has no train_loss, val_loss, train_acc or val_acc values",
        ));
    }
    let fig = Curves {
        recs: records.to_vec(),
        title: title.to_string(),
    };
    render(&fig, path.as_ref())
}
