//! From database errors to [`PackageError`]s: which connection, which server, what kind of
//! failure, whether a retry may help; secrets removed from every message.

use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::error::DatabaseError;
use sqlx::mysql::MySqlDatabaseError;
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

use crate::api::{PackageError, Progress};

/// The context of one package operation.
pub(crate) struct Cx<'a> {
    pub connection: &'a str,
    /// `PostgreSQL at host:port/db`.
    pub system: String,
    pub secrets: &'a idlink_secrets::Redactor,
    pub timeout: Option<Duration>,
    pub progress: &'a dyn Progress,
    /// Why the relay between sqlx and the server ended the connection, if it did: sqlx only
    /// sees the connection close, so this is the real reason.
    pub relay: std::sync::Arc<super::relay::Status>,
}

/// What went wrong, as the messages tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Unreachable,
    BadCredentials,
    DatabaseMissing,
    /// The server refused the statement (syntax, unknown table, permission, ...).
    Query,
    /// Anything else (protocol, TLS, decoding, ...).
    Other,
}

impl Cx<'_> {
    /// Removes every secret from `message`.
    pub fn redact(&self, message: &str) -> String {
        self.secrets.redact(message)
    }

    pub fn system_error(
        &self,
        operation: &'static str,
        message: String,
        retryable: bool,
    ) -> PackageError {
        PackageError::System {
            connection: self.connection.to_string(),
            system: self.system.clone(),
            operation,
            message: self.redact(&message),
            retryable,
        }
    }

    /// A problem with the settings, found when running (e.g. a mapped table without suffix).
    pub fn settings(&self, message: String) -> PackageError {
        PackageError::Settings {
            connection: self.connection.to_string(),
            path: "SqlCommand".to_string(),
            message: self.redact(&message),
        }
    }

    /// A value that cannot be written.
    pub fn data(&self, location: String, message: String) -> PackageError {
        PackageError::Data {
            location: self.redact(&location),
            message: self.redact(&message),
        }
    }

    pub fn timed_out(&self, operation: &'static str) -> PackageError {
        if let Some(f) = self.relay.failure() {
            return self.system_error(operation, f.message, f.retryable);
        }
        let secs = self.timeout.map_or(0, |t| t.as_secs());
        self.system_error(
            operation,
            format!(
                "no answer from the server within {secs} s (the Timeout setting; 0 waits without limit)"
            ),
            true,
        )
    }

    /// Runs a database call bounded by the timeout; errors classified.
    ///
    /// The future is boxed: passing sqlx's futures through generic code loses the lifetimes
    /// that prove them `Send` (a known limit of the compiler).
    pub async fn wait<T>(
        &self,
        operation: &'static str,
        fut: BoxFuture<'_, Result<T, sqlx::Error>>,
    ) -> Result<T, PackageError> {
        match super::bounded(self.timeout, fut).await {
            None => Err(self.timed_out(operation)),
            Some(r) => r.map_err(|e| self.sqlx(operation, e)),
        }
    }

    /// Classifies a database error.
    pub fn sqlx(&self, operation: &'static str, e: sqlx::Error) -> PackageError {
        if let Some(f) = self.relay.failure() {
            return self.system_error(operation, f.message, f.retryable);
        }
        let (class, message) = classify(&e);
        let (prefix, retryable) = match class {
            Class::Unreachable => ("cannot reach the server: ", true),
            Class::BadCredentials => ("bad credentials: ", false),
            Class::DatabaseMissing => ("database missing: ", false),
            Class::Query => ("the database refused the statement: ", false),
            Class::Other => ("", false),
        };
        if class == Class::BadCredentials {
            // Its own kind, so jobs and exit codes tell a refused login from a refused statement.
            return PackageError::Credentials {
                connection: self.connection.to_string(),
                system: self.system.clone(),
                operation,
                message: self.redact(&format!("{prefix}{message}")),
            };
        }
        self.system_error(operation, format!("{prefix}{message}"), retryable)
    }
}

fn classify(e: &sqlx::Error) -> (Class, String) {
    match e {
        sqlx::Error::Io(io) => (Class::Unreachable, io.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => (Class::Unreachable, e.to_string()),
        sqlx::Error::Database(db) => classify_database(db.as_ref()),
        sqlx::Error::Tls(t) => (Class::Other, format!("TLS: {t}")),
        sqlx::Error::Configuration(c) => (Class::Other, format!("configuration: {c}")),
        other => (Class::Other, other.to_string()),
    }
}

fn classify_database(db: &dyn DatabaseError) -> (Class, String) {
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        let code = pg.code();
        let class = match code {
            "28P01" | "28000" => Class::BadCredentials,
            "3D000" => Class::DatabaseMissing,
            "57P03" | "53300" | "57P01" | "57P02" => Class::Unreachable,
            c if c.starts_with("08") => Class::Unreachable,
            _ => Class::Query,
        };
        let mut m = pg.message().to_string();
        if let Some(PgErrorPosition::Original(p)) = pg.position() {
            m.push_str(&format!(" (at character {p} of the statement)"));
        }
        if let Some(d) = pg.detail() {
            m.push_str(&format!("; {d}"));
        }
        if let Some(h) = pg.hint() {
            m.push_str(&format!("; hint: {h}"));
        }
        m.push_str(&format!(" [SQLSTATE {code}]"));
        return (class, m);
    }
    if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
        let class = match my.number() {
            1045 | 1044 | 1698 | 1251 => Class::BadCredentials,
            1049 => Class::DatabaseMissing,
            1040 | 1203 | 1053 | 1077 | 1080 | 1927 | 2002 | 2003 | 2006 | 2013 => {
                Class::Unreachable
            }
            _ => Class::Query,
        };
        let m = format!("{} [error {}]", my.message(), my.number());
        return (class, m);
    }
    // SQLite.
    let code = db
        .code()
        .map(|c| format!(" [code {c}]"))
        .unwrap_or_default();
    let class = match db.code().as_deref() {
        // SQLITE_BUSY, SQLITE_LOCKED
        Some("5" | "6") => Class::Unreachable,
        // SQLITE_CANTOPEN, SQLITE_NOTADB
        Some("14" | "26") => Class::DatabaseMissing,
        _ => Class::Query,
    };
    (class, format!("{}{code}", db.message()))
}
