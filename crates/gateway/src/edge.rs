//! HTTP edge checks, run on every request to the MCP endpoint before anything else
//! reads the body. Each returns a [`Refusal`] with the status the spec asks for.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use palisade_wire::ProtocolVersion;

use crate::refusal::Refusal;

/// What the edge lets through.
#[derive(Debug, Clone)]
pub(crate) struct EdgePolicy {
    allowed_origins: Vec<String>,
    allowed_hosts: Vec<String>,
    /// The listener is on loopback: only loopback names are valid `Host`s (TR-03).
    loopback: bool,
    /// The gateway's own scheme, for same-origin requests: `https` with TLS.
    scheme: &'static str,
}

impl EdgePolicy {
    pub(crate) fn new(
        allowed_origins: Vec<String>,
        allowed_hosts: Vec<String>,
        loopback: bool,
        tls: bool,
    ) -> Self {
        Self {
            allowed_origins,
            allowed_hosts,
            loopback,
            scheme: if tls { "https" } else { "http" },
        }
    }

    /// TR-03: on a loopback bind, `Host` must name loopback (DNS rebinding defence);
    /// otherwise it must be an allowed host. A missing `Host` is refused too.
    pub(crate) fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(host) = single(headers, header::HOST) else {
            return Err(Refusal::HOST_NOT_ALLOWED);
        };
        let host = host.to_ascii_lowercase();
        let name = strip_port(&host);
        let ok = self.allowed_hosts.iter().any(|h| *h == host || *h == name)
            || (self.loopback && is_loopback_name(name));
        if ok {
            Ok(())
        } else {
            Err(Refusal::HOST_NOT_ALLOWED)
        }
    }

    /// TR-02: an `Origin` that is present must be allowlisted or be the gateway's
    /// own origin (its scheme + the already validated `Host`); absent is fine
    /// (non-browser clients send none). `Origin: null` is never allowed. Other local
    /// origins (another port on localhost) are cross-origin and refused.
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let mut values = headers.get_all(header::ORIGIN).iter();
        let Some(first) = values.next() else {
            return Ok(());
        };
        if values.next().is_some() {
            return Err(Refusal::ORIGIN_NOT_ALLOWED);
        }
        let origin = first
            .to_str()
            .map_err(|_| Refusal::ORIGIN_NOT_ALLOWED)?
            .trim()
            .to_ascii_lowercase();
        let same_origin = single(headers, header::HOST)
            .is_some_and(|h| origin == format!("{}://{}", self.scheme, h.to_ascii_lowercase()));
        if same_origin || self.allowed_origins.contains(&origin) {
            Ok(())
        } else {
            Err(Refusal::ORIGIN_NOT_ALLOWED)
        }
    }
}

/// HTTP/2 and HTTP/3 carry the host in the `:authority` pseudo-header, which hyper
/// puts in the request URI rather than in `Host`. Every check reads `Host`, so a
/// request with an authority and no `Host` gets one from it; a request whose `Host`
/// differs from its authority is malformed (RFC 9113 §8.3.1) and refused.
pub(crate) async fn authority_as_host(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => match header::HeaderValue::from_str(&authority) {
                Ok(v) => {
                    req.headers_mut().insert(header::HOST, v);
                }
                Err(_) => return Refusal::HOST_NOT_ALLOWED.into_response(),
            },
            (Some(h), None) if h.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) => {}
            _ => return Refusal::HOST_NOT_ALLOWED.into_response(),
        }
    }
    next.run(req).await
}

fn single(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    let mut it = headers.get_all(name).iter();
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    v.to_str().ok()
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// TR-05: POST must accept both JSON and SSE; `*/*` and `application/*` style
/// wildcards count.
pub(crate) fn check_post_accept(headers: &HeaderMap) -> Result<(), Refusal> {
    let accept = accept_list(headers);
    let json = accept
        .iter()
        .any(|m| matches!(m.as_str(), "application/json" | "application/*" | "*/*"));
    let sse = accept
        .iter()
        .any(|m| matches!(m.as_str(), "text/event-stream" | "text/*" | "*/*"));
    if json && sse {
        Ok(())
    } else {
        Err(Refusal::NOT_ACCEPTABLE)
    }
}

/// TR-05: GET must accept SSE.
pub(crate) fn check_get_accept(headers: &HeaderMap) -> Result<(), Refusal> {
    let ok = accept_list(headers)
        .iter()
        .any(|m| matches!(m.as_str(), "text/event-stream" | "text/*" | "*/*"));
    if ok {
        Ok(())
    } else {
        Err(Refusal::GET_NOT_ACCEPTABLE)
    }
}

fn accept_list(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect()
}

/// A POST body must be declared JSON.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let ok = single(headers, header::CONTENT_TYPE).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if ok {
        Ok(())
    } else {
        Err(Refusal::UNSUPPORTED_MEDIA_TYPE)
    }
}

/// TR-11: a present `MCP-Protocol-Version` must be one we support. A missing one is
/// assumed to be 2025-03-26. A supported value that differs from the negotiated one
/// is accepted: clients in the wild send 2025-03-26 on resumed streams.
pub(crate) fn check_protocol_version(
    headers: &HeaderMap,
) -> Result<Option<ProtocolVersion>, Refusal> {
    let mut it = headers.get_all("mcp-protocol-version").iter();
    let Some(v) = it.next() else {
        return Ok(None);
    };
    if it.next().is_some() {
        return Err(Refusal::UNSUPPORTED_VERSION);
    }
    v.to_str()
        .ok()
        .and_then(ProtocolVersion::parse)
        .map(Some)
        .ok_or(Refusal::UNSUPPORTED_VERSION)
}

/// The `Mcp-Session-Id` header, if present; several values or non-visible ASCII are
/// treated as an unknown session.
pub(crate) fn session_header(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut it = headers.get_all("mcp-session-id").iter();
    let Some(v) = it.next() else {
        return Ok(None);
    };
    if it.next().is_some() {
        return Err(Refusal::SESSION_NOT_FOUND);
    }
    let s = v.to_str().map_err(|_| Refusal::SESSION_NOT_FOUND)?;
    if s.is_empty() || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Refusal::SESSION_NOT_FOUND);
    }
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn tr_03_loopback_hosts_only() {
        let p = EdgePolicy::new(vec![], vec![], true, false);
        for ok in [
            "localhost:8787",
            "127.0.0.1:8787",
            "[::1]:8787",
            "localhost",
            "127.0.0.5",
        ] {
            assert!(p.check_host(&h(&[("host", ok)])).is_ok(), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8787",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
        ] {
            assert!(p.check_host(&h(&[("host", bad)])).is_err(), "{bad}");
        }
        assert!(p.check_host(&h(&[])).is_err());
        assert!(
            p.check_host(&h(&[("host", "localhost"), ("host", "evil")]))
                .is_err()
        );
    }

    #[test]
    fn tr_02_origin_allowlist() {
        let p = EdgePolicy::new(vec!["http://localhost:6274".into()], vec![], true, false);
        assert!(p.check_origin(&h(&[])).is_ok());
        assert!(
            p.check_origin(&h(&[("origin", "http://localhost:6274")]))
                .is_ok()
        );
        assert!(
            p.check_origin(&h(&[("origin", "HTTP://LOCALHOST:6274")]))
                .is_ok()
        );
        assert!(
            p.check_origin(&h(&[("origin", "https://evil.example")]))
                .is_err()
        );
        assert!(p.check_origin(&h(&[("origin", "null")])).is_err());
        // The gateway's own origin is not cross-origin; another local port is.
        let same = h(&[
            ("host", "localhost:8787"),
            ("origin", "http://localhost:8787"),
        ]);
        assert!(p.check_origin(&same).is_ok());
        let other = h(&[
            ("host", "localhost:8787"),
            ("origin", "http://localhost:3000"),
        ]);
        assert!(p.check_origin(&other).is_err());
    }

    #[test]
    fn tr_05_accept() {
        assert!(
            check_post_accept(&h(&[("accept", "application/json, text/event-stream")])).is_ok()
        );
        assert!(check_post_accept(&h(&[("accept", "*/*")])).is_ok());
        assert!(check_post_accept(&h(&[("accept", "application/json")])).is_err());
        assert!(check_get_accept(&h(&[("accept", "text/event-stream")])).is_ok());
        assert!(check_get_accept(&h(&[("accept", "application/json")])).is_err());
    }

    #[test]
    fn tr_11_protocol_version() {
        assert_eq!(check_protocol_version(&h(&[])).unwrap(), None);
        assert!(check_protocol_version(&h(&[("mcp-protocol-version", "2025-11-25")])).is_ok());
        assert!(check_protocol_version(&h(&[("mcp-protocol-version", "1999-01-01")])).is_err());
    }

    #[test]
    fn sess_02_session_header_is_visible_ascii() {
        assert!(
            session_header(&h(&[("mcp-session-id", "abc")]))
                .unwrap()
                .is_some()
        );
        assert!(session_header(&h(&[("mcp-session-id", "a b")])).is_err());
    }
}
