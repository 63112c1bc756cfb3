//! Line charts: the panel the learning curves are made of, and a chart of any named series
//! (pretraining losses against the step).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::colours::palette;
use super::figure::{render, DResult, Figure};
use super::text::font;
use crate::{invalid, Result};

/// One named line of a panel.
pub(super) type Line<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// A line chart of `lines` against `xlabel` in `area` (points marked when there are few).
pub(super) fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    xlabel: &str,
    ylabel: &str,
    lines: &[Line],
    legend_at: SeriesLabelPosition,
) -> DResult
where
    DB::ErrorType: 'static,
{
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.1.iter().copied()).collect();
    if all.is_empty() {
        area.draw(&Text::new(
            format!("{caption}: not in the log"),
            (
                area.dim_in_pixel().0 as i32 / 2,
                area.dim_in_pixel().1 as i32 / 2,
            ),
            font(16.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        return Ok(());
    }
    let (mut xa, mut xb) = (f64::MAX, f64::MIN);
    let (mut ya, mut yb) = (f64::MAX, f64::MIN);
    for &(x, y) in &all {
        xa = xa.min(x);
        xb = xb.max(x);
        ya = ya.min(y);
        yb = yb.max(y);
    }
    if xb - xa < 1e-9 {
        xa -= 1.0;
        xb += 1.0;
    }
    let pad = ((yb - ya) * 0.06).max(1e-3);
    let integral = all.iter().all(|p| p.0.fract() == 0.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(18.0))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(xa..xb, (ya - pad)..(yb + pad))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(230, 230, 230))
        .x_label_formatter(&|v| {
            if integral {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .x_desc(xlabel)
        .y_desc(ylabel)
        .label_style(font(13.0))
        .axis_desc_style(font(15.0))
        .draw()?;
    for (name, p, color) in lines {
        if p.is_empty() {
            continue;
        }
        let c = *color;
        chart
            .draw_series(LineSeries::new(p.iter().copied(), c.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        if p.len() <= 60 {
            chart.draw_series(p.iter().map(|&(x, y)| Circle::new((x, y), 3, c.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(font(14.0))
        .draw()?;
    Ok(())
}

struct SingleChart {
    title: String,
    xlabel: String,
    ylabel: String,
    lines: Vec<(String, Vec<(f64, f64)>)>,
}

impl Figure for SingleChart {
    fn size(&self) -> (u32, u32) {
        (900, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static,
    {
        let colors = palette(self.lines.len().max(1));
        let lines: Vec<Line> = self
            .lines
            .iter()
            .zip(colors)
            .map(|((n, p), c)| (n.as_str(), p.clone(), c))
            .collect();
        line_panel(
            root,
            &self.title,
            &self.xlabel,
            &self.ylabel,
            &lines,
            SeriesLabelPosition::UpperRight,
        )
    }
}

/// One line chart of named series of `(x, y)` points, e.g. pretraining losses against the step.
pub fn plot_lines(
    path: impl AsRef<Path>,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    lines: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    if lines.iter().all(|l| l.1.is_empty()) {
        return Err(invalid("nothing to plot: every series is empty"));
    }
    let fig = SingleChart {
        title: title.into(),
        xlabel: xlabel.into(),
        ylabel: ylabel.into(),
        lines: lines.to_vec(),
    };
    render(&fig, path.as_ref())
}
