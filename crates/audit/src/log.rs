//! The writer. Producers hand events to a bounded queue; one thread appends them to
//! the file in batches (group commit), syncs per [`Fsync`], adds a signed checkpoint
//! every `checkpoint_every` records or `checkpoint_interval`, rotates at
//! `max_file_bytes`, and only then acknowledges each record. A write that fails is
//! acknowledged with an error, and the next batch starts a fresh file chained to the
//! last record that was written whole, so the chain never continues past a torn line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::chain::{self, GENESIS};
use crate::event::Event;
use crate::key::SigningKey;

/// When the file is synced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch, before its records are acknowledged.
    Always,
    /// At most this long after a write, and at every checkpoint; records are
    /// acknowledged once written to the file.
    Interval(Duration),
    /// Never explicitly; the operating system decides.
    Never,
}

/// How the log is written.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The log file.
    pub path: PathBuf,
    /// The signing key (created there if missing).
    pub key: PathBuf,
    /// When to sync.
    pub fsync: Fsync,
    /// A checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or this long after the first record that is not yet signed.
    pub checkpoint_interval: Duration,
    /// The file is rotated once it is this large.
    pub max_file_bytes: u64,
    /// Rotated files kept (older ones are deleted); 0 keeps all.
    pub keep_files: usize,
    /// Capacity of the queue in front of the writer.
    pub queue: usize,
    /// The gateway's version, for the start record.
    pub version: String,
    /// SHA-256 of the running configuration, for the start record.
    pub config_sha256: String,
}

/// The log could not take a record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// Opening, writing or syncing failed.
    #[error("the audit log cannot be written: {0}")]
    Unavailable(String),
    /// The writer has stopped.
    #[error("the audit log is closed")]
    Closed,
}

type Ack = oneshot::Sender<Result<(), AuditError>>;

enum Msg {
    Record(Box<Event>, Option<Ack>),
    Tick,
    Close(oneshot::Sender<()>),
}

/// A handle to the audit log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    healthy: Arc<AtomicBool>,
    path: PathBuf,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Record(..) => "Record",
            Self::Tick => "Tick",
            Self::Close(_) => "Close",
        })
    }
}

impl AuditLog {
    /// Opens (or continues) the log and writes its start record; an error here means
    /// the log cannot be written at all. Call inside a Tokio runtime.
    pub fn open(opts: AuditOptions) -> Result<Self, AuditError> {
        let key = SigningKey::load_or_create(&opts.key)
            .map_err(|e| AuditError::Unavailable(e.to_string()))?;
        let mut w = Writer::open(&opts, key)?;
        w.append(
            vec![Event::Start {
                version: opts.version.clone(),
                config_sha256: opts.config_sha256.clone(),
            }],
            false,
        )?;
        let (tx, mut rx) = mpsc::channel(opts.queue.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let h = Arc::clone(&healthy);
        std::thread::Builder::new()
            .name("palisade-audit".into())
            .spawn(move || w.run(&mut rx, &h))
            .map_err(|e| AuditError::Unavailable(e.to_string()))?;
        let ticker = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                if ticker.is_closed() {
                    return;
                }
                // A full queue will be drained soon anyway; a tick is never urgent.
                let _ = ticker.try_send(Msg::Tick);
            }
        });
        Ok(Self {
            tx,
            healthy,
            path: opts.path,
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the last write succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Appends `event` and waits until it is in the file (and synced, with
    /// [`Fsync::Always`]). A decision that depends on its record waits for this.
    pub async fn record(&self, event: Event) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Record(Box::new(event), Some(ack)))
            .await
            .map_err(|_| AuditError::Closed)?;
        done.await.map_err(|_| AuditError::Closed)?
    }

    /// Appends `event` without waiting; it keeps its place in the order. When the
    /// queue is full the event is lost, and that is logged.
    pub fn note(&self, event: Event) {
        if let Err(e) = self.tx.try_send(Msg::Record(Box::new(event), None)) {
            tracing::error!(error = %e, "audit queue full: an event was not recorded");
            self.healthy.store(false, Ordering::Release);
        }
    }

    /// Writes the stop record and a final checkpoint, syncs, and stops the writer.
    pub async fn close(&self) {
        let _ = self.tx.send(Msg::Record(Box::new(Event::Stop), None)).await;
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Most records taken from the queue for one write.
const BATCH: usize = 512;

struct Writer {
    opts: AuditOptions,
    key: SigningKey,
    file: Option<File>,
    regular: bool,
    /// The next record's `seq` and `prev`.
    seq: u64,
    prev: String,
    bytes: u64,
    unsigned: u64,
    first_unsigned: Option<Instant>,
    unsynced: Option<Instant>,
    /// The last write failed: the next one starts a fresh file.
    torn: bool,
}

fn unavailable(e: impl std::fmt::Display) -> AuditError {
    AuditError::Unavailable(e.to_string())
}

impl Writer {
    fn open(opts: &AuditOptions, key: SigningKey) -> Result<Self, AuditError> {
        if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let meta = std::fs::metadata(&opts.path).ok();
        let regular = meta.as_ref().is_none_or(std::fs::Metadata::is_file);
        let mut w = Self {
            opts: opts.clone(),
            key,
            file: None,
            regular,
            seq: 0,
            prev: GENESIS.to_owned(),
            bytes: 0,
            unsigned: 0,
            first_unsigned: None,
            unsynced: None,
            torn: false,
        };
        let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
        if !regular || len == 0 {
            // A new chain (or a device or pipe, which is never read back).
            w.start_file()?;
            return Ok(w);
        }
        match last_record(&opts.path).map_err(unavailable)? {
            Tail::Clean(seq, hash) => {
                w.seq = seq + 1;
                w.prev = hash;
                let f = append_file(&opts.path).map_err(unavailable)?;
                w.bytes = len;
                w.file = Some(f);
            }
            Tail::Torn(last) => {
                // A crash tore the last line: keep the file as it is, aside, and go on
                // in a new one chained to the last whole record.
                tracing::warn!(path = %opts.path.display(), "the audit log ends in a torn record; it is kept aside and a new file continues the chain");
                if let Some((seq, hash)) = last {
                    w.seq = seq + 1;
                    w.prev = hash;
                }
                w.rotate_aside("torn")?;
                w.start_file()?;
            }
        }
        Ok(w)
    }

    /// Opens a new file at the configured path beginning with an opening checkpoint.
    fn start_file(&mut self) -> Result<(), AuditError> {
        let f = if self.regular {
            OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&self.opts.path)
        } else {
            OpenOptions::new().append(true).open(&self.opts.path)
        }
        .map_err(unavailable)?;
        self.file = Some(f);
        self.bytes = 0;
        let cp = chain::checkpoint(&self.key, self.seq, &self.prev, true);
        self.write_lines(vec![cp], false)
    }

    /// Renames the current file to `<stem>-<last seq>[-why].<ext>` and prunes old ones.
    fn rotate_aside(&mut self, why: &str) -> Result<(), AuditError> {
        self.file = None;
        if !self.regular {
            return Ok(());
        }
        let last = self.seq.saturating_sub(1);
        let stem = self
            .opts
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit".into());
        let ext = self
            .opts
            .path
            .extension()
            .map(|s| format!(".{}", s.to_string_lossy()))
            .unwrap_or_default();
        let suffix = if why.is_empty() {
            String::new()
        } else {
            format!("-{why}")
        };
        let name = format!("{stem}-{last:012}{suffix}{ext}");
        let to = self.opts.path.with_file_name(&name);
        std::fs::rename(&self.opts.path, &to).map_err(unavailable)?;
        if self.opts.keep_files > 0
            && let Some(dir) = self.opts.path.parent()
        {
            let prefix = format!("{stem}-");
            let mut old: Vec<PathBuf> = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .map_err(unavailable)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&ext))
            })
            .collect();
            old.sort();
            while old.len() > self.opts.keep_files {
                let p = old.remove(0);
                let _ = std::fs::remove_file(&p);
            }
        }
        Ok(())
    }

    /// Encodes `events` (plus a checkpoint when one is due) and writes them. On
    /// failure nothing of the batch counts: `seq` and `prev` stay where they were.
    fn append(&mut self, events: Vec<Event>, force_checkpoint: bool) -> Result<(), AuditError> {
        if self.torn {
            self.rotate_aside("torn")?;
            self.start_file()?;
            self.torn = false;
        }
        self.write_lines(events, force_checkpoint)
    }

    /// Writes `events`, followed by a checkpoint when one is due or `sign` asks for
    /// one.
    fn write_lines(&mut self, events: Vec<Event>, sign: bool) -> Result<(), AuditError> {
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let (mut seq, mut prev) = (self.seq, self.prev.clone());
        let mut unsigned = self.unsigned;
        let mut buf = String::new();
        for e in &events {
            let (line, hash) = chain::encode(seq, &ts, &prev, e).map_err(unavailable)?;
            buf.push_str(&line);
            buf.push('\n');
            if matches!(e, Event::Checkpoint { .. }) {
                unsigned = 0;
            } else {
                unsigned += 1;
            }
            seq += 1;
            prev = hash;
        }
        let due = unsigned > 0
            && (sign
                || unsigned >= self.opts.checkpoint_every
                || self
                    .first_unsigned
                    .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_interval));
        // An opening checkpoint needs no second one behind it.
        let only_checkpoints =
            !events.is_empty() && events.iter().all(|e| matches!(e, Event::Checkpoint { .. }));
        if due && !only_checkpoints {
            let cp = chain::checkpoint(&self.key, seq, &prev, false);
            let (line, hash) = chain::encode(seq, &ts, &prev, &cp).map_err(unavailable)?;
            buf.push_str(&line);
            buf.push('\n');
            seq += 1;
            prev = hash;
            unsigned = 0;
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| unavailable("no open file"))?;
        let sync = due || self.opts.fsync == Fsync::Always;
        let written = file.write_all(buf.as_bytes()).and_then(|()| {
            if sync && self.opts.fsync != Fsync::Never {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            self.torn = true;
            return Err(unavailable(e));
        }
        self.seq = seq;
        self.prev = prev;
        self.bytes += buf.len() as u64;
        self.unsigned = unsigned;
        if unsigned == 0 {
            self.first_unsigned = None;
        } else if self.first_unsigned.is_none() {
            self.first_unsigned = Some(Instant::now());
        }
        if sync || self.opts.fsync == Fsync::Never {
            self.unsynced = None;
        } else if self.unsynced.is_none() {
            self.unsynced = Some(Instant::now());
        }
        Ok(())
    }

    /// Periodic duties: a due checkpoint, a due sync, a rotation.
    fn tick(&mut self) -> Result<(), AuditError> {
        if self.torn {
            return self.append(Vec::new(), false);
        }
        if self.unsigned > 0
            && self
                .first_unsigned
                .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_interval)
        {
            self.write_lines(Vec::new(), true)?;
        }
        if let (Fsync::Interval(every), Some(since)) = (self.opts.fsync, self.unsynced)
            && since.elapsed() >= every
            && let Some(f) = &self.file
        {
            f.sync_data().map_err(unavailable)?;
            self.unsynced = None;
        }
        if self.regular && self.bytes >= self.opts.max_file_bytes {
            if self.unsigned > 0 {
                self.write_lines(Vec::new(), true)?;
            }
            if let Some(f) = &self.file {
                f.sync_data().map_err(unavailable)?;
            }
            self.rotate_aside("")?;
            self.start_file()?;
        }
        Ok(())
    }

    fn run(mut self, rx: &mut mpsc::Receiver<Msg>, healthy: &AtomicBool) {
        while let Some(first) = rx.blocking_recv() {
            let mut events = Vec::new();
            let mut acks = Vec::new();
            let mut close = None;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Record(e, ack) => {
                        events.push(*e);
                        acks.extend(ack);
                    }
                    Msg::Tick => {}
                    Msg::Close(done) => {
                        close = Some(done);
                        break;
                    }
                }
                if events.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            let mut result = if events.is_empty() {
                Ok(())
            } else {
                self.append(events, close.is_some())
            };
            if result.is_ok() {
                result = self.tick();
            }
            healthy.store(result.is_ok(), Ordering::Release);
            if let Err(e) = &result {
                tracing::error!(error = %e, "audit log write failed");
            }
            for ack in acks {
                let _ = ack.send(result.clone());
            }
            if let Some(done) = close {
                if self.unsigned > 0 {
                    let _ = self.write_lines(Vec::new(), true);
                }
                if let Some(f) = &self.file {
                    let _ = f.sync_all();
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

fn append_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

enum Tail {
    /// The file ends with a whole, valid record: its `seq` and hash.
    Clean(u64, String),
    /// The file ends in a torn record; the last whole one, if any.
    Torn(Option<(u64, String)>),
}

/// Reads the end of an existing log to continue its chain.
fn last_record(path: &Path) -> std::io::Result<Tail> {
    const REACH: u64 = 1 << 21;
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(REACH);
    f.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    f.take(REACH).read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    let whole = text.ends_with('\n');
    let mut lines: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
    if from > 0 && !lines.is_empty() {
        // The first line may start mid-record.
        lines.remove(0);
    }
    let parsed = |l: &str| chain::parse(l).ok().map(|r| (r.seq, r.hash));
    let last = lines.last().copied().and_then(parsed);
    match (whole, last) {
        (true, Some((seq, hash))) => Ok(Tail::Clean(seq, hash)),
        _ => Ok(Tail::Torn(lines.iter().rev().find_map(|l| parsed(l)))),
    }
}
