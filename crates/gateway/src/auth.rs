//! Authentication at the edge: the local user when auth is off (loopback only), or
//! the OAuth 2.1 resource server (bearer JWTs from configured issuers, audience =
//! this gateway's canonical MCP URI).
//!
//! Key sets come from each issuer's JWKS, found by OIDC / RFC 8414 discovery, fetched
//! with SSRF controls (https only, or http to loopback; resolved addresses checked and
//! pinned; no redirects; bounded size and time), and refreshed — at most once per
//! [`REFRESH_EVERY`] per issuer — when a token names a `kid` the set does not hold, so
//! key rotation needs no restart.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use bytes::Bytes;
use palisade_authn::bearer::{self, Credentials};
use palisade_authn::canonical::CanonicalUri;
use palisade_authn::challenge;
use palisade_authn::jwt::{ClaimPaths, Issuer, JwtValidator, TokenError};
use palisade_authn::prm::ProtectedResourceMetadata;
use palisade_config::{Auth, Introspection};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::principal::{Caller, Principal, SubjectToken};
use crate::refusal::Refusal;

/// Smallest interval between two JWKS fetches for one issuer.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_METADATA_BYTES: usize = 1 << 20;
/// Validated tokens remembered (by SHA-256, never the token itself) until they expire.
const TOKEN_CACHE_ENTRIES: usize = 10_000;
/// An introspection verdict is reused at most this long, so revocation takes effect
/// within it (and never beyond the token's own `exp`).
const INTROSPECTION_CACHE: u64 = 60;
/// A refused opaque token is refused again without asking, this long.
const REFUSAL_CACHE: u64 = 10;
/// Concurrent introspection calls.
const MAX_INTROSPECTIONS: usize = 8;

/// Who may call.
pub(crate) enum Authenticator {
    /// Auth off (loopback only): every request is the local OS user.
    LocalUser(Principal),
    /// The OAuth 2.1 resource server.
    OAuth(Box<OAuth>),
}

impl Authenticator {
    /// The principal of a request, or the refusal with its challenge. Runs before
    /// any upstream I/O (AUTH-14), on every request (AUTH-09).
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Caller, Refusal> {
        match self {
            Self::LocalUser(p) => Ok(Caller::local(p.clone())),
            Self::OAuth(o) => {
                let mut caller = o.authenticate(headers, query).await?;
                if o.keep_tokens
                    && let Credentials::Bearer(t) = bearer::extract(
                        headers
                            .get_all("authorization")
                            .iter()
                            .map(|v| v.as_bytes()),
                        query,
                    )
                {
                    caller.token = Some(SubjectToken::new(t.expose()));
                }
                Ok(caller)
            }
        }
    }

    /// The 403 for a caller that lacks `needed` scopes (AUTH-12): the challenge keeps
    /// the granted scopes and adds the needed ones (AUTH-13).
    pub(crate) fn insufficient_scope(&self, granted: &[String], needed: &[String]) -> Refusal {
        let prm = match self {
            Self::OAuth(o) => o.prm_url.as_str(),
            Self::LocalUser(_) => "",
        };
        Refusal::INSUFFICIENT_SCOPE
            .with_challenge(challenge::insufficient_scope(prm, granted, needed))
    }

    /// The metadata document, when the gateway is a resource server.
    pub(crate) fn metadata(&self) -> Option<&Bytes> {
        match self {
            Self::LocalUser(_) => None,
            Self::OAuth(o) => Some(&o.prm_body),
        }
    }
}

/// The OAuth 2.1 resource server.
pub(crate) struct OAuth {
    validator: RwLock<JwtValidator>,
    prm_url: String,
    prm_body: Bytes,
    scopes: Vec<String>,
    jwks_uris: HashMap<String, Option<String>>,
    last_fetch: Mutex<HashMap<String, Instant>>,
    allow_loopback: bool,
    /// SHA-256 of a validated token → who it names, until its `exp`. A cache hit
    /// skips the signature check; it never outlives the token.
    verified: Mutex<HashMap<[u8; 32], (Caller, u64)>>,
    /// The one issuer whose opaque tokens are introspected (RFC 7662), if any.
    introspection: Option<(String, Introspection)>,
    /// Opaque tokens refused recently (by SHA-256), so that garbage cannot make the
    /// gateway call the introspection endpoint at will.
    refused: Mutex<HashMap<[u8; 32], u64>>,
    /// At most this many introspection calls at once.
    introspecting: tokio::sync::Semaphore,
    canonical: CanonicalUri,
    leeway: u64,
    /// Where roles and groups are read from introspection answers.
    claim_paths: ClaimPaths,
    /// Attach the caller's token to each `Caller`, for upstreams whose credential is
    /// obtained by token exchange. Off otherwise: no token is held longer than the
    /// request that carried it.
    pub(crate) keep_tokens: bool,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn claim_paths(cfg: &Auth) -> ClaimPaths {
    let mut p = match cfg.claims_preset.as_str() {
        "entra-id" => ClaimPaths::entra_id(),
        "keycloak" => ClaimPaths::keycloak(),
        "okta" => ClaimPaths::okta(),
        other => match other.strip_prefix("auth0:") {
            Some(ns) => ClaimPaths::auth0(ns),
            None => ClaimPaths::default(),
        },
    };
    p.roles.extend(cfg.roles_claims.iter().cloned());
    p.groups.extend(cfg.groups_claims.iter().cloned());
    p
}

impl OAuth {
    /// Builds the resource server and fetches every issuer's keys. An issuer that
    /// cannot be reached now gets an empty key set (its tokens fail, closed) and is
    /// retried when a token of it arrives.
    pub(crate) async fn build(cfg: &Auth, endpoint: &str) -> Result<Self, String> {
        let canonical = CanonicalUri::parse(&format!("{}{endpoint}", cfg.public_url))
            .map_err(|e| e.to_string())?;
        let [path_prm, _root] = ProtectedResourceMetadata::well_known_paths(endpoint);
        let prm_url = format!("{}{path_prm}", cfg.public_url);
        let prm = ProtectedResourceMetadata::new(
            &canonical,
            cfg.issuers.iter().map(|i| i.issuer.clone()).collect(),
            cfg.scopes.clone(),
        )
        .map_err(|e| e.to_string())?;
        let prm_body = Bytes::from(serde_json::to_vec(&prm).map_err(|e| e.to_string())?);
        // Loopback-dev mode: an issuer on a loopback http URL may be fetched over
        // loopback; nothing else ever may.
        let allow_loopback = cfg.issuers.iter().any(|i| {
            i.issuer.starts_with("http://")
                || i.introspection
                    .as_ref()
                    .is_some_and(|x| x.endpoint.starts_with("http://"))
        });
        let issuers: Vec<Issuer> = cfg
            .issuers
            .iter()
            .map(|i| Issuer {
                issuer: i.issuer.clone(),
                keys: palisade_authn::jwt::empty_key_set(),
                require_at_jwt: i.require_at_jwt,
            })
            .collect();
        let this = Self {
            introspection: cfg
                .issuers
                .iter()
                .find_map(|i| i.introspection.clone().map(|x| (i.issuer.clone(), x))),
            canonical: canonical.clone(),
            leeway: cfg.leeway.as_secs(),
            claim_paths: claim_paths(cfg),
            keep_tokens: false,
            validator: RwLock::new(JwtValidator::new(
                canonical,
                issuers,
                cfg.leeway.as_secs(),
                claim_paths(cfg),
            )),
            prm_url,
            prm_body,
            scopes: cfg.scopes.clone(),
            jwks_uris: cfg
                .issuers
                .iter()
                .map(|i| (i.issuer.clone(), i.jwks_uri.clone()))
                .collect(),
            last_fetch: Mutex::new(HashMap::new()),
            allow_loopback,
            verified: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            introspecting: tokio::sync::Semaphore::new(MAX_INTROSPECTIONS),
        };
        for i in &cfg.issuers {
            if let Err(e) = this.refresh(&i.issuer, false).await {
                tracing::warn!(issuer = %i.issuer, error = %e, "could not fetch the issuer's keys; its tokens are refused until it answers");
            }
        }
        Ok(this)
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Caller, Refusal> {
        let token = match bearer::extract(
            headers
                .get_all("authorization")
                .iter()
                .map(|v| v.as_bytes()),
            query,
        ) {
            Credentials::Bearer(t) => t,
            Credentials::None => {
                return Err(Refusal::UNAUTHORIZED
                    .with_challenge(challenge::missing(&self.prm_url, &self.scopes)));
            }
            Credentials::Invalid(why) => {
                tracing::info!(
                    reason = why.description(),
                    "refused malformed credentials (AUTH-11)"
                );
                return Err(Refusal::INVALID_AUTH_REQUEST
                    .with_challenge(challenge::invalid_request(&self.prm_url, why)));
            }
        };
        let digest: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        let now = now_unix();
        if let Some((caller, exp)) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
            && *exp > now
        {
            return Ok(caller.clone());
        }
        if self.introspection.is_some() && token.expose().split('.').count() != 3 {
            // Not a JWT: ask its issuer (RFC 7662), unless it was refused just now or
            // too many introspections are running.
            let refused_recently = self
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&digest)
                .is_some_and(|until| *until > now);
            let permit = if refused_recently {
                None
            } else {
                tokio::time::timeout(Duration::from_secs(2), self.introspecting.acquire())
                    .await
                    .ok()
                    .and_then(Result::ok)
            };
            let verdict = match permit {
                Some(_permit) => self.introspect(&token, now).await,
                None => Err("refused recently, or introspection busy".to_owned()),
            };
            if verdict.is_err() && !refused_recently {
                let mut r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                insert_bounded(&mut r, digest, now + REFUSAL_CACHE, now, |until| *until);
            }
            return match verdict {
                Ok((caller, exp)) => {
                    self.remember(digest, &caller, exp.min(now + INTROSPECTION_CACHE), now);
                    Ok(caller)
                }
                Err(e) => {
                    tracing::info!(reason = %e, "refused an access token (introspection)");
                    Err(Refusal::INVALID_TOKEN
                        .with_challenge(challenge::invalid_token(&self.prm_url)))
                }
            };
        }
        let first = self.validate(&token);
        let result = match first {
            Err(TokenError::UnknownKey) => {
                // Maybe the issuer rotated its keys: refresh (rate-limited) and retry once.
                if let Some(iss) = JwtValidator::claimed_issuer(&token)
                    && self.jwks_uris.contains_key(&iss)
                    && let Err(e) = self.refresh(&iss, true).await
                {
                    tracing::debug!(issuer = %iss, error = %e, "no key refresh");
                }
                self.validate(&token)
            }
            other => other,
        };
        match result {
            Ok(c) => {
                let caller = Caller {
                    principal: Principal::new(c.issuer, c.subject),
                    scopes: Some(c.scopes),
                    roles: c.roles,
                    groups: c.groups,
                    client: c.client_id,
                    address: None,
                    token: None,
                };
                self.remember(digest, &caller, c.expires_at, now);
                Ok(caller)
            }
            Err(e) => {
                tracing::info!(reason = %e, "refused an access token (AUTH-06)");
                Err(Refusal::INVALID_TOKEN.with_challenge(challenge::invalid_token(&self.prm_url)))
            }
        }
    }

    /// Remembers a verdict until `until` (Unix seconds); the map stays bounded.
    fn remember(&self, digest: [u8; 32], caller: &Caller, until: u64, now: u64) {
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        insert_bounded(
            &mut cache,
            digest,
            (caller.clone(), until),
            now,
            |(_, exp)| *exp,
        );
    }

    /// RFC 7662: asks the issuer whether an opaque token is active, then applies the
    /// same rules as to a JWT: the issuer, the audience (this gateway), `exp`, `nbf`.
    async fn introspect(&self, token: &bearer::Token, now: u64) -> Result<(Caller, u64), String> {
        use base64::Engine as _;
        let Some((issuer, cfg)) = &self.introspection else {
            return Err("no introspection configured".into());
        };
        let body = format!(
            "token={}&token_type_hint=access_token",
            form_encode(token.expose())
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&cfg.client_id),
            form_encode(&cfg.client_secret)
        ));
        let v = metadata_request(
            &cfg.endpoint,
            self.allow_loopback,
            Some((body, format!("Basic {basic}"))),
        )
        .await?;
        if v.get("active") != Some(&Value::Bool(true)) {
            return Err("token is not active".into());
        }
        if let Some(iss) = v.get("iss")
            && iss.as_str() != Some(issuer.as_str())
        {
            return Err("introspection names another issuer".into());
        }
        let aud_ok = match v.get("aud") {
            Some(Value::String(a)) => self.canonical.matches(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.canonical.matches(a)),
            _ => false,
        };
        if !aud_ok {
            return Err("token not issued for this resource".into());
        }
        let exp = v
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("introspection gives no exp")?;
        if exp.saturating_add(self.leeway) <= now {
            return Err("token expired".into());
        }
        if v.get("nbf")
            .and_then(Value::as_u64)
            .is_some_and(|nbf| nbf > now + self.leeway)
        {
            return Err("token not yet valid".into());
        }
        let sub = v
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("introspection gives no sub")?;
        let mut scopes: Vec<String> = v
            .get("scope")
            .and_then(Value::as_str)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        scopes.sort();
        scopes.dedup();
        Ok((
            Caller {
                principal: Principal::new(issuer.clone(), sub),
                scopes: Some(scopes),
                roles: ClaimPaths::read(&self.claim_paths.roles, &v),
                groups: ClaimPaths::read(&self.claim_paths.groups, &v),
                client: v
                    .get("client_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                address: None,
                token: None,
            },
            exp,
        ))
    }

    fn validate(&self, token: &bearer::Token) -> Result<palisade_authn::jwt::Claims, TokenError> {
        match self.validator.read() {
            Ok(v) => v.validate(token, now_unix()),
            Err(p) => p.into_inner().validate(token, now_unix()),
        }
    }

    /// Fetches `issuer`'s JWKS (discovering its URL if needed). Refreshes forced by
    /// an unknown `kid` happen at most once per [`REFRESH_EVERY`] per issuer, so
    /// tokens with made-up key IDs cannot make the gateway hammer the issuer.
    async fn refresh(&self, issuer: &str, forced: bool) -> Result<(), String> {
        if forced {
            let mut last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
            if last
                .get(issuer)
                .is_some_and(|t| t.elapsed() < REFRESH_EVERY)
            {
                return Err("refreshed recently".into());
            }
            last.insert(issuer.to_owned(), Instant::now());
        }
        let jwks_uri = match self.jwks_uris.get(issuer).cloned().flatten() {
            Some(u) => u,
            None => self.discover(issuer).await?,
        };
        let doc = fetch_json(&jwks_uri, self.allow_loopback).await?;
        let keys = serde_json::from_value(doc).map_err(|e| format!("JWKS does not parse: {e}"))?;
        match self.validator.write() {
            Ok(mut v) => v.set_keys(issuer, keys),
            Err(p) => p.into_inner().set_keys(issuer, keys),
        }
        tracing::info!(%issuer, "fetched the issuer's signing keys");
        Ok(())
    }

    /// OIDC discovery, then RFC 8414; the document must name the same issuer.
    async fn discover(&self, issuer: &str) -> Result<String, String> {
        let trimmed = issuer.trim_end_matches('/');
        let (origin, path) = match trimmed
            .split_once("://")
            .and_then(|(s, r)| r.find('/').map(|i| (s, r, i)))
        {
            Some((scheme, rest, i)) => (format!("{scheme}://{}", &rest[..i]), rest[i..].to_owned()),
            None => (trimmed.to_owned(), String::new()),
        };
        let candidates = [
            format!("{trimmed}/.well-known/openid-configuration"),
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
        ];
        let mut last_err = String::from("no discovery document");
        for url in candidates {
            match fetch_json(&url, self.allow_loopback).await {
                Ok(doc) => {
                    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
                        last_err = "discovery document names another issuer".into();
                        continue;
                    }
                    return doc
                        .get("jwks_uri")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| "discovery document has no jwks_uri".into());
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }
}

/// Inserts into a token-digest map that never holds more than
/// [`TOKEN_CACHE_ENTRIES`]: when full, expired entries go first, then everything.
fn insert_bounded<V>(
    map: &mut HashMap<[u8; 32], V>,
    key: [u8; 32],
    value: V,
    now: u64,
    expiry: impl Fn(&V) -> u64,
) {
    if map.len() >= TOKEN_CACHE_ENTRIES {
        map.retain(|_, v| expiry(v) > now);
        if map.len() >= TOKEN_CACHE_ENTRIES {
            map.clear();
        }
    }
    map.insert(key, value);
}

/// Whether an address may be fetched: public only, unless loopback-dev mode allows
/// loopback (and then only loopback). SSRF-02.
pub(crate) fn address_allowed(ip: IpAddr, loopback_dev: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return loopback_dev;
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240
                || (o[0] == 192 && o[1] == 0 && o[2] == 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // Also every form that embeds or tunnels an IPv4 address (NAT64, 6to4,
            // Teredo, IPv4-compatible), and deprecated site-local addresses.
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0)
                || s[..6].iter().all(|x| *x == 0))
        }
    }
}

/// GETs a small JSON document with SSRF controls (SSRF-01..04): https, or http only
/// to a loopback host in loopback-dev mode; every resolved address checked and the
/// connection pinned to a checked one; no redirects; bounded size and time. Errors
/// never carry the fetched body.
pub(crate) async fn fetch_json(url: &str, loopback_dev: bool) -> Result<Value, String> {
    metadata_request(url, loopback_dev, None).await
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A GET (or, with `form`, a form POST with an `Authorization` value) of a small JSON
/// document under the SSRF controls of [`fetch_json`].
pub(crate) async fn metadata_request(
    url: &str,
    loopback_dev: bool,
    form: Option<(String, String)>,
) -> Result<Value, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "bad metadata URL".to_owned())?;
    let host = parsed
        .host_str()
        .ok_or("metadata URL has no host")?
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or("metadata URL has no port")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let is_loopback_name = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|i| i.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback_dev && is_loopback_name => {}
        _ => return Err("metadata URLs must be https (SSRF-01)".into()),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("metadata URL carries credentials".into());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|_| "metadata host does not resolve".to_owned())?
        .collect();
    let Some(addr) = addrs
        .iter()
        .copied()
        .find(|a| address_allowed(a.ip(), loopback_dev && is_loopback_name))
    else {
        return Err("metadata host resolves to a refused address (SSRF-02)".into());
    };
    if addrs
        .iter()
        .any(|a| !address_allowed(a.ip(), loopback_dev && is_loopback_name))
    {
        return Err("metadata host resolves to a refused address (SSRF-02)".into());
    }
    // Pin the checked address for this one request (SSRF-03: no re-resolution).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .resolve(bare, addr)
        .build()
        .map_err(|_| "cannot build a metadata client".to_owned())?;
    let req = match form {
        None => client.get(parsed),
        Some((body, authorization)) => client
            .post(parsed)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", authorization)
            .body(body),
    };
    let mut resp = req
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|_| "metadata fetch failed".to_owned())?;
    if !resp.status().is_success() {
        return Err(format!(
            "metadata fetch answered HTTP {}",
            resp.status().as_u16()
        ));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| "metadata fetch failed".to_owned())?
    {
        if buf.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err("metadata document too large".into());
        }
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf).map_err(|_| "metadata document is not JSON".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssrf_02_private_loopback_and_link_local_addresses_are_refused() {
        for bad in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001:0:4136:e378::1",
            "::10.0.0.1",
            "fec0::1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!address_allowed(bad.parse().unwrap(), false), "{bad}");
        }
        for good in ["8.8.8.8", "2001:4860:4860::8888"] {
            assert!(address_allowed(good.parse().unwrap(), false), "{good}");
        }
        assert!(
            address_allowed("127.0.0.1".parse().unwrap(), true),
            "loopback-dev mode"
        );
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), true));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ssrf_01_plain_http_and_odd_hosts_are_not_fetched() {
        assert!(fetch_json("http://example.com/jwks", false).await.is_err());
        assert!(
            fetch_json("http://127.0.0.1:9/jwks", false).await.is_err(),
            "no loopback outside dev mode"
        );
        assert!(fetch_json("https://2130706433/jwks", false).await.is_err());
        assert!(fetch_json("https://0177.0.0.1/jwks", false).await.is_err());
        assert!(
            fetch_json("https://[::ffff:10.0.0.1]/jwks", false)
                .await
                .is_err()
        );
        assert!(
            fetch_json("https://user:pw@example.com/jwks", false)
                .await
                .is_err()
        );
        assert!(fetch_json("file:///etc/passwd", false).await.is_err());
    }
}
