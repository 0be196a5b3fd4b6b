//! OpenTelemetry traces across client → gateway → upstream.
//!
//! A client request that carries a W3C `traceparent` continues that trace; one without
//! starts a new trace, sampled at `sample_ratio` (by its trace ID, so every service
//! that sees it decides alike). The gateway records a SERVER span for the client's
//! request and a CLIENT span for each request it forwards, and sends HTTP upstreams a
//! `traceparent` naming that CLIENT span. Spans are exported by OTLP/HTTP (JSON).
//!
//! With `[tracing]` unset nothing is recorded and no `traceparent` is sent upstream: a
//! client's headers never reach an upstream unless the operator asked for this one.
//! Span attributes follow the OpenTelemetry conventions for MCP (`mcp.method.name`,
//! `gen_ai.tool.name`, `mcp.resource.uri`); they never hold arguments, tokens or
//! session IDs.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_config::Tracing;
use palisade_wire::Message;
use rand::RngCore;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Spans waiting for export at most; more are dropped (and counted in the log).
const SPAN_QUEUE: usize = 8192;

/// The trace a client's request belongs to, from its `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let v = palisade_audit::key::unhex(s)?;
    let a: [u8; N] = v.try_into().ok()?;
    Some(a)
}

/// Parses a W3C `traceparent` (version `00`); `None` for anything malformed, an
/// all-zero ID, or an unknown version, which then starts a new trace.
pub(crate) fn parse_traceparent(v: &str) -> Option<Parent> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || version != "00"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
        || !(trace.bytes().chain(span.bytes()).chain(flags.bytes()))
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let trace_id: [u8; 16] = unhex(trace)?;
    let span_id: [u8; 8] = unhex(span)?;
    let flags: [u8; 1] = unhex(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

fn hex(b: &[u8]) -> String {
    palisade_audit::key::hex(b)
}

/// One finished span.
#[derive(Debug)]
struct Span {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    /// OTLP span kind: 2 server, 3 client.
    kind: u8,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(&'static str, String)>,
    error: Option<String>,
}

/// The trace recorder and exporter; inert when tracing is off.
#[derive(Debug)]
pub(crate) struct Tracer {
    tx: Option<mpsc::Sender<Span>>,
    /// Root traces are sampled when the low 8 bytes of their ID fall under this.
    threshold: u64,
}

impl Tracer {
    /// No tracing.
    pub(crate) fn off() -> Self {
        Self {
            tx: None,
            threshold: 0,
        }
    }

    /// Starts the exporter for `config`, stopping with `stop`.
    pub(crate) fn start(
        config: &Tracing,
        http: reqwest::Client,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(SPAN_QUEUE);
        let task = tokio::spawn(crate::otlp::export(
            rx,
            config.otlp_url.clone(),
            http,
            stop,
            "spans",
            body,
        ));
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a ratio in [0, 1] scaled to the u64 range"
        )]
        let threshold = if config.sample_ratio >= 1.0 {
            u64::MAX
        } else {
            (config.sample_ratio * u64::MAX as f64) as u64
        };
        (
            Self {
                tx: Some(tx),
                threshold,
            },
            task,
        )
    }

    /// The SERVER span of one client request, continuing `parent` if the client sent
    /// one; `None` when tracing is off or the trace is not sampled.
    pub(crate) fn begin(
        self: &Arc<Self>,
        parent: Option<Parent>,
        msg: &Message,
    ) -> Option<Arc<ServerSpan>> {
        self.tx.as_ref()?;
        let mut rng = rand::rng();
        let (trace_id, parent_span, sampled) = match parent {
            Some(p) => (p.trace_id, Some(p.span_id), p.sampled),
            None => {
                let mut t = [0u8; 16];
                rng.fill_bytes(&mut t);
                let low = u64::from_be_bytes(t[8..].try_into().unwrap_or([0; 8]));
                (t, None, self.threshold == u64::MAX || low < self.threshold)
            }
        };
        if !sampled {
            return None;
        }
        let mut span_id = [0u8; 8];
        rng.fill_bytes(&mut span_id);
        let method = msg.method().unwrap_or_default().to_owned();
        let target = match method.as_str() {
            "tools/call" | "prompts/get" => msg.param_str("name"),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                msg.param_str("uri")
            }
            _ => None,
        };
        let mut attributes = vec![("mcp.method.name", method.clone())];
        match (method.as_str(), &target) {
            ("tools/call", Some(t)) => attributes.push(("gen_ai.tool.name", t.clone())),
            ("prompts/get", Some(t)) => attributes.push(("gen_ai.prompt.name", t.clone())),
            (_, Some(t)) => attributes.push(("mcp.resource.uri", t.clone())),
            _ => {}
        }
        if let Some(id) = msg.id() {
            attributes.push(("jsonrpc.request.id", id.to_string()));
        }
        Some(Arc::new(ServerSpan {
            tracer: Arc::clone(self),
            trace_id,
            span_id,
            parent: parent_span,
            name: match target {
                Some(t) => format!("{method} {t}"),
                None => method,
            },
            start: SystemTime::now(),
            attributes: Mutex::new(attributes),
            error: Mutex::new(None),
            upstream: Mutex::new(None),
        }))
    }

    fn send(&self, span: Span) {
        if let Some(tx) = &self.tx
            && tx.try_send(span).is_err()
        {
            tracing::debug!("span queue full: a span was dropped");
        }
    }
}

/// The gateway's span for one client request; exported when the last holder lets go
/// (the request's task, and the handler that answers the client).
#[derive(Debug)]
pub(crate) struct ServerSpan {
    tracer: Arc<Tracer>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    start: SystemTime,
    attributes: Mutex<Vec<(&'static str, String)>>,
    error: Mutex<Option<String>>,
    /// The CLIENT span of the upstream request in flight: its ID goes upstream.
    upstream: Mutex<Option<[u8; 8]>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ServerSpan {
    /// Notes the answer the client got: a JSON-RPC error marks the span failed.
    pub(crate) fn answered(&self, m: &Message) {
        if m.kind() == palisade_wire::Kind::ErrorResponse {
            let code = m
                .to_value()
                .ok()
                .and_then(|v| v.get("error")?.get("code")?.as_i64())
                .map_or_else(|| "error".to_owned(), |c| c.to_string());
            lock(&self.attributes).push(("rpc.jsonrpc.error_code", code.clone()));
            *lock(&self.error) = Some(code);
        }
    }

    /// Adds an attribute (the upstream, the decision).
    pub(crate) fn attribute(&self, key: &'static str, value: impl Into<String>) {
        lock(&self.attributes).push((key, value.into()));
    }

    /// Starts the CLIENT span of a request to `upstream`; `traceparent` names it
    /// while it lasts. The span ends when the returned guard drops.
    pub(crate) fn upstream(self: &Arc<Self>, upstream: &str, method: &str) -> UpstreamSpan {
        let mut span_id = [0u8; 8];
        rand::rng().fill_bytes(&mut span_id);
        *lock(&self.upstream) = Some(span_id);
        UpstreamSpan {
            server: Arc::clone(self),
            span_id,
            name: format!("{method} {upstream}"),
            upstream: upstream.to_owned(),
            method: method.to_owned(),
            start: SystemTime::now(),
        }
    }

    /// The `traceparent` for a request upstream: the CLIENT span in flight.
    pub(crate) fn traceparent(&self) -> String {
        let span = lock(&self.upstream).unwrap_or(self.span_id);
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&span))
    }
}

impl Drop for ServerSpan {
    fn drop(&mut self) {
        self.tracer.send(Span {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            name: std::mem::take(&mut self.name),
            kind: 2,
            start: self.start,
            end: SystemTime::now(),
            attributes: std::mem::take(
                self.attributes
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
            error: self
                .error
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        });
    }
}

/// A request to an upstream, in flight.
#[derive(Debug)]
pub(crate) struct UpstreamSpan {
    server: Arc<ServerSpan>,
    span_id: [u8; 8],
    name: String,
    upstream: String,
    method: String,
    start: SystemTime,
}

impl Drop for UpstreamSpan {
    fn drop(&mut self) {
        *lock(&self.server.upstream) = None;
        self.server.tracer.send(Span {
            trace_id: self.server.trace_id,
            span_id: self.span_id,
            parent: Some(self.server.span_id),
            name: std::mem::take(&mut self.name),
            kind: 3,
            start: self.start,
            end: SystemTime::now(),
            attributes: vec![
                ("mcp.method.name", std::mem::take(&mut self.method)),
                ("palisade.upstream", std::mem::take(&mut self.upstream)),
            ],
            error: None,
        });
    }
}

tokio::task_local! {
    /// The span of the client request this task serves.
    pub(crate) static CURRENT: Arc<ServerSpan>;
}

/// The `traceparent` to send upstream from this task, if it is traced.
pub(crate) fn outgoing() -> Option<String> {
    CURRENT.try_with(|s| s.traceparent()).ok()
}

/// This task's span, if it is traced.
pub(crate) fn current() -> Option<Arc<ServerSpan>> {
    CURRENT.try_with(Arc::clone).ok()
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

/// An OTLP/HTTP `ExportTraceServiceRequest` (JSON encoding) for a batch of spans.
fn body(spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut v = json!({
                "traceId": hex(&s.trace_id),
                "spanId": hex(&s.span_id),
                "name": s.name,
                "kind": s.kind,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": s.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
                "status": match &s.error {
                    Some(code) => json!({"code": 2, "message": format!("JSON-RPC error {code}")}),
                    None => json!({}),
                },
            });
            if let Some(p) = s.parent {
                v["parentSpanId"] = json!(hex(&p));
            }
            v
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": crate::otlp::resource(),
        "scopeSpans": [{"scope": {"name": "palisade"}, "spans": spans}],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = parse_traceparent(ok).unwrap_or_else(|| panic!("valid"));
        assert!(p.sampled);
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!parse_traceparent(unsampled).is_some_and(|p| p.sampled));
    }
}
