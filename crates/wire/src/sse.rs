//! Server-Sent Events framing (WHATWG HTML §9.2), bounded.
//!
//! [`Decoder`] turns a byte stream, fed in arbitrary chunks, into [`Event`]s; it never
//! holds more than `max_event_bytes` of one event and reports a larger one as an
//! error rather than growing. [`encode`] writes one event.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `id` field of this event, if it had one.
    pub id: Option<String>,
    /// The `event` field (type); `None` means the default, `message`.
    pub event: Option<String>,
    /// The data lines joined with `\n`.
    pub data: String,
    /// The `retry` field in milliseconds, if present and valid.
    pub retry: Option<u64>,
}

/// The stream broke the decoder's bounds or encoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// One event (or one line) is larger than the limit.
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
    /// A line is not UTF-8.
    #[error("SSE stream is not valid UTF-8")]
    NotUtf8,
}

/// Incremental, bounded SSE decoder.
#[derive(Debug)]
pub struct Decoder {
    max_event_bytes: usize,
    line: Vec<u8>,
    last_was_cr: bool,
    pending: Event,
    has_data: bool,
    event_bytes: usize,
    started: bool,
}

impl Decoder {
    /// A decoder that refuses events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            last_was_cr: false,
            pending: Event::default(),
            has_data: false,
            event_bytes: 0,
            started: false,
        }
    }

    /// Feeds a chunk; dispatched events are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        for &b in chunk {
            if self.last_was_cr {
                self.last_was_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(out)?,
                b'\r' => {
                    self.last_was_cr = true;
                    self.end_line(out)?;
                }
                _ => {
                    self.line.push(b);
                    if self.line.len() + self.event_bytes > self.max_event_bytes {
                        return Err(DecodeError::TooLarge(self.max_event_bytes));
                    }
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let mut line = std::mem::take(&mut self.line);
        // A UTF-8 byte order mark may start the stream.
        if !self.started {
            self.started = true;
            if line.starts_with(&[0xEF, 0xBB, 0xBF]) {
                line.drain(..3);
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        let text = std::str::from_utf8(&line).map_err(|_| DecodeError::NotUtf8)?;
        if text.starts_with(':') {
            return Ok(()); // comment
        }
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (text, ""),
        };
        self.event_bytes += value.len();
        match field {
            "data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                    self.event_bytes += 1;
                }
                self.pending.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.pending.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.pending.id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.pending.retry = Some(ms);
                }
            }
            _ => {}
        }
        // Joining newlines count too: many empty `data` lines must not grow an event
        // past the bound (found by the sse_decoder fuzz target).
        if self.event_bytes > self.max_event_bytes {
            return Err(DecodeError::TooLarge(self.max_event_bytes));
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let ev = std::mem::take(&mut self.pending);
        let had = std::mem::replace(&mut self.has_data, false);
        self.event_bytes = 0;
        // Events with an id or retry but no data still matter to a relay (priming
        // events carry an id and empty data).
        if had || ev.id.is_some() || ev.retry.is_some() {
            out.push(ev);
        }
    }
}

/// Encodes one event. `data` may contain newlines; each line becomes a `data:` field.
pub fn encode(id: Option<&str>, event: Option<&str>, data: &[u8], retry: Option<u64>) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 64);
    if let Some(ev) = event {
        out.put_slice(b"event: ");
        out.put_slice(strip_newlines(ev).as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(strip_newlines(id).as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(ms) = retry {
        out.put_slice(format!("retry: {ms}\n").as_bytes());
    }
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    for line in data.split(|&b| b == b'\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

fn strip_newlines(s: &str) -> String {
    s.replace(['\n', '\r'], "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8], chunk: usize) -> Vec<Event> {
        let mut d = Decoder::new(1 << 20);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            d.feed(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn decodes_fields_and_line_endings() {
        let s = b"id: 1\r\nevent: message\rdata: a\ndata:b\n\n: comment\nid: 2\ndata: \n\nretry: 3000\n\n";
        let evs = decode_all(s, 3);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].id.as_deref(), Some("1"));
        assert_eq!(evs[0].data, "a\nb");
        assert_eq!(evs[1].id.as_deref(), Some("2"));
        assert_eq!(evs[1].data, "");
        assert_eq!(evs[2].retry, Some(3000));
    }

    #[test]
    fn oversized_events_are_errors() {
        let mut d = Decoder::new(8);
        let mut out = Vec::new();
        assert_eq!(
            d.feed(b"data: 0123456789\n\n", &mut out),
            Err(DecodeError::TooLarge(8))
        );
    }

    #[test]
    fn empty_data_lines_count_toward_the_bound() {
        // Regression: fuzz/artifacts sse_decoder crash-8bacc60a; each empty `data`
        // line adds a joining newline that the bound did not count.
        let mut d = Decoder::new(16);
        let mut out = Vec::new();
        let input = "data\n".repeat(64);
        assert_eq!(
            d.feed(input.as_bytes(), &mut out),
            Err(DecodeError::TooLarge(16))
        );
    }

    proptest! {
        #[test]
        fn decoded_events_never_exceed_the_bound(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let mut d = Decoder::new(32);
            let mut out = Vec::new();
            let _ = d.feed(&bytes, &mut out);
            for ev in out {
                prop_assert!(ev.data.len() <= 32);
            }
        }

        #[test]
        fn encode_then_decode(id in "[a-z0-9-]{0,12}", data in "[^\r]{0,200}", chunk in 1usize..17) {
            let id = if id.is_empty() { None } else { Some(id) };
            let bytes = encode(id.as_deref(), None, data.as_bytes(), None);
            let evs = decode_all(&bytes, chunk);
            prop_assert_eq!(evs.len(), 1);
            prop_assert_eq!(&evs[0].id, &id);
            prop_assert_eq!(evs[0].data.as_str(), data.strip_suffix('\n').unwrap_or(&data));
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = Decoder::new(64);
            let mut out = Vec::new();
            let _ = d.feed(&bytes, &mut out);
        }
    }
}
