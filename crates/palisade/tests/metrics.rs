//! Black-box test of the admin listener's Prometheus metrics: decisions, denials by
//! reason, findings by rule, quarantines, sessions and upstream latency, counted from
//! what the gateway decided — and served only on the admin listener.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "tests: a failure is a test failure"
)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_decisions_denials_findings_and_latency() {
    let port = free_port();
    let (_rec, gw, c) = with_recorder_tables(
        &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n[limits.rate]\nper_tool = \"2/h\""),
        "",
    )
    .await;
    let _ = c
        .request(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    let ok = c.call(2, "rec__echo", json!({"x": 1})).await;
    assert!(ok.get("result").is_some(), "{ok}");
    let held = c.call(3, "rec__lookup", json!({"word": "x"})).await;
    assert_eq!(held["error"]["code"], -32012);
    let _ = c.call(4, "rec__echo", json!({"x": 2})).await;
    let limited = c
        .post(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "rec__echo", "arguments": {}}}))
        .await;
    assert_eq!(limited.status(), 429);

    let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    for line in [
        "palisade_decisions_total{method=\"tools/call\",decision=\"allow\"} 2",
        "palisade_decisions_total{method=\"tools/call\",decision=\"deny\"} 2",
        "palisade_decisions_total{method=\"tools/list\",decision=\"allow\"} 1",
        "palisade_denials_total{reason=\"quarantined\"} 1",
        "palisade_denials_total{reason=\"rate limit (per tool)\"} 1",
        "palisade_pins_quarantined_total 1",
        "palisade_sessions 1",
        "palisade_sessions_opened_total 1",
        "palisade_upstream_request_seconds_count{upstream=\"rec\"} 2",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(
        text.lines().any(
            |l| l.starts_with("palisade_inspection_findings_total{rule=\"INJ-")
                && l.contains("action=\"block\"")
        ),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    // The MCP listener does not serve it.
    let main = reqwest::get(format!("{}/metrics", gw.base)).await.unwrap();
    assert_eq!(main.status(), 404);
}

#[test]
fn the_admin_listener_must_be_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        format!(
            "[admin]\nlisten = \"0.0.0.0:9464\"\n{}",
            demo_upstream("demo")
        ),
    )
    .unwrap();
    let out = config_check(&path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
