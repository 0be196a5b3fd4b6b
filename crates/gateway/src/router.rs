//! The MCP server face of the gateway: `initialize`, aggregated lists, and routing
//! of calls to the upstream that owns a tool, prompt or resource.
//!
//! Names are namespaced `<upstream>__<name>` by default so that no upstream can
//! shadow another's tools (FEAT-03); upstream names cannot contain `_`, so the first
//! `__` always splits correctly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use palisade_config::{Config, Transport};
use palisade_wire::{ErrorCode, Id, Kind, Message, ProtocolVersion};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::authz::Authz;
use crate::guard::{Denial, Exchange, GuardChain};
use crate::inspect::{Inspection, Outcome};
use crate::pins::Pins;
use crate::principal::{Caller, SubjectSlot};
use crate::session::{NewSession, Recheck, Rechecks, Session, SessionTable, mint_session_id};
use crate::upstream::http::{HttpLink, HttpTarget};
use crate::upstream::{self, CallBounds, Link, Sink, stdio::StdioUpstream};
use crate::workers::PerWorker;

mod admission;
mod authorization;
mod routing;
use admission::template_prefix;

/// Time allowed for an HTTP upstream's `initialize` and for list requests.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages fetched from one upstream for one list, and items kept.
const MAX_PAGES: usize = 50;
const MAX_ITEMS: usize = 10_000;
/// Longest tool or prompt name (FEAT-03).
const MAX_NAME: usize = 128;

/// A tool's compiled schemas (FEAT-04, FEAT-05), with the hash of what they were
/// compiled from.
#[derive(Debug, Clone)]
pub(crate) struct Schemas {
    hash: String,
    input: Arc<jsonschema::Validator>,
    /// The `outputSchema`, when the tool declares one.
    output: Option<Arc<jsonschema::Validator>>,
}

/// A configured upstream and how sessions reach it.
#[derive(Debug)]
pub(crate) enum UpstreamEntry {
    Stdio(Arc<StdioUpstream>),
    Http(HttpTarget),
}

/// The routing state shared by all requests.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) upstreams: Vec<UpstreamEntry>,
    pub(crate) names: Vec<String>,
    pub(crate) namespace: bool,
    pub(crate) http: Arc<PerWorker<reqwest::Client>>,
    pub(crate) sessions: Arc<SessionTable>,
    pub(crate) guards: GuardChain,
    bounds: Vec<CallBounds>,
    /// Per upstream: (tool glob, idle timeout), longest pattern first.
    tool_timeouts: Vec<Vec<(String, Duration)>>,
    scopes: Vec<Vec<String>>,
    max_msg: usize,
    replay: usize,
    /// Inspection of answers and tool definitions; `None` when switched off.
    inspection: Option<Arc<Inspection>>,
    /// Pins of tool and prompt definitions.
    pins: Option<Arc<Pins>>,
    /// Tools and prompts withheld (by upstream, kind and upstream-local name), with
    /// the reason a caller is told.
    quarantine: admission::PerUpstream<String>,
    /// Compiled input and output schemas of admitted tools (by upstream and local
    /// name), with the hash of the schemas they were compiled from (FEAT-04, FEAT-05).
    schemas: admission::PerUpstream<Arc<Schemas>>,
    /// Per upstream: tools whose arguments get path, command or URL checks (OBS-04).
    argument_checks: Vec<palisade_config::ArgumentChecks>,
    /// Lists upstreams announced as changed, waiting to be re-checked.
    rechecks: Arc<Rechecks>,
    /// The audit trail every list and call decision goes to (OBS-01).
    pub(crate) audit: Arc<crate::audit::Auditor>,
    /// The policy every list item and call is decided by (AUTH-20).
    pub(crate) authz: Arc<Authz>,
    /// Admitted items whose definitions had findings the operator's actions let
    /// through (`tools = "flag"`): policies see their verdict as `flagged`.
    flagged: admission::PerUpstream<()>,
    recheck_queue: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Recheck>>>,
}

/// Re-checks waiting at most; more announcements are dropped until there is room
/// (the next list checks anyway).
const RECHECK_QUEUE: usize = 64;

/// What the router applies to every list and call besides routing.
#[derive(Debug)]
pub(crate) struct Defences {
    /// Inspection of answers and definitions; `None` when switched off.
    pub(crate) inspection: Option<Inspection>,
    /// Pins of definitions.
    pub(crate) pins: Option<Arc<Pins>>,
    /// The audit trail.
    pub(crate) audit: Arc<crate::audit::Auditor>,
    /// The policy.
    pub(crate) authz: Arc<Authz>,
}

/// A call, prompt or read as the audit trail describes it.
struct Call<'a> {
    method: &'a str,
    upstream: Option<usize>,
    /// The name as the client gave it, or the URI.
    target: &'a str,
    msg: &'a Message,
    /// Its parsed `params`, when the router needed them anyway.
    params: Option<&'a Value>,
    /// The policies that decided it.
    policies: &'a [String],
    /// The caller's OAuth client, when its token names one.
    client: Option<&'a str>,
}

/// The message of a JSON-RPC error the gateway made (never upstream text).
fn error_text(m: &Message) -> &'static str {
    match m
        .to_value()
        .ok()
        .and_then(|v| v.get("error")?.get("code")?.as_i64())
    {
        Some(c) if c == ErrorCode::Withheld.code() => "quarantined",
        _ => "unknown or malformed name",
    }
}

/// The answer to a name no upstream offers — and, so that nothing reveals that a
/// tool exists, to a name the policy does not let this caller use.
fn unknown_name(id: &Id) -> Message {
    error(id, ErrorCode::InvalidParams, "Unknown tool or prompt")
}

/// The answer to a URI no upstream serves, or that the policy does not let this
/// caller read.
fn unknown_resource(id: &Id) -> Message {
    error(id, ErrorCode::ResourceNotFound, "Resource not found")
}

/// How long a call held for approval waits for the person's answer.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// A JSON-RPC error for the client, before any upstream is involved.
fn error(id: &Id, code: ErrorCode, msg: &str) -> Message {
    Message::error(Some(id), code, msg)
}

impl Router {
    pub(crate) fn new(
        config: &Config,
        credentials: &[Option<crate::upstream::http::Credential>],
        http: Arc<PerWorker<reqwest::Client>>,
        sessions: Arc<SessionTable>,
        shutdown: &CancellationToken,
        defences: Defences,
    ) -> Self {
        let Defences {
            inspection,
            pins,
            audit,
            authz,
        } = defences;
        let l = &config.limits;
        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| match &u.transport {
                Transport::Stdio(spec) => UpstreamEntry::Stdio(StdioUpstream::new(
                    u.name.clone(),
                    i,
                    spec.clone(),
                    l.max_response_bytes,
                    l.upstream_queue,
                    Arc::clone(&sessions),
                    shutdown.child_token(),
                )),
                Transport::Http(h) => UpstreamEntry::Http(HttpTarget {
                    name: u.name.clone(),
                    url: h.url.clone(),
                    credential: credentials.get(i).cloned().flatten(),
                }),
            })
            .collect();
        let bounds = config
            .upstreams
            .iter()
            .map(|u| CallBounds {
                idle: u.request_timeout.unwrap_or(l.request_timeout),
                cap: l.max_request_timeout,
                tool_rounds: l.sampling_tool_rounds,
            })
            .collect();
        let (rechecks, recheck_queue) = Rechecks::new(RECHECK_QUEUE);
        Self {
            upstreams,
            tool_timeouts: config
                .upstreams
                .iter()
                .map(|u| u.tool_timeouts.clone())
                .collect(),
            rechecks: Arc::new(rechecks),
            audit,
            authz,
            flagged: admission::PerUpstream::new(config.upstreams.len(), MAX_ITEMS),
            recheck_queue: std::sync::Mutex::new(Some(recheck_queue)),
            scopes: config
                .upstreams
                .iter()
                .map(|u| u.required_scopes.clone())
                .collect(),
            names: config.upstreams.iter().map(|u| u.name.clone()).collect(),
            namespace: config.namespace,
            http,
            sessions,
            guards: GuardChain,
            bounds,
            max_msg: l.max_response_bytes,
            replay: l.replay_buffer_events,
            inspection: inspection.map(Arc::new),
            pins,
            quarantine: admission::PerUpstream::new(config.upstreams.len(), MAX_ITEMS),
            schemas: admission::PerUpstream::new(config.upstreams.len(), MAX_ITEMS),
            argument_checks: config
                .upstreams
                .iter()
                .map(|u| u.argument_checks.clone())
                .collect(),
        }
    }

    /// Opens a session for `principal` from an `initialize` request. Returns the
    /// session and the response; `Err` carries a JSON-RPC error response.
    pub(crate) async fn initialize(
        &self,
        caller: &Caller,
        msg: &Message,
    ) -> Result<(Arc<Session>, Message), Message> {
        let principal = &caller.principal;
        let token = caller.token.clone();
        let Some(id) = msg.id() else {
            return Err(Message::error(
                None,
                ErrorCode::InvalidRequest,
                "initialize must be a request",
            ));
        };
        let params: Value = msg.params().unwrap_or(Value::Null);
        let (Some(requested), Some(client_caps)) = (
            params.get("protocolVersion").and_then(Value::as_str),
            params.get("capabilities").filter(|c| c.is_object()),
        ) else {
            return Err(error(
                id,
                ErrorCode::InvalidParams,
                "initialize needs protocolVersion and capabilities",
            ));
        };
        let version = ProtocolVersion::negotiate(requested);
        let subject = Arc::new(SubjectSlot::new(token));
        let subject = &subject;

        let links: Vec<Option<Link>> = join_all(self.upstreams.iter().map(|u| async move {
            match u {
                UpstreamEntry::Stdio(s) => Some(Link::Stdio(Arc::clone(s))),
                UpstreamEntry::Http(target) => {
                    let name = &target.name;
                    match HttpLink::connect(target, Arc::clone(&self.http), client_caps, subject, self.max_msg, CONTROL_TIMEOUT).await {
                        Ok(l) => Some(Link::Http(l)),
                        Err(e) => {
                            tracing::warn!(upstream = %name, error = %e, "could not open an upstream session");
                            None
                        }
                    }
                }
            }
        }))
        .await;

        let instructions = self.instructions(&links).await;
        let (advertised, left_out) =
            advertise(&links, |action| self.authz.could_permit(caller, action));
        if !left_out.is_empty() {
            tracing::info!(
                issuer = principal.issuer(),
                subject = principal.subject(),
                ?left_out,
                "capabilities no policy could let this caller use are not offered"
            );
        }
        let session = Arc::new(Session::new(NewSession {
            id: mint_session_id(),
            principal: principal.clone(),
            version,
            client_capabilities: client_caps.clone(),
            advertised: advertised.clone(),
            links,
            subject: Arc::clone(subject),
            replay_capacity: self.replay,
            rechecks: Some(Arc::clone(&self.rechecks)),
            inspection: self.inspection.clone(),
        }));
        let mut result = json!({
            "protocolVersion": version.as_str(),
            "capabilities": advertised,
            "serverInfo": { "name": "palisade", "title": "Palisade MCP gateway", "version": env!("CARGO_PKG_VERSION") },
        });
        if let (Some(text), Some(obj)) = (instructions, result.as_object_mut()) {
            obj.insert("instructions".into(), json!(text));
        }
        Ok((session, Message::response(id, &result)))
    }

    /// Runs one client request of a session; everything for the client goes to `sink`.
    pub(crate) async fn request(
        &self,
        session: &Arc<Session>,
        caller: &Caller,
        msg: Message,
        sink: Sink,
        cancel: CancellationToken,
    ) {
        let Some(id) = msg.id().cloned() else { return };
        let cx = Exchange {
            session,
            advertised: &session.advertised,
            upstream: None,
        };
        let msg = match self.guards.inbound(msg, &cx) {
            Ok(m) => m,
            Err(Denial { code, public }) => {
                let _ = sink.send(error(&id, code, public)).await;
                return;
            }
        };
        let method = msg.method().unwrap_or_default().to_owned();
        let out = match method.as_str() {
            "ping" => Message::response(&id, &json!({})),
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
                self.list(session, Some(caller), &msg, &method).await
            }
            "tools/call" | "prompts/get" => {
                let target = msg.param_str("name").unwrap_or_default();
                let params: Option<Value> = msg.params().ok();
                let ruling = self.split_name(&target).map(|(idx, local)| {
                    self.rule_named(session, caller, &method, idx, local, &target)
                });
                let routed = self.route_by_name(&msg);
                let refused = match (&routed, &ruling) {
                    (_, Some(r)) if !r.allow => Some((unknown_name(&id), "policy")),
                    (Ok((idx, m)), _) => {
                        // Listed first (a session that never listed lists now, which
                        // admits — and quarantines — what the upstream offers), then held.
                        if self.offered(session, *idx, &method, &target).await {
                            if let Some(refusal) =
                                self.name_held(session, *idx, &method, &id, &target)
                            {
                                Some(refusal)
                            } else if method == "tools/call" {
                                self.check_arguments(*idx, m, params.as_ref()).await
                            } else {
                                None
                            }
                        } else {
                            Some((unknown_name(&id), "not listed by the upstream"))
                        }
                    }
                    (Err(e), _) => Some(((**e).clone(), error_text(e))),
                };
                let call = Call {
                    method: &method,
                    upstream: routed.as_ref().ok().map(|(i, _)| *i),
                    target: &target,
                    msg: &msg,
                    params: params.as_ref(),
                    policies: ruling.as_ref().map_or(&[], |r| r.policies.as_slice()),
                    client: caller.client.as_deref(),
                };
                let held = ruling.as_ref().is_some_and(|r| r.allow && r.approval);
                match self
                    .decide(
                        session,
                        &call,
                        refused,
                        held,
                        routed.ok(),
                        sink.clone(),
                        cancel,
                    )
                    .await
                {
                    Some(answer) => answer,
                    None => return,
                }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri: Option<String> = msg
                    .params::<Value>()
                    .ok()
                    .and_then(|p| p.get("uri")?.as_str().map(str::to_owned));
                let Some(uri) = uri else {
                    let _ = sink
                        .send(error(
                            &id,
                            ErrorCode::InvalidParams,
                            "params.uri is required",
                        ))
                        .await;
                    return;
                };
                // Policy and quarantine compare URIs as strings: only the one string
                // an upstream reads as this resource is accepted — its canonical
                // form, or the very string the upstream listed.
                let listed = session
                    .resource_index
                    .lock()
                    .is_ok_and(|ix| ix.exact.contains_key(&uri));
                if !listed && let Some(why) = authorization::uri_not_canonical(&uri) {
                    let _ = sink
                        .send(error(
                            &id,
                            ErrorCode::InvalidParams,
                            &format!("params.uri is refused: {why}"),
                        ))
                        .await;
                    return;
                }
                let idx = self.route_by_uri(session, &uri).await;
                let ruling = idx.map(|i| self.rule_resource(session, caller, i, &uri));
                let refused = match (idx, &ruling) {
                    (None, _) => Some((unknown_resource(&id), "resource not found")),
                    (_, Some(r)) if !r.allow => Some((unknown_resource(&id), "policy")),
                    (Some(i), _) => match self.resource_held(i, &uri) {
                        Some(reason) if method != "resources/unsubscribe" => Some((
                            Message::error(
                                Some(&id),
                                ErrorCode::Withheld,
                                &format!("This resource is quarantined: {reason}"),
                            ),
                            "quarantined",
                        )),
                        _ => None,
                    },
                };
                let call = Call {
                    method: &method,
                    upstream: idx,
                    target: &uri,
                    msg: &msg,
                    params: None,
                    policies: ruling.as_ref().map_or(&[], |r| r.policies.as_slice()),
                    client: caller.client.as_deref(),
                };
                let held = ruling.as_ref().is_some_and(|r| r.allow && r.approval);
                let go = idx.map(|i| (i, msg.clone()));
                match self
                    .decide(session, &call, refused, held, go, sink.clone(), cancel)
                    .await
                {
                    Some(answer) => answer,
                    None => return,
                }
            }
            "completion/complete" => {
                let (routed, target) = self.route_completion(session, caller, &msg).await;
                let call = Call {
                    method: &method,
                    upstream: routed.as_ref().ok().map(|(i, _)| *i),
                    target: &target,
                    msg: &msg,
                    params: None,
                    policies: &[],
                    client: caller.client.as_deref(),
                };
                let refused = routed
                    .as_ref()
                    .err()
                    .map(|e| ((**e).clone(), "refused completion reference"));
                match self
                    .decide(
                        session,
                        &call,
                        refused,
                        false,
                        routed.ok(),
                        sink.clone(),
                        cancel,
                    )
                    .await
                {
                    Some(answer) => answer,
                    None => return,
                }
            }
            "logging/setLevel" => {
                let params: Value = msg.params().unwrap_or(Value::Null);
                let targets: Vec<&Link> = session
                    .links
                    .iter()
                    .flatten()
                    .filter(|l| has_cap(&l.capabilities(), "logging"))
                    .collect();
                join_all(targets.into_iter().map(|l| {
                    upstream::request(l, session, "logging/setLevel", &params, CONTROL_TIMEOUT)
                }))
                .await;
                Message::response(&id, &json!({}))
            }
            _ => error(&id, ErrorCode::MethodNotFound, "Method not found"),
        };
        let _ = sink.send(out).await;
    }

    /// Records the decision on a call, prompt or read (OBS-01): allowed when
    /// `refused` is `None`. `Err` carries the answer when an allowed call must not go
    /// ahead because its record could not be written (fail-closed).
    async fn record_call(
        &self,
        session: &Session,
        call: &Call<'_>,
        refused: Option<&str>,
        approved_by: Option<String>,
    ) -> Result<(), Message> {
        if !self.audit.is_on() {
            let d = if refused.is_some() {
                palisade_audit::Decision::Deny
            } else {
                palisade_audit::Decision::Allow
            };
            self.audit.metrics.call(call.method, d, refused);
            return Ok(());
        }
        let arguments = call.params.and_then(|p| p.get("arguments"));
        let event = palisade_audit::Event::Call {
            session: crate::audit::session_ref(&session.id),
            principal: crate::audit::who(&session.principal),
            client: call.client.map(str::to_owned),
            method: call.method.to_owned(),
            upstream: call.upstream.and_then(|i| self.names.get(i)).cloned(),
            target: crate::audit::target_for_record(call.target),
            arguments_hmac_sha256: arguments.and_then(|a| self.audit.arguments_mac(a)),
            arguments: arguments.and_then(|a| self.audit.arguments_of(call.target, a)),
            decision: if refused.is_some() {
                palisade_audit::Decision::Deny
            } else {
                palisade_audit::Decision::Allow
            },
            reason: refused.map(str::to_owned),
            policies: call.policies.to_vec(),
            approved_by,
        };
        match self.audit.decide(event).await {
            Ok(()) => Ok(()),
            Err(crate::audit::Unrecorded) if refused.is_none() => Err(Message::error(
                call.msg.id(),
                ErrorCode::InternalError,
                "The audit log cannot record this call, so it was not made",
            )),
            // A refusal stands whether or not it could be recorded.
            Err(crate::audit::Unrecorded) => Ok(()),
        }
    }

    /// Records the decision on a call and carries it out: the refusal's answer, or
    /// `None` once `go` was forwarded (its answer went to `sink`). A call the policy
    /// `held` for approval waits for a person's answer first.
    #[allow(clippy::too_many_arguments, reason = "one call's whole decision")]
    async fn decide(
        &self,
        session: &Arc<Session>,
        call: &Call<'_>,
        refused: Option<(Message, &'static str)>,
        held: bool,
        go: Option<(usize, Message)>,
        sink: Sink,
        cancel: CancellationToken,
    ) -> Option<Message> {
        let (refused, approved_by) = match refused {
            None if held => match self.approve(session, call, &sink, &cancel).await {
                Ok(by) => (None, Some(by)),
                Err(no) => (Some(no), None),
            },
            other => (other, None),
        };
        if let Some(s) = crate::traces::current() {
            s.attribute(
                "palisade.decision",
                if refused.is_some() { "deny" } else { "allow" },
            );
            if let Some((_, reason)) = &refused {
                s.attribute("palisade.reason", *reason);
            }
        }
        if let Err(stop) = self
            .record_call(session, call, refused.as_ref().map(|r| r.1), approved_by)
            .await
        {
            return Some(stop);
        }
        match (refused, go) {
            (Some((answer, _)), _) => Some(answer),
            (None, Some((idx, m))) => {
                if matches!(call.method, "tools/call" | "prompts/get") {
                    session.note_called(call.target);
                }
                self.forward(session, idx, m, sink, cancel).await;
                None
            }
            (None, None) => Some(Message::error(
                call.msg.id(),
                ErrorCode::InternalError,
                "no upstream for this request",
            )),
        }
    }

    async fn forward(
        &self,
        session: &Arc<Session>,
        idx: usize,
        msg: Message,
        sink: Sink,
        cancel: CancellationToken,
    ) {
        let Some(id) = msg.id().cloned() else { return };
        let Some(Some(link)) = session.links.get(idx) else {
            let _ = sink
                .send(error(
                    &id,
                    ErrorCode::UpstreamUnavailable,
                    "upstream unavailable",
                ))
                .await;
            return;
        };
        let mut t = self.bounds.get(idx).copied().unwrap_or(CallBounds {
            idle: Duration::from_secs(60),
            cap: Duration::from_secs(600),
            tool_rounds: 0,
        });
        let method = msg.method().unwrap_or_default().to_owned();
        if method == "tools/call"
            && let Some(globs) = self.tool_timeouts.get(idx).filter(|g| !g.is_empty())
            && let Some(name) = msg.param_str("name")
            && let Some((_, d)) = globs
                .iter()
                .find(|(g, _)| crate::args::glob_match(g, &name))
        {
            t.idle = *d;
        }
        let started = std::time::Instant::now();
        let _span = crate::traces::current().map(|s| {
            s.attribute("palisade.upstream", self.names[idx].clone());
            s.upstream(&self.names[idx], &method)
        });
        let Some(ins) = self.inspection.as_ref() else {
            upstream::call(link, session, idx, msg, sink, t, cancel).await;
            self.audit
                .metrics
                .upstream_latency(&self.names[idx], started.elapsed().as_secs_f64());
            return;
        };
        // What the client asked about, as it named it.
        let subject = match method.as_str() {
            "tools/call" | "prompts/get" => {
                self.prefixed(idx, &msg.param_str("name").unwrap_or_default())
            }
            "completion/complete" => {
                let r: Option<Value> = msg
                    .params::<Value>()
                    .ok()
                    .and_then(|p| p.get("ref").cloned());
                match r
                    .as_ref()
                    .and_then(|r| r.get("name"))
                    .and_then(Value::as_str)
                {
                    Some(name) => self.prefixed(idx, name),
                    None => r
                        .as_ref()
                        .and_then(|r| r.get("uri"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                }
            }
            _ => msg.param_str("uri").unwrap_or_else(|| method.clone()),
        };
        // Every answer passes inspection on its way to the client (the upstream's own
        // requests and notifications on the way were inspected as they arrived,
        // `upstream::from_upstream`).
        // FEAT-05: the output schema a tool's result must match, if it declares one.
        // The tool as its upstream names it: per-tool inspection actions.
        let tool = (method == "tools/call")
            .then(|| msg.param_str("name"))
            .flatten();
        let output = tool
            .as_deref()
            .and_then(|name| self.output_schema(idx, name));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(upstream::REQUEST_CHANNEL);
        let relay = async {
            while let Some(m) = rx.recv().await {
                let out = if m.is_response() {
                    match ins
                        .message(
                            idx,
                            &method,
                            &subject,
                            tool.as_deref(),
                            &m,
                            output.as_deref(),
                        )
                        .await
                    {
                        Outcome::Pass => m,
                        Outcome::Rewrite(x) | Outcome::Withhold(x) => x,
                    }
                } else {
                    m
                };
                // Keep draining even if the client's stream is gone, so the call
                // finishes normally.
                let _ = sink.send(out).await;
            }
        };
        tokio::join!(
            async {
                upstream::call(link, session, idx, msg, tx, t, cancel).await;
                self.audit
                    .metrics
                    .upstream_latency(&self.names[idx], started.elapsed().as_secs_f64());
            },
            relay
        );
    }

    /// The scopes a token needs to use upstream `idx`.
    pub(crate) fn required_scopes(&self, idx: usize) -> &[String] {
        self.scopes.get(idx).map_or(&[], Vec::as_slice)
    }

    /// Whether any upstream requires scopes (so targets must be resolved up front).
    pub(crate) fn any_scopes(&self) -> bool {
        self.scopes.iter().any(|s| !s.is_empty())
    }

    /// Aggregates one list over every upstream that offers it, all pages, bounded,
    /// and offers `caller` what admission passed and the policy lets it use. Without
    /// a caller (the router learning which upstream serves a URI) nothing is
    /// filtered by policy or recorded, and nothing reaches a client.
    async fn list(
        &self,
        session: &Arc<Session>,
        caller: Option<&Caller>,
        msg: &Message,
        method: &str,
    ) -> Message {
        let id = msg.id().cloned().unwrap_or(Id::Number(0));
        let (key, named) = match method {
            "tools/list" => ("tools", true),
            "prompts/list" => ("prompts", true),
            "resources/list" => ("resources", false),
            _ => ("resourceTemplates", false),
        };
        let params: Value = msg.params().unwrap_or(Value::Null);
        if params.get("cursor").is_some_and(|c| !c.is_null()) {
            // The gateway answers every list in one page.
            return error(&id, ErrorCode::InvalidParams, "Invalid cursor");
        }
        let cap = match key {
            "tools" => "tools",
            "prompts" => "prompts",
            _ => "resources",
        };
        let per_upstream = join_all(session.links.iter().enumerate().map(
            |(idx, link)| async move {
                let Some(link) = link else {
                    return (idx, Vec::new());
                };
                if !has_cap(&link.capabilities(), cap) {
                    return (idx, Vec::new());
                }
                (idx, self.fetch_all(link, session, method, key).await)
            },
        ))
        .await;

        let listed: usize = per_upstream.iter().map(|(_, l)| l.len()).sum();
        let mut refused = Refused::default();
        let mut items = Vec::new();
        let mut exact = Vec::new();
        let mut templates = Vec::new();
        let kind = match key {
            "tools" => "tool",
            "prompts" => "prompt",
            "resources" => "resource",
            _ => "resource-template",
        };
        for (idx, list) in per_upstream {
            if list.is_empty() {
                continue;
            }
            // The names this session may call or get: recorded only once every item
            // of the list has been admitted (or held), so that a call racing this list
            // waits for a list of its own instead of finding the name half-admitted.
            let mut names: HashMap<String, bool> = list
                .iter()
                .filter_map(|i| Some((i.get("name")?.as_str()?.to_owned(), false)))
                .collect();
            let (first, _turn) = self.first_sight(idx, kind).await;
            for mut item in list {
                let Some(obj) = item.as_object_mut() else {
                    continue;
                };
                if named {
                    let Some(name) = obj.get("name").and_then(Value::as_str).map(str::to_owned)
                    else {
                        continue;
                    };
                    // FEAT-03: a tool's name is [A-Za-z0-9_.-]{1,128}; no item's name
                    // may start with `@` (the gateway's own pin names, `@instructions`).
                    let bad_name = if key == "tools" {
                        !palisade_inspect::valid_tool_name(&name)
                    } else {
                        name.is_empty() || name.starts_with('@')
                    };
                    if bad_name {
                        tracing::warn!(upstream = %self.names[idx], kind, "dropped an item whose name is not allowed (FEAT-03)");
                        self.hold(
                            idx,
                            kind,
                            &name,
                            Err("its name is not allowed (FEAT-03)".into()),
                        );
                        continue;
                    }
                    if key == "tools" && !obj.get("inputSchema").is_some_and(Value::is_object) {
                        // FEAT-04: a tool without an object inputSchema is dropped, and
                        // held: it was listed, so a call to it must meet a refusal.
                        tracing::warn!(upstream = %self.names[idx], tool = %name, "dropped a tool with an invalid inputSchema (FEAT-04)");
                        self.hold(
                            idx,
                            kind,
                            &name,
                            Err("its inputSchema is missing or not an object (FEAT-04)".into()),
                        );
                        continue;
                    }
                    let original = Value::Object(obj.clone());
                    if !self
                        .admit(idx, kind, &original, first, Some(&mut item))
                        .await
                    {
                        continue;
                    }
                    let Some(obj) = item.as_object_mut() else {
                        continue;
                    };
                    names.insert(name.clone(), true);
                    let full = self.prefixed(idx, &name);
                    if full.len() > MAX_NAME {
                        tracing::warn!(upstream = %self.names[idx], "dropped an item whose namespaced name is too long (FEAT-03)");
                        continue;
                    }
                    if let Err(by) = self.offer(session, caller, idx, kind, &name, &full) {
                        refused.note(&full, by);
                        continue;
                    }
                    obj.insert("name".into(), json!(full));
                } else {
                    let original = Value::Object(obj.clone());
                    if !self
                        .admit(idx, kind, &original, first, Some(&mut item))
                        .await
                    {
                        continue;
                    }
                    let Some(obj) = item.as_object_mut() else {
                        continue;
                    };
                    if let Some(uri) = obj.get("uri").and_then(Value::as_str) {
                        exact.push((uri.to_owned(), idx));
                    } else if let Some(t) = obj.get("uriTemplate").and_then(Value::as_str) {
                        templates.push((template_prefix(t).to_owned(), idx));
                    }
                    let uri = obj
                        .get("uri")
                        .or_else(|| obj.get("uriTemplate"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if let Err(by) = self.offer(session, caller, idx, kind, uri, uri) {
                        refused.note(&crate::audit::target_for_record(uri), by);
                        continue;
                    }
                }
                // SSRF-06: icons the client is not to fetch or render are left out.
                let removed = crate::icons::strip(&mut item);
                if !removed.is_empty() {
                    tracing::warn!(upstream = %self.names[idx], kind, reasons = ?removed, "left out icons the gateway does not pass on (SSRF-06)");
                }
                items.push(item);
            }
            if named && let Ok(mut l) = session.listed.lock() {
                l.insert((idx, kind), names);
            }
        }
        if !named && let Ok(mut ix) = session.resource_index.lock() {
            ix.learned = true;
            for (u, i) in exact {
                if ix.exact.len() < MAX_ITEMS {
                    ix.exact.insert(u, i);
                }
            }
            for t in templates {
                if !ix.templates.contains(&t) && ix.templates.len() < MAX_ITEMS {
                    ix.templates.push(t);
                }
            }
        }
        if caller.is_none() {
            return Message::response(&id, &json!({}));
        }
        let event = palisade_audit::Event::List {
            session: crate::audit::session_ref(&session.id),
            principal: crate::audit::who(&session.principal),
            client: caller.and_then(|c| c.client.clone()),
            method: method.to_owned(),
            offered: items.len(),
            withheld: listed.saturating_sub(items.len() + refused.count),
            denied: refused.count,
            denied_items: refused.items,
            denied_by: refused.by.into_iter().collect(),
        };
        if self.audit.decide(event).await.is_err() {
            return error(
                &id,
                ErrorCode::InternalError,
                "The audit log cannot record this list, so it is not answered",
            );
        }
        let mut result = Map::new();
        result.insert(key.to_owned(), Value::Array(items));
        Message::response(&id, &Value::Object(result))
    }

    async fn fetch_all(
        &self,
        link: &Link,
        session: &Arc<Session>,
        method: &str,
        key: &str,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let res = match upstream::request(link, session, method, &params, CONTROL_TIMEOUT).await
            {
                Ok(m) if m.kind() == Kind::Response => m,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(upstream = link.name(), method, error = %e, "list request failed");
                    break;
                }
            };
            let Ok(mut v) = res.to_value() else { break };
            let Some(Value::Object(mut result)) = v.remove("result") else {
                break;
            };
            if let Some(Value::Array(items)) = result.remove(key) {
                let room = MAX_ITEMS.saturating_sub(out.len());
                out.extend(items.into_iter().take(room));
            }
            cursor = result.remove("nextCursor").filter(|c| !c.is_null());
            if cursor.is_none() || out.len() >= MAX_ITEMS {
                break;
            }
        }
        out
    }

    /// Handles a client notification inside a session.
    pub(crate) async fn notification(&self, session: &Arc<Session>, msg: Message) {
        match msg.method() {
            Some("notifications/cancelled") => {
                let params: Value = msg.params().unwrap_or(Value::Null);
                if let Some(id) = params
                    .get("requestId")
                    .and_then(|v| serde_json::from_value::<Id>(v.clone()).ok())
                {
                    session.cancel_call(&id);
                }
            }
            Some("notifications/roots/list_changed") => {
                for link in session.links.iter().flatten() {
                    let _ = link.send(msg.clone()).await;
                }
            }
            // `initialized` needs no action; progress for relayed requests and unknown
            // notifications are dropped.
            _ => {}
        }
    }

    /// Handles a client response to a relayed server→client request.
    pub(crate) async fn response(&self, session: &Arc<Session>, msg: Message) {
        // An answer to the gateway's own question (an approval) goes no further.
        let Some(msg) = session.answer_asked(msg) else {
            return;
        };
        let Some(relayed) = msg.id().and_then(|id| session.take_relayed(id)) else {
            tracing::debug!("dropped a client response to no relayed request (LIFE-05)");
            return;
        };
        if let Some(Some(link)) = session.links.get(relayed.upstream)
            && let Err(e) = link.send(msg.with_id(&relayed.upstream_id)).await
        {
            tracing::warn!(upstream = link.name(), error = %e, "could not relay a client response");
        }
    }
}

fn has_cap(caps: &Value, name: &str) -> bool {
    caps.get(name).is_some_and(|v| !v.is_null())
}

/// The capabilities the gateway offers a caller: what at least one upstream offers
/// and the policy could let the caller use (LIFE-07: `could`, asked with an action,
/// is false only when no permit names the caller and the action), with `listChanged`
/// where the gateway relays the change notifications. Completions go with prompts
/// or resources, whose arguments and templates they complete. Also returns what
/// upstreams offer that the policy left out.
fn advertise(links: &[Option<Link>], could: impl Fn(&str) -> bool) -> (Value, Vec<&'static str>) {
    let caps: Vec<Value> = links.iter().flatten().map(Link::capabilities).collect();
    let any = |k: &str| caps.iter().any(|c| has_cap(c, k));
    let mut left_out = Vec::new();
    let mut usable = |k: &'static str, list: &str, use_one: &str| {
        let offered = any(k);
        let usable = offered && (could(list) || could(use_one));
        if offered && !usable {
            left_out.push(k);
        }
        usable
    };
    let tools = usable("tools", "tools/list", "tools/call");
    let prompts = usable("prompts", "prompts/list", "prompts/get");
    let resources = usable("resources", "resources/list", "resources/read");
    let mut out = Map::new();
    if tools {
        out.insert("tools".into(), json!({ "listChanged": true }));
    }
    if prompts {
        out.insert("prompts".into(), json!({ "listChanged": true }));
    }
    if resources {
        let subscribe = caps
            .iter()
            .any(|c| c.get("resources").and_then(|r| r.get("subscribe")) == Some(&json!(true)));
        out.insert(
            "resources".into(),
            json!({ "listChanged": true, "subscribe": subscribe }),
        );
    }
    if any("logging") {
        out.insert("logging".into(), json!({}));
    }
    if any("completions") {
        if prompts || resources {
            out.insert("completions".into(), json!({}));
        } else {
            left_out.push("completions");
        }
    }
    (Value::Object(out), left_out)
}

/// What the policy kept out of one list, for its audit record.
#[derive(Default)]
struct Refused {
    count: usize,
    /// The first [`REFUSED_NAMED`] items, by the names the client would have seen.
    items: Vec<String>,
    /// The forbids that applied to any of them.
    by: std::collections::BTreeSet<String>,
}

/// Items of one list named in its audit record at most.
const REFUSED_NAMED: usize = 100;

impl Refused {
    fn note(&mut self, name: &str, by: Vec<String>) {
        self.count += 1;
        if self.items.len() < REFUSED_NAMED {
            self.items.push(name.to_owned());
        }
        self.by.extend(by);
    }
}
