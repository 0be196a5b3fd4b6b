//! The gateway's side of the audit trail (OBS-01): who records what, and what a
//! failed record means. Decisions that let something happen — a call forwarded, a
//! list answered — wait for their record ([`Auditor::decide`]); with `fail-closed`
//! (the default) a decision that cannot be recorded does not take effect. Events
//! that only report ([`Auditor::note`]) keep their place in the log without waiting.

use palisade_audit::{AheadMark, AuditError, AuditLog, Event};
use palisade_config::OnAuditFailure;
use serde_json::Value;

use crate::principal::Principal;

/// The audit log as the gateway uses it; inert when the log is switched off.
#[derive(Debug)]
pub(crate) struct Auditor {
    log: Option<AuditLog>,
    /// The key call records hash their arguments under (none without a log).
    hash_key: Option<palisade_audit::key::HashKey>,
    fail_open: bool,
    /// Namespaced tools whose raw arguments are recorded.
    include_arguments: Vec<String>,
    /// Counted from the same events.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Alerts raised from the same events, when configured.
    pub(crate) alerts: Option<crate::alerts::Alerts>,
}

/// A decision could not be recorded, and the log fails closed.
#[derive(Debug)]
pub(crate) struct Unrecorded;

impl Auditor {
    pub(crate) fn new(
        log: Option<AuditLog>,
        hash_key: Option<palisade_audit::key::HashKey>,
        audit: Option<&palisade_config::Audit>,
        alerts: Option<crate::alerts::Alerts>,
    ) -> Self {
        Self {
            log,
            hash_key,
            fail_open: audit.is_some_and(|a| a.on_failure == OnAuditFailure::FailOpen),
            include_arguments: audit
                .map(|a| a.include_arguments.clone())
                .unwrap_or_default(),
            metrics: crate::metrics::Metrics::default(),
            alerts,
        }
    }

    /// Whether there is a log to write to (metrics are counted either way).
    pub(crate) fn is_on(&self) -> bool {
        self.log.is_some()
    }

    /// Records a decision and waits until it is in the log. `Err` means the decision
    /// must not take effect.
    pub(crate) async fn decide(&self, event: Event) -> Result<(), Unrecorded> {
        self.observe(&event);
        let Some(log) = &self.log else { return Ok(()) };
        match log.record(event).await {
            Ok(()) => Ok(()),
            Err(e) => self.failed(&e),
        }
    }

    /// Records an event without waiting.
    pub(crate) fn note(&self, event: Event) {
        self.observe(&event);
        if let Some(log) = &self.log {
            log.note(event);
        }
    }

    /// Records an event with the next record written (the request's own, usually),
    /// and at the latest at [`Auditor::flush_ahead`], which the request calls before
    /// its answer leaves.
    pub(crate) fn note_ahead(&self, event: Event) {
        self.observe(&event);
        if let Some(log) = &self.log {
            log.note_ahead(event);
        }
    }

    /// Where the log stands on events noted ahead; a request takes it when it
    /// starts and hands it to [`Auditor::flush_ahead`] before its answer leaves.
    pub(crate) fn ahead_mark(&self) -> AheadMark {
        self.log
            .as_ref()
            .map_or_else(AheadMark::default, AuditLog::ahead_mark)
    }

    /// Writes what [`Auditor::note_ahead`] queued, if it still waits; `Err` when
    /// events noted since `since` could not be written and the log fails closed.
    pub(crate) fn flush_ahead(&self, since: AheadMark) -> Result<(), Unrecorded> {
        match &self.log {
            Some(log) => log.flush_ahead(since).or_else(|e| self.failed(&e)),
            None => Ok(()),
        }
    }

    fn observe(&self, event: &Event) {
        self.metrics.observe(event);
        if let Some(a) = &self.alerts {
            a.observe(event);
        }
    }

    fn failed(&self, e: &AuditError) -> Result<(), Unrecorded> {
        if self.fail_open {
            tracing::error!(error = %e, "audit record lost (on_failure = fail-open): the decision stands");
            Ok(())
        } else {
            tracing::error!(error = %e, "audit record could not be written: the decision is refused (fail-closed)");
            Err(Unrecorded)
        }
    }

    /// The raw arguments of a call to `tool`, when the operator opted it in.
    pub(crate) fn arguments_of(&self, tool: &str, arguments: &Value) -> Option<Value> {
        self.include_arguments
            .iter()
            .any(|g| crate::args::glob_match(g, tool))
            .then(|| arguments.clone())
    }

    /// The keyed hash of a call's arguments for its record (see
    /// [`arguments_mac`]); `None` without a log.
    pub(crate) fn arguments_mac(&self, arguments: &Value) -> Option<String> {
        self.hash_key.as_ref().map(|k| arguments_mac(k, arguments))
    }

    /// Writes the stop record and signs the tail.
    pub(crate) async fn close(&self) {
        if let Some(log) = &self.log {
            log.close().await;
        }
    }
}

/// How a principal appears in audit records: `<issuer>|<subject>`.
pub(crate) fn who(p: &Principal) -> String {
    format!("{}|{}", p.issuer(), p.subject())
}

/// How a session appears in audit records: the first 16 hex characters of the
/// SHA-256 of its ID — enough to correlate, useless to hijack.
pub(crate) fn session_ref(id: &str) -> String {
    use sha2::Digest;
    palisade_audit::key::hex(&sha2::Sha256::digest(id.as_bytes())[..8])
}

/// HMAC-SHA256 under `key` of the arguments' canonical JSON (keys sorted at every
/// depth, as pins hash definitions): what call records carry instead of the values,
/// and what `palisade audit hash-arguments` computes to match a record.
pub fn arguments_mac(key: &palisade_audit::key::HashKey, arguments: &Value) -> String {
    key.mac(crate::pins::canonical(arguments).0.as_bytes())
}

/// Records the admin actions the CLI queued in the store, at start and then every
/// [`ADMIN_DRAIN`], until `stop`. A row is marked recorded only once its record is
/// written, so none is lost while the log cannot write.
pub(crate) async fn drain_admin_actions(
    auditor: std::sync::Arc<Auditor>,
    store: std::sync::Arc<palisade_store::SqliteStore>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(ADMIN_DRAIN);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pending = match store.admin_unrecorded().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the admin actions to record");
                continue;
            }
        };
        for a in pending {
            let event = Event::Admin {
                action: a.action,
                by: a.by,
                detail: a.detail,
                at: a.at,
            };
            if auditor.decide(event).await.is_err() {
                break;
            }
            if let Err(e) = store.admin_recorded(a.id).await {
                tracing::warn!(error = %e, "cannot mark an admin action recorded");
                break;
            }
        }
    }
}

/// How often the CLI's admin actions are picked up.
const ADMIN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest name or URI a record keeps as given: a client chooses them, and
/// records must stay small for every reader (SIEM sinks, `audit verify`, the tail
/// read at start). Longer ones keep their start and say how much was cut and its
/// hash.
const MAX_TARGET: usize = 512;

/// `s` as a record keeps it: whole when short, else its first [`MAX_TARGET`] bytes
/// (at a character boundary), the length cut and the SHA-256 of the whole.
pub(crate) fn clip(s: &str) -> String {
    if s.len() <= MAX_TARGET {
        return s.to_owned();
    }
    let mut end = MAX_TARGET;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let hash = palisade_audit::key::hex(&<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
    format!(
        "{}… [{} more bytes, sha256 {hash}]",
        &s[..end],
        s.len() - end
    )
}

/// A resource URI as a record keeps it: without user information, and with its query
/// and fragment replaced by their hash — where a URI carries a token (`?token=…`,
/// `user:pass@`), the audit log and every SIEM it feeds would otherwise hold it.
/// Then clipped like any name ([`clip`]).
pub(crate) fn uri_for_record(uri: &str) -> String {
    let hash = |s: &str| {
        palisade_audit::key::hex(&<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()))[..16]
            .to_owned()
    };
    let (before, after) = match uri.find(['?', '#']) {
        Some(i) => (&uri[..i], Some(&uri[i..])),
        None => (uri, None),
    };
    let mut out = match before.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let user = if host.len() < authority.len() {
                "[userinfo]@"
            } else {
                ""
            };
            format!("{scheme}://{user}{host}{path}")
        }
        None => before.to_owned(),
    };
    if let Some(rest) = after {
        out.push_str(&format!("?[sha256 {}]", hash(rest)));
    }
    clip(&out)
}

/// What a record keeps of a call's target: a URI as [`uri_for_record`] keeps it, a
/// name clipped.
pub(crate) fn target_for_record(target: &str) -> String {
    if target.contains(':') {
        uri_for_record(target)
    } else {
        clip(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obs_01_uris_in_records_carry_no_credentials() {
        assert_eq!(uri_for_record("file:///data/a.txt"), "file:///data/a.txt");
        let r = uri_for_record("https://alice:s3cret@files.example/doc?token=abc123#x");
        assert!(
            r.starts_with("https://[userinfo]@files.example/doc?[sha256 ")
                && !r.contains("s3cret")
                && !r.contains("abc123"),
            "{r}"
        );
        // The same query gives the same hash: records stay comparable.
        assert_eq!(
            uri_for_record("demo://x/y?k=v"),
            uri_for_record("demo://x/y?k=v")
        );
        assert!(clip(&"x".repeat(2000)).contains("1488 more bytes"));
    }
}
