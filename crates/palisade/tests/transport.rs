//! Black-box tests of the Streamable HTTP transport rules (TR-*), against the real
//! binary, with a recording upstream.

#![allow(
    clippy::disallowed_methods,
    reason = "tests read small bodies from a gateway they started"
)]

mod common;

use common::*;
use serde_json::{Value, json};

async fn gateway_with_recorder() -> (Gateway, Recorder) {
    let (rec, url) = start_recorder().await;
    let gw = Gateway::start("", &http_upstream("rec", &url));
    gw.ready().await;
    (gw, rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_01_one_endpoint_serves_post_get_and_delete() {
    let (gw, _rec) = gateway_with_recorder().await;
    let mut c = gw.client();
    c.initialize().await;
    let get = c
        .http
        .get(&c.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "text/event-stream");
    drop(get);
    let del = c.delete().await;
    assert!(del.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_02_a_foreign_origin_gets_403_and_nothing_is_forwarded() {
    let (gw, rec) = gateway_with_recorder().await;
    let c = gw.client();
    let r = c
        .post_raw(init_body(1).to_string())
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(v.get("error").is_some() && v.get("id").is_none());
    assert!(
        rec.bodies().is_empty(),
        "TR-02: the upstream saw {:?}",
        rec.methods()
    );
    // No Origin at all is fine (non-browser clients).
    assert_eq!(c.post(&init_body(2)).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_02_an_allowlisted_origin_passes() {
    let (_rec, url) = start_recorder().await;
    let gw = Gateway::start(
        "allowed_origins = [\"http://localhost:6274\"]",
        &http_upstream("rec", &url),
    );
    gw.ready().await;
    let c = gw.client();
    let r = c
        .post_raw(init_body(1).to_string())
        .header("origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_03_a_foreign_host_on_a_loopback_bind_is_refused() {
    let (gw, rec) = gateway_with_recorder().await;
    let c = gw.client();
    for host in ["evil.com", "evil.com:8787", "localhost.evil.com"] {
        let r = c
            .post_raw(init_body(1).to_string())
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{host}: {}", r.status());
    }
    assert!(rec.bodies().is_empty());
    let r = c
        .http
        .get(format!("{}/healthz", gw.base))
        .header("host", "evil.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "healthz is behind the Host check too");

    // An absolute-form request target names the host too; it must agree with `Host`.
    let addr = gw.base.strip_prefix("http://").unwrap();
    let body = init_body(1).to_string();
    let raw = format!(
        "POST http://evil.com/mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, raw.as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut reply)
        .await
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(rec.bodies().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_05_accept_headers_are_enforced() {
    let (gw, _rec) = gateway_with_recorder().await;
    let c = gw.client();
    let r = c
        .http
        .post(&c.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(init_body(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = c
        .http
        .post(&c.url)
        .header("content-type", "text/plain")
        .header("accept", ACCEPT)
        .body(init_body(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_06_a_batch_is_400_and_never_forwarded() {
    let (gw, rec) = gateway_with_recorder().await;
    let mut c = gw.client();
    c.initialize().await;
    let before = rec.bodies().len();
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/list"},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rec__echo","arguments":{}}}
    ]);
    let r = c.post(&batch).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32600);
    assert!(v.get("id").is_none());
    assert_eq!(rec.bodies().len(), before, "TR-06: nothing forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_07_notifications_get_202_with_an_empty_body() {
    let (gw, _rec) = gateway_with_recorder().await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c
        .post(&json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed"}))
        .await;
    assert_eq!(r.status(), 202);
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_08_09_10_sse_streams_prime_and_resume_only_within_their_session() {
    let (gw, c) = with_demo("").await;
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"demo__count_slowly","arguments":{"n":3,"delay_ms":20},"_meta":{"progressToken":"p1"}}});
    let r = c.post(&call).await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    // TR-10: a priming event (an ID with empty data) and a retry hint come first.
    assert!(text.starts_with("id: "), "{text}");
    let first_event = text.split("\n\n").next().unwrap();
    assert!(
        first_event.contains("retry: ") && first_event.contains("data: "),
        "{first_event}"
    );
    let msgs = sse_messages(&text);
    assert_eq!(
        msgs.len(),
        4,
        "three progress notifications and the result: {text}"
    );
    assert_eq!(
        msgs[0]["params"]["progressToken"], "p1",
        "the client's own token comes back"
    );
    assert_eq!(msgs[3]["id"], 7);
    // TR-09: event IDs name the stream; resuming after the first progress event on the
    // same session replays the rest of that stream only.
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    let after = ids[1];
    let resumed = c.get_sse(Some(after)).await;
    assert_eq!(resumed.status(), 200);
    let replay = sse_messages(&resumed.text().await.unwrap());
    assert_eq!(replay.len(), 3, "{replay:?}");
    assert_eq!(replay[2]["id"], 7);
    // Another session (same user) cannot resume this stream.
    let mut other = gw.client();
    other.initialize().await;
    let cross = other.get_sse(Some(after)).await;
    assert_eq!(
        cross.status(),
        404,
        "TR-09: nothing replayed across sessions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_11_an_unsupported_protocol_version_is_400() {
    let (gw, _rec) = gateway_with_recorder().await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c
        .http
        .post(&c.url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .header("mcp-session-id", c.session.clone().unwrap())
        .header("mcp-protocol-version", "1999-01-01")
        .body(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_12_invalid_json_or_utf8_is_400_parse_error_and_never_forwarded() {
    let (gw, rec) = gateway_with_recorder().await;
    let mut c = gw.client();
    c.initialize().await;
    let before = rec.bodies().len();
    for body in [
        b"{\"jsonrpc\":\"2.0\",".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}".to_vec(),
    ] {
        let r = c.post_raw(body).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], -32700);
    }
    assert_eq!(rec.bodies().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_with_a_json_rpc_error() {
    let (_rec, gw, c) = with_recorder("[limits]\nmax_request_bytes = 1024").await;
    let big = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rec__echo","arguments":{"x":"a".repeat(4096)}}});
    let r = c.post(&big).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32011);
    // OBS-01: the refusal is a record of its own.
    let audit = std::fs::read_to_string(gw.dir.path().join("data/audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| {
            let e = &serde_json::from_str::<Value>(l).unwrap()["event"];
            e["type"] == "call"
                && e["decision"] == "deny"
                && e["reason"] == "limits.max_request_bytes"
        }),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_13_a_client_disconnect_does_not_cancel_upstream() {
    let (gw, rec) = gateway_with_recorder().await;
    let mut c = gw.client();
    c.initialize().await;
    let call = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"rec__slow","arguments":{"ms":600}}});
    // Give up on the response after 100 ms: the connection is dropped mid-call.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(100), c.post(&call)).await;
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert!(
        !rec.methods().iter().any(|m| m == "notifications/cancelled"),
        "TR-13: {:?}",
        rec.methods()
    );
    // The call ran to its end in the gateway: its ID is free for a new request
    // (a request abandoned half-way would hold it: "request id already in use").
    let again = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"rec__echo","arguments":{}}});
    let v: Value = c.post(&again).await.json().await.unwrap();
    assert!(v.get("result").is_some(), "TR-13: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcp_02_auth_15_client_headers_never_reach_the_upstream() {
    let (gw, rec) = gateway_with_recorder().await;
    let mut c = gw.client();
    c.initialize().await;
    let r = c
        .post_raw(json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"rec__echo","arguments":{}}}).to_string())
        .header("authorization", "Bearer client-token-SHOULD-NOT-LEAK")
        .header("x-forwarded-user", "admin")
        .header("x-forwarded-for", "10.0.0.1")
        .header("cookie", "sid=COOKIE-SHOULD-NOT-LEAK")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = rec.all_text().to_ascii_lowercase();
    for needle in [
        "client-token-should-not-leak",
        "x-forwarded",
        "cookie-should-not-leak",
        "authorization",
    ] {
        assert!(!seen.contains(needle), "{needle} reached the upstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_09_13_a_slow_call_is_resumable_after_a_dropped_connection() {
    use futures_util::StreamExt;
    let (_gw, c) = with_demo("").await;
    // A call that sends nothing for 800 ms is answered as an SSE stream that starts
    // with a priming event, so its result survives a dropped connection.
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"name":"demo__sleep","arguments":{"ms":800}}}))
        .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let first = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    let primed = first
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    drop(body); // the client goes away mid-call
    let resumed = c.get_sse(Some(&primed)).await;
    let msgs = sse_messages(&resumed.text().await.unwrap());
    assert_eq!(msgs.last().unwrap()["id"], "slow-1", "{msgs:?}");
    assert_eq!(
        msgs.last().unwrap()["result"]["content"][0]["text"],
        "slept 800 ms"
    );
}

/// The `palisade-srv-N` threads (the kernel keeps 15 bytes of a name) of a running gateway.
fn serving_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("palisade-srv-"))
        .count()
}

/// Calls are served by `[gateway] workers` threads (one per core unless configured),
/// all accepting on the one socket. A session is not tied to the thread that opened
/// it: calls on fresh connections, whichever thread accepts them, reach it and are
/// answered in full, concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_many_connections_are_served_by_the_configured_threads() {
    let (rec, url) = start_recorder().await;
    let gw = Gateway::start("workers = 3", &http_upstream("rec", &url));
    gw.ready().await;
    assert_eq!(serving_threads(gw.pid()), 3);
    let mut opener = gw.client();
    opener.initialize().await;
    let calls = (0..24).map(|i| {
        // A client of its own: a connection of its own.
        let c = Client {
            http: reqwest::Client::new(),
            url: opener.url.clone(),
            session: opener.session.clone(),
            logs: opener.logs.clone(),
        };
        async move { (i, c.call(i, "rec__echo", json!({"n": i})).await) }
    });
    for (i, answer) in futures_util::future::join_all(calls).await {
        assert_eq!(answer["id"], i, "{answer}");
        assert!(answer.get("result").is_some(), "{answer}");
    }
    let forwarded = rec.methods().iter().filter(|m| *m == "tools/call").count();
    assert_eq!(forwarded, 24);

    let gw = Gateway::start("", &http_upstream("rec", &url));
    gw.ready().await;
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(serving_threads(gw.pid()), cores, "one per core by default");
}

/// A connection still sending its request does not hold up shutdown: the serving
/// threads are stopped even while one still waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_hold_up_shutdown() {
    use tokio::io::AsyncWriteExt;
    let (_rec, url) = start_recorder().await;
    let mut gw = Gateway::start(
        "",
        &format!(
            "[limits]\nshutdown_grace = \"1s\"\n\n{}",
            http_upstream("rec", &url)
        ),
    );
    gw.ready().await;
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(
        b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          accept: application/json, text/event-stream\r\ncontent-length: 100\r\n\r\n{\"jsonrpc\"",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    drop(half);
}

/// An upstream that initialises and lists one tool, and answers each call with HTTP
/// 500 and a body that names internal addresses, as a failing service might.
async fn failing_upstream() -> String {
    async fn handle(body: String) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        let reply = |result: Value| {
            (
                [("content-type", "application/json")],
                json!({"jsonrpc": "2.0", "id": v["id"], "result": result}).to_string(),
            )
                .into_response()
        };
        match v["method"].as_str() {
            Some("initialize") => reply(json!({"protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}}, "serverInfo": {"name": "failing", "version": "1"}})),
            Some("tools/list") => reply(
                json!({"tools": [{"name": "query", "description": "Runs a query.",
                "inputSchema": {"type": "object"}}]}),
            ),
            Some("tools/call") => (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "connect to db-primary.corp.internal (10.20.30.40:5432) failed: stacktrace-7f3a",
            )
                .into_response(),
            Some(_) => reply(json!({})),
            None => axum::http::StatusCode::ACCEPTED.into_response(),
        }
    }
    let app = axum::Router::new().route("/mcp", axum::routing::post(handle));
    format!("{}/mcp", serve_loopback(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_04_errors_to_clients_carry_no_upstream_body_address_or_port() {
    let failing = failing_upstream().await;
    // An upstream that was there at start and is gone by the call.
    let gone_port = free_port();
    let gone = format!("http://127.0.0.1:{gone_port}/mcp");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", gone_port))
        .await
        .unwrap();
    let gone_app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: String| async move {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            let result = match v["method"].as_str() {
                Some("initialize") => json!({"protocolVersion": "2025-11-25",
                    "capabilities": {"tools": {}}, "serverInfo": {"name": "gone", "version": "1"}}),
                Some("tools/list") => {
                    json!({"tools": [{"name": "query", "description": "Runs a query.",
                    "inputSchema": {"type": "object"}}]})
                }
                _ => json!({}),
            };
            (
                [("content-type", "application/json")],
                json!({"jsonrpc": "2.0", "id": v["id"], "result": result}).to_string(),
            )
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, gone_app).await });
    let gw = Gateway::start(
        "",
        &format!(
            "{}{}",
            http_upstream("failing", &failing),
            http_upstream("gone", &gone)
        ),
    );
    // Both listed while the second is still there.
    let c = listed_session(&gw).await;
    server.abort();
    let _ = server.await;

    let failing_port = failing.rsplit(':').next().unwrap().trim_end_matches("/mcp");
    for (id, tool) in [(2, "failing__query"), (3, "gone__query")] {
        let r = c.call(id, tool, json!({"sql": "select 1"})).await;
        // Listed, called, and unavailable: not an unknown name.
        assert_eq!(r["error"]["code"], -32010, "{tool}: {r}");
        let text = r.to_string();
        for leak in [
            "10.20.30.40",
            "5432",
            "db-primary",
            "stacktrace",
            "500",
            "127.0.0.1",
            failing_port,
            &gone_port.to_string(),
        ] {
            assert!(!text.contains(leak), "{tool}: {leak:?} in {text}");
        }
    }
    // The operator's log says what happened.
    let logs = gw.logs();
    assert!(logs.contains("HTTP 500"), "{logs}");
}
