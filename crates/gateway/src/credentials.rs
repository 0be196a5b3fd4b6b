//! Upstream tokens by OAuth client credentials (RFC 6749 §4.4), one source per
//! upstream: the gateway authenticates as itself, asks for a token whose `resource`
//! (RFC 8707) is that upstream's URL and whose scopes are the configured minimal set,
//! and reuses it until shortly before it expires (AUTH-16, BCP-03). Requests go
//! through the same SSRF-controlled fetch as the issuer metadata.
//!
//! Or, per caller, by RFC 8693 token exchange: the caller's access token is traded at
//! the authorization server for one whose audience is the upstream ([`Exchanged`]).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use std::sync::Arc;

use crate::Secret;
use crate::auth::{form_encode, metadata_request};
use crate::principal::{SubjectSlot, SubjectToken};

/// Renew this long before the token expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30);
/// After a failed token fetch, requests to that upstream fail fast this long.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// Upper bound on how long one upstream token is used, whatever `expires_in` says.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(3600);

/// Where one upstream's tokens come from.
pub(crate) struct TokenSource {
    endpoint: String,
    client_id: String,
    client_secret: Secret,
    scopes: Vec<String>,
    resource: String,
    loopback_dev: bool,
    cached: Mutex<Option<(HeaderValue, Instant)>>,
    /// After a failed fetch, requests fail fast until this instant.
    failed_until: std::sync::Mutex<Option<Instant>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub(crate) fn new(
        endpoint: String,
        client_id: String,
        client_secret: Secret,
        scopes: Vec<String>,
        resource: String,
    ) -> Self {
        let loopback_dev = endpoint.starts_with("http://");
        Self {
            endpoint,
            client_id,
            client_secret,
            scopes,
            resource,
            loopback_dev,
            cached: Mutex::new(None),
            failed_until: std::sync::Mutex::new(None),
        }
    }

    /// `Bearer <token>` for the next upstream request; fetched when missing or about
    /// to expire. Concurrent callers wait for one fetch.
    pub(crate) async fn header(&self) -> Result<HeaderValue, String> {
        if self
            .failed_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| Instant::now() < t)
        {
            return Err("the token endpoint failed moments ago".into());
        }
        let mut cached = self.cached.lock().await;
        if let Some((value, until)) = cached.as_ref()
            && Instant::now() + RENEW_BEFORE < *until
        {
            return Ok(value.clone());
        }
        let mut body = format!(
            "grant_type=client_credentials&resource={}",
            form_encode(&self.resource)
        );
        if !self.scopes.is_empty() {
            body.push_str(&format!("&scope={}", form_encode(&self.scopes.join(" "))));
        }
        let (value, life) = match token_request(
            &self.endpoint,
            self.loopback_dev,
            &self.client_id,
            &self.client_secret,
            body,
            false,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                *self.failed_until.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Instant::now() + FAILURE_BACKOFF);
                return Err(e);
            }
        };
        *cached = Some((value.clone(), Instant::now() + life));
        tracing::debug!(endpoint = %self.endpoint, resource = %self.resource, "obtained an upstream token");
        Ok(value)
    }
}

/// One request to a token endpoint, the gateway authenticated as `client_id` with
/// HTTP Basic (RFC 6749 §2.3.1): the bearer header to send upstream and how long it may
/// be used. With `exchange`, the response must name an access token as the issued
/// type (RFC 8693 §2.2.1).
async fn token_request(
    endpoint: &str,
    loopback_dev: bool,
    client_id: &str,
    client_secret: &Secret,
    body: String,
    exchange: bool,
) -> Result<(HeaderValue, Duration), String> {
    let secret =
        std::str::from_utf8(client_secret.expose()).map_err(|_| "client secret is not text")?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        form_encode(client_id),
        form_encode(secret)
    ));
    let v = metadata_request(
        endpoint,
        loopback_dev,
        Some((body, format!("Basic {basic}"))),
    )
    .await?;
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token response has no access_token")?;
    // RFC 8693 allows `N_A` for tokens that are not bearer tokens; those cannot be
    // sent upstream.
    if !v
        .get("token_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
    {
        return Err("the token is not a bearer token".into());
    }
    if exchange
        && !matches!(
            v.get("issued_token_type").and_then(Value::as_str),
            Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE)
        )
    {
        return Err("the exchange did not issue an access token".into());
    }
    let life = v
        .get("expires_in")
        .and_then(Value::as_u64)
        .map_or(Duration::from_secs(300), Duration::from_secs)
        .min(MAX_TOKEN_LIFE);
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token is not a header value")?;
    value.set_sensitive(true);
    Ok((value, life))
}

const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// RFC 8693 token exchange toward one upstream: the caller's access token is traded,
/// by the gateway authenticated as itself, for a token whose `resource` is the
/// upstream (and `audience`, if configured). The upstream thus sees a token for itself
/// that still names the user, and never the caller's token (AUTH-15, AUTH-16).
pub(crate) struct ExchangeSource {
    endpoint: String,
    client_id: String,
    client_secret: Secret,
    resource: String,
    audience: Option<String>,
    scopes: Vec<String>,
    loopback_dev: bool,
}

impl fmt::Debug for ExchangeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeSource")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl ExchangeSource {
    pub(crate) fn new(
        config: &palisade_config::TokenExchange,
        client_secret: Secret,
        resource: String,
    ) -> Self {
        Self {
            loopback_dev: config.token_endpoint.starts_with("http://"),
            endpoint: config.token_endpoint.clone(),
            client_id: config.client_id.clone(),
            client_secret,
            resource,
            audience: config.audience.clone(),
            scopes: config.scopes.clone(),
        }
    }

    async fn exchange(&self, subject: &SubjectToken) -> Result<(HeaderValue, Duration), String> {
        let mut body = format!(
            "grant_type={}&subject_token={}&subject_token_type={}&requested_token_type={}&resource={}",
            form_encode(TOKEN_EXCHANGE_GRANT),
            form_encode(subject.expose()),
            form_encode(ACCESS_TOKEN_TYPE),
            form_encode(ACCESS_TOKEN_TYPE),
            form_encode(&self.resource),
        );
        if let Some(a) = &self.audience {
            body.push_str(&format!("&audience={}", form_encode(a)));
        }
        if !self.scopes.is_empty() {
            body.push_str(&format!("&scope={}", form_encode(&self.scopes.join(" "))));
        }
        token_request(
            &self.endpoint,
            self.loopback_dev,
            &self.client_id,
            &self.client_secret,
            body,
            true,
        )
        .await
    }
}

/// One session's exchanged token toward one upstream. It is tied to the caller's
/// current token: when the client refreshes its token, the next upstream request
/// exchanges the new one. A failed exchange is not retried for the same subject token
/// for a moment, so a revoked token cannot make the gateway hammer the token endpoint;
/// it never affects other sessions.
#[derive(Debug)]
pub(crate) struct Exchanged {
    source: Arc<ExchangeSource>,
    subject: Arc<SubjectSlot>,
    cached: Mutex<Option<([u8; 32], HeaderValue, Instant)>>,
    failed: std::sync::Mutex<Option<([u8; 32], Instant)>>,
}

impl Exchanged {
    pub(crate) fn new(source: Arc<ExchangeSource>, subject: Arc<SubjectSlot>) -> Self {
        Self {
            source,
            subject,
            cached: Mutex::new(None),
            failed: std::sync::Mutex::new(None),
        }
    }

    /// `Bearer <token>` for the next upstream request of this session.
    pub(crate) async fn header(&self) -> Result<HeaderValue, String> {
        let subject = self
            .subject
            .get()
            .ok_or("the session has no caller token to exchange")?;
        let digest = subject.digest();
        if self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|(d, until)| d == digest && Instant::now() < until)
        {
            return Err("the token exchange failed moments ago".into());
        }
        let mut cached = self.cached.lock().await;
        if let Some((d, value, until)) = cached.as_ref()
            && *d == digest
            && Instant::now() + RENEW_BEFORE < *until
        {
            return Ok(value.clone());
        }
        match self.source.exchange(&subject).await {
            Ok((value, life)) => {
                *cached = Some((digest, value.clone(), Instant::now() + life));
                tracing::debug!(endpoint = %self.source.endpoint, resource = %self.source.resource, "exchanged the caller's token for an upstream token");
                Ok(value)
            }
            Err(e) => {
                *cached = None;
                *self.failed.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((digest, Instant::now() + FAILURE_BACKOFF));
                Err(e)
            }
        }
    }
}
