//! Text that others wrote — an upstream's names, URIs and definitions, a scanned
//! server's answers, the ids and paths of inspected input, a stdio server's stderr in
//! the gateway's log — made safe to print on the operator's terminal.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

use tracing_subscriber::fmt::MakeWriter;

/// Whether a terminal would act on `c`, or `c` hides or reorders text on screen:
/// controls other than newline and tab (the start of every escape sequence among
/// them), and what [`hides_text`] names.
fn unsafe_on_screen(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || hides_text(c)
}

/// Characters that are not controls but hide or reorder text on screen: bidirectional
/// controls, zero-width, filler and tag characters, variation selectors, and the
/// Unicode line and paragraph separators.
fn hides_text(c: char) -> bool {
    matches!(
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

/// How the gateway's log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// `tracing-subscriber`'s text lines; `colours` when it paints them (on a terminal).
    Text { colours: bool },
    /// One JSON object per line.
    Json,
}

/// The gateway's log output: each event, as the formatter wrote it, passes through
/// [`log_line`] on its way to `inner`.
///
/// `tracing-subscriber` writes every event with one `write_all` of the whole line and
/// escapes the escape character (and BEL, BS, FF, DEL, C1 controls) in the values it
/// formats, but not carriage returns, newlines inside a value, bidirectional controls
/// or invisible characters: a stdio server's stderr line, an upstream's error text or
/// name could otherwise end a log line early and forge the next, overwrite it on a
/// terminal, or make it read otherwise than it says.
pub(crate) struct LogLines<M> {
    inner: M,
    format: LogFormat,
}

impl<M> LogLines<M> {
    pub(crate) fn new(inner: M, format: LogFormat) -> Self {
        Self { inner, format }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for LogLines<M> {
    type Writer = SafeLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        SafeLine {
            inner: self.inner.make_writer(),
            format: self.format,
        }
    }
}

/// One event's writer: see [`LogLines`].
pub(crate) struct SafeLine<W> {
    inner: W,
    format: LogFormat,
}

impl<W: io::Write> io::Write for SafeLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner
            .write_all(log_line(&text, self.format).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One formatted event made to stay one line that reads as what it holds: its final
/// newline is kept; every other control (carriage returns and newlines inside values
/// among them) and every character [`hides_text`] names is written out — as `\u{…}`
/// in text lines, as a JSON `\uXXXX` escape in JSON lines (so a JSON reader still
/// decodes the exact value). In coloured text lines the escape character stays: there
/// only the formatter's own colours can hold it, as it escapes those in values.
fn log_line(event: &str, format: LogFormat) -> Cow<'_, str> {
    let body = event.strip_suffix('\n').unwrap_or(event);
    let keep = |c: char| match format {
        LogFormat::Text { colours } => {
            c == '\t' || (colours && c == '\u{1b}') || !(c.is_control() || hides_text(c))
        }
        LogFormat::Json => !(c.is_control() || hides_text(c)),
    };
    if body.chars().all(keep) {
        return Cow::Borrowed(event);
    }
    let mut out = String::with_capacity(event.len() + 16);
    for c in body.chars() {
        if keep(c) {
            out.push(c);
        } else if format == LogFormat::Json {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    if body.len() < event.len() {
        out.push('\n');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{LogFormat, LogLines, log_line, shown};

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

    #[test]
    fn a_log_line_stays_one_line_that_reads_as_what_it_holds() {
        let text = LogFormat::Text { colours: false };
        assert_eq!(log_line("plain\tline\n", text), "plain\tline\n");
        assert_eq!(
            log_line("stderr: ok\rFORGED\u{202e}txt\nnext\n", text),
            "stderr: ok\\u{d}FORGED\\u{202e}txt\\u{a}next\n"
        );
        assert_eq!(log_line("x\u{1b}[2K\n", text), "x\\u{1b}[2K\n");
        let colours = LogFormat::Text { colours: true };
        assert_eq!(
            log_line("\u{1b}[32mINFO\u{1b}[0m a\rb\n", colours),
            "\u{1b}[32mINFO\u{1b}[0m a\\u{d}b\n"
        );
        assert_eq!(
            log_line("{\"m\":\"a\u{202e}b\u{e0041}\u{9b}\"}\n", LogFormat::Json),
            "{\"m\":\"a\\u202eb\\udb40\\udc41\\u009b\"}\n"
        );
    }

    /// Through a real subscriber: a value holding a carriage return, a newline, bidi
    /// and tag characters and an escape sequence is one line in both formats, with
    /// none of them raw, and the JSON line still decodes to the exact value.
    #[test]
    fn events_with_hostile_values_are_logged_as_one_safe_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let hostile =
            "ok\r2026-01-01T00:00:00Z  INFO approved\nforged \u{202e}gpj.exe\u{e0041}\u{1b}[2K";
        for json in [false, true] {
            let buf = Buf::default();
            let sink = buf.clone();
            let format = if json {
                LogFormat::Json
            } else {
                LogFormat::Text { colours: false }
            };
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(LogLines::new(move || sink.clone(), format));
            let event = || tracing::info!(upstream = %hostile, "stderr: {hostile}");
            if json {
                tracing::subscriber::with_default(builder.json().finish(), event);
            } else {
                tracing::subscriber::with_default(builder.finish(), event);
            }
            let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            assert_eq!(out.matches('\n').count(), 1, "one line: {out:?}");
            assert!(out.ends_with('\n'));
            assert!(
                !out[..out.len() - 1]
                    .chars()
                    .any(|c| c.is_control() || super::hides_text(c)),
                "nothing raw: {out:?}"
            );
            if json {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["fields"]["upstream"], hostile, "{out}");
                assert_eq!(v["fields"]["message"], format!("stderr: {hostile}"));
            } else {
                assert!(out.contains("ok\\u{d}2026"), "{out}");
                assert!(out.contains("\\u{202e}gpj.exe\\u{e0041}"), "{out}");
            }
        }
    }
}
