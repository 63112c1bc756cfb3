//! An embedding (UMAP) as a scatter plot coloured by a categorical label, alone or truth and
//! prediction side by side with one shared legend.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::colours::palette;
use super::figure::{draw_title, render, DResult, Figure};
use super::text::{ellipsize, font};
use crate::{invalid, Result, Rng};

/// Options of [`plot_embedding`] and [`plot_embedding_pair`].
#[derive(Clone, Debug, Default)]
pub struct ScatterOptions {
    /// Category order (and so colours); categories not listed are appended in sorted order.
    /// Give the same list to several plots to keep a class's colour across them.
    pub categories: Option<Vec<String>>,
    /// Point radius in pixels; `None`: 3 up to 2,000 cells, 2 up to 10,000, 1 above.
    pub point_radius: Option<u32>,
    /// Axis names; `None`: UMAP1 / UMAP2.
    pub axis_names: Option<(String, String)>,
    /// Seed of the drawing order (cells are drawn in a random order so that no class hides
    /// another systematically).
    pub seed: u64,
}

struct Categorical {
    names: Vec<String>,
    codes: Vec<u32>,
    colors: Vec<RGBColor>,
}

fn categorical<S: AsRef<str>>(labels: &[&[S]], fixed: Option<&[String]>) -> Categorical {
    let mut names: Vec<String> = fixed.map(|f| f.to_vec()).unwrap_or_default();
    let mut extra: Vec<String> = labels
        .iter()
        .flat_map(|l| l.iter().map(|s| s.as_ref().to_string()))
        .filter(|s| !names.contains(s))
        .collect();
    extra.sort();
    extra.dedup();
    names.extend(extra);
    let index: std::collections::HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    let codes: Vec<u32> = labels
        .iter()
        .flat_map(|l| l.iter().map(|s| index[s.as_ref()]))
        .collect();
    let colors = palette(names.len());
    Categorical {
        names,
        codes,
        colors,
    }
}

const LEGEND_ROW: u32 = 20;
const LEGEND_COL: u32 = 270;

struct Scatter<'a> {
    coords: &'a [[f32; 2]],
    panels: Vec<(String, usize)>, // panel title, offset of its codes in `cat.codes`
    cat: Categorical,
    title: String,
    opts: ScatterOptions,
    legend_cols: u32,
}

impl Scatter<'_> {
    const PANEL: u32 = 760;
    const TOP: u32 = 50;
}

impl Figure for Scatter<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = self.cat.names.len().div_ceil(self.legend_cols as usize) as u32;
        let h = (Self::PANEL + Self::TOP).max(Self::TOP + 40 + rows * LEGEND_ROW);
        (
            self.panels.len() as u32 * Self::PANEL + self.legend_cols * LEGEND_COL + 20,
            h,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static,
    {
        draw_title(root, &self.title, 22, 24.0)?;
        let body = root.margin(Self::TOP, 0, 0, 0);
        let n = self.coords.len();
        let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in self
            .coords
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
        {
            x0 = x0.min(p[0]);
            x1 = x1.max(p[0]);
            y0 = y0.min(p[1]);
            y1 = y1.max(p[1]);
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let (px, py) = (((x1 - x0) * 0.03).max(1e-3), ((y1 - y0) * 0.03).max(1e-3));
        let radius = self.opts.point_radius.unwrap_or(if n <= 2000 {
            3
        } else if n <= 10_000 {
            2
        } else {
            1
        });
        let alpha = if n <= 2000 { 0.9 } else { 0.75 };
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(self.opts.seed).shuffle(&mut order);
        let (xn, yn) = self
            .opts
            .axis_names
            .clone()
            .unwrap_or(("UMAP1".into(), "UMAP2".into()));
        for (pi, (ptitle, off)) in self.panels.iter().enumerate() {
            let area = body
                .margin(0, 0, pi as u32 * Self::PANEL, 0)
                .shrink((0, 0), (Self::PANEL, Self::PANEL));
            let mut builder = ChartBuilder::on(&area);
            if !ptitle.is_empty() {
                builder.caption(ptitle, font(18.0));
            }
            let mut chart = builder
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(28)
                .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(0)
                .y_labels(0)
                .x_desc(xn.as_str())
                .y_desc(yn.as_str())
                .axis_desc_style(font(15.0))
                .draw()?;
            let codes = &self.cat.codes[*off..*off + n];
            chart.draw_series(order.iter().filter_map(|&i| {
                let p = self.coords[i];
                if !(p[0].is_finite() && p[1].is_finite()) {
                    return None;
                }
                let c = self.cat.colors[codes[i] as usize];
                Some(Circle::new((p[0], p[1]), radius, c.mix(alpha).filled()))
            }))?;
        }
        // legend
        let lx = (self.panels.len() as u32 * Self::PANEL + 10) as i32;
        let rows = self.cat.names.len().div_ceil(self.legend_cols as usize);
        let max_chars = 26;
        let k = self.cat.names.len();
        let mut per_panel = vec![vec![0usize; k]; self.panels.len()];
        for (p, (_, off)) in self.panels.iter().enumerate() {
            for &c in &self.cat.codes[*off..*off + n] {
                per_panel[p][c as usize] += 1;
            }
        }
        let header = if self.panels.len() == 1 {
            "cells".to_string()
        } else {
            format!(
                "cells: {}",
                self.panels
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join(" / ")
            )
        };
        root.draw(&Text::new(
            header,
            (lx, (Self::TOP + 8) as i32),
            font(13.0)
                .color(&RGBColor(90, 90, 90))
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        for (i, name) in self.cat.names.iter().enumerate() {
            let (col, row) = (i / rows, i % rows);
            let x = lx + (col as u32 * LEGEND_COL) as i32;
            let y = (Self::TOP + 30 + row as u32 * LEGEND_ROW) as i32;
            root.draw(&Circle::new((x + 8, y), 6, self.cat.colors[i].filled()))?;
            let count = format!(
                " ({})",
                per_panel
                    .iter()
                    .map(|c| c[i].to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
            root.draw(&Text::new(
                format!("{}{count}", ellipsize(name, max_chars)),
                (x + 20, y),
                font(14.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}

fn check_labels<S: AsRef<str>>(coords: &[[f32; 2]], labels: &[S], what: &str) -> Result<()> {
    if coords.is_empty() {
        return Err(invalid("nothing to plot: the embedding has no cells"));
    }
    if labels.len() != coords.len() {
        return Err(invalid(format!(
            "{what} has {} labels for {} cells",
            labels.len(),
            coords.len()
        )));
    }
    Ok(())
}

fn legend_cols(k: usize) -> u32 {
    // up to ~40 rows in one column, then more columns
    k.div_ceil(40).max(1) as u32
}

/// Scatter plot of a 2-D embedding coloured by a categorical label (a legend with each
/// category's name and cell count), e.g. the UMAP coloured by cell type or by prediction.
pub fn plot_embedding<S: AsRef<str>>(
    path: impl AsRef<Path>,
    coords: &[[f32; 2]],
    labels: &[S],
    title: &str,
    opts: &ScatterOptions,
) -> Result<()> {
    check_labels(coords, labels, "the label")?;
    let cat = categorical(&[labels], opts.categories.as_deref());
    let fig = Scatter {
        coords,
        panels: vec![(String::new(), 0)],
        legend_cols: legend_cols(cat.names.len()),
        cat,
        title: title.to_string(),
        opts: opts.clone(),
    };
    render(&fig, path.as_ref())
}

/// Two panels side by side, the same embedding coloured by the truth and by the prediction with
/// one shared legend (a class has the same colour in both).
pub fn plot_embedding_pair<S: AsRef<str>, T: AsRef<str>>(
    path: impl AsRef<Path>,
    coords: &[[f32; 2]],
    truth: &[S],
    pred: &[T],
    title: &str,
    opts: &ScatterOptions,
) -> Result<()> {
    check_labels(coords, truth, "the truth")?;
    check_labels(coords, pred, "the prediction")?;
    let t: Vec<&str> = truth.iter().map(|s| s.as_ref()).collect();
    let p: Vec<&str> = pred.iter().map(|s| s.as_ref()).collect();
    let cat = categorical(&[&t[..], &p[..]], opts.categories.as_deref());
    let fig = Scatter {
        coords,
        panels: vec![
            ("truth".to_string(), 0),
            ("prediction".to_string(), coords.len()),
        ],
        legend_cols: legend_cols(cat.names.len()),
        cat,
        title: title.to_string(),
        opts: opts.clone(),
    };
    render(&fig, path.as_ref())
}
