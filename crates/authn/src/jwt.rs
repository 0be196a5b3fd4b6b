//! JWT access-token validation (RFC 9068 profile, as MCP 2025-11-25 requires).
//!
//! In order: the header parses and names an asymmetric algorithm from the allowlist
//! (never `none`, never HMAC: no HS/RS key confusion); `typ` is `at+jwt` where the
//! issuer is configured to use it; the (unverified) `iss` names a configured issuer,
//! whose key set must hold the header's `kid` (an unknown `kid` is reported apart, so
//! the caller can refresh that issuer's JWKS, rate-limited, and retry); the signature
//! verifies with that key, which must be a public key of the algorithm's family and,
//! if the JWK names an algorithm, that algorithm; then the verified claims: `iss`
//! equal to the issuer (AUTH-08), `aud` naming the gateway's canonical URI (AUTH-07,
//! AUTH-17), `exp` in the future and `nbf` in the past within a bounded skew, `sub`
//! present.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::bearer::Token;
use crate::canonical::CanonicalUri;

/// Signature algorithms accepted; all asymmetric.
pub const ALLOWED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A key set with no keys: every token of its issuer fails until keys are fetched.
pub fn empty_key_set() -> JwkSet {
    JwkSet { keys: Vec::new() }
}

/// The largest clock skew an operator may allow.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// One trusted issuer and its current keys.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The exact `iss` value.
    pub issuer: String,
    /// Its JSON Web Key Set (from discovery, refreshed by the caller).
    pub keys: JwkSet,
    /// Require `typ: at+jwt` (RFC 9068) on this issuer's tokens.
    pub require_at_jwt: bool,
}

/// Where roles and groups are read from. A path starting with `/` is a JSON Pointer
/// into the claims (`/realm_access/roles`); anything else is one top-level claim
/// name, taken whole (so namespaced claims such as `https://example.com/roles` work).
#[derive(Debug, Clone, Default)]
pub struct ClaimPaths {
    /// Claims holding role names.
    pub roles: Vec<String>,
    /// Claims holding group names.
    pub groups: Vec<String>,
}

impl ClaimPaths {
    /// Microsoft Entra ID: `roles` (app roles) and `groups`.
    pub fn entra_id() -> Self {
        Self {
            roles: vec!["roles".into()],
            groups: vec!["groups".into()],
        }
    }
    /// Keycloak: realm roles and the `groups` mapper.
    pub fn keycloak() -> Self {
        Self {
            roles: vec!["/realm_access/roles".into()],
            groups: vec!["groups".into()],
        }
    }
    /// Okta: the `groups` claim.
    pub fn okta() -> Self {
        Self {
            roles: vec![],
            groups: vec!["groups".into()],
        }
    }
    /// Auth0: namespaced custom claims under `namespace` (e.g. `https://palisade.example/`).
    pub fn auth0(namespace: &str) -> Self {
        let ns = if namespace.ends_with('/') {
            namespace.to_owned()
        } else {
            format!("{namespace}/")
        };
        Self {
            roles: vec![format!("{ns}roles")],
            groups: vec![format!("{ns}groups")],
        }
    }

    /// The strings at `paths` in `claims` (arrays, or space-separated strings),
    /// sorted and de-duplicated.
    pub fn read(paths: &[String], claims: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for p in paths {
            let v = if p.starts_with('/') {
                claims.pointer(p)
            } else {
                claims.get(p)
            };
            match v {
                Some(Value::Array(a)) => {
                    out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `client_id`, or `azp` where the issuer uses that.
    pub client_id: Option<String>,
    /// From `scope` (space-separated) or `scp` (array).
    pub scopes: Vec<String>,
    /// From the configured role claims.
    pub roles: Vec<String>,
    /// From the configured group claims.
    pub groups: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
}

/// Why a token was refused. The caller answers 401 `invalid_token` for all of them
/// and logs the reason; none carries token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("not a JWT")]
    NotAJwt,
    /// `alg` outside the allowlist (`none`, HMAC, …).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// `typ` is not `at+jwt` for an issuer that requires it.
    #[error("token type is not at+jwt")]
    WrongType,
    /// `iss` names no configured issuer (AUTH-08).
    #[error("issuer not trusted")]
    UnknownIssuer,
    /// No key with this `kid` in the issuer's set: refresh the JWKS and retry once.
    #[error("signing key not found")]
    UnknownKey,
    /// The key does not fit the algorithm, or the signature does not verify.
    #[error("signature invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` does not name this gateway (AUTH-07).
    #[error("token not issued for this resource")]
    WrongAudience,
    /// A required claim is missing or malformed.
    #[error("required claim missing: {0}")]
    MissingClaim(&'static str),
}

/// Validates access tokens for one resource.
#[derive(Clone)]
pub struct JwtValidator {
    audience: CanonicalUri,
    issuers: Vec<Issuer>,
    /// Per issuer: decoding keys built once from its JWKS, by `kid` ("" for a
    /// kid-less key); building them per token is most of the cost of a validation.
    decoders: Vec<HashMap<String, DecodingKey>>,
    leeway_secs: u64,
    claim_paths: ClaimPaths,
}

fn decoders_of(keys: &JwkSet) -> HashMap<String, DecodingKey> {
    let mut out = HashMap::new();
    for jwk in &keys.keys {
        // The first key with a kid wins, as `JwkSet::find` does.
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        if let std::collections::hash_map::Entry::Vacant(slot) = out.entry(kid)
            && let Ok(key) = DecodingKey::from_jwk(jwk)
        {
            slot.insert(key);
        }
    }
    out
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("audience", &self.audience)
            .field(
                "issuers",
                &self.issuers.iter().map(|i| &i.issuer).collect::<Vec<_>>(),
            )
            .field("leeway_secs", &self.leeway_secs)
            .finish_non_exhaustive()
    }
}

/// The `alg` a JWT's header declares, if the header is JSON with a string `alg`.
fn declared_alg(raw: &str) -> Option<String> {
    use base64::Engine as _;
    let header = raw.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_owned)
}

fn family_fits(alg: Algorithm, jwk: &Jwk) -> bool {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), a) => matches!(
            a,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => {
            matches!(p.curve, jsonwebtoken::jwk::EllipticCurve::P256)
        }
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => {
            matches!(p.curve, jsonwebtoken::jwk::EllipticCurve::P384)
        }
        (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA) => true,
        // Symmetric ("oct") keys are never used, whatever the header says.
        _ => false,
    }
}

impl JwtValidator {
    /// A validator for tokens whose audience is `audience`, from `issuers`, with at
    /// most [`MAX_LEEWAY_SECS`] of clock skew.
    pub fn new(
        audience: CanonicalUri,
        issuers: Vec<Issuer>,
        leeway_secs: u64,
        claim_paths: ClaimPaths,
    ) -> Self {
        Self {
            audience,
            decoders: issuers.iter().map(|i| decoders_of(&i.keys)).collect(),
            issuers,
            leeway_secs: leeway_secs.min(MAX_LEEWAY_SECS),
            claim_paths,
        }
    }

    /// Replaces one issuer's key set (after a JWKS refresh; key rotation needs no
    /// restart).
    pub fn set_keys(&mut self, issuer: &str, keys: JwkSet) {
        if let Some(n) = self.issuers.iter().position(|i| i.issuer == issuer) {
            self.decoders[n] = decoders_of(&keys);
            self.issuers[n].keys = keys;
        }
    }

    /// The issuer a token claims, unverified: to know whose JWKS to refresh after
    /// [`TokenError::UnknownKey`]. Never trust it for anything else.
    pub fn claimed_issuer(token: &Token) -> Option<String> {
        let v: Value = jsonwebtoken::dangerous::insecure_decode_claims(token.expose()).ok()?;
        v.get("iss")?.as_str().map(str::to_owned)
    }

    /// Validates `token` at time `now` (Unix seconds).
    pub fn validate(&self, token: &Token, now: u64) -> Result<Claims, TokenError> {
        let raw = token.expose();
        let header = jsonwebtoken::decode_header(raw).map_err(|_| {
            // `none` and other algorithms the library does not know fail to decode:
            // name them for what they are in the log.
            if declared_alg(raw).is_some() {
                TokenError::AlgorithmNotAllowed
            } else {
                TokenError::NotAJwt
            }
        })?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let claimed = Self::claimed_issuer(token).ok_or(TokenError::MissingClaim("iss"))?;
        let n = self
            .issuers
            .iter()
            .position(|i| i.issuer == claimed)
            .ok_or(TokenError::UnknownIssuer)?;
        let issuer = &self.issuers[n];
        if issuer.require_at_jwt {
            let ok = header.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            });
            if !ok {
                return Err(TokenError::WrongType);
            }
        }
        let jwk = match &header.kid {
            Some(kid) => issuer.keys.find(kid).ok_or(TokenError::UnknownKey)?,
            // Without a kid, only an unambiguous set will do.
            None => match issuer.keys.keys.as_slice() {
                [only] => only,
                _ => return Err(TokenError::UnknownKey),
            },
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
            || !family_fits(header.alg, jwk)
        {
            return Err(TokenError::BadSignature);
        }
        // A JWK that names its algorithm is used for that algorithm only. The two
        // enums share variant names (RS256, ES256, …), so their names are compared.
        if let Some(ka) = jwk.common.key_algorithm
            && format!("{ka:?}") != format!("{:?}", header.alg)
        {
            return Err(TokenError::BadSignature);
        }
        let key = self.decoders[n]
            .get(jwk.common.key_id.as_deref().unwrap_or_default())
            .ok_or(TokenError::BadSignature)?;

        // Signature only here; every claim is checked below with our own rules.
        let mut v = Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<Value>(raw, key, &v).map_err(|_| TokenError::BadSignature)?;
        let c = data.claims;

        if c.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
            return Err(TokenError::UnknownIssuer);
        }
        let exp = c
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenError::MissingClaim("exp"))?;
        if exp.saturating_add(self.leeway_secs) <= now {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = c.get("nbf") {
            let nbf = nbf.as_u64().ok_or(TokenError::MissingClaim("nbf"))?;
            if nbf > now.saturating_add(self.leeway_secs) {
                return Err(TokenError::NotYetValid);
            }
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => self.audience.matches(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audience.matches(a)),
            _ => false,
        };
        if !aud_ok {
            return Err(TokenError::WrongAudience);
        }
        let subject = c
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("sub"))?
            .to_owned();
        let client_id = c
            .get("client_id")
            .or_else(|| c.get("azp"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut scopes: Vec<String> = match (c.get("scope"), c.get("scp")) {
            (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_owned).collect(),
            (_, Some(Value::Array(a))) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        scopes.sort();
        scopes.dedup();
        Ok(Claims {
            issuer: issuer.issuer.clone(),
            subject,
            client_id,
            scopes,
            roles: ClaimPaths::read(&self.claim_paths.roles, &c),
            groups: ClaimPaths::read(&self.claim_paths.groups, &c),
            expires_at: exp,
        })
    }
}

#[cfg(test)]
mod tests;
