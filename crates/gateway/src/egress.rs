//! The egress proxy of a sandboxed stdio server with `network = "proxy"`: an HTTP
//! `CONNECT` proxy on a UNIX socket that only the server's sandbox door reaches, which
//! opens tunnels only to the hosts (and ports) its config allows.
//!
//! - Only `CONNECT host:port`; anything else gets 405 (plain HTTP would let a server
//!   choose its path and headers unseen; HTTPS is what APIs use).
//! - A host matches an entry exactly, or `*.suffix` (any name below it, not the
//!   suffix itself); the port must match the entry's (443 when it names none).
//! - The name is resolved here, once, and the tunnel goes to the address checked: a
//!   name that resolves to a loopback, private, link-local or other non-public
//!   address is refused (the gateway's own listeners, cloud metadata), unless the
//!   entry is that IP address itself.
//! - Every decision is logged with the upstream's name and recorded in the audit log
//!   (`egress` events); a tunnel opens only once its record is written (with the log
//!   failing closed). The request head is bounded and must arrive within 10 seconds.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// The largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many tunnels of one upstream at once.
const MAX_TUNNELS: usize = 64;
/// Refusals of one upstream logged and recorded per [`REFUSAL_WINDOW`]; beyond, they
/// are counted and the count is recorded once the window has passed, so that a
/// server asking in a loop cannot flood the audit log (and prune its history).
const MAX_REFUSALS_RECORDED: u32 = 60;
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

pub(crate) use palisade_config::EgressHost as Allowed;

/// A running egress proxy; its socket lives in a private directory removed on drop.
#[derive(Debug)]
pub(crate) struct Egress {
    dir: PathBuf,
    socket: PathBuf,
    stop: CancellationToken,
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Egress {
    /// Starts the proxy for upstream `name`, allowing `allow`.
    pub(crate) fn start(
        name: &str,
        allow: Vec<Allowed>,
        audit: Arc<crate::audit::Auditor>,
        stop: CancellationToken,
    ) -> Result<Self, String> {
        use std::os::unix::fs::PermissionsExt;
        let mut random = [0u8; 12];
        rand::fill(&mut random);
        let dir = std::env::temp_dir().join(format!(
            "palisade-egress-{}",
            palisade_audit::key::hex(&random)
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Others may pass through (the server runs as another user when the gateway is
        // root) but not list it; the name is not guessable.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("proxy.sock");
        let listener =
            UnixListener::bind(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let allow = Arc::new(allow);
        let upstream: Arc<str> = Arc::from(name);
        let budget = Arc::new(std::sync::Mutex::new(Budget::default()));
        let task_stop = stop.clone();
        // The sandbox's door runs as the server does: this gateway's user, or nobody
        // when the gateway is root. Nobody else is served.
        let me = std::fs::metadata("/proc/self")
            .map_or(u32::MAX, |m| std::os::unix::fs::MetadataExt::uid(&m));
        let door_uid = if me == 0 {
            palisade_sandbox::NOBODY
        } else {
            me
        };
        let tunnels = Arc::new(tokio::sync::Semaphore::new(MAX_TUNNELS));
        tokio::spawn(async move {
            // Refusals left out of the record are counted in a record when their
            // window ends, and when the proxy stops.
            let flusher = Gate {
                upstream,
                audit,
                budget,
            };
            let mut windows = tokio::time::interval(REFUSAL_WINDOW);
            windows.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = windows.tick() => {
                        flusher.flush(false);
                        continue;
                    }
                    () = task_stop.cancelled() => {
                        flusher.flush(true);
                        return;
                    }
                };
                let Ok((conn, _)) = conn else { continue };
                let gate = flusher.clone();
                if conn.peer_cred().map(|c| c.uid()).ok() != Some(door_uid) {
                    gate.refused("", "a connection from another user");
                    continue;
                }
                let Ok(permit) = Arc::clone(&tunnels).try_acquire_owned() else {
                    gate.refused("", "too many tunnels open");
                    continue;
                };
                let allow = Arc::clone(&allow);
                tokio::spawn(async move {
                    serve(conn, &allow, &gate).await;
                    drop(permit);
                });
            }
        });
        Ok(Self { dir, socket, stop })
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Where one request's decisions go: the log and the audit trail.
#[derive(Clone)]
struct Gate {
    upstream: Arc<str>,
    audit: Arc<crate::audit::Auditor>,
    /// Shared by the upstream's requests.
    budget: Arc<std::sync::Mutex<Budget>>,
}

/// Refusals recorded in the current window, and those left out.
#[derive(Debug, Default)]
struct Budget {
    since: Option<std::time::Instant>,
    recorded: u32,
    left_out: u64,
}

impl Budget {
    /// How many refusals were left out of a window that has ended by `now` (every
    /// one left out, with `all`: the proxy stops); the count starts over.
    fn ended(&mut self, now: std::time::Instant, all: bool) -> u64 {
        if all
            || self
                .since
                .is_some_and(|t| now.duration_since(t) >= REFUSAL_WINDOW)
        {
            std::mem::take(&mut self.left_out)
        } else {
            0
        }
    }

    /// Whether a refusal now may be recorded; and, when a window with refusals left
    /// out has just ended, how many were.
    fn spend(&mut self, now: std::time::Instant) -> (bool, u64) {
        let mut ended = 0;
        if self
            .since
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_WINDOW)
        {
            ended = std::mem::take(&mut self.left_out);
            self.since = Some(now);
            self.recorded = 0;
        }
        if self.recorded < MAX_REFUSALS_RECORDED {
            self.recorded += 1;
            (true, ended)
        } else {
            self.left_out += 1;
            (false, ended)
        }
    }
}

impl Gate {
    fn event(
        &self,
        target: &str,
        reason: Option<&str>,
        addresses: &[SocketAddr],
    ) -> palisade_audit::Event {
        palisade_audit::Event::Egress {
            addresses: addresses.iter().take(16).map(ToString::to_string).collect(),
            upstream: self.upstream.to_string(),
            target: crate::audit::target_for_record(target),
            decision: if reason.is_some() {
                palisade_audit::Decision::Deny
            } else {
                palisade_audit::Decision::Allow
            },
            reason: reason.map(str::to_owned),
        }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records how many refusals were left out, if any were.
    fn left_out(&self, n: u64) {
        if n == 0 {
            return;
        }
        let note = format!(
            "{n} more refusals were not recorded (at most {MAX_REFUSALS_RECORDED} per {REFUSAL_WINDOW:?})"
        );
        tracing::warn!(upstream = %self.upstream, "egress: {note}");
        self.audit.note(self.event("", Some(&note), &[]));
    }

    /// Records the refusals left out of a window that has ended (`all`: every one
    /// left out, as the proxy stops).
    fn flush(&self, all: bool) {
        let n = self.budget().ended(std::time::Instant::now(), all);
        self.left_out(n);
    }

    /// Logs and records a refusal (`target` as the server asked, or empty), within
    /// the upstream's budget of records.
    fn refused(&self, target: &str, why: &str) {
        let (record, ended) = self.budget().spend(std::time::Instant::now());
        self.left_out(ended);
        if !record {
            return;
        }
        let shown = crate::audit::target_for_record(target);
        tracing::warn!(upstream = %self.upstream, target = %shown, "egress refused: {why}");
        self.audit.note(self.event(target, Some(why), &[]));
    }

    /// Records an allowed tunnel; `false` when the record could not be written and
    /// the log fails closed.
    async fn allowed(&self, target: &str, addresses: &[SocketAddr]) -> bool {
        self.audit
            .decide(self.event(target, None, addresses))
            .await
            .is_ok()
    }
}

async fn reply(conn: &mut UnixStream, status: &str) {
    let _ = conn
        .write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
}

/// Reads the request head: up to and including the blank line.
async fn head(conn: &mut UnixStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") && !buf.ends_with(b"\n\n") {
        if buf.len() >= MAX_HEAD || conn.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    String::from_utf8(buf).ok()
}

async fn serve(mut conn: UnixStream, allow: &[Allowed], gate: &Gate) {
    let upstream = &gate.upstream;
    let Ok(Some(head)) = tokio::time::timeout(HEAD_TIMEOUT, head(&mut conn)).await else {
        gate.refused("", "no request head within its bounds (8 KiB, 10 s, UTF-8)");
        return;
    };
    let mut words = head.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        gate.refused("", "a malformed request");
        return reply(&mut conn, "400 Bad Request").await;
    };
    if method != "CONNECT" {
        gate.refused(target, "only CONNECT is proxied");
        return reply(&mut conn, "405 Method Not Allowed").await;
    }
    let Ok(wanted) = Allowed::parse(target) else {
        gate.refused(target, "not a host:port");
        return reply(&mut conn, "400 Bad Request").await;
    };
    let host = wanted.host.clone();
    let Some(entry) = allow.iter().find(|a| a.matches(&host, wanted.port)) else {
        gate.refused(target, "not in allow_hosts");
        return reply(&mut conn, "403 Forbidden").await;
    };
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, wanted.port)],
        Err(_) => match tokio::net::lookup_host((host.as_str(), wanted.port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                tracing::debug!(%upstream, error = %e, "egress name lookup failed");
                gate.refused(target, "the name does not resolve");
                return reply(&mut conn, "502 Bad Gateway").await;
            }
        },
    };
    // Every address must be public, unless the entry names the address itself.
    let literal = entry.is_address();
    if addrs.is_empty()
        || (!literal
            && addrs
                .iter()
                .any(|a| !crate::auth::address_allowed(a.ip(), false)))
    {
        gate.refused(target, "resolves to a non-public address");
        return reply(&mut conn, "403 Forbidden").await;
    }
    if !gate.allowed(target, &addrs).await {
        tracing::error!(%upstream, "egress refused: its audit record could not be written");
        return reply(&mut conn, "503 Service Unavailable").await;
    }
    let out = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..])).await {
        Ok(Ok(s)) => s,
        _ => {
            // Allowed, but it never opened: recorded as such.
            gate.refused(target, "allowed, but the connection failed");
            return reply(&mut conn, "502 Bad Gateway").await;
        }
    };
    tracing::info!(%upstream, target = %crate::audit::target_for_record(target), "egress tunnel opened");
    if conn
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut out = out;
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut out).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obs_01_refusals_are_recorded_within_a_budget_and_the_rest_counted() {
        let mut b = Budget::default();
        let t0 = std::time::Instant::now();
        for _ in 0..MAX_REFUSALS_RECORDED {
            assert_eq!(b.spend(t0), (true, 0));
        }
        // A server asking in a loop: the rest of the window is counted, not recorded.
        for _ in 0..1000 {
            assert_eq!(b.spend(t0 + Duration::from_secs(1)), (false, 0));
        }
        // The next window records again, and says how many were left out.
        let later = t0 + REFUSAL_WINDOW;
        assert_eq!(b.spend(later), (true, 1000));
        assert_eq!(b.spend(later), (true, 0));
        // A window's count is also taken when it ends without another refusal (the
        // proxy's timer), and whatever is left when the proxy stops.
        for _ in 0..MAX_REFUSALS_RECORDED + 5 {
            b.spend(later);
        }
        assert_eq!(b.ended(later + Duration::from_secs(1), false), 0, "not yet");
        assert_eq!(b.ended(later + REFUSAL_WINDOW, false), 7);
        assert_eq!(b.ended(later + REFUSAL_WINDOW, false), 0, "taken once");
        b.spend(later + REFUSAL_WINDOW * 2);
        for _ in 0..MAX_REFUSALS_RECORDED {
            b.spend(later + REFUSAL_WINDOW * 2);
        }
        assert_eq!(b.ended(later + REFUSAL_WINDOW * 2, true), 1, "at stop");
    }
}
