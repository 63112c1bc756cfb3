//! Progress bars of the long loops (kNN search, UMAP epochs, cross-validation fits, training
//! and prediction), and the one a caller on another thread follows: every long loop registers
//! its bar with [`follow`], drawn or hidden, and the Python package reads [`followed`] to draw
//! it in a notebook, where the command line's stderr bars do not show.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar with a label, or a hidden one when `show` is false; followed either way.
pub fn bar(len: u64, msg: &str, show: bool) -> ProgressBar {
    let b = if show {
        let b = ProgressBar::new(len);
        b.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})")
                .unwrap()
                .progress_chars("=> "),
        );
        b.set_message(msg.to_string());
        b
    } else {
        ProgressBar::hidden()
    };
    follow(&b, msg, len);
    b
}

struct Followed {
    bar: ProgressBar,
    label: String,
    total: u64,
}

/// The latest loop's bar in this process (with several loops at once, the one that started
/// last: the display is one bar).
static FOLLOWED: Mutex<Option<Followed>> = Mutex::new(None);

/// Make `bar` (of a loop of `total` steps, called `label`) the one [`followed`] reports.
pub fn follow(bar: &ProgressBar, label: impl Into<String>, total: u64) {
    *FOLLOWED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Followed {
        bar: bar.clone(),
        label: label.into(),
        total,
    });
}

/// The followed loop: its label, steps done and total.
pub fn followed() -> Option<(String, u64, u64)> {
    let f = FOLLOWED.lock().unwrap_or_else(|e| e.into_inner());
    f.as_ref()
        .map(|f| (f.label.clone(), f.bar.position(), f.total))
}

/// Forget the followed loop (before a new piece of work starts).
pub fn unfollow() {
    *FOLLOWED.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_bar_is_followed_step_by_step() {
        unfollow();
        assert!(followed().is_none());
        let b = bar(10, "knn", false);
        b.inc(3);
        assert_eq!(followed(), Some(("knn".to_string(), 3, 10)));
        let c = ProgressBar::hidden();
        follow(&c, "epoch 2/5", 40);
        c.inc(7);
        assert_eq!(followed(), Some(("epoch 2/5".to_string(), 7, 40)));
        unfollow();
        assert!(followed().is_none());
    }
}
