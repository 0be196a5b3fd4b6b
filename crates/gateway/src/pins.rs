//! Pinning of upstream tool and prompt definitions (FEAT-02, OWASP MCP03).
//!
//! Every definition an upstream lists is hashed over its canonical JSON (sorted
//! keys, every nested string) and compared with the pins in the store. In `tofu` mode
//! a new item is pinned at first sight unless it failed inspection; in `strict` mode
//! it waits for approval. A changed definition — a rug pull — always waits: it is
//! hidden from the list and calls to it are refused until `palisade pins approve`.
//! Approvals made by the CLI are picked up on the next list, without a restart.

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
    /// Approved hashes seen recently, so that an unchanged list costs no query.
    approved: Mutex<HashMap<(usize, String, String), String>>,
}

/// The canonical form of a definition and its SHA-256: serde_json objects keep
/// their keys sorted, so equal definitions serialise equally.
pub(crate) fn canonical(item: &Value) -> (String, String) {
    let text = item.to_string();
    let hash = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (text, hash)
}

impl Pins {
    pub(crate) fn new(store: Arc<SqliteStore>, names: Vec<String>, modes: Vec<PinMode>) -> Self {
        Self {
            store,
            names,
            modes,
            approved: Mutex::new(HashMap::new()),
        }
    }

    /// Whether upstream `idx` is pinned at all.
    pub(crate) fn enabled(&self, idx: usize) -> bool {
        self.modes.get(idx).is_some_and(|m| *m != PinMode::Off)
    }

    /// Whether a definition may be offered: it matches an approved pin, or is new and
    /// trusted on first use. `failed` holds the inspection rules it failed, if any;
    /// such a definition is never trusted on first use. A store error admits nothing.
    /// `definition` and `hash` are the item's [`canonical`] form.
    pub(crate) async fn admit(
        &self,
        idx: usize,
        kind: &str,
        name: &str,
        (definition, hash): (&str, &str),
        failed: Option<&[String]>,
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
        let note = failed.map(|r| format!("failed inspection: {}", r.join(", ")));
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
                self.modes.get(idx) == Some(&PinMode::Tofu),
                note.as_deref(),
                crate::session::unix_now(),
            )
            .await;
        match seen {
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
