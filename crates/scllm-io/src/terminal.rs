//! Text from a file, made safe to print: labels, gene and column names are data, and a name
//! holding an escape sequence must not recolour, move or retitle the user's terminal.

use std::borrow::Cow;

/// `s` with every control character (ESC, BEL, carriage return, ... and C1 controls) shown as a
/// Rust-style escape (`\u{1b}`); unchanged, without a copy, when it has none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        assert!(matches!(printable("CD4 T"), Cow::Borrowed("CD4 T")));
        let evil = "\u{1b}[31mB cell\u{7}\r\u{9b}";
        let shown = printable(evil);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "\\u{1b}[31mB cell\\u{7}\\u{d}\\u{9b}");
    }
}
