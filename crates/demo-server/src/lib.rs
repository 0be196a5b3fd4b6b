//! The demo MCP server bundled with Palisade: a small stdio server (MCP 2025-11-25)
//! that the quickstart puts behind the gateway, with tools that show what the
//! gateway does:
//!
//! | tool | what it shows |
//! |---|---|
//! | `echo`, `add` | plain calls through the gateway |
//! | `count_slowly` | progress notifications relayed as SSE |
//! | `payload` | a result of a chosen size (the benchmark uses 4 KiB) |
//! | `env_names` | the child sees only the variables its config names (LOC-05) |
//! | `sleep` | per-request timeouts and `notifications/cancelled` (LIFE-06) |
//! | `emit_garbage` | non-JSON on stdout is dropped by the gateway (LOC-03) |
//! | `crash` | the gateway restarts a crashed child with backoff |
//!
//! It also offers one prompt (`greeting`) and one resource (`demo://readme`).
//!
//! With `--probes` it also offers tools that try to get out of a sandbox (read and
//! write files, connect, ptrace, signal, allocate, start processes), for the sandbox
//! tests.

#![forbid(unsafe_code)]

mod probes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use palisade_wire::{ErrorCode, Id, Kind, Message};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
const README: &str = "Palisade demo server. Every tool here runs behind the gateway.";

type Cancels = Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>>>;

static PROBES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Serves MCP on stdin/stdout until stdin closes.
pub async fn run() -> std::io::Result<()> {
    run_with(false).await
}

/// Serves MCP on stdin/stdout until stdin closes; with `probes`, the sandbox probes
/// are tools too.
pub async fn run_with(probes: bool) -> std::io::Result<()> {
    PROBES.store(probes, std::sync::atomic::Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(line) = rx.recv().await {
            if out.write_all(&line).await.is_err() || out.write_all(b"\n").await.is_err() {
                break;
            }
            let _ = out.flush().await;
        }
    });
    let cancels: Cancels = Arc::default();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let msg = match Message::parse(Bytes::from(line.into_bytes())) {
            Ok(m) => m,
            Err(e) => {
                let err = Message::error(None, e.code(), "invalid message");
                let _ = tx.send(err.raw().to_vec()).await;
                continue;
            }
        };
        match msg.kind() {
            Kind::Request => {
                let tx = tx.clone();
                let cancels = Arc::clone(&cancels);
                tokio::spawn(async move {
                    if let Some(reply) = handle(&msg, &tx, &cancels).await {
                        let _ = tx.send(reply.raw().to_vec()).await;
                    }
                });
            }
            Kind::Notification if msg.method() == Some("notifications/cancelled") => {
                let p: Value = msg.params().unwrap_or(Value::Null);
                if let Some(id) = p.get("requestId")
                    && let Some(c) = cancels
                        .lock()
                        .ok()
                        .and_then(|mut c| c.remove(&id.to_string()))
                {
                    let _ = c.send(());
                }
                eprintln!(
                    "demo-server: cancelled {}",
                    p.get("requestId").unwrap_or(&Value::Null)
                );
            }
            _ => {}
        }
    }
    // stdin closed: the client is gone. Flush what is queued, but do not wait for
    // tools still running (a slow tool would hold the shutdown).
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_millis(200), writer).await;
    Ok(())
}

fn text(s: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": s.into() }] })
}

fn tools() -> Value {
    let obj = |props: Value, req: &[&str]| json!({ "type": "object", "properties": props, "required": req });
    json!([
        { "name": "echo", "description": "Returns the text it is given.",
          "inputSchema": obj(json!({ "text": { "type": "string" } }), &["text"]),
          "annotations": { "readOnlyHint": true } },
        { "name": "add", "description": "Adds two numbers.",
          "inputSchema": obj(json!({ "a": { "type": "number" }, "b": { "type": "number" } }), &["a", "b"]),
          "annotations": { "readOnlyHint": true } },
        { "name": "count_slowly", "description": "Counts to n, sending a progress notification per step.",
          "inputSchema": obj(json!({ "n": { "type": "integer", "minimum": 1, "maximum": 100 },
                                     "delay_ms": { "type": "integer", "minimum": 0, "maximum": 5000 } }), &["n"]) },
        { "name": "payload", "description": "Returns a text result of the given size in bytes.",
          "inputSchema": obj(json!({ "bytes": { "type": "integer", "minimum": 0, "maximum": 16777216 } }), &["bytes"]) },
        { "name": "env_names", "description": "Lists the names of the environment variables this server can see.",
          "inputSchema": obj(json!({}), &[]) },
        { "name": "sleep", "description": "Waits for the given number of milliseconds.",
          "inputSchema": obj(json!({ "ms": { "type": "integer", "minimum": 0 } }), &["ms"]) },
        { "name": "emit_garbage", "description": "Writes a line that is not JSON-RPC to stdout, then answers.",
          "inputSchema": obj(json!({}), &[]) },
        { "name": "crash", "description": "Exits the server process at once.",
          "inputSchema": obj(json!({}), &[]) }
    ])
}

async fn handle(msg: &Message, tx: &mpsc::Sender<Vec<u8>>, cancels: &Cancels) -> Option<Message> {
    let id = msg.id()?.clone();
    let params: Value = msg.params().unwrap_or(Value::Null);
    let ok = |v: Value| Some(Message::response(&id, &v));
    let bad = |m: &str| Some(Message::error(Some(&id), ErrorCode::InvalidParams, m));
    match msg.method()? {
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = VERSIONS
                .iter()
                .find(|v| **v == asked)
                .unwrap_or(&VERSIONS[0]);
            ok(json!({
                "protocolVersion": version,
                "capabilities": { "tools": {}, "prompts": {}, "resources": {}, "logging": {} },
                "serverInfo": { "name": "palisade-demo", "version": env!("CARGO_PKG_VERSION") },
                "instructions": "A demo server: echo, add, count_slowly and friends."
            }))
        }
        "ping" | "logging/setLevel" => ok(json!({})),
        "tools/list" => {
            let mut all = tools();
            if PROBES.load(std::sync::atomic::Ordering::Relaxed)
                && let Some(list) = all.as_array_mut()
            {
                list.extend(probes::tools());
            }
            ok(json!({ "tools": all }))
        }
        "prompts/list" => ok(json!({ "prompts": [{
            "name": "greeting", "description": "Greets someone by name.",
            "arguments": [{ "name": "name", "description": "Who to greet", "required": true }]
        }]})),
        "prompts/get" => {
            if params.get("name").and_then(Value::as_str) != Some("greeting") {
                return bad("unknown prompt");
            }
            let who = params
                .pointer("/arguments/name")
                .and_then(Value::as_str)
                .unwrap_or("world");
            ok(json!({ "description": "A greeting", "messages": [
                { "role": "user", "content": { "type": "text", "text": format!("Say hello to {who}.") } }
            ]}))
        }
        "resources/list" => ok(json!({ "resources": [
            { "uri": "demo://readme", "name": "readme", "mimeType": "text/plain" }
        ]})),
        "resources/templates/list" => ok(json!({ "resourceTemplates": [] })),
        "resources/read" => match params.get("uri").and_then(Value::as_str) {
            Some("demo://readme") => ok(json!({ "contents": [
                { "uri": "demo://readme", "mimeType": "text/plain", "text": README }
            ]})),
            _ => Some(Message::error(
                Some(&id),
                ErrorCode::ResourceNotFound,
                "Resource not found",
            )),
        },
        "tools/call" => call_tool(&id, &params, tx, cancels).await,
        _ => Some(Message::error(
            Some(&id),
            ErrorCode::MethodNotFound,
            "Method not found",
        )),
    }
}

async fn call_tool(
    id: &Id,
    params: &Value,
    tx: &mpsc::Sender<Vec<u8>>,
    cancels: &Cancels,
) -> Option<Message> {
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let num = |k: &str| args.get(k).and_then(Value::as_f64);
    let int = |k: &str| args.get(k).and_then(Value::as_u64);
    let result = match params.get("name").and_then(Value::as_str).unwrap_or("") {
        "echo" => match args.get("text").and_then(Value::as_str) {
            Some(t) => text(t),
            None => return Some(tool_error(id, "`text` is required")),
        },
        "add" => match (num("a"), num("b")) {
            (Some(a), Some(b)) => text(format!("{}", a + b)),
            _ => return Some(tool_error(id, "`a` and `b` must be numbers")),
        },
        "count_slowly" => {
            let n = int("n").unwrap_or(3).clamp(1, 100);
            let delay = Duration::from_millis(int("delay_ms").unwrap_or(50).min(5000));
            let token = params.pointer("/_meta/progressToken").cloned();
            for i in 1..=n {
                tokio::time::sleep(delay).await;
                if let Some(t) = &token {
                    let note = Message::notification(
                        "notifications/progress",
                        &json!({ "progressToken": t, "progress": i, "total": n, "message": format!("step {i} of {n}") }),
                    );
                    let _ = tx.send(note.raw().to_vec()).await;
                }
            }
            text(format!("counted to {n}"))
        }
        "payload" => {
            let n = usize::try_from(int("bytes").unwrap_or(4096).min(16 << 20)).unwrap_or(4096);
            text("x".repeat(n))
        }
        "env_names" => {
            let mut names: Vec<String> = std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect();
            names.sort();
            json!({ "content": [{ "type": "text", "text": names.join("\n") }], "structuredContent": { "names": names } })
        }
        "sleep" => {
            let (ctx, crx) = tokio::sync::oneshot::channel();
            if let Ok(mut c) = cancels.lock() {
                c.insert(id.to_json(), ctx);
            }
            let ms = int("ms").unwrap_or(1000).min(3_600_000);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms)) => text(format!("slept {ms} ms")),
                _ = crx => return None,
            }
        }
        "emit_garbage" => {
            let _ = tx.send(b"this is not JSON-RPC {".to_vec()).await;
            let _ = tx.send(b"[1,2,3]".to_vec()).await;
            text("garbage sent")
        }
        "crash" => {
            eprintln!("demo-server: crashing on request");
            #[allow(
                clippy::disallowed_methods,
                reason = "crashing is this tool's whole purpose"
            )]
            std::process::exit(3)
        }
        name => {
            if PROBES.load(std::sync::atomic::Ordering::Relaxed)
                && let Some(r) = probes::call(name, &args).await
            {
                return Some(Message::response(id, &r));
            }
            return Some(Message::error(
                Some(id),
                ErrorCode::InvalidParams,
                "Unknown tool",
            ));
        }
    };
    Some(Message::response(id, &result))
}

fn tool_error(id: &Id, msg: &str) -> Message {
    Message::response(
        id,
        &json!({ "content": [{ "type": "text", "text": msg }], "isError": true }),
    )
}
