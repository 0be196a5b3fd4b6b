//! The canonical URI of the gateway's MCP endpoint, and how a token's `aud` is
//! compared to it (RFC 8707, MCP 2025-11-25 §Canonical Server URI; AUTH-07, AUTH-17).
//!
//! Scheme and host compare case-insensitively, a default port equals no port, and a
//! single trailing slash is ignored; the path is otherwise compared exactly, so
//! another path (another upstream's endpoint) never matches.

use std::fmt;

/// A canonical resource URI: `scheme://host[:port]/path`, no query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalUri(String);

/// Why a string is not a usable resource URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a canonical resource URI: {0}")]
pub struct NotCanonical(&'static str);

impl CanonicalUri {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<Self, NotCanonical> {
        let (scheme, rest) = s.split_once("://").ok_or(NotCanonical("missing scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => "443",
            "http" => "80",
            _ => return Err(NotCanonical("scheme must be http or https")),
        };
        if rest.contains(['#', '?']) {
            return Err(NotCanonical("no query or fragment allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(NotCanonical("bad authority"));
        }
        let authority = authority.to_ascii_lowercase();
        let authority = match authority.rsplit_once(':') {
            Some((host, port)) if port == default_port && !host.ends_with(':') => host.to_owned(),
            _ => authority,
        };
        let path = path.strip_suffix('/').unwrap_or(path);
        Ok(Self(format!("{scheme}://{authority}{path}")))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the audience value `aud` names this resource.
    pub fn matches(&self, aud: &str) -> bool {
        Self::parse(aud).is_ok_and(|a| a == *self)
    }
}

impl fmt::Display for CanonicalUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_17_scheme_host_and_trailing_slash_are_normalised() {
        let me = CanonicalUri::parse("https://gw.example.com/mcp").unwrap();
        assert!(me.matches("HTTPS://GW.EXAMPLE.COM/mcp"));
        assert!(me.matches("https://gw.example.com/mcp/"));
        assert!(me.matches("https://gw.example.com:443/mcp"));
        assert!(
            !me.matches("https://gw.example.com/MCP"),
            "paths compare exactly"
        );
        assert!(
            !me.matches("https://gw.example.com/other"),
            "AUTH-07: another path"
        );
        assert!(!me.matches("https://gw.example.com"));
        assert!(!me.matches("http://gw.example.com/mcp"));
        assert!(!me.matches("https://gw.example.com.evil/mcp"));
        assert!(!me.matches("https://user@gw.example.com/mcp"));
    }

    #[test]
    fn only_http_uris_without_query() {
        assert!(CanonicalUri::parse("ftp://x/mcp").is_err());
        assert!(CanonicalUri::parse("https://x/mcp?a=1").is_err());
        assert_eq!(
            CanonicalUri::parse("http://127.0.0.1:80/mcp")
                .unwrap()
                .as_str(),
            "http://127.0.0.1/mcp"
        );
    }
}
