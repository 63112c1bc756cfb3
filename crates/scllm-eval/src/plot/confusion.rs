//! The confusion matrix as a heat map, each true class's row divided by its total.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::colours::blues;
use super::figure::{draw_title, render, DResult, Figure};
use super::text::{ellipsize, font, measure};
use crate::metrics::ClassificationReport;
use crate::{invalid, Result};

struct Confusion<'a> {
    labels: &'a [String],
    frac: Vec<Vec<f64>>,
    support: Vec<u64>,
    title: String,
    cell: u32,
    label_size: f64,
    left: u32,
    bottom: u32,
}

impl Confusion<'_> {
    const TOP: u32 = 60;
    const RIGHT: u32 = 110;
}

impl Figure for Confusion<'_> {
    fn size(&self) -> (u32, u32) {
        let k = self.labels.len() as u32;
        (
            self.left + k * self.cell + Self::RIGHT,
            Self::TOP + k * self.cell + self.bottom,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static,
    {
        let k = self.labels.len();
        let c = self.cell as i32;
        let (x0, y0) = (self.left as i32, Self::TOP as i32);
        draw_title(root, &self.title, 24, 22.0)?;
        let annotate = k <= 15;
        let vsize = (c as f64 / 3.2).clamp(9.0, 15.0);
        for (r, row) in self.frac.iter().enumerate() {
            for (q, &v) in row.iter().enumerate() {
                let (x, y) = (x0 + q as i32 * c, y0 + r as i32 * c);
                let fill = if self.support[r] == 0 {
                    RGBColor(235, 235, 235)
                } else {
                    blues(v)
                };
                root.draw(&Rectangle::new([(x, y), (x + c, y + c)], fill.filled()))?;
                if annotate && self.support[r] > 0 {
                    let txt = if v == 0.0 {
                        "0".to_string()
                    } else {
                        format!("{v:.2}")
                    };
                    let col = if v > 0.55 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        txt,
                        (x + c / 2, y + c / 2),
                        font(vsize)
                            .color(&col)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                }
            }
        }
        let kk = k as i32;
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + kk * c, y0 + kk * c)],
            BLACK.stroke_width(1),
        ))?;
        // class names: rows on the left, columns below (rotated)
        for (i, name) in self.labels.iter().enumerate() {
            let nm = ellipsize(name, 30);
            root.draw(&Text::new(
                format!("{nm} ({})", self.support[i]),
                (x0 - 6, y0 + i as i32 * c + c / 2),
                font(self.label_size).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            root.draw(&Text::new(
                nm,
                (x0 + i as i32 * c + c / 2, y0 + kk * c + 6),
                font(self.label_size)
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
        }
        root.draw(&Text::new(
            "predicted",
            (x0 + kk * c / 2, self.size().1 as i32 - 16),
            font(16.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        root.draw(&Text::new(
            "true",
            (14, y0 + kk * c / 2),
            font(16.0)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        // colour bar
        let bx = x0 + kk * c + 24;
        let bh = (kk * c).clamp(120, 400);
        for t in 0..bh {
            let v = 1.0 - t as f64 / (bh - 1) as f64;
            root.draw(&Rectangle::new(
                [(bx, y0 + t), (bx + 16, y0 + t + 1)],
                blues(v).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bx, y0), (bx + 16, y0 + bh)],
            BLACK.stroke_width(1),
        ))?;
        for (v, s) in [(1.0, "1.0"), (0.5, "0.5"), (0.0, "0.0")] {
            let y = y0 + ((1.0 - v) * (bh - 1) as f64) as i32;
            root.draw(&Text::new(
                s,
                (bx + 22, y),
                font(12.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}

/// Heatmap of the confusion matrix `confusion[true][pred]` (classes `labels` on both axes),
/// each row divided by its total; values written in the cells when there are at most 15 classes.
pub fn plot_confusion(
    path: impl AsRef<Path>,
    labels: &[String],
    confusion: &[Vec<u64>],
    title: &str,
) -> Result<()> {
    let k = labels.len();
    if k == 0 {
        return Err(invalid(
            "nothing to plot: the confusion matrix has no classes",
        ));
    }
    if confusion.len() != k || confusion.iter().any(|r| r.len() != k) {
        return Err(invalid(format!(
            "the confusion matrix must be {k} x {k} for {k} class names"
        )));
    }
    let support: Vec<u64> = confusion.iter().map(|r| r.iter().sum()).collect();
    let frac = confusion
        .iter()
        .zip(&support)
        .map(|(r, &s)| {
            r.iter()
                .map(|&v| if s == 0 { 0.0 } else { v as f64 / s as f64 })
                .collect()
        })
        .collect();
    let cell = (640 / k as u32).clamp(16, 56);
    let label_size = if cell >= 28 {
        14.0
    } else {
        (cell as f64 * 0.7).max(10.0)
    };
    let widest = labels
        .iter()
        .map(|l| measure(&ellipsize(l, 30), label_size))
        .max()
        .unwrap_or(0);
    let widest_row = labels
        .iter()
        .zip(&support)
        .map(|(l, s)| measure(&format!("{} ({s})", ellipsize(l, 30)), label_size))
        .max()
        .unwrap_or(0);
    let fig = Confusion {
        labels,
        frac,
        support,
        title: title.to_string(),
        cell,
        label_size,
        left: widest_row + 40,
        bottom: widest + 44,
    };
    render(&fig, path.as_ref())
}

/// [`plot_confusion`] of a [`ClassificationReport`].
pub fn plot_confusion_report(
    path: impl AsRef<Path>,
    report: &ClassificationReport,
    title: &str,
) -> Result<()> {
    plot_confusion(path, &report.labels, &report.confusion, title)
}
