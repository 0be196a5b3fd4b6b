//! Who is calling. Sessions, and later policy and audit, key on the principal's
//! issuer and subject; in no-auth local mode the principal is the local OS user, bound
//! exactly the way OAuth principals will be (`iss` + `sub`).

use std::fmt;
use std::sync::{Arc, Mutex};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    issuer: String,
    subject: String,
}

impl Principal {
    /// A principal from an issuer and a subject.
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }

    /// The local OS user running the gateway: issuer `local`, subject `uid:<n>`. Used
    /// when authentication is off, which the config allows only on a loopback bind.
    pub fn local_user() -> Self {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
        Self::new("local", format!("uid:{uid}"))
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// An authenticated request: who, and what its token grants.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    /// The token's scopes; `None` when authentication is off.
    pub(crate) scopes: Option<Vec<String>>,
    /// Roles and groups from the token's claims (policies see the caller in them).
    pub(crate) roles: Vec<String>,
    pub(crate) groups: Vec<String>,
    /// The OAuth client the token was issued to (`client_id` or `azp`).
    pub(crate) client: Option<String>,
    /// The peer's IP address, when the listener knows it.
    pub(crate) address: Option<std::net::IpAddr>,
    /// The caller's own token, kept only when an upstream's credential is obtained by
    /// exchanging it (RFC 8693). It goes to the authorization server, never upstream.
    pub(crate) token: Option<SubjectToken>,
}

impl Caller {
    /// The local user, when authentication is off.
    pub(crate) fn local(principal: Principal) -> Self {
        Self {
            principal,
            scopes: None,
            roles: Vec::new(),
            groups: Vec::new(),
            client: None,
            address: None,
            token: None,
        }
    }
}

/// A caller's access token held for token exchange. `Debug` never shows it, and the
/// text is zeroed when the last holder lets go.
#[derive(Clone)]
pub(crate) struct SubjectToken(Arc<zeroize::Zeroizing<String>>, [u8; 32]);

impl SubjectToken {
    pub(crate) fn new(token: &str) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(token.as_bytes()).into();
        Self(Arc::new(zeroize::Zeroizing::new(token.to_owned())), digest)
    }

    /// The token text, for the exchange request only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, to tell a refreshed token from the one already exchanged.
    pub(crate) fn digest(&self) -> [u8; 32] {
        self.1
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectToken(<redacted>)")
    }
}

/// The latest token of a session's caller, shared by the session's upstream links.
#[derive(Debug, Default)]
pub(crate) struct SubjectSlot(Mutex<Option<SubjectToken>>);

impl SubjectSlot {
    pub(crate) fn new(token: Option<SubjectToken>) -> Self {
        Self(Mutex::new(token))
    }

    /// Records the token of the latest authenticated request of the session.
    pub(crate) fn set(&self, token: Option<&SubjectToken>) {
        if let Some(t) = token {
            let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_none_or(|old| old.digest() != t.digest()) {
                *slot = Some(t.clone());
            }
        }
    }

    pub(crate) fn get(&self) -> Option<SubjectToken> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
