//! OTLP/HTTP export (JSON encoding), shared by the audit log's OpenTelemetry sink and
//! the trace exporter: items are batched (up to [`BATCH`], or what arrives within
//! [`LINGER`]) and POSTed to the collector; a collector that cannot be reached is
//! retried with backoff while the batch waits, one that refuses a batch (4xx other than
//! 429) loses that batch, and says so in the log.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Items per request at most.
pub(crate) const BATCH: usize = 256;
/// How long a batch waits to fill.
pub(crate) const LINGER: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Exports what arrives on `rx` to `url` until `stop` or until `rx` closes; `body`
/// encodes one batch as an OTLP export request, `what` names the items in the log.
pub(crate) async fn export<T: Send>(
    mut rx: mpsc::Receiver<T>,
    url: String,
    http: reqwest::Client,
    stop: CancellationToken,
    what: &'static str,
    body: impl Fn(&[T]) -> Value + Send,
) {
    let mut batch: Vec<T> = Vec::new();
    let mut backoff = Duration::from_secs(1);
    loop {
        if batch.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                item = rx.recv() => match item {
                    Some(item) => batch.push(item),
                    None => return,
                },
            }
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while batch.len() < BATCH {
                tokio::select! {
                    () = &mut linger => break,
                    item = rx.recv() => match item {
                        Some(item) => batch.push(item),
                        None => break,
                    },
                }
            }
        }
        let sent = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body(&batch).to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                batch.clear();
                backoff = Duration::from_secs(1);
            }
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(collector = %url, status = %r.status(), items = batch.len(), what, "the OTLP collector refused a batch; it is dropped");
                batch.clear();
            }
            other => {
                let why = other.map_or_else(|e| e.to_string(), |r| r.status().to_string());
                tracing::warn!(collector = %url, error = %why, what, "cannot deliver to the OTLP collector; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// An OTLP `resource` naming this gateway.
pub(crate) fn resource() -> Value {
    serde_json::json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": "palisade"}},
        {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
    ]})
}
