//! Upstream MCP servers: how a client request reaches one and how everything the
//! upstream says about it comes back.
//!
//! Both transports reduce to the same shape. [`Link::start`] sends one request with
//! a gateway-chosen ID and feeds every message the upstream sends about it (progress,
//! log messages, server→client requests, then the response) into a bounded channel.
//! [`call`] consumes that channel for a client request: it maps the response back to
//! the client's ID (LIFE-04), relays server→client requests under session-scoped IDs,
//! refuses those the client did not declare a capability for (LIFE-03), and enforces
//! the idle timeout and the hard cap (LIFE-06).

pub(crate) mod http;
pub(crate) mod stdio;

use std::sync::Arc;
use std::time::Duration;

use palisade_wire::{ErrorCode, Id, Kind, Message};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::guard::{Exchange, GuardChain};
use crate::inspect::Outcome;
use crate::session::Session;

/// Messages related to one client request, on their way to the client.
pub(crate) type Sink = mpsc::Sender<Message>;

/// Capacity of the per-request channels (bounded, like every queue).
pub(crate) const REQUEST_CHANNEL: usize = 64;

/// Why an upstream could not serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("upstream is unavailable: {0}")]
    Unavailable(String),
    #[error("upstream misbehaved: {0}")]
    Protocol(String),
    #[error("upstream did not answer in time")]
    Timeout,
}

/// One upstream as seen by one session.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// A shared stdio child (one per upstream, multiplexed with remapped IDs).
    Stdio(Arc<stdio::StdioUpstream>),
    /// A Streamable HTTP session opened for this client session.
    Http(Arc<http::HttpLink>),
}

/// Bounds on one request: its time (LIFE-06) and the tool loop it may lead to (FEAT-13).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallBounds {
    /// Without any message from the upstream for this long, the request times out.
    pub(crate) idle: Duration,
    /// No request lives longer than this, whatever progress arrives.
    pub(crate) cap: Duration,
    /// Sampling requests with tools (rounds of a tool loop through the client's model)
    /// relayed for this request at most; each further one is refused to the upstream.
    pub(crate) tool_rounds: usize,
}

impl Link {
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Stdio(s) => s.name(),
            Self::Http(h) => h.name(),
        }
    }

    /// The upstream's `initialize` result `capabilities`.
    pub(crate) fn capabilities(&self) -> Value {
        match self {
            Self::Stdio(s) => s.capabilities(),
            Self::Http(h) => h.capabilities().clone(),
        }
    }

    /// The upstream's `initialize` result `instructions`, if it gave any.
    pub(crate) fn instructions(&self) -> Option<String> {
        match self {
            Self::Stdio(s) => s.instructions(),
            Self::Http(h) => h.instructions().map(str::to_owned),
        }
    }

    fn next_id(&self) -> i64 {
        match self {
            Self::Stdio(s) => s.next_id(),
            Self::Http(h) => h.next_id(),
        }
    }

    /// Sends `msg` (already carrying `upstream_id`) and feeds related messages to `tx`.
    ///
    /// For a stdio child the future ends once the line is written (the child's reader
    /// feeds `tx`); for HTTP it ends when the upstream's answer has been read. An
    /// HTTP failure is fed to `tx` as an error response, so the caller sees one shape.
    async fn drive(
        &self,
        msg: Message,
        upstream_id: i64,
        session: &Arc<Session>,
        tx: mpsc::Sender<Message>,
    ) -> Result<(), UpstreamError> {
        match self {
            Self::Stdio(s) => s.start(msg, upstream_id, session, tx).await,
            Self::Http(h) => {
                h.drive(&msg, upstream_id, &tx).await;
                Ok(())
            }
        }
    }

    fn forget(&self, upstream_id: i64) {
        if let Self::Stdio(s) = self {
            s.forget(upstream_id);
        }
    }

    /// Forwards a notification or a response to the upstream.
    pub(crate) async fn send(&self, msg: Message) -> Result<(), UpstreamError> {
        match self {
            Self::Stdio(s) => s.send(msg).await,
            Self::Http(h) => h.send(msg).await,
        }
    }

    /// Tells the upstream that request `upstream_id` is abandoned.
    async fn cancel(&self, upstream_id: i64, reason: &str) {
        let note = Message::notification(
            "notifications/cancelled",
            &json!({ "requestId": upstream_id, "reason": reason }),
        );
        if let Err(e) = self.send(note).await {
            tracing::debug!(upstream = self.name(), error = %e, "could not send cancellation");
        }
    }

    /// Starts relaying the upstream's unsolicited messages to `session` (HTTP only; a
    /// stdio child's unsolicited messages are always relayed).
    pub(crate) fn ensure_listening(&self, session: &Arc<Session>, idx: usize) {
        if let Self::Http(h) = self {
            h.ensure_listening(session, idx);
        }
    }

    /// Ends this session's use of the upstream.
    pub(crate) async fn close(&self) {
        if let Self::Http(h) = self {
            h.close().await;
        }
    }
}

/// Handles a request or notification that came from upstream `idx` for `session`:
/// returns what the client should see, or `None` when the gateway answered or
/// dropped it.
pub(crate) async fn from_upstream(
    link: &Link,
    session: &Arc<Session>,
    idx: usize,
    msg: Message,
) -> Option<Message> {
    match msg.kind() {
        Kind::Notification => {
            if let Some(method) = msg.method() {
                // The changed list is re-checked against the pins at once, so that a
                // rug pull is quarantined even if the client never lists again.
                session.list_changed(idx, method);
            }
            let cx = Exchange {
                session,
                advertised: &session.advertised,
                upstream: Some(idx),
            };
            let msg = GuardChain.outbound(msg, &cx).ok()?;
            // What it says is inspected like an answer; one withheld is dropped.
            let Some(ins) = &session.inspection else {
                return Some(msg);
            };
            let method = msg.method().unwrap_or_default().to_owned();
            match ins.message(idx, &method, &method, None, &msg, None).await {
                Outcome::Pass => Some(msg),
                Outcome::Rewrite(m) => Some(m),
                Outcome::Withhold(_) => None,
            }
        }
        Kind::Request => {
            let (Some(method), Some(id)) = (msg.method(), msg.id().cloned()) else {
                return None;
            };
            if method == "ping" {
                let _ = link.send(Message::response(&id, &json!({}))).await;
                return None;
            }
            let cx = Exchange {
                session,
                advertised: &session.advertised,
                upstream: Some(idx),
            };
            let method = method.to_owned();
            let msg = match GuardChain.outbound(msg, &cx) {
                Ok(m) => m,
                Err(d) => {
                    tracing::info!(
                        upstream = link.name(),
                        method,
                        reason = d.public,
                        "refused a server request"
                    );
                    let _ = link.send(Message::error(Some(&id), d.code, d.public)).await;
                    return None;
                }
            };
            // What it asks of the client's model or person is inspected like an
            // answer; one withheld is refused to the upstream.
            let msg = match &session.inspection {
                None => msg,
                Some(ins) => match ins.message(idx, &method, &method, None, &msg, None).await {
                    Outcome::Pass => msg,
                    Outcome::Rewrite(m) => m,
                    Outcome::Withhold(refusal) => {
                        let _ = link.send(refusal).await;
                        return None;
                    }
                },
            };
            let id = &id;
            match session.relay_request(idx, id.clone()) {
                Some(client_side) => Some(msg.with_id(&client_side)),
                None => {
                    let _ = link
                        .send(Message::error(
                            Some(id),
                            ErrorCode::InternalError,
                            "too many server requests awaiting the client",
                        ))
                        .await;
                    None
                }
            }
        }
        // Responses that reach here match no request we sent: drop (LIFE-05).
        Kind::Response | Kind::ErrorResponse => {
            tracing::debug!(
                upstream = link.name(),
                "dropped an unsolicited response (LIFE-05)"
            );
            None
        }
    }
}

/// The progress token of a request, if it asked for progress.
fn progress_token(msg: &Message) -> Option<Value> {
    let raw = msg.params_raw()?;
    if !raw.contains("progressToken") {
        return None;
    }
    let v: Value = serde_json::from_str(raw).ok()?;
    v.get("_meta")?.get("progressToken").cloned()
}

/// Forwards one client request to `link` and relays everything back to `sink`.
/// The task running this is independent of the client's HTTP connection, so a client
/// that disconnects does not cancel the upstream request (TR-13).
pub(crate) async fn call(
    link: &Link,
    session: &Arc<Session>,
    idx: usize,
    client_msg: Message,
    sink: Sink,
    bounds: CallBounds,
    cancel: CancellationToken,
) {
    let Some(client_id) = client_msg.id().cloned() else {
        return;
    };
    let upstream_id = link.next_id();
    let wire_id = Id::Number(upstream_id);
    // A shared stdio child sees requests of many clients, whose progress tokens may
    // collide: give it a gateway token and map progress back.
    let mut progress_map: Option<(Value, Value)> = None;
    let mut msg = client_msg.with_id(&wire_id);
    if matches!(link, Link::Stdio(_))
        && let Some(original) = progress_token(&client_msg)
    {
        let ours = json!(format!("palisade-progress-{upstream_id}"));
        if let Ok(mut v) = client_msg.to_value() {
            v.insert("id".into(), json!(upstream_id));
            if let Some(meta) = v
                .get_mut("params")
                .and_then(|p| p.get_mut("_meta"))
                .and_then(Value::as_object_mut)
            {
                meta.insert("progressToken".into(), ours.clone());
            }
            if let Ok(m) = Message::from_value(&Value::Object(v)) {
                msg = m;
                progress_map = Some((ours, original));
            }
        }
    }

    let (tx, mut rx) = mpsc::channel(REQUEST_CHANNEL);
    // Driven in this task, beside the relay loop below: no extra task per request.
    let driver = link.drive(msg, upstream_id, session, tx);
    tokio::pin!(driver);
    let mut driving = true;

    let mut tool_rounds = 0_usize;
    let hard_deadline = Instant::now() + bounds.cap;
    let mut idle_deadline = Instant::now() + bounds.idle;
    loop {
        let deadline = idle_deadline.min(hard_deadline);
        tokio::select! {
            r = &mut driver, if driving => {
                driving = false;
                if let Err(e) = r {
                    tracing::warn!(upstream = link.name(), error = %e, "upstream request failed");
                    let _ = sink
                        .send(Message::error(
                            Some(&client_id),
                            ErrorCode::UpstreamUnavailable,
                            "upstream unavailable",
                        ))
                        .await;
                    return;
                }
            }
            m = rx.recv() => {
                let Some(m) = m else {
                    let _ = sink.send(Message::error(
                        Some(&client_id),
                        ErrorCode::UpstreamUnavailable,
                        "upstream closed the stream before answering",
                    )).await;
                    return;
                };
                if m.is_response() && m.id() == Some(&wire_id) {
                    // FEAT-10: a URL-elicitation-required error only as the spec has it.
                    let m = crate::guard::url_elicitation_error(&m, session, idx).unwrap_or(m);
                    // SSRF-06: a resource link's icons as a listed item's.
                    let method = client_msg.method().unwrap_or_default();
                    let m = crate::icons::strip_from_answer(method, &m).unwrap_or(m);
                    let _ = sink.send(m.with_id(&client_id)).await;
                    return;
                }
                // FEAT-13: a tool loop through the client's model ends after so many
                // rounds for one call.
                if is_tool_sampling(&m) {
                    tool_rounds += 1;
                    if tool_rounds > bounds.tool_rounds {
                        tracing::warn!(upstream = link.name(), rounds = tool_rounds, "refused a sampling request with tools past the rounds one call may take (FEAT-13)");
                        let _ = link
                            .send(Message::error(
                                m.id(),
                                ErrorCode::InvalidRequest,
                                "too many rounds of sampling with tools for one request",
                            ))
                            .await;
                        continue;
                    }
                }
                let m = match (&progress_map, m.method()) {
                    (Some((ours, original)), Some("notifications/progress")) => {
                        match restore_progress(&m, ours, original) {
                            Some(r) => r,
                            None => continue,
                        }
                    }
                    _ => m,
                };
                if m.method() == Some("notifications/progress") {
                    // Progress keeps a request alive up to the hard cap (LIFE-06).
                    idle_deadline = Instant::now() + bounds.idle;
                }
                if let Some(out) = from_upstream(link, session, idx, m).await {
                    // A failed send means nobody reads any more (shutdown).
                    let _ = sink.send(out).await;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                link.forget(upstream_id);
                link.cancel(upstream_id, "palisade: request timed out").await;
                let _ = sink.send(Message::error(
                    Some(&client_id),
                    ErrorCode::RequestTimeout,
                    "Request timed out",
                )).await;
                return;
            }
            () = cancel.cancelled() => {
                // The client cancelled: forward it, answer nothing.
                link.forget(upstream_id);
                link.cancel(upstream_id, "cancelled by the client").await;
                return;
            }
        }
    }
}

/// Whether `m` asks the client's model to sample with tools (read only when its
/// params name tools, as written or escaped).
fn is_tool_sampling(m: &Message) -> bool {
    m.method() == Some("sampling/createMessage")
        && m.params_raw()
            .is_some_and(|raw| raw.contains("tool") || raw.contains("\\u"))
        && m.params::<Value>()
            .is_ok_and(|p| crate::guard::samples_with_tools(&p))
}

fn restore_progress(m: &Message, ours: &Value, original: &Value) -> Option<Message> {
    let mut v = m.to_value().ok()?;
    let params = v.get_mut("params")?.as_object_mut()?;
    if params.get("progressToken") != Some(ours) {
        return None;
    }
    params.insert("progressToken".into(), original.clone());
    Message::from_value(&Value::Object(v)).ok()
}

/// Sends a request from the gateway itself (lists, initialisation) and returns the
/// upstream's response. Other messages that arrive meanwhile are answered or dropped.
pub(crate) async fn request(
    link: &Link,
    session: &Arc<Session>,
    method: &str,
    params: &Value,
    timeout: Duration,
) -> Result<Message, UpstreamError> {
    let upstream_id = link.next_id();
    let wire_id = Id::Number(upstream_id);
    let (tx, mut rx) = mpsc::channel(REQUEST_CHANNEL);
    let driver = link.drive(
        Message::request(&wire_id, method, params),
        upstream_id,
        session,
        tx,
    );
    let res = tokio::time::timeout(timeout, async {
        let (driven, response) = tokio::join!(driver, async {
            while let Some(m) = rx.recv().await {
                if m.is_response() && m.id() == Some(&wire_id) {
                    return Some(m);
                }
                if let (Kind::Request, Some(id)) = (m.kind(), m.id()) {
                    let _ = link
                        .send(Message::error(
                            Some(id),
                            ErrorCode::MethodNotFound,
                            "not available during a gateway request",
                        ))
                        .await;
                }
            }
            None
        });
        driven?;
        response
            .ok_or_else(|| UpstreamError::Unavailable("stream ended before the response".into()))
    })
    .await;
    match res {
        Ok(r) => r,
        Err(_) => {
            link.forget(upstream_id);
            link.cancel(upstream_id, "palisade: request timed out")
                .await;
            Err(UpstreamError::Timeout)
        }
    }
}
