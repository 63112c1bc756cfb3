//! Text in pictures: the bundled font (registered once) and measuring and shortening labels
//! before a figure is sized.

use std::sync::Once;

use plotters::prelude::*;

static FONT: &[u8] = include_bytes!("../../resources/fonts/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";

pub(super) fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // the bundled font is known to parse; a failure here would be a packaging bug
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

pub(super) fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font())
}

/// Text width without a drawing area (same font metrics), for sizing a figure before drawing.
pub(super) fn measure(s: &str, size: f64) -> u32 {
    ensure_font();
    let f = (FAMILY, size).into_font();
    f.box_size(s)
        .map(|(w, _)| w)
        .unwrap_or((s.chars().count() as f64 * size * 0.6) as u32)
}

pub(super) fn ellipsize(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let t: String = s.chars().take(max_chars - 1).collect();
        format!("{t}…")
    }
}
