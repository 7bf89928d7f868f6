//! The audit log: who changed or ran what, and when. Callers write no secret value into it
//! (the server records setting names, never values).

use chrono::{DateTime, Utc};

use crate::{Store, StoreError, on_pool};

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The user name (or `system`).
    pub actor: String,
    /// e.g. `login`, `refresh-schema`, `export`.
    pub action: String,
    /// What it was done to (a connection, a connector, a user).
    pub target: String,
    /// The outcome in a few words.
    pub detail: String,
}

/// An entry to write with another change, in its transaction.
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: &'a str,
}

impl Store {
    /// Appends an entry, timed now.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(crate::now())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(p)
        .await
        .map(drop))
        .map_err(|e| self.db_error("write the audit log", e))?;
        Ok(())
    }

    /// The latest `limit` entries, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        type Row = (i64, DateTime<Utc>, String, String, String, String);
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)
        .map_err(|e| self.db_error("read the audit log", e))?;
        Ok(rows
            .into_iter()
            .map(|(id, at, actor, action, target, detail)| AuditEntry {
                id,
                at,
                actor,
                action,
                target,
                detail,
            })
            .collect())
    }
}
