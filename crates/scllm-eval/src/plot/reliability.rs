//! Reliability diagram: per confidence bin, the share of cells predicted right against the bin's
//! mean confidence, with the diagonal of perfect calibration and the ECE in the title; the cells
//! per bin as a histogram underneath.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{draw_title, render, DResult, Figure};
use super::text::font;
use crate::calibration::Calibration;
use crate::{invalid, Result};

struct Reliability {
    cal: Calibration,
    title: String,
}

impl Figure for Reliability {
    fn size(&self) -> (u32, u32) {
        (640, 820)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static,
    {
        draw_title(root, &self.title, 20, 18.0)?;
        let body = root.margin(40, 0, 0, 0);
        let (top, bottom) = body.split_vertically(600);
        let c = &self.cal;
        let bar = RGBColor(0x42, 0x92, 0xc6);
        let gap = RGBColor(0xd6, 0x27, 0x28);
        let mut chart = ChartBuilder::on(&top)
            .caption(
                format!(
                    "ECE {:.4}  MCE {:.4}  ({} cells, {} bins)",
                    c.ece, c.mce, c.n_cells, c.n_bins
                ),
                font(15.0),
            )
            .margin(12)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0f64..1.0f64, 0.0f64..1.0f64)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(230, 230, 230))
            .x_desc("confidence (probability of the predicted label)")
            .y_desc("accuracy")
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .draw()?;
        // accuracy bars, and the gap to the bin's mean confidence in red
        chart.draw_series(c.bins.iter().filter_map(|b| {
            b.accuracy
                .map(|a| Rectangle::new([(b.lower, 0.0), (b.upper, a)], bar.mix(0.85).filled()))
        }))?;
        chart.draw_series(c.bins.iter().filter_map(|b| {
            let (a, m) = (b.accuracy?, b.mean_confidence?);
            let (lo, hi) = if a < m { (a, m) } else { (m, a) };
            Some(Rectangle::new(
                [(b.lower, lo), (b.upper, hi)],
                gap.mix(0.35).filled(),
            ))
        }))?;
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                RGBColor(90, 90, 90).stroke_width(2),
            ))?
            .label("perfect calibration")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 18, y)],
                    RGBColor(90, 90, 90).stroke_width(2),
                )
            });
        chart
            .draw_series(c.bins.iter().filter_map(|b| {
                let (a, m) = (b.accuracy?, b.mean_confidence?);
                Some(Circle::new((m, a), 4, gap.filled()))
            }))?
            .label("bin: (mean confidence, accuracy)")
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, gap.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(font(13.0))
            .draw()?;
        let most = c.bins.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
        let mut hist = ChartBuilder::on(&bottom)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(30)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0f64..1.0f64, 0.0f64..most * 1.05)?;
        hist.configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(230, 230, 230))
            .y_desc("cells")
            .y_labels(4)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .draw()?;
        hist.draw_series(c.bins.iter().map(|b| {
            Rectangle::new(
                [(b.lower, 0.0), (b.upper, b.count as f64)],
                RGBColor(150, 150, 150).filled(),
            )
        }))?;
        Ok(())
    }
}

/// The reliability diagram of `cal` (from [`crate::calibration::calibration`]) at `path`
/// (`.png` or `.svg`).
pub fn plot_reliability(path: impl AsRef<Path>, cal: &Calibration, title: &str) -> Result<()> {
    if cal.n_cells == 0 || cal.bins.is_empty() {
        return Err(invalid("nothing to plot: no calibrated cell"));
    }
    let fig = Reliability {
        cal: cal.clone(),
        title: title.to_string(),
    };
    render(&fig, path.as_ref())
}
