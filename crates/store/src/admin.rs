//! Admin actions done with the CLI (`palisade secrets …`, `palisade pins approve|
//! reject`), queued here for the gateway to record in its audit log. The CLI cannot
//! append to a log the gateway writes (the chain has one writer); the gateway drains
//! this queue at start and every few seconds, and marks each row recorded once its
//! record is written — so an action taken while the gateway is stopped is recorded
//! when it starts.

use crate::{SqliteStore, StoreError};

/// One admin action waiting to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAction {
    /// Its row.
    pub id: i64,
    /// Unix seconds when it was done.
    pub at: i64,
    /// Who did it (the OS login, or `--by`).
    pub by: String,
    /// What: `secrets.set`, `secrets.rotate-key`, `pins.approve`, `pins.reject`.
    pub action: String,
    /// On what: a secret's name (never its value), a pin, a count.
    pub detail: String,
}

/// Rows handed to the gateway per drain at most.
const BATCH: i64 = 256;

impl SqliteStore {
    /// Queues an admin action for the audit log.
    pub async fn admin_record(
        &self,
        at: i64,
        by: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO admin_actions (at, by, action, detail, recorded) VALUES (?, ?, ?, ?, 0)",
        )
        .bind(at)
        .bind(by)
        .bind(action)
        .bind(detail)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Actions not yet recorded, oldest first.
    pub async fn admin_unrecorded(&self) -> Result<Vec<AdminAction>, StoreError> {
        let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
            "SELECT id, at, by, action, detail FROM admin_actions WHERE recorded = 0 ORDER BY id LIMIT ?",
        )
        .bind(BATCH)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at, by, action, detail)| AdminAction {
                id,
                at,
                by,
                action,
                detail,
            })
            .collect())
    }

    /// Marks an action recorded.
    pub async fn admin_recorded(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE admin_actions SET recorded = 1 WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
