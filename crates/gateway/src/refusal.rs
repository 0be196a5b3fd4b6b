//! Refusals: every way the gateway says no, each with its HTTP status, public JSON-RPC
//! code and safe message, and who is at fault. Internal detail goes to the log, never
//! to the peer.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_wire::{ErrorCode, Id, Message};

/// Who caused a failure; decides logging level and, later, alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client sent something we refuse.
    Client,
    /// The gateway itself failed.
    Internal,
}

/// A typed refusal of an HTTP request, before or instead of any upstream I/O.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) message: &'static str,
    pub(crate) id: Option<Id>,
    pub(crate) fault: Fault,
    /// A `WWW-Authenticate` value, for authentication refusals.
    pub(crate) challenge: Option<String>,
    /// Seconds for `Retry-After`, for limits.
    pub(crate) retry_after: Option<u64>,
}

impl Refusal {
    const fn client(status: StatusCode, code: ErrorCode, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
            id: None,
            fault: Fault::Client,
            challenge: None,
            retry_after: None,
        }
    }

    /// A refusal the gateway itself is the cause of: 503, logged as a warning.
    const fn unavailable(message: &'static str) -> Self {
        let mut r = Self::client(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InternalError,
            message,
        );
        r.fault = Fault::Internal;
        r
    }

    /// TR-02: `Origin` present and not allowlisted.
    pub(crate) const ORIGIN_NOT_ALLOWED: Self = Self::client(
        StatusCode::FORBIDDEN,
        ErrorCode::InvalidRequest,
        "Forbidden: Origin not allowed",
    );
    /// TR-03: `Host` not one this gateway answers to (DNS rebinding).
    pub(crate) const HOST_NOT_ALLOWED: Self = Self::client(
        StatusCode::FORBIDDEN,
        ErrorCode::InvalidRequest,
        "Forbidden: Host not allowed",
    );
    /// TR-05: the client does not accept what Streamable HTTP answers with.
    pub(crate) const NOT_ACCEPTABLE: Self = Self::client(
        StatusCode::NOT_ACCEPTABLE,
        ErrorCode::InvalidRequest,
        "Not Acceptable: Accept must include application/json and text/event-stream",
    );
    /// TR-05: GET must accept an event stream.
    pub(crate) const GET_NOT_ACCEPTABLE: Self = Self::client(
        StatusCode::NOT_ACCEPTABLE,
        ErrorCode::InvalidRequest,
        "Not Acceptable: Accept must include text/event-stream",
    );
    /// A POST body that is not declared as JSON.
    pub(crate) const UNSUPPORTED_MEDIA_TYPE: Self = Self::client(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::InvalidRequest,
        "Unsupported Media Type: Content-Type must be application/json",
    );
    /// TR-11: an unknown `MCP-Protocol-Version`.
    pub(crate) const UNSUPPORTED_VERSION: Self = Self::client(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
        "Bad Request: unsupported MCP-Protocol-Version",
    );
    /// A body above `limits.max_request_bytes`.
    pub(crate) const TOO_LARGE: Self = Self::client(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        "Payload Too Large: the message exceeds the gateway's limit",
    );
    /// SESS-04 / LIFE-01: a non-initialize request without a session.
    pub(crate) const SESSION_REQUIRED: Self = Self::client(
        StatusCode::BAD_REQUEST,
        ErrorCode::SessionError,
        "Bad Request: Mcp-Session-Id header is required",
    );
    /// SESS-03 / SESS-05: unknown, expired, deleted or someone else's session. The
    /// same answer for all, so that nobody learns whether a session exists.
    pub(crate) const SESSION_NOT_FOUND: Self = Self::client(
        StatusCode::NOT_FOUND,
        ErrorCode::SessionError,
        "Session not found",
    );
    /// `initialize` on a request that already carries a session.
    pub(crate) const ALREADY_INITIALIZED: Self = Self::client(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
        "Bad Request: initialize must not carry Mcp-Session-Id",
    );
    /// A rate or concurrency limit (429 with `Retry-After`).
    pub(crate) const fn limited(message: &'static str, retry_after: u64) -> Self {
        let mut r = Self::client(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            message,
        );
        r.retry_after = Some(retry_after);
        r
    }

    /// The session table is full.
    pub(crate) const TOO_MANY_SESSIONS: Self =
        Self::unavailable("Service Unavailable: too many sessions");
    /// The caller already holds `limits.max_sessions_per_principal` sessions.
    pub(crate) const TOO_MANY_SESSIONS_FOR_CALLER: Self = Self::client(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InternalError,
        "Too Many Requests: this caller holds too many sessions; close one (DELETE) or let one expire",
    );
    /// The session already has `limits.max_in_flight_per_session` requests running.
    pub(crate) const TOO_MANY_IN_FLIGHT: Self = Self::client(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InternalError,
        "Too Many Requests: too many requests in flight on this session",
    );
    /// A `Last-Event-ID` that does not name a stream of this session (TR-09).
    pub(crate) const UNKNOWN_EVENT_ID: Self = Self::client(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidRequest,
        "Not Found: unknown Last-Event-ID for this session",
    );
    /// The gateway is draining.
    pub(crate) const SHUTTING_DOWN: Self =
        Self::unavailable("Service Unavailable: the gateway is shutting down");

    /// OBS-01: the audit log could not record this request (its authentication),
    /// and it fails closed: the answer is withheld.
    pub(crate) const UNRECORDED: Self =
        Self::unavailable("Service Unavailable: the audit log cannot record this request");

    /// AUTH-05: no credentials; the challenge says where the metadata is.
    pub(crate) const UNAUTHORIZED: Self = Self::client(
        StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidRequest,
        "Unauthorized: an access token is required",
    );
    /// AUTH-06: a token that failed validation.
    pub(crate) const INVALID_TOKEN: Self = Self::client(
        StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidRequest,
        "Unauthorized: the access token is not valid for this resource",
    );
    /// AUTH-10 / AUTH-11: malformed, duplicated or misplaced credentials.
    pub(crate) const INVALID_AUTH_REQUEST: Self = Self::client(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
        "Bad Request: malformed credentials",
    );

    /// AUTH-12: the token lacks a scope this upstream requires.
    pub(crate) const INSUFFICIENT_SCOPE: Self = Self::client(
        StatusCode::FORBIDDEN,
        ErrorCode::InvalidRequest,
        "Forbidden: insufficient scope",
    );

    /// The same refusal with a `WWW-Authenticate` challenge.
    pub(crate) fn with_challenge(mut self, challenge: String) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// A refusal for a message that could not be parsed (TR-06, TR-12).
    pub(crate) fn parse(code: ErrorCode, message: &'static str) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }

    /// The same refusal, echoing the request's ID where it is known.
    pub(crate) fn with_id(mut self, id: Option<&Id>) -> Self {
        self.id = id.cloned();
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Message::error(self.id.as_ref(), self.code, self.message).into_bytes();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}
