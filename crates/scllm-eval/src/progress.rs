//! Progress bars of the long loops (kNN search, UMAP epochs, cross-validation fits).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar with a label, or a hidden one when `show` is false.
pub fn bar(len: u64, msg: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})")
            .unwrap()
            .progress_chars("=> "),
    );
    b.set_message(msg.to_string());
    b
}
