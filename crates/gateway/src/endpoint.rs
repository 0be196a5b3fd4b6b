//! The Streamable HTTP endpoint: one path serving POST, GET and DELETE (TR-01), and
//! `/healthz`.
//!
//! The edge order, for every request: Host (TR-03) → Origin (TR-02) → Accept /
//! Content-Type (TR-05) → MCP-Protocol-Version (TR-11) → authenticate (the local
//! user, until OAuth lands) → bounded body (413) → parse once (TR-06, TR-12) →
//! session lookup bound to the principal (SESS-03..05) → guard chain → router.
//! Nothing reaches an upstream before all of these pass.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use palisade_config::Limits;
use palisade_store::{CloseReason, SessionRecord, SessionStore, hash_session_id};
use palisade_wire::{Kind, Message};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::edge::{self, EdgePolicy};
use crate::principal::{Caller, Principal};
use crate::refusal::{Fault, Refusal};
use crate::router::{Router, UpstreamEntry};
use crate::session::{Session, unix_now};
use crate::stream::{ClientStream, parse_event_id};
use crate::upstream::REQUEST_CHANNEL;
use crate::upstream::stdio::State as StdioState;

/// Everything a request handler needs.
/// Counts each answer of the MCP endpoint by method and status (`Metrics::http_answer`):
/// the refusals made before any decision is recorded are counted too.
pub(crate) async fn count_answer(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().clone();
    let r = next.run(req).await;
    app.router
        .audit
        .metrics
        .http_answer(&method, r.status().as_u16());
    r
}

pub(crate) struct App {
    pub(crate) router: Router,
    pub(crate) edge: EdgePolicy,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) auth: Authenticator,
    pub(crate) limits: Limits,
    pub(crate) draining: AtomicBool,
    pub(crate) in_flight: AtomicUsize,
    /// Rate and concurrency limits.
    pub(crate) limiter: crate::limits::Limiter,
    /// OpenTelemetry traces (inert when `[tracing]` is unset).
    pub(crate) tracer: Arc<crate::traces::Tracer>,
}

/// How long a request may take before its answer becomes a (resumable) SSE stream.
const STREAM_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// Counts a request toward the drain on shutdown.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::AcqRel);
        Self(c)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl App {
    /// The edge checks that precede everything, in order (see the module docs).
    async fn common_checks(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Caller, Refusal> {
        self.edge.check_host(headers)?;
        self.edge.check_origin(headers)?;
        edge::check_protocol_version(headers)?;
        let mut p = self.authenticate(peer, headers, query).await?;
        p.address = Some(peer.ip());
        if self.draining.load(Ordering::Acquire) {
            return Err(Refusal::SHUTTING_DOWN);
        }
        Ok(p)
    }

    /// Authenticates and records the attempt (OBS-01): a refusal waits for its record;
    /// a success takes its place in the log now and is written with the request's
    /// next record, or by the handler before the answer leaves (`flush_ahead`).
    async fn authenticate(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Caller, Refusal> {
        let result = self.auth.authenticate(headers, query).await;
        if matches!(self.auth, crate::auth::Authenticator::OAuth(_)) {
            let event =
                |decision, principal: Option<String>, client, reason| palisade_audit::Event::Auth {
                    decision,
                    principal,
                    client,
                    peer: Some(peer.ip().to_string()),
                    reason,
                };
            match &result {
                Ok(c) => self.router.audit.note_ahead(event(
                    palisade_audit::Decision::Allow,
                    Some(crate::audit::who(&c.principal)),
                    c.client.clone(),
                    None,
                )),
                Err(r) => {
                    self.router
                        .audit
                        .refused(
                            crate::audit::RefusalKey {
                                of: crate::audit::Refused::Auth,
                                source: &crate::audit::peer_source(peer.ip()),
                                reason: r.message,
                            },
                            event(
                                palisade_audit::Decision::Deny,
                                None,
                                None,
                                Some(r.message.to_owned()),
                            ),
                        )
                        .await;
                }
            }
        }
        result
    }

    fn session(&self, headers: &HeaderMap, principal: &Principal) -> Result<Arc<Session>, Refusal> {
        let id = edge::session_header(headers)?.ok_or(Refusal::SESSION_REQUIRED)?;
        self.router
            .sessions
            .get(id, principal)
            .ok_or(Refusal::SESSION_NOT_FOUND)
    }

    async fn close_session(&self, s: Arc<Session>, reason: CloseReason) {
        self.router.audit.note(palisade_audit::Event::SessionClose {
            session: crate::audit::session_ref(&s.id),
            principal: crate::audit::who(&s.principal),
            reason: match reason {
                CloseReason::Deleted => "deleted",
                CloseReason::IdleExpired => "idle",
                CloseReason::LifetimeExpired => "lifetime",
                CloseReason::Shutdown => "shutdown",
            }
            .to_owned(),
        });
        for link in s.links.iter().flatten() {
            link.close().await;
        }
        if let Err(e) = self
            .store
            .session_closed(&hash_session_id(&s.id), reason, unix_now())
            .await
        {
            tracing::warn!(error = %e, "could not record a session close");
        }
    }
}

/// Reads at most `max` bytes of a request body; more is a 413.
pub(crate) async fn read_limited(body: Body, max: usize) -> Result<Bytes, Refusal> {
    let limited = http_body_util::Limited::new(body, max);
    let mut stream = limited.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Refusal::TOO_LARGE
            } else {
                Refusal::parse(
                    palisade_wire::ErrorCode::ParseError,
                    "Parse error: could not read the body",
                )
            }
        })?;
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

fn json_response(status: StatusCode, msg: &Message) -> Response {
    let mut res = (status, msg.raw().clone()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn sse_response(
    body: impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let mut res = Response::new(Body::from_stream(body));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// The client's address, as every listener (plain or TLS) reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, NoDelay>> for Peer {
    fn connect_info(stream: IncomingStream<'_, NoDelay>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// The plain listener: TCP with Nagle's algorithm off (small JSON-RPC answers go
/// out at once).
#[derive(Debug)]
pub(crate) struct NoDelay(pub(crate) tokio::net::TcpListener);

impl axum::serve::Listener for NoDelay {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = io.set_nodelay(true);
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// POST: one JSON-RPC message.
pub(crate) async fn post(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mark = app.router.audit.ahead_mark();
    let answer = post_inner(&app, peer, uri.query(), &headers, body).await;
    let answer = withheld_unless_recorded(&app, mark, answer);
    match answer {
        Ok(r) => r,
        Err(refusal) => {
            match refusal.fault {
                Fault::Internal => {
                    tracing::warn!(
                        status = refusal.status.as_u16(),
                        reason = refusal.message,
                        "refused a request"
                    );
                }
                Fault::Client => {
                    tracing::debug!(
                        status = refusal.status.as_u16(),
                        reason = refusal.message,
                        "refused a request"
                    );
                }
            }
            refusal.into_response()
        }
    }
}

/// Admits a message that names no tool or upstream (an `initialize`, a notification)
/// under the caller's, its client's and the global rate limits.
fn admit_unrouted(
    app: &App,
    caller: &Caller,
    session: Option<&str>,
    method: &str,
    id: Option<&palisade_wire::Id>,
) -> Result<crate::limits::Permit, Refusal> {
    let who = crate::audit::who(&caller.principal);
    app.limiter
        .admit(&who, caller.client.as_deref(), None, None)
        .map_err(|over| {
            tracing::info!(reason = over.reason, "refused a message over a limit");
            note_limit_refusal(app, caller, session, method, over.reason);
            Refusal::limited(over.message, over.retry_after).with_id(id)
        })
}

/// Records a message refused by a limit before it was routed (sessions, the rate of
/// `initialize`s and notifications, requests in flight in a session): a caller kept
/// out by a limit shows in the audit log like one refused a call.
fn note_limit_refusal(
    app: &App,
    caller: &Caller,
    session: Option<&str>,
    method: &str,
    reason: &'static str,
) {
    let principal = crate::audit::who(&caller.principal);
    let event = palisade_audit::Event::Call {
        session: session.map(crate::audit::session_ref).unwrap_or_default(),
        principal: principal.clone(),
        client: caller.client.clone(),
        method: crate::audit::clip(method),
        upstream: None,
        target: String::new(),
        arguments_hmac_sha256: None,
        arguments: None,
        decision: palisade_audit::Decision::Deny,
        reason: Some(reason.to_owned()),
        policies: Vec::new(),
        approved_by: None,
    };
    let key = crate::audit::RefusalKey {
        of: crate::audit::Refused::Call,
        source: &principal,
        reason,
    };
    app.router.audit.note_refused(key, event);
}

async fn post_inner(
    app: &Arc<App>,
    peer: SocketAddr,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let _busy = Busy::new(&app.in_flight);
    let caller = app.common_checks(peer, headers, query).await?;
    let principal = &caller.principal;
    edge::check_post_accept(headers)?;
    edge::check_content_type(headers)?;
    let bytes = read_limited(body, app.limits.max_request_bytes)
        .await
        .inspect_err(|r| {
            if r.status == StatusCode::PAYLOAD_TOO_LARGE {
                note_limit_refusal(app, &caller, None, "", "limits.max_request_bytes");
            }
        })?;
    let msg = Message::parse(bytes).map_err(|e| {
        Refusal::parse(
            e.code(),
            match e.code() {
                palisade_wire::ErrorCode::ParseError => "Parse error",
                _ => "Invalid Request",
            },
        )
    })?;

    if msg.method() == Some("initialize") && msg.kind() == Kind::Request {
        if edge::session_header(headers)?.is_some() {
            return Err(Refusal::ALREADY_INITIALIZED.with_id(msg.id()));
        }
        // Opening a session (and a session on every upstream) is a request like any
        // other under the caller's, its client's and the global rate limits.
        let _permit = admit_unrouted(app, &caller, None, "initialize", msg.id())?;
        return initialize(app, &caller, &msg).await;
    }
    // LIFE-01 / SESS-04: everything else needs a session.
    let session = app
        .session(headers, principal)
        .map_err(|r| r.with_id(msg.id()))?;
    session.subject.set(caller.token.as_ref());

    match msg.kind() {
        Kind::Notification => {
            // Notifications reach upstreams too: under the same limits as requests,
            // but for the handshake's end and cancellations (refusing one would keep
            // work going that the client wants stopped).
            let _permit = match msg.method() {
                Some("notifications/initialized" | "notifications/cancelled") => None,
                _ => Some(admit_unrouted(
                    app,
                    &caller,
                    Some(&session.id),
                    msg.method().unwrap_or_default(),
                    None,
                )?),
            };
            app.router.notification(&session, msg).await;
            Ok(accepted())
        }
        Kind::Response | Kind::ErrorResponse => {
            app.router.response(&session, msg).await;
            Ok(accepted())
        }
        Kind::Request => {
            // AUTH-12/13: an upstream that requires scopes the token lacks → 403 with
            // a step-up challenge, before anything is forwarded.
            if let Some(granted) = &caller.scopes
                && app.router.any_scopes()
                && let Some(idx) = app.router.target(&session, &msg).await
            {
                let needed: Vec<String> = app
                    .router
                    .required_scopes(idx)
                    .iter()
                    .filter(|s| !granted.contains(s))
                    .cloned()
                    .collect();
                if !needed.is_empty() {
                    return Err(app
                        .auth
                        .insufficient_scope(granted, &needed)
                        .with_id(msg.id()));
                }
            }
            // AUTH-12 with policies: a denial that a `@step_up` scope would lift.
            if let Some(granted) = &caller.scopes
                && app.router.authz.has_step_up()
                && let Some(scope) = app.router.step_up(&session, &caller, &msg).await
            {
                tracing::info!(method = ?msg.method(), %scope, "refused a request: the policy needs a scope the token lacks");
                app.router.audit.note(palisade_audit::Event::Call {
                    session: crate::audit::session_ref(&session.id),
                    principal: crate::audit::who(&caller.principal),
                    client: caller.client.clone(),
                    method: crate::audit::clip(msg.method().unwrap_or_default()),
                    upstream: None,
                    target: msg
                        .param_str("name")
                        .or_else(|| msg.param_str("uri"))
                        .unwrap_or_default(),
                    arguments_hmac_sha256: None,
                    arguments: None,
                    decision: palisade_audit::Decision::Deny,
                    reason: Some(format!("insufficient scope (step up to {scope})")),
                    policies: Vec::new(),
                    approved_by: None,
                });
                return Err(app
                    .auth
                    .insufficient_scope(granted, std::slice::from_ref(&scope))
                    .with_id(msg.id()));
            }
            let parent = headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::traces::parse_traceparent);
            request(app, session, caller, msg, parent).await
        }
    }
}

/// The refusal of a session the table has no room for, recorded.
fn session_refusal(app: &App, caller: &Caller, full: crate::session::Full) -> Refusal {
    let (refusal, reason) = match full {
        crate::session::Full::Table => (
            Refusal::TOO_MANY_SESSIONS,
            "session limit (limits.max_sessions)",
        ),
        crate::session::Full::Principal => (
            Refusal::TOO_MANY_SESSIONS_FOR_CALLER,
            "session limit (limits.max_sessions_per_principal)",
        ),
    };
    tracing::warn!(reason, "refused a session");
    note_limit_refusal(app, caller, None, "initialize", reason);
    refusal
}

async fn initialize(app: &Arc<App>, caller: &Caller, msg: &Message) -> Result<Response, Refusal> {
    let principal = &caller.principal;
    // A place is held before anything is opened upstream: initializes racing each
    // other cannot all pass the check and each open upstream sessions first.
    let place = match app.router.sessions.reserve(principal) {
        Ok(p) => p,
        Err(full) => return Err(session_refusal(app, caller, full).with_id(msg.id())),
    };
    // Stdio children are shared; give one that is starting a moment to be ready.
    for u in &app.router.upstreams {
        if let UpstreamEntry::Stdio(s) = u
            && s.state() != StdioState::Ready
        {
            let _ = s.wait_ready(std::time::Duration::from_secs(10)).await;
        }
    }
    let (session, response) = match app.router.initialize(caller, msg).await {
        Ok(v) => v,
        Err(err) => return Ok(json_response(StatusCode::BAD_REQUEST, &err)),
    };
    let record = SessionRecord {
        id_hash: hash_session_id(&session.id),
        issuer: principal.issuer().to_owned(),
        subject: principal.subject().to_owned(),
        protocol_version: session.version.as_str().to_owned(),
        client_name: msg.params::<serde_json::Value>().ok().and_then(|p| {
            p.get("clientInfo")?
                .get("name")?
                .as_str()
                .map(|s| s.chars().take(128).collect())
        }),
        created_at: unix_now(),
    };
    place.take(Arc::clone(&session));
    session.touch();
    app.router.audit.note(palisade_audit::Event::SessionOpen {
        session: crate::audit::session_ref(&session.id),
        principal: crate::audit::who(principal),
        protocol: session.version.as_str().to_owned(),
    });
    if let Err(e) = app.store.session_opened(&record).await {
        tracing::warn!(error = %e, "could not record a new session");
    }
    tracing::info!(client = ?record.client_name, version = %session.version, "session opened");
    let mut res = json_response(StatusCode::OK, &response);
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        res.headers_mut().insert("mcp-session-id", v);
    }
    Ok(res)
}

async fn request(
    app: &Arc<App>,
    session: Arc<Session>,
    caller: Caller,
    msg: Message,
    parent: Option<crate::traces::Parent>,
) -> Result<Response, Refusal> {
    let Some(id) = msg.id().cloned() else {
        return Err(Refusal::parse(
            palisade_wire::ErrorCode::InvalidRequest,
            "Invalid Request",
        ));
    };
    let Some(in_flight) = session.begin_request(app.limits.max_in_flight_per_session) else {
        note_limit_refusal(
            app,
            &caller,
            Some(&session.id),
            msg.method().unwrap_or_default(),
            "limits.max_in_flight_per_session",
        );
        return Err(Refusal::TOO_MANY_IN_FLIGHT.with_id(Some(&id)));
    };
    let tool = (msg.method() == Some("tools/call"))
        .then(|| msg.param_str("name"))
        .flatten();
    let upstream = app.router.target(&session, &msg).await;
    let who = crate::audit::who(&session.principal);
    let permit = match app
        .limiter
        .admit(&who, caller.client.as_deref(), tool.as_deref(), upstream)
    {
        Ok(p) => p,
        Err(over) => {
            tracing::info!(reason = over.reason, method = ?msg.method(), "refused a request over a limit");
            let event = palisade_audit::Event::Call {
                session: crate::audit::session_ref(&session.id),
                principal: who.clone(),
                client: caller.client.clone(),
                method: crate::audit::clip(msg.method().unwrap_or_default()),
                upstream: upstream.and_then(|i| app.router.names.get(i)).cloned(),
                target: crate::audit::clip(&tool.unwrap_or_default()),
                arguments_hmac_sha256: None,
                arguments: None,
                decision: palisade_audit::Decision::Deny,
                reason: Some(over.reason.to_owned()),
                policies: Vec::new(),
                approved_by: None,
            };
            let key = crate::audit::RefusalKey {
                of: crate::audit::Refused::Call,
                source: &who,
                reason: over.reason,
            };
            app.router.audit.note_refused(key, event);
            return Err(Refusal::limited(over.message, over.retry_after).with_id(Some(&id)));
        }
    };
    let cancel = CancellationToken::new();
    if !session.register_call(&id, cancel.clone()) {
        return Ok(json_response(
            StatusCode::OK,
            &Message::error(
                Some(&id),
                palisade_wire::ErrorCode::InvalidRequest,
                "request id already in use",
            ),
        ));
    }
    let (tx, mut rx) = mpsc::channel(REQUEST_CHANNEL);
    // The request's work is polled right here while the client waits, and moves to a
    // task of its own if this handler is dropped first: a client that disconnects does
    // not cancel it upstream (TR-13); what it produces stays replayable on its stream.
    let task_app = Arc::clone(app);
    let task_session = Arc::clone(&session);
    let task_id = id.clone();
    let span = app.tracer.begin(parent, &msg);
    let task_span = span.clone();
    let mut work = RequestWork::new(async move {
        let _in_flight = in_flight;
        let _permit = permit;
        let _busy = Busy::new(&task_app.in_flight);
        let work = task_app
            .router
            .request(&task_session, &caller, msg, tx, cancel);
        match task_span {
            Some(s) => crate::traces::CURRENT.scope(s, work).await,
            None => work.await,
        }
        task_session.finish_call(&task_id);
    });

    // Fast path: a response that comes back quickly is answered as plain JSON. A
    // request that takes longer, or sends anything before its response, is answered
    // as an SSE stream, so that its events carry IDs and a dropped connection can
    // resume with Last-Event-ID (TR-09, TR-10).
    let stream_after = tokio::time::sleep(STREAM_AFTER);
    tokio::pin!(stream_after);
    let first = loop {
        tokio::select! {
            // The work first: it usually ends in the same poll that sends the answer,
            // so the answer leaves with nothing left to run.
            biased;
            () = &mut work, if !work.is_done() => {}
            m = rx.recv() => break match m {
                Some(m) if m.is_response() => {
                    if let Some(s) = &span {
                        s.answered(&m);
                    }
                    return Ok(json_response(StatusCode::OK, &m));
                }
                Some(m) => Some(m),
                // Cancelled by the client before anything came back: nothing to answer.
                None => return Ok(accepted()),
            },
            () = &mut stream_after => break None,
            () = session.closed().cancelled() => return Err(Refusal::SHUTTING_DOWN.with_id(Some(&id))),
        }
    };
    let stream = session.open_stream();
    if let Some(first) = &first {
        stream.push(first);
    }
    let pump: Arc<ClientStream> = Arc::clone(&stream);
    tokio::spawn(async move {
        let relay = async {
            while let Some(m) = rx.recv().await {
                let last = m.is_response();
                pump.push(&m);
                if last {
                    if let Some(s) = &span {
                        s.answered(&m);
                    }
                    break;
                }
            }
            pump.close();
        };
        tokio::join!(work, relay);
    });
    Ok(sse_response(stream.reader(None, false)))
}

/// The work of one client request. Polled by the handler while the client waits for
/// a JSON answer, it needs no task of its own; if it is dropped before it ends (the
/// client disconnected, the session closed), what is left continues in a new task —
/// unless it is dropped by a panic, after which it is only dropped.
struct RequestWork(Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>);

impl RequestWork {
    fn new(work: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Some(Box::pin(work)))
    }

    fn is_done(&self) -> bool {
        self.0.is_none()
    }
}

impl Future for RequestWork {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let Some(work) = self.0.as_mut() else {
            return std::task::Poll::Ready(());
        };
        std::task::ready!(work.as_mut().poll(cx));
        self.0 = None;
        std::task::Poll::Ready(())
    }
}

impl Drop for RequestWork {
    fn drop(&mut self) {
        // Not while unwinding: a work that panicked must not be polled again.
        if let Some(work) = self.0.take()
            && !std::thread::panicking()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(work);
        }
    }
}

/// GET: the stream of unsolicited messages, or a resumed stream (`Last-Event-ID`).
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mark = app.router.audit.ahead_mark();
    let answer = get_inner(&app, peer, uri.query(), &headers).await;
    withheld_unless_recorded(&app, mark, answer).unwrap_or_else(IntoResponse::into_response)
}

async fn get_inner(
    app: &Arc<App>,
    peer: SocketAddr,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let caller = app.common_checks(peer, headers, query).await?;
    edge::check_get_accept(headers)?;
    let session = app.session(headers, &caller.principal)?;
    session.subject.set(caller.token.as_ref());
    for (idx, link) in session.links.iter().enumerate() {
        if let Some(link) = link {
            link.ensure_listening(&session, idx);
        }
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match last {
        None => Ok(sse_response(session.unsolicited().reader(None, true))),
        Some(last) => {
            // TR-09: only streams of this session (already bound to this principal).
            let (stream_id, seq) = parse_event_id(&last).ok_or(Refusal::UNKNOWN_EVENT_ID)?;
            let stream = session
                .find_stream(stream_id)
                .ok_or(Refusal::UNKNOWN_EVENT_ID)?;
            Ok(sse_response(stream.reader(Some(seq), stream_id == 0)))
        }
    }
}

/// DELETE: the client ends its session (SESS-06).
pub(crate) async fn delete(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mark = app.router.audit.ahead_mark();
    let r = async {
        let principal = app
            .common_checks(peer, &headers, uri.query())
            .await?
            .principal;
        let id = edge::session_header(&headers)?.ok_or(Refusal::SESSION_REQUIRED)?;
        let s = app
            .router
            .sessions
            .remove(id, &principal)
            .ok_or(Refusal::SESSION_NOT_FOUND)?;
        app.close_session(s, CloseReason::Deleted).await;
        Ok::<_, Refusal>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    withheld_unless_recorded(&app, mark, r).unwrap_or_else(IntoResponse::into_response)
}

/// Writes the authentication records this request noted ahead before its answer
/// leaves (OBS-01); when they could not be written and the log fails closed, the
/// answer is withheld. A refusal stands either way.
fn withheld_unless_recorded(
    app: &App,
    mark: palisade_audit::AheadMark,
    answer: Result<Response, Refusal>,
) -> Result<Response, Refusal> {
    match (app.router.audit.flush_ahead(mark), answer) {
        (Err(crate::audit::Unrecorded), Ok(_)) => Err(Refusal::UNRECORDED),
        (_, answer) => answer,
    }
}

/// Protected Resource Metadata (RFC 9728) at both well-known paths (AUTH-01, AUTH-02);
/// 404 when authentication is off.
pub(crate) async fn protected_resource_metadata(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = app.edge.check_host(&headers) {
        return r.into_response();
    }
    match app.auth.metadata() {
        Some(body) => {
            let mut res = (StatusCode::OK, body.clone()).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/metrics` on the admin listener: OpenMetrics text. The listener is on loopback
/// (the configuration allows nothing else), so `Host` must name loopback and a
/// browser's cross-origin request is refused: a page rebound to 127.0.0.1 cannot read
/// it (TR-03).
pub(crate) async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let admin = crate::edge::EdgePolicy::new(Vec::new(), Vec::new(), true, false);
    if let Err(r) = admin
        .check_host(&headers)
        .and_then(|()| admin.check_origin(&headers))
    {
        return r.into_response();
    }
    let body = app.router.audit.metrics.render(app.router.sessions.len());
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// `/healthz`: 200 once every stdio upstream is initialised; 503 with the states
/// otherwise.
pub(crate) async fn healthz(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = app
        .edge
        .check_host(&headers)
        .and_then(|()| app.edge.check_origin(&headers))
    {
        return r.into_response();
    }
    let mut ready = !app.draining.load(Ordering::Acquire);
    let mut upstreams = serde_json::Map::new();
    for u in &app.router.upstreams {
        match u {
            UpstreamEntry::Stdio(s) => {
                let st = s.state();
                ready &= st == StdioState::Ready;
                let shown = match s.refused() {
                    Some(why) => format!("not started: {why}"),
                    None => format!("{st:?}").to_lowercase(),
                };
                upstreams.insert(s.name().to_owned(), json!(shown));
            }
            UpstreamEntry::Http(t) => {
                upstreams.insert(t.name.clone(), json!("per-session"));
            }
        }
    }
    let body = json!({
        "status": if ready { "ready" } else { "starting" },
        "sessions": app.router.sessions.len(),
        "upstreams": upstreams,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Closes expired sessions periodically.
pub(crate) async fn reaper(app: Arc<App>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        for (s, reason) in app.router.sessions.reap() {
            tracing::info!(?reason, "session expired");
            app.close_session(s, reason).await;
        }
        app.limiter.retain_recent();
        app.router.audit.flush_refusals(false);
    }
}

/// Drains and closes every session (shutdown).
pub(crate) async fn close_all(app: &App) {
    for s in app.router.sessions.drain() {
        app.close_session(s, CloseReason::Shutdown).await;
    }
}
