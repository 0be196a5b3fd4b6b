//! An in-test OpenID provider: discovery, JWKS, introspection and token exchange,
//! with RSA keys generated at run time.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

pub struct Keys {
    pub kid: String,
    pub key: KeyPair,
    pub jwks_hits: usize,
    /// Opaque tokens this provider answers introspection for.
    pub opaque: std::collections::HashMap<String, Value>,
    /// Token-exchange requests: (Authorization header, form body).
    pub exchanges: Vec<(String, String)>,
}

/// A small OpenID provider: discovery, JWKS, and tokens signed here.
#[derive(Clone)]
pub struct Idp {
    pub issuer: String,
    pub keys: Arc<Mutex<Keys>>,
}

pub fn json_resp(v: &Value) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "application/json")], v.to_string())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Idp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let idp = Self {
            issuer: issuer.clone(),
            keys: Arc::new(Mutex::new(Keys {
                kid: "k1".into(),
                key: KeyPair::generate(KeySize::Rsa2048).unwrap(),
                jwks_hits: 0,
                opaque: std::collections::HashMap::new(),
                exchanges: Vec::new(),
            })),
        };
        let for_jwks = idp.clone();
        let for_introspection = idp.clone();
        let for_exchange = idp.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let issuer = issuer.clone();
                    async move {
                        json_resp(&json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))
                    }
                }),
            )
            .route(
                "/introspect",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                    let idp = for_introspection.clone();
                    async move {
                        // RFC 7662: only the gateway, authenticated, may ask.
                        let expected = format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode("gw:gw-secret")
                        );
                        if headers.get("authorization").and_then(|v| v.to_str().ok())
                            != Some(expected.as_str())
                        {
                            return (
                                axum::http::StatusCode::UNAUTHORIZED,
                                json_resp(&json!({"error": "invalid_client"})),
                            );
                        }
                        let token = body
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("token="))
                            .unwrap_or_default()
                            .to_owned();
                        let answer = idp
                            .keys
                            .lock()
                            .unwrap()
                            .opaque
                            .get(&token)
                            .cloned()
                            .unwrap_or(json!({"active": false}));
                        (axum::http::StatusCode::OK, json_resp(&answer))
                    }
                }),
            )
            .route(
                "/token",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                    let idp = for_exchange.clone();
                    async move { idp.exchange(&headers, body) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || {
                    let idp = for_jwks.clone();
                    async move { json_resp(&idp.jwks()) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    /// RFC 8693 token exchange: trades a token this provider issued for
    /// `xchg-<sub>-<n>`; refuses subjects named `mallory`.
    pub fn exchange(
        &self,
        headers: &axum::http::HeaderMap,
        body: String,
    ) -> impl axum::response::IntoResponse + use<> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let subject = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("subject_token="))
            .unwrap_or_default()
            .to_owned();
        let n = {
            let mut k = self.keys.lock().unwrap();
            k.exchanges.push((auth, body));
            k.exchanges.len()
        };
        let sub = subject
            .split('.')
            .nth(1)
            .and_then(|p| B64.decode(p).ok())
            .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
            .and_then(|c| c["sub"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if sub.is_empty() || sub == "mallory" {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                json_resp(&json!({"error": "invalid_grant"})),
            );
        }
        (
            axum::http::StatusCode::OK,
            json_resp(&json!({
                "access_token": format!("xchg-{sub}-{n}"),
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 600
            })),
        )
    }

    pub fn exchanges(&self) -> Vec<(String, String)> {
        self.keys.lock().unwrap().exchanges.clone()
    }

    pub fn jwks(&self) -> Value {
        let mut k = self.keys.lock().unwrap();
        k.jwks_hits += 1;
        let pk = k.key.public_key();
        json!({"keys": [{"kty": "RSA", "kid": k.kid, "use": "sig", "alg": "RS256",
            "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(pk.exponent().big_endian_without_leading_zero())}]})
    }

    pub fn rotate(&self, kid: &str) {
        let mut k = self.keys.lock().unwrap();
        k.kid = kid.into();
        k.key = KeyPair::generate(KeySize::Rsa2048).unwrap();
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let k = self.keys.lock().unwrap();
        let msg = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0; k.key.public_modulus_len()];
        k.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{msg}.{}", B64.encode(sig))
    }

    pub fn claims(&self, aud: &str, sub: &str) -> Value {
        json!({"iss": self.issuer, "sub": sub, "aud": aud, "client_id": "test-client",
               "exp": now() + 300, "iat": now(), "scope": "mcp:tools"})
    }

    pub fn token_with(&self, claims: &Value) -> String {
        let kid = self.keys.lock().unwrap().kid.clone();
        self.sign(
            &json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}),
            claims,
        )
    }
}
