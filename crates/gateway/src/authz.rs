//! Authorization: the Cedar policy the gateway enforces (AUTH-20, FEAT-06, FEAT-08;
//! OWASP MCP02/MCP07).
//!
//! Deny by default. With `[auth]` the policy comes from `[policy] file`; without it
//! (local mode, loopback only) from [`LOCAL_POLICY`], which permits the local user
//! everything and nobody else anything. The file is re-read when it changes and on
//! SIGHUP: the new set is parsed and validated first and swapped in whole; a set that
//! fails keeps the last good one in force, is recorded and raises an alert.
//!
//! Architecture Invariant: every tools/call, prompts/get, resources/read and
//! completion, and every item of every list, is decided by the policy before anything
//! about it reaches the client or the upstream; an error while deciding denies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use palisade_config::{Config, Item};
use palisade_policy::{Decision, Facts, Kind, Policies, Query, Target};
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

use crate::principal::Caller;
use crate::session::Session;

/// Local mode's policy: the local user (issuer `local`, the only principal that
/// exists without `[auth]`) may use everything.
pub(crate) const LOCAL_POLICY: &str = r#"@id("local-user-uses-everything")
permit(principal, action, resource) when { principal.issuer == "local" };
"#;

/// The policy in force and where it came from.
#[derive(Debug)]
struct Loaded {
    policies: Arc<Policies>,
    sha256: String,
    /// The file's modification time and length when it was read.
    stamp: Option<(SystemTime, u64)>,
}

/// What a request is about, for the policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) kind: Kind,
    /// The upstream's index.
    pub(crate) upstream: usize,
    /// The name at the upstream (tool globs match this).
    pub(crate) local: &'a str,
    /// The name the client sees (namespaced), or the resource URI.
    pub(crate) name: &'a str,
    /// `clean`, or `flagged` when the target's definition had findings let through.
    pub(crate) verdict: &'a str,
}

/// The gateway's policy decision point.
#[derive(Debug)]
pub(crate) struct Authz {
    current: RwLock<Loaded>,
    file: Option<PathBuf>,
    interval: Duration,
    names: Vec<String>,
    /// The upstreams as configured: the attributes policies see
    /// (`Upstream::attributes_for`).
    upstreams: Vec<palisade_config::Upstream>,
    audit: Arc<crate::audit::Auditor>,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reads and validates a policy file.
fn read(path: &std::path::Path) -> Result<Loaded, String> {
    let before = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let policies = Policies::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Loaded {
        policies: Arc::new(policies),
        sha256: palisade_audit::key::hex(&sha2::Sha256::digest(text.as_bytes())),
        stamp: before,
    })
}

impl Authz {
    /// Loads the policy the config names (or the local default). A policy that does
    /// not parse or validate stops the start.
    pub(crate) async fn load(
        config: &Config,
        audit: Arc<crate::audit::Auditor>,
    ) -> Result<Self, String> {
        let (file, interval) = match &config.policy {
            Some(p) => (Some(p.file.clone()), p.reload_interval),
            None => (None, Duration::from_secs(3600)),
        };
        let loaded = match &file {
            Some(path) => read(path)?,
            None => Loaded {
                policies: Arc::new(Policies::parse(LOCAL_POLICY).map_err(|e| e.to_string())?),
                sha256: palisade_audit::key::hex(&sha2::Sha256::digest(LOCAL_POLICY.as_bytes())),
                stamp: None,
            },
        };
        let policies = &loaded.policies;
        let event = palisade_audit::Event::Policy {
            outcome: "loaded".into(),
            source: file
                .as_ref()
                .map_or_else(|| "embedded".to_owned(), |p| p.display().to_string()),
            sha256: loaded.sha256.clone(),
            policies: policies.len(),
            error: None,
            trigger: "start".into(),
        };
        audit
            .decide(event)
            .await
            .map_err(|_| "the audit log cannot record the policy loaded".to_owned())?;
        tracing::info!(
            source = file.as_ref().map_or_else(|| "embedded (local mode)".to_owned(), |p| p.display().to_string()),
            policies = policies.len(),
            step_up = ?policies.step_up_scopes(),
            approvals = policies.approvals(),
            "policy loaded"
        );
        Ok(Self {
            current: RwLock::new(loaded),
            file,
            interval,
            names: config.upstreams.iter().map(|u| u.name.clone()).collect(),
            upstreams: config.upstreams.clone(),
            audit,
        })
    }

    fn policies(&self) -> Arc<Policies> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .policies,
        )
    }

    /// Whether any permit names a `@step_up` scope (only then is a denial worth a
    /// second look for AUTH-12).
    pub(crate) fn has_step_up(&self) -> bool {
        !self.policies().step_up_scopes().is_empty()
    }

    /// Asks `f` with the query for `caller`'s `action` on `s`.
    fn ask<T>(
        &self,
        caller: &Caller,
        session: &Session,
        action: &str,
        s: &Subject<'_>,
        f: impl FnOnce(&Policies, &Query<'_>) -> T,
    ) -> T {
        let u = self.upstreams.get(s.upstream);
        let (u_risk, u_class) = u.map_or(("normal", "unclassified"), |u| {
            u.attributes_for(Item::Upstream)
        });
        let item = match s.kind {
            Kind::Tool => Item::Tool(s.local),
            Kind::Prompt => Item::Prompt(s.local),
            Kind::Resource => Item::Resource(s.local),
        };
        let (risk, class) = u.map_or((u_risk, u_class), |u| u.attributes_for(item));
        let address = caller
            .address
            .map(|a: IpAddr| a.to_string())
            .unwrap_or_default();
        let called = session.called();
        let q = Query {
            caller: palisade_policy::Caller {
                issuer: caller.principal.issuer(),
                subject: caller.principal.subject(),
                roles: &caller.roles,
                groups: &caller.groups,
            },
            action,
            target: Target {
                kind: s.kind,
                upstream: self.names.get(s.upstream).map_or("", String::as_str),
                name: s.name,
                risk,
                data_class: class,
                upstream_risk: u_risk,
                upstream_data_class: u_class,
            },
            context: Facts {
                scopes: caller.scopes.as_deref().unwrap_or_default(),
                time: now_unix(),
                verdict: s.verdict,
                client: caller.client.as_deref().unwrap_or_default(),
                address: &address,
                called: &called,
                session_seconds: session.age_seconds(),
            },
        };
        f(&self.policies(), &q)
    }

    /// Whether the policy in force could let `caller` do `action` to anything: false
    /// when no permit names both (LIFE-07; [`Policies::could_permit`]).
    pub(crate) fn could_permit(&self, caller: &Caller, action: &str) -> bool {
        let c = palisade_policy::Caller {
            issuer: caller.principal.issuer(),
            subject: caller.principal.subject(),
            roles: &caller.roles,
            groups: &caller.groups,
        };
        self.policies().could_permit(&c, action)
    }

    /// Decides `caller`'s `action` on `s`. An error while deciding denies.
    pub(crate) fn decide(
        &self,
        caller: &Caller,
        session: &Session,
        action: &str,
        s: &Subject<'_>,
    ) -> Decision {
        self.ask(caller, session, action, s, |p, q| match p.decide(q) {
            Ok(d) => {
                if !d.errors.is_empty() {
                    tracing::warn!(errors = ?d.errors, "policies failed to evaluate (they did not apply)");
                }
                d
            }
            Err(e) => {
                tracing::warn!(error = %e, "a request could not be put to the policy: denied");
                Decision {
                    allow: false,
                    policies: Vec::new(),
                    errors: vec![e.to_string()],
                    approval: false,
                }
            }
        })
    }

    /// For a denied request: the scope a token would need (AUTH-12), if a
    /// `@step_up` permit would then allow it.
    pub(crate) fn step_up(
        &self,
        caller: &Caller,
        session: &Session,
        action: &str,
        s: &Subject<'_>,
    ) -> Option<String> {
        self.ask(caller, session, action, s, |p, q| {
            p.step_up(q).ok().flatten()
        })
    }

    /// Re-reads the policy file now; `trigger` says why (`change`, `sighup`).
    pub(crate) async fn reload(&self, trigger: &str) {
        let Some(path) = &self.file else { return };
        let result = read(path);
        let (outcome, error, sha, count) = match result {
            Ok(new) => {
                let mut cur = self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if new.sha256 == cur.sha256 {
                    cur.stamp = new.stamp;
                    return;
                }
                let n = new.policies.len();
                let sha = new.sha256.clone();
                *cur = new;
                tracing::info!(file = %path.display(), policies = n, trigger, "policy reloaded");
                ("reloaded", None, sha, n)
            }
            Err(e) => {
                let mut cur = self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Do not report the same broken file again until it changes.
                cur.stamp = stamp(path);
                tracing::error!(error = %e, trigger, "policy reload refused: the last good policy stays in force");
                ("refused", Some(e), cur.sha256.clone(), cur.policies.len())
            }
        };
        self.audit.note(palisade_audit::Event::Policy {
            outcome: outcome.into(),
            source: path.display().to_string(),
            sha256: sha,
            policies: count,
            error,
            trigger: trigger.into(),
        });
    }

    /// Whether the file changed since it was last read.
    fn changed(&self) -> bool {
        let Some(path) = &self.file else { return false };
        let now = stamp(path);
        now != self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stamp
    }

    /// Re-reads the file when it changes (checked every `reload_interval`) and on
    /// SIGHUP, until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, stop: CancellationToken) {
        if self.file.is_none() {
            return;
        }
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                _ = hangup => self.reload("sighup").await,
                _ = tick.tick() => {
                    if self.changed() {
                        self.reload("change").await;
                    }
                }
            }
        }
    }
}
