//! Pins of what each upstream offers: its server instructions and every tool,
//! prompt, resource and resource template definition, hashed over its canonical
//! JSON, with who approved which version and when (FEAT-02).
//!
//! One row per (upstream, kind, name, hash). A row is `approved`, `pending` (seen,
//! waiting for a decision), `rejected`, or `superseded` (approved once, replaced by a
//! later approval). At most one version of an item is `approved` at a time.

use crate::{SqliteStore, StoreError};

/// What is known of one version of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The upstream's configured name.
    pub upstream: String,
    /// `tool`, `prompt`, `resource`, `resource-template` or `instructions`.
    pub kind: String,
    /// The item's name at the upstream (not namespaced).
    pub name: String,
    /// SHA-256 of the canonical definition, hex.
    pub hash: String,
    /// The canonical definition (JSON with sorted keys).
    pub definition: String,
    /// `approved`, `pending`, `rejected` or `superseded`.
    pub status: String,
    /// Unix seconds of first sight.
    pub first_seen: i64,
    /// Who decided (`tofu` for trust on first use), if anyone has.
    pub decided_by: Option<String>,
    /// Unix seconds of the decision.
    pub decided_at: Option<i64>,
    /// Why it is pending (e.g. the inspection rules it failed), if known.
    pub note: Option<String>,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
);

fn pin(r: Row) -> Pin {
    Pin {
        upstream: r.0,
        kind: r.1,
        name: r.2,
        hash: r.3,
        definition: r.4,
        status: r.5,
        first_seen: r.6,
        decided_by: r.7,
        decided_at: r.8,
        note: r.9,
    }
}

/// One version of one item as an upstream offers it now.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    /// The upstream's configured name.
    pub upstream: &'a str,
    /// `tool`, `prompt`, `resource`, `resource-template` or `instructions`.
    pub kind: &'a str,
    /// The item's name at the upstream.
    pub name: &'a str,
    /// SHA-256 of `definition`, hex.
    pub hash: &'a str,
    /// The canonical definition.
    pub definition: &'a str,
}

/// How a definition compares with the pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// This exact version is approved.
    Approved,
    /// Waiting for a decision (new, changed, or failed inspection).
    Pending,
    /// This exact version was rejected.
    Rejected,
}

impl SqliteStore {
    /// Records a sighting of one version of an item and says where it stands, and
    /// whether this sighting was its first. A version never seen before is approved
    /// at once when `trust_new` is set and the item has no approved version yet
    /// (trust on first use); otherwise it is pending, with `note` saying why.
    pub async fn pin_observe(
        &self,
        seen: Sighting<'_>,
        trust_new: bool,
        note: Option<&str>,
        now: i64,
    ) -> Result<(Seen, bool), StoreError> {
        let Sighting {
            upstream,
            kind,
            name,
            hash,
            definition,
        } = seen;
        let existing: Option<(String,)> = sqlx::query_as(
            "SELECT status FROM pins WHERE upstream = ? AND kind = ? AND name = ? AND hash = ?",
        )
        .bind(upstream)
        .bind(kind)
        .bind(name)
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        match existing.as_ref().map(|(s,)| s.as_str()) {
            Some("approved") => return Ok((Seen::Approved, false)),
            Some("rejected") => return Ok((Seen::Rejected, false)),
            // Pending, or approved once and superseded: a decision is needed.
            Some(_) => return Ok((Seen::Pending, false)),
            None => {}
        }
        let has_approved: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM pins WHERE upstream = ? AND kind = ? AND name = ? AND status = 'approved'",
        )
        .bind(upstream)
        .bind(kind)
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        let approve = trust_new && has_approved.is_none() && note.is_none();
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO pins (upstream, kind, name, hash, definition, status, first_seen, decided_by, decided_at, note)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(upstream)
        .bind(kind)
        .bind(name)
        .bind(hash)
        .bind(definition)
        .bind(if approve { "approved" } else { "pending" })
        .bind(now)
        .bind(approve.then_some("tofu"))
        .bind(approve.then_some(now))
        .bind(note)
        .execute(self.pool())
        .await?;
        let seen = if approve {
            Seen::Approved
        } else {
            Seen::Pending
        };
        Ok((seen, inserted.rows_affected() > 0))
    }

    /// Whether anything of `kind` from `upstream` has been seen before: the first
    /// list of a kind is the upstream's first sight in trust-on-first-use mode.
    pub async fn pin_kind_seen(&self, upstream: &str, kind: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM pins WHERE upstream = ? AND kind = ? LIMIT 1")
                .bind(upstream)
                .bind(kind)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.is_some())
    }

    /// Every pin, or only those waiting for a decision.
    pub async fn pin_list(&self, pending_only: bool) -> Result<Vec<Pin>, StoreError> {
        let sql = if pending_only {
            "SELECT upstream, kind, name, hash, definition, status, first_seen, decided_by, decided_at, note
             FROM pins WHERE status = 'pending' ORDER BY upstream, kind, name, first_seen"
        } else {
            "SELECT upstream, kind, name, hash, definition, status, first_seen, decided_by, decided_at, note
             FROM pins ORDER BY upstream, kind, name, first_seen"
        };
        let rows: Vec<Row> = sqlx::query_as(sql).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(pin).collect())
    }

    /// All versions of one item (or of every item of an upstream when `name` is
    /// `None`), oldest first.
    pub async fn pin_versions(
        &self,
        upstream: &str,
        name: Option<&str>,
    ) -> Result<Vec<Pin>, StoreError> {
        let sql = "SELECT upstream, kind, name, hash, definition, status, first_seen, decided_by, decided_at, note
             FROM pins WHERE upstream = ? AND (? IS NULL OR name = ?) ORDER BY kind, name, first_seen";
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(upstream)
            .bind(name)
            .bind(name)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(pin).collect())
    }

    /// How many pin decisions were ever made (approvals, rejections, revocations): a
    /// gateway that sees it change re-reads what it had cached as approved.
    pub async fn pin_generation(&self) -> Result<i64, StoreError> {
        let v: Option<(i64,)> = sqlx::query_as("SELECT value FROM pin_generation WHERE id = 0")
            .fetch_optional(self.pool())
            .await?;
        Ok(v.map_or(0, |(v,)| v))
    }

    /// Approves or rejects the pending versions of an item (only `hash`, when given).
    /// Approving supersedes the previously approved version. Rejecting an item with
    /// nothing pending revokes its approved version: the item is withheld until a
    /// version is approved again. Returns how many versions were decided.
    pub async fn pin_decide(
        &self,
        upstream: &str,
        name: &str,
        hash: Option<&str>,
        approve: bool,
        by: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let select = |status: &'static str| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT kind, hash FROM pins WHERE upstream = ? AND name = ? AND status = ? AND (? IS NULL OR hash LIKE ? || '%')",
            )
            .bind(upstream)
            .bind(name)
            .bind(status)
            .bind(hash)
            .bind(hash)
        };
        let mut pending = select("pending").fetch_all(&mut *tx).await?;
        if pending.is_empty() && !approve {
            // A revocation: the approved version is rejected.
            pending = select("approved").fetch_all(&mut *tx).await?;
        }
        if approve && pending.len() > 1 {
            return Err(StoreError(format!(
                "{} versions of {upstream}/{name} are pending; name one with --hash",
                pending.len()
            )));
        }
        for (kind, h) in &pending {
            if approve {
                sqlx::query(
                    "UPDATE pins SET status = 'superseded' WHERE upstream = ? AND kind = ? AND name = ? AND status = 'approved'",
                )
                .bind(upstream)
                .bind(kind)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE pins SET status = ?, decided_by = ?, decided_at = ? WHERE upstream = ? AND kind = ? AND name = ? AND hash = ?",
            )
            .bind(if approve { "approved" } else { "rejected" })
            .bind(by)
            .bind(now)
            .bind(upstream)
            .bind(kind)
            .bind(name)
            .bind(h)
            .execute(&mut *tx)
            .await?;
        }
        if !pending.is_empty() {
            sqlx::query(
                "INSERT INTO pin_generation (id, value) VALUES (0, 1) ON CONFLICT (id) DO UPDATE SET value = value + 1",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(pending.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn feat_02_tofu_then_drift_then_approval() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = SqliteStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let obs = |hash: &'static str, trust: bool, note: Option<&'static str>| {
            let s = s.clone();
            async move {
                let seen = Sighting {
                    upstream: "up",
                    kind: "tool",
                    name: "echo",
                    hash,
                    definition: "{}",
                };
                s.pin_observe(seen, trust, note, 1)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .0
            }
        };
        assert_eq!(
            obs("aaa", true, None).await,
            Seen::Approved,
            "first sight, tofu"
        );
        let again = Sighting {
            upstream: "up",
            kind: "tool",
            name: "echo",
            hash: "aaa",
            definition: "{}",
        };
        assert_eq!(
            s.pin_observe(again, true, None, 1).await.ok(),
            Some((Seen::Approved, false)),
            "a second sighting is not new"
        );
        assert_eq!(obs("aaa", true, None).await, Seen::Approved);
        assert_eq!(
            obs("bbb", true, None).await,
            Seen::Pending,
            "drift is never trusted"
        );
        assert_eq!(obs("ccc", false, None).await, Seen::Pending);
        let pending = s.pin_list(true).await.unwrap_or_default();
        assert_eq!(pending.len(), 2);
        assert!(
            s.pin_decide("up", "echo", None, true, "ops", 2)
                .await
                .is_err(),
            "ambiguous"
        );
        assert_eq!(
            s.pin_decide("up", "echo", Some("bb"), true, "ops", 2)
                .await
                .ok(),
            Some(1)
        );
        assert_eq!(obs("bbb", true, None).await, Seen::Approved);
        assert_eq!(
            obs("aaa", true, None).await,
            Seen::Pending,
            "the old version is superseded"
        );
        assert_eq!(
            s.pin_decide("up", "echo", Some("ccc"), false, "ops", 3)
                .await
                .ok(),
            Some(1)
        );
        assert_eq!(obs("ccc", true, None).await, Seen::Rejected);
        let v = s.pin_versions("up", Some("echo")).await.unwrap_or_default();
        let b = v
            .iter()
            .find(|p| p.hash == "bbb")
            .map(|p| (p.decided_by.clone(), p.decided_at));
        assert_eq!(b, Some((Some("ops".into()), Some(2))));
        // A definition that failed inspection is never trusted on first use.
        let n = s
            .pin_observe(
                Sighting {
                    upstream: "up",
                    kind: "tool",
                    name: "lookup",
                    hash: "ddd",
                    definition: "{}",
                },
                true,
                Some("INJ-SECRECY"),
                4,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, (Seen::Pending, true));
    }
}
