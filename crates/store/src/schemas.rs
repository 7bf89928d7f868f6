//! Schema snapshots (SPEC §7): per connection, the last successful refresh (package, tables
//! and columns, time) and, when a later refresh failed, when and why. A failure keeps the last
//! good snapshot; a success clears the failure.
//!
//! Connections are keyed by their identifier lower-cased (connection identifiers compare
//! case-insensitively); the spelling last recorded is kept for display.

use chrono::{DateTime, Utc};
use idlink_model::schema::ConnectionSchema;

use crate::{Store, StoreError, on_pool};

/// A connection's last good schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSnapshot {
    /// The package that described it.
    pub package: String,
    pub schema: ConnectionSchema,
    /// When that refresh succeeded.
    pub refreshed_at: DateTime<Utc>,
}

/// A refresh that failed after the last success (or with none before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFailure {
    pub at: DateTime<Utc>,
    /// What went wrong, as recorded (callers record it with secrets already hidden).
    pub message: String,
}

/// What the store knows of one connection's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaState {
    /// The connection's identifier, as last recorded.
    pub connection: String,
    pub snapshot: Option<SchemaSnapshot>,
    /// Set when the last refresh failed.
    pub failure: Option<SchemaFailure>,
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
);

const SELECT: &str =
    "SELECT connection, package, snapshot, refreshed_at, failed_at, failure FROM schema_snapshots";

fn key(connection: &str) -> String {
    connection.to_ascii_lowercase()
}

impl Store {
    /// Records a successful refresh of `connection`: its schema as `package` described it at
    /// `at`. Replaces the previous snapshot and clears a recorded failure.
    pub async fn record_schema(
        &self,
        connection: &str,
        package: &str,
        schema: &ConnectionSchema,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(schema).map_err(|e| StoreError::Corrupt {
            store: self.location().to_string(),
            what: format!("the schema of connection '{connection}'"),
            message: e.to_string(),
        })?;
        on_pool!(self, p => sqlx::query(
            "INSERT INTO schema_snapshots
                 (connection_key, connection, package, snapshot, refreshed_at, failed_at, failure)
             VALUES ($1, $2, $3, $4, $5, NULL, NULL)
             ON CONFLICT (connection_key) DO UPDATE SET
                 connection = excluded.connection, package = excluded.package,
                 snapshot = excluded.snapshot, refreshed_at = excluded.refreshed_at,
                 failed_at = NULL, failure = NULL",
        )
        .bind(key(connection))
        .bind(connection)
        .bind(package)
        .bind(json)
        .bind(at)
        .execute(p)
        .await
        .map(drop))
        .map_err(|e| self.db_error("record a schema snapshot", e))
    }

    /// Records a failed refresh of `connection` at `at` with `message` (already free of
    /// secrets); the last good snapshot stays.
    pub async fn record_schema_failure(
        &self,
        connection: &str,
        at: DateTime<Utc>,
        message: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO schema_snapshots (connection_key, connection, failed_at, failure)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (connection_key) DO UPDATE SET
                 connection = excluded.connection,
                 failed_at = excluded.failed_at, failure = excluded.failure",
        )
        .bind(key(connection))
        .bind(connection)
        .bind(at)
        .bind(message)
        .execute(p)
        .await
        .map(drop))
        .map_err(|e| self.db_error("record a schema refresh failure", e))
    }

    /// What the store knows of `connection`'s schema (`None`: never refreshed).
    pub async fn schema_state(&self, connection: &str) -> Result<Option<SchemaState>, StoreError> {
        let sql = format!("{SELECT} WHERE connection_key = $1");
        let row: Option<Row> = on_pool!(self, p => sqlx::query_as(&sql)
            .bind(key(connection))
            .fetch_optional(p)
            .await)
        .map_err(|e| self.db_error("read a schema snapshot", e))?;
        row.map(|r| self.state(r)).transpose()
    }

    /// What the store knows of every connection's schema, by connection identifier.
    pub async fn schema_states(&self) -> Result<Vec<SchemaState>, StoreError> {
        let sql = format!("{SELECT} ORDER BY connection_key");
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)
            .map_err(|e| self.db_error("read the schema snapshots", e))?;
        rows.into_iter().map(|r| self.state(r)).collect()
    }

    fn state(&self, row: Row) -> Result<SchemaState, StoreError> {
        let (connection, package, snapshot, refreshed_at, failed_at, failure) = row;
        let snapshot = match (snapshot, refreshed_at) {
            (Some(json), Some(refreshed_at)) => Some(SchemaSnapshot {
                package: package.unwrap_or_default(),
                schema: serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                    store: self.location().to_string(),
                    what: format!("the schema snapshot of connection '{connection}'"),
                    message: e.to_string(),
                })?,
                refreshed_at,
            }),
            _ => None,
        };
        let failure = match (failed_at, failure) {
            (Some(at), Some(message)) => Some(SchemaFailure { at, message }),
            _ => None,
        };
        Ok(SchemaState {
            connection,
            snapshot,
            failure,
        })
    }
}
