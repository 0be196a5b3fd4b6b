//! Tools that try to get out of a sandbox, offered only with `demo-server --probes`
//! (the sandbox tests run them from inside). Each answers what happened; an attempt
//! the kernel refused is a tool error naming the error.

use std::time::Duration;

use serde_json::{Value, json};

fn answer(r: Result<String, String>) -> Value {
    match r {
        Ok(t) => json!({ "content": [{ "type": "text", "text": t }] }),
        Err(e) => json!({ "content": [{ "type": "text", "text": e }], "isError": true }),
    }
}

/// The probe tools' definitions.
pub(crate) fn tools() -> Vec<Value> {
    let obj = |props: Value, req: &[&str]| json!({ "type": "object", "properties": props, "required": req });
    let path = obj(json!({ "path": { "type": "string" } }), &["path"]);
    let pid = obj(
        json!({ "pid": { "type": "integer", "minimum": 1 } }),
        &["pid"],
    );
    vec![
        json!({ "name": "probe_read", "description": "Reads a file.", "inputSchema": path }),
        json!({ "name": "probe_write", "description": "Writes a file.", "inputSchema": path }),
        json!({ "name": "probe_connect", "description": "Opens a TCP connection.",
                "inputSchema": obj(json!({ "addr": { "type": "string" } }), &["addr"]) }),
        json!({ "name": "probe_unix", "description": "Connects to a UNIX-domain socket by path.", "inputSchema": path.clone() }),
        json!({ "name": "probe_proxy", "description": "Opens a tunnel through $HTTPS_PROXY with CONNECT and sends a line through it.",
                "inputSchema": obj(json!({ "target": { "type": "string" } }), &["target"]) }),
        json!({ "name": "probe_ptrace", "description": "Attaches to a process with ptrace.", "inputSchema": pid }),
        json!({ "name": "probe_signal", "description": "Sends SIGCONT to a process.", "inputSchema": pid }),
        json!({ "name": "probe_alloc", "description": "Allocates and touches memory.",
                "inputSchema": obj(json!({ "mib": { "type": "integer", "minimum": 1 } }), &["mib"]) }),
        json!({ "name": "probe_spawn", "description": "Starts processes until refused.",
                "inputSchema": obj(json!({ "count": { "type": "integer", "minimum": 1, "maximum": 10000 } }), &["count"]) }),
    ]
}

/// Runs probe `name`, or `None` when there is no such probe.
#[allow(
    clippy::disallowed_methods,
    reason = "the probes are blocking by nature and run on a blocking thread"
)]
pub(crate) async fn call(name: &str, args: &Value) -> Option<Value> {
    let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let n = |k: &str| args.get(k).and_then(Value::as_u64).unwrap_or(0);
    let name = name.to_owned();
    let target = s("target");
    let (path, addr, num) = (
        s("path"),
        s("addr"),
        n(if name == "probe_alloc" {
            "mib"
        } else if name == "probe_spawn" {
            "count"
        } else {
            "pid"
        }),
    );
    let r = tokio::task::spawn_blocking(move || -> Option<Result<String, String>> {
        Some(match name.as_str() {
            "probe_read" => std::fs::read_to_string(&path)
                .map(|t| format!("read {} bytes", t.len()))
                .map_err(|e| format!("read {path}: {e}")),
            "probe_write" => std::fs::write(&path, "written by a probe")
                .map(|()| format!("wrote {path}"))
                .map_err(|e| format!("write {path}: {e}")),
            "probe_connect" => match addr.parse::<std::net::SocketAddr>() {
                Ok(a) => std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2))
                    .map(|_| format!("connected to {a}"))
                    .map_err(|e| format!("connect {a}: {e}")),
                Err(e) => Err(format!("{addr}: {e}")),
            },
            "probe_proxy" => proxy(&target),
            "probe_unix" => std::os::unix::net::UnixStream::connect(&path)
                .map(|_| format!("connected to {path}"))
                .map_err(|e| format!("connect {path}: {e}")),
            "probe_ptrace" => {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(num).unwrap_or(i32::MAX));
                match nix::sys::ptrace::attach(pid) {
                    Ok(()) => {
                        let _ = nix::sys::ptrace::detach(pid, None);
                        Ok(format!("attached to {pid}"))
                    }
                    Err(e) => Err(format!("ptrace {pid}: {e}")),
                }
            }
            "probe_signal" => {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(num).unwrap_or(i32::MAX));
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT)
                    .map(|()| format!("signalled {pid}"))
                    .map_err(|e| format!("kill {pid}: {e}"))
            }
            "probe_alloc" => {
                let bytes = usize::try_from(num)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(1 << 20);
                let mut v: Vec<u8> = Vec::new();
                match v.try_reserve_exact(bytes) {
                    Ok(()) => {
                        v.resize(bytes, 1);
                        Ok(format!("allocated {num} MiB"))
                    }
                    Err(e) => Err(format!("allocate {num} MiB: {e}")),
                }
            }
            "probe_spawn" => {
                let mut children = Vec::new();
                let mut refused = None;
                for _ in 0..num {
                    match std::process::Command::new("/bin/sleep")
                        .arg("30")
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                    {
                        Ok(c) => children.push(c),
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                }
                let started = children.len();
                for mut c in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                match refused {
                    None => Ok(format!("started {started} of {num}")),
                    Some(e) => Err(format!("started {started} of {num}, then: {e}")),
                }
            }
            _ => return None,
        })
    })
    .await
    .ok()??;
    Some(answer(r))
}

/// CONNECT `target` through the proxy named by `HTTPS_PROXY`, then send `ping` and
/// read one line back.
fn proxy(target: &str) -> Result<String, String> {
    use std::io::{BufRead, Write};
    let proxy = std::env::var("HTTPS_PROXY").map_err(|_| "HTTPS_PROXY is not set".to_owned())?;
    let addr = proxy
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{proxy}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut r = std::io::BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut status = String::new();
    r.read_line(&mut status).map_err(|e| e.to_string())?;
    let status = status.trim().to_owned();
    if !status.contains(" 200 ") {
        return Err(status);
    }
    let mut line = String::new();
    while r.read_line(&mut line).map_err(|e| e.to_string())? > 0 && !line.trim().is_empty() {
        line.clear();
    }
    writeln!(s, "ping").map_err(|e| e.to_string())?;
    let mut echoed = String::new();
    r.read_line(&mut echoed).map_err(|e| e.to_string())?;
    Ok(format!("{status}; echoed {}", echoed.trim()))
}
