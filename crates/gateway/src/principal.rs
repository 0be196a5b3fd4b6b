//! Who is calling. Sessions, and later policy and audit, key on the principal's
//! issuer and subject; in no-auth local mode the principal is the local OS user, bound
//! exactly the way OAuth principals will be (`iss` + `sub`).

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
}
