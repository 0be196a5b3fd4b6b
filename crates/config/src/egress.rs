//! Egress allowlist entries of sandboxed stdio servers.

use std::net::IpAddr;

/// One destination a sandboxed server may reach through its egress proxy
/// (`allow_hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressHost {
    /// A host name, `*.suffix`, or an IP address (lowercase).
    pub host: String,
    /// The port (443 when the entry names none).
    pub port: u16,
}

impl EgressHost {
    /// `host`, `host:port`, `*.suffix[:port]`, `1.2.3.4[:port]`, `[::1]:port`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let bad = || format!("`{entry}` is not host, host:port or *.domain[:port]");
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (h, p) = rest.split_once(']').ok_or_else(bad)?;
            let port = match p.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if p.is_empty() => 443,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match entry.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse().map_err(|_| bad())?),
                Some(_) => (entry.to_owned(), 443),
                None => (entry.to_owned(), 443),
            }
        };
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let ok = host.parse::<IpAddr>().is_ok()
            || (!name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if !ok || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether `host` (lowercase) and `port` are allowed by this entry.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        port == self.port
            && match self.host.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                None => host == self.host,
            }
    }

    /// Whether the entry is an IP address (which may then be non-public).
    pub fn is_address(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn entries_parse_and_match_exactly() {
        let a = EgressHost::parse("api.github.com").unwrap();
        assert!(a.matches("api.github.com", 443));
        assert!(!a.matches("api.github.com", 80));
        assert!(!a.matches("evil-api.github.com", 443));
        let w = EgressHost::parse("*.example.com:8443").unwrap();
        assert!(w.matches("a.example.com", 8443));
        assert!(w.matches("a.b.example.com", 8443));
        assert!(!w.matches("example.com", 8443));
        assert!(!w.matches("badexample.com", 8443));
        assert!(!w.matches("a.example.com", 443));
        assert!(EgressHost::parse("127.0.0.1:9000").unwrap().is_address());
        assert_eq!(EgressHost::parse("[::1]:9000").unwrap().port, 9000);
        for bad in ["", "http://x", "a b", "x:0", "x:notaport", "*.", "a..b"] {
            assert!(EgressHost::parse(bad).is_err(), "{bad}");
        }
    }
}
