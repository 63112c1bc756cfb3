//! What every figure is to the file writer: a fixed-size drawing, rendered to PNG or SVG by the
//! path's extension and written atomically.

use std::error::Error;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::text::{ensure_font, font};
use crate::{invalid, Result};

/// What drawing returns: plotters' errors differ by backend, so they travel boxed.
pub(super) type DResult = std::result::Result<(), Box<dyn Error>>;

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

/// A name (a method, an obsm key) as a file-name stem: ASCII letters, digits, `-` and `_` kept,
/// anything else `_`.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Something that draws itself on an area of a fixed size.
pub(super) trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult
    where
        DB::ErrorType: 'static;
}

/// A figure's title, centred across the top of `root` at height `y`.
pub(super) fn draw_title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y: i32,
    size: f64,
) -> DResult
where
    DB::ErrorType: 'static,
{
    let w = root.dim_in_pixel().0;
    root.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, y),
        font(size).pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    Ok(())
}

/// Draws `fig` in the format the extension of `path` names and writes it there.
pub(super) fn render<F: Figure>(fig: &F, path: &Path) -> Result<()> {
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
    write_picture(path, &bytes)
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

/// The picture's folder must exist: a missing one is named, not created.
fn write_picture(path: &Path, bytes: &[u8]) -> Result<()> {
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
    scllm_fs::write_atomic(path, bytes)
        .map_err(|e| invalid(format!("{}: cannot write: {e}", path.display())))
}
