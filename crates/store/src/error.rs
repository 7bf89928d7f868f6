//! Why the store could not do what was asked. Messages say which store (a path, or a
//! PostgreSQL host and database, never a password), what went wrong and how to fix it.

use std::path::PathBuf;

use crate::lock::Holder;

/// What kind of failure a [`StoreError`] is: exit codes, job states and HTTP statuses derive
/// from it, never from message text (the same idea as the engine's and the packages' kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `--database` points at something that is not (or cannot become) an idlink store, or at
    /// one this build cannot read: fix the option, a retry will not help.
    Configuration,
    /// The store could not be reached, is busy, or a connector is locked by another run: a
    /// retry may help.
    Unavailable,
    /// A local file could not be read or written (disk full, permissions).
    Io,
    /// The store holds a value this build cannot read back.
    Data,
    /// idlink broke its own contract (a query on its own tables failed): a bug to report.
    Bug,
}

impl ErrorKind {
    /// Whether running the same work again later may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Io)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Configuration => "configuration",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Io => "io",
            ErrorKind::Data => "data",
            ErrorKind::Bug => "bug",
        })
    }
}

/// The advice every refusal of a `--database` ends with.
pub(crate) const CHOOSE_ANOTHER: &str =
    "pass --database (or set IDLINK_DATABASE) to an idlink store, or to a new file";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The `--database` value cannot be used.
    #[error("--database '{given}': {message}")]
    Location { given: String, message: String },
    /// A file that is not a SQLite database.
    #[error(
        "'{}' is not an idlink store: it is not a SQLite database ({found}); {CHOOSE_ANOTHER}",
        path.display()
    )]
    NotSqlite { path: PathBuf, found: String },
    /// A database holding another application's tables and no idlink marker.
    #[error(
        "{store} is not an idlink store: it holds tables of another application ({tables}); {advice}"
    )]
    OtherApplication {
        store: String,
        tables: String,
        advice: &'static str,
    },
    /// A store written by a newer idlink.
    #[error(
        "{store} was written by a newer idlink (store format {found}, this idlink reads up to {known}): use a newer idlink or another --database"
    )]
    Newer {
        store: String,
        found: i64,
        known: i64,
    },
    /// The store's marker is there but says something else.
    #[error("{store} is not an idlink store: {why}; {CHOOSE_ANOTHER}")]
    BadMarker { store: String, why: String },
    /// The store cannot be reached or opened (a server down, a wrong password, a busy file).
    #[error("cannot open the store {store}: {message}{}", if *retryable { " (a retry may help)" } else { "" })]
    Unavailable {
        store: String,
        message: String,
        retryable: bool,
    },
    #[error("cannot {operation} '{}': {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A statement on the store failed.
    #[error("store {store}: cannot {operation}: {message}")]
    Database {
        store: String,
        operation: &'static str,
        message: String,
        kind: ErrorKind,
    },
    /// A stored value cannot be read back.
    #[error("store {store}: {what} cannot be read: {message}")]
    Corrupt {
        store: String,
        what: String,
        message: String,
    },
    /// Another process kept writing to a SQLite store longer than a synchronization waits.
    #[error(
        "store {store} is being written by another process{}, and still was after {waited} s: a SQLite store takes one writer at a time; run this again once that one is done, or wait longer (IDLINK_STORE_WAIT, in seconds), or use a PostgreSQL store, where synchronizations of different connectors run at once",
        writers.as_ref().map_or_else(String::new, |w| format!(" (work under way on other connectors: {w})"))
    )]
    Busy {
        store: String,
        waited: u64,
        writers: Option<String>,
    },
    /// Another process runs work on this connector.
    #[error("connector '{connector}' is busy: {}; wait for it to end, or stop that process", holder.as_ref().map_or_else(|| "another process holds its lock (it has not said who it is yet)".to_string(), |h| h.to_string()))]
    Locked {
        connector: String,
        holder: Option<Holder>,
    },
}

impl StoreError {
    /// The kind of failure (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Location { .. }
            | StoreError::NotSqlite { .. }
            | StoreError::OtherApplication { .. }
            | StoreError::Newer { .. }
            | StoreError::BadMarker { .. } => ErrorKind::Configuration,
            StoreError::Unavailable {
                retryable: true, ..
            }
            | StoreError::Locked { .. }
            | StoreError::Busy { .. } => ErrorKind::Unavailable,
            StoreError::Unavailable { .. } => ErrorKind::Configuration,
            StoreError::Io { .. } => ErrorKind::Io,
            StoreError::Database { kind, .. } => *kind,
            StoreError::Corrupt { .. } => ErrorKind::Data,
        }
    }

    pub(crate) fn io(
        operation: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The kind of a driver error: connection-level trouble and a busy file may pass, a failed
/// statement on idlink's own tables is a bug.
pub(crate) fn sqlx_kind(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // SQLITE_BUSY, SQLITE_LOCKED
            Some("5" | "6" | "517" | "261" | "262") => ErrorKind::Unavailable,
            // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_READONLY
            Some("10" | "13" | "14" | "8") => ErrorKind::Io,
            // PostgreSQL: connection exceptions, insufficient resources, operator intervention
            Some(c) if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Bug,
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => ErrorKind::Data,
        _ => ErrorKind::Bug,
    }
}
