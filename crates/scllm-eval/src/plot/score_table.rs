//! A results table as a picture, after scib-metrics' `Benchmarker.plot_results_table`: one row per
//! method (best total first, as the caller orders them), metric columns grouped under their
//! family with each value in a cell shaded by its rank within the column, and the aggregate
//! columns as bars.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::colours::blues;
use super::figure::{draw_title, render, DResult, Figure};
use super::text::{ellipsize, font, measure};
use crate::{invalid, Result};

/// One column of the table: its group (e.g. "Bio conservation"), its name, and whether it is
/// drawn as a bar (aggregates) rather than a shaded cell.
#[derive(Clone, Debug)]
pub struct ScoreColumn {
    pub group: String,
    pub name: String,
    pub bar: bool,
}

struct ScoreTable<'a> {
    title: &'a str,
    rows: &'a [String],
    columns: &'a [ScoreColumn],
    values: &'a [Vec<f64>],
    left: u32,
}

impl ScoreTable<'_> {
    const CELL_W: u32 = 92;
    const CELL_H: u32 = 34;
    const TOP: u32 = 110;
}

/// Where `v` sits between the column's smallest and largest value (0.5 when all are equal).
fn rank_in(col: &[f64], v: f64) -> f64 {
    let ok: Vec<f64> = col.iter().copied().filter(|x| x.is_finite()).collect();
    let (lo, hi) = ok
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if hi.is_nan() || lo.is_nan() || hi <= lo {
        0.5
    } else {
        (v - lo) / (hi - lo)
    }
}

impl Figure for ScoreTable<'_> {
    fn size(&self) -> (u32, u32) {
        (
            self.left + self.columns.len() as u32 * Self::CELL_W + 20,
            Self::TOP + self.rows.len() as u32 * Self::CELL_H + 30,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static,
    {
        draw_title(root, self.title, 22, 20.0)?;
        let (cw, ch) = (Self::CELL_W as i32, Self::CELL_H as i32);
        let x0 = self.left as i32;
        let y0 = Self::TOP as i32;
        // group headers over runs of equal groups
        let mut c = 0;
        while c < self.columns.len() {
            let g = &self.columns[c].group;
            let mut e = c;
            while e < self.columns.len() && &self.columns[e].group == g {
                e += 1;
            }
            let (xa, xb) = (x0 + c as i32 * cw + 4, x0 + e as i32 * cw - 4);
            root.draw(&PathElement::new(
                vec![(xa, 52), (xb, 52)],
                BLACK.stroke_width(1),
            ))?;
            root.draw(&Text::new(
                g.clone(),
                ((xa + xb) / 2, 44),
                font(14.0).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
            c = e;
        }
        for (j, col) in self.columns.iter().enumerate() {
            // two lines: split the name at its first space
            let (a, b) = col.name.split_once(' ').unwrap_or((col.name.as_str(), ""));
            for (t, line) in [a, b].iter().enumerate() {
                root.draw(&Text::new(
                    ellipsize(line, 14),
                    (x0 + j as i32 * cw + cw / 2, 70 + t as i32 * 16),
                    font(13.0).pos(Pos::new(HPos::Center, VPos::Center)),
                ))?;
            }
        }
        for (r, name) in self.rows.iter().enumerate() {
            let y = y0 + r as i32 * ch;
            if r % 2 == 1 {
                root.draw(&Rectangle::new(
                    [(8, y), (x0 + self.columns.len() as i32 * cw, y + ch)],
                    RGBColor(245, 245, 245).filled(),
                ))?;
            }
            root.draw(&Text::new(
                ellipsize(name, 40),
                (12, y + ch / 2),
                font(14.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            for (j, col) in self.columns.iter().enumerate() {
                let v = self.values[r][j];
                let x = x0 + j as i32 * cw;
                let txt = if v.is_finite() {
                    format!("{v:.2}")
                } else {
                    "n/a".into()
                };
                if col.bar {
                    if v.is_finite() {
                        let w = ((cw - 12) as f64 * v.clamp(0.0, 1.0)) as i32;
                        root.draw(&Rectangle::new(
                            [(x + 6, y + 5), (x + 6 + w, y + ch - 5)],
                            blues(0.25 + 0.6 * v.clamp(0.0, 1.0)).filled(),
                        ))?;
                    }
                    root.draw(&Text::new(
                        txt,
                        (x + cw / 2, y + ch / 2),
                        font(13.0).pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                } else {
                    let col_vals: Vec<f64> = self.values.iter().map(|row| row[j]).collect();
                    let shade = if v.is_finite() {
                        rank_in(&col_vals, v)
                    } else {
                        0.0
                    };
                    let fill = if v.is_finite() {
                        blues(0.1 + 0.7 * shade)
                    } else {
                        RGBColor(235, 235, 235)
                    };
                    root.draw(&Circle::new(
                        (x + cw / 2, y + ch / 2),
                        ch / 2 - 3,
                        fill.filled(),
                    ))?;
                    let colour = if shade > 0.6 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        txt,
                        (x + cw / 2, y + ch / 2),
                        font(12.0)
                            .color(&colour)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                }
            }
        }
        Ok(())
    }
}

/// Draws the table (`values[row][column]`) to `path` (.png or .svg).
pub fn plot_score_table(
    path: impl AsRef<Path>,
    title: &str,
    rows: &[String],
    columns: &[ScoreColumn],
    values: &[Vec<f64>],
) -> Result<()> {
    if rows.is_empty() || columns.is_empty() {
        return Err(invalid("score table: nothing to draw"));
    }
    if values.len() != rows.len() || values.iter().any(|r| r.len() != columns.len()) {
        return Err(invalid(format!(
            "score table: {} rows x {} columns expected",
            rows.len(),
            columns.len()
        )));
    }
    let left = rows
        .iter()
        .map(|r| measure(&ellipsize(r, 40), 14.0))
        .max()
        .unwrap_or(0)
        + 30;
    let fig = ScoreTable {
        title,
        rows,
        columns,
        values,
        left,
    };
    render(&fig, path.as_ref())
}
