//! The AUTH-06 attack matrix, with keys generated at run time (no secrets in the
//! repository) and tokens signed by hand, so that malformed ones can be made too.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_800_000_000;
const ME: &str = "https://gw.example.com/mcp";

struct Idp {
    issuer: String,
    kid: String,
    key: KeyPair,
}

impl Idp {
    fn new(issuer: &str, kid: &str) -> Self {
        Self {
            issuer: issuer.into(),
            kid: kid.into(),
            key: KeyPair::generate(KeySize::Rsa2048).unwrap(),
        }
    }

    fn n_e(&self) -> (Vec<u8>, Vec<u8>) {
        let pk = self.key.public_key();
        (
            pk.modulus().big_endian_without_leading_zero().to_vec(),
            pk.exponent().big_endian_without_leading_zero().to_vec(),
        )
    }

    fn jwks(&self) -> JwkSet {
        let (n, e) = self.n_e();
        serde_json::from_value(json!({"keys": [{
            "kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
            "n": B64.encode(n), "e": B64.encode(e)
        }]}))
        .unwrap()
    }

    fn issuer(&self) -> Issuer {
        Issuer {
            issuer: self.issuer.clone(),
            keys: self.jwks(),
            require_at_jwt: true,
        }
    }

    fn claims(&self) -> Value {
        json!({
            "iss": self.issuer, "sub": "alice", "aud": ME, "client_id": "cli",
            "exp": NOW + 300, "iat": NOW, "nbf": NOW - 10,
            "scope": "mcp:tools mcp:read",
            "realm_access": {"roles": ["reader"]}, "groups": ["team-a"]
        })
    }

    fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{msg}.{}", B64.encode(sig))
    }

    fn token(&self, claims: &Value) -> Token {
        Token::new(self.sign_raw(
            &json!({"alg": "RS256", "typ": "at+jwt", "kid": self.kid}),
            claims,
        ))
    }
}

fn validator(idps: &[&Idp]) -> JwtValidator {
    JwtValidator::new(
        CanonicalUri::parse(ME).unwrap(),
        idps.iter().map(|i| i.issuer()).collect(),
        30,
        ClaimPaths::keycloak(),
    )
}

#[test]
fn a_good_token_yields_its_principal() {
    let idp = Idp::new("https://idp.example.com", "k1");
    let c = validator(&[&idp])
        .validate(&idp.token(&idp.claims()), NOW)
        .unwrap();
    assert_eq!(c.issuer, "https://idp.example.com");
    assert_eq!(c.subject, "alice");
    assert_eq!(c.client_id.as_deref(), Some("cli"));
    assert_eq!(c.scopes, ["mcp:read", "mcp:tools"]);
    assert_eq!(c.roles, ["reader"]);
    assert_eq!(c.groups, ["team-a"]);
}

#[test]
fn auth_06_bad_signature() {
    let idp = Idp::new("https://idp.example.com", "k1");
    let mut t = idp.token(&idp.claims()).expose().to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        validator(&[&idp]).validate(&Token::new(t), NOW),
        Err(TokenError::BadSignature)
    );
    // Signed by another key under the same kid.
    let impostor = Idp::new("https://idp.example.com", "k1");
    assert_eq!(
        validator(&[&idp]).validate(&impostor.token(&idp.claims()), NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn auth_06_alg_none_is_refused() {
    let idp = Idp::new("https://idp.example.com", "k1");
    let h = B64.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string());
    let p = B64.encode(idp.claims().to_string());
    let r = validator(&[&idp]).validate(&Token::new(format!("{h}.{p}.")), NOW);
    assert!(
        matches!(
            r,
            Err(TokenError::NotAJwt | TokenError::AlgorithmNotAllowed)
        ),
        "{r:?}"
    );
}

#[test]
fn auth_06_hs256_signed_with_the_rsa_public_key_is_refused() {
    let idp = Idp::new("https://idp.example.com", "k1");
    let (n, _) = idp.n_e();
    let msg = format!(
        "{}.{}",
        B64.encode(json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}).to_string()),
        B64.encode(idp.claims().to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &n);
    let tag = aws_lc_rs::hmac::sign(&key, msg.as_bytes());
    let forged = Token::new(format!("{msg}.{}", B64.encode(tag.as_ref())));
    assert_eq!(
        validator(&[&idp]).validate(&forged, NOW),
        Err(TokenError::AlgorithmNotAllowed)
    );
}

#[test]
fn auth_06_unknown_kid_asks_for_a_refresh_and_rotation_needs_no_restart() {
    let old = Idp::new("https://idp.example.com", "k1");
    let rotated = Idp::new("https://idp.example.com", "k2");
    let mut v = validator(&[&old]);
    let t = rotated.token(&rotated.claims());
    assert_eq!(v.validate(&t, NOW), Err(TokenError::UnknownKey));
    assert_eq!(
        JwtValidator::claimed_issuer(&t).as_deref(),
        Some("https://idp.example.com")
    );
    v.set_keys("https://idp.example.com", rotated.jwks());
    assert!(v.validate(&t, NOW).is_ok());
}

#[test]
fn auth_06_expiry_and_not_before_with_bounded_skew() {
    let idp = Idp::new("https://idp.example.com", "k1");
    let v = validator(&[&idp]);
    let mut c = idp.claims();
    c["exp"] = json!(NOW - 31);
    assert_eq!(v.validate(&idp.token(&c), NOW), Err(TokenError::Expired));
    c["exp"] = json!(NOW - 29);
    assert!(
        v.validate(&idp.token(&c), NOW).is_ok(),
        "within 30 s of skew"
    );
    let mut c = idp.claims();
    c["nbf"] = json!(NOW + 120);
    assert_eq!(
        v.validate(&idp.token(&c), NOW),
        Err(TokenError::NotYetValid)
    );
    let mut c = idp.claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        v.validate(&idp.token(&c), NOW),
        Err(TokenError::MissingClaim("exp"))
    );
    // Skew is capped whatever the operator asks for.
    let lax = JwtValidator::new(
        CanonicalUri::parse(ME).unwrap(),
        vec![idp.issuer()],
        86_400,
        ClaimPaths::default(),
    );
    let mut c = idp.claims();
    c["exp"] = json!(NOW - MAX_LEEWAY_SECS - 1);
    assert_eq!(lax.validate(&idp.token(&c), NOW), Err(TokenError::Expired));
}

#[test]
fn auth_07_08_17_audience_and_issuer() {
    let idp = Idp::new("https://idp.example.com", "k1");
    let other_idp = Idp::new("https://other-idp.example.com", "k1");
    let v = validator(&[&idp]);
    let mut c = idp.claims();
    c["aud"] = json!("https://other.example.com/mcp");
    assert_eq!(
        v.validate(&idp.token(&c), NOW),
        Err(TokenError::WrongAudience)
    );
    c["aud"] = json!("https://gw.example.com/upstream-b");
    assert_eq!(
        v.validate(&idp.token(&c), NOW),
        Err(TokenError::WrongAudience),
        "another upstream's path"
    );
    c["aud"] = json!(["https://x.example.com", "HTTPS://GW.EXAMPLE.COM/mcp/"]);
    assert!(
        v.validate(&idp.token(&c), NOW).is_ok(),
        "AUTH-17: case and trailing slash"
    );
    // A second provider with the right audience is still not trusted (AUTH-08).
    let mut c = other_idp.claims();
    c["aud"] = json!(ME);
    assert_eq!(
        v.validate(&other_idp.token(&c), NOW),
        Err(TokenError::UnknownIssuer)
    );
    // Lying about iss in the payload does not help: the key set is the claimed issuer's.
    let mut c = other_idp.claims();
    c["iss"] = json!("https://idp.example.com");
    assert_eq!(
        v.validate(&other_idp.token(&c), NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn auth_06_typ_and_garbage() {
    let idp = Idp::new("https://idp.example.com", "k1");
    let v = validator(&[&idp]);
    let jwt_typed = Token::new(idp.sign_raw(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
        &idp.claims(),
    ));
    assert_eq!(
        v.validate(&jwt_typed, NOW),
        Err(TokenError::WrongType),
        "an ID token is not an access token"
    );
    for g in ["", "garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30"] {
        assert!(v.validate(&Token::new(g), NOW).is_err(), "{g}");
    }
}

#[test]
fn symmetric_keys_in_a_jwks_are_never_used() {
    let idp = Idp::new("https://idp.example.com", "k1");
    let secret = b"shared-secret-shared-secret-32by";
    let jwks: JwkSet = serde_json::from_value(
        json!({"keys": [{"kty": "oct", "kid": "k1", "k": B64.encode(secret)}]}),
    )
    .unwrap();
    let v = JwtValidator::new(
        CanonicalUri::parse(ME).unwrap(),
        vec![Issuer {
            issuer: idp.issuer.clone(),
            keys: jwks,
            require_at_jwt: false,
        }],
        0,
        ClaimPaths::default(),
    );
    let msg = format!(
        "{}.{}",
        B64.encode(json!({"alg": "HS256", "kid": "k1"}).to_string()),
        B64.encode(idp.claims().to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, msg.as_bytes());
    assert!(
        v.validate(
            &Token::new(format!("{msg}.{}", B64.encode(tag.as_ref()))),
            NOW
        )
        .is_err()
    );
}

#[test]
fn claim_path_presets() {
    let c = json!({"roles": ["r"], "groups": ["g"], "realm_access": {"roles": ["kr"]},
                   "https://palisade.example/roles": ["ar"]});
    assert_eq!(ClaimPaths::read(&ClaimPaths::entra_id().roles, &c), ["r"]);
    assert_eq!(ClaimPaths::read(&ClaimPaths::keycloak().roles, &c), ["kr"]);
    assert_eq!(ClaimPaths::read(&ClaimPaths::okta().groups, &c), ["g"]);
    assert_eq!(
        ClaimPaths::read(&ClaimPaths::auth0("https://palisade.example").roles, &c),
        ["ar"]
    );
}
