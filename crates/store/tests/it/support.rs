//! Fresh stores on both backends.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use idlink_store::Location;
use idlink_test_support::PostgresServer;

pub static PG: LazyLock<PostgresServer> = LazyLock::new(PostgresServer::start);

/// A place for a new store, and what keeps it alive.
pub struct Target {
    /// What `--database` would say.
    pub given: String,
    pub location: Location,
    /// The SQLite file's folder (kept until the test ends).
    pub _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database's name.
    pub database: Option<String>,
}

impl Target {
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.location {
            Location::Sqlite(p) => Some(p.clone()),
            Location::Postgres(_) => None,
        }
    }

    /// Runs SQL directly on the target, as another application would (not through the store).
    pub async fn execute(&self, sql: &str) {
        match (&self.location, &self.database) {
            (Location::Sqlite(path), _) => sqlite_execute(path, sql).await,
            (Location::Postgres(_), Some(db)) => {
                PG.execute(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            (Location::Postgres(_), None) => unreachable!("a PostgreSQL target has a database"),
        }
    }
}

/// Runs `sql` (one or more statements) on the SQLite file at `path`, creating it if needed.
pub async fn sqlite_execute(path: &Path, sql: &str) {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .busy_timeout(std::time::Duration::from_secs(10));
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.expect("close");
}

pub fn sqlite() -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("work/idlink.db");
    Target {
        given: path.display().to_string(),
        location: Location::Sqlite(path),
        _dir: Some(dir),
        database: None,
    }
}

/// A new database on the shared private server.
pub fn postgres() -> Target {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "store_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    PG.create_database(&name).expect("create database");
    let given = PG.url(&name);
    Target {
        location: Location::parse(&given).expect("url"),
        given,
        _dir: None,
        database: Some(name),
    }
}

/// One test per backend: `both!(name, async fn(Target))`.
#[macro_export]
macro_rules! both {
    ($name:ident, $case:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(
                    $crate::support::sqlite(),
                    concat!(module_path!(), "::sqlite"),
                )
                .await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case(
                    $crate::support::postgres(),
                    concat!(module_path!(), "::postgres"),
                )
                .await;
            }
        }
    };
}
