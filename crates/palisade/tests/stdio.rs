//! Black-box tests of stdio upstreams (LOC-*) and of the binary's life cycle.

#![allow(
    clippy::disallowed_methods,
    reason = "tests read small bodies from a gateway they started"
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_05_the_child_sees_only_its_configured_environment() {
    let gw = Gateway::start_with_env(
        "",
        &demo_upstream("demo"),
        &[("GATEWAY_SECRET", "do-not-leak")],
    );
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    let v = c.call(1, "demo__env_names", json!({})).await;
    let names: Vec<String> =
        serde_json::from_value(v["result"]["structuredContent"]["names"].clone()).unwrap();
    assert_eq!(names, vec!["DEMO_VISIBLE".to_owned()], "LOC-05");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_child_starts_with_its_rlimits_and_serves() {
    let out = tempfile::tempdir().unwrap();
    // The sandboxed child may write here (as nobody, when the gateway runs as root).
    std::fs::set_permissions(
        out.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let file = out.path().join("limits");
    let upstream = format!(
        "[[upstream]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = \"/bin/sh\"\n\
         args = [\"-c\", \"(ulimit -d; ulimit -t; ulimit -n) > {}; exec {BIN} demo-server\"]\n\
         [upstream.rlimits]\nmemory = \"256MiB\"\ncpu_time = \"30s\"\nopen_files = 64\n\
         [upstream.sandbox]\nread = [\"{BIN}\"]\nwrite = [\"{}\"]\n",
        file.display(),
        out.path().display()
    );
    let gw = Gateway::start("", &upstream);
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    let v = c.call(1, "demo__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(v["result"]["content"][0]["text"], "3", "{v}");
    // sh reports the data limit in KiB.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "262144\n30\n64\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_03_garbage_on_stdout_is_dropped_and_logged() {
    let (gw, c) = with_demo("").await;
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo__emit_garbage","arguments":{}}}))
        .await;
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("not JSON-RPC"),
        "LOC-03: garbage reached the client: {text}"
    );
    assert!(text.contains("garbage sent"));
    assert!(gw.logs().contains("LOC-03"), "the drop is logged");
    // The child still serves.
    let v = c.call(2, "demo__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(v["result"]["content"][0]["text"], "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_child_is_restarted_and_clients_get_a_clear_error_meanwhile() {
    let (gw, c) = with_demo("").await;
    let v = c.call(1, "demo__crash", json!({})).await;
    assert_eq!(v["error"]["code"], -32010, "{v}");
    let mut ok = false;
    for i in 0..100 {
        let v = c.call(10 + i, "demo__echo", json!({"text": "back"})).await;
        if v["result"]["content"][0]["text"] == "back" {
            ok = true;
            break;
        }
        assert_eq!(
            v["error"]["code"], -32010,
            "a clear error while restarting: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the child came back:\n{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loc_06_sigterm_drains_and_stops_the_children() {
    let mut gw = Gateway::start("", &demo_upstream("demo"));
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    // A call in flight when SIGTERM arrives still completes.
    let pending = tokio::spawn({
        let url = c.url.clone();
        let session = c.session.clone();
        async move {
            let c = Client {
                http: reqwest::Client::new(),
                url,
                session,
                logs: None,
            };
            c.call(1, "demo__sleep", json!({"ms": 400})).await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gw_pid = gw.pid();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let v = pending.await.unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"], "slept 400 ms",
        "drained: {v}"
    );
    // No demo-server child of the gateway is left.
    let out = Command::new("pgrep")
        .args(["-P", &gw_pid.to_string()])
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "children left: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_ready_with_upstream_states() {
    let gw = Gateway::start("", &demo_upstream("demo"));
    gw.ready().await;
    let v: serde_json::Value = reqwest::get(format!("{}/healthz", gw.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["upstreams"]["demo"], "ready");
}

#[test]
fn config_check_names_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[gateway]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 3") && err.contains("lisen"),
        "{err}"
    );
    let good = Command::new(BIN)
        .args([
            "config",
            "check",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/quickstart.toml"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("demo (stdio)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_08_sse_is_relayed_as_it_happens_not_buffered() {
    use futures_util::StreamExt;
    let (_gw, c) = with_demo("[limits]\nshutdown_grace = \"100ms\"").await;
    // Twenty steps 300 ms apart: the first progress event must reach the client while the
    // call is still running upstream.
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"demo__count_slowly","arguments":{"n":20,"delay_ms":300},"_meta":{"progressToken":"t"}}}))
        .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("notifications/progress") {
        let chunk = body.next().await.expect("stream open").unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        !seen.contains("counted to"),
        "the result cannot be there yet: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_06_the_hard_cap_holds_despite_progress() {
    let (gw, c) =
        with_demo("[limits]\nrequest_timeout = \"400ms\"\nmax_request_timeout = \"1s\"").await;
    // Progress every 150 ms keeps the idle timeout (400 ms) from firing; the cap (1 s)
    // ends the call anyway.
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
            "name":"demo__count_slowly","arguments":{"n":40,"delay_ms":150},"_meta":{"progressToken":"t"}}}))
        .await;
    let msgs = sse_messages(&r.text().await.unwrap());
    let progress = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    let last = msgs.last().unwrap();
    assert!(
        progress >= 3,
        "progress kept it alive past the idle timeout: {progress}"
    );
    assert_eq!(last["error"]["code"], -32001, "{last}");
    // The child was told (it logs the cancellation on stderr, which the gateway logs).
    let mut told = false;
    for _ in 0..60 {
        if gw.logs().contains("demo-server: cancelled") {
            told = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        told,
        "LIFE-06: notifications/cancelled reached the child:\n{}",
        gw.logs()
    );
}

/// A local server's stderr is logged line by line (ARCHITECTURE: the terminal
/// invariant): what it writes there — a carriage return, a right-to-left override, an
/// escape sequence — cannot overwrite, forge or reorder the gateway's log lines, in
/// text or in JSON; the JSON line still decodes to exactly what the server wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_stderr_cannot_forge_or_hide_the_gateways_log_lines() {
    let said = "said\r2026-11-27T00:00:00Z  INFO palisade: approved \u{202e}gpj.exe\u{1b}[2K";
    let upstream = format!(
        "[[upstream]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = \"/bin/sh\"\n\
         args = [\"-c\", \"printf 'said\\\\r2026-11-27T00:00:00Z  INFO palisade: approved \
         \\\\342\\\\200\\\\256gpj.exe\\\\033[2K\\\\n' >&2; exec {BIN} demo-server\"]\n\
         [upstream.sandbox]\nread = [\"{BIN}\"]\n"
    );
    for json in [false, true] {
        let env: &[(&str, &str)] = if json {
            &[("PALISADE_LOG_FORMAT", "json")]
        } else {
            &[]
        };
        let gw = Gateway::start_with_env("", &upstream, env);
        gw.ready().await;
        let mut c = gw.client();
        c.initialize().await;
        let mut logs = String::new();
        for _ in 0..100 {
            logs = gw.logs();
            if logs.contains("stderr: said") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let line = logs
            .lines()
            .find(|l| l.contains("stderr: said"))
            .unwrap_or_else(|| panic!("the stderr line is logged:\n{logs}"));
        assert!(
            !logs
                .chars()
                .any(|c| c != '\n' && (c.is_control() || ('\u{2028}'..='\u{202e}').contains(&c))),
            "nothing raw in the log (json: {json}):\n{logs:?}"
        );
        assert!(line.contains("approved"), "{line}");
        if json {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let message = v["fields"]["message"].as_str().unwrap_or_default();
            assert!(message.ends_with(said), "{message:?}");
        } else {
            assert!(line.contains("said\\u{d}2026"), "{line}");
            assert!(line.contains("\\u{202e}gpj.exe"), "{line}");
        }
    }
}
