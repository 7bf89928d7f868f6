//! The idlink store: what the system learns and does (SPEC §7.1): schema snapshots now;
//! resources, links and sync runs next.
//!
//! One [`Store`] type over two backends, chosen by [`Location`]: a SQLite file by default
//! (`<work>/idlink.db`, WAL, foreign keys on, a busy timeout) and PostgreSQL for deployments
//! that outgrow one machine. The pool is an enum of the two concrete sqlx pools, not sqlx's
//! `AnyPool`, so each area can take a backend's fast path where it matters (PostgreSQL `COPY`,
//! SQLite prepared batch inserts); plain statements are written once in the SQL both accept
//! (`$1` parameters, `ON CONFLICT … DO UPDATE`) and run on either pool through [`on_pool!`].
//!
//! Layout, one module per area so areas can be added beside them:
//! - [`location`]: `--database` parsed (a path or a `postgres://` URL) and shown without password;
//! - `open`: opening, recognising an idlink store and refusing anything else;
//! - [`migrate`]: the ordered list of versioned migrations per backend;
//! - [`lock`]: connector locks held across processes;
//! - [`schemas`]: schema snapshots (last success, last failure);
//! - [`provisioning`]: orders, assignments and job runs;
//! - [`agents`]: remote agents, their enrolment and sessions, and the agent work queue;
//! - [`users`]: the server's users, sessions and API tokens; [`audit`]: its audit log;
//! - [`schedule`]: the scheduler's claimed fires (one server per scheduled time).

pub mod agents;
pub mod audit;
mod error;
pub mod location;
pub mod lock;
pub mod migrate;
mod open;
pub mod provisioning;
pub mod resources;
pub mod schedule;
pub mod schemas;
pub mod users;
mod values;

pub use agents::{AgentRecord, AgentState, AgentTask, Enrolment};
pub use audit::AuditEntry;
pub use error::{ErrorKind, StoreError};
pub use location::Location;
pub use lock::{ConnectorLock, Holder};
pub use provisioning::{
    Assignment, JobRun, NewOrder, OrderFilter, OrderState, OrderUpdate, StoredOrder,
};
pub use resources::{
    Digest, IndexEntry, NewResource, Page, ReadSnapshot, Resource, ResourceUpdate, SnapshotEntry,
    SyncTx, ValuesInText, values_match,
};
pub use schedule::Fire;
pub use schemas::{SchemaFailure, SchemaSnapshot, SchemaState};
pub use users::{ApiToken, Session, User};
pub use values::Packer;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

/// The marker an idlink store carries in its `idlink_meta` table (`format`).
pub const FORMAT: &str = "idlink-store";

/// SQLite `PRAGMA application_id` of an idlink store: "IDLK".
pub const SQLITE_APPLICATION_ID: i32 = 0x4944_4C4B;

/// A connection pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's concrete pool: the body is compiled once
/// per backend, so queries written in the SQL both backends accept are written once.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.pool() {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

/// An open, migrated idlink store. Clones share one pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    location: Location,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location.to_string())
            .finish()
    }
}

impl Store {
    /// Opens the store at `location`, creating it when it does not exist yet, and brings it to
    /// this build's format. Refuses a file or database that is not an idlink store, and a
    /// store written by a newer idlink.
    pub async fn open(location: &Location) -> Result<Store, StoreError> {
        open::open(location, true)
            .await?
            .ok_or_else(|| StoreError::Database {
                store: location.to_string(),
                operation: "create the store",
                message: "opening with creation gave no store".into(),
                kind: ErrorKind::Bug,
            })
    }

    /// Opens the store at `location` if there is one (for commands that only read, such as
    /// `check`): `None` when the file does not exist or the database holds no table yet.
    /// What exists is recognised (and refused) as by [`Store::open`].
    pub async fn open_existing(location: &Location) -> Result<Option<Store>, StoreError> {
        open::open(location, false).await
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The store's format version (the last migration applied).
    pub async fn format_version(&self) -> Result<i64, StoreError> {
        let v: Option<String> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT value FROM idlink_meta WHERE key = 'format_version'"
        )
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("read the format version", e))?;
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt {
                store: self.location.to_string(),
                what: "the format version".into(),
                message: "missing or not a number".into(),
            })
    }

    /// Closes the pool (waits for connections to finish).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// A driver error as a [`StoreError::Database`], password hidden.
    pub fn db_error(&self, operation: &'static str, e: sqlx::Error) -> StoreError {
        StoreError::Database {
            store: self.location.to_string(),
            operation,
            message: self.location.redact(&e.to_string()),
            kind: error::sqlx_kind(&e),
        }
    }
}

/// Now, as the store records times (UTC, whole microseconds so both backends give back the
/// same value).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::{SubsecRound, Utc};
    Utc::now().trunc_subsecs(6)
}
