//! Black-box tests of sessions (SESS-*) and the JSON-RPC lifecycle (LIFE-*).

#![allow(
    clippy::disallowed_methods,
    reason = "tests read small bodies from a gateway they started"
)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sess_01_02_09_ids_are_minted_here_and_upstream_ids_never_leak() {
    let (rec, url) = start_recorder().await;
    let gw = Gateway::start("", &http_upstream("rec", &url));
    gw.ready().await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let mut c = gw.client();
        let r = c.post(&init_body(1)).await;
        let headers = format!("{:?}", r.headers());
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let body = r.text().await.unwrap();
        assert!(
            id.len() >= 32 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "SESS-01/02: {id}"
        );
        assert!(
            !headers.contains(UPSTREAM_SESSION) && !body.contains(UPSTREAM_SESSION),
            "SESS-09"
        );
        assert!(ids.insert(id.clone()));
        c.session = Some(id);
        let list = c
            .request(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
            .await;
        assert!(!list.to_string().contains(UPSTREAM_SESSION));
    }
    // The upstream saw its own session ID on the gateway's requests, not the client's.
    let seen = rec.seen.lock().unwrap();
    assert!(seen.iter().all(|s| {
        s.headers
            .get("mcp-session-id")
            .is_none_or(|v| v == UPSTREAM_SESSION)
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sess_04_life_01_requests_without_a_session_are_400() {
    let gw = Gateway::start("", &demo_upstream("demo"));
    gw.ready().await;
    let c = gw.client();
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(r.status(), 400, "LIFE-01: tools/list before initialize");
    // A second initialize on an existing session is refused too.
    let mut c = gw.client();
    c.initialize().await;
    let r = c.post(&init_body(5)).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sess_05_06_unknown_and_deleted_sessions_are_404() {
    let gw = Gateway::start("", &demo_upstream("demo"));
    gw.ready().await;
    let mut c = gw.client();
    c.session = Some("0".repeat(64));
    assert_eq!(
        c.post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .await
            .status(),
        404
    );
    c.initialize().await;
    assert_eq!(
        c.post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .await
            .status(),
        200
    );
    let del = c.delete().await;
    assert!(del.status().is_success(), "SESS-06");
    assert_eq!(
        c.post(&json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
            .await
            .status(),
        404,
        "SESS-05"
    );
    let again = c.delete().await;
    assert_eq!(again.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sess_07_idle_sessions_expire() {
    let (_gw, c) = with_demo("[limits]\nsession_idle_timeout = \"1s\"").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        c.post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .await
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_02_unknown_versions_are_answered_with_the_latest() {
    let gw = Gateway::start("", &demo_upstream("demo"));
    gw.ready().await;
    let mut c = gw.client();
    let v = c
        .initialize_with(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2099-01-01","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}))
        .await;
    assert_eq!(v["result"]["protocolVersion"], "2025-11-25");
    let v = c
        .initialize_with(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}))
        .await;
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_03_server_requests_need_the_clients_capability() {
    let (rec, url) = start_recorder().await;
    let gw = Gateway::start("", &http_upstream("rec", &url));
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await; // declares no sampling capability
    let r = c.post(&json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"rec__sample","arguments":{}}})).await;
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("sampling/createMessage"),
        "LIFE-03: delivered {text}"
    );
    assert!(text.contains("sampled"));
    // The gateway answered the upstream's request with an error instead.
    let refused = rec
        .bodies()
        .into_iter()
        .any(|b| b["id"] == 99 && b.get("error").is_some());
    assert!(refused, "{:?}", rec.bodies());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_03_client_calls_to_features_nobody_offers_are_method_not_found() {
    let (_rec, _gw, c) = with_recorder("").await;
    let v = c
        .request(&json!({"jsonrpc":"2.0","id":1,"method":"prompts/list"}))
        .await;
    assert_eq!(v["error"]["code"], -32601);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_04_ids_are_remapped_per_upstream_and_null_ids_refused() {
    let (rec, url) = start_recorder().await;
    let gw = Gateway::start("", &http_upstream("rec", &url));
    gw.ready().await;
    let mut a = gw.client();
    a.initialize().await;
    let mut b = gw.client();
    b.initialize().await;
    let call = |who: &str| json!({"jsonrpc":"2.0","id":"same","method":"tools/call","params":{"name":"rec__echo","arguments":{"who":who}}});
    let (ca, cb) = (call("a"), call("b"));
    let (ra, rb) = tokio::join!(a.request(&ca), b.request(&cb));
    assert_eq!(ra["id"], "same");
    assert_eq!(rb["id"], "same");
    assert!(
        ra["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\"a\"")
    );
    assert!(
        rb["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\"b\"")
    );
    // Upstream IDs are the gateway's, never the client's.
    let calls: Vec<Value> = rec
        .bodies()
        .into_iter()
        .filter(|b| b["method"] == "tools/call")
        .collect();
    assert!(calls.iter().all(|b| b["id"].is_i64()), "{calls:?}");
    let r = a
        .post(&json!({"jsonrpc":"2.0","id":null,"method":"ping"}))
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_05_unsolicited_client_responses_are_dropped() {
    let (rec, _gw, c) = with_recorder("").await;
    let before = rec.bodies().len();
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":"palisade-77","result":{}}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(rec.bodies().len(), before, "LIFE-05: not forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_06_timeouts_answer_the_client_and_cancel_upstream() {
    let (rec, _gw, c) = with_recorder("[limits]\nrequest_timeout = \"300ms\"").await;
    let v = c.call(11, "rec__slow", json!({"ms": 3000})).await;
    assert_eq!(v["id"], 11);
    assert_eq!(v["error"]["code"], -32001, "{v}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cancelled: Vec<Value> = rec
        .bodies()
        .into_iter()
        .filter(|b| b["method"] == "notifications/cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1, "LIFE-06: {:?}", rec.methods());
    let slow_id = rec
        .bodies()
        .into_iter()
        .find(|b| b["params"]["name"] == "slow")
        .map(|b| b["id"].clone())
        .unwrap();
    assert_eq!(
        cancelled[0]["params"]["requestId"], slow_id,
        "the upstream's own ID"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feat_03_names_are_namespaced_per_upstream() {
    let (_rec, url) = start_recorder().await;
    let gw = Gateway::start(
        "",
        &format!("{}{}", demo_upstream("demo"), http_upstream("rec", &url)),
    );
    gw.ready().await;
    let mut c = gw.client();
    c.initialize().await;
    let v = c
        .request(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"demo__echo") && names.contains(&"rec__echo"),
        "{names:?}"
    );
    assert!(!names.contains(&"echo"));
    assert!(
        !names.contains(&"rec__broken"),
        "FEAT-04: a tool without inputSchema is dropped"
    );
    let v = c.call(2, "demo__echo", json!({"text": "hi"})).await;
    assert_eq!(v["result"]["content"][0]["text"], "hi");
    let v = c.call(3, "nobody__echo", json!({})).await;
    assert_eq!(v["error"]["code"], -32602);
    let v = c.call(4, "echo", json!({})).await;
    assert_eq!(v["error"]["code"], -32602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sess_08_relayed_requests_are_answerable_only_from_their_own_session() {
    let (rec, url) = start_recorder().await;
    let gw = Gateway::start("", &http_upstream("rec", &url));
    gw.ready().await;
    let mut a = gw.client();
    a.initialize_with(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"a","version":"1"}}}))
        .await;
    let mut b = gw.client();
    b.initialize().await;
    let r = a
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rec__sample","arguments":{}}}))
        .await;
    let msgs = sse_messages(&r.text().await.unwrap());
    let ask = msgs
        .iter()
        .find(|m| m["method"] == "sampling/createMessage")
        .expect("relayed to a client with sampling");
    let relayed_id = ask["id"].clone();
    assert_ne!(relayed_id, 99, "the upstream's ID is not exposed");
    let answer = json!({"jsonrpc":"2.0","id":relayed_id,"result":{"role":"assistant","content":{"type":"text","text":"hi"},"model":"m"}});
    // Session B cannot answer A's request.
    assert_eq!(b.post(&answer).await.status(), 202);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answered = |rec: &Recorder| {
        rec.bodies()
            .into_iter()
            .filter(|x| x["id"] == 99 && x.get("result").is_some())
            .count()
    };
    assert_eq!(answered(&rec), 0, "SESS-08: B's answer was dropped");
    // A can, and the upstream gets its own ID back.
    assert_eq!(a.post(&answer).await.status(), 202);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(answered(&rec), 1);
}
