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
    /// Refusals recorded in the current window, and those counted instead.
    refusals: std::sync::Mutex<Refusals>,
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
            refusals: std::sync::Mutex::default(),
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

    /// Records a refusal and waits until it is in the log, if
    /// the window's budget takes it (see [`REFUSAL_WINDOW`]); otherwise counts it.
    /// The refusal stands either way; metrics and alerts see every one.
    pub(crate) async fn refused(&self, key: RefusalKey<'_>, event: Event) {
        if self.admit_refusal(key, &event)
            && let Some(log) = &self.log
            && let Err(e) = log.record(event).await
        {
            let _ = self.failed(&e);
        }
    }

    /// Like [`Auditor::refused`], without waiting for the record.
    pub(crate) fn note_refused(&self, key: RefusalKey<'_>, event: Event) {
        if self.admit_refusal(key, &event)
            && let Some(log) = &self.log
        {
            log.note(event);
        }
    }

    /// Whether a refusal is to be recorded one by one; writes the counts of a window
    /// that has ended first.
    fn admit_refusal(&self, key: RefusalKey<'_>, event: &Event) -> bool {
        self.observe(event);
        if self.log.is_none() {
            return false;
        }
        let (record, ended) = self.refusals().spend(std::time::Instant::now(), key);
        self.write_counts(ended);
        record
    }

    /// Writes the counts of a refusal window that has ended by now (`all`: of the
    /// current one too, as the gateway stops).
    pub(crate) fn flush_refusals(&self, all: bool) {
        if self.log.is_some() {
            let ended = self.refusals().ended(std::time::Instant::now(), all);
            self.write_counts(ended);
        }
    }

    fn refusals(&self) -> std::sync::MutexGuard<'_, Refusals> {
        self.refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_counts(&self, counted: Vec<Event>) {
        if let Some(log) = &self.log {
            for e in counted {
                tracing::warn!(event = ?e, "refusals past the audit budget were counted, not recorded one by one");
                log.note(e);
            }
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
        self.flush_refusals(true);
        if let Some(log) = &self.log {
            log.close().await;
        }
    }
}

/// The window of the refusal budget. Within each, the log records at most
/// [`REFUSALS_PER_SOURCE`] refusals of one kind from one source for one reason and
/// [`REFUSALS_IN_ALL`] in all; the rest are counted, and each source's count is one
/// `refusals_counted` record when the window ends. Refusals cost an attacker
/// nothing (no valid token, or a caller already over its limit), so without a
/// budget a flood of them would grow the log as fast as the gateway can answer and
/// push its history out through rotation (`keep_files`).
pub(crate) const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Refusals recorded one by one per source, kind and reason in a window.
pub(crate) const REFUSALS_PER_SOURCE: u32 = 60;
/// Refusals recorded one by one in all in a window.
pub(crate) const REFUSALS_IN_ALL: u32 = 600;
/// Sources counted apart in a window; refusals from further sources share the source
/// `others`.
const SOURCES_APART: usize = 1024;

/// What was refused, for the refusal budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Refused {
    /// An authentication attempt; the source is the peer's address.
    Auth,
    /// A message refused by a limit; the source is the principal.
    Call,
}

/// A refusal's place in the budget: what was refused, whose, why.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefusalKey<'a> {
    pub(crate) of: Refused,
    /// The peer's [`peer_source`] for [`Refused::Auth`], the principal for
    /// [`Refused::Call`].
    pub(crate) source: &'a str,
    pub(crate) reason: &'static str,
}

/// Refusals recorded in the current window, and those counted instead.
#[derive(Debug, Default)]
struct Refusals {
    since: Option<std::time::Instant>,
    recorded: u32,
    sources: std::collections::HashMap<(Refused, String, &'static str), Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    recorded: u32,
    counted: u64,
}

impl Refusals {
    /// Whether a refusal now is recorded one by one; and the counts of a window that
    /// ended before it.
    fn spend(&mut self, now: std::time::Instant, key: RefusalKey<'_>) -> (bool, Vec<Event>) {
        let ended = self.ended(now, false);
        self.since.get_or_insert(now);
        let mut key = (key.of, key.source.to_owned(), key.reason);
        if self.sources.len() >= SOURCES_APART && !self.sources.contains_key(&key) {
            key.1 = "others".to_owned();
        }
        let in_all = self.recorded < REFUSALS_IN_ALL;
        let tally = self.sources.entry(key).or_default();
        if in_all && tally.recorded < REFUSALS_PER_SOURCE {
            tally.recorded += 1;
            self.recorded += 1;
            (true, ended)
        } else {
            tally.counted += 1;
            (false, ended)
        }
    }

    /// The counts of the window, as records, if it has ended by `now` (or `all`); the
    /// next refusal starts a new one.
    fn ended(&mut self, now: std::time::Instant, all: bool) -> Vec<Event> {
        let over = self
            .since
            .is_some_and(|t| all || now.duration_since(t) >= REFUSAL_WINDOW);
        if !over {
            return Vec::new();
        }
        self.since = None;
        self.recorded = 0;
        let mut counted: Vec<_> = self
            .sources
            .drain()
            .filter(|(_, t)| t.counted > 0)
            .collect();
        counted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        counted
            .into_iter()
            .map(|((of, source, reason), t)| Event::RefusalsCounted {
                of: match of {
                    Refused::Auth => "auth",
                    Refused::Call => "call",
                }
                .to_owned(),
                source,
                reason: reason.to_owned(),
                count: t.counted,
                window_seconds: REFUSAL_WINDOW.as_secs(),
            })
            .collect()
    }
}

/// How a peer appears as the source of refused authentications: its address, an
/// IPv6 peer by its /64 (one host can hold a whole /64).
pub(crate) fn peer_source(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
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
/// depth, as pins hash definitions; equal numbers written alike, so `1`, `1.0` and
/// `1e0` hash the same): what call records carry instead of the values, and what
/// `palisade audit hash-arguments` computes to match a record.
pub fn arguments_mac(key: &palisade_audit::key::HashKey, arguments: &Value) -> String {
    let mut text = String::new();
    crate::pins::write_canonical(arguments, crate::pins::Numbers::ByValue, &mut text);
    key.mac(text.as_bytes())
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
    #![allow(clippy::unwrap_used, reason = "tests")]

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

    #[test]
    fn obs_01_equal_arguments_hash_alike_however_their_numbers_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let key = palisade_audit::key::HashKey::load_or_create(&dir.path().join("k")).unwrap();
        let mac = |text: &str| arguments_mac(&key, &serde_json::from_str(text).unwrap());
        for (a, b) in [
            (r#"{"n":1,"s":"x"}"#, r#"{"s":"x","n":1.0}"#),
            (r#"{"n":100}"#, r#"{"n":1e2}"#),
            (r#"{"n":[0]}"#, r#"{"n":[-0.0]}"#),
            (r#"{"n":0.5}"#, r#"{"n":5e-1}"#),
            (r#"{"n":1e300}"#, r#"{"n":1.0e300}"#),
            (r#"{"n":-9007199254740992}"#, r#"{"n":-9007199254740992.0}"#),
        ] {
            assert_eq!(mac(a), mac(b), "{a} and {b}");
        }
        for (a, b) in [
            (r#"{"n":1}"#, r#"{"n":1.5}"#),
            (r#"{"n":1}"#, r#"{"n":"1"}"#),
            (r#"{"n":0.1}"#, r#"{"n":0.10000000000000002}"#),
        ] {
            assert_ne!(mac(a), mac(b), "{a} and {b}");
        }
        // Pins keep the form as read: a definition that rewrites a number has changed.
        assert_ne!(
            crate::pins::canonical(&serde_json::json!({"n": 1})).1,
            crate::pins::canonical(&serde_json::json!({"n": 1.0})).1
        );
    }

    fn counts(events: &[Event]) -> Vec<(String, String, u64)> {
        events
            .iter()
            .map(|e| match e {
                Event::RefusalsCounted {
                    of, source, count, ..
                } => (of.clone(), source.clone(), *count),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn obs_01_refusals_are_recorded_within_a_budget_and_the_rest_counted() {
        let t0 = std::time::Instant::now();
        let mut r = Refusals::default();
        let spend = |r: &mut Refusals, at: u64, of, source: &str| {
            let key = RefusalKey {
                of,
                source,
                reason: "bad",
            };
            r.spend(t0 + std::time::Duration::from_secs(at), key)
        };
        // One source: its first REFUSALS_PER_SOURCE are records, the rest counted.
        let recorded = (0..100)
            .filter(|_| spend(&mut r, 1, Refused::Auth, "203.0.113.9").0)
            .count();
        assert_eq!(recorded, REFUSALS_PER_SOURCE as usize);
        // Another source and another kind have budgets of their own.
        assert!(spend(&mut r, 2, Refused::Auth, "198.51.100.7").0);
        assert!(spend(&mut r, 2, Refused::Call, "203.0.113.9").0);
        // Nothing ends before the window does.
        assert!(
            r.ended(t0 + std::time::Duration::from_secs(59), false)
                .is_empty()
        );
        // The next refusal after the window writes the window's counts first, then is
        // recorded in a new window.
        let (record, ended) = spend(&mut r, 61, Refused::Auth, "203.0.113.9");
        assert!(record);
        assert_eq!(
            counts(&ended),
            [("auth".to_owned(), "203.0.113.9".to_owned(), 40)]
        );
        // Stopping writes what the current window counted.
        for _ in 0..70 {
            spend(&mut r, 62, Refused::Call, "https://idp|mallory");
        }
        assert_eq!(
            counts(&r.ended(t0, true)),
            [("call".to_owned(), "https://idp|mallory".to_owned(), 10)]
        );
    }

    #[test]
    fn obs_01_refusals_from_many_sources_share_one_budget_and_then_one_count() {
        let t0 = std::time::Instant::now();
        let mut r = Refusals::default();
        let mut recorded = 0;
        for i in 0..3_000_u32 {
            let source = format!("198.51.{}.{}", i / 256, i % 256);
            let key = RefusalKey {
                of: Refused::Auth,
                source: &source,
                reason: "bad",
            };
            if r.spend(t0, key).0 {
                recorded += 1;
            }
        }
        assert_eq!(recorded, REFUSALS_IN_ALL);
        let ended = counts(&r.ended(t0, true));
        // Sources past those counted apart share one count: the records a window can
        // end with are bounded too.
        assert_eq!(ended.len(), SOURCES_APART - REFUSALS_IN_ALL as usize + 1);
        assert_eq!(
            ended.iter().map(|c| c.2).sum::<u64>(),
            u64::from(3_000 - REFUSALS_IN_ALL)
        );
        assert!(
            ended
                .iter()
                .any(|c| c.1 == "others" && c.2 == 3_000 - 1_024)
        );
    }

    #[test]
    fn obs_01_an_ipv6_peer_is_a_source_by_its_64() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(peer_source(a), "2001:db8:1:2::/64");
        assert_eq!(peer_source(a), peer_source(b));
        let mapped: std::net::IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(peer_source(mapped), "203.0.113.9");
    }
}
