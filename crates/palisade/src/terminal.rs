//! Text that others wrote — an upstream's names, URIs and definitions, a scanned
//! server's answers, the ids and paths of inspected input — made safe to print on the
//! operator's terminal.

use std::borrow::Cow;

/// Whether a terminal would act on `c`, or `c` hides or reorders text on screen:
/// controls other than newline and tab (the start of every escape sequence among
/// them), bidirectional controls, zero-width, filler and tag characters, variation
/// selectors, and the Unicode line and paragraph separators.
fn unsafe_on_screen(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{e0000}'..='\u{e007f}'
                | '\u{e0100}'..='\u{e01ef}'
        )
}

/// `text` with every character [`unsafe_on_screen`] written out as `\u{…}`, so that
/// what the operator reads is what the text holds.
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_on_screen) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_on_screen(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn what_would_act_on_or_hide_from_a_terminal_is_written_out() {
        assert_eq!(shown("plain text\n\twith tabs"), "plain text\n\twith tabs");
        assert_eq!(shown("ok \u{1b}[2Kgone"), "ok \\u{1b}[2Kgone");
        assert_eq!(shown("csi \u{9b}2K"), "csi \\u{9b}2K");
        assert_eq!(shown("a\u{202e}txt.exe"), "a\\u{202e}txt.exe");
        assert_eq!(shown("x\u{200b}y\u{e0041}"), "x\\u{200b}y\\u{e0041}");
        assert_eq!(shown("bell\u{7}\r"), "bell\\u{7}\\u{d}");
        assert_eq!(shown("déjà vu ✓"), "déjà vu ✓");
    }
}
