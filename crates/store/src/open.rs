//! Opening a store: recognise an idlink store (and refuse anything else) before touching it,
//! then apply the pending migrations.

use std::path::Path;
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row};

use crate::error::sqlx_kind;
use crate::location::PostgresUrl;
use crate::migrate::{FORMAT_VERSION, META_TABLE, MIGRATIONS, idlink_version};
use crate::{ErrorKind, FORMAT, Location, Pool, SQLITE_APPLICATION_ID, Store, StoreError};

/// How long a SQLite statement waits for another process's write transaction to end.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// PostgreSQL advisory locks of idlink use this first key; the second is 0 for migrations and
/// a connector's id for connector locks.
pub(crate) const LOCK_CLASS: i32 = SQLITE_APPLICATION_ID;

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// What a database holds, as far as telling an idlink store from anything else goes.
#[derive(Debug, Default)]
struct Found {
    /// Tables and views outside the backend's own.
    tables: Vec<String>,
    /// `idlink_meta`'s rows, when the table exists.
    meta: Option<Vec<(String, String)>>,
    /// SQLite's `PRAGMA application_id` (0 when unset).
    application_id: i32,
}

/// What the database is, once judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    /// Nothing in it yet: an idlink store can be created.
    Empty,
    /// An idlink store at this format version.
    Idlink(i64),
}

/// At most five table names, then how many more.
fn list_tables(tables: &[String]) -> String {
    let mut s = tables
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if tables.len() > 5 {
        s.push_str(&format!(" and {} more", tables.len() - 5));
    }
    s
}

fn judge(store: &str, found: &Found, advice: &'static str) -> Result<Identity, StoreError> {
    if let Some(meta) = &found.meta {
        let get = |k: &str| {
            meta.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        match get("format") {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(StoreError::BadMarker {
                    store: store.to_string(),
                    why: format!("its {META_TABLE} table says format '{other}'"),
                });
            }
            None => {
                return Err(StoreError::BadMarker {
                    store: store.to_string(),
                    why: format!("its {META_TABLE} table has no format"),
                });
            }
        }
        let version = get("format_version").unwrap_or_default();
        let version: i64 = version.parse().map_err(|_| StoreError::BadMarker {
            store: store.to_string(),
            why: format!("its format version '{version}' is not a number"),
        })?;
        if version > FORMAT_VERSION {
            return Err(StoreError::Newer {
                store: store.to_string(),
                found: version,
                known: FORMAT_VERSION,
            });
        }
        return Ok(Identity::Idlink(version));
    }
    if found.application_id != 0 && found.application_id != SQLITE_APPLICATION_ID {
        let tables = if found.tables.is_empty() {
            format!("no tables yet, application_id {:#x}", found.application_id)
        } else {
            format!(
                "{}; application_id {:#x}",
                list_tables(&found.tables),
                found.application_id
            )
        };
        return Err(StoreError::OtherApplication {
            store: store.to_string(),
            tables,
            advice,
        });
    }
    if !found.tables.is_empty() {
        return Err(StoreError::OtherApplication {
            store: store.to_string(),
            tables: list_tables(&found.tables),
            advice,
        });
    }
    Ok(Identity::Empty)
}

pub(crate) async fn open(location: &Location, create: bool) -> Result<Option<Store>, StoreError> {
    match location {
        Location::Sqlite(path) => open_sqlite(location, path, create).await,
        Location::Postgres(url) => open_postgres(location, url, create).await,
    }
}

/// Inserts the row of an applied migration (the same SQL on both backends).
macro_rules! record_migration {
    ($conn:expr, $m:expr) => {
        sqlx::query(
            "INSERT INTO idlink_migrations (version, name, applied_at, applied_by) VALUES ($1, $2, $3, $4)",
        )
        .bind($m.version)
        .bind($m.name)
        .bind(crate::now())
        .bind(idlink_version())
        .execute($conn)
        .await
    };
}

/// Writes the marker after migrating from `current`: format and creator for a new store, the
/// format version always.
macro_rules! write_meta {
    ($conn:expr, $current:expr) => {
        async {
            let conn = $conn;
            if $current == 0 {
                for (key, value) in [
                    ("format", FORMAT.to_string()),
                    ("created_by", idlink_version()),
                    ("created_at", crate::now().to_rfc3339()),
                ] {
                    sqlx::query("INSERT INTO idlink_meta (key, value) VALUES ($1, $2)")
                        .bind(key)
                        .bind(value)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            sqlx::query(
                "INSERT INTO idlink_meta (key, value) VALUES ('format_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(FORMAT_VERSION.to_string())
            .execute(&mut *conn)
            .await
            .map(drop)
        }
        .await
    };
}

// ---------------------------------------------------------------------------------------------
// SQLite

const SQLITE_ADVICE: &str = "pass --database (or set IDLINK_DATABASE) to an idlink store, or to a new file (the default is <work>/idlink.db)";

fn sqlite_error(location: &Location, operation: &'static str, e: sqlx::Error) -> StoreError {
    StoreError::Database {
        store: location.to_string(),
        operation,
        message: e.to_string(),
        kind: sqlx_kind(&e),
    }
}

/// Whether the file exists with content (an empty file is an empty SQLite database); refuses
/// a folder and a file that does not start with SQLite's header.
fn sqlite_file_state(location: &Location, path: &Path) -> Result<bool, StoreError> {
    use std::io::Read;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io("read", path, e)),
    };
    if meta.is_dir() {
        return Err(StoreError::Location {
            given: path.display().to_string(),
            message: format!(
                "{location} is a folder: give the store's file (e.g. {})",
                path.join(crate::location::DEFAULT_FILE).display()
            ),
        });
    }
    if meta.len() == 0 {
        return Ok(false);
    }
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| StoreError::io("read", path, e))?;
    if head.as_slice() != SQLITE_HEADER {
        let printable: String = head
            .iter()
            .take(12)
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        return Err(StoreError::NotSqlite {
            path: path.to_path_buf(),
            found: format!(
                "it starts with \"{printable}\", a SQLite file with \"SQLite format 3\""
            ),
        });
    }
    Ok(true)
}

async fn identify_sqlite(conn: &mut SqliteConnection) -> Result<Found, sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let application_id: i32 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut *conn)
        .await?;
    let meta = if tables.iter().any(|t| t == META_TABLE) {
        let rows = sqlx::query("SELECT key, value FROM idlink_meta")
            .fetch_all(&mut *conn)
            .await?;
        Some(
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(String, String)>, sqlx::Error>>()?,
        )
    } else {
        None
    };
    Ok(Found {
        tables,
        meta,
        application_id,
    })
}

/// The page cache of a SQLite connection, in `PRAGMA cache_size` terms (negative: KiB).
pub(crate) const SQLITE_CACHE: &str = "-65536";
/// The page cache while a synchronization reads an entity type's index: the read is in key
/// order and needs few pages, and the memory is the index's.
pub(crate) const SQLITE_READ_CACHE: &str = "-8192";

async fn open_sqlite(
    location: &Location,
    path: &Path,
    create: bool,
) -> Result<Option<Store>, StoreError> {
    let exists = sqlite_file_state(location, path)?;
    let shown = location.to_string();
    if exists {
        // Judge it read-only first: a foreign file is left exactly as it was.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .foreign_keys(false)
            .busy_timeout(BUSY_TIMEOUT);
        let mut conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| sqlite_open_error(location, path, e))?;
        let found = identify_sqlite(&mut conn)
            .await
            .map_err(|e| sqlite_open_error(location, path, e))?;
        let _ = conn.close().await;
        if judge(&shown, &found, SQLITE_ADVICE)? == Identity::Empty && !create {
            return Ok(None);
        }
    } else if !create {
        return Ok(None);
    } else {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::io("create the store's folder", parent, e))?;
        }
        // The store holds every identity: readable by its owner only (SQLite would create it
        // as the umask says, 0644, and gives its WAL the file's mode). An empty file is an
        // empty database; one created meanwhile by another process is left to it.
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io("create the store", path, e)),
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .synchronous(SqliteSynchronous::Normal)
        // A 64 MiB page cache per connection (SQLite's default is 2 MiB): a synchronization
        // writes its index pages in key order, not file order, and must not thrash.
        .pragma("cache_size", SQLITE_CACHE);
    // WAL is a property of the file: set once (it needs the file to itself), not per connection.
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| sqlite_open_error(location, path, e))?;
    wal(location, &mut conn).await?;
    let _ = conn.close().await;
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options.journal_mode(SqliteJournalMode::Wal))
        .await
        .map_err(|e| sqlite_open_error(location, path, e))?;
    migrate_sqlite(location, &pool).await?;
    Ok(Some(Store {
        pool: Pool::Sqlite(pool),
        location: location.clone(),
    }))
}

/// Turns write-ahead logging on. Switching needs the file to itself and does not wait on the
/// busy timeout, so a process creating the store at the same time is waited for here.
async fn wal(location: &Location, conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut last = None;
    for _ in 0..100 {
        let mode: Result<String, _> = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(&mut *conn)
            .await;
        match mode {
            Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(m) => last = Some(format!("the journal mode stays '{m}'")),
            Err(e) if sqlx_kind(&e) == ErrorKind::Unavailable => last = Some(e.to_string()),
            Err(e) => return Err(sqlite_error(location, "turn on write-ahead logging", e)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(StoreError::Unavailable {
        store: location.to_string(),
        message: format!(
            "cannot turn on write-ahead logging: {}",
            last.unwrap_or_default()
        ),
        retryable: true,
    })
}

fn sqlite_open_error(location: &Location, path: &Path, e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("26")
    {
        return StoreError::NotSqlite {
            path: path.to_path_buf(),
            found: format!("SQLite cannot read it: {}", db.message()),
        };
    }
    let kind = sqlx_kind(&e);
    StoreError::Unavailable {
        store: location.to_string(),
        message: e.to_string(),
        retryable: kind.retryable(),
    }
}

async fn migrate_sqlite(location: &Location, pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    let shown = location.to_string();
    let err = |op: &'static str| move |e: sqlx::Error| sqlite_error(location, op, e);
    // Quick look first: an up-to-date store needs no write transaction.
    {
        let mut conn = pool.acquire().await.map_err(err("connect"))?;
        let found = identify_sqlite(&mut conn)
            .await
            .map_err(err("read the store's marker"))?;
        if judge(&shown, &found, SQLITE_ADVICE)? == Identity::Idlink(FORMAT_VERSION) {
            return Ok(());
        }
    }
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(err("start the migration"))?;
    let found = identify_sqlite(&mut tx)
        .await
        .map_err(err("read the store's marker"))?;
    let current = match judge(&shown, &found, SQLITE_ADVICE)? {
        Identity::Empty => 0,
        Identity::Idlink(v) => v,
    };
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for statement in m.sqlite {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(err("apply a migration"))?;
        }
        record_migration!(&mut *tx, m).map_err(err("record a migration"))?;
    }
    write_meta!(&mut *tx, current).map_err(err("write the store's marker"))?;
    tx.commit().await.map_err(err("commit the migration"))?;
    if current < FORMAT_VERSION {
        tracing::info!(store = %shown, from = current, to = FORMAT_VERSION, "store migrated");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const POSTGRES_ADVICE: &str = "use a database of its own for idlink (CREATE DATABASE idlink), or a schema of its own (CREATE SCHEMA idlink, then add ?options=-csearch_path%3Didlink to the URL)";

async fn identify_postgres(
    conn: &mut PgConnection,
    location: &Location,
) -> Result<Found, StoreError> {
    let err = |op: &'static str| {
        move |e: sqlx::Error| StoreError::Database {
            store: location.to_string(),
            operation: op,
            message: location.redact(&e.to_string()),
            kind: sqlx_kind(&e),
        }
    };
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("read the current schema"))?;
    let Some(schema) = schema else {
        let path: String = sqlx::query_scalar("SHOW search_path")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_default();
        return Err(StoreError::Unavailable {
            store: location.to_string(),
            message: format!(
                "no schema of the search path ({path}) exists: create it (CREATE SCHEMA ...) or fix search_path in the URL's options"
            ),
            retryable: false,
        });
    };
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(err("list the tables"))?;
    let meta = if tables.iter().any(|t| t == META_TABLE) {
        let rows = sqlx::query("SELECT key, value FROM idlink_meta")
            .fetch_all(&mut *conn)
            .await
            .map_err(err("read the store's marker"))?;
        Some(
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(String, String)>, sqlx::Error>>()
                .map_err(err("read the store's marker"))?,
        )
    } else {
        None
    };
    Ok(Found {
        tables,
        meta,
        application_id: 0,
    })
}

fn postgres_connect_error(location: &Location, e: sqlx::Error) -> StoreError {
    let kind = sqlx_kind(&e);
    let mut message = location.redact(&e.to_string());
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            Some("3D000") => message.push_str(
                ": create it (CREATE DATABASE ...) or point --database at an existing one",
            ),
            Some("28P01" | "28000") => {
                message.push_str(": check the user and password in the URL");
            }
            _ => {}
        }
    }
    StoreError::Unavailable {
        store: location.to_string(),
        message,
        retryable: kind == ErrorKind::Unavailable,
    }
}

async fn open_postgres(
    location: &Location,
    url: &PostgresUrl,
    create: bool,
) -> Result<Option<Store>, StoreError> {
    let shown = location.to_string();
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .acquire_timeout(Duration::from_secs(15))
        .connect_with(url.options.clone())
        .await
        .map_err(|e| postgres_connect_error(location, e))?;
    let err = |op: &'static str| {
        move |e: sqlx::Error| StoreError::Database {
            store: location.to_string(),
            operation: op,
            message: location.redact(&e.to_string()),
            kind: sqlx_kind(&e),
        }
    };
    {
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| postgres_connect_error(location, e))?;
        let found = identify_postgres(&mut conn, location).await?;
        match judge(&shown, &found, POSTGRES_ADVICE)? {
            Identity::Empty if !create => {
                drop(conn);
                pool.close().await;
                return Ok(None);
            }
            Identity::Idlink(FORMAT_VERSION) => {
                drop(conn);
                return Ok(Some(Store {
                    pool: Pool::Postgres(pool),
                    location: location.clone(),
                }));
            }
            _ => {}
        }
    }
    let mut tx = pool.begin().await.map_err(err("start the migration"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_CLASS)
        .execute(&mut *tx)
        .await
        .map_err(err("lock the store for its migration"))?;
    let found = identify_postgres(&mut tx, location).await?;
    let current = match judge(&shown, &found, POSTGRES_ADVICE)? {
        Identity::Empty => 0,
        Identity::Idlink(v) => v,
    };
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for statement in m.postgres {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(err("apply a migration"))?;
        }
        record_migration!(&mut *tx, m).map_err(err("record a migration"))?;
    }
    write_meta!(&mut *tx, current).map_err(err("write the store's marker"))?;
    tx.commit().await.map_err(err("commit the migration"))?;
    if current < FORMAT_VERSION {
        tracing::info!(store = %shown, from = current, to = FORMAT_VERSION, "store migrated");
    }
    Ok(Some(Store {
        pool: Pool::Postgres(pool),
        location: location.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(tables: &[&str], meta: Option<&[(&str, &str)]>, application_id: i32) -> Found {
        Found {
            tables: tables.iter().map(|t| t.to_string()).collect(),
            meta: meta.map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            application_id,
        }
    }

    #[test]
    fn an_empty_database_can_become_a_store() {
        assert_eq!(
            judge("x", &found(&[], None, 0), SQLITE_ADVICE).ok(),
            Some(Identity::Empty)
        );
    }

    #[test]
    fn foreign_tables_are_listed_five_at_most() {
        let e = judge(
            "'a.db'",
            &found(&["a", "b", "c", "d", "e", "f", "g"], None, 0),
            SQLITE_ADVICE,
        )
        .expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "'a.db' is not an idlink store: it holds tables of another application (a, b, c, d, e and 2 more); {SQLITE_ADVICE}"
            )
        );
    }

    #[test]
    fn a_foreign_application_id_is_refused_even_without_tables() {
        let e = judge("'a.db'", &found(&[], None, 0x1234), SQLITE_ADVICE).expect_err("refused");
        assert!(e.to_string().contains("application_id 0x1234"), "{e}");
    }

    #[test]
    fn markers_are_read() {
        let v = FORMAT_VERSION.to_string();
        let ok = found(
            &["idlink_meta"],
            Some(&[("format", FORMAT), ("format_version", &v)]),
            SQLITE_APPLICATION_ID,
        );
        assert_eq!(
            judge("x", &ok, SQLITE_ADVICE).ok(),
            Some(Identity::Idlink(FORMAT_VERSION))
        );
        let other = found(&["idlink_meta"], Some(&[("format", "else")]), 0);
        assert!(matches!(
            judge("x", &other, SQLITE_ADVICE),
            Err(StoreError::BadMarker { .. })
        ));
        let newer = (FORMAT_VERSION + 1).to_string();
        let e = judge(
            "x",
            &found(
                &["idlink_meta"],
                Some(&[("format", FORMAT), ("format_version", &newer)]),
                0,
            ),
            SQLITE_ADVICE,
        )
        .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert!(e.to_string().contains(&format!(
            "store format {newer}, this idlink reads up to {FORMAT_VERSION}"
        )));
    }

    #[test]
    fn choose_another_is_part_of_the_sqlite_advice() {
        assert!(SQLITE_ADVICE.starts_with(crate::error::CHOOSE_ANOTHER));
    }
}
