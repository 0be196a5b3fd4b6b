//! Black-box tests of OpenTelemetry traces: W3C Trace Context from the client through
//! the gateway to an HTTP upstream, and spans exported to an OTLP/HTTP receiver
//! started here.

#![allow(
    clippy::disallowed_methods,
    reason = "tests read small bodies from a gateway they started"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP traces receiver: every span it was sent.
async fn receiver() -> (Arc<Mutex<Vec<Value>>>, String) {
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let got = Arc::clone(&spans);
    let url = serve_loopback(axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: String| {
            let got = Arc::clone(&got);
            async move {
                let v: Value = serde_json::from_str(&body).unwrap();
                for rs in v["resourceSpans"].as_array().unwrap() {
                    assert_eq!(
                        rs["resource"]["attributes"][0]["value"]["stringValue"],
                        "palisade"
                    );
                    for ss in rs["scopeSpans"].as_array().unwrap() {
                        got.lock()
                            .unwrap()
                            .extend(ss["spans"].as_array().unwrap().iter().cloned());
                    }
                }
                "{}"
            }
        }),
    ))
    .await;
    (spans, format!("{url}/v1/traces"))
}

/// Calls `rec__echo` with `arguments`, in the client's trace [`TRACE`].
async fn traced_echo(c: &Client, arguments: Value) {
    let r = c
        .post_raw(
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
                   "params":{"name":"rec__echo","arguments":arguments}})
            .to_string(),
        )
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert!(body_json(r).await.get("result").is_some());
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

async fn spans_of(spans: &Arc<Mutex<Vec<Value>>>, trace: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let got: Vec<Value> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s["traceId"] == trace)
            .cloned()
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "fewer than {n} spans of {trace}: {:#?}",
        spans.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trace_continues_through_the_gateway_to_the_upstream() {
    let (spans, url) = receiver().await;
    let (rec, _gw, c) =
        with_recorder_tables(&format!("[tracing]\notlp_url = \"{url}\"\n"), "").await;
    traced_echo(&c, json!({"secret": "hunter2"})).await;

    // The upstream saw the gateway's span, in the client's trace.
    let sent = rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s.body.contains("tools/call"))
        .and_then(|s| s.headers.get("traceparent").cloned())
        .unwrap();
    let sent = sent.to_str().unwrap().to_owned();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{sent}"
    );
    assert_ne!(
        parts[2], CLIENT_SPAN,
        "the gateway's own span, not the client's header"
    );

    // Two spans: the gateway's SERVER span under the client's, and its CLIENT span
    // (the one the upstream was told) under that.
    let got = spans_of(&spans, TRACE, 2).await;
    let server = got.iter().find(|s| s["kind"] == 2).unwrap();
    let client = got.iter().find(|s| s["kind"] == 3).unwrap();
    assert_eq!(server["parentSpanId"], CLIENT_SPAN);
    assert_eq!(server["name"], "tools/call rec__echo");
    assert_eq!(attribute(server, "mcp.method.name"), Some("tools/call"));
    assert_eq!(attribute(server, "gen_ai.tool.name"), Some("rec__echo"));
    assert_eq!(attribute(server, "palisade.decision"), Some("allow"));
    assert_eq!(attribute(server, "palisade.upstream"), Some("rec"));
    assert_eq!(client["parentSpanId"], server["spanId"]);
    assert_eq!(client["spanId"], parts[2]);
    assert_eq!(attribute(client, "palisade.upstream"), Some("rec"));
    let text = serde_json::to_string(&got).unwrap();
    assert!(!text.contains("hunter2"), "no arguments in spans");

    // A refused call is a failed span; a request without a traceparent starts a trace.
    let r = c.call(8, "rec__no_such_tool", json!({})).await;
    assert_eq!(r["error"]["code"], -32602);
    for _ in 0..200 {
        if spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| s["traceId"] != TRACE && s["status"]["code"] == 2)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no failed root span: {:#?}", spans.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_no_traceparent_reaches_the_upstream() {
    let (rec, _gw, c) = with_recorder("").await;
    traced_echo(&c, json!({})).await;
    assert!(
        rec.seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.headers.get("traceparent").is_none()),
        "a client header never reaches an upstream unless tracing is on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_parent_is_followed_and_ratio_zero_traces_nothing_new() {
    let (spans, url) = receiver().await;
    let (_rec, _gw, c) = with_recorder_tables(
        &format!("[tracing]\notlp_url = \"{url}\"\nsample_ratio = 0.0\n"),
        "",
    )
    .await;
    let unsampled = format!("00-{TRACE}-{CLIENT_SPAN}-00");
    let sampled = "00-11111111111111111111111111111111-2222222222222222-01";
    for (id, tp) in [(1, unsampled.as_str()), (2, ""), (3, sampled)] {
        let mut req = c.post_raw(
            json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                   "params":{"name":"rec__echo","arguments":{}}})
            .to_string(),
        );
        if !tp.is_empty() {
            req = req.header("traceparent", tp);
        }
        assert!(
            body_json(req.send().await.unwrap())
                .await
                .get("result")
                .is_some()
        );
    }
    // Only the sampled parent's trace is exported.
    spans_of(&spans, "11111111111111111111111111111111", 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        spans
            .lock()
            .unwrap()
            .iter()
            .all(|s| s["traceId"] == "11111111111111111111111111111111"),
        "{:#?}",
        spans.lock().unwrap()
    );
}
