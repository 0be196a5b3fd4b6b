//! A stdio upstream: one child process per configured upstream, shared by all
//! sessions, with request IDs remapped per upstream (LIFE-04).
//!
//! - The child gets only the environment variables its config names (LOC-05).
//! - Its stdout must carry only newline-delimited JSON-RPC; anything else is dropped
//!   and logged, never forwarded (LOC-03). Lines are bounded.
//! - Its stderr is logged, line by line, bounded.
//! - When it exits it is restarted with exponential backoff; requests meanwhile get a
//!   clear error at once.
//! - On shutdown: close stdin, then SIGTERM, then SIGKILL (LOC-06).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use palisade_config::StdioSpec;
use palisade_wire::{ErrorCode, Id, Kind, Message};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Link, UpstreamError};
use crate::session::{Session, SessionTable};

/// How long a child gets to answer `initialize`.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace after closing stdin, and again after SIGTERM (LOC-06).
const STOP_GRACE: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
const MAX_STDERR_LINE: usize = 4096;
/// How long the shared stdout reader waits to hand a response to its request.
const DELIVERY_WAIT: Duration = Duration::from_secs(5);

/// The child's state, visible to `/healthz` and to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Starting,
    Ready,
    Restarting,
    Stopped,
}

#[derive(Debug)]
struct Pending {
    tx: mpsc::Sender<Message>,
    session: Weak<Session>,
}

/// A shared stdio upstream.
#[derive(Debug)]
pub(crate) struct StdioUpstream {
    name: String,
    idx: usize,
    spec: StdioSpec,
    max_line: usize,
    queue: usize,
    next_id: AtomicI64,
    pending: Mutex<HashMap<i64, Pending>>,
    writer: Mutex<Option<mpsc::Sender<Bytes>>>,
    init_result: Mutex<Value>,
    state: watch::Sender<State>,
    sessions: Arc<SessionTable>,
    shutdown: CancellationToken,
    /// Why the child is not started at all (a sandbox the kernel cannot provide).
    refused: Mutex<Option<String>>,
    /// The egress proxy of a sandbox with `network = "proxy"`, while it runs.
    egress: Mutex<Option<crate::egress::Egress>>,
    /// The executable's SHA-256, by the file's identity and change times (the change
    /// time cannot be set back without changing the clock), so that a restart does
    /// not read a large binary again.
    launch_hash: Mutex<Option<(FileId, String)>>,
}

/// What the kernel offers for sandboxes: probed once per gateway.
static SUPPORT: std::sync::OnceLock<palisade_sandbox::Support> = std::sync::OnceLock::new();

fn support() -> &'static palisade_sandbox::Support {
    SUPPORT.get_or_init(palisade_sandbox::Support::probe_here)
}

/// The sandbox profile of a stdio upstream's config; `None` when its sandbox is off.
pub fn sandbox_profile(spec: &StdioSpec) -> Option<palisade_sandbox::Profile> {
    spec.sandbox
        .as_deref()
        .map(|sb| profile(sb, &spec.rlimits, None))
}

/// The port of the egress proxy inside a sandbox with `network = "proxy"` (its own
/// network namespace, so it collides with nothing).
const EGRESS_PORT: u16 = 3128;

fn profile(
    sb: &palisade_config::SandboxSpec,
    r: &palisade_config::StdioLimits,
    egress: Option<&Path>,
) -> palisade_sandbox::Profile {
    palisade_sandbox::Profile {
        read: sb.read.clone(),
        write: sb.write.clone(),
        network: if sb.host_network {
            palisade_sandbox::Network::Host
        } else if !sb.allow_hosts.is_empty() {
            palisade_sandbox::Network::Proxy {
                socket: egress.map_or_else(|| PathBuf::from("(egress proxy)"), Path::to_path_buf),
                port: EGRESS_PORT,
            }
        } else {
            palisade_sandbox::Network::None
        },
        syscalls: sb.syscalls.clone(),
        rlimits: limits(r),
        accept_weaker: sb
            .accept_weaker
            .iter()
            .filter_map(|m| palisade_sandbox::Mechanism::from_name(m))
            .collect(),
    }
}

fn limits(r: &palisade_config::StdioLimits) -> palisade_sandbox::Rlimits {
    palisade_sandbox::Rlimits {
        memory_bytes: r.memory_bytes,
        cpu_seconds: r.cpu_time.map(|d| d.as_secs().max(1)),
        open_files: r.open_files,
        processes: r.processes,
    }
}

/// The executable `command` names: as given when it holds a `/` (relative to `cwd`),
/// else the first match on the child's `PATH` (the gateway's when the config sets
/// none); symbolic links resolved.
pub fn resolve_program(spec: &StdioSpec) -> Result<PathBuf, String> {
    let command = &spec.command;
    let found = if command.components().count() > 1 || command.is_absolute() {
        match (&spec.cwd, command.is_absolute()) {
            (Some(cwd), false) => cwd.join(command),
            _ => command.clone(),
        }
    } else {
        let path = spec
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(command))
            .find(|p| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| format!("`{}` is not on PATH ({path})", command.display()))?
    };
    std::fs::canonicalize(&found).map_err(|e| format!("{}: {e}", found.display()))
}

/// The pin kind and name of a stdio upstream's launch.
pub(crate) const LAUNCH: &str = "launch";

/// A file's device, inode, size, and modification and change times (ns).
type FileId = (u64, u64, u64, i64, i64, i64, i64);

fn file_id(path: &Path) -> Result<FileId, String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// SHA-256 of a file, read in chunks off the runtime's threads.
async fn file_sha256(path: PathBuf) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(palisade_audit::key::hex(&h.finalize()))
    })
    .await
    .map_err(|e| format!("hashing the executable: {e}"))?
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads one `\n`-terminated line of at most `max` bytes into `buf`. Returns
/// `Ok(false)` at EOF; an overlong line is consumed to its end and reported as
/// `Err(TooLong)` so the caller can drop it without buffering it.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Result<bool, TooLong>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if too_long {
                Err(TooLong)
            } else {
                Ok(!buf.is_empty())
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > max + 1 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(take);
        if done {
            return Ok(if too_long { Err(TooLong) } else { Ok(true) });
        }
    }
}

/// A line longer than the bound given to [`read_line_bounded`].
#[derive(Debug)]
pub struct TooLong;

impl StdioUpstream {
    pub(crate) fn new(
        name: String,
        idx: usize,
        spec: StdioSpec,
        max_line: usize,
        queue: usize,
        sessions: Arc<SessionTable>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            idx,
            spec,
            max_line,
            queue,
            next_id: AtomicI64::new(1),
            pending: Mutex::new(HashMap::new()),
            writer: Mutex::new(None),
            init_result: Mutex::new(Value::Null),
            state: watch::channel(State::Starting).0,
            sessions,
            shutdown,
            refused: Mutex::new(None),
            egress: Mutex::new(None),
            launch_hash: Mutex::new(None),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Why the child is not started at all, if it is not.
    pub(crate) fn refused(&self) -> Option<String> {
        lock(&self.refused).clone()
    }

    pub(crate) fn state(&self) -> State {
        *self.state.borrow()
    }

    /// Waits until the child is ready (or stopped); false on timeout or stop.
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.state.subscribe();
        let r = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| matches!(s, State::Ready | State::Stopped)),
        )
        .await;
        matches!(r, Ok(Ok(s)) if *s == State::Ready)
    }

    pub(crate) fn capabilities(&self) -> Value {
        lock(&self.init_result)
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// The `instructions` of the child's `initialize` result, if any.
    pub(crate) fn instructions(&self) -> Option<String> {
        lock(&self.init_result)
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn writer(&self) -> Option<mpsc::Sender<Bytes>> {
        lock(&self.writer).clone()
    }

    async fn write(&self, msg: &Message) -> Result<(), UpstreamError> {
        let Some(w) = self.writer() else {
            return Err(UpstreamError::Unavailable(format!(
                "{} is restarting",
                self.name
            )));
        };
        w.send(msg.raw().clone())
            .await
            .map_err(|_| UpstreamError::Unavailable(format!("{} is restarting", self.name)))
    }

    pub(crate) async fn start(
        &self,
        msg: Message,
        upstream_id: i64,
        session: &Arc<Session>,
        tx: mpsc::Sender<Message>,
    ) -> Result<(), UpstreamError> {
        if self.state() != State::Ready {
            if let Some(why) = lock(&self.refused).as_ref() {
                return Err(UpstreamError::Unavailable(format!(
                    "{} is not started: {why}",
                    self.name
                )));
            }
            return Err(UpstreamError::Unavailable(format!(
                "{} is not running",
                self.name
            )));
        }
        lock(&self.pending).insert(
            upstream_id,
            Pending {
                tx,
                session: Arc::downgrade(session),
            },
        );
        if let Err(e) = self.write(&msg).await {
            self.forget(upstream_id);
            return Err(e);
        }
        Ok(())
    }

    pub(crate) fn forget(&self, upstream_id: i64) {
        lock(&self.pending).remove(&upstream_id);
    }

    pub(crate) async fn send(&self, msg: Message) -> Result<(), UpstreamError> {
        self.write(&msg).await
    }

    /// Runs the child until shutdown, restarting it with backoff when it exits.
    pub(crate) async fn supervise(self: Arc<Self>, pins: Arc<crate::pins::Pins>) {
        if let Some(sb) = &self.spec.sandbox {
            let support = match tokio::task::spawn_blocking(support).await {
                Ok(s) => s,
                Err(_) => return,
            };
            let refusals = profile(sb, &self.spec.rlimits, None).refusals(support);
            if refusals.is_empty() {
                tracing::info!(upstream = %self.name, kernel = %support, "stdio upstream sandboxed");
                if !sb.allow_hosts.is_empty() {
                    match crate::egress::Egress::start(
                        &self.name,
                        sb.allow_hosts.clone(),
                        Arc::clone(&pins.audit),
                        self.shutdown.child_token(),
                    ) {
                        Ok(e) => *lock(&self.egress) = Some(e),
                        Err(why) => {
                            let why = format!("its egress proxy cannot start: {why}");
                            tracing::error!(upstream = %self.name, "not started: {why}");
                            *lock(&self.refused) = Some(why);
                            self.state.send_replace(State::Stopped);
                            return;
                        }
                    }
                }
            } else {
                let why = format!("its sandbox cannot be set up: {}", refusals.join("; "));
                tracing::error!(upstream = %self.name, "not started: {why}");
                *lock(&self.refused) = Some(why);
                self.state.send_replace(State::Stopped);
                return;
            }
        } else {
            tracing::warn!(
                upstream = %self.name,
                "stdio upstream runs WITHOUT a sandbox ([upstream.dangerous] sandbox = \"off\")"
            );
        }
        for risk in
            palisade_sandbox::launch_risks(&self.spec.command.to_string_lossy(), &self.spec.args)
        {
            tracing::warn!(upstream = %self.name, "LOC-02: the launch command {risk}");
        }
        let mut backoff = BACKOFF_START;
        loop {
            let started = tokio::time::Instant::now();
            match self.run_once(&pins).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(upstream = %self.name, error = %e, "stdio upstream failed")
                }
            }
            *lock(&self.writer) = None;
            self.fail_pending("upstream restarting");
            if self.shutdown.is_cancelled() {
                self.state.send_replace(State::Stopped);
                return;
            }
            self.state.send_replace(State::Restarting);
            if started.elapsed() >= HEALTHY_RUN {
                backoff = BACKOFF_START;
            }
            tracing::warn!(upstream = %self.name, ?backoff, "stdio upstream exited; restarting");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.shutdown.cancelled() => {
                    self.state.send_replace(State::Stopped);
                    return;
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Whether this launch — the command and arguments as configured, the resolved
    /// executable and its SHA-256 — matches the approved pin of this upstream's
    /// launch (or is trusted on first sight in `tofu` mode). The same pins and
    /// approvals as tool definitions, under kind and name `launch`.
    async fn launch_admitted(
        &self,
        pins: &crate::pins::Pins,
        program: &Path,
    ) -> Result<(), String> {
        if !pins.enabled(self.idx) {
            return Ok(());
        }
        let id = file_id(program)?;
        let cached = lock(&self.launch_hash)
            .as_ref()
            .filter(|(known, _)| *known == id)
            .map(|(_, h)| h.clone());
        let sha256 = match cached {
            Some(h) => h,
            None => {
                let h = file_sha256(program.to_owned()).await?;
                // Cached only if the file did not change while it was read.
                if file_id(program)? == id {
                    *lock(&self.launch_hash) = Some((id, h.clone()));
                }
                h
            }
        };
        let launch = json!({
            "command": self.spec.command,
            "args": self.spec.args,
            "program": program,
            "sha256": sha256,
        });
        let (definition, hash) = crate::pins::canonical(&launch);
        let (first, _turn) = pins.first_sight(self.idx, LAUNCH).await;
        if pins
            .admit(self.idx, LAUNCH, LAUNCH, (&definition, &hash), None, first)
            .await
        {
            return Ok(());
        }
        Err(format!(
            "its launch (command, arguments, or the executable {} with SHA-256 {}) is new or \
             changed and waits for approval: palisade pins diff {name} {LAUNCH}, then \
             palisade pins approve {name} {LAUNCH}",
            program.display(),
            &sha256[..16],
            name = self.name,
        ))
    }

    fn fail_pending(&self, why: &str) {
        let drained: Vec<(i64, Pending)> = lock(&self.pending).drain().collect();
        for (id, p) in drained {
            let _ = p.tx.try_send(Message::error(
                Some(&Id::Number(id)),
                ErrorCode::UpstreamUnavailable,
                why,
            ));
        }
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the one place that spawns stdio children"
    )]
    async fn run_once(self: &Arc<Self>, pins: &crate::pins::Pins) -> Result<(), String> {
        self.state.send_replace(State::Starting);
        let egress: Option<PathBuf> = lock(&self.egress)
            .as_ref()
            .map(|e| e.socket().to_path_buf());
        // LOC-01: the exact launch is pinned; a new or changed one waits for approval.
        let program = resolve_program(&self.spec)?;
        match self.launch_admitted(pins, &program).await {
            Ok(()) => *lock(&self.refused) = None,
            Err(why) => {
                *lock(&self.refused) = Some(why.clone());
                return Err(why);
            }
        }
        let mut cmd = match &self.spec.sandbox {
            Some(sb) => {
                let launcher = std::env::current_exe()
                    .map_err(|e| format!("the sandbox launcher (this binary): {e}"))?;
                let mut cmd = tokio::process::Command::new(launcher);
                cmd.args(["sandbox", "exec", "--profile"])
                    .arg(profile(sb, &self.spec.rlimits, egress.as_deref()).to_arg())
                    .arg("--")
                    .arg(program)
                    .args(&self.spec.args);
                cmd
            }
            None => {
                // The file that was pinned is the file that runs.
                let mut cmd = tokio::process::Command::new(&program);
                cmd.args(&self.spec.args);
                limits(&self.spec.rlimits).apply(&mut cmd);
                cmd
            }
        };
        cmd
            // LOC-05: nothing of the gateway's environment leaks to the child.
            .env_clear()
            .envs(&self.spec.env)
            .envs(egress.iter().flat_map(|_| {
                let url = format!("http://127.0.0.1:{EGRESS_PORT}");
                [
                    "HTTPS_PROXY",
                    "HTTP_PROXY",
                    "https_proxy",
                    "http_proxy",
                    "ALL_PROXY",
                ]
                .map(|k| (k, url.clone()))
            }))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &self.spec.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.spec.command.display()))?;
        tracing::info!(
            upstream = %self.name,
            command = %self.spec.command.display(),
            args = ?self.spec.args,
            pid = child.id(),
            "started stdio upstream"
        );
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("child has no stdio pipes".into());
        };

        let (wtx, mut wrx) = mpsc::channel::<Bytes>(self.queue);
        *lock(&self.writer) = Some(wtx);
        let writer = tokio::spawn(async move {
            while let Some(b) = wrx.recv().await {
                if stdin.write_all(&b).await.is_err() || stdin.write_all(b"\n").await.is_err() {
                    break;
                }
                if stdin.flush().await.is_err() {
                    break;
                }
            }
            // Dropping stdin closes it: the first step of LOC-06.
        });
        let name = self.name.clone();
        // The sandbox launcher's own complaint, if it refuses to start the server.
        let launcher_said: Arc<Mutex<Option<String>>> = Arc::default();
        let said = Arc::clone(&launcher_said);
        let mut stderr_task = tokio::spawn(async move {
            let mut r = BufReader::new(stderr);
            let mut buf = Vec::new();
            while let Ok(r) = read_line_bounded(&mut r, &mut buf, MAX_STDERR_LINE).await {
                match r {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = String::from_utf8_lossy(&buf);
                        tracing::info!(upstream = %name, "stderr: {}", line.trim_end());
                        if let Some(why) = line.trim_end().strip_prefix("palisade sandbox: ") {
                            *lock(&said) = Some(why.to_owned());
                        }
                    }
                    Err(TooLong) => {
                        tracing::info!(upstream = %name, "stderr: (overlong line dropped)")
                    }
                }
            }
        });
        let this = Arc::clone(self);
        let reader = tokio::spawn(async move { this.read_stdout(stdout).await });

        // Initialise the child as its client.
        let init_ok = tokio::select! {
            r = self.initialize() => r,
            () = self.shutdown.cancelled() => Err("shutdown".into()),
        };
        match init_ok {
            Ok(()) => {
                self.state.send_replace(State::Ready);
                tracing::info!(upstream = %self.name, "stdio upstream ready");
            }
            Err(e) => {
                tracing::warn!(upstream = %self.name, error = %e, "stdio upstream did not initialise")
            }
        }

        let status = tokio::select! {
            s = child.wait() => Some(s),
            () = self.shutdown.cancelled() => None,
        };
        let result = match status {
            Some(Ok(s)) if s.code() == Some(palisade_sandbox::EXIT_SETUP_FAILED) => {
                // Let the launcher's last words reach the log line first.
                let _ = tokio::time::timeout(Duration::from_millis(200), &mut stderr_task).await;
                let why = lock(&launcher_said)
                    .clone()
                    .unwrap_or_else(|| "the sandbox launcher failed".to_owned());
                *lock(&self.refused) = Some(format!("its sandbox cannot be set up: {why}"));
                Err(format!("sandbox: {why}"))
            }
            Some(s) => Err(format!("exited: {:?}", s.map(|s| s.to_string()))),
            None => {
                // LOC-06: close stdin, then SIGTERM, then SIGKILL.
                *lock(&self.writer) = None;
                writer.abort();
                self.stop_child(&mut child).await;
                Ok(())
            }
        };
        reader.abort();
        stderr_task.abort();
        writer.abort();
        result
    }

    async fn stop_child(&self, child: &mut tokio::process::Child) {
        if let Ok(Ok(_)) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
            tracing::info!(upstream = %self.name, "stdio upstream exited after stdin closed");
            return;
        }
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if let Ok(Ok(_)) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
            tracing::info!(upstream = %self.name, "stdio upstream exited after SIGTERM");
            return;
        }
        let _ = child.kill().await;
        tracing::warn!(upstream = %self.name, "stdio upstream killed after SIGTERM grace");
    }

    async fn initialize(&self) -> Result<(), String> {
        let id = self.next_id();
        let (tx, mut rx) = mpsc::channel(super::REQUEST_CHANNEL);
        lock(&self.pending).insert(
            id,
            Pending {
                tx,
                session: Weak::new(),
            },
        );
        let req = Message::request(
            &Id::Number(id),
            "initialize",
            &json!({
                "protocolVersion": palisade_wire::ProtocolVersion::LATEST.as_str(),
                "capabilities": {
                    "sampling": {},
                    "elicitation": {},
                    "roots": { "listChanged": true }
                },
                "clientInfo": { "name": "palisade", "version": env!("CARGO_PKG_VERSION") }
            }),
        );
        self.write(&req).await.map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(INIT_TIMEOUT, async {
            while let Some(m) = rx.recv().await {
                if m.is_response() && m.id() == Some(&Id::Number(id)) {
                    return Some(m);
                }
            }
            None
        })
        .await
        .map_err(|_| "initialize timed out".to_owned())?
        .ok_or("no initialize response")?;
        self.forget(id);
        if res.kind() != Kind::Response {
            return Err("initialize failed".into());
        }
        let v = res.to_value().map_err(|e| e.to_string())?;
        let result = v.get("result").cloned().unwrap_or(Value::Null);
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if palisade_wire::ProtocolVersion::parse(version).is_none() {
            return Err(format!("unsupported protocol version {version:?}"));
        }
        *lock(&self.init_result) = result;
        self.write(&Message::notification(
            "notifications/initialized",
            &json!({}),
        ))
        .await
        .map_err(|e| e.to_string())
    }

    async fn read_stdout(self: Arc<Self>, stdout: tokio::process::ChildStdout) {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            match read_line_bounded(&mut r, &mut buf, self.max_line).await {
                Err(_) | Ok(Ok(false)) => return,
                Ok(Err(TooLong)) => {
                    tracing::warn!(upstream = %self.name, limit = self.max_line, "dropped an overlong stdout line (LOC-03)");
                }
                Ok(Ok(true)) => {
                    let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match Message::parse(Bytes::copy_from_slice(line)) {
                        Ok(m) => self.dispatch(m).await,
                        Err(e) => {
                            // LOC-03: garbage is dropped and logged, never forwarded.
                            tracing::warn!(upstream = %self.name, error = %e, bytes = line.len(), "dropped a non-JSON-RPC stdout line (LOC-03)");
                        }
                    }
                }
            }
        }
    }

    async fn dispatch(self: &Arc<Self>, m: Message) {
        match m.kind() {
            Kind::Response | Kind::ErrorResponse => {
                let tx = match m.id() {
                    Some(Id::Number(n)) => lock(&self.pending).get(n).map(|p| p.tx.clone()),
                    _ => None,
                };
                match tx {
                    Some(tx) => {
                        if let Some(Id::Number(n)) = m.id() {
                            self.forget(*n);
                        }
                        // A response must arrive; but one stuck consumer must not stall
                        // the reader every session shares.
                        if tokio::time::timeout(DELIVERY_WAIT, tx.send(m))
                            .await
                            .is_err()
                        {
                            tracing::warn!(upstream = %self.name, "dropped a response its request no longer reads");
                        }
                    }
                    None => {
                        tracing::debug!(upstream = %self.name, "dropped an unsolicited response (LIFE-05)")
                    }
                }
            }
            Kind::Notification => {
                if m.method() == Some("notifications/progress") {
                    let target = progress_target(&m)
                        .and_then(|n| lock(&self.pending).get(&n).map(|p| p.tx.clone()));
                    match target {
                        Some(tx) => {
                            // Progress is advisory: drop it rather than stall the reader.
                            if tx.try_send(m).is_err() {
                                tracing::debug!(upstream = %self.name, "dropped progress for a busy request");
                            }
                        }
                        None => {
                            tracing::debug!(upstream = %self.name, "dropped progress for no request")
                        }
                    }
                    return;
                }
                if m.method() == Some("notifications/cancelled") {
                    // The child cancels one of its own requests to a client; those IDs
                    // are session-scoped on the client side, so this is not relayed.
                    return;
                }
                // List changes carry no data and concern every session of the child.
                // Anything else (log lines, resource updates) may carry one session's
                // data: it goes only to the session that owns every request in
                // flight, like server requests, and is dropped otherwise.
                let everyone = matches!(
                    m.method(),
                    Some(
                        "notifications/tools/list_changed"
                            | "notifications/prompts/list_changed"
                            | "notifications/resources/list_changed"
                    )
                );
                let targets = if everyone {
                    self.sessions.with_upstream(self.idx)
                } else if m.method() == Some("notifications/elicitation/complete") {
                    // To the session that was asked to open it (FEAT-12).
                    let id = m.param_str("elicitationId").unwrap_or_default();
                    self.sessions
                        .with_upstream(self.idx)
                        .into_iter()
                        .filter(|s| s.was_asked(self.idx, &id))
                        .collect()
                } else {
                    match self.sole_owner() {
                        Some((s, _)) => vec![s],
                        None => {
                            tracing::debug!(upstream = %self.name, method = ?m.method(), "dropped a notification that cannot be attributed to one session");
                            Vec::new()
                        }
                    }
                };
                let link = Link::Stdio(Arc::clone(self));
                for s in targets {
                    if let Some(out) = super::from_upstream(&link, &s, self.idx, m.clone()).await {
                        s.deliver_unsolicited(&out);
                    }
                }
            }
            Kind::Request => self.route_server_request(m).await,
        }
    }

    /// A server→client request from a shared child carries no session. It is
    /// relayed only when every request in flight to this child belongs to one
    /// session; otherwise it is refused rather than guessed (fail closed).
    async fn route_server_request(&self, m: Message) {
        let Some(id) = m.id().cloned() else { return };
        if m.method() == Some("ping") {
            let _ = self.write(&Message::response(&id, &json!({}))).await;
            return;
        }
        if let Some((_, tx)) = self.sole_owner() {
            // Handled by the request's own relay loop, as if it arrived on its
            // response stream; refused if that request cannot take it now.
            if tx.try_send(m).is_ok() {
                return;
            }
        }
        tracing::warn!(upstream = %self.name, "refused a server request that cannot be attributed to one session");
        let _ = self
            .write(&Message::error(
                Some(&id),
                ErrorCode::InternalError,
                "palisade cannot attribute this request to a client session",
            ))
            .await;
    }

    /// The one session that owns every request in flight to this child, with one of
    /// its requests' channels; `None` when there are none or several.
    fn sole_owner(&self) -> Option<(Arc<Session>, mpsc::Sender<Message>)> {
        let owners: Vec<(Arc<Session>, mpsc::Sender<Message>)> = lock(&self.pending)
            .values()
            .filter_map(|p| p.session.upgrade().map(|s| (s, p.tx.clone())))
            .collect();
        let first = owners.first().map(|(s, _)| s.id.clone());
        let single = first.is_some() && owners.iter().all(|(s, _)| Some(&s.id) == first.as_ref());
        if single {
            owners.into_iter().next()
        } else {
            None
        }
    }
}

fn progress_target(m: &Message) -> Option<i64> {
    let v: Value = serde_json::from_str(m.params_raw()?).ok()?;
    let tok = v.get("progressToken")?.as_str()?;
    tok.strip_prefix("palisade-progress-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn lines_are_bounded() {
        let data = b"short\nthis line is far too long\nok\nlast".to_vec();
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            match read_line_bounded(&mut r, &mut buf, 10).await.unwrap() {
                Ok(false) => break,
                Ok(true) => got.push(String::from_utf8(buf.clone()).unwrap()),
                Err(TooLong) => got.push("<too long>".into()),
            }
        }
        assert_eq!(got, ["short\n", "<too long>", "ok\n", "last"]);
    }
}
