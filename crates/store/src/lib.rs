//! Durable state behind traits.
//!
//! The embedded default is one SQLite file (WAL) under the gateway's data directory.
//! The traits are object-safe and carry no SQLite types, so that PostgreSQL (durable
//! records shared by replicas) and Redis (hot shared state) implementations can
//! follow without touching callers.
//!
//! Today the store holds session metadata. Session IDs are never stored: only their
//! SHA-256, so that a copy of the database cannot be used to address a live session.

#![forbid(unsafe_code)]

pub mod admin;
pub mod pins;
pub mod vault;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// A boxed future, so that the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The store failed; the message is safe to log (it never carries secrets).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self(e.to_string())
    }
}

/// What is recorded about one client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session ID, hex.
    pub id_hash: String,
    /// The principal the session is bound to: issuer and subject.
    pub issuer: String,
    /// The principal's subject.
    pub subject: String,
    /// The negotiated protocol revision.
    pub protocol_version: String,
    /// The client's self-declared name, for operators (untrusted).
    pub client_name: Option<String>,
    /// Unix seconds at creation.
    pub created_at: i64,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DELETE.
    Deleted,
    /// Unused for longer than the idle timeout.
    IdleExpired,
    /// Older than the absolute lifetime.
    LifetimeExpired,
    /// The gateway shut down.
    Shutdown,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::IdleExpired => "idle_expired",
            Self::LifetimeExpired => "lifetime_expired",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Durable session metadata.
pub trait SessionStore: Send + Sync {
    /// Records a new session.
    fn session_opened<'a>(
        &'a self,
        rec: &'a SessionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Records the end of a session.
    fn session_closed<'a>(
        &'a self,
        id_hash: &'a str,
        reason: CloseReason,
        at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Sessions recorded as open (not closed), oldest first.
    fn open_sessions(&self) -> BoxFuture<'_, Result<Vec<SessionRecord>, StoreError>>;
}

/// SHA-256 of a session ID, hex; what the store keeps instead of the ID.
pub fn hash_session_id(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The embedded SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const SCHEMA: &[&str] = &[
    // v1
    "CREATE TABLE IF NOT EXISTS sessions (
        id_hash TEXT PRIMARY KEY NOT NULL,
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        protocol_version TEXT NOT NULL,
        client_name TEXT,
        created_at INTEGER NOT NULL,
        closed_at INTEGER,
        close_reason TEXT
    ) STRICT",
    "CREATE INDEX IF NOT EXISTS sessions_open ON sessions (closed_at, created_at)",
    // v2: the credential vault (values sealed with AES-256-GCM; see vault.rs)
    "CREATE TABLE IF NOT EXISTS secrets (
        name TEXT PRIMARY KEY NOT NULL,
        key_id TEXT NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT",
    // v3: pins of upstream tool and prompt definitions (see pins.rs)
    "CREATE TABLE IF NOT EXISTS pins (
        upstream TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        definition TEXT NOT NULL,
        status TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        decided_by TEXT,
        decided_at INTEGER,
        note TEXT,
        PRIMARY KEY (upstream, kind, name, hash)
    ) STRICT",
    // v4: admin actions done with the CLI, waiting for the gateway's audit log (admin.rs)
    "CREATE TABLE IF NOT EXISTS admin_actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        by TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL,
        recorded INTEGER NOT NULL
    ) STRICT",
    "CREATE INDEX IF NOT EXISTS admin_actions_unrecorded ON admin_actions (recorded, id)",
    // v5: a counter of pin decisions, so that a running gateway notices one made with
    // the CLI (a revoked approval above all) without reading every pin (pins.rs)
    "CREATE TABLE IF NOT EXISTS pin_generation (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        value INTEGER NOT NULL
    ) STRICT",
];

impl SqliteStore {
    /// Opens (creating if needed) `palisade.db` in `dir`.
    ///
    /// The database holds the upstreams' definitions as pinned (a secret an upstream
    /// leaks in one included), the approvals and the sealed credentials: a data
    /// directory it creates is the owner's alone (0700), the database is created
    /// 0600 (SQLite gives its WAL the same mode), and a database others could read is
    /// made private, with a warning (or refused, when it cannot be, or is a link).
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("palisade.db");
        make_private(&path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        for stmt in SCHEMA {
            sqlx::query(*stmt).execute(&pool).await?;
        }
        Ok(Self { pool })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, flushing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates `dir` and its missing parents, owner-only (0700).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the database file owner-only (0600) if missing; takes group and other
/// access from one that has it (and from its WAL and shared-memory files), and refuses
/// one that cannot be made private or is not a regular file (a symbolic link).
fn make_private(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        let Ok(meta) = std::fs::symlink_metadata(&file) else {
            continue;
        };
        if !meta.file_type().is_file() {
            // A link or anything else planted where the store lives: never followed.
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                file.display()
            )));
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            // Fail closed: a store others can read is not opened.
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "{} is readable by others and cannot be made private ({e}): chmod go-rwx it",
                        file.display()
                    ))
                })?;
            tracing::warn!(path = %file.display(), mode = format!("{:o}", mode & 0o777), "the store was readable by others than its owner: group and other access removed");
        }
    }
    Ok(())
}

impl SessionStore for SqliteStore {
    fn session_opened<'a>(
        &'a self,
        rec: &'a SessionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO sessions (id_hash, issuer, subject, protocol_version, client_name, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&rec.id_hash)
            .bind(&rec.issuer)
            .bind(&rec.subject)
            .bind(&rec.protocol_version)
            .bind(&rec.client_name)
            .bind(rec.created_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn session_closed<'a>(
        &'a self,
        id_hash: &'a str,
        reason: CloseReason,
        at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE sessions SET closed_at = ?, close_reason = ? WHERE id_hash = ? AND closed_at IS NULL",
            )
            .bind(at)
            .bind(reason.as_str())
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn open_sessions(&self) -> BoxFuture<'_, Result<Vec<SessionRecord>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, String, String, Option<String>, i64)> = sqlx::query_as(
                "SELECT id_hash, issuer, subject, protocol_version, client_name, created_at
                 FROM sessions WHERE closed_at IS NULL ORDER BY created_at",
            )
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|r| SessionRecord {
                    id_hash: r.0,
                    issuer: r.1,
                    subject: r.2,
                    protocol_version: r.3,
                    client_name: r.4,
                    created_at: r.5,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn sessions_round_trip_and_close() {
        let dir = std::env::temp_dir().join(format!("palisade-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(&dir).await.unwrap();
        let rec = SessionRecord {
            id_hash: hash_session_id("abc"),
            issuer: "local".into(),
            subject: "uid:1000".into(),
            protocol_version: "2025-11-25".into(),
            client_name: Some("test".into()),
            created_at: 1,
        };
        store.session_opened(&rec).await.unwrap();
        assert_eq!(store.open_sessions().await.unwrap(), vec![rec.clone()]);
        store
            .session_closed(&rec.id_hash, CloseReason::Deleted, 2)
            .await
            .unwrap();
        assert!(store.open_sessions().await.unwrap().is_empty());
        // The raw ID is never stored.
        assert_ne!(rec.id_hash, "abc");
        assert_eq!(rec.id_hash.len(), 64);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The database holds pinned definitions (with any secret an upstream leaked in
    /// one), approvals and sealed credentials: only its owner reads it.
    #[tokio::test(flavor = "current_thread")]
    async fn the_database_and_a_directory_it_creates_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/data");
        let store = SqliteStore::open(&dir).await.unwrap();
        store
            .session_opened(&SessionRecord {
                id_hash: hash_session_id("abc"),
                issuer: "local".into(),
                subject: "uid:1000".into(),
                protocol_version: "2025-11-25".into(),
                client_name: None,
                created_at: 1,
            })
            .await
            .unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir.join("palisade.db")), 0o600);
        assert_eq!(mode(&dir.join("palisade.db-wal")), 0o600, "the WAL follows");
        store.close().await;

        // One made readable by others (an older gateway, a copy) is made private.
        use std::os::unix::fs::PermissionsExt;
        let db = dir.join("palisade.db");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SqliteStore::open(&dir).await.unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(
            store.open_sessions().await.unwrap().len(),
            1,
            "its data kept"
        );
        store.close().await;

        // A link planted where the database lives is never followed.
        let other = root.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(root.path().join("target"), b"").unwrap();
        std::os::unix::fs::symlink(root.path().join("target"), other.join("palisade.db")).unwrap();
        let err = SqliteStore::open(&other).await.unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
