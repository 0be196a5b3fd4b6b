//! Copies of the audit records for a SIEM, sent as they are written: standard output,
//! syslog (RFC 5424, octet-counted over TCP per RFC 6587, in TLS per RFC 5425), and
//! OpenTelemetry logs (OTLP/HTTP, JSON), each as the record itself or mapped to OCSF.
//!
//! The file is the record of truth and the one a decision waits for. Each sink has a
//! bounded queue filled from the writer (never blocking it); a sink that falls behind
//! loses the oldest-pending copies it cannot take, and says so in the log. A sink that
//! cannot connect retries with backoff and keeps the record it was sending.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_config::{AuditFormat, AuditSink, AuditSinkKind};
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::GatewayError;

/// Records waiting for one sink at most.
const SINK_QUEUE: usize = 10_000;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = crate::otlp::MAX_BACKOFF;

/// The running sinks.
pub(crate) struct Sinks {
    queues: Vec<mpsc::Sender<Arc<str>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
}

impl Sinks {
    /// Starts one task per configured sink; returns them and the tee that feeds them.
    pub(crate) fn start(
        sinks: &[AuditSink],
        http: &reqwest::Client,
    ) -> Result<(Self, Option<palisade_audit::Tee>), GatewayError> {
        let stop = CancellationToken::new();
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        let mut feeds = Vec::new();
        for s in sinks {
            let (tx, rx) = mpsc::channel::<Arc<str>>(SINK_QUEUE);
            let name = match &s.kind {
                AuditSinkKind::Stdout => "stdout".to_owned(),
                AuditSinkKind::Syslog { address, .. } => format!("syslog {address}"),
                AuditSinkKind::Otlp { url } => format!("otlp {url}"),
            };
            let task = match &s.kind {
                AuditSinkKind::Stdout => tokio::spawn(stdout(rx, s.format, stop.clone())),
                AuditSinkKind::Syslog {
                    address,
                    host,
                    tls,
                    ca_file,
                } => {
                    let tls = if *tls {
                        Some(tls_connector(ca_file.as_deref(), host)?)
                    } else {
                        None
                    };
                    tokio::spawn(syslog(rx, s.format, address.clone(), tls, stop.clone()))
                }
                AuditSinkKind::Otlp { url } => {
                    let format = s.format;
                    tokio::spawn(crate::otlp::export(
                        rx,
                        url.clone(),
                        http.clone(),
                        stop.clone(),
                        "audit records",
                        move |batch| otlp_body(batch, format),
                    ))
                }
            };
            tracing::info!(sink = %name, format = ?s.format, "audit sink started");
            feeds.push((name, tx.clone(), Arc::new(AtomicU64::new(0))));
            queues.push(tx);
            tasks.push(task);
        }
        let tee = (!feeds.is_empty()).then(|| {
            palisade_audit::Tee(Arc::new(move |line: &str| {
                let line: Arc<str> = Arc::from(line);
                for (name, tx, dropped) in &feeds {
                    if tx.try_send(Arc::clone(&line)).is_err() {
                        let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_power_of_two() {
                            tracing::warn!(sink = %name, dropped = n, "audit sink is behind: records not copied to it (the file has them)");
                        }
                    }
                }
            }))
        });
        Ok((
            Self {
                queues,
                tasks,
                stop,
            },
            tee,
        ))
    }

    /// Gives the sinks up to `grace` to send what they hold, then stops them.
    pub(crate) async fn drain(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline
            && self.queues.iter().any(|q| q.capacity() < SINK_QUEUE)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let a batch in flight finish.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.stop.cancel();
        drop(self.queues);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

/// The document a sink sends for one record line.
fn shape(line: &str, format: AuditFormat) -> String {
    match format {
        AuditFormat::Record => line.to_owned(),
        AuditFormat::Ocsf => palisade_audit::ocsf::from_record(line, env!("CARGO_PKG_VERSION"))
            .map_or_else(|| line.to_owned(), |v| v.to_string()),
    }
}

async fn stdout(mut rx: mpsc::Receiver<Arc<str>>, format: AuditFormat, stop: CancellationToken) {
    let mut out = tokio::io::stdout();
    loop {
        let line = tokio::select! {
            () = stop.cancelled() => return,
            l = rx.recv() => match l {
                Some(l) => l,
                None => return,
            },
        };
        let mut doc = shape(&line, format);
        doc.push('\n');
        if out.write_all(doc.as_bytes()).await.is_err() || out.flush().await.is_err() {
            tracing::warn!("audit sink stdout is closed");
            return;
        }
    }
}

/// One RFC 5424 message, octet-counted (RFC 6587 §3.4.1).
fn syslog_frame(line: &str, format: AuditFormat, hostname: &str) -> String {
    let record: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    let event = &record["event"];
    let kind = event["type"].as_str().unwrap_or("-");
    let alarming = event["decision"] == "deny"
        || kind == "finding"
        || (kind == "pin" && event["status"] == "quarantined");
    // Facility 13 (log audit); severity 4 (warning) or 6 (informational).
    let pri = 13 * 8 + if alarming { 4 } else { 6 };
    let ts = record["ts"].as_str().unwrap_or("-");
    let msg = format!(
        "<{pri}>1 {ts} {hostname} palisade {} {kind} - {}",
        std::process::id(),
        shape(line, format)
    );
    format!("{} {msg}", msg.len())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "-".to_owned())
}

type Tls = (
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
);

fn tls_connector(ca_file: Option<&std::path::Path>, host: &str) -> Result<Tls, GatewayError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::Start(format!("audit syslog TLS: {e}")))?;
    let config = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                GatewayError::Start(format!("audit syslog ca_file {}: {e}", path.display()))
            })?;
            for c in certs {
                let c = c.map_err(|e| {
                    GatewayError::Start(format!("audit syslog ca_file {}: {e}", path.display()))
                })?;
                roots
                    .add(c)
                    .map_err(|e| GatewayError::Start(format!("audit syslog ca_file: {e}")))?;
            }
            if roots.is_empty() {
                return Err(GatewayError::Start(format!(
                    "audit syslog ca_file {}: no certificates",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| GatewayError::Start(format!("audit syslog TLS: {e}")))?
                .with_no_client_auth()
        }
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| GatewayError::Start(format!("audit syslog: `{host}` is not a TLS name")))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

async fn connect(
    address: &str,
    tls: Option<&Tls>,
) -> std::io::Result<Box<dyn AsyncWrite + Unpin + Send>> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some((connector, name)) => {
            let s = tokio::time::timeout(
                Duration::from_secs(10),
                connector.connect(name.clone(), tcp),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
            Ok(Box::new(s))
        }
    }
}

async fn syslog(
    mut rx: mpsc::Receiver<Arc<str>>,
    format: AuditFormat,
    address: String,
    tls: Option<Tls>,
    stop: CancellationToken,
) {
    let host = hostname();
    let mut holding: Option<Arc<str>> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let conn = tokio::select! {
            () = stop.cancelled() => return,
            c = connect(&address, tls.as_ref()) => c,
        };
        let mut w = match conn {
            Ok(w) => {
                backoff = Duration::from_secs(1);
                w
            }
            Err(e) => {
                tracing::warn!(sink = %address, error = %e, "audit syslog sink cannot connect; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            let line = match holding.take() {
                Some(l) => l,
                None => tokio::select! {
                    () = stop.cancelled() => return,
                    l = rx.recv() => match l {
                        Some(l) => l,
                        None => return,
                    },
                },
            };
            let frame = syslog_frame(&line, format, &host);
            if let Err(e) = async {
                w.write_all(frame.as_bytes()).await?;
                w.flush().await
            }
            .await
            {
                tracing::warn!(sink = %address, error = %e, "audit syslog sink lost its connection; reconnecting");
                holding = Some(line);
                break;
            }
        }
    }
}

/// An OTLP/HTTP `ExportLogsServiceRequest` (JSON encoding) for a batch of records.
fn otlp_body(lines: &[Arc<str>], format: AuditFormat) -> Value {
    let records: Vec<Value> = lines
        .iter()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let event = &record["event"];
            let kind = event["type"].as_str().unwrap_or("");
            let alarming = event["decision"] == "deny" || kind == "finding";
            let nanos = record["ts"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            json!({
                "timeUnixNano": nanos.to_string(),
                "severityNumber": if alarming { 13 } else { 9 },
                "severityText": if alarming { "WARN" } else { "INFO" },
                "body": {"stringValue": shape(line, format)},
                "attributes": [
                    {"key": "event.name", "value": {"stringValue": format!("palisade.audit.{kind}")}},
                    {"key": "palisade.audit.seq", "value": {"intValue": record["seq"].as_u64().unwrap_or(0).to_string()}},
                ],
            })
        })
        .collect();
    json!({"resourceLogs": [{
        "resource": crate::otlp::resource(),
        "scopeLogs": [{"scope": {"name": "palisade.audit"}, "logRecords": records}],
    }]})
}
