//! Pictures of an evaluation, drawn with `plotters`: an embedding (UMAP) coloured by a label, a
//! row-normalised confusion matrix, per-class F1 bars and learning curves from a training log.
//!
//! Every function takes plain data and an output path; the extension picks the format (`.png`
//! or `.svg`). Files are written atomically (temporary file in the same folder, then renamed).
//! Text is rendered with a bundled DejaVu Sans subset through `ab_glyph`, so pictures render the
//! same on a bare machine without fontconfig or system fonts.

use std::error::Error;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::metrics::{ClassRow, ClassificationReport};
use crate::{invalid, Result, Rng};

type DResult = std::result::Result<(), Box<dyn Error>>;

static FONT: &[u8] = include_bytes!("../resources/fonts/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";

fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // the bundled font is known to parse; a failure here would be a packaging bug
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font())
}

/// Output format, from the path's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            _ => Err(invalid(format!(
                "{}: unknown picture format; name the file .png or .svg",
                path.display()
            ))),
        }
    }
}

/// Something that draws itself on an area of a fixed size.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static;
}

fn render<F: Figure>(fig: &F, path: &Path) -> Result<()> {
    let fmt = Format::from_path(path)?;
    ensure_font();
    let (w, h) = fig.size();
    let fail = |e: Box<dyn Error>| invalid(format!("{}: drawing failed: {e}", path.display()));
    let bytes = match fmt {
        Format::Svg => {
            let mut s = String::new();
            {
                let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
                root.fill(&WHITE).map_err(|e| fail(e.into()))?;
                fig.draw(&root).map_err(fail)?;
                root.present().map_err(|e| fail(e.into()))?;
            }
            s.into_bytes()
        }
        Format::Png => {
            let mut buf = vec![255u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
                root.fill(&WHITE).map_err(|e| fail(e.into()))?;
                fig.draw(&root).map_err(fail)?;
                root.present().map_err(|e| fail(e.into()))?;
            }
            encode_png(&buf, w, h).map_err(|e| fail(e.into()))?
        }
    };
    write_atomic(path, &bytes)
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Balanced);
        let mut wr = enc.write_header()?;
        wr.write_image_data(rgb)?;
    }
    Ok(out)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, e: std::io::Error| invalid(format!("{}: {what}: {e}", path.display()));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(invalid(format!(
            "{}: folder {} does not exist; create it first",
            path.display(),
            dir.display()
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "picture".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| io("cannot write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("cannot move the finished file into place", e)
    })
}

// ---------------------------------------------------------------------------------------------
// colours

const TAB10: [u32; 10] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22,
    0x17becf,
];
/// scanpy's `default_20`.
const DEFAULT_20: [u32; 20] = [
    0x1f77b4, 0xff7f0e, 0x279e68, 0xd62728, 0xaa40fc, 0x8c564b, 0xe377c2, 0xb5bd61, 0x17becf,
    0xaec7e8, 0xffbb78, 0x98df8a, 0xff9896, 0xc5b0d5, 0xc49c94, 0xf7b6d2, 0xdbdb8d, 0x9edae5,
    0xad494a, 0x8c6d31,
];
/// scanpy's `default_28` (Zeileis et al.).
const DEFAULT_28: [u32; 28] = [
    0x023fa5, 0x7d87b9, 0xbec1d4, 0xd6bcc0, 0xbb7784, 0x8e063b, 0x4a6fe3, 0x8595e1, 0xb5bbe3,
    0xe6afb9, 0xe07b91, 0xd33f6a, 0x11c638, 0x8dd593, 0xc6dec7, 0xead3c6, 0xf0b98d, 0xef9708,
    0x0fcfc0, 0x9cded6, 0xd5eae7, 0xf3e1eb, 0xf6c4e1, 0xf79cd4, 0x7f7f7f, 0xc7c7c7, 0x1ce6ff,
    0x336600,
];
/// scanpy's `default_102` (Godsnot), without its first colour (pure yellow, invisible on white).
const DEFAULT_101: [u32; 101] = [
    0x1CE6FF, 0xFF34FF, 0xFF4A46, 0x008941, 0x006FA6, 0xA30059, 0xFFDBE5, 0x7A4900, 0x0000A6,
    0x63FFAC, 0xB79762, 0x004D43, 0x8FB0FF, 0x997D87, 0x5A0007, 0x809693, 0x6A3A4C, 0x1B4400,
    0x4FC601, 0x3B5DFF, 0x4A3B53, 0xFF2F80, 0x61615A, 0xBA0900, 0x6B7900, 0x00C2A0, 0xFFAA92,
    0xFF90C9, 0xB903AA, 0xD16100, 0xDDEFFF, 0x000035, 0x7B4F4B, 0xA1C299, 0x300018, 0x0AA6D8,
    0x013349, 0x00846F, 0x372101, 0xFFB500, 0xC2FFED, 0xA079BF, 0xCC0744, 0xC0B9B2, 0xC2FF99,
    0x001E09, 0x00489C, 0x6F0062, 0x0CBD66, 0xEEC3FF, 0x456D75, 0xB77B68, 0x7A87A1, 0x788D66,
    0x885578, 0xFAD09F, 0xFF8A9A, 0xD157A0, 0xBEC459, 0x456648, 0x0086ED, 0x886F4C, 0x34362D,
    0xB4A8BD, 0x00A6AA, 0x452C2C, 0x636375, 0xA3C8C9, 0xFF913F, 0x938A81, 0x575329, 0x00FECF,
    0xB05B6F, 0x8CD0FF, 0x3B9700, 0x04F757, 0xC8A1A1, 0x1E6E00, 0x7900D7, 0xA77500, 0x6367A9,
    0xA05837, 0x6B002C, 0x772600, 0xD790FF, 0x9B9700, 0x549E79, 0xFFF69F, 0x201625, 0x72418F,
    0xBC23FF, 0x99ADC0, 0x3A2465, 0x922329, 0x5B4534, 0xFDE8DC, 0x404E55, 0x0089A3, 0xCB7E98,
    0xA4E804, 0x324E72,
];

fn rgb(c: u32) -> RGBColor {
    RGBColor((c >> 16) as u8, (c >> 8) as u8, c as u8)
}

/// Distinct colours for `k` categories, as scanpy picks them (tab10, 20, 28 or 101 colours;
/// repeated beyond 101).
pub fn palette(k: usize) -> Vec<RGBColor> {
    let src: &[u32] = if k <= 10 {
        &TAB10
    } else if k <= 20 {
        &DEFAULT_20
    } else if k <= 28 {
        &DEFAULT_28
    } else {
        &DEFAULT_101
    };
    (0..k).map(|i| rgb(src[i % src.len()])).collect()
}

/// matplotlib's `Blues`, sampled at 9 points and interpolated linearly; `t` in [0, 1].
fn blues(t: f64) -> RGBColor {
    const STOPS: [u32; 9] = [
        0xf7fbff, 0xdeebf7, 0xc6dbef, 0x9ecae1, 0x6baed6, 0x4292c6, 0x2171b5, 0x08519c, 0x08306b,
    ];
    let t = t.clamp(0.0, 1.0) * 8.0;
    let i = (t.floor() as usize).min(7);
    let f = t - i as f64;
    let (a, b) = (rgb(STOPS[i]), rgb(STOPS[i + 1]));
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Text width without a drawing area (same font metrics), for sizing a figure before drawing.
fn measure(s: &str, size: f64) -> u32 {
    ensure_font();
    let f = (FAMILY, size).into_font();
    f.box_size(s)
        .map(|(w, _)| w)
        .unwrap_or((s.chars().count() as f64 * size * 0.6) as u32)
}

fn ellipsize(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let t: String = s.chars().take(max_chars - 1).collect();
        format!("{t}…")
    }
}

// ---------------------------------------------------------------------------------------------
// embedding scatter

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
        let (w, _) = self.size();
        root.draw(&Text::new(
            self.title.clone(),
            (w as i32 / 2, 22),
            font(24.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
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

// ---------------------------------------------------------------------------------------------
// confusion matrix

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
        let (w, _) = self.size();
        root.draw(&Text::new(
            self.title.clone(),
            (w as i32 / 2, 24),
            font(22.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
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

// ---------------------------------------------------------------------------------------------
// per-class F1

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
        let (w, _) = self.size();
        root.draw(&Text::new(
            self.title.clone(),
            (w as i32 / 2, 22),
            font(22.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
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

// ---------------------------------------------------------------------------------------------
// learning curves

/// One line of a trainer's JSONL log; every field may be missing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochRecord {
    pub epoch: Option<f64>,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub train_acc: Option<f64>,
    pub val_acc: Option<f64>,
    /// scllm-train's `val_macro_f1`, drawn in the accuracy panel when present.
    pub val_macro_f1: Option<f64>,
}

/// Parse a JSONL training log (scllm-train's `train_log.jsonl`): one JSON object per line with
/// any of `epoch`, `train_loss`, `val_loss`, `train_acc`, `val_acc`, `val_macro_f1` (numbers;
/// null — how NaN is written — or missing tolerated, other keys ignored).
/// Blank lines are skipped; a line that is not a JSON object is an error naming the line.
pub fn parse_training_log(text: &str, source: &str) -> Result<Vec<EpochRecord>> {
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| invalid(format!("{source}: line {}: not JSON ({e})", no + 1)))?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid(format!("{source}: line {}: expected a JSON object", no + 1)))?;
        let num = |k: &str| {
            obj.get(k)
                .and_then(|x| x.as_f64())
                .filter(|x| x.is_finite())
        };
        out.push(EpochRecord {
            epoch: num("epoch"),
            train_loss: num("train_loss"),
            val_loss: num("val_loss"),
            train_acc: num("train_acc"),
            val_acc: num("val_acc"),
            val_macro_f1: num("val_macro_f1"),
        });
    }
    Ok(out)
}

/// [`parse_training_log`] of a file.
pub fn read_training_log(path: impl AsRef<Path>) -> Result<Vec<EpochRecord>> {
    let p = path.as_ref();
    let text = std::fs::read_to_string(p).map_err(|e| {
        invalid(format!(
            "{}: cannot read the training log: {e}",
            p.display()
        ))
    })?;
    parse_training_log(&text, &p.display().to_string())
}

struct Curves {
    recs: Vec<EpochRecord>,
    title: String,
}

type Getter = fn(&EpochRecord) -> Option<f64>;

/// One named line of a panel.
type Line<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

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

/// A line chart of `lines` against `xlabel` in `area` (points marked when there are few).
fn line_panel<DB: DrawingBackend>(
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

impl Figure for Curves {
    fn size(&self) -> (u32, u32) {
        (1200, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static,
    {
        root.draw(&Text::new(
            self.title.clone(),
            (600, 22),
            font(22.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
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
