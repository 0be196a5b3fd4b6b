//! The audit trail (OBS-01, OWASP MCP08): every security decision as a typed
//! [`Event`], appended to a JSONL file in which each record carries the hash of the
//! one before it, with periodic checkpoints signed with Ed25519.
//!
//! - [`chain`] encodes records and [`verify`](chain::verify)s a file: it names the
//!   first record that was edited, deleted, reordered or inserted.
//! - [`key`] loads (or creates) the signing key and checks signatures.
//! - [`log`] is the writer: the producing task appends under one mutex (on the
//!   blocking pool when every record is synced), a ticker signs checkpoints, syncs and
//!   rotates; `record` returns once the record is in the file, so a decision can wait
//!   for its record before it takes effect.
//!
//! Tokens, secrets and raw argument values never enter an event: producers pass
//! hashes and identifiers only.

#![forbid(unsafe_code)]

pub mod chain;
pub mod event;
pub mod key;
pub mod log;
pub mod ocsf;

pub use event::{Decision, Event};
pub use log::{AheadMark, AuditError, AuditLog, AuditOptions, Fsync, Tee};

#[cfg(test)]
mod tests;
