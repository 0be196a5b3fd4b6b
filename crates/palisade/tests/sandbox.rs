//! The sandbox of stdio servers, proved from inside (LOC-01, LOC-02, LOC-05; OWASP
//! MCP04/MCP09): the demo server with `--probes` tries to get out through the gateway,
//! and every attempt fails while the gateway keeps serving. The same probes with the
//! sandbox switched off succeed, so the walls are the sandbox's doing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is a test failure"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "tests read small bodies from a gateway they started"
)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::{Value, json};

/// A directory anyone may write: a server the gateway starts as root runs as nobody.
fn open_dir(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let p = root.join(name);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    p
}

struct Fixture {
    _root: tempfile::TempDir,
    secret: std::path::PathBuf,
    outside: std::path::PathBuf,
    work: std::path::PathBuf,
    /// A TCP listener on loopback the server must not reach.
    listener: std::net::TcpListener,
    /// A UNIX-domain socket anyone may connect to (like a session bus or the Docker
    /// socket), which the server must not reach either.
    unix: std::path::PathBuf,
    _unix_listener: std::os::unix::net::UnixListener,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = open_dir(root.path(), "home");
    let ssh = open_dir(&home, ".ssh");
    let secret = ssh.join("id_ed25519");
    std::fs::write(&secret, "-----BEGIN OPENSSH PRIVATE KEY----- (test)").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let work = open_dir(root.path(), "work");
    let unix = root.path().join("bus.sock");
    let unix_listener = std::os::unix::net::UnixListener::bind(&unix).unwrap();
    std::fs::set_permissions(&unix, std::fs::Permissions::from_mode(0o777)).unwrap();
    Fixture {
        unix,
        _unix_listener: unix_listener,
        outside: home.join("planted"),
        secret,
        work,
        listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        _root: root,
    }
}

fn probes_upstream(extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"box\"\ntransport = \"stdio\"\ncommand = \"{BIN}\"\n\
         args = [\"demo-server\", \"--probes\"]\nenv = {{ DEMO_VISIBLE = \"yes\" }}\n{extra}"
    )
}

/// A gateway in front of the probing demo server, with a session.
async fn start_box(upstream: &str, env: &[(&str, &str)]) -> (Gateway, Client) {
    let gw = Gateway::start_with_env("", upstream, env);
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    (gw, c)
}

async fn probe(c: &Client, id: i64, tool: &str, args: Value) -> (bool, String) {
    let v = c.call(id, &format!("box__{tool}"), args).await;
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{tool}: {v}"))
        .to_owned();
    let ok = v["result"]["isError"] != true;
    eprintln!("{tool}: ok {ok}: {text}");
    (ok, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_sandbox_every_wall_holds_from_inside_and_the_gateway_keeps_serving() {
    let f = fixture();
    let upstream = probes_upstream(&format!(
        "[upstream.sandbox]\nwrite = [\"{}\"]\n[upstream.rlimits]\nmemory = \"256MiB\"\nprocesses = 24\n",
        f.work.display()
    ));
    let (gw, c) = start_box(&upstream, &[("GATEWAY_SECRET", "do-not-leak")]).await;
    let gw_pid = gw.pid();
    let port = f.listener.local_addr().unwrap().port();

    // Files outside its paths: not readable, not writable.
    let (ok, t) = probe(&c, 1, "probe_read", json!({"path": f.secret})).await;
    assert!(!ok && t.contains("denied"), "read ~/.ssh: {t}");
    let (ok, t) = probe(&c, 2, "probe_write", json!({"path": f.outside})).await;
    assert!(!ok && t.contains("denied"), "write outside: {t}");
    assert!(!f.outside.exists());
    let (ok, t) = probe(&c, 3, "probe_read", json!({"path": "/etc/shadow"})).await;
    assert!(!ok, "read /etc/shadow: {t}");
    // Inside its write path it works.
    let inside = f.work.join("note");
    let (ok, t) = probe(&c, 4, "probe_write", json!({"path": inside})).await;
    assert!(ok, "write inside: {t}");
    assert_eq!(
        std::fs::read_to_string(&inside).unwrap(),
        "written by a probe"
    );
    let (ok, t) = probe(&c, 5, "probe_read", json!({"path": inside})).await;
    assert!(ok, "read inside: {t}");

    // No network: neither a loopback listener nor the gateway itself.
    let (ok, t) = probe(
        &c,
        6,
        "probe_connect",
        json!({"addr": format!("127.0.0.1:{port}")}),
    )
    .await;
    assert!(!ok, "connect: {t}");
    let gw_addr = gw.base.trim_start_matches("http://").to_owned();
    let (ok, t) = probe(&c, 7, "probe_connect", json!({"addr": gw_addr})).await;
    assert!(!ok, "connect to the gateway: {t}");

    // No UNIX-domain sockets by path (the network namespace does not cover them).
    let (ok, t) = probe(&c, 15, "probe_unix", json!({"path": f.unix})).await;
    assert!(!ok && t.contains("not permitted"), "unix socket: {t}");

    // No debugging or signalling of the gateway.
    let (ok, t) = probe(&c, 8, "probe_ptrace", json!({"pid": gw_pid})).await;
    assert!(!ok, "ptrace: {t}");
    let (ok, t) = probe(&c, 9, "probe_signal", json!({"pid": gw_pid})).await;
    assert!(!ok, "signal: {t}");

    // Its environment is only what the config names, and the gateway's is unreadable.
    let v = c.call(10, "box__env_names", json!({})).await;
    assert_eq!(
        v["result"]["structuredContent"]["names"],
        json!(["DEMO_VISIBLE"]),
        "LOC-05"
    );
    let (ok, t) = probe(
        &c,
        11,
        "probe_read",
        json!({"path": format!("/proc/{gw_pid}/environ")}),
    )
    .await;
    assert!(!ok, "gateway environ: {t}");

    // Memory and processes are bounded.
    let (ok, t) = probe(&c, 12, "probe_alloc", json!({"mib": 1024})).await;
    assert!(!ok, "1 GiB under a 256 MiB limit: {t}");
    let (ok, t) = probe(&c, 13, "probe_spawn", json!({"count": 500})).await;
    assert!(!ok && t.contains("then:"), "fork bomb: {t}");

    // The gateway serves on, with the same child.
    let v = c.call(14, "box__add", json!({"a": 2, "b": 3})).await;
    assert_eq!(v["result"]["content"][0]["text"], "5", "{v}");
    let logs = gw.logs();
    assert!(logs.contains("stdio upstream sandboxed"), "{logs}");
}

/// The control: the same probes without the sandbox reach what the walls above keep
/// out, so those assertions test the sandbox, not the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_sandbox_off_is_explicit_and_lets_the_probes_through() {
    let f = fixture();
    let upstream = probes_upstream("[upstream.dangerous]\nsandbox = \"off\"\n");
    let (gw, c) = start_box(&upstream, &[]).await;
    let port = f.listener.local_addr().unwrap().port();
    let (ok, t) = probe(&c, 1, "probe_read", json!({"path": f.secret})).await;
    assert!(ok, "{t}");
    let (ok, t) = probe(&c, 2, "probe_write", json!({"path": f.outside})).await;
    assert!(ok, "{t}");
    let (ok, t) = probe(
        &c,
        3,
        "probe_connect",
        json!({"addr": format!("127.0.0.1:{port}")}),
    )
    .await;
    assert!(ok, "{t}");
    let (ok, t) = probe(&c, 4, "probe_spawn", json!({"count": 40})).await;
    assert!(ok, "{t}");
    let (ok, t) = probe(&c, 5, "probe_unix", json!({"path": f.unix})).await;
    assert!(ok, "{t}");
    assert!(gw.logs().contains("WITHOUT a sandbox"), "the start says so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_sandbox_host_network_is_a_choice() {
    let f = fixture();
    let upstream = probes_upstream("[upstream.sandbox]\nnetwork = \"host\"\n");
    let (_gw, c) = start_box(&upstream, &[]).await;
    let port = f.listener.local_addr().unwrap().port();
    let (ok, t) = probe(
        &c,
        1,
        "probe_connect",
        json!({"addr": format!("127.0.0.1:{port}")}),
    )
    .await;
    assert!(ok, "{t}");
    // Files stay walled.
    let (ok, t) = probe(&c, 2, "probe_read", json!({"path": f.secret})).await;
    assert!(!ok, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_sandbox_a_strict_syscall_allowlist_stops_what_it_does_not_name() {
    // An allowlist without `execve`: the server never runs, and the launcher says why.
    let upstream = probes_upstream(
        "[upstream.sandbox]\nsyscalls = [\"read\", \"write\", \"exit\", \"exit_group\"]\n",
    );
    let gw = Gateway::start("", &upstream);
    let mut logs = String::new();
    for _ in 0..100 {
        logs = gw.logs();
        if logs.contains("cannot execute") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        logs.contains("palisade sandbox: cannot execute")
            && logs.contains("Operation not permitted"),
        "{logs}"
    );
    assert!(!logs.contains("stdio upstream ready"), "{logs}");
}

/// LOC-01: the launch is pinned — the command, its arguments and the SHA-256 of the
/// executable. A changed binary is not started until a person approves it with
/// `palisade pins`, and then it starts without a restart of the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_01_a_changed_server_binary_waits_for_approval() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = work.path().join("server");
    std::fs::copy(BIN, &server).unwrap();
    let config = work.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n\
             [[upstream]]\nname = \"box\"\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"demo-server\"]\n",
            work.path().join("data").display(),
            server.display()
        ),
    )
    .unwrap();

    // First sight (tofu, the default): pinned, and it serves.
    {
        let gw = Gateway::spawn(tempfile::tempdir().unwrap(), &config, &[]);
        gw.ready().await;
        let mut c = gw.client();
        c.initialize().await;
        let v = c.call(1, "box__add", json!({"a": 1, "b": 1})).await;
        assert_eq!(v["result"]["content"][0]["text"], "2", "{v}");
    }

    // The executable changes under the same path and name (one byte appended).
    let mut bytes = std::fs::read(&server).unwrap();
    bytes.push(0);
    std::fs::write(&server, bytes).unwrap();
    let gw = Gateway::spawn(tempfile::tempdir().unwrap(), &config, &[]);
    let health = |gw: &Gateway| {
        let url = format!("{}/healthz", gw.base);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let mut h = String::new();
    for _ in 0..50 {
        h = health(&gw).await;
        if h.contains("waits for approval") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        h.contains("not started") && h.contains("waits for approval"),
        "{h}"
    );
    assert!(
        !gw.logs().contains("started stdio upstream"),
        "the changed binary ran"
    );

    // The CLI shows it pending with the new hash, and approves it.
    let out = cli(&["pins", "list"], &config, None);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains("launch") && listed.contains("pending"),
        "{listed}"
    );
    let out = cli(&["pins", "approve", "box", "launch"], &config, None);
    assert!(out.status.success(), "{out:?}");
    let mut c = gw.client();
    let mut served = false;
    for _ in 0..100 {
        if health(&gw).await.contains("\"box\":\"ready\"") {
            c.initialize().await;
            let v = c.call(1, "box__add", json!({"a": 2, "b": 2})).await;
            served = v["result"]["content"][0]["text"] == "4";
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(served, "started after approval:\n{}", gw.logs());
}

/// `network = "proxy"`: the server's only way out is the gateway's egress proxy,
/// which tunnels only to `allow_hosts`, never to a name that resolves to a
/// non-public address, and the server cannot connect anywhere directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_sandbox_egress_goes_only_through_the_proxy_to_allowed_hosts() {
    // A line echo server outside the sandbox, on loopback.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in echo.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{BufRead, Write};
                let mut w = conn.try_clone().unwrap();
                let mut line = String::new();
                let _ = std::io::BufReader::new(conn).read_line(&mut line);
                let _ = w.write_all(line.as_bytes());
            });
        }
    });
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let upstream = probes_upstream(&format!(
        "[upstream.sandbox]\nnetwork = \"proxy\"\nallow_hosts = [\"127.0.0.1:{port}\", \"localhost:{port}\"]\n"
    ));
    let (gw, c) = start_box(&upstream, &[]).await;

    let (ok, t) = probe(
        &c,
        1,
        "probe_proxy",
        json!({"target": format!("127.0.0.1:{port}")}),
    )
    .await;
    assert!(ok && t.ends_with("echoed ping"), "allowed: {t}");
    let (ok, t) = probe(
        &c,
        2,
        "probe_proxy",
        json!({"target": format!("127.0.0.1:{other_port}")}),
    )
    .await;
    assert!(!ok && t.contains("403"), "not allowed: {t}");
    // Allowed by name, but the name resolves to loopback: refused.
    let (ok, t) = probe(
        &c,
        3,
        "probe_proxy",
        json!({"target": format!("localhost:{port}")}),
    )
    .await;
    assert!(!ok && t.contains("403"), "non-public by name: {t}");
    // No way around the proxy.
    let (ok, t) = probe(
        &c,
        4,
        "probe_connect",
        json!({"addr": format!("127.0.0.1:{port}")}),
    )
    .await;
    assert!(!ok, "direct connect: {t}");
    let logs = gw.logs();
    assert!(
        logs.contains("egress tunnel opened") && logs.contains("egress refused"),
        "{logs}"
    );
    // OBS-01: each decision is an audit record, the tunnel's written before it opens.
    let egress: Vec<Value> = gw
        .audit_events()
        .into_iter()
        .filter(|e| e["type"] == "egress")
        .collect();
    let has = |target: String, decision: &str, reason: Option<&str>| {
        egress.iter().any(|e| {
            e["upstream"] == "box"
                && e["target"] == target.as_str()
                && e["decision"] == decision
                && reason.is_none_or(|r| e["reason"] == r)
        })
    };
    assert!(
        has(format!("127.0.0.1:{port}"), "allow", None),
        "{egress:?}"
    );
    assert!(
        egress.iter().any(|e| e["decision"] == "allow"
            && e["addresses"][0] == format!("127.0.0.1:{port}").as_str()),
        "the address the tunnel goes to: {egress:?}"
    );
    assert!(
        has(
            format!("127.0.0.1:{other_port}"),
            "deny",
            Some("not in allow_hosts")
        ),
        "{egress:?}"
    );
    assert!(
        has(
            format!("localhost:{port}"),
            "deny",
            Some("resolves to a non-public address")
        ),
        "{egress:?}"
    );
}

/// The same walls when the gateway itself runs unprivileged (a developer's own
/// account): the launcher then maps its own user into the new user namespace instead
/// of leaving root. Run from root, the test starts the gateway as `nobody`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_sandbox_walls_hold_for_an_unprivileged_gateway_too() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    if !root {
        // Every other test here already runs unprivileged.
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{}[upstream.sandbox]\nwrite = [\"{}\"]\n",
            dir.path().join("data").display(),
            probes_upstream(""),
            f.work.display()
        ),
    )
    .unwrap();
    let gw = Gateway::spawn_via(
        dir,
        &config,
        &[],
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
    );
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    let port = f.listener.local_addr().unwrap().port();
    let (ok, t) = probe(&c, 1, "probe_read", json!({"path": f.secret})).await;
    assert!(!ok && t.contains("denied"), "read ~/.ssh: {t}");
    let (ok, t) = probe(&c, 2, "probe_write", json!({"path": f.work.join("n")})).await;
    assert!(ok, "write inside: {t}");
    let (ok, t) = probe(
        &c,
        3,
        "probe_connect",
        json!({"addr": format!("127.0.0.1:{port}")}),
    )
    .await;
    assert!(!ok, "connect: {t}");
    let (ok, t) = probe(&c, 4, "probe_ptrace", json!({"pid": gw.pid()})).await;
    assert!(!ok, "ptrace the (same-user) gateway: {t}");
    let (ok, t) = probe(&c, 6, "probe_unix", json!({"path": f.unix})).await;
    assert!(!ok, "a same-user UNIX socket: {t}");
    let (ok, t) = probe(&c, 5, "probe_spawn", json!({"count": 500})).await;
    assert!(!ok && t.contains("then:"), "fork bomb: {t}");
}
