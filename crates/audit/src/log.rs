//! The writer. A record is appended by the task that produces it, under one mutex,
//! so records keep the order in which they were produced and a decision's record is
//! in the file when `record` returns — no hand-off to another thread, no wake-up. With
//! `fsync = always` the append and the sync run on the blocking pool instead, so a
//! disk flush never stalls the runtime. A ticker adds a signed checkpoint every
//! `checkpoint_interval`, syncs per [`Fsync`], and rotates at `max_file_bytes`;
//! `checkpoint_every` records also bring a checkpoint. A write that fails is reported
//! to its producer, and the next one starts a fresh file chained to the last record
//! that was written whole, so the chain never continues past a torn line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::chain::{self, Encoded, GENESIS};
use crate::event::Event;
use crate::key::SigningKey;

/// The most events [`AuditLog::note_ahead`] keeps waiting before it writes them.
pub const MAX_AHEAD: usize = 64;

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
    /// The gateway's version, for the start record.
    pub version: String,
    /// SHA-256 of the running configuration, for the start record.
    pub config_sha256: String,
    /// The ID of the argument hash key, for the start record.
    pub hash_key_id: Option<String>,
    /// Called with each line once it is in the file (sinks take copies here). It
    /// runs under the writer's lock: it must only hand the line on, never wait.
    pub tee: Option<Tee>,
}

/// A receiver of every written line; see [`AuditOptions::tee`].
#[derive(Clone)]
pub struct Tee(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tee")
    }
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

/// A point in the log's history of events noted ahead ([`AuditLog::ahead_mark`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AheadMark(u64);

/// A handle to the audit log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    writer: Arc<Mutex<Writer>>,
    healthy: Arc<AtomicBool>,
    /// Events queued by [`AuditLog::note_ahead`] wait for their write.
    ahead_waiting: Arc<AtomicBool>,
    /// How many writes failed with events queued ahead in them.
    ahead_lost: Arc<AtomicU64>,
    sync_each: bool,
    path: PathBuf,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.opts.path)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn lock(w: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AuditLog {
    /// Opens (or continues) the log and writes its start record; an error here means
    /// the log cannot be written at all. Call inside a Tokio runtime: it starts the
    /// ticker.
    pub fn open(opts: AuditOptions) -> Result<Self, AuditError> {
        let key = SigningKey::load_or_create(&opts.key)
            .map_err(|e| AuditError::Unavailable(e.to_string()))?;
        let mut w = Writer::open(&opts, key)?;
        w.append(
            vec![encoded(&Event::Start {
                version: opts.version.clone(),
                config_sha256: opts.config_sha256.clone(),
                hash_key_id: opts.hash_key_id.clone(),
            })?],
            false,
        )?;
        let ahead_waiting = Arc::clone(&w.ahead_waiting);
        let ahead_lost = Arc::clone(&w.ahead_lost);
        let writer = Arc::new(Mutex::new(w));
        let healthy = Arc::new(AtomicBool::new(true));
        let ticker = Arc::downgrade(&writer);
        let h = Arc::clone(&healthy);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(w) = ticker.upgrade() else { return };
                let h = Arc::clone(&h);
                // Checkpoints sign and syncs flush: both may block.
                let done = tokio::task::spawn_blocking(move || {
                    let mut w = lock(&w);
                    if w.closed {
                        return false;
                    }
                    let r = w.tick();
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "audit log upkeep failed");
                    }
                    h.store(r.is_ok(), Ordering::Release);
                    true
                })
                .await;
                if !matches!(done, Ok(true)) {
                    return;
                }
            }
        });
        Ok(Self {
            writer,
            healthy,
            ahead_waiting,
            ahead_lost,
            sync_each: opts.fsync == Fsync::Always,
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

    fn append_now(&self, event: Event) -> Result<(), AuditError> {
        // Encoded before taking the lock: other writers wait only for the chaining.
        let event = encoded(&event)?;
        let mut w = lock(&self.writer);
        if w.closed {
            return Err(AuditError::Closed);
        }
        let r = w.append(vec![event], false);
        self.healthy.store(r.is_ok(), Ordering::Release);
        r
    }

    /// Appends `event`; when this returns `Ok`, the record is in the file (and on
    /// disk, with [`Fsync::Always`]). A decision that depends on its record waits for
    /// this.
    pub async fn record(&self, event: Event) -> Result<(), AuditError> {
        if !self.sync_each {
            return self.append_now(event);
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.append_now(event))
            .await
            .map_err(|_| AuditError::Closed)?
    }

    /// Appends `event` without reporting the outcome to the caller; a failure is
    /// logged. With [`Fsync::Always`] the record is synced by the next record or tick.
    pub fn note(&self, event: Event) {
        let r = encoded(&event).and_then(|event| {
            let mut w = lock(&self.writer);
            if w.closed {
                Err(AuditError::Closed)
            } else {
                w.append_unsynced(vec![event])
            }
        });
        self.noted(&r);
    }

    /// Places `event` in the log's order now and writes it with the next record
    /// (whoever writes it), at [`AuditLog::flush_ahead`], or at the next tick — one
    /// write for an event and the record that follows it, such as a request's
    /// authentication and its call. The caller that queues an event calls
    /// `flush_ahead` before its answer leaves. At most [`MAX_AHEAD`] events wait.
    pub fn note_ahead(&self, event: Event) {
        let mut queued = false;
        let r = encoded(&event).and_then(|event| {
            let mut w = lock(&self.writer);
            if w.closed {
                return Err(AuditError::Closed);
            }
            w.ahead.push(event);
            queued = true;
            if w.ahead.len() >= MAX_AHEAD {
                w.append_unsynced(Vec::new())
            } else {
                w.ahead_waiting.store(true, Ordering::Release);
                Ok(())
            }
        });
        if !queued {
            // Never queued (a closed log): lost as surely as with a failed write, so
            // the owner's `flush_ahead` fails. A write the full queue made counts its
            // own loss.
            self.ahead_lost.fetch_add(1, Ordering::AcqRel);
        }
        self.noted(&r);
    }

    /// Where the log stands on events queued by [`AuditLog::note_ahead`]: take it
    /// before noting one, and hand it to [`AuditLog::flush_ahead`].
    pub fn ahead_mark(&self) -> AheadMark {
        AheadMark(self.ahead_lost.load(Ordering::Acquire))
    }

    /// Writes the events [`AuditLog::note_ahead`] queued, if any still wait, and
    /// fails if they could not be written, or if a write since `since` lost any
    /// (an event noted after `since` is then in the log or reported lost here).
    pub fn flush_ahead(&self, since: AheadMark) -> Result<(), AuditError> {
        if self.ahead_waiting.load(Ordering::Acquire) {
            let r = {
                let mut w = lock(&self.writer);
                if w.closed {
                    Err(AuditError::Closed)
                } else {
                    w.append_unsynced(Vec::new())
                }
            };
            self.noted(&r);
            r?;
        }
        if self.ahead_lost.load(Ordering::Acquire) == since.0 {
            Ok(())
        } else {
            Err(AuditError::Unavailable(
                "events noted ahead were lost with a failed write".into(),
            ))
        }
    }

    fn noted(&self, r: &Result<(), AuditError>) {
        self.healthy.store(r.is_ok(), Ordering::Release);
        if let Err(e) = r {
            tracing::error!(error = %e, "an audit event was not recorded");
        }
    }

    /// Writes the stop record and a final checkpoint, syncs, and closes the log;
    /// later records are refused.
    pub async fn close(&self) {
        let w = Arc::clone(&self.writer);
        let _ = tokio::task::spawn_blocking(move || {
            let mut w = lock(&w);
            if w.closed {
                return;
            }
            if let Err(e) = encoded(&Event::Stop)
                .and_then(|stop| w.append(vec![stop], false))
                .and_then(|()| w.close_file())
            {
                tracing::error!(error = %e, "could not write the audit log's stop record");
            }
            if let Some(f) = &w.file {
                let _ = f.sync_all();
            }
            w.closed = true;
        })
        .await;
    }
}

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
    /// Closed: nothing more is written.
    closed: bool,
    /// Events to write ahead of the next record ([`AuditLog::note_ahead`]).
    ahead: Vec<Encoded>,
    /// Whether `ahead` holds any (read without the lock).
    ahead_waiting: Arc<AtomicBool>,
    /// Counts the writes that failed with events from `ahead` in them.
    ahead_lost: Arc<AtomicU64>,
}

fn unavailable(e: impl std::fmt::Display) -> AuditError {
    AuditError::Unavailable(e.to_string())
}

fn encoded(event: &Event) -> Result<Encoded, AuditError> {
    Encoded::new(event).map_err(unavailable)
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
            closed: false,
            ahead: Vec::new(),
            ahead_waiting: Arc::new(AtomicBool::new(false)),
            ahead_lost: Arc::new(AtomicU64::new(0)),
        };
        let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
        if !regular || len == 0 {
            // A new chain (or a device or pipe, which is never read back).
            w.start_file()?;
            return Ok(w);
        }
        match last_record(&opts.path).map_err(unavailable)? {
            Tail::Clean(seq, hash, closed) => {
                w.seq = seq + 1;
                w.prev = hash;
                if closed {
                    // A finished file (the gateway stopped cleanly) is set aside whole;
                    // the chain goes on in a new one.
                    w.rotate_aside("")?;
                    w.start_file()?;
                } else {
                    let f = append_file(&opts.path).map_err(unavailable)?;
                    w.bytes = len;
                    w.file = Some(f);
                }
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
                .map_err(unavailable)?
        } else {
            open_device(&self.opts.path).map_err(unavailable)?
        };
        self.file = Some(f);
        self.bytes = 0;
        let cp = chain::checkpoint(&self.key, self.seq, &self.prev, chain::Place::Opens);
        let opened = self.write_lines(vec![encoded(&cp)?], false);
        if opened.is_err() && self.regular {
            // Not even the opening checkpoint went in: the file holds no record. It is
            // removed, so that the next attempt starts afresh instead of setting an
            // empty file aside (again and again while the disk stays full).
            self.file = None;
            let _ = std::fs::remove_file(&self.opts.path);
        }
        opened
    }

    /// Renames the current file to `<stem>-<last seq>[-why].<ext>` (never over a file
    /// already there) and, after a full file's rotation, prunes old ones.
    fn rotate_aside(&mut self, why: &str) -> Result<(), AuditError> {
        if !self.regular {
            self.file = None;
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
        // A hard link fails where the name is taken, so no earlier file is replaced
        // (two torn files can end at the same seq); the old name goes after.
        let mut n = 0;
        loop {
            let name = if n == 0 {
                format!("{stem}-{last:012}{suffix}{ext}")
            } else {
                format!("{stem}-{last:012}{suffix}.{n}{ext}")
            };
            let to = self.opts.path.with_file_name(&name);
            match std::fs::hard_link(&self.opts.path, &to) {
                Ok(()) => {
                    std::fs::remove_file(&self.opts.path).map_err(unavailable)?;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                // A file system without hard links (FAT, some network shares): a
                // rename, after making sure the name is free.
                Err(_) if !to.exists() => {
                    std::fs::rename(&self.opts.path, &to).map_err(unavailable)?;
                    break;
                }
                Err(_) if n < 1000 => n += 1,
                Err(e) => return Err(unavailable(e)),
            }
        }
        self.file = None;
        // A failing disk must not wear the kept history away one torn file at a time:
        // a torn file never prunes.
        if why != "torn"
            && self.opts.keep_files > 0
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
            // Beyond `keep_files` files *and* as many full files' bytes: files set
            // aside small (at each restart after a clean stop) do not shorten the
            // history kept.
            let size = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
            let budget = self
                .opts
                .max_file_bytes
                .saturating_mul(self.opts.keep_files as u64);
            let mut total: u64 = old.iter().map(size).sum();
            while old.len() > self.opts.keep_files && total > budget {
                let p = old.remove(0);
                total = total.saturating_sub(size(&p));
                let _ = std::fs::remove_file(&p);
            }
        }
        Ok(())
    }

    /// Encodes `events` (plus a checkpoint when one is due) and writes them. On
    /// failure nothing of the batch counts: `seq` and `prev` stay where they were.
    fn append(&mut self, events: Vec<Encoded>, force_checkpoint: bool) -> Result<(), AuditError> {
        let queued = self.ahead.len();
        let events = if self.ahead.is_empty() {
            events
        } else {
            self.ahead_waiting.store(false, Ordering::Release);
            let mut all = std::mem::take(&mut self.ahead);
            all.extend(events);
            all
        };
        if events.is_empty() && !force_checkpoint && !self.torn {
            return Ok(());
        }
        if let Err(e) = self.write_after_tear(events, force_checkpoint) {
            if queued > 0 {
                self.ahead_lost.fetch_add(1, Ordering::AcqRel);
                tracing::error!(events = queued, error = %e, "audit events noted ahead were lost with a failed write");
            }
            return Err(e);
        }
        self.rotate_if_full()
    }

    /// Writes `events`, first setting a torn file aside if the last write tore it.
    fn write_after_tear(
        &mut self,
        events: Vec<Encoded>,
        force_checkpoint: bool,
    ) -> Result<(), AuditError> {
        if self.torn {
            // A file holding records is kept aside; a file whose opening failed was
            // removed when it failed (it held no record), and none is left to keep.
            if self.file.is_some() {
                self.rotate_aside("torn")?;
            }
            self.start_file()?;
            self.torn = false;
        }
        self.write_lines(events, force_checkpoint)
    }

    /// Appends events (and those queued ahead) without the per-record sync of
    /// [`Fsync::Always`] (the next record or tick syncs them).
    fn append_unsynced(&mut self, events: Vec<Encoded>) -> Result<(), AuditError> {
        let fsync = self.opts.fsync;
        if fsync == Fsync::Always {
            self.opts.fsync = Fsync::Interval(Duration::ZERO);
        }
        let r = self.append(events, false);
        self.opts.fsync = fsync;
        r
    }

    /// Writes `events`, followed by a checkpoint when one is due or `sign` asks for
    /// one.
    fn write_lines(&mut self, events: Vec<Encoded>, sign: bool) -> Result<(), AuditError> {
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let (mut seq, mut prev) = (self.seq, self.prev.clone());
        let mut unsigned = self.unsigned;
        let mut buf =
            String::with_capacity(events.iter().map(Encoded::byte_len).sum::<usize>() + 512);
        for e in &events {
            let hash = chain::seal_into(&mut buf, seq, &ts, &prev, e).map_err(unavailable)?;
            buf.push('\n');
            if e.is_checkpoint() {
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
        let only_checkpoints = !events.is_empty() && events.iter().all(Encoded::is_checkpoint);
        if due && !only_checkpoints {
            let cp = chain::checkpoint(&self.key, seq, &prev, chain::Place::Within);
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
        // A pipe or device has nothing to sync (and `fdatasync` refuses it).
        let written = file.write_all(buf.as_bytes()).and_then(|()| {
            if sync && self.opts.fsync != Fsync::Never && self.regular {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            self.torn = true;
            return Err(unavailable(e));
        }
        if let Some(Tee(tee)) = &self.opts.tee {
            for line in buf.lines() {
                tee(line);
            }
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
        if !self.ahead.is_empty() {
            self.append_unsynced(Vec::new())?;
        }
        if self.unsigned > 0
            && self
                .first_unsigned
                .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_interval)
        {
            self.write_lines(Vec::new(), true)?;
        }
        let sync_due = match (self.opts.fsync, self.unsynced) {
            (Fsync::Interval(every), Some(since)) => since.elapsed() >= every,
            // Noted records, which did not wait for their sync.
            (Fsync::Always, Some(_)) => true,
            _ => false,
        };
        if sync_due {
            if self.regular
                && let Some(f) = &self.file
            {
                f.sync_data().map_err(unavailable)?;
            }
            self.unsynced = None;
        }
        self.rotate_if_full()
    }

    /// Ends the current file with a checkpoint that closes it (signed: a file without
    /// one was cut short, or not finished).
    fn close_file(&mut self) -> Result<(), AuditError> {
        if self.file.is_none() || self.torn {
            return Ok(());
        }
        let cp = chain::checkpoint(&self.key, self.seq, &self.prev, chain::Place::Closes);
        self.write_lines(vec![encoded(&cp)?], false)
    }

    /// Signs, closes, syncs and rotates a file that reached `max_file_bytes`.
    fn rotate_if_full(&mut self) -> Result<(), AuditError> {
        if self.regular && self.bytes >= self.opts.max_file_bytes {
            self.close_file()?;
            if let Some(f) = &self.file {
                f.sync_data().map_err(unavailable)?;
            }
            self.rotate_aside("")?;
            self.start_file()?;
        }
        Ok(())
    }
}

/// Opens a pipe or device for appending without waiting for a reader: a pipe that
/// nobody reads fails at once (`ENXIO`), under the lock every writer waits for, instead
/// of holding that lock until someone opens it. Writes then block as on any pipe.
fn open_device(path: &Path) -> std::io::Result<File> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = OpenOptions::new()
        .append(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let flags = OFlag::from_bits_truncate(fcntl(&f, FcntlArg::F_GETFL)?);
    fcntl(&f, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(f)
}

fn append_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

enum Tail {
    /// The file ends with a whole, valid record: its `seq` and hash, and whether it
    /// is the checkpoint that closes the file.
    Clean(u64, String, bool),
    /// The file ends in a torn record; the last whole one, if any.
    Torn(Option<(u64, String)>),
}

/// Reads the end of an existing log to continue its chain.
fn last_record(path: &Path) -> std::io::Result<Tail> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    // Read back far enough to hold the last line whole (a record with an opted-in
    // tool's raw arguments can be as long as a request).
    let mut reach: u64 = 1 << 21;
    let tail = loop {
        let from = len.saturating_sub(reach);
        f.seek(SeekFrom::Start(from))?;
        let mut tail = Vec::new();
        std::io::Read::take(&mut f, reach).read_to_end(&mut tail)?;
        let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
        if from == 0 || body.contains(&b'\n') || reach >= 1 << 28 {
            break (from, tail);
        }
        reach *= 4;
    };
    let (from, tail) = tail;
    let text = String::from_utf8_lossy(&tail);
    let whole = text.ends_with('\n');
    let mut lines: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
    if from > 0 && !lines.is_empty() {
        // The first line may start mid-record.
        lines.remove(0);
    }
    let parsed = |l: &str| chain::parse(l).ok();
    let last = lines.last().copied().and_then(parsed);
    match (whole, last) {
        (true, Some(r)) => {
            let closed = r
                .event
                .get("closes_file")
                .and_then(serde_json::Value::as_bool)
                == Some(true);
            Ok(Tail::Clean(r.seq, r.hash, closed))
        }
        _ => Ok(Tail::Torn(
            lines
                .iter()
                .rev()
                .find_map(|l| parsed(l))
                .map(|r| (r.seq, r.hash)),
        )),
    }
}
