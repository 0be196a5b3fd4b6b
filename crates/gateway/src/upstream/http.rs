//! A Streamable HTTP upstream: one upstream session per client session.
//!
//! The gateway is the upstream's client. It builds every upstream request itself:
//! no client header (Authorization, cookies, `X-Forwarded-*`, `Origin`) is ever
//! copied across (AUTH-15, BCP-02), and the upstream's `Mcp-Session-Id` never
//! reaches the client (SESS-09). Responses are read incrementally with a bound per
//! message; SSE responses are relayed event by event, never buffered whole.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use palisade_wire::{ErrorCode, Id, Message, ProtocolVersion, sse};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Link, UpstreamError};
use crate::session::Session;
use crate::workers::PerWorker;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// Reconnections of one interrupted SSE response before giving up.
const MAX_RESUMES: usize = 5;
/// Consecutive failures of the listening GET stream before it stops.
const MAX_LISTEN_FAILURES: u32 = 5;

/// The gateway's own credential for an upstream (AUTH-16): never the client's.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    /// A static secret from the vault, as a sensitive header.
    Static(reqwest::header::HeaderName, HeaderValue),
    /// Short-lived tokens by OAuth client credentials.
    Token(Arc<crate::credentials::TokenSource>),
    /// Per-caller tokens by RFC 8693 token exchange of the caller's token.
    Exchange(Arc<crate::credentials::ExchangeSource>),
}

/// A configured Streamable HTTP upstream: where it is and the gateway's own credential
/// for it, never logged.
#[derive(Debug, Clone)]
pub(crate) struct HttpTarget {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) credential: Option<Credential>,
}

/// One upstream session.
#[derive(Debug)]
pub(crate) struct HttpLink {
    name: String,
    url: reqwest::Url,
    credential: Option<Credential>,
    /// This session's exchanged token, for `Credential::Exchange`.
    exchanged: Option<crate::credentials::Exchanged>,
    /// One connection pool per serving thread: a call goes out on its own thread's.
    clients: Arc<PerWorker<reqwest::Client>>,
    session_id: Option<HeaderValue>,
    version: ProtocolVersion,
    capabilities: Value,
    /// The `instructions` of the upstream's `initialize` result, if any.
    instructions: Option<String>,
    next_id: AtomicI64,
    max_msg: usize,
    listening: AtomicBool,
    closed: CancellationToken,
}

/// The HTTP client shared by all HTTP upstreams: rustls (aws-lc-rs), no redirects
/// (a redirect could carry a request to a host nobody configured), no proxy from the
/// environment.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| e.to_string())
}

/// What reading one response found.
struct ReadOutcome {
    saw_response: bool,
    last_event_id: Option<String>,
    retry: Option<Duration>,
}

impl HttpLink {
    /// Opens an upstream session: `initialize`, then `notifications/initialized`.
    /// The client's declared capabilities are passed on, so that the upstream only
    /// asks for what the client can do.
    pub(crate) async fn connect(
        target: &HttpTarget,
        clients: Arc<PerWorker<reqwest::Client>>,
        client_capabilities: &Value,
        subject: &Arc<crate::principal::SubjectSlot>,
        max_msg: usize,
        timeout: Duration,
    ) -> Result<Arc<Self>, UpstreamError> {
        let mut caps = serde_json::Map::new();
        for k in ["sampling", "elicitation", "roots"] {
            if let Some(v) = client_capabilities.get(k).filter(|v| !v.is_null()) {
                caps.insert(k.into(), v.clone());
            }
        }
        let name = target.name.as_str();
        let url = reqwest::Url::parse(&target.url)
            .map_err(|e| UpstreamError::Unavailable(format!("bad upstream URL: {e}")))?;
        let mut link = Self {
            name: name.to_owned(),
            url,
            credential: target.credential.clone(),
            exchanged: match &target.credential {
                Some(Credential::Exchange(source)) => Some(crate::credentials::Exchanged::new(
                    Arc::clone(source),
                    Arc::clone(subject),
                )),
                _ => None,
            },
            clients,
            session_id: None,
            version: ProtocolVersion::LATEST,
            capabilities: json!({}),
            instructions: None,
            next_id: AtomicI64::new(1),
            max_msg,
            listening: AtomicBool::new(false),
            closed: CancellationToken::new(),
        };
        let init = Message::request(
            &Id::Number(0),
            "initialize",
            &json!({
                "protocolVersion": ProtocolVersion::LATEST.as_str(),
                "capabilities": caps,
                "clientInfo": { "name": "palisade", "version": env!("CARGO_PKG_VERSION") }
            }),
        );
        let fut = async {
            let resp = link.post(&init, false).await?;
            let sid = resp.headers().get("mcp-session-id").cloned();
            if let Some(s) = &sid {
                let ok = s
                    .to_str()
                    .is_ok_and(|s| !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b)));
                if !ok {
                    return Err(UpstreamError::Protocol(
                        "invalid Mcp-Session-Id from upstream".into(),
                    ));
                }
            }
            let (tx, mut rx) = mpsc::channel(super::REQUEST_CHANNEL);
            let reader = link.read(resp, Some(0), &tx);
            let (r, first) = tokio::join!(reader, async {
                while let Some(m) = rx.recv().await {
                    if m.is_response() && m.id() == Some(&Id::Number(0)) {
                        return Some(m);
                    }
                }
                None
            });
            drop(tx);
            r?;
            let res =
                first.ok_or_else(|| UpstreamError::Protocol("no initialize response".into()))?;
            Ok((sid, res))
        };
        let (sid, res) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let v = res
            .to_value()
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let Some(result) = v.get("result") else {
            return Err(UpstreamError::Protocol("initialize was refused".into()));
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .and_then(ProtocolVersion::parse)
            .ok_or_else(|| UpstreamError::Protocol("unsupported protocol version".into()))?;
        link.session_id = sid;
        link.version = version;
        link.capabilities = result
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({}));
        link.instructions = result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let link = Arc::new(link);
        link.send(Message::notification(
            "notifications/initialized",
            &json!({}),
        ))
        .await?;
        Ok(link)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn instructions(&self) -> Option<&str> {
        self.instructions.as_deref()
    }

    pub(crate) fn capabilities(&self) -> &Value {
        &self.capabilities
    }

    pub(crate) fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn headers(&self, with_version: bool) -> Result<HeaderMap, UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(sid) = &self.session_id {
            h.insert("mcp-session-id", sid.clone());
        }
        // The gateway's own credential, never the client's (AUTH-15, AUTH-16).
        match &self.credential {
            None => {}
            Some(Credential::Static(name, value)) => {
                h.insert(name.clone(), value.clone());
            }
            Some(Credential::Token(source)) => {
                let value = source
                    .header()
                    .await
                    .map_err(|e| UpstreamError::Unavailable(format!("no upstream token: {e}")))?;
                h.insert(reqwest::header::AUTHORIZATION, value);
            }
            Some(Credential::Exchange(_)) => {
                let value = match &self.exchanged {
                    Some(x) => x.header().await,
                    None => Err("no exchange state".to_owned()),
                }
                .map_err(|e| UpstreamError::Unavailable(format!("no upstream token: {e}")))?;
                h.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        if with_version {
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_static(self.version.as_str()),
            );
        }
        // W3C Trace Context, only when the operator turned tracing on: the gateway's
        // own span, never the client's header passed through.
        if let Some(tp) = crate::traces::outgoing()
            && let Ok(v) = HeaderValue::from_str(&tp)
        {
            h.insert("traceparent", v);
        }
        Ok(h)
    }

    async fn post(
        &self,
        msg: &Message,
        with_version: bool,
    ) -> Result<reqwest::Response, UpstreamError> {
        let resp = self
            .clients
            .get()
            .post(self.url.clone())
            .headers(self.headers(with_version).await?)
            .body(msg.raw().clone())
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(e.without_url().to_string()))?;
        match resp.status().as_u16() {
            200..=299 => Ok(resp),
            404 if self.session_id.is_some() => Err(UpstreamError::Unavailable(
                "upstream session expired".into(),
            )),
            s => Err(UpstreamError::Unavailable(format!(
                "upstream answered HTTP {s}"
            ))),
        }
    }

    /// Reads one response body (JSON or SSE) and sends each message to `tx`.
    async fn read(
        &self,
        mut resp: reqwest::Response,
        expect: Option<i64>,
        tx: &mpsc::Sender<Message>,
    ) -> Result<ReadOutcome, UpstreamError> {
        let mut out = ReadOutcome {
            saw_response: false,
            last_event_id: None,
            retry: None,
        };
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let is_expected = |m: &Message| {
            m.is_response() && matches!((m.id(), expect), (Some(Id::Number(a)), Some(b)) if *a == b)
        };
        if ctype.starts_with("text/event-stream") {
            let mut dec = sse::Decoder::new(self.max_msg);
            let mut events = Vec::new();
            loop {
                let chunk = tokio::select! {
                    c = resp.chunk() => c.map_err(|e| UpstreamError::Unavailable(e.without_url().to_string()))?,
                    () = self.closed.cancelled() => return Ok(out),
                };
                let Some(chunk) = chunk else { return Ok(out) };
                dec.feed(&chunk, &mut events)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                for ev in events.drain(..) {
                    if ev.id.is_some() {
                        out.last_event_id.clone_from(&ev.id);
                    }
                    if let Some(ms) = ev.retry {
                        out.retry = Some(Duration::from_millis(ms.min(60_000)));
                    }
                    if ev.data.trim().is_empty()
                        || ev.event.as_deref().is_some_and(|e| e != "message")
                    {
                        continue;
                    }
                    match Message::parse(Bytes::from(ev.data)) {
                        Ok(m) => {
                            let done = is_expected(&m);
                            if tx.send(m).await.is_err() {
                                return Ok(out);
                            }
                            if done {
                                out.saw_response = true;
                                return Ok(out);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(upstream = %self.name, error = %e, "dropped an invalid SSE message")
                        }
                    }
                }
            }
        } else if ctype.starts_with("application/json") {
            let body = read_limited(&mut resp, self.max_msg).await?;
            if body.is_empty() {
                return Ok(out);
            }
            let m = Message::parse(body).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            out.saw_response = is_expected(&m);
            let _ = tx.send(m).await;
            Ok(out)
        } else if resp.status().as_u16() == 202 {
            Ok(out)
        } else {
            Err(UpstreamError::Protocol(format!(
                "unexpected content type {ctype:?}"
            )))
        }
    }

    /// Sends a request and relays everything about it to `tx`; a failure becomes an
    /// error response with the request's ID.
    pub(crate) async fn drive(&self, msg: &Message, upstream_id: i64, tx: &mpsc::Sender<Message>) {
        if let Err(e) = self.exchange(msg, upstream_id, tx).await {
            tracing::warn!(upstream = %self.name, error = %e, "upstream request failed");
            let _ = tx
                .send(Message::error(
                    Some(&Id::Number(upstream_id)),
                    ErrorCode::UpstreamUnavailable,
                    "upstream unavailable",
                ))
                .await;
        }
    }

    async fn exchange(
        &self,
        msg: &Message,
        upstream_id: i64,
        tx: &mpsc::Sender<Message>,
    ) -> Result<(), UpstreamError> {
        let resp = self.post(msg, true).await?;
        let mut o = self.read(resp, Some(upstream_id), tx).await?;
        let mut resumes = 0;
        // The upstream may close an SSE response early and expect the client to
        // resume it with GET + Last-Event-ID (SSE polling, 2025-11-25).
        while !o.saw_response && !tx.is_closed() && !self.closed.is_cancelled() {
            let Some(last) = o.last_event_id.clone() else {
                return Err(UpstreamError::Protocol(
                    "stream ended without a response".into(),
                ));
            };
            resumes += 1;
            if resumes > MAX_RESUMES {
                return Err(UpstreamError::Protocol(
                    "stream ended without a response".into(),
                ));
            }
            tokio::time::sleep(o.retry.unwrap_or(Duration::from_millis(200))).await;
            let resp = self.get(Some(&last)).await?;
            let next = self.read(resp, Some(upstream_id), tx).await?;
            o = ReadOutcome {
                last_event_id: next.last_event_id.or(o.last_event_id),
                ..next
            };
        }
        Ok(())
    }

    async fn get(&self, last_event_id: Option<&str>) -> Result<reqwest::Response, UpstreamError> {
        let mut h = self.headers(true).await?;
        h.remove(CONTENT_TYPE);
        h.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = last_event_id.and_then(|s| HeaderValue::from_str(s).ok()) {
            h.insert("last-event-id", id);
        }
        let resp = self
            .clients
            .get()
            .get(self.url.clone())
            .headers(h)
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(e.without_url().to_string()))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(UpstreamError::Unavailable(format!(
                "upstream answered HTTP {}",
                resp.status().as_u16()
            )))
        }
    }

    /// Forwards a notification or response; the upstream answers 202.
    pub(crate) async fn send(&self, msg: Message) -> Result<(), UpstreamError> {
        let mut resp = self.post(&msg, true).await?;
        // Drain (bounded) so the connection can be reused.
        let _ = read_limited(&mut resp, self.max_msg).await;
        Ok(())
    }

    /// Opens the upstream's GET stream once, relaying its messages to `session`.
    pub(crate) fn ensure_listening(self: &Arc<Self>, session: &Arc<Session>, idx: usize) {
        if self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        let weak: Weak<Session> = Arc::downgrade(session);
        tokio::spawn(async move {
            Arc::clone(&this).listen(weak, idx).await;
            // A later client GET may try again.
            this.listening.store(false, Ordering::Release);
        });
    }

    async fn listen(self: Arc<Self>, session: Weak<Session>, idx: usize) {
        let mut last: Option<String> = None;
        let mut failures = 0u32;
        while !self.closed.is_cancelled() && failures < MAX_LISTEN_FAILURES {
            let resp = match self.get(last.as_deref()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(upstream = %self.name, error = %e, "no upstream GET stream");
                    // 405: the upstream offers no GET stream; that is allowed.
                    return;
                }
            };
            let (tx, mut rx) = mpsc::channel(super::REQUEST_CHANNEL);
            let link = Link::Http(Arc::clone(&self));
            let relay = async {
                while let Some(m) = rx.recv().await {
                    let Some(s) = session.upgrade() else { return };
                    if let Some(out) = super::from_upstream(&link, &s, idx, m).await {
                        s.deliver_unsolicited(&out);
                    }
                }
            };
            let (r, ()) = tokio::join!(
                async {
                    let r = self.read(resp, None, &tx).await;
                    drop(tx);
                    r
                },
                relay
            );
            match r {
                Ok(o) => {
                    failures = 0;
                    last = o.last_event_id.or(last);
                    let wait = o
                        .retry
                        .unwrap_or(Duration::from_secs(1))
                        .max(Duration::from_millis(250));
                    tokio::time::sleep(wait).await;
                }
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if session.upgrade().is_none_or(|s| s.is_closed()) {
                return;
            }
        }
    }

    /// Ends the upstream session (DELETE), best effort.
    pub(crate) async fn close(&self) {
        self.closed.cancel();
        if self.session_id.is_none() {
            return;
        }
        let Ok(mut h) = self.headers(true).await else {
            return;
        };
        h.remove(CONTENT_TYPE);
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.clients
                .get()
                .delete(self.url.clone())
                .headers(h)
                .send(),
        )
        .await;
    }
}

/// Reads a whole body of at most `max` bytes. A body that arrives in one piece (the
/// usual case for a JSON answer) is returned as that piece, without a copy.
async fn read_limited(resp: &mut reqwest::Response, max: usize) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::Protocol(format!("message larger than {max} bytes"));
    let mut first: Option<Bytes> = None;
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| UpstreamError::Unavailable(e.without_url().to_string()))?
    {
        let held = first.as_ref().map_or(buf.len(), Bytes::len);
        if held + chunk.len() > max {
            return Err(too_large());
        }
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            None => buf.extend_from_slice(&chunk),
            Some(f) => {
                let hint = resp
                    .content_length()
                    .map_or(0, |n| n.min(max as u64) as usize);
                buf.reserve((f.len() + chunk.len()).max(hint));
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(buf)))
}
