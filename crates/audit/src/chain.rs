//! Records and the chain between them.
//!
//! A record is one JSON line, `{"seq":…,"ts":…,"prev":…,"event":{…},"hash":…}`. `hash` is
//! the SHA-256 of the line's own bytes up to `,"hash"` with the closing `}` — so any
//! edited byte changes it — and `prev` is the hash of the record before; the first
//! record of a chain has `seq` 0 and `prev` [`GENESIS`]. A checkpoint record signs
//! the chain head before it. Every file the writer opens begins with an *opening*
//! checkpoint, so a rotated file stands on its own and a file whose first records
//! were cut away is recognised.

use std::collections::BTreeSet;
use std::io::BufRead;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::key::{hex, key_id, unhex, verify_signature};

/// The `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest record the verifier reads. Records are small — names and URIs a
/// client chooses are clipped — but one holding an opted-in tool's raw arguments can
/// be as long as a request.
const MAX_LINE: usize = 1 << 26;

/// An event encoded for a record before its place in the chain is known: the costly
/// part of a record, which the log does outside its lock.
#[derive(Debug, Clone)]
pub struct Encoded {
    json: String,
    checkpoint: bool,
}

impl Encoded {
    /// Encodes `event` as the `event` member of a record.
    pub fn new(event: &Event) -> Result<Self, serde_json::Error> {
        Ok(Self {
            json: serde_json::to_string(event)?,
            checkpoint: matches!(event, Event::Checkpoint { .. }),
        })
    }

    /// The encoded event's length in bytes.
    pub(crate) fn byte_len(&self) -> usize {
        self.json.len()
    }

    /// Whether the event is a checkpoint.
    pub fn is_checkpoint(&self) -> bool {
        self.checkpoint
    }
}

/// Places an encoded event in the chain; returns the line (without a newline) and its
/// hash. The bytes are those of `{"seq":…,"ts":…,"prev":…,"event":…}` as serde_json
/// writes that record.
pub fn seal(
    seq: u64,
    ts: &str,
    prev: &str,
    event: &Encoded,
) -> Result<(String, String), serde_json::Error> {
    let mut line = String::with_capacity(event.json.len() + ts.len() + 2 * prev.len() + 64);
    let hash = seal_into(&mut line, seq, ts, prev, event)?;
    Ok((line, hash))
}

/// [`seal`], appending the line (without a newline) to `out`; returns its hash.
pub fn seal_into(
    out: &mut String,
    seq: u64,
    ts: &str,
    prev: &str,
    event: &Encoded,
) -> Result<String, serde_json::Error> {
    use std::fmt::Write as _;
    let start = out.len();
    out.push_str("{\"seq\":");
    let _ = write!(out, "{seq}");
    out.push_str(",\"ts\":");
    push_json_str(out, ts)?;
    out.push_str(",\"prev\":");
    push_json_str(out, prev)?;
    out.push_str(",\"event\":");
    out.push_str(&event.json);
    let hash = hex(&Sha256::new()
        .chain_update(&out.as_bytes()[start..])
        .chain_update(b"}")
        .finalize());
    out.push_str(",\"hash\":\"");
    out.push_str(&hash);
    out.push_str("\"}");
    Ok(hash)
}

/// `s` as a JSON string, byte for byte as serde_json writes it: a string without a
/// quote, backslash or control character is written as it is.
fn push_json_str(out: &mut String, s: &str) -> Result<(), serde_json::Error> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s)?);
    }
    Ok(())
}

/// Encodes one record; returns the line (without a newline) and its hash.
pub fn encode(
    seq: u64,
    ts: &str,
    prev: &str,
    event: &Event,
) -> Result<(String, String), serde_json::Error> {
    seal(seq, ts, prev, &Encoded::new(event)?)
}

/// What a checkpoint signs: the position of the checkpoint, the chain head before
/// it, and whether it opens a file.
pub fn checkpoint_message(seq: u64, prev: &str, place: Place) -> Vec<u8> {
    let kind = match place {
        Place::Opens => "opens-file",
        Place::Within => "periodic",
        Place::Closes => "closes-file",
    };
    format!("palisade-audit-checkpoint-v1\n{seq}\n{prev}\n{kind}").into_bytes()
}

/// Where a checkpoint stands in its file (signed with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// First in a file.
    Opens,
    /// Anywhere after.
    Within,
    /// Last in a file the writer finished (rotated, or closed at shutdown): a file
    /// without one was cut, or its writer is still writing it or stopped abruptly.
    Closes,
}

/// A checkpoint event for the record at `seq` after `prev`, signed with `key`.
pub fn checkpoint(key: &crate::key::SigningKey, seq: u64, prev: &str, place: Place) -> Event {
    Event::Checkpoint {
        key_id: key.id().to_owned(),
        public_key: key.public_hex().to_owned(),
        opens_file: place == Place::Opens,
        closes_file: place == Place::Closes,
        signature: key.sign(&checkpoint_message(seq, prev, place)),
    }
}

/// One record as read back.
#[derive(Debug)]
pub struct Record {
    /// Position in the chain.
    pub seq: u64,
    /// The hash of the record before.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
    /// The event, as JSON.
    pub event: Value,
}

/// Checks one line's own hash and reads it.
pub fn parse(line: &str) -> Result<Record, String> {
    const TAG: &str = ",\"hash\":\"";
    let at = line.rfind(TAG).ok_or("no hash: not a record")?;
    let hash = line[at + TAG.len()..]
        .strip_suffix("\"}")
        .ok_or("malformed hash field")?;
    if hash.len() != 64 || unhex(hash).is_none() {
        return Err("malformed hash field".into());
    }
    let body = format!("{}}}", &line[..at]);
    if hex(&Sha256::digest(body.as_bytes())) != hash {
        return Err("its hash does not match its content: the record was edited".into());
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("not JSON: {e}"))?;
    let seq = v.get("seq").and_then(Value::as_u64).ok_or("no seq")?;
    let prev = v
        .get("prev")
        .and_then(Value::as_str)
        .filter(|p| p.len() == 64)
        .ok_or("no prev")?
        .to_owned();
    let event = v
        .get("event")
        .filter(|e| e.is_object())
        .ok_or("no event")?
        .clone();
    Ok(Record {
        seq,
        prev,
        hash: hash.to_owned(),
        event,
    })
}

/// What a valid file holds.
#[derive(Debug, Default)]
pub struct Summary {
    /// Records read.
    pub records: u64,
    /// Signed checkpoints among them.
    pub checkpoints: u64,
    /// The first and last `seq`.
    pub first_seq: u64,
    /// The last `seq`.
    pub last_seq: u64,
    /// The hash of the last record.
    pub last_hash: String,
    /// Records after the last checkpoint: chained, not yet signed.
    pub unsigned_tail: u64,
    /// Whether the file ends with the checkpoint its writer signs when it finishes a
    /// file (rotation, shutdown). A file without one was cut short, or is still
    /// being written, or its writer stopped abruptly.
    pub closed: bool,
    /// IDs of the keys that signed checkpoints.
    pub keys: BTreeSet<String>,
}

/// The first record that breaks the chain.
#[derive(Debug, thiserror::Error)]
#[error("line {line}{}: {reason}", seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
pub struct Broken {
    /// 1-based line number in the file.
    pub line: usize,
    /// The record's `seq`, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// Verifies a log file: every record's hash, the chain from record to record, every
/// checkpoint's signature, and — when `trusted` is not empty — that every checkpoint
/// was signed by one of the `trusted` public keys (raw 32 bytes each). A file must
/// start at the beginning of a chain or at a checkpoint that opens a file.
pub fn verify(reader: impl BufRead, trusted: &[Vec<u8>]) -> Result<Summary, Broken> {
    let trusted: BTreeSet<String> = trusted.iter().map(|k| hex(k)).collect();
    let mut s = Summary::default();
    let mut last: Option<(u64, String)> = None;
    let lines = reader.split(b'\n');
    for (i, line) in lines.enumerate() {
        let n = i + 1;
        let broken = |seq: Option<u64>, reason: String| Broken {
            line: n,
            seq,
            reason,
        };
        let bytes = line.map_err(|e| broken(None, format!("unreadable: {e}")))?;
        if bytes.len() > MAX_LINE {
            return Err(broken(None, "longer than any record".into()));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| broken(None, "not UTF-8".into()))?;
        let r = parse(text).map_err(|e| broken(None, e))?;
        let fail = |reason: String| Broken {
            line: n,
            seq: Some(r.seq),
            reason,
        };
        let kind = r.event.get("type").and_then(Value::as_str).unwrap_or("");
        match &last {
            None => {
                let opens = kind == "checkpoint"
                    && r.event.get("opens_file").and_then(Value::as_bool) == Some(true);
                if r.seq == 0 {
                    if r.prev != GENESIS {
                        return Err(fail(
                            "the first record of a chain must follow the genesis hash".into(),
                        ));
                    }
                } else if !opens {
                    return Err(fail(
                        "the file does not begin with a checkpoint that opens it: records before this one were removed".into(),
                    ));
                }
                s.first_seq = r.seq;
            }
            Some((seq, hash)) => {
                if r.seq != seq + 1 {
                    return Err(fail(format!(
                        "follows seq {seq}: a record is missing, inserted or out of order"
                    )));
                }
                if r.prev != *hash {
                    return Err(fail(
                        "does not chain to the record before it: a record is missing, inserted or out of order".into(),
                    ));
                }
            }
        }
        if s.closed {
            return Err(fail(
                "follows the checkpoint that closed the file: files were spliced".into(),
            ));
        }
        if kind == "checkpoint" {
            let field = |k: &str| r.event.get(k).and_then(Value::as_str).unwrap_or("");
            let flag = |k: &str| r.event.get(k).and_then(Value::as_bool) == Some(true);
            let (opens, closes) = (flag("opens_file"), flag("closes_file"));
            if opens && last.is_some() {
                return Err(fail("a checkpoint that opens a file stands in the middle of one: files were spliced".into()));
            }
            if opens && closes {
                return Err(fail(
                    "a checkpoint cannot both open and close a file".into(),
                ));
            }
            let public = field("public_key");
            let Some(pk) = unhex(public).filter(|k| k.len() == 32) else {
                return Err(fail("checkpoint without a valid public key".into()));
            };
            if field("key_id") != key_id(&pk) {
                return Err(fail(
                    "checkpoint key ID does not match its public key".into(),
                ));
            }
            let place = if opens {
                Place::Opens
            } else if closes {
                Place::Closes
            } else {
                Place::Within
            };
            let msg = checkpoint_message(r.seq, &r.prev, place);
            if !verify_signature(public, &msg, field("signature")) {
                return Err(fail("checkpoint signature is not valid".into()));
            }
            if !trusted.is_empty() && !trusted.contains(public) {
                return Err(fail(format!(
                    "checkpoint signed by key {} which is not among the trusted keys",
                    field("key_id")
                )));
            }
            s.keys.insert(field("key_id").to_owned());
            s.checkpoints += 1;
            s.unsigned_tail = 0;
            s.closed = closes;
        } else {
            s.unsigned_tail += 1;
        }
        s.records += 1;
        s.last_seq = r.seq;
        s.last_hash.clone_from(&r.hash);
        last = Some((r.seq, r.hash));
    }
    if s.records == 0 {
        return Err(Broken {
            line: 0,
            seq: None,
            reason: "the file holds no records".into(),
        });
    }
    Ok(s)
}
