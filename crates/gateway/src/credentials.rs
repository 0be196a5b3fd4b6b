//! Upstream tokens by OAuth client credentials (RFC 6749 §4.4), one source per
//! upstream: the gateway authenticates as itself, asks for a token whose `resource`
//! (RFC 8707) is that upstream's URL and whose scopes are the configured minimal set,
//! and reuses it until shortly before it expires (AUTH-16, BCP-03). Requests go
//! through the same SSRF-controlled fetch as the issuer metadata.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Secret;
use crate::auth::{form_encode, metadata_request};

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
        let secret = std::str::from_utf8(self.client_secret.expose())
            .map_err(|_| "client secret is not text")?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(secret)
        ));
        let mut body = format!(
            "grant_type=client_credentials&resource={}",
            form_encode(&self.resource)
        );
        if !self.scopes.is_empty() {
            body.push_str(&format!("&scope={}", form_encode(&self.scopes.join(" "))));
        }
        let v = match metadata_request(
            &self.endpoint,
            self.loopback_dev,
            Some((body, format!("Basic {basic}"))),
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
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or("the token response has no access_token")?;
        if v.get("token_type")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err("the token is not a bearer token".into());
        }
        let life = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .map_or(Duration::from_secs(300), Duration::from_secs)
            .min(MAX_TOKEN_LIFE);
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token is not a header value")?;
        value.set_sensitive(true);
        *cached = Some((value.clone(), Instant::now() + life));
        tracing::debug!(endpoint = %self.endpoint, resource = %self.resource, "obtained an upstream token");
        Ok(value)
    }
}
