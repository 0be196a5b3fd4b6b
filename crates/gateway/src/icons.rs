//! Icons an upstream offers with its tools, prompts, resources and resource templates
//! (SSRF-06). A client fetches or renders them, so an icon is an address the upstream
//! chooses for the client to reach and content it chooses for the client to show. Only
//! these reach the client: `https:` URLs without credentials whose host is not
//! internal (the OBS-04 reading of a URL, `args::forbidden_target`), and `data:`
//! images — raster formats, or SVG without active content (scripts, event handlers,
//! `javascript:` links, embedded documents, references to other resources). Every
//! other icon is removed from the copy the client receives; the pin stays the
//! upstream's own definition.

use base64::Engine as _;
use palisade_wire::{Kind, Message};
use serde_json::Value;

/// Image types a `data:` icon may have that cannot carry script.
const RASTER: [&str; 9] = [
    "image/png",
    "image/jpeg",
    "image/jpg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "image/x-icon",
    "image/vnd.microsoft.icon",
];

/// Removes from `item`'s `icons` every icon the gateway does not pass on (and
/// `icons` itself when it is not a list, or nothing is left of it); returns why each
/// removed one was removed.
pub(crate) fn strip(item: &mut Value) -> Vec<&'static str> {
    let Some(obj) = item.as_object_mut() else {
        return Vec::new();
    };
    let Some(icons) = obj.get_mut("icons") else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    match icons.as_array_mut() {
        Some(list) => list.retain(|icon| match refusal(icon) {
            Some(why) => {
                removed.push(why);
                false
            }
            None => true,
        }),
        None => removed.push("icons that are not a list"),
    }
    if icons.as_array().is_none_or(Vec::is_empty) {
        obj.remove("icons");
    }
    removed
}

/// The answer to a `tools/call` or `prompts/get` with the icons of its resource links
/// (`content` items of type `resource_link`, which carry a resource's `icons`)
/// stripped as [`strip`] does; `None` when nothing is left out.
pub(crate) fn strip_from_answer(method: &str, msg: &Message) -> Option<Message> {
    if !matches!(method, "tools/call" | "prompts/get") || msg.kind() != Kind::Response {
        return None;
    }
    // Only an answer that names icons, as written or with escapes, is read.
    let raw = msg.raw();
    if !raw
        .windows(5)
        .any(|w| w == b"icons" || w.starts_with(b"\\u"))
    {
        return None;
    }
    let mut v = msg.to_value().ok()?;
    let result = v.get_mut("result")?;
    let mut removed = Vec::new();
    let mut links = |block: &mut Value| {
        if block.get("type").and_then(Value::as_str) == Some("resource_link") {
            removed.extend(strip(block));
        }
    };
    match method {
        "tools/call" => {
            for block in result.get_mut("content")?.as_array_mut()? {
                links(block);
            }
        }
        _ => {
            for m in result.get_mut("messages")?.as_array_mut()? {
                if let Some(block) = m.get_mut("content") {
                    links(block);
                }
            }
        }
    }
    if removed.is_empty() {
        return None;
    }
    tracing::warn!(method, reasons = ?removed, "left out icons of resource links the gateway does not pass on (SSRF-06)");
    match crate::inspect::reencoded(&v, msg.id()) {
        crate::inspect::Outcome::Rewrite(m) | crate::inspect::Outcome::Withhold(m) => Some(m),
        crate::inspect::Outcome::Pass => None,
    }
}

/// Why `icon` is not passed on, if it is not.
fn refusal(icon: &Value) -> Option<&'static str> {
    let Some(src) = icon.get("src").and_then(Value::as_str) else {
        return Some("an icon without a src");
    };
    if let Some(mime) = icon.get("mimeType")
        && !mime
            .as_str()
            .is_some_and(|m| m.to_ascii_lowercase().starts_with("image/"))
    {
        return Some("an icon whose mimeType is not an image type");
    }
    let scheme = src
        .split_once(':')
        .map(|(s, _)| s.trim().to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => crate::args::forbidden_target(src)
            .map(|_| "an icon URL with credentials or an internal host"),
        Some("data") => data_refusal(src),
        _ => Some("an icon whose scheme is neither https nor data"),
    }
}

/// Why a `data:` icon is not passed on, if it is not: a type other than an image
/// type, or SVG that may do more than draw.
fn data_refusal(src: &str) -> Option<&'static str> {
    let after_scheme = src.split_once(':').map_or("", |(_, rest)| rest);
    let Some((header, payload)) = after_scheme.split_once(',') else {
        return Some("a data icon that cannot be read");
    };
    let mut parts = header.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    let base64 = parts.any(|p| p.eq_ignore_ascii_case("base64"));
    if RASTER.contains(&media.as_str()) {
        return None;
    }
    if media != "image/svg+xml" {
        return Some("a data icon that is not an image");
    }
    let text = if base64 {
        let compact: String = payload
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let decoded = crate::args::percent_decode(&compact);
        match base64::engine::general_purpose::STANDARD.decode(decoded.as_bytes()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => return Some("a data icon that cannot be read"),
        }
    } else {
        crate::args::percent_decode(payload)
    };
    svg_is_active(&text).then_some("an SVG icon with active content")
}

/// Whether SVG text may run script, load another document or reach the network when
/// rendered: script or embedded-document elements, event-handler attributes,
/// `javascript:` anywhere, or a reference (`href`, `url(…)`, `@import`) to anything
/// but a fragment of the image itself or a `data:` raster image.
fn svg_is_active(svg: &str) -> bool {
    // Compared without whitespace or case, with the named entities for `:` and `(`
    // read as the characters (`URL (`, `javascript&colon;`); a numeric character
    // reference anywhere (`java&#x09;script:`) counts as active, since it can spell
    // any of these.
    let text: String = svg
        .to_ascii_lowercase()
        .replace("&colon;", ":")
        .replace("&lpar;", "(");
    let squeezed: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    const ACTIVE: [&str; 10] = [
        "<script",
        "<foreignobject",
        "<iframe",
        "<embed",
        "<object",
        "<handler",
        "<listener",
        "javascript:",
        "vbscript:",
        "@import",
    ];
    if ACTIVE.iter().any(|a| squeezed.contains(a)) || squeezed.contains("&#") {
        return true;
    }
    // Event handlers: an attribute `on…=` after whitespace inside a tag.
    let b = text.as_bytes();
    for (i, w) in b.windows(2).enumerate() {
        if w == b"on" && i > 0 && b[i - 1].is_ascii_whitespace() {
            let rest = &b[i + 2..];
            let name = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
            let after = rest[name..].iter().find(|c| !c.is_ascii_whitespace());
            if name > 0 && after == Some(&b'=') {
                return true;
            }
        }
    }
    // References: `href="…"` (with or without `xlink:`), `src="…"`, `url(…)`.
    for key in ["href=", "src=", "url("] {
        for (i, _) in squeezed.match_indices(key) {
            let target = squeezed[i + key.len()..].trim_start_matches(['"', '\'']);
            let local = target.starts_with('#')
                || RASTER
                    .iter()
                    .any(|r| target.starts_with(&format!("data:{r}")));
            if !local {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::strip;
    use base64::Engine as _;
    use serde_json::json;

    fn svg(body: &str) -> String {
        format!(
            "data:image/svg+xml;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 8 8\">{body}</svg>"
            ))
        )
    }

    #[test]
    fn ssrf_06_only_https_and_data_images_pass() {
        let kept = [
            json!({"src": "https://cdn.example.com/icon.png", "mimeType": "image/png", "sizes": ["48x48"]}),
            json!({"src": "data:image/png;base64,iVBORw0KGgo="}),
            json!({"src": svg("<rect width=\"8\" height=\"8\" fill=\"url(#g)\"/>")}),
            json!({"src": "data:image/svg+xml,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%3E%3C%2Fsvg%3E"}),
        ];
        let removed = [
            json!({"src": "javascript:alert(document.cookie)"}),
            json!({"src": "JavaScript:alert(1)"}),
            json!({"src": "file:///etc/passwd"}),
            json!({"src": "ftp://files.example.com/icon.png"}),
            json!({"src": "ws://example.com/icon"}),
            json!({"src": "http://cdn.example.com/icon.png"}),
            json!({"src": "https://user:pass@cdn.example.com/icon.png"}),
            json!({"src": "https://169.254.169.254/latest/meta-data/"}),
            json!({"src": "https://127.1/icon.png"}),
            json!({"src": "https://printer.local/icon.png"}),
            json!({"src": "https://cdn.example.com/icon.png", "mimeType": "text/html"}),
            json!({"src": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="}),
            json!({"src": "data:,hello"}),
            json!({"src": svg("<script>alert(1)</script>")}),
            json!({"src": svg("<rect onload=\"alert(1)\"/>")}),
            json!({"src": svg("<rect ONCLICK = 'x()'/>")}),
            json!({"src": svg("<a href=\"java&#x09;script:alert(1)\"><rect/></a>")}),
            json!({"src": svg("<image href=\"https://tracker.example/p.gif\"/>")}),
            json!({"src": svg("<foreignObject><iframe src=\"https://x.example\"/></foreignObject>")}),
            json!({"src": svg("<style>@import 'https://x.example/a.css';</style>")}),
            json!({"src": svg("<rect fill=\"url(https://x.example/p#g)\"/>")}),
            json!({"src": "data:image/svg+xml;base64,not base64!"}),
            json!({"mimeType": "image/png"}),
        ];
        let mut tool =
            json!({"name": "t", "icons": kept.iter().chain(&removed).cloned().collect::<Vec<_>>()});
        let why = strip(&mut tool);
        assert_eq!(why.len(), removed.len(), "{why:?}");
        assert_eq!(tool["icons"], json!(kept), "{tool}");

        // Nothing left, or not a list: no `icons` at all.
        let mut tool = json!({"name": "t", "icons": [removed[0].clone()]});
        assert_eq!(strip(&mut tool).len(), 1);
        assert!(tool.get("icons").is_none(), "{tool}");
        let mut tool = json!({"name": "t", "icons": "https://cdn.example.com/icon.png"});
        assert_eq!(strip(&mut tool), ["icons that are not a list"]);
        assert!(tool.get("icons").is_none(), "{tool}");
        let mut tool = json!({"name": "t"});
        assert!(strip(&mut tool).is_empty());
    }
}
