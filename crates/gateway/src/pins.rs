//! Pinning of an upstream's whole surface (FEAT-02, OWASP MCP03): its server
//! instructions and every tool, prompt, resource and resource template it lists.
//!
//! Every definition is hashed over its canonical JSON (sorted keys, every nested
//! string) and compared with the pins in the store. In `strict` mode anything new or
//! changed waits for approval. In `tofu` mode the first list of each kind is pinned
//! as it is (minus definitions that fail inspection); after that, a changed
//! definition or a new name in the set — a rug pull either way — waits: it is hidden
//! and calls to it are refused until `palisade pins approve`. Resources are the one
//! exception: they are data, and servers add them as data appears, so in `tofu` mode
//! a new resource URI is pinned at first sight; a changed description of a known URI
//! still waits. Approvals made by the CLI are picked up on the next list, without a
//! restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use palisade_config::PinMode;
use palisade_store::SqliteStore;
use palisade_store::pins::{Seen, Sighting};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The pins of every upstream.
#[derive(Debug)]
pub(crate) struct Pins {
    store: Arc<SqliteStore>,
    names: Vec<String>,
    modes: Vec<PinMode>,
    /// Approved hashes seen recently, so that an unchanged list costs no query;
    /// forgotten when the store's count of decisions moves (`refresh`).
    approved: Mutex<HashMap<(usize, String, String), String>>,
    /// The store's count of pin decisions when `approved` was last known good.
    generation: std::sync::atomic::AtomicI64,
    /// (upstream, kind) pairs known to have been listed before.
    seen_kinds: Mutex<std::collections::HashSet<(usize, String)>>,
    /// Held by the list that may be a first sight until its items are pinned, so that
    /// a concurrent list of the same kind never sees the kind as seen and its items
    /// as new.
    first: Arc<tokio::sync::Mutex<()>>,
    /// Versions this gateway has seen waiting for a decision (upstream, kind, name,
    /// hash), so that the decision is recorded when it is first seen; bounded.
    waiting: Mutex<std::collections::HashSet<(usize, String, String, String)>>,
    /// The gateway's audit log (also what stdio supervisors record egress with).
    pub(crate) audit: Arc<crate::audit::Auditor>,
}

/// The pin name of an upstream's server instructions: `@` cannot appear in a tool
/// or prompt name that passes FEAT-03, so it never collides with one.
pub(crate) const INSTRUCTIONS: &str = "@instructions";

/// The canonical form of a definition and its SHA-256: compact JSON with every
/// object's keys sorted at every depth, so equal definitions serialise equally
/// whatever order an upstream sends their keys in (the build's `serde_json` keeps
/// insertion order: a dependency enables `preserve_order`).
pub(crate) fn canonical(item: &Value) -> (String, String) {
    let mut text = String::new();
    write_canonical(item, Numbers::AsRead, &mut text);
    let hash = palisade_audit::key::hex(&Sha256::digest(text.as_bytes()));
    (text, hash)
}

/// How [`write_canonical`] writes numbers.
#[derive(Clone, Copy)]
pub(crate) enum Numbers {
    /// As `serde_json` reads them: `1` and `1.0` differ (pins: a definition that
    /// changes how it writes a number has changed).
    AsRead,
    /// Equal numbers equally: a float with no fraction within ±2^53 (`1.0`, `1e2`,
    /// `-0.0`) as the integer it is (`1`, `100`, `0`); other floats in `serde_json`'s
    /// shortest form, which is one per value.
    ByValue,
}

/// Writes `v` as compact JSON with every object's keys sorted at every depth.
pub(crate) fn write_canonical(v: &Value, numbers: Numbers, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, numbers, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, numbers, out);
            }
            out.push(']');
        }
        Value::Number(n) if matches!(numbers, Numbers::ByValue) && n.is_f64() => {
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            match n.as_f64() {
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "a whole number within ±2^53 is exactly an i64"
                )]
                Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => {
                    out.push_str(&(f as i64).to_string());
                }
                _ => out.push_str(&n.to_string()),
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

impl Pins {
    pub(crate) fn new(
        store: Arc<SqliteStore>,
        names: Vec<String>,
        modes: Vec<PinMode>,
        audit: Arc<crate::audit::Auditor>,
    ) -> Self {
        Self {
            store,
            names,
            modes,
            approved: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicI64::new(-1),
            seen_kinds: Mutex::new(std::collections::HashSet::new()),
            first: Arc::new(tokio::sync::Mutex::new(())),
            waiting: Mutex::new(std::collections::HashSet::new()),
            audit,
        }
    }

    /// The store's count of pin decisions (-2 when it cannot say). When it moved
    /// since the last look — a decision made with the CLI, a revocation above all —
    /// what was cached as approved is forgotten, so that a revoked approval is never
    /// served from the cache. One small query.
    pub(crate) async fn refresh(&self) -> i64 {
        use std::sync::atomic::Ordering;
        let now = self.store.pin_generation().await.unwrap_or(-2);
        let before = self.generation.swap(now, Ordering::AcqRel);
        if now != before || now < 0 {
            self.approved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        now
    }

    /// Whether this is the first time upstream `idx` lists anything of `kind` (its
    /// first sight, in `tofu` mode). Ask once per list, before admitting its items,
    /// and keep the guard until they are admitted: lists that may be a first sight
    /// take turns. A store error counts as seen: nothing new is trusted on a guess.
    pub(crate) async fn first_sight(
        &self,
        idx: usize,
        kind: &str,
    ) -> (bool, Option<tokio::sync::OwnedMutexGuard<()>>) {
        self.refresh().await;
        let key = (idx, kind.to_owned());
        let seen = |k: &(usize, String)| {
            self.seen_kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(k)
        };
        if seen(&key) {
            return (false, None);
        }
        let turn = Arc::clone(&self.first).lock_owned().await;
        if seen(&key) {
            return (false, None);
        }
        let upstream = self.names.get(idx).map_or("", String::as_str);
        match self.store.pin_kind_seen(upstream, kind).await {
            Ok(false) => (true, Some(turn)),
            Ok(true) => {
                self.seen_kinds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key);
                (false, None)
            }
            Err(e) => {
                tracing::error!(%upstream, kind, error = %e, "pin store error");
                (false, None)
            }
        }
    }

    /// Whether upstream `idx` is pinned at all.
    pub(crate) fn enabled(&self, idx: usize) -> bool {
        self.modes.get(idx).is_some_and(|m| *m != PinMode::Off)
    }

    /// Records, once, a decision made on a version this gateway saw waiting: who
    /// approved or rejected it (with `palisade pins`), as an audit event.
    async fn note_decision(
        &self,
        idx: usize,
        upstream: &str,
        kind: &str,
        name: &str,
        hash: &str,
        seen: &Seen,
    ) {
        let key = (idx, kind.to_owned(), name.to_owned(), hash.to_owned());
        let status = {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match seen {
                Seen::Pending => {
                    if w.len() < 10_000 {
                        w.insert(key);
                    }
                    return;
                }
                Seen::Approved if w.remove(&key) => "approved",
                Seen::Rejected if w.remove(&key) => "rejected",
                _ => return,
            }
        };
        let by = self
            .store
            .pin_versions(upstream, Some(name))
            .await
            .ok()
            .and_then(|v| v.into_iter().find(|p| p.hash == hash && p.kind == kind))
            .and_then(|p| p.decided_by);
        self.audit.note(palisade_audit::Event::Pin {
            upstream: upstream.to_owned(),
            kind: kind.to_owned(),
            name: crate::audit::target_for_record(name),
            hash: hash.to_owned(),
            status: status.to_owned(),
            note: by.map(|b| format!("decided by {b}")),
        });
    }

    /// Whether a definition may be offered: it matches an approved pin, or is new and
    /// trusted on first use (`first_sight` is [`Pins::first_sight`] of its list).
    /// `failed` holds the inspection rules it failed, if any; such a definition is
    /// never trusted on first use. A store error admits nothing. `definition` and
    /// `hash` are the item's [`canonical`] form.
    pub(crate) async fn admit(
        &self,
        idx: usize,
        kind: &str,
        name: &str,
        (definition, hash): (&str, &str),
        failed: Option<&[String]>,
        first_sight: bool,
    ) -> bool {
        let key = (idx, kind.to_owned(), name.to_owned());
        if self
            .approved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|h| h == hash)
        {
            return true;
        }
        let upstream = self.names.get(idx).map_or("", String::as_str);
        let tofu = self.modes.get(idx) == Some(&PinMode::Tofu);
        let trust_new = tofu && (first_sight || kind == "resource");
        let note = match failed {
            Some(r) => Some(format!("failed inspection: {}", r.join(", "))),
            None if tofu && !trust_new => {
                Some("new or changed since the upstream was first pinned".to_owned())
            }
            None => None,
        };
        let seen = self
            .store
            .pin_observe(
                Sighting {
                    upstream,
                    kind,
                    name,
                    hash,
                    definition,
                },
                trust_new,
                note.as_deref(),
                crate::session::unix_now(),
            )
            .await;
        if let Ok((seen, true)) = &seen {
            // A version seen for the first time: pinned, or waiting for a person.
            self.audit.note(palisade_audit::Event::Pin {
                upstream: upstream.to_owned(),
                kind: kind.to_owned(),
                name: crate::audit::target_for_record(name),
                hash: hash.to_owned(),
                status: match seen {
                    Seen::Approved => "pinned",
                    Seen::Pending => "quarantined",
                    Seen::Rejected => "rejected",
                }
                .to_owned(),
                note: note.clone(),
            });
        }
        if let Ok((decided, _)) = &seen {
            self.note_decision(idx, upstream, kind, name, hash, decided)
                .await;
        }
        match seen.map(|(s, _)| s) {
            Ok(Seen::Approved) => {
                if failed.is_some() {
                    tracing::warn!(%upstream, kind, item = %name, "serving a definition that fails inspection because it was approved");
                }
                self.approved
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, hash.to_owned());
                true
            }
            Ok(Seen::Pending) => {
                tracing::warn!(%upstream, kind, item = %name, hash = %&hash[..12], "quarantined a new or changed definition until it is approved (palisade pins diff / approve)");
                false
            }
            Ok(Seen::Rejected) => {
                tracing::info!(%upstream, kind, item = %name, hash = %&hash[..12], "hid a rejected definition");
                false
            }
            Err(e) => {
                tracing::error!(%upstream, kind, item = %name, error = %e, "pin store error: definition withheld");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feat_02_canonical_form_ignores_key_order() {
        let a: Value = serde_json::from_str(
            r#"{"name":"echo","inputSchema":{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"number"}}},"description":"d"}"#,
        )
        .unwrap_or_default();
        let b: Value = serde_json::from_str(
            r#"{"description":"d","inputSchema":{"properties":{"a":{"type":"number"},"b":{"type":"string"}},"type":"object"},"name":"echo"}"#,
        )
        .unwrap_or_default();
        assert_eq!(canonical(&a), canonical(&b));
        assert!(
            canonical(&a)
                .0
                .starts_with(r#"{"description":"d","inputSchema":{"properties":{"a""#)
        );
        // Array order is meaning, and stays.
        assert_ne!(
            canonical(&serde_json::json!([1, 2])),
            canonical(&serde_json::json!([2, 1]))
        );
    }
}
