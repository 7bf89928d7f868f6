//! Where the store is: a SQLite file (the default, `<work>/idlink.db`) or a PostgreSQL
//! database (`postgres://…`), as `--database` or `IDLINK_DATABASE` give it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use idlink_secrets::Redactor;
use sqlx::postgres::PgConnectOptions;

use crate::StoreError;

/// The file name of the default store in the work folder.
pub const DEFAULT_FILE: &str = "idlink.db";

/// A store's place, parsed.
#[derive(Clone)]
pub enum Location {
    /// A SQLite file (created when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database; the URL may hold a password, so it is never shown.
    Postgres(Box<PostgresUrl>),
}

/// A PostgreSQL URL, kept with what may be shown of it.
#[derive(Clone)]
pub struct PostgresUrl {
    pub(crate) options: PgConnectOptions,
    /// `postgres://user@host:port/database`: no password, no query.
    shown: String,
    redactor: Redactor,
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.shown)
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({self})")
    }
}

impl std::fmt::Display for Location {
    /// The file's path, or `postgres://user@host:port/database` (never a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "'{}'", p.display()),
            Location::Postgres(u) => write!(f, "{}", u.shown),
        }
    }
}

impl Location {
    /// The default store of a work folder: `<work>/idlink.db`.
    pub fn default_in(work: &Path) -> Location {
        Location::Sqlite(work.join(DEFAULT_FILE))
    }

    /// `postgres://…` or `postgresql://…` is a PostgreSQL database; `sqlite:PATH` or any other
    /// text is a SQLite file path. Other URL schemes are refused.
    pub fn parse(given: &str) -> Result<Location, StoreError> {
        let trimmed = given.trim();
        if trimmed.is_empty() {
            return Err(StoreError::Location {
                given: String::new(),
                message: "empty: give a file path (SQLite) or a postgres:// URL".into(),
            });
        }
        let mut redactor = Redactor::new();
        redactor.add_connection_string(trimmed);
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(trimmed).map_err(|e| StoreError::Location {
                given: redactor.redact(trimmed),
                message: format!(
                    "not a PostgreSQL URL: {} (expected postgres://user:password@host:port/database)",
                    redactor.redact(&e.to_string())
                ),
            })?;
            let shown = format!(
                "postgres://{}@{}:{}/{}",
                options.get_username(),
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or(options.get_username())
            );
            return Ok(Location::Postgres(Box::new(PostgresUrl {
                options,
                shown,
                redactor,
            })));
        }
        if let Some(rest) = lower.strip_prefix("sqlite:") {
            let start = trimmed.len() - rest.len();
            let path = trimmed[start..].trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path == ":memory:" {
                return Err(StoreError::Location {
                    given: trimmed.to_string(),
                    message: "a SQLite store needs a file path (sqlite:PATH, or the path alone)"
                        .into(),
                });
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = trimmed.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err(StoreError::Location {
                given: redactor.redact(trimmed),
                message: format!(
                    "'{scheme}' databases are not supported: use a file path (SQLite) or a postgres:// URL"
                ),
            });
        }
        Ok(Location::Sqlite(PathBuf::from(trimmed)))
    }

    /// `text` with the URL's password hidden (for driver messages).
    pub fn redact(&self, text: &str) -> String {
        match self {
            Location::Sqlite(_) => text.to_string(),
            Location::Postgres(u) => u.redactor.redact(text),
        }
    }

    /// Which backend: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Location::Sqlite(_) => "sqlite",
            Location::Postgres(_) => "postgres",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_never_show_their_password() {
        let l =
            Location::parse("postgres://idlink:S3cret-pw@db.example:5433/store?sslmode=disable")
                .expect("parses");
        let shown = l.to_string();
        assert_eq!(shown, "postgres://idlink@db.example:5433/store");
        assert_eq!(format!("{l:?}"), format!("Location({shown})"));
        assert_eq!(
            l.redact("password authentication failed: S3cret-pw"),
            "password authentication failed: **REDACTED**"
        );
        assert_eq!(l.backend(), "postgres");
    }

    #[test]
    fn paths_and_sqlite_urls_are_files() {
        for (given, path) in [
            ("work/idlink.db", "work/idlink.db"),
            ("sqlite:store.db", "store.db"),
            ("sqlite://store.db?mode=rwc", "store.db"),
            ("/abs/x.db", "/abs/x.db"),
        ] {
            match Location::parse(given).expect("parses") {
                Location::Sqlite(p) => assert_eq!(p, Path::new(path), "{given}"),
                other => panic!("{given}: {other}"),
            }
        }
    }

    #[test]
    fn other_schemes_and_empty_values_are_refused() {
        let e = Location::parse("mysql://u:pw@h/db").expect_err("refused");
        let text = e.to_string();
        assert!(
            text.contains("'mysql' databases are not supported"),
            "{text}"
        );
        assert!(!text.contains("pw@"), "{text}");
        assert!(Location::parse("  ").is_err());
        assert!(Location::parse("sqlite::memory:").is_err());
    }
}
