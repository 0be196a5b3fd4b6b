/// An MCP protocol revision the gateway knows.
///
/// Dispatch on the revision happens at the edge: every request after `initialize`
/// carries `MCP-Protocol-Version`, and the next revision (2026-07-28, stateless,
/// without `initialize`) will get its own arm here rather than flags elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// 2025-03-26: the first revision with Streamable HTTP. Batches are still refused.
    V2025_03_26,
    /// 2025-06-18.
    V2025_06_18,
    /// 2025-11-25: the revision whose rules the gateway enforces.
    V2025_11_25,
}

impl ProtocolVersion {
    /// The newest revision the gateway speaks; offered when a client asks for one we
    /// do not support (LIFE-02).
    pub const LATEST: Self = Self::V2025_11_25;

    /// The revision assumed when a request carries no `MCP-Protocol-Version` header
    /// (TR-11).
    pub const ASSUMED_WITHOUT_HEADER: Self = Self::V2025_03_26;

    /// Every revision the gateway accepts, newest first.
    pub const SUPPORTED: [Self; 3] = [Self::V2025_11_25, Self::V2025_06_18, Self::V2025_03_26];

    /// Parses the exact revision string; anything else is unsupported.
    pub fn parse(s: &str) -> Option<Self> {
        Self::SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    /// The revision string as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
        }
    }

    /// The revision the gateway answers to a client that asked for `requested` in
    /// `initialize`: the same one when supported, otherwise the latest (LIFE-02).
    pub fn negotiate(requested: &str) -> Self {
        Self::parse(requested).unwrap_or(Self::LATEST)
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn life_02_unknown_versions_get_the_latest() {
        assert_eq!(
            ProtocolVersion::negotiate("2099-01-01"),
            ProtocolVersion::LATEST
        );
        assert_eq!(
            ProtocolVersion::negotiate("2025-06-18"),
            ProtocolVersion::V2025_06_18
        );
        assert_eq!(ProtocolVersion::parse("1999-01-01"), None);
        assert_eq!(ProtocolVersion::parse(" 2025-11-25"), None);
    }
}
