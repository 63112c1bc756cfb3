//! Each class's F1 as horizontal bars, with the macro F1 as a line.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::figure::{draw_title, render, DResult, Figure};
use super::text::{ellipsize, font, measure};
use crate::metrics::{ClassRow, ClassificationReport};
use crate::{invalid, Result};

struct F1Bars {
    rows: Vec<ClassRow>,
    macro_f1: f64,
    title: String,
    left: u32,
}

impl F1Bars {
    const ROW: u32 = 24;
    const TOP: u32 = 70;
    const BAR: u32 = 520;
    const RIGHT: u32 = 150;
}

impl Figure for F1Bars {
    fn size(&self) -> (u32, u32) {
        (
            self.left + Self::BAR + Self::RIGHT,
            Self::TOP + self.rows.len() as u32 * Self::ROW + 50,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static,
    {
        draw_title(root, &self.title, 22, 22.0)?;
        let x0 = self.left as i32;
        let y0 = Self::TOP as i32;
        let bw = Self::BAR as i32;
        let nrow = self.rows.len() as i32;
        let rh = Self::ROW as i32;
        // grid at 0, .25, .5, .75, 1
        for t in 0..=4 {
            let x = x0 + bw * t / 4;
            root.draw(&PathElement::new(
                vec![(x, y0 - 4), (x, y0 + nrow * rh)],
                RGBColor(220, 220, 220).stroke_width(1),
            ))?;
            root.draw(&Text::new(
                format!("{:.2}", t as f64 / 4.0),
                (x, y0 + nrow * rh + 14),
                font(12.0).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        root.draw(&Text::new(
            "F1",
            (x0 + bw / 2, y0 + nrow * rh + 34),
            font(15.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        let bar = RGBColor(0x42, 0x92, 0xc6);
        for (i, r) in self.rows.iter().enumerate() {
            let y = y0 + i as i32 * rh;
            let len = (r.f1 * bw as f64).round() as i32;
            let len = if r.f1 > 0.0 { len.max(3) } else { 0 };
            root.draw(&Rectangle::new(
                [(x0, y + 3), (x0 + len, y + rh - 3)],
                bar.filled(),
            ))?;
            root.draw(&Text::new(
                ellipsize(&r.label, 34),
                (x0 - 8, y + rh / 2),
                font(14.0).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            root.draw(&Text::new(
                format!("{:.2}  n={}", r.f1, r.support),
                (x0 + len + 6, y + rh / 2),
                font(13.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        // macro F1
        let xm = x0 + (self.macro_f1 * bw as f64).round() as i32;
        root.draw(&PathElement::new(
            vec![(xm, y0 - 10), (xm, y0 + nrow * rh)],
            RGBColor(0xd6, 0x27, 0x28).stroke_width(2),
        ))?;
        root.draw(&Text::new(
            format!("macro F1 {:.3}", self.macro_f1),
            (xm, y0 - 20),
            font(13.0)
                .color(&RGBColor(0xd6, 0x27, 0x28))
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        Ok(())
    }
}

/// Horizontal bars of each class's F1, best first, with its support (`n=`) written beside the
/// bar, and the macro F1 as a red line. Classes without true cells (only predicted) are left out.
pub fn plot_per_class_f1(path: impl AsRef<Path>, rows: &[ClassRow], title: &str) -> Result<()> {
    let mut rows: Vec<ClassRow> = rows.iter().filter(|r| r.support > 0).cloned().collect();
    if rows.is_empty() {
        return Err(invalid("nothing to plot: no class has true cells"));
    }
    rows.sort_by(|a, b| {
        b.f1.total_cmp(&a.f1)
            .then(b.support.cmp(&a.support))
            .then(a.label.cmp(&b.label))
    });
    let macro_f1 = rows.iter().map(|r| r.f1).sum::<f64>() / rows.len() as f64;
    let widest = rows
        .iter()
        .map(|r| measure(&ellipsize(&r.label, 34), 14.0))
        .max()
        .unwrap_or(0);
    let fig = F1Bars {
        rows,
        macro_f1,
        title: title.to_string(),
        left: widest + 24,
    };
    render(&fig, path.as_ref())
}

/// [`plot_per_class_f1`] of a [`ClassificationReport`]; the macro F1 line is over classes with
/// true cells (the report's `f1_macro` also counts predicted-only classes as 0).
pub fn plot_per_class_f1_report(
    path: impl AsRef<Path>,
    report: &ClassificationReport,
    title: &str,
) -> Result<()> {
    plot_per_class_f1(path, &report.per_class, title)
}
