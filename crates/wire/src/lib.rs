//! The MCP wire: JSON-RPC 2.0 envelopes and Server-Sent Events framing.
//!
//! Every message is parsed exactly once into a [`Message`], which keeps the original
//! bytes and the spans of its `id` and `params`. The gateway forwards those bytes
//! unchanged unless a guard rewrites the message, so what the upstream receives is
//! what the client sent (no parse → re-serialise differential), except for the
//! request ID, which is spliced in place (LIFE-04).
//!
//! This crate is pure: no I/O, no async runtime. It is property-tested and fuzzed
//! (`fuzz/fuzz_targets/wire_message.rs`, `fuzz/fuzz_targets/sse_decoder.rs`).

#![forbid(unsafe_code)]

mod error;
mod message;
pub mod sse;
mod version;

pub use error::{ErrorCode, ParseError};
pub use message::{Id, Kind, Message};
pub use version::ProtocolVersion;
