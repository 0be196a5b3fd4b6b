//! Where MCP clients keep their server lists, and how to read them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A client configuration file.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Which client it belongs to (`given` for a path on the command line).
    pub(crate) client: String,
    pub(crate) path: PathBuf,
}

/// One configured server.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) client: String,
    pub(crate) file: PathBuf,
    pub(crate) name: String,
    /// Where in the file: the keys leading to the server's object.
    pub(crate) pointer: Vec<String>,
    pub(crate) transport: Transport,
}

#[derive(Debug, Clone)]
pub(crate) enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

impl Server {
    /// The exact launch or URL, as shown before consent.
    pub(crate) fn shown(&self) -> String {
        match &self.transport {
            Transport::Stdio { command, args, .. } => {
                let mut words = vec![shell_word(command)];
                words.extend(args.iter().map(|a| shell_word(a)));
                words.join(" ")
            }
            Transport::Http { url, .. } => url.clone(),
        }
    }
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@=+,%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The configuration files of the clients Palisade knows, where they exist: Claude
/// Desktop, Claude Code, VS Code, Cursor, Windsurf and Zed — the user's own and, for
/// the clients that have them, the project files under `cwd`.
pub(crate) fn known_sources(home: &Path, cwd: &Path) -> Vec<Source> {
    let candidates: [(&str, PathBuf); 13] = [
        (
            "claude-desktop",
            home.join(".config/Claude/claude_desktop_config.json"),
        ),
        (
            "claude-desktop",
            home.join("Library/Application Support/Claude/claude_desktop_config.json"),
        ),
        ("claude-code", home.join(".claude.json")),
        ("claude-code", cwd.join(".mcp.json")),
        ("vscode", home.join(".config/Code/User/settings.json")),
        ("vscode", home.join(".config/Code/User/mcp.json")),
        (
            "vscode",
            home.join("Library/Application Support/Code/User/mcp.json"),
        ),
        ("vscode", cwd.join(".vscode/mcp.json")),
        ("cursor", home.join(".cursor/mcp.json")),
        ("cursor", cwd.join(".cursor/mcp.json")),
        ("windsurf", home.join(".codeium/windsurf/mcp_config.json")),
        ("zed", home.join(".config/zed/settings.json")),
        ("zed", cwd.join(".zed/settings.json")),
    ];
    let mut seen = std::collections::BTreeSet::new();
    candidates
        .into_iter()
        .filter(|(_, p)| p.is_file() && seen.insert(p.clone()))
        .map(|(client, path)| Source {
            client: client.to_owned(),
            path,
        })
        .collect()
}

/// JSON with comments and trailing commas (VS Code and Zed settings) as plain JSON:
/// comments go first, so that a comma before a commented-out last entry is seen as
/// trailing.
pub(crate) fn strip_jsonc(text: &str) -> String {
    let no_comments = outside_strings(text.as_bytes(), |b, i, out| match b[i] {
        b'/' if b.get(i + 1) == Some(&b'/') => b[i..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |n| i + n),
        b'/' if b.get(i + 1) == Some(&b'*') => b[i + 2..]
            .windows(2)
            .position(|w| w == b"*/")
            .map_or(b.len(), |n| i + 2 + n + 2),
        c => {
            out.push(c);
            i + 1
        }
    });
    let no_commas = outside_strings(&no_comments, |b, i, out| {
        let trailing = b[i] == b','
            && matches!(
                b[i + 1..].iter().find(|c| !c.is_ascii_whitespace()),
                Some(b'}' | b']')
            );
        if !trailing {
            out.push(b[i]);
        }
        i + 1
    });
    String::from_utf8_lossy(&no_commas).into_owned()
}

/// Copies `b`, strings verbatim, and everything else through `step` (which pushes what
/// to keep and returns where to go on).
fn outside_strings(b: &[u8], mut step: impl FnMut(&[u8], usize, &mut Vec<u8>) -> usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
            out.extend_from_slice(&b[start..i]);
        } else {
            i = step(b, i, &mut out);
        }
    }
    out
}

/// Reads a configuration file's JSON (comments allowed).
pub(crate) fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&strip_jsonc(&text)).map_err(|e| format!("{}: {e}", path.display()))
}

/// The server tables a file may hold, by path of keys.
fn tables(doc: &Value) -> Vec<(Vec<String>, &serde_json::Map<String, Value>)> {
    let mut out = Vec::new();
    for keys in [
        &["mcpServers"][..],
        &["servers"],
        &["mcp", "servers"],
        &["context_servers"],
    ] {
        let mut v = Some(doc);
        for k in keys {
            v = v.and_then(|x| x.get(*k));
        }
        if let Some(Value::Object(m)) = v {
            out.push((keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>(), m));
        }
    }
    if let Some(Value::Object(projects)) = doc.get("projects") {
        for (p, v) in projects {
            if let Some(Value::Object(m)) = v.get("mcpServers") {
                out.push((vec!["projects".into(), p.clone(), "mcpServers".into()], m));
            }
        }
    }
    out
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// One server entry, in any of the clients' shapes.
fn entry(v: &Value) -> Option<Transport> {
    // Zed: "command": { "path", "args", "env" }.
    if let Some(cmd) = v.get("command").and_then(Value::as_object) {
        return Some(Transport::Stdio {
            command: cmd.get("path")?.as_str()?.to_owned(),
            args: strings(cmd.get("args")),
            env: string_map(cmd.get("env")),
        });
    }
    if let Some(command) = v.get("command").and_then(Value::as_str) {
        return Some(Transport::Stdio {
            command: command.to_owned(),
            args: strings(v.get("args")),
            env: string_map(v.get("env")),
        });
    }
    let url = ["url", "serverUrl", "httpUrl"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))?;
    Some(Transport::Http {
        url: url.to_owned(),
        headers: string_map(v.get("headers")),
    })
}

/// Every server of a configuration file; entries of no known shape are skipped.
pub(crate) fn servers(source: &Source, doc: &Value) -> Vec<Server> {
    let mut out = Vec::new();
    for (keys, table) in tables(doc) {
        for (name, v) in table {
            if let Some(transport) = entry(v) {
                let mut pointer = keys.clone();
                pointer.push(name.clone());
                out.push(Server {
                    client: source.client.clone(),
                    file: source.path.clone(),
                    name: name.clone(),
                    pointer,
                    transport,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn every_clients_shape_is_read() {
        let doc: Value = serde_json::from_str(&strip_jsonc(
            r#"{
              // VS Code style comments, trailing commas
              "mcpServers": { "a": { "command": "npx", "args": ["-y", "pkg@1.0.0"], "env": {"K": "v"} }, },
              "servers": { "b": { "type": "http", "url": "https://x.example/mcp", "headers": {"Authorization": "Bearer t"} } },
              "mcp": { "servers": { "c": { "command": "node", "args": ["s.js"] } } },
              "context_servers": { "d": { "command": { "path": "/bin/srv", "args": ["--x"] } }, "e": { "url": "http://127.0.0.1:1/mcp" } },
              "projects": { "/p": { "mcpServers": { "f": { "serverUrl": "http://h.example/sse" } } } },
              "text": "a // not a comment, /* nor this */",
              "list": [1, 2, // the last one is commented out
                 // 3
              ],
            }"#,
        ))
        .unwrap();
        assert_eq!(doc["text"], "a // not a comment, /* nor this */");
        let src = Source {
            client: "given".into(),
            path: "/x.json".into(),
        };
        let names: Vec<String> = servers(&src, &doc).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e", "f"]);
        let s = servers(&src, &doc);
        assert_eq!(s[0].shown(), "npx -y pkg@1.0.0");
        assert_eq!(s[3].pointer, ["context_servers", "d"]);
        assert!(
            matches!(&s[3].transport, Transport::Stdio { command, .. } if command == "/bin/srv")
        );
        assert_eq!(s[5].pointer, ["projects", "/p", "mcpServers", "f"]);
    }
}
