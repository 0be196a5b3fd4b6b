//! Black-box tests of the runtime limits: GCRA rate limits per principal, per tool
//! and for the whole gateway, concurrency per upstream and per principal, and per-tool
//! timeouts. A request over a limit gets
//! 429 with `Retry-After` and a JSON-RPC error, is never forwarded, and is recorded.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "tests: a failure is a test failure"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn setup(before: &str, after: &str) -> (Recorder, Gateway, Client) {
    with_recorder_tables(before, after).await
}

fn call_body(id: i64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

fn audit_calls(gw: &Gateway) -> Vec<Value> {
    gw.audit_events()
        .into_iter()
        .filter(|e| e["type"] == "call")
        .collect()
}

fn audit_denials(gw: &Gateway) -> Vec<String> {
    audit_calls(gw)
        .iter()
        .filter(|e| e["decision"] == "deny")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// OBS-01: a caller that keeps sending past its limit cannot flood the log: 60
/// refusals a minute are records, the rest one count per caller and reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_past_a_limit_are_recorded_within_a_budget_and_counted() {
    let (_rec, mut gw, c) = setup("[limits.rate]\nper_tool = \"1/h\"", "").await;
    assert_eq!(c.post(&call_body(0, "rec__echo")).await.status(), 200);
    for i in 1..=75 {
        assert_eq!(c.post(&call_body(i, "rec__echo")).await.status(), 429);
    }
    assert!(gw.terminate().success());
    assert_eq!(
        audit_denials(&gw)
            .iter()
            .filter(|r| *r == "rate limit (per tool)")
            .count(),
        60
    );
    let counted: Vec<Value> = gw
        .audit_events()
        .into_iter()
        .filter(|e| e["type"] == "refusals_counted")
        .collect();
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0]["of"], "call");
    assert_eq!(counted[0]["reason"], "rate limit (per tool)");
    assert_eq!(counted[0]["count"], 15);
    assert!(
        counted[0]["source"].as_str().unwrap().starts_with("local|"),
        "{counted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_over_its_rate_gets_429_with_retry_after_and_nothing_is_forwarded() {
    // The session's initialize counts as one of the four.
    let (rec, gw, c) = setup("[limits.rate]\nper_principal = \"4/m\"", "").await;
    for i in 0..3 {
        let r = c.post(&call_body(i, "rec__echo")).await;
        assert_eq!(r.status(), 200, "within the rate");
    }
    let r = c.post(&call_body(9, "rec__echo")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body = body_json(r).await;
    assert_eq!(body["error"]["code"], -32013, "{body}");
    assert_eq!(body["id"], 9);
    let calls = rec.methods().iter().filter(|m| *m == "tools/call").count();
    assert_eq!(calls, 3, "the refused call never reached the upstream");
    assert!(audit_denials(&gw).contains(&"rate limit (per principal)".to_owned()));

    // Over the rate, a caller opens no more sessions (each would open one on every
    // upstream) and its notifications are refused too; a cancellation still passes.
    let mut other = gw.client();
    let r = other.post(&init_body(20)).await;
    assert_eq!(r.status(), 429);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"});
    assert_eq!(c.post(&note).await.status(), 429);
    let cancel =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}});
    assert_eq!(c.post(&cancel).await.status(), 202);
    other.session = None;
    let inits = rec.methods().iter().filter(|m| *m == "initialize").count();
    assert_eq!(inits, 1, "no upstream session for the refused initialize");
    // OBS-01: refusals before any session or upstream are recorded too.
    let refused: Vec<(String, String)> = audit_calls(&gw)
        .iter()
        .filter(|e| e["decision"] == "deny")
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for method in [
        "tools/call",
        "initialize",
        "notifications/roots/list_changed",
    ] {
        assert!(
            refused.contains(&(method.to_owned(), "rate limit (per principal)".to_owned())),
            "{method}: {refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tool_is_limited_on_its_own() {
    let (_rec, _gw, c) = setup("[limits.rate]\nper_tool = \"2/h\"", "").await;
    let _ = c
        .request(&json!({"jsonrpc": "2.0", "id": 0, "method": "tools/list"}))
        .await;
    assert_eq!(c.post(&call_body(1, "rec__echo")).await.status(), 200);
    assert_eq!(c.post(&call_body(2, "rec__echo")).await.status(), 200);
    let r = c.post(&call_body(3, "rec__echo")).await;
    assert_eq!(r.status(), 429);
    assert!(
        body_json(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this tool's rate limit")
    );
    // Another tool, and requests that are not calls, are not held back by it.
    assert_eq!(c.post(&call_body(4, "rec__slow")).await.status(), 200);
    let ping = c
        .request(&json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}))
        .await;
    assert!(ping.get("result").is_some(), "{ping}");
}

/// A call of `rec__slow` taking `ms` on `slow` (ID 1) and, once it is in flight, a
/// call of `rec__echo` on `then` (ID 2): both answers.
async fn beside_a_slow_call(
    slow: &Client,
    then: &Client,
    ms: u64,
) -> (reqwest::Response, reqwest::Response) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "rec__slow", "arguments": {"ms": ms}}});
    let second = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        then.post(&call_body(2, "rec__echo")).await
    };
    tokio::join!(slow.post(&body), second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_takes_at_most_its_concurrency_and_a_slow_tool_its_own_timeout() {
    let (_rec, _gw, c) = setup(
        "",
        "max_concurrent = 1\ntool_timeouts = { \"slo*\" = \"400ms\" }\n",
    )
    .await;
    let _ = c
        .request(&json!({"jsonrpc": "2.0", "id": 0, "method": "tools/list"}))
        .await;
    // A slow call occupies the upstream's only slot…
    let started = Instant::now();
    let (first, second) = beside_a_slow_call(&c, &c, 1500).await;
    assert_eq!(second.status(), 429, "the upstream is busy");
    assert_eq!(second.headers()["retry-after"], "1");
    // …and times out at its own limit, long before the upstream's 1.5 s.
    let text = first.text().await.unwrap();
    assert!(text.contains("-32001"), "{text}");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    // The slot is free again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c.call(3, "rec__echo", json!({"x": 1})).await;
    assert!(r.get("result").is_some(), "{r}");
}

/// A principal holds at most `max_concurrent_per_principal` requests in flight, over
/// all its sessions; the next gets 429 with `Retry-After`, is never forwarded, and is
/// recorded; its slot is free once the first answer is out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_holds_at_most_its_share_of_requests_in_flight() {
    let (rec, gw, c) = setup("[limits]\nmax_concurrent_per_principal = 1", "").await;
    let mut other = gw.client();
    other.initialize().await;
    let (first, second) = beside_a_slow_call(&c, &other, 800).await;
    assert_eq!(
        second.status(),
        429,
        "the same principal on another session"
    );
    assert_eq!(second.headers()["retry-after"], "1");
    assert_eq!(body_json(second).await["error"]["code"], -32013);
    assert!(first.text().await.unwrap().contains("slow done"));
    let calls = rec.methods().iter().filter(|m| *m == "tools/call").count();
    assert_eq!(calls, 1, "the refused call never reached the upstream");
    assert!(audit_denials(&gw).contains(&"concurrency limit (per principal)".to_owned()));
    let r = other.call(3, "rec__echo", json!({"x": 1})).await;
    assert!(r.get("result").is_some(), "the slot is free again: {r}");
}

/// The gateway-wide rate is shared by every caller and session: past it, 429 with
/// `Retry-After`, nothing forwarded, recorded under its own reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_rate_holds_for_every_session_together() {
    // The two sessions' initializes are two of the five.
    let (rec, gw, c) = setup("[limits.rate]\nglobal = \"5/m\"", "").await;
    let mut other = gw.client();
    other.initialize().await;
    assert_eq!(c.post(&call_body(1, "rec__echo")).await.status(), 200);
    assert_eq!(other.post(&call_body(2, "rec__echo")).await.status(), 200);
    assert_eq!(c.post(&call_body(3, "rec__echo")).await.status(), 200);
    let r = other.post(&call_body(4, "rec__echo")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        body_json(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the gateway's request rate limit")
    );
    assert_eq!(c.post(&call_body(5, "rec__echo")).await.status(), 429);
    let calls = rec.methods().iter().filter(|m| *m == "tools/call").count();
    assert_eq!(calls, 3);
    assert!(audit_denials(&gw).contains(&"rate limit (global)".to_owned()));
}

#[test]
fn limits_are_shown_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        format!(
            "[limits]\nmax_concurrent_per_principal = 8\n[limits.rate]\nglobal = \"1000/s\"\nper_tool = \"60/m\"\nper_client = \"100/h\"\n{}max_concurrent = 4\ntool_timeouts = {{ \"search_*\" = \"5m\" }}\n",
            http_upstream("rec", "http://127.0.0.1:9/mcp")
        ),
    )
    .unwrap();
    let out = config_check(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("rate limits: global 1000/s, per principal off, per client 100/h, per tool 60/m; in flight per principal 8"),
        "{text}"
    );
    assert!(
        text.contains("rec in flight at most: 4") && text.contains("search_* 300s"),
        "{text}"
    );
    std::fs::write(
        &path,
        format!(
            "[limits.rate]\nglobal = \"lots\"\n{}",
            http_upstream("rec", "http://127.0.0.1:9/mcp")
        ),
    )
    .unwrap();
    let out = config_check(&path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a rate"));
}

/// One caller cannot take every session (each holds an upstream session on every
/// upstream): beyond `max_sessions_per_principal`, `initialize` gets 429 and opens
/// nothing upstream; a session closed frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_holds_at_most_its_share_of_sessions() {
    // `setup` opens the first session.
    let (rec, gw, first) = setup("[limits]\nmax_sessions_per_principal = 2", "").await;
    let mut second = gw.client();
    second.initialize().await;
    let inits = |rec: &Recorder| rec.methods().iter().filter(|m| *m == "initialize").count();
    let before = inits(&rec);
    let third = gw.client();
    let r = third.post(&init_body(7)).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("mcp-session-id").is_none());
    let body = body_json(r).await;
    assert_eq!(body["id"], 7, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many sessions"),
        "{body}"
    );
    assert_eq!(inits(&rec), before, "nothing was opened upstream");
    // OBS-01: the refusal is a security decision of its own in the audit log.
    assert_eq!(
        audit_denials(&gw),
        ["session limit (limits.max_sessions_per_principal)"],
        "recorded once, with the limit that decided it"
    );
    // Closing one makes room for another.
    assert!(first.delete().await.status().is_success());
    let mut again = gw.client();
    again.initialize().await;
    assert_eq!(
        gw.client().post(&init_body(8)).await.status(),
        429,
        "full again"
    );
}
