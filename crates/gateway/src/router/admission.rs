//! Admission: what an upstream may offer and what a caller may send it. Each listed
//! definition (and each upstream's instructions) passes inspection and then its pin
//! before it is offered; withheld ones go into the quarantine that refuses calls and
//! reads; lists an upstream announces as changed are re-checked at once; a call's
//! arguments pass the OBS-04 checks and the tool's input schema (FEAT-04).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use palisade_wire::{ErrorCode, Id, Message};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Router, Schemas};
use crate::session::Recheck;
use crate::upstream::Link;

/// Host names resolved per call at most ([`resolved_problem`]).
const MAX_RESOLVED_NAMES: usize = 8;
/// How long resolving them may take, all together.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// OBS-04 with `resolve_names`: the first URL argument whose host name does not
/// resolve, or resolves to any loopback, private, link-local or reserved address.
/// A name the gateway cannot resolve in time is refused too: the upstream could
/// resolve it differently, and the check would be skipped unseen.
async fn resolved_problem(names: Vec<(String, String, u16)>) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    if names.len() > MAX_RESOLVED_NAMES {
        return Some(format!(
            "more than {MAX_RESOLVED_NAMES} host names to resolve in one call"
        ));
    }
    let lookups = futures_util::future::join_all(
        names
            .iter()
            .map(|(_, host, port)| tokio::net::lookup_host((host.clone(), *port))),
    );
    let Ok(results) = tokio::time::timeout(RESOLVE_TIMEOUT, lookups).await else {
        return Some("host names that did not resolve in time".to_owned());
    };
    for ((at, _, _), r) in names.iter().zip(results) {
        let addrs: Vec<std::net::SocketAddr> = match r {
            Ok(a) => a.collect(),
            Err(_) => Vec::new(),
        };
        if addrs.is_empty() {
            return Some(format!("{at}: a host name that does not resolve"));
        }
        if addrs.iter().any(|a| crate::args::internal(a.ip())) {
            return Some(format!(
                "{at}: a host name that resolves to a loopback, private, link-local or reserved address"
            ));
        }
    }
    None
}

/// What the gateway keeps about each upstream's items (by kind and upstream-local
/// name), bounded per upstream so that one upstream cannot crowd out what is kept
/// about another. An upstream whose table is full is *overflowed*: it has offered
/// more than the gateway can keep track of, and everything it offers is refused
/// (fail closed) rather than let through untracked.
#[derive(Debug)]
pub(crate) struct PerUpstream<V> {
    tables: Vec<Mutex<HashMap<(&'static str, String), V>>>,
    overflowed: Vec<AtomicBool>,
    /// Entries kept per upstream at most.
    cap: usize,
}

impl<V: Clone> PerUpstream<V> {
    pub(crate) fn new(upstreams: usize, cap: usize) -> Self {
        Self {
            tables: (0..upstreams).map(|_| Mutex::default()).collect(),
            overflowed: (0..upstreams).map(|_| AtomicBool::new(false)).collect(),
            cap,
        }
    }

    fn table(
        &self,
        idx: usize,
    ) -> Option<std::sync::MutexGuard<'_, HashMap<(&'static str, String), V>>> {
        self.tables
            .get(idx)
            .map(|t| t.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Keeps `v`; `false` (and the upstream overflowed) when its table is full.
    fn insert(&self, idx: usize, kind: &'static str, name: &str, v: V) -> bool {
        let Some(mut t) = self.table(idx) else {
            return false;
        };
        let key = (kind, name.to_owned());
        if t.len() >= self.cap && !t.contains_key(&key) {
            drop(t);
            if let Some(o) = self.overflowed.get(idx)
                && !o.swap(true, Ordering::AcqRel)
            {
                tracing::error!(
                    upstream = idx,
                    "an upstream offered more items than the gateway keeps track of: everything it offers is refused until the gateway restarts"
                );
            }
            return false;
        }
        t.insert(key, v);
        true
    }

    fn remove(&self, idx: usize, kind: &'static str, name: &str) {
        if let Some(mut t) = self.table(idx) {
            t.remove(&(kind, name.to_owned()));
        }
    }

    pub(super) fn get(&self, idx: usize, kind: &'static str, name: &str) -> Option<V> {
        self.table(idx)?.get(&(kind, name.to_owned())).cloned()
    }

    pub(crate) fn overflowed(&self, idx: usize) -> bool {
        self.overflowed
            .get(idx)
            .is_none_or(|o| o.load(Ordering::Acquire))
    }
}

/// How often the gateway looks for pin decisions made with the CLI.
const DECISION_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Why everything of an overflowed upstream is refused.
const OVERFLOWED: &str = "its upstream offered more items than the gateway keeps track of";

impl Router {
    /// FEAT-04, FEAT-05: compiles (or reuses) the tool's input schema and its output
    /// schema, if it declares one; the reason, when either is not a valid JSON Schema
    /// (an object), in which case the tool is dropped.
    fn learn_schema(&self, idx: usize, name: &str, tool: &Value) -> Result<(), String> {
        let Some(input) = tool.get("inputSchema") else {
            return Err("it has no inputSchema".into());
        };
        let output = tool.get("outputSchema");
        let (_, hash) = crate::pins::canonical(&json!([input, output]));
        if self
            .schemas
            .get(idx, "tool", name)
            .is_some_and(|s| s.hash == hash)
        {
            return Ok(());
        }
        // No remote or file references are resolved: compiling a schema never
        // reaches the network.
        let compile = |schema: &Value, which: &str| {
            let built = if schema.is_object() {
                jsonschema::options()
                    .should_validate_formats(false)
                    .build(schema)
                    .map_err(|e| e.to_string())
            } else {
                Err("not an object".to_owned())
            };
            built.map(Arc::new).map_err(|e| {
                tracing::warn!(upstream = %self.names[idx], tool = %name, error = %e, "dropped a tool whose {which} is not a valid JSON Schema (FEAT-04)");
                format!("its {which} is not a valid JSON Schema")
            })
        };
        let compiled = compile(input, "inputSchema").and_then(|input| {
            let output = output.map(|o| compile(o, "outputSchema")).transpose()?;
            Ok(Arc::new(Schemas {
                hash,
                input,
                output,
            }))
        });
        match compiled {
            // A schema that cannot be kept (the upstream's table is full) drops the
            // tool: a call is never made without its schema.
            Ok(s) => {
                if self.schemas.insert(idx, "tool", name, s) {
                    Ok(())
                } else {
                    Err(OVERFLOWED.into())
                }
            }
            Err(why) => {
                self.schemas.remove(idx, "tool", name);
                Err(why)
            }
        }
    }

    /// FEAT-05: the output schema of upstream `idx`'s tool `name` (its own name), if
    /// the tool declares one.
    pub(super) fn output_schema(
        &self,
        idx: usize,
        name: &str,
    ) -> Option<Arc<jsonschema::Validator>> {
        self.schemas.get(idx, "tool", name)?.output.clone()
    }

    /// FEAT-04: arguments that do not match the tool's input schema are answered with
    /// a tool error (`isError: true`) and never forwarded. A tool without a schema
    /// here was never admitted, and is refused.
    /// `msg` is the request as the upstream will get it; `params` are the client's
    /// (for the arguments). The second value says why, for the audit record (never
    /// the arguments).
    pub(super) async fn check_arguments(
        &self,
        idx: usize,
        msg: &Message,
        params: Option<&Value>,
    ) -> Option<(Message, &'static str)> {
        let id = msg.id()?;
        let params = params?;
        // The upstream's own name, from the rewritten message.
        let name = msg.param_str("name")?;
        let name = name.as_str();
        let args = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let problem = match self.argument_checks.get(idx) {
            Some(checks) => match crate::args::check(checks, name, &args) {
                Some(p) => Some(p),
                None => resolved_problem(crate::args::url_names(checks, name, &args)).await,
            },
            None => None,
        };
        if let Some(problem) = problem {
            tracing::warn!(upstream = %self.names[idx], tool = %name, %problem, "refused arguments (OBS-04)");
            return Some((
                Message::response(
                    id,
                    &json!({
                        "content": [{"type": "text", "text": format!("Refused arguments for this tool: {problem}")}],
                        "isError": true
                    }),
                ),
                "refused by the argument checks (OBS-04)",
            ));
        }
        let Some(schemas) = self.schemas.get(idx, "tool", name) else {
            tracing::warn!(upstream = %self.names[idx], tool = %name, "refused a call to a tool whose input schema the gateway does not hold (FEAT-04)");
            return Some((
                Message::error(
                    Some(id),
                    ErrorCode::Withheld,
                    "This tool is not available: the gateway holds no valid input schema for it",
                ),
                "no input schema (FEAT-04)",
            ));
        };
        let problems: Vec<String> = schemas
            .input
            .iter_errors(&args)
            .take(5)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("{}: {e}", if at.is_empty() { "/" } else { at.as_str() })
            })
            .collect();
        if problems.is_empty() {
            return None;
        }
        tracing::info!(upstream = %self.names[idx], tool = %name, "refused arguments that do not match the input schema (FEAT-04)");
        Some((
            Message::response(
                id,
                &json!({
                    "content": [{"type": "text", "text": format!("Invalid arguments for this tool: {}", problems.join("; "))}],
                    "isError": true
                }),
            ),
            "arguments do not match the input schema (FEAT-04)",
        ))
    }

    /// Whether upstream `idx` lists `kind` for the first time (its first sight in
    /// `tofu` mode); `false` when it is not pinned. Keep the guard until the list's
    /// items are admitted.
    pub(super) async fn first_sight(
        &self,
        idx: usize,
        kind: &str,
    ) -> (bool, Option<tokio::sync::OwnedMutexGuard<()>>) {
        match &self.pins {
            Some(p) if p.enabled(idx) => p.first_sight(idx, kind).await,
            _ => (false, None),
        }
    }

    /// Whether a listed item (or an upstream's instructions) may be offered; records
    /// the verdict so that calls to or reads of a withheld item are refused.
    /// `first_sight` is [`Router::first_sight`], asked once per list. `served`, the
    /// copy the client is to get, has the secrets and personal data the upstream's
    /// actions redact redacted (the pin is of `item`, as the upstream wrote it); an
    /// item whose actions block what it carries is not offered.
    pub(super) async fn admit(
        &self,
        idx: usize,
        kind: &'static str,
        item: &Value,
        first_sight: bool,
        served: Option<&mut Value>,
    ) -> bool {
        let Some((name, form)) = pin_form(kind, item) else {
            return false;
        };
        let name = name.as_str();
        let (definition, hash) = crate::pins::canonical(&form);
        // With `tools = "flag"`, a failed inspection is only logged, and policies see
        // the item as `flagged`.
        let verdict = self
            .inspection
            .as_ref()
            .map(|i| i.check_definition(idx, kind, &form, &hash))
            .unwrap_or_default();
        let findings = verdict.attack;
        let blocks = self
            .inspection
            .as_ref()
            .is_some_and(|i| i.blocks_definitions(idx, kind, name));
        if findings.is_some() && !blocks {
            // Full: the upstream is overflowed, and nothing of it is offered.
            if !self.flagged.insert(idx, kind, name, ()) {
                return false;
            }
        } else {
            self.flagged.remove(idx, kind, name);
        }
        let failed = findings.filter(|_| blocks);
        let (ok, reason) = match &self.pins {
            Some(p) if p.enabled(idx) => (
                p.admit(
                    idx,
                    kind,
                    name,
                    (&definition, &hash),
                    failed.as_deref(),
                    first_sight,
                )
                .await,
                "its definition is new or changed and waits for approval (palisade pins)"
                    .to_owned(),
            ),
            _ => match &failed {
                Some(rules) => {
                    tracing::warn!(upstream = %self.names[idx], kind, item = %name, ?rules, "quarantined a poisoned definition (hidden, calls refused)");
                    (
                        false,
                        format!("its definition failed inspection ({})", rules.join(", ")),
                    )
                }
                _ => (true, String::new()),
            },
        };
        let (ok, reason) = if ok && kind == "tool" {
            match self.learn_schema(idx, name, item) {
                Ok(()) => (true, reason),
                Err(why) => (false, why),
            }
        } else {
            (ok, reason)
        };
        // Secrets and personal data in what is offered: redacted in the served copy,
        // or the item withheld.
        let (ok, reason) = match (ok && verdict.data, served, &self.inspection) {
            (true, Some(served), Some(i)) => match i.serve_definition(idx, kind, &hash, served) {
                Ok(()) => (true, reason),
                Err(rules) => (
                    false,
                    format!(
                        "its definition carries data the gateway does not pass on ({})",
                        rules.join(", ")
                    ),
                ),
            },
            _ => (ok, reason),
        };
        self.hold(idx, kind, name, if ok { Ok(()) } else { Err(reason) })
    }

    /// Records the verdict on an item: `Ok` clears it, `Err(reason)` holds it (calls
    /// to it and reads of it are refused with the reason). `false` unless admitted.
    pub(super) fn hold(
        &self,
        idx: usize,
        kind: &'static str,
        name: &str,
        verdict: Result<(), String>,
    ) -> bool {
        match verdict {
            Ok(()) => {
                self.quarantine.remove(idx, kind, name);
                !self.quarantine.overflowed(idx)
            }
            Err(reason) => {
                // Held, or the upstream overflowed: refused either way.
                let _ = self.quarantine.insert(idx, kind, name, reason);
                false
            }
        }
    }

    /// The refusal of a call to, or get of, a held tool or prompt, if it is held
    /// (`full` is the name as the client gave it): held by the gateway, or not
    /// admitted when `session` last listed it.
    pub(super) fn name_held(
        &self,
        session: &crate::session::Session,
        idx: usize,
        method: &str,
        id: &Id,
        full: &str,
    ) -> Option<(Message, &'static str)> {
        let (_, local) = self.split_name(full)?;
        let kind = if method == "prompts/get" {
            "prompt"
        } else {
            "tool"
        };
        // An upstream may show sessions different definitions: what another
        // session's list admitted says nothing about the one this session saw.
        let unadmitted = || {
            let admitted = session
                .listed
                .lock()
                .ok()
                .and_then(|l| l.get(&(idx, kind))?.get(local).copied());
            (admitted != Some(true))
                .then(|| "its definition was withheld when this session listed it".to_owned())
        };
        let reason = self
            .quarantine
            .get(idx, kind, local)
            .or_else(|| {
                self.quarantine
                    .overflowed(idx)
                    .then(|| OVERFLOWED.to_owned())
            })
            .or_else(unadmitted)?;
        Some((
            Message::error(
                Some(id),
                ErrorCode::Withheld,
                &format!("This {kind} is quarantined: {reason}"),
            ),
            "quarantined",
        ))
    }

    /// Why a resource of upstream `idx` is withheld, if it is: its own definition, or
    /// a withheld template its URI falls under.
    /// A URI with a query is held when it is held without it (servers often ignore
    /// a query).
    pub(super) fn resource_held(&self, idx: usize, uri: &str) -> Option<String> {
        if self.quarantine.overflowed(idx) {
            return Some(OVERFLOWED.to_owned());
        }
        let q = self.quarantine.table(idx)?;
        let base = super::authorization::uri_base(uri);
        for u in std::iter::once(uri).chain(base) {
            if let Some(reason) = q.get(&("resource", u.to_owned())) {
                return Some(reason.clone());
            }
        }
        q.iter()
            .find(|((kind, template), _)| {
                *kind == "resource-template" && {
                    let p = template_prefix(template);
                    !p.is_empty() && uri.starts_with(p)
                }
            })
            .map(|(_, reason)| reason.clone())
    }

    /// The upstreams' server instructions that pass inspection and pinning (withheld
    /// ones are logged), each under its upstream's name when names are namespaced.
    pub(super) async fn instructions(&self, links: &[Option<Link>]) -> Option<String> {
        let mut parts = Vec::new();
        for (idx, link) in links.iter().enumerate() {
            let Some(text) = link.as_ref().and_then(Link::instructions) else {
                continue;
            };
            let (first, _turn) = self.first_sight(idx, "instructions").await;
            let item = json!({ "instructions": text });
            let mut served = item.clone();
            if self
                .admit(idx, "instructions", &item, first, Some(&mut served))
                .await
                && let Some(text) = served.get("instructions").and_then(Value::as_str)
            {
                parts.push((idx, text.to_owned()));
            }
        }
        if !self.namespace {
            return parts.pop().map(|(_, t)| t);
        }
        let sections: Vec<String> = parts
            .into_iter()
            .map(|(idx, text)| {
                let name = &self.names[idx];
                format!("Upstream server `{name}` (its tools and prompts are named `{name}__…`):\n{text}")
            })
            .collect();
        (!sections.is_empty()).then(|| sections.join("\n\n"))
    }

    /// Runs the re-checks of announced list changes until `stop`; call once.
    pub(crate) async fn run_rechecks(&self, stop: CancellationToken) {
        let Some(mut rx) = self
            .recheck_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let mut poll = tokio::time::interval(DECISION_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The count of decisions the last re-check answered (lists refresh the
        // approved cache on their own, which must not hide a decision from this).
        let mut answered: Option<i64> = None;
        loop {
            let r = tokio::select! {
                () = stop.cancelled() => return,
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => return,
                },
                _ = poll.tick() => {
                    self.recheck_after_decisions(&mut answered).await;
                    continue;
                }
            };
            self.rechecks.taken(&r);
            self.recheck(&r).await;
        }
    }

    /// When a pin was decided with the CLI while the gateway runs (a revoked approval
    /// above all), every list of every upstream is re-checked through a live session,
    /// so that sessions that listed an item before stop calling it now, not at their
    /// next list.
    async fn recheck_after_decisions(&self, answered: &mut Option<i64>) {
        let Some(pins) = &self.pins else { return };
        let now = pins.refresh().await;
        let before = answered.replace(now);
        if before.is_none_or(|b| b == now) {
            return;
        }
        for idx in 0..self.names.len() {
            let Some(session) = self.sessions.with_upstream(idx).into_iter().next() else {
                continue;
            };
            for list in ["tools/list", "prompts/list", "resources/list"] {
                let r = Recheck {
                    session: Arc::downgrade(&session),
                    upstream: idx,
                    list,
                };
                self.recheck(&r).await;
            }
        }
    }

    /// Fetches a list an upstream announced as changed and admits each item again,
    /// so that a new or changed definition is quarantined (and logged) now rather
    /// than when a client next lists.
    pub(super) async fn recheck(&self, r: &Recheck) {
        let Some(session) = r.session.upgrade().filter(|s| !s.is_closed()) else {
            return;
        };
        let Some(Some(link)) = session.links.get(r.upstream) else {
            return;
        };
        let lists: &[(&str, &str, &'static str)] = match r.list {
            "tools/list" => &[("tools/list", "tools", "tool")],
            "prompts/list" => &[("prompts/list", "prompts", "prompt")],
            _ => &[
                ("resources/list", "resources", "resource"),
                (
                    "resources/templates/list",
                    "resourceTemplates",
                    "resource-template",
                ),
            ],
        };
        for &(method, key, kind) in lists {
            let items = self.fetch_all(link, &session, method, key).await;
            if items.is_empty() {
                continue;
            }
            let (first, _turn) = self.first_sight(r.upstream, kind).await;
            let mut withheld = 0usize;
            for item in &items {
                if kind == "tool" && !item.get("inputSchema").is_some_and(Value::is_object) {
                    continue;
                }
                // Served as a list would serve it, so that an item withheld for what
                // it carries stays withheld.
                let mut served = item.clone();
                if !self
                    .admit(r.upstream, kind, item, first, Some(&mut served))
                    .await
                {
                    withheld += 1;
                }
            }
            tracing::info!(upstream = %self.names[r.upstream], list = method, items = items.len(), withheld, "re-checked a list the upstream announced as changed");
        }
    }
}

/// The name an item is pinned under and the form that is pinned and inspected:
/// tools and prompts as listed; resources and templates by URI (or URI template),
/// without the fields that change with the data rather than the definition (`size`,
/// `annotations.lastModified`), and with their `name` — free text such as a file
/// name, not an identifier — kept out of the tool-name checks; instructions as
/// `{"instructions": …}`.
fn pin_form(kind: &str, item: &Value) -> Option<(String, Value)> {
    match kind {
        "tool" | "prompt" => Some((item.get("name")?.as_str()?.to_owned(), item.clone())),
        "resource" | "resource-template" => {
            let key = if kind == "resource" {
                "uri"
            } else {
                "uriTemplate"
            };
            let name = item.get(key)?.as_str()?.to_owned();
            let mut form = item.clone();
            let obj = form.as_object_mut()?;
            obj.remove("size");
            if let Some(a) = obj.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove("lastModified");
            }
            if let Some(n) = obj.remove("name") {
                obj.insert("resourceName".into(), n);
            }
            Some((name, form))
        }
        "instructions" => Some((crate::pins::INSTRUCTIONS.to_owned(), item.clone())),
        _ => None,
    }
}

/// The literal start of a URI template (before its first expression).
pub(super) fn template_prefix(template: &str) -> &str {
    template.split('{').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feat_02_one_upstream_filling_its_table_closes_only_itself() {
        let t: PerUpstream<String> = PerUpstream::new(2, 2);
        assert!(t.insert(0, "tool", "a", "x".into()));
        assert!(t.insert(0, "tool", "b", "x".into()));
        // Replacing an entry is not growth.
        assert!(t.insert(0, "tool", "a", "y".into()));
        assert!(!t.overflowed(0));
        // A third name does not fit: the upstream is overflowed (refused whole)…
        assert!(!t.insert(0, "tool", "c", "x".into()));
        assert!(t.overflowed(0));
        assert_eq!(t.get(0, "tool", "c"), None);
        // …and the other upstream keeps its own room.
        assert!(!t.overflowed(1));
        assert!(t.insert(1, "tool", "a", "x".into()));
        assert!(t.insert(1, "tool", "b", "x".into()));
        // An upstream the gateway does not know is refused.
        assert!(t.overflowed(7));
        assert!(!t.insert(7, "tool", "a", "x".into()));
    }
}
