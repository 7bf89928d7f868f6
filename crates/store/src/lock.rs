//! Connector locks: two processes never run work on one connector at the same time; the
//! second is told who holds the lock (process, host, what it does) and since when.
//!
//! A lock dies with its holder, even one killed with `kill -9`:
//! - SQLite store: an OS file lock ([`std::fs::File::try_lock`]) on
//!   `<store>.locks/<connector>.lock`, the holder's details written inside the file. The
//!   kernel drops the lock when the process ends. The file is kept (deleting a lock file lets
//!   two processes lock two different files of one name); it is emptied on release.
//! - PostgreSQL store: a session advisory lock (`pg_try_advisory_lock`) on a connection the
//!   guard holds, with the holder's details in `connector_locks`. The server drops the lock
//!   when that connection ends, however the process ended.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::open::LOCK_CLASS;
use crate::{Location, Pool, Store, StoreError};

/// Who holds a connector's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's process id on its host.
    pub pid: u32,
    pub host: String,
    /// What it runs (`sync`, `refresh-schema`, ...).
    pub purpose: String,
    pub since: DateTime<Utc>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} holds it (process {} on {}) since {}",
            self.purpose,
            self.pid,
            self.host,
            self.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

impl Holder {
    fn me(purpose: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            purpose: purpose.to_string(),
            since: crate::now(),
        }
    }
}

/// This machine's name, as the kernel has it.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// A held connector lock; released when dropped (or by [`ConnectorLock::release`]).
pub struct ConnectorLock {
    connector: String,
    holder: Holder,
    inner: Inner,
}

enum Inner {
    File(File),
    Postgres { conn: Option<PgConnection>, id: i32 },
}

impl std::fmt::Debug for ConnectorLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorLock")
            .field("connector", &self.connector)
            .field("holder", &self.holder)
            .finish()
    }
}

/// Tries at taking a PostgreSQL connector lock, and the pause between them.
const LOCK_ATTEMPTS: u32 = 8;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

impl ConnectorLock {
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// This process, as others are told.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Releases the lock now and says so to the store (dropping the guard releases it too,
    /// but a PostgreSQL server only notices when the connection closes).
    pub async fn release(mut self) -> Result<(), StoreError> {
        match &mut self.inner {
            // Emptied while still held, then closed (which unlocks it): see `Drop`.
            Inner::File(_) => {}
            Inner::Postgres { conn, id } => {
                if let Some(mut c) = conn.take() {
                    let _ = sqlx::query(
                        "UPDATE connector_locks SET pid = NULL, host = NULL, purpose = NULL, since = NULL WHERE id = $1",
                    )
                    .bind(*id)
                    .execute(&mut c)
                    .await;
                    let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                        .bind(LOCK_CLASS)
                        .bind(*id)
                        .execute(&mut c)
                        .await;
                    let _ = c.close().await;
                }
            }
        }
        Ok(())
    }
}

impl Drop for ConnectorLock {
    fn drop(&mut self) {
        if let Inner::File(file) = &self.inner {
            let _ = file.set_len(0);
        }
        // A PostgreSQL lock ends with its connection, dropped here.
    }
}

/// The lock file of `connector` beside a SQLite store: `<store>.locks/<connector>.lock`, the
/// identifier kept readable (letters, digits, `.`, `-`, `_`; other bytes as `%XX`).
pub fn lock_file(store: &Path, connector: &str) -> PathBuf {
    let mut name = String::new();
    for (i, b) in connector.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0) {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    let mut dir = store.as_os_str().to_owned();
    dir.push(".locks");
    PathBuf::from(dir).join(format!("{name}.lock"))
}

impl Store {
    /// Takes `connector`'s lock for `purpose` (`sync`, `refresh-schema`, ...), or says who
    /// holds it since when ([`StoreError::Locked`]). Never waits.
    pub async fn lock_connector(
        &self,
        connector: &str,
        purpose: &str,
    ) -> Result<ConnectorLock, StoreError> {
        match (self.pool(), self.location()) {
            (Pool::Sqlite(_), Location::Sqlite(path)) => {
                // File work (and a short wait for a holder writing its details) off the executor.
                let (path, connector, purpose) =
                    (path.clone(), connector.to_string(), purpose.to_string());
                tokio::task::spawn_blocking(move || lock_sqlite(&path, &connector, &purpose))
                    .await
                    .map_err(|e| StoreError::Database {
                        store: self.location().to_string(),
                        operation: "lock a connector",
                        message: format!("the locking task failed: {e}"),
                        kind: crate::ErrorKind::Bug,
                    })?
            }
            (Pool::Postgres(_), Location::Postgres(url)) => {
                self.lock_postgres(&url.options, connector, purpose).await
            }
            _ => Err(StoreError::Database {
                store: self.location().to_string(),
                operation: "lock a connector",
                message: "the pool and the location disagree".into(),
                kind: crate::ErrorKind::Bug,
            }),
        }
    }

    async fn lock_postgres(
        &self,
        options: &sqlx::postgres::PgConnectOptions,
        connector: &str,
        purpose: &str,
    ) -> Result<ConnectorLock, StoreError> {
        let err = |op: &'static str| move |e: sqlx::Error| self.db_error(op, e);
        // A connection of its own: the lock lives as long as it does.
        let mut conn = PgConnection::connect_with(options)
            .await
            .map_err(err("connect to lock a connector"))?;
        sqlx::query("INSERT INTO connector_locks (connector) VALUES ($1) ON CONFLICT (connector) DO NOTHING")
            .bind(connector)
            .execute(&mut conn)
            .await
            .map_err(err("register a connector lock"))?;
        let id: i32 = sqlx::query_scalar("SELECT id FROM connector_locks WHERE connector = $1")
            .bind(connector)
            .fetch_one(&mut conn)
            .await
            .map_err(err("read a connector lock"))?;
        // A holder that just let go by dropping its connection still holds the lock until the
        // server has ended that session, a moment later: a few short retries take it then.
        let mut got = false;
        for attempt in 0..LOCK_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(LOCK_RETRY).await;
            }
            got = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .map_err(err("take a connector lock"))?;
            if got {
                break;
            }
        }
        if !got {
            let row: Option<HolderRow> = sqlx::query_as(
                "SELECT pid, host, purpose, since FROM connector_locks WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut conn)
            .await
            .map_err(err("read who holds a connector lock"))?;
            let _ = conn.close().await;
            let holder = match row {
                Some((Some(pid), Some(host), Some(purpose), Some(since))) => Some(Holder {
                    pid: u32::try_from(pid).unwrap_or_default(),
                    host,
                    purpose,
                    since,
                }),
                _ => None,
            };
            return Err(StoreError::Locked {
                connector: connector.to_string(),
                holder,
            });
        }
        let holder = Holder::me(purpose);
        sqlx::query(
            "UPDATE connector_locks SET pid = $2, host = $3, purpose = $4, since = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(holder.pid))
        .bind(&holder.host)
        .bind(&holder.purpose)
        .bind(holder.since)
        .execute(&mut conn)
        .await
        .map_err(err("record who holds a connector lock"))?;
        Ok(ConnectorLock {
            connector: connector.to_string(),
            holder,
            inner: Inner::Postgres {
                conn: Some(conn),
                id,
            },
        })
    }
}

/// `pid, host, purpose, since` of `connector_locks` (all null when nobody holds it).
type HolderRow = (
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

fn lock_sqlite(store: &Path, connector: &str, purpose: &str) -> Result<ConnectorLock, StoreError> {
    let path = lock_file(store, connector);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io("create the lock folder", dir, e))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io("open the lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(StoreError::Locked {
                connector: connector.to_string(),
                holder: read_holder(&path),
            });
        }
        Err(TryLockError::Error(e)) => return Err(StoreError::io("lock", &path, e)),
    }
    let holder = Holder::me(purpose);
    let text = serde_json::to_string(&holder).unwrap_or_default();
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{text}\n").as_bytes()))
        .and_then(|()| file.flush())
        .map_err(|e| StoreError::io("write the lock holder into", &path, e))?;
    Ok(ConnectorLock {
        connector: connector.to_string(),
        holder,
        inner: Inner::File(file),
    })
}

/// The connectors whose lock a live process holds beside a SQLite store, with their holders
/// (read from the lock files, without locking them: a lock taken to look would make a run
/// starting meanwhile find its connector busy). A holder killed with `kill -9` leaves its
/// details: one of this host whose process is gone is not listed.
pub(crate) fn sqlite_holders(store: &Path) -> Vec<(String, Holder)> {
    let mut dir = store.as_os_str().to_owned();
    dir.push(".locks");
    let Ok(entries) = std::fs::read_dir(PathBuf::from(dir)) else {
        return Vec::new();
    };
    let host = hostname();
    let mut held: Vec<(String, Holder)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".lock")?.to_string();
            let text = std::fs::read_to_string(e.path()).ok()?;
            let holder = serde_json::from_str::<Holder>(text.trim()).ok()?;
            let gone = holder.host == host
                && Path::new("/proc/self").exists()
                && !Path::new(&format!("/proc/{}", holder.pid)).exists();
            (!gone).then(|| (connector_of(&name), holder))
        })
        .collect();
    held.sort_by_key(|(_, h)| h.since);
    held
}

/// The connector of a lock file's name (see [`lock_file`]: `%XX` back to its byte).
fn connector_of(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The holder's details from a lock file; the holder may be writing them right now, so a
/// few short tries.
fn read_holder(path: &Path) -> Option<Holder> {
    for _ in 0..5 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(h) = serde_json::from_str::<Holder>(text.trim())
        {
            return Some(h);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_keep_identifiers_readable_and_stay_in_their_folder() {
        let store = Path::new("/w/idlink.db");
        assert_eq!(
            lock_file(store, "HR"),
            Path::new("/w/idlink.db.locks/HR.lock")
        );
        assert_eq!(
            lock_file(store, "../x y"),
            Path::new("/w/idlink.db.locks/%2E.%2Fx%20y.lock")
        );
        assert_eq!(
            lock_file(store, "a/b"),
            Path::new("/w/idlink.db.locks/a%2Fb.lock")
        );
        for connector in ["HR", "../x y", "a/b", "%41", "é.x"] {
            let file = lock_file(store, connector);
            let name = file.file_stem().and_then(|s| s.to_str()).expect("name");
            assert_eq!(connector_of(name), connector);
        }
    }

    #[test]
    fn the_holder_says_what_where_and_since_when() {
        let h = Holder {
            pid: 42,
            host: "agent-1".into(),
            purpose: "sync".into(),
            since: DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
                .expect("time")
                .with_timezone(&Utc),
        };
        assert_eq!(
            h.to_string(),
            "sync holds it (process 42 on agent-1) since 2025-01-02T03:04:05Z"
        );
        let e = StoreError::Locked {
            connector: "HR".into(),
            holder: Some(h),
        };
        assert_eq!(
            e.to_string(),
            "connector 'HR' is busy: sync holds it (process 42 on agent-1) since 2025-01-02T03:04:05Z; wait for it to end, or stop that process"
        );
    }
}
