//! Starts or connects to one server, initialises an MCP session and lists what it
//! offers. Stdio servers run inside the sandbox launcher; nothing they print other than
//! JSON-RPC is read.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};

/// What a server offers.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) instructions: Option<String>,
    pub(crate) tools: Vec<Value>,
    pub(crate) prompts: Vec<Value>,
    pub(crate) resources: Vec<Value>,
}

/// At most this many pages of one list.
const MAX_PAGES: usize = 20;
/// At most this many bytes in one line from a stdio server.
const MAX_LINE: usize = 16 << 20;
/// At most this many bytes in one line of its stderr.
const MAX_STDERR_LINE: usize = 4096;

const INIT: &str = "initialize";

fn init_params() -> Value {
    json!({
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": { "name": "palisade-scan", "version": env!("CARGO_PKG_VERSION") }
    })
}

/// Lists everything of `method` (`tools/list`, …) page by page through `request`.
async fn list_all<F, Fut>(method: &str, key: &str, mut request: F) -> Result<Vec<Value>, String>
where
    F: FnMut(&str, Value) -> Fut,
    Fut: std::future::Future<Output = Result<Value, String>>,
{
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let r = request(method, params).await?;
        if let Some(items) = r.get(key).and_then(Value::as_array) {
            out.extend(items.iter().cloned());
        }
        cursor = r
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(out)
}

/// Fills a listing from an initialised session: every kind the server declared.
async fn listing<F, Fut>(init: &Value, mut request: F) -> Result<Listing, String>
where
    F: FnMut(&str, Value) -> Fut,
    Fut: std::future::Future<Output = Result<Value, String>>,
{
    let caps = init.get("capabilities").cloned().unwrap_or(json!({}));
    let mut l = Listing {
        instructions: init
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..Listing::default()
    };
    if caps.get("tools").is_some() {
        l.tools = list_all("tools/list", "tools", &mut request).await?;
    }
    if caps.get("prompts").is_some() {
        l.prompts = list_all("prompts/list", "prompts", &mut request).await?;
    }
    if caps.get("resources").is_some() {
        l.resources = list_all("resources/list", "resources", &mut request).await?;
    }
    Ok(l)
}

/// Runs `program args` (already resolved) through the sandbox launcher with `profile`
/// and lists what it offers; the server is killed afterwards.
#[allow(
    clippy::disallowed_methods,
    reason = "the scanner starts the server it was asked to scan, inside the sandbox"
)]
pub(crate) async fn stdio(
    launcher: &Path,
    profile: &palisade_sandbox::Profile,
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Listing, String> {
    let mut child = tokio::process::Command::new(launcher)
        .args(["sandbox", "exec", "--profile"])
        .arg(profile.to_arg())
        .arg("--")
        .arg(program)
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the sandbox launcher: {e}"))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("no stdio pipes".into());
    };
    // The last lines of stderr, for the error message; read to its end, bounded.
    let tail = tokio::spawn(async move {
        let mut r = BufReader::new(stderr);
        let mut buf = Vec::new();
        let mut last: Vec<String> = Vec::new();
        while let Ok(line) =
            palisade_gateway::read_line_bounded(&mut r, &mut buf, MAX_STDERR_LINE).await
        {
            let text = match line {
                Ok(false) => break,
                Ok(true) => String::from_utf8_lossy(&buf)
                    .trim_end()
                    .chars()
                    .take(300)
                    .collect(),
                Err(palisade_gateway::TooLong) => "(overlong line)".to_owned(),
            };
            if last.len() == 3 {
                last.remove(0);
            }
            last.push(text);
        }
        last.join(" | ")
    });
    let session = std::sync::Arc::new(tokio::sync::Mutex::new((
        stdin,
        BufReader::new(stdout),
        0i64,
    )));
    let request = |method: &str, params: Value| {
        let session = std::sync::Arc::clone(&session);
        let method = method.to_owned();
        async move {
            let mut s = session.lock().await;
            s.2 += 1;
            let id = s.2;
            let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            s.0.write_all(format!("{line}\n").as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            s.0.flush().await.map_err(|e| format!("write: {e}"))?;
            let mut buf = Vec::new();
            loop {
                match palisade_gateway::read_line_bounded(&mut s.1, &mut buf, MAX_LINE)
                    .await
                    .map_err(|e| format!("read: {e}"))?
                {
                    Ok(true) => {}
                    Ok(false) => return Err("the server exited".to_owned()),
                    Err(palisade_gateway::TooLong) => continue,
                }
                let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
                    continue;
                };
                if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                    if let Some(e) = msg.get("error") {
                        return Err(format!("{method}: {e}"));
                    }
                    return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
                }
                if let Some(req_id) = msg.get("id").filter(|_| msg.get("method").is_some()) {
                    // A request from the server (roots, sampling, …): not offered.
                    let no = json!({"jsonrpc": "2.0", "id": req_id, "error": {"code": -32601, "message": "not supported by palisade scan"}});
                    s.0.write_all(format!("{no}\n").as_bytes())
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                }
            }
        }
    };
    let work = async {
        let init = request(INIT, init_params()).await?;
        {
            let mut s = session.lock().await;
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            s.0.write_all(format!("{note}\n").as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        listing(&init, request).await
    };
    let r = tokio::time::timeout(timeout, work).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let tail = tail.await.unwrap_or_default();
    match r {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(e)) if tail.is_empty() => Err(e),
        Ok(Err(e)) => Err(format!("{e}; stderr: {tail}")),
        Err(_) => Err(format!(
            "no answer within {}s; stderr: {tail}",
            timeout.as_secs()
        )),
    }
}

/// What connecting to a Streamable HTTP server found.
pub(crate) enum Remote {
    Listed {
        listing: Listing,
        /// It answered although no credential was sent.
        without_credentials: bool,
    },
    /// 401: it wants a credential the configuration does not hold.
    NeedsAuth,
}

/// Initialises a session at `url` with the configured headers and lists.
pub(crate) async fn http(
    url: &str,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Remote, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let credentials = headers.keys().any(|k| {
        let k = k.to_ascii_lowercase();
        k == "authorization" || k.contains("api-key") || k.contains("token")
    });
    let session: std::sync::Arc<std::sync::Mutex<(Option<String>, i64)>> =
        std::sync::Arc::default();
    let request = |method: &str, params: Value| {
        let client = client.clone();
        let session = std::sync::Arc::clone(&session);
        let method = method.to_owned();
        let url = url.to_owned();
        let headers = headers.clone();
        async move {
            let (sid, id) = {
                let mut s = session.lock().unwrap_or_else(|e| e.into_inner());
                s.1 += 1;
                (s.0.clone(), s.1)
            };
            let notification = method.starts_with("notifications/");
            let body = if notification {
                json!({"jsonrpc": "2.0", "method": method})
            } else {
                json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
            };
            let mut req = client
                .post(&url)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(body.to_string());
            if method != INIT {
                req = req.header("mcp-protocol-version", "2025-11-25");
            }
            if let Some(sid) = &sid {
                req = req.header("mcp-session-id", sid);
            }
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.map_err(|e| format!("{method}: {e}"))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
                return Err("401".to_owned());
            }
            if !resp.status().is_success() {
                return Err(format!("{method}: HTTP {}", resp.status()));
            }
            if let Some(new) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                session.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(new.to_owned());
            }
            if notification {
                return Ok(Value::Null);
            }
            let sse = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("text/event-stream"));
            let mut resp = resp;
            let mut raw = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{method}: {e}"))? {
                if raw.len() + chunk.len() > MAX_LINE {
                    return Err(format!(
                        "{method}: the answer is larger than {MAX_LINE} bytes"
                    ));
                }
                raw.extend_from_slice(&chunk);
            }
            let body = String::from_utf8_lossy(&raw);
            let messages: Vec<Value> = if sse {
                body.lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .filter_map(|d| serde_json::from_str(d.trim()).ok())
                    .collect()
            } else {
                serde_json::from_str(&body)
                    .map(|v| vec![v])
                    .map_err(|e| format!("{method}: {e}"))?
            };
            let msg = messages
                .into_iter()
                .find(|m| m.get("id") == Some(&json!(id)))
                .ok_or_else(|| format!("{method}: no answer"))?;
            if let Some(e) = msg.get("error") {
                return Err(format!("{method}: {e}"));
            }
            Ok(msg.get("result").cloned().unwrap_or(Value::Null))
        }
    };
    let init = match request(INIT, init_params()).await {
        Err(e) if e == "401" => return Ok(Remote::NeedsAuth),
        r => r?,
    };
    request("notifications/initialized", Value::Null).await?;
    let listing = listing(&init, request).await?;
    Ok(Remote::Listed {
        listing,
        without_credentials: !credentials,
    })
}
