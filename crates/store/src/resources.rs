//! Resources and links (SPEC §5.2): what synchronization writes and provisioning, the server
//! and the UI read.
//!
//! A resource is one row of an entity type, found by its primary key; its property values are
//! one JSON object (`data`), so a property added to or removed from an entity type needs no
//! migration, and a digest of that text lets a run compare a table with the store without
//! reading the values back. A link joins two resources through an association: `id1` is the
//! resource on the side of the association's `Property1`, `id2` the other.
//!
//! Writes go through a [`SyncTx`]: one transaction per connector, so a run killed at any
//! instant leaves the store as before or as after it.
//!
//! Each entity type's index (key hash, id and raw digest of every resource) is also kept as a
//! snapshot, which the next run reads instead of the resources ([`SyncTx::save_snapshot`],
//! [`SyncTx::append_snapshot`], [`SyncTx::each_snapshot_entry`]). The transaction keeps it
//! true: one that writes an entity type's resources without saving its snapshot deletes it at
//! commit.

use std::collections::{HashMap, HashSet};

use sqlx::{Postgres, QueryBuilder, Sqlite, Transaction};

use crate::{Pool, Store, StoreError, on_pool};

/// What a synchronization compares a row with: the digest of the resource's values (xxh3-128
/// of its data text) and of the raw cells it was read from (xxh3-64 seeded by the mapping, so
/// a changed mapping changes it; 0 when unknown, as in stores written before it existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digest {
    pub value: [u8; 16],
    pub raw: u64,
}

impl Digest {
    /// Stored as the 16 bytes of the value digest, then the 8 of the raw one.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..16].copy_from_slice(&self.value);
        out[16..].copy_from_slice(&self.raw.to_le_bytes());
        out
    }

    /// Reads 24 bytes, or the 16 of a value digest alone; anything else reads as unknown.
    pub fn from_bytes(bytes: &[u8]) -> Digest {
        let mut d = Digest::default();
        if bytes.len() == 16 || bytes.len() == 24 {
            d.value.copy_from_slice(&bytes[..16]);
        }
        if let Some(raw) = bytes.get(16..24) {
            let mut r = [0u8; 8];
            r.copy_from_slice(raw);
            d.raw = u64::from_le_bytes(r);
        }
        d
    }
}

/// What the store holds of one resource for a diff: its row id and the raw part of its
/// digest (the value part is read for the rows whose cells changed, see
/// [`SyncTx::value_digests`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: i64,
    pub raw: u64,
    /// 0 when read; the caller's to use (synchronization notes the line where it saw the key,
    /// so it needs no second map of a million keys).
    pub mark: u64,
}

/// A resource to insert, with an id from [`SyncTx::allocate_ids`].
#[derive(Debug, Clone, Copy)]
pub struct NewResource<'a> {
    pub id: i64,
    pub key: &'a str,
    /// The property values (see [`crate::values`]).
    pub data: &'a str,
    pub digest: Digest,
}

/// New values of a stored resource: its data and digest, or (`data` None) its digest alone.
#[derive(Debug, Clone)]
pub struct ResourceUpdate {
    pub id: i64,
    pub data: Option<String>,
    pub digest: Digest,
}

/// A stored resource, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: i64,
    pub key: String,
    pub data: serde_json::Map<String, serde_json::Value>,
}

enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// One synchronization's transaction. Dropped without [`SyncTx::commit`], it rolls back.
pub struct SyncTx<'s> {
    store: &'s Store,
    tx: Tx,
    /// SQLite: the next free id (the transaction holds the write lock, so ids counted from the
    /// largest one are nobody else's).
    next_id: Option<i64>,
    /// Entity types whose resources this transaction wrote, and those whose index snapshot it
    /// saved since: at commit, the snapshots of the written and not saved are deleted.
    written: HashSet<String>,
    saved: HashSet<String>,
    /// Entity types whose table digest this transaction saved since it last wrote them: at
    /// commit, the table digests of the written and not saved are deleted.
    digested: HashSet<String>,
    /// Resources per entity type and links per association this transaction added (or, when
    /// negative, removed): added to the kept counts at commit.
    resources_added: HashMap<String, i64>,
    links_added: HashMap<String, i64>,
    /// PostgreSQL: whether the resources' indexes are dropped for a bulk load, to be built
    /// again by [`SyncTx::index_resources`] (at the latest by the commit).
    resources_unindexed: bool,
}

impl std::fmt::Debug for SyncTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncTx").field("store", self.store).finish()
    }
}

/// Runs `$body` with `$c` bound to a [`Conn`]'s connection, once per backend.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            Conn::Sqlite($c) => $body,
            Conn::Postgres($c) => $body,
        }
    };
}

/// Runs `$body` with `$c` bound to the transaction's connection, once per backend.
macro_rules! on_tx {
    ($self:expr, $c:ident => $body:expr) => {
        on_conn!($self.tx.conn(), $c => $body)
    };
}

/// Rows per multi-row INSERT (SQLite allows 32766 bound values).
const ROWS_PER_INSERT: usize = 500;

/// The links' reverse index, as migration 2 creates it: [`SyncTx::insert_links`] builds it
/// anew after a bulk load.
pub(crate) const LINKS_BY_ID2: &str = "CREATE INDEX links_by_id2 ON links (id2, association, id1)";

/// A PostgreSQL table's indexes that a bulk load drops and builds again after its rows: the
/// statements that drop them, and those that build them as migration 2 makes them.
struct BulkIndexes {
    table: &'static str,
    drop: [&'static str; 2],
    build: [&'static str; 2],
}

/// The links' primary key and reverse index. With psql, 1M links: loaded with their primary
/// key 1.7 s, loaded without it and the key built after 1.0 s; with both indexes 4.9 s, with
/// the primary key and the reverse index built after 2.1 s.
const POSTGRES_LINKS_INDEXES: BulkIndexes = BulkIndexes {
    table: "links",
    drop: [
        "DROP INDEX links_by_id2",
        "ALTER TABLE links DROP CONSTRAINT links_pkey",
    ],
    build: [
        "ALTER TABLE links ADD CONSTRAINT links_pkey PRIMARY KEY (association, id1, id2)",
        LINKS_BY_ID2,
    ],
};

/// The resources' primary key and key index. With psql, 1M resources: loaded with both 6.2 s,
/// loaded without them 2.5 s and the two built after 0.6 + 1.0 s.
const POSTGRES_RESOURCES_INDEXES: BulkIndexes = BulkIndexes {
    table: "resources",
    drop: [
        "ALTER TABLE resources DROP CONSTRAINT resources_entity_type_key_key",
        "ALTER TABLE resources DROP CONSTRAINT resources_pkey",
    ],
    build: [
        "ALTER TABLE resources ADD CONSTRAINT resources_pkey PRIMARY KEY (id)",
        "ALTER TABLE resources ADD CONSTRAINT resources_entity_type_key_key UNIQUE (entity_type, key)",
    ],
};

/// Resources inserted at once from which PostgreSQL's resource indexes are dropped for the
/// load and built after it, when they are at least as many as the resources already there.
const BULK_RESOURCES: usize = 1_000;

/// Links inserted at once from which SQLite's reverse index may be built after them instead
/// of with each (when they are at least as many as the links already stored).
const BULK_LINKS: usize = 10_000;

/// Rows per step of SQLite's multi-row inserts ([`insert_many`]).
const ROWS_PER_STEP: usize = 50;

/// The kept count of an entity type's resources, and of an association's links (see
/// [`SyncTx::commit`]).
const RESOURCE_COUNT: &str =
    "SELECT COALESCE((SELECT n FROM resource_counts WHERE entity_type = $1), 0)";
const LINK_COUNT: &str = "SELECT COALESCE((SELECT n FROM link_counts WHERE association = $1), 0)";
/// The kept count of all links, and of all resources.
const ALL_LINKS_COUNT: &str = "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM link_counts";
const ALL_RESOURCES_COUNT: &str = "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM resource_counts";

/// The PostgreSQL advisory lock key that serializes resource id reservations ("idlink ids").
const ID_ALLOCATION_LOCK: i64 = 0x6964_6c69_6e6b_6964;

/// How long a synchronization waits for another writer of a SQLite store before it says so.
pub const WRITER_NOTICE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a synchronization waits for another writer of a SQLite store at most:
/// `IDLINK_STORE_WAIT` seconds, 600 by default. SQLite's own wait ([`crate::open`]'s busy
/// timeout, 30 s) is one attempt: the last may end up to that much later.
pub fn writer_wait() -> std::time::Duration {
    std::env::var("IDLINK_STORE_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(
            std::time::Duration::from_secs(600),
            std::time::Duration::from_secs,
        )
}

/// Whether `e` says that another connection holds SQLite's write lock.
fn sqlite_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("5" | "261" | "517")))
}

impl Store {
    /// `BEGIN IMMEDIATE` on a SQLite store, waiting for another writer (see
    /// [`Store::begin_sync`]).
    async fn sqlite_writer(
        &self,
        pool: &sqlx::SqlitePool,
        connector: &str,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        let started = std::time::Instant::now();
        let limit = writer_wait();
        let mut told = false;
        loop {
            let begin = pool.begin_with("BEGIN IMMEDIATE");
            tokio::pin!(begin);
            let result = if told {
                begin.await
            } else {
                tokio::select! {
                    r = &mut begin => r,
                    () = tokio::time::sleep(WRITER_NOTICE) => {
                        told = true;
                        let writers = self.sqlite_writers(connector);
                        tracing::warn!(
                            "waiting for the store {}: another process is writing to it{}; a SQLite store takes one writer at a time (waiting up to {} s, IDLINK_STORE_WAIT)",
                            self.location(),
                            writers.map_or_else(String::new, |w| format!(" (work under way on other connectors: {w})")),
                            limit.as_secs()
                        );
                        begin.await
                    }
                }
            };
            match result {
                Ok(tx) => return Ok(tx),
                Err(e) if sqlite_busy(&e) && started.elapsed() < limit => {}
                Err(e) if sqlite_busy(&e) => {
                    return Err(StoreError::Busy {
                        store: self.location().to_string(),
                        waited: started.elapsed().as_secs(),
                        writers: self.sqlite_writers(connector),
                    });
                }
                Err(e) => return Err(self.db_error("start a synchronization", e)),
            }
        }
    }

    /// The work other processes run on other connectors of this SQLite store (by their
    /// connector locks): what most likely writes to it.
    fn sqlite_writers(&self, connector: &str) -> Option<String> {
        let crate::Location::Sqlite(path) = self.location() else {
            return None;
        };
        let held: Vec<String> = crate::lock::sqlite_holders(path)
            .into_iter()
            .filter(|(c, _)| c != connector)
            .map(|(c, h)| {
                format!(
                    "connector '{c}': {} by process {} on {} since {}",
                    h.purpose,
                    h.pid,
                    h.host,
                    h.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            })
            .collect();
        (!held.is_empty()).then(|| held.join("; "))
    }

    /// Starts the transaction of one synchronization (SQLite: `BEGIN IMMEDIATE`, so it holds
    /// the write lock from the start instead of failing midway).
    ///
    /// A SQLite store takes one writer at a time: while another process writes to it (most
    /// often a synchronization of another connector), this one waits its turn, says so after
    /// [`WRITER_NOTICE`] with the synchronizations that hold a connector lock, and gives up
    /// after [`writer_wait`] with [`StoreError::Busy`].
    pub async fn begin_sync(&self, connector: &str) -> Result<SyncTx<'_>, StoreError> {
        let tx = match self.pool() {
            Pool::Sqlite(p) => Tx::Sqlite(self.sqlite_writer(p, connector).await?),
            Pool::Postgres(p) => Tx::Postgres(
                p.begin()
                    .await
                    .map_err(|e| self.db_error("start a synchronization", e))?,
            ),
        };
        Ok(SyncTx {
            store: self,
            tx,
            next_id: None,
            written: HashSet::new(),
            saved: HashSet::new(),
            digested: HashSet::new(),
            resources_added: HashMap::new(),
            links_added: HashMap::new(),
            resources_unindexed: false,
        })
    }

    /// The resources of `entity_type` whose properties equal every `(property, value)` of
    /// `filters` (a multi-valued property matches when one of its values does), by key.
    pub async fn resources(
        &self,
        entity_type: &str,
        filters: &[(String, String)],
    ) -> Result<Vec<Resource>, StoreError> {
        let mut c = self.pooled("read resources").await?;
        read_resources(self, c.conn(), entity_type, "", i64::MAX, |data| {
            values_match(data, filters)
        })
        .await
    }

    /// Up to `limit` resources of `entity_type` whose keys follow `after` (from the first
    /// without it), in key order: an entity type read a page at a time, in memory that does
    /// not grow with the store (an indexed range of `(entity_type, key)`). Each call sees the
    /// store as it is then; pages that must agree with each other are read from one
    /// [`Store::read_snapshot`].
    pub async fn resources_page(
        &self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Resource>, StoreError> {
        let mut c = self.pooled("read resources").await?;
        let page = read_page(self, c.conn(), entity_type, after, limit, |_, _| true).await?;
        Ok(page.resources)
    }

    /// The resource of `entity_type` with `key`, if the store holds it: one indexed look-up,
    /// where [`Store::resources`] reads the entity type whole.
    pub async fn resource_by_key(
        &self,
        entity_type: &str,
        key: &str,
    ) -> Result<Option<Resource>, StoreError> {
        const SQL: &str = "SELECT id, key, data FROM resources WHERE entity_type = $1 AND key = $2";
        let what = "read a resource";
        let mut c = self.pooled(what).await?;
        let row: Option<StoredRow> = on_conn!(c.conn(), c => sqlx::query_as(SQL)
            .bind(entity_type)
            .bind(key)
            .fetch_optional(c)
            .await)
        .map_err(|e| self.db_error(what, e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let found = decoded(self, c.conn(), entity_type, vec![row], what, |_| true).await?;
        Ok(found.into_iter().next())
    }

    /// The keys of the resources linked to resource `id` through `association`, in key order:
    /// with `side` 1, `id` is on `Property1`'s side (id1 -> id2's keys), with 2 the reverse.
    /// The links' indexes serve both (the primary key, and `links_by_id2`).
    pub async fn linked_keys_of(
        &self,
        association: &str,
        side: u8,
        id: i64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = if side == 1 {
            "SELECT r.key FROM links l JOIN resources r ON r.id = l.id2 WHERE l.association = $1 AND l.id1 = $2 ORDER BY r.key"
        } else {
            "SELECT r.key FROM links l JOIN resources r ON r.id = l.id1 WHERE l.association = $1 AND l.id2 = $2 ORDER BY r.key"
        };
        on_pool!(self, p => sqlx::query_scalar(sql)
            .bind(association)
            .bind(id)
            .fetch_all(p)
            .await)
        .map_err(|e| self.db_error("read links", e))
    }

    /// The links of `association` from the resources `ids` (a page of
    /// [`Store::resources_page`], say), as [`Store::linked_keys`] gives them: looked up through
    /// the links' indexes, where `linked_keys` reads the association whole.
    pub async fn linked_keys_of_ids(
        &self,
        association: &str,
        side: u8,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        let mut c = self.pooled("read links").await?;
        read_linked_keys_of_ids(self, c.conn(), association, side, ids).await
    }

    /// A read of several statements that all see the store as it was when the snapshot was
    /// taken: a listing by pages that a synchronization committing meanwhile does not turn
    /// into half the old store and half the new. It is a read transaction (SQLite's WAL keeps
    /// its pages; PostgreSQL's `REPEATABLE READ, READ ONLY`) on one of the pool's connections,
    /// held until it is dropped. Writers do not wait for it; SQLite cannot reset its WAL past
    /// it meanwhile, nor PostgreSQL vacuum what it may still see, so keep it to one listing.
    pub async fn read_snapshot(&self) -> Result<ReadSnapshot<'_>, StoreError> {
        let what = "start a consistent read";
        let mut tx = match self.pool() {
            Pool::Sqlite(p) => p.begin().await.map(Tx::Sqlite),
            Pool::Postgres(p) => p
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
                .map(Tx::Postgres),
        }
        .map_err(|e| self.db_error(what, e))?;
        // Both take the snapshot at the transaction's first read, not at BEGIN: read now.
        const FIRST_READ: &str = "SELECT COUNT(*) FROM resource_counts";
        on_conn!(tx.conn(), c => sqlx::query(FIRST_READ).execute(c).await.map(drop))
            .map_err(|e| self.db_error(what, e))?;
        Ok(ReadSnapshot { store: self, tx })
    }

    /// The links of `association` as (id on the `side` given, key of the resource on the other
    /// side): `side` 1 reads `Property1`'s navigation (id1 -> id2's key), 2 the reverse.
    pub async fn linked_keys(
        &self,
        association: &str,
        side: u8,
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        let sql = if side == 1 {
            "SELECT l.id1, r.key FROM links l JOIN resources r ON r.id = l.id2 WHERE l.association = $1 ORDER BY r.key"
        } else {
            "SELECT l.id2, r.key FROM links l JOIN resources r ON r.id = l.id1 WHERE l.association = $1 ORDER BY r.key"
        };
        on_pool!(self, p => sqlx::query_as(sql)
            .bind(association)
            .fetch_all(p)
            .await)
        .map(keys_by_id)
        .map_err(|e| self.db_error("read links", e))
    }

    /// How many resources of `entity_type` and links of `association` the store holds (as
    /// it keeps them counted: no rows are counted).
    pub async fn count_resources(&self, entity_type: &str) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self, p => sqlx::query_scalar(RESOURCE_COUNT)
        .bind(entity_type)
        .fetch_one(p)
        .await)
        .map_err(|e| self.db_error("count resources", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn count_links(&self, association: &str) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self, p => sqlx::query_scalar(LINK_COUNT)
        .bind(association)
        .fetch_one(p)
        .await)
        .map_err(|e| self.db_error("count links", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// A stored resource row: id, key, data.
type StoredRow = (i64, String, String);

/// A connection to read on: one of the pool's ([`Pooled`]), or a [`ReadSnapshot`]'s.
enum Conn<'c> {
    Sqlite(&'c mut sqlx::SqliteConnection),
    Postgres(&'c mut sqlx::PgConnection),
}

impl Conn<'_> {
    fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Sqlite(c) => Conn::Sqlite(c),
            Conn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// One of the pool's connections, for the reads of one call.
enum Pooled {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

impl Pooled {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Sqlite(c) => Conn::Sqlite(c),
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }
}

impl Tx {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(t) => Conn::Sqlite(t),
            Tx::Postgres(t) => Conn::Postgres(t),
        }
    }
}

impl Store {
    async fn pooled(&self, what: &'static str) -> Result<Pooled, StoreError> {
        match self.pool() {
            Pool::Sqlite(p) => p.acquire().await.map(Pooled::Sqlite),
            Pool::Postgres(p) => p.acquire().await.map(Pooled::Postgres),
        }
        .map_err(|e| self.db_error(what, e))
    }
}

/// A page of [`ReadSnapshot::resources_page_where`]: the resources kept, how many rows were
/// read, and the key of the last one (kept or not), where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub resources: Vec<Resource>,
    pub read: usize,
    pub last_key: Option<String>,
}

/// A consistent read of the store, from [`Store::read_snapshot`]: every read sees the store as
/// it was when the snapshot was taken. Dropped, it ends its read transaction.
pub struct ReadSnapshot<'s> {
    store: &'s Store,
    tx: Tx,
}

impl std::fmt::Debug for ReadSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSnapshot")
            .field("store", self.store)
            .finish()
    }
}

impl ReadSnapshot<'_> {
    /// [`Store::resources_page`], in the snapshot.
    pub async fn resources_page(
        &mut self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Resource>, StoreError> {
        let page = self
            .resources_page_where(entity_type, after, limit, |_, _| true)
            .await?;
        Ok(page.resources)
    }

    /// [`ReadSnapshot::resources_page`], decoding only the rows that `raw` keeps, given their
    /// key and stored `data` text (a test on the text that keeps every row a test on the values
    /// would: a search skips decoding the rows whose text cannot match).
    pub async fn resources_page_where(
        &mut self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
        raw: impl Fn(&str, &str) -> bool,
    ) -> Result<Page, StoreError> {
        read_page(self.store, self.tx.conn(), entity_type, after, limit, raw).await
    }

    /// [`Store::linked_keys_of_ids`], in the snapshot.
    pub async fn linked_keys_of_ids(
        &mut self,
        association: &str,
        side: u8,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        read_linked_keys_of_ids(self.store, self.tx.conn(), association, side, ids).await
    }
}

/// A page of `entity_type`'s resources: up to `limit` rows whose keys follow `after`, of which
/// those that `raw` keeps (given their key and stored text) are decoded.
async fn read_page(
    store: &Store,
    mut conn: Conn<'_>,
    entity_type: &str,
    after: Option<&str>,
    limit: usize,
    raw: impl Fn(&str, &str) -> bool,
) -> Result<Page, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let after = after.unwrap_or("");
    let mut rows = read_rows(store, conn.reborrow(), entity_type, after, limit).await?;
    let read = rows.len();
    let last_key = rows.last().map(|(_, key, _)| key.clone());
    rows.retain(|(_, key, data)| raw(key, data));
    let resources = decoded(store, conn, entity_type, rows, "read resources", |_| true).await?;
    Ok(Page {
        resources,
        read,
        last_key,
    })
}

/// The resources of `entity_type` whose keys follow `after` (`""` for all of them: keys are
/// never empty, rows without one are set aside), `limit` at most, in key order; those whose
/// values `keep` accepts.
async fn read_resources(
    store: &Store,
    mut conn: Conn<'_>,
    entity_type: &str,
    after: &str,
    limit: i64,
    keep: impl Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
) -> Result<Vec<Resource>, StoreError> {
    let rows = read_rows(store, conn.reborrow(), entity_type, after, limit).await?;
    decoded(store, conn, entity_type, rows, "read resources", keep).await
}

/// The stored rows of `entity_type` whose keys follow `after`, `limit` at most, in key order.
async fn read_rows(
    store: &Store,
    conn: Conn<'_>,
    entity_type: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<StoredRow>, StoreError> {
    // `$1`, `$2`, `$3` in the order they appear: SQLite numbers them so, PostgreSQL by their
    // digits.
    const SQL: &str = "SELECT id, key, data FROM resources WHERE entity_type = $1 AND key > $2 ORDER BY key LIMIT $3";
    match conn {
        // rusqlite steps the statement on this thread; sqlx would hand each row over from its
        // worker thread (most of the time of reading 100,000 resources).
        Conn::Sqlite(c) => {
            with_rusqlite(c, |db| {
                let mut st = db.prepare_cached(SQL)?;
                let rows = st.query_map(rusqlite::params![entity_type, after, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                rows.collect()
            })
            .await
        }
        Conn::Postgres(c) => {
            sqlx::query_as(SQL)
                .bind(entity_type)
                .bind(after)
                .bind(limit)
                .fetch_all(c)
                .await
        }
    }
    .map_err(|e| store.db_error("read resources", e))
}

/// Stored rows of `entity_type` as resources, those whose values `keep` accepts. The layouts
/// are read after the rows: they are only ever added, so every row's is there.
async fn decoded(
    store: &Store,
    conn: Conn<'_>,
    entity_type: &str,
    rows: Vec<StoredRow>,
    what: &'static str,
    keep: impl Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
) -> Result<Vec<Resource>, StoreError> {
    let layouts = on_conn!(conn, c => sqlx::query_as(LAYOUTS).bind(entity_type).fetch_all(c).await)
        .map(layouts_of)
        .map_err(|e| store.db_error(what, e))?;
    let mut out = Vec::new();
    for (id, key, data) in rows {
        let data =
            crate::values::decode(&data, &layouts).map_err(|message| StoreError::Corrupt {
                store: store.location().to_string(),
                what: format!("resource {entity_type} '{key}'"),
                message,
            })?;
        if keep(&data) {
            out.push(Resource { id, key, data });
        }
    }
    Ok(out)
}

/// The links of `association` from the resources `ids` ([`Store::linked_keys_of_ids`]).
async fn read_linked_keys_of_ids(
    store: &Store,
    conn: Conn<'_>,
    association: &str,
    side: u8,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let (this, other) = if side == 1 {
        ("id1", "id2")
    } else {
        ("id2", "id1")
    };
    let rows: Result<Vec<(i64, String)>, sqlx::Error> = match conn {
        // The ids as one JSON array: no limit on bound parameters to mind. SQLite looks each
        // up in the links' primary key (or `links_by_id2`).
        Conn::Sqlite(c) => {
            let sql = format!(
                "SELECT l.{this}, r.key FROM links l JOIN resources r ON r.id = l.{other} \
                 WHERE l.association = $1 AND l.{this} IN (SELECT value FROM json_each($2)) ORDER BY r.key"
            );
            let ids = serde_json::to_string(ids).unwrap_or_default();
            sqlx::query_as(&sql)
                .bind(association)
                .bind(ids)
                .fetch_all(c)
                .await
        }
        // An array: PostgreSQL probes the index for each (a join on a range of keys gets a
        // plan that reads the whole association once it has statistics).
        Conn::Postgres(c) => {
            let sql = format!(
                "SELECT l.{this}, r.key FROM links l JOIN resources r ON r.id = l.{other} \
                 WHERE l.association = $1 AND l.{this} = ANY($2) ORDER BY r.key"
            );
            sqlx::query_as(&sql)
                .bind(association)
                .bind(ids)
                .fetch_all(c)
                .await
        }
    };
    rows.map(keys_by_id)
        .map_err(|e| store.db_error("read links", e))
}

/// The layouts of an entity type's values (see [`crate::values`]), for [`layouts_of`].
const LAYOUTS: &str = "SELECT id, properties FROM resource_layouts WHERE entity_type = $1";

/// The rows of [`LAYOUTS`] as id -> property identifiers. One that cannot be read is left out
/// (the resources written in it then do not read).
fn layouts_of(rows: Vec<(i64, String)>) -> HashMap<i64, Vec<String>> {
    rows.into_iter()
        .filter_map(|(id, text)| Some((id, crate::values::layout_of(&text).ok()?)))
        .collect()
}

fn corrupt(store: &Store, what: &str, value: &str) -> StoreError {
    StoreError::Corrupt {
        store: store.location().to_string(),
        what: what.to_string(),
        message: format!("'{value}' is not readable"),
    }
}

/// SQLite's fast path for reading an entity type's rows: sqlx hands SQLite rows over one at a
/// time through its worker thread (microseconds each), so SQLite packs each chunk of 50,000
/// rows into one text (`<key length in bytes>:<key><id>[,<digest in hex>];` repeated), and
/// `each` gets the rows. Chunks follow the `(entity_type, key)` index in key order (keys are
/// never empty: rows without one are set aside), so no chunk sorts and an entity type costs
/// its own rows, whatever the size of the others.
async fn sqlite_packed(
    c: &mut sqlx::SqliteConnection,
    entity_type: &str,
    with_digest: bool,
    mut each: impl FnMut(&str, i64, u64),
) -> Result<(), sqlx::Error> {
    let sql = if with_digest {
        "SELECT group_concat(length(CAST(key AS BLOB)) || ':' || key || id || ',' || hex(substr(digest, 17, 8)) || ';', '')
         FROM (SELECT key, id, digest FROM resources WHERE entity_type = $1 AND key > $2 ORDER BY key LIMIT 50000)"
    } else {
        "SELECT group_concat(length(CAST(key AS BLOB)) || ':' || key || id || ';', '')
         FROM (SELECT key, id FROM resources WHERE entity_type = $1 AND key > $2 ORDER BY key LIMIT 50000)"
    };
    let mut last = String::new();
    loop {
        let text: Option<String> = sqlx::query_scalar(sql)
            .bind(entity_type)
            .bind(&last)
            .fetch_one(&mut *c)
            .await?;
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Ok(());
        };
        let mut next: Option<&str> = None;
        parse_packed(&text, with_digest, |key, id, raw| {
            next = Some(key);
            each(key, id, raw);
        })
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
        match next {
            Some(k) if k.as_bytes() > last.as_bytes() => last = k.to_string(),
            _ => return Err(sqlx::Error::Decode("a packed chunk did not advance".into())),
        }
    }
}

/// Reads `<key length in bytes>:<key><id>[,<raw digest in hex>];` repeated.
fn parse_packed<'t>(
    text: &'t str,
    with_digest: bool,
    mut each: impl FnMut(&'t str, i64, u64),
) -> Result<(), String> {
    let b = text.as_bytes();
    let bad = |at: usize| format!("packed rows unreadable at byte {at}");
    let mut i = 0;
    while i < b.len() {
        let colon = i + b[i..]
            .iter()
            .position(|&c| c == b':')
            .ok_or_else(|| bad(i))?;
        let n: usize = text[i..colon].parse().map_err(|_| bad(i))?;
        let key = text
            .get(colon + 1..colon + 1 + n)
            .ok_or_else(|| bad(colon))?;
        i = colon + 1 + n;
        let end = i + b[i..]
            .iter()
            .position(|&c| c == b',' || c == b';')
            .ok_or_else(|| bad(i))?;
        let id: i64 = text[i..end].parse().map_err(|_| bad(i))?;
        let mut raw = 0u64;
        i = end;
        if with_digest {
            let semi = i + b[i..]
                .iter()
                .position(|&c| c == b';')
                .ok_or_else(|| bad(i))?;
            let hex = text.get(i + 1..semi).ok_or_else(|| bad(i))?;
            // 8 bytes, or none when the digest predates the raw part.
            if hex.len() == 16 {
                let mut bytes = [0u8; 8];
                for (k, d) in bytes.iter_mut().enumerate() {
                    *d = u8::from_str_radix(&hex[k * 2..k * 2 + 2], 16).map_err(|_| bad(i))?;
                }
                raw = u64::from_le_bytes(bytes);
            } else if !hex.is_empty() {
                return Err(bad(i));
            }
            i = semi;
        }
        if b.get(i) != Some(&b';') {
            return Err(bad(i));
        }
        i += 1;
        each(key, id, raw);
    }
    Ok(())
}

/// Runs `f` with rusqlite over the transaction's own SQLite connection, inside the same
/// transaction: the bulk writes of a synchronization prepare one statement and step it per
/// row, where sqlx would hand every bound value to its worker thread (several times slower
/// at a million rows).
#[allow(unsafe_code)]
pub(crate) async fn with_rusqlite<T>(
    c: &mut sqlx::SqliteConnection,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
) -> Result<T, sqlx::Error> {
    let mut handle = c.lock_handle().await?;
    let raw = handle.as_raw_handle().as_ptr();
    // SAFETY: `lock_handle` gives us the connection alone (sqlx's worker waits for the guard),
    // the wrapper is dropped before the guard, and `from_handle` never closes the handle.
    // sqlx and rusqlite link the same `libsqlite3-sys`, so the handle types are one type.
    let conn = unsafe { rusqlite::Connection::from_handle(raw) }
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let r = f(&conn);
    drop(conn);
    drop(handle);
    r.map_err(|e| sqlx::Error::Protocol(e.to_string()))
}

/// Inserts `rows` on SQLite with `insert` (`INSERT INTO table (columns)`) and `suffix`, many
/// rows per statement step ([`ROWS_PER_STEP`]; a step and its reset cost about as much as a
/// row's own insert), the rest one by one. The `shared` values are the first columns of every
/// row, bound once as `?1`, `?2`...; `bind` binds a row's own `per_row` values from the
/// parameter number it is given.
fn insert_many<T>(
    db: &rusqlite::Connection,
    insert: &str,
    suffix: &str,
    shared: &[&dyn rusqlite::ToSql],
    rows: &[T],
    per_row: usize,
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<usize> {
    let mut changed = 0;
    let many = rows.len() / ROWS_PER_STEP * ROWS_PER_STEP;
    for (n, rows) in [(ROWS_PER_STEP, &rows[..many]), (1, &rows[many..])] {
        if rows.is_empty() {
            continue;
        }
        let tuple = |i: usize| {
            let first = shared.len() + 1 + i * per_row;
            let params: Vec<String> = (1..=shared.len())
                .chain(first..first + per_row)
                .map(|p| format!("?{p}"))
                .collect();
            format!("({})", params.join(", "))
        };
        let values: Vec<String> = (0..n).map(tuple).collect();
        let mut st =
            db.prepare_cached(&format!("{insert} VALUES {} {suffix}", values.join(", ")))?;
        for (i, v) in shared.iter().enumerate() {
            st.raw_bind_parameter(i + 1, v)?;
        }
        for step in rows.chunks(n) {
            for (i, r) in step.iter().enumerate() {
                bind(&mut st, shared.len() + 1 + i * per_row, r)?;
            }
            changed += st.raw_execute()?;
        }
    }
    Ok(changed)
}

/// The rows of a `COPY ... FROM STDIN (FORMAT binary)`: the signature, then per row its field
/// count and each field as a length and bytes (big-endian), then the trailer.
struct BinaryCopy {
    out: Vec<u8>,
    /// A field longer than COPY can carry (2 GiB): the rows are refused, not sent.
    oversized: bool,
}

impl BinaryCopy {
    fn with_capacity(n: usize) -> BinaryCopy {
        let mut out = Vec::with_capacity(n + 21);
        // Signature, flags (no OIDs), header extension length.
        out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        BinaryCopy {
            out,
            oversized: false,
        }
    }

    fn row(&mut self, fields: u16) {
        self.out.extend_from_slice(&fields.to_be_bytes());
    }

    /// A non-null field: `bigint` as its 8 bytes, `text` as its UTF-8, `bytea` as itself.
    fn field(&mut self, bytes: &[u8]) {
        let Ok(len) = i32::try_from(bytes.len()) else {
            self.oversized = true;
            return;
        };
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(bytes);
    }

    fn finish(mut self) -> Result<Vec<u8>, sqlx::Error> {
        if self.oversized {
            return Err(sqlx::Error::Protocol(
                "a value is over the 2 GiB that PostgreSQL's COPY carries".into(),
            ));
        }
        self.out.extend_from_slice(&(-1i16).to_be_bytes());
        Ok(self.out)
    }
}

/// Drops a table's indexes (`indexes.drop`, in order) for a bulk load to build them after the
/// rows ([`postgres_build_indexes`]), when the table can be locked without waiting (a savepoint
/// takes back a lock refused): the lock keeps readers out until the commit, and a lock never
/// waited for cannot deadlock with another run. Whether they were dropped.
async fn postgres_drop_indexes(
    t: &mut sqlx::PgConnection,
    indexes: &BulkIndexes,
) -> Result<bool, sqlx::Error> {
    sqlx::query("SAVEPOINT idlink_bulk")
        .execute(&mut *t)
        .await?;
    let lock = format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE NOWAIT",
        indexes.table
    );
    let locked = sqlx::query(&lock).execute(&mut *t).await;
    match locked {
        Ok(_) => {
            sqlx::query("RELEASE SAVEPOINT idlink_bulk")
                .execute(&mut *t)
                .await?;
            for sql in indexes.drop {
                sqlx::query(sql).execute(&mut *t).await?;
            }
            Ok(true)
        }
        // 55P03: lock_not_available (another transaction uses the table).
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            sqlx::query("ROLLBACK TO SAVEPOINT idlink_bulk")
                .execute(&mut *t)
                .await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Builds again the indexes [`postgres_drop_indexes`] dropped.
async fn postgres_build_indexes(
    t: &mut sqlx::PgConnection,
    indexes: &BulkIndexes,
) -> Result<(), sqlx::Error> {
    for sql in indexes.build {
        sqlx::query(sql).execute(&mut *t).await?;
    }
    Ok(())
}

/// Runs a `COPY ... FROM STDIN` with `data` on a PostgreSQL connection.
async fn copy(
    c: &mut sqlx::PgConnection,
    statement: &str,
    data: Vec<u8>,
) -> Result<u64, sqlx::Error> {
    let mut copy = c.copy_in_raw(statement).await?;
    if let Err(e) = copy.send(data).await {
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    copy.finish().await
}

/// Links read as (id, linked key), in key order: each id's linked keys, in that order.
fn keys_by_id(rows: Vec<(i64, String)>) -> HashMap<i64, Vec<String>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, key) in rows {
        out.entry(id).or_default().push(key);
    }
    out
}

/// Whether a resource's values equal every `(property, value)` of `filters`, as
/// [`Store::resources`] selects them: a multi-valued property matches when one of its values
/// does, and an absent one matches the empty value.
pub fn values_match(
    data: &serde_json::Map<String, serde_json::Value>,
    filters: &[(String, String)],
) -> bool {
    filters.iter().all(|(prop, want)| match data.get(prop) {
        Some(serde_json::Value::Array(vs)) => vs.iter().any(|v| value_eq(v, want)),
        Some(v) => value_eq(v, want),
        None => want.is_empty(),
    })
}

/// What [`values_match`] looks for, as a resource's stored values (its `data` text) must hold
/// it: worked out once for a listing, then [`ValuesInText::may_match`] tells, row by row,
/// whether the row need be decoded at all. A value equal to a wanted one is in the text as
/// JSON writes it: a string with its escapes, anything else as it reads back (`1.50` wanted is
/// `1.5` stored). A filter on no value (`PROP=`) matches a missing value, which the text
/// cannot show: it always passes.
#[derive(Debug, Clone)]
pub struct ValuesInText {
    /// Per filter, the texts one of which the stored text must hold (none: it always passes).
    wanted: Vec<Vec<String>>,
}

impl ValuesInText {
    pub fn new(filters: &[(String, String)]) -> ValuesInText {
        let wanted = filters
            .iter()
            .map(|(_, want)| {
                if want.is_empty() {
                    return Vec::new();
                }
                let quoted = serde_json::to_string(want).unwrap_or_default();
                let escaped = quoted
                    .strip_prefix('"')
                    .and_then(|q| q.strip_suffix('"'))
                    .unwrap_or(&quoted)
                    .to_string();
                let read_back = serde_json::from_str::<serde_json::Value>(want)
                    .ok()
                    .map(|v| v.to_string());
                std::iter::once(escaped).chain(read_back).collect()
            })
            .collect();
        ValuesInText { wanted }
    }

    /// False when a resource whose stored values are `text` cannot match the filters.
    pub fn may_match(&self, text: &str) -> bool {
        self.wanted
            .iter()
            .all(|forms| forms.is_empty() || forms.iter().any(|f| text.contains(f.as_str())))
    }
}

fn value_eq(v: &serde_json::Value, want: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s == want,
        other => serde_json::from_str::<serde_json::Value>(want).is_ok_and(|w| &w == other),
    }
}

impl SyncTx<'_> {
    fn err(&self, operation: &'static str, e: sqlx::Error) -> StoreError {
        self.store.db_error(operation, e)
    }

    /// Every resource of `entity_type`: key -> (id, digest).
    pub async fn resource_index(
        &mut self,
        entity_type: &str,
    ) -> Result<HashMap<Box<str>, IndexEntry>, StoreError> {
        let mut out = HashMap::new();
        self.each_resource(entity_type, |key, id, raw| {
            out.insert(key.into(), IndexEntry { id, raw, mark: 0 });
        })
        .await?;
        Ok(out)
    }

    /// Calls `f` with the key, id and raw digest of every resource of `entity_type`, so the
    /// caller keeps them as it likes (a synchronization keeps a hash of the key).
    pub async fn each_resource(
        &mut self,
        entity_type: &str,
        mut f: impl FnMut(&str, i64, u64),
    ) -> Result<(), StoreError> {
        use futures_util::TryStreamExt as _;
        if let Tx::Sqlite(t) = &mut self.tx {
            let cache = |kib: &str| format!("PRAGMA cache_size = {kib}");
            let mut r = sqlx::query(&cache(crate::open::SQLITE_READ_CACHE))
                .execute(&mut **t)
                .await
                .map(|_| ());
            if r.is_ok() {
                r = sqlite_packed(t, entity_type, true, &mut f).await;
            }
            let restored = sqlx::query(&cache(crate::open::SQLITE_CACHE))
                .execute(&mut **t)
                .await;
            return r
                .and(restored.map(|_| ()))
                .map_err(|e| self.err("read the resources of an entity type", e));
        }
        let sql = "SELECT key, id, digest FROM resources WHERE entity_type = $1";
        let r: Result<(), sqlx::Error> = on_tx!(self, c => async {
            let mut rows = sqlx::query_as::<_, (String, i64, Vec<u8>)>(sql).bind(entity_type).fetch(c);
            while let Some((key, id, digest)) = rows.try_next().await? {
                f(&key, id, Digest::from_bytes(&digest).raw);
            }
            Ok(())
        }.await);
        r.map_err(|e| self.err("read the resources of an entity type", e))
    }

    pub async fn insert_resources(
        &mut self,
        connector: &str,
        entity_type: &str,
        rows: &[NewResource<'_>],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        // PostgreSQL: the first rows of an entity type, many, and at least as many as the
        // resources already there, may go in without the indexes (a first synchronization).
        let first_of_type = !self.written.contains(entity_type);
        self.wrote(entity_type);
        if matches!(self.tx, Tx::Postgres(_))
            && first_of_type
            && !self.resources_unindexed
            && rows.len() >= BULK_RESOURCES
        {
            self.resources_unindexed = self
                .drop_resources_indexes(rows.len())
                .await
                .map_err(|e| self.err("drop the resources' indexes for a bulk load", e))?;
        }
        if let Tx::Postgres(t) = &mut self.tx {
            // PostgreSQL's fast path: one COPY per batch, in the binary format (the server
            // reads lengths instead of parsing quoted text: a million resources load in about
            // 3 s instead of 4.4).
            let mut out = BinaryCopy::with_capacity(rows.len() * 200);
            for r in rows {
                out.row(6);
                out.field(&r.id.to_be_bytes());
                out.field(entity_type.as_bytes());
                out.field(r.key.as_bytes());
                out.field(connector.as_bytes());
                out.field(r.data.as_bytes());
                out.field(&r.digest.to_bytes());
            }
            let r = match out.finish() {
                Ok(data) => {
                    let sql = "COPY resources (id, entity_type, key, connector, data, digest) \
                               FROM STDIN (FORMAT binary)";
                    copy(t, sql, data).await
                }
                Err(e) => Err(e),
            };
            let n = r.map_err(|e| self.err("insert resources", e))?;
            self.counted_resources(entity_type, n as i64);
            return Ok(());
        }
        if let Tx::Sqlite(t) = &mut self.tx {
            let r = with_rusqlite(t, |db| {
                insert_many(
                    db,
                    "INSERT INTO resources (entity_type, connector, id, key, data, digest)",
                    "",
                    &[&entity_type, &connector],
                    rows,
                    4,
                    |st, p, r| {
                        st.raw_bind_parameter(p, r.id)?;
                        st.raw_bind_parameter(p + 1, r.key)?;
                        st.raw_bind_parameter(p + 2, r.data)?;
                        st.raw_bind_parameter(p + 3, &r.digest.to_bytes()[..])
                    },
                )
            })
            .await;
            let n = r.map_err(|e| self.err("insert resources", e))?;
            self.counted_resources(entity_type, n as i64);
        }
        Ok(())
    }

    /// Updates resources of `entity_type`: on SQLite one prepared statement stepped per row,
    /// on PostgreSQL many rows per statement (`UPDATE ... FROM (SELECT ... UNION ALL ...)`).
    pub async fn update_resources(
        &mut self,
        entity_type: &str,
        rows: &[ResourceUpdate],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.wrote(entity_type);
        if let Tx::Sqlite(t) = &mut self.tx {
            // One prepared statement stepped per row (see `with_rusqlite`).
            let r = with_rusqlite(t, |db| {
                let mut with_data =
                    db.prepare_cached("UPDATE resources SET data = ?2, digest = ?3 WHERE id = ?1")?;
                let mut digest_only =
                    db.prepare_cached("UPDATE resources SET digest = ?2 WHERE id = ?1")?;
                for r in rows {
                    let digest = r.digest.to_bytes();
                    match &r.data {
                        Some(data) => {
                            with_data.execute(rusqlite::params![r.id, data, &digest[..]])?
                        }
                        None => digest_only.execute(rusqlite::params![r.id, &digest[..]])?,
                    };
                }
                Ok(())
            })
            .await;
            return r.map_err(|e| self.err("update resources", e));
        }
        let (with_data, digest_only): (Vec<&ResourceUpdate>, Vec<&ResourceUpdate>) =
            rows.iter().partition(|r| r.data.is_some());
        for chunk in with_data.chunks(ROWS_PER_INSERT) {
            self.update_chunk(chunk, true).await?;
        }
        for chunk in digest_only.chunks(ROWS_PER_INSERT) {
            self.update_chunk(chunk, false).await?;
        }
        Ok(())
    }

    async fn update_chunk(
        &mut self,
        chunk: &[&ResourceUpdate],
        with_data: bool,
    ) -> Result<(), StoreError> {
        {
            let res = on_tx!(self, c => {
                let mut q = QueryBuilder::new(if with_data {
                    "UPDATE resources SET data = v.data, digest = v.digest FROM ("
                } else {
                    "UPDATE resources SET digest = v.digest FROM ("
                });
                // The first row names the columns (and, for PostgreSQL, their types).
                let pg = matches!(self.store.pool(), Pool::Postgres(_));
                for (i, r) in chunk.iter().enumerate() {
                    q.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " });
                    q.push_bind(r.id);
                    q.push(if pg { "::bigint" } else { "" });
                    q.push(if i == 0 { " AS id, " } else { ", " });
                    if with_data {
                        q.push_bind(r.data.as_deref().unwrap_or_default());
                        q.push(if pg { "::text" } else { "" });
                        q.push(if i == 0 { " AS data, " } else { ", " });
                    }
                    q.push_bind(r.digest.to_bytes().to_vec());
                    q.push(if pg { "::bytea" } else { "" });
                    q.push(if i == 0 { " AS digest" } else { "" });
                }
                q.push(") AS v WHERE resources.id = v.id");
                q.build().execute(c).await.map(|_| ())
            });
            res.map_err(|e| self.err("update resources", e))?;
        }
        Ok(())
    }

    /// Deletes resources of `entity_type` and their links (both sides; links have no foreign
    /// keys).
    pub async fn delete_resources(
        &mut self,
        entity_type: &str,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.wrote(entity_type);
        // Links by id1 are found through the primary key (association, id1, id2), one
        // association at a time: an index on id1 alone would cost every link a third B-tree.
        // Association by association, so that each one's count is kept.
        let associations = self.associations().await?;
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let r = on_tx!(self, c => async {
                let mut links = Vec::with_capacity(associations.len());
                for a in &associations {
                    let mut removed = 0;
                    for side in ["id1", "id2"] {
                        let mut q = QueryBuilder::new("DELETE FROM links WHERE association = ");
                        q.push_bind(a.as_str());
                        q.push(format!(" AND {side} IN ("));
                        let mut sep = q.separated(", ");
                        for id in chunk {
                            sep.push_bind(*id);
                        }
                        q.push(")");
                        removed += q.build().execute(&mut *c).await?.rows_affected();
                    }
                    links.push(removed);
                }
                let mut q = QueryBuilder::new("DELETE FROM resources WHERE id IN (");
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                q.push(")");
                let resources = q.build().execute(&mut *c).await?.rows_affected();
                Ok::<_, sqlx::Error>((resources, links))
            }.await);
            let (resources, links) = r.map_err(|e| self.err("delete resources", e))?;
            self.counted_resources(entity_type, -(resources as i64));
            for (a, n) in associations.iter().zip(links) {
                self.counted_links(a, -(n as i64));
            }
        }
        Ok(())
    }

    /// The associations that have links, in this transaction: a skip scan of the links'
    /// primary key (one seek per association, whatever the number of links).
    async fn associations(&mut self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "WITH RECURSIVE a(x) AS (
                SELECT MIN(association) FROM links
                UNION ALL
                SELECT (SELECT MIN(association) FROM links WHERE association > a.x) FROM a WHERE a.x IS NOT NULL)
            SELECT x FROM a WHERE x IS NOT NULL";
        let r: Result<Vec<String>, sqlx::Error> =
            on_tx!(self, c => sqlx::query_scalar(SQL).fetch_all(c).await);
        r.map_err(|e| self.err("read the associations", e))
    }

    /// The id of the layout that lists `properties`, in that order, for `entity_type`'s values
    /// (see [`crate::values`]), added when new.
    pub async fn data_layout(
        &mut self,
        entity_type: &str,
        properties: &[&str],
    ) -> Result<i64, StoreError> {
        let text = crate::values::layout_text(properties);
        // A concurrent run adding the same layout on PostgreSQL: this insert waits for its
        // commit and then adds nothing; the select finds its row.
        let r: Result<i64, sqlx::Error> = on_tx!(self, c => async {
            sqlx::query(
                "INSERT INTO resource_layouts (entity_type, properties) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(entity_type)
            .bind(&text)
            .execute(&mut *c)
            .await?;
            sqlx::query_scalar(
                "SELECT id FROM resource_layouts WHERE entity_type = $1 AND properties = $2",
            )
            .bind(entity_type)
            .bind(&text)
            .fetch_one(&mut *c)
            .await
        }.await);
        r.map_err(|e| self.err("register a layout of values", e))
    }

    /// The ids of `entity_type`'s resources by key (`property` None) or by the value of a
    /// property (values of multi-valued properties are not used to link).
    pub async fn resource_ids(
        &mut self,
        entity_type: &str,
        property: Option<&str>,
    ) -> Result<HashMap<Box<str>, i64>, StoreError> {
        use futures_util::TryStreamExt as _;
        let mut out = HashMap::new();
        if let (None, Tx::Sqlite(t)) = (property, &mut self.tx) {
            let r = sqlite_packed(t, entity_type, false, |key, id, _| {
                out.insert(key.into(), id);
            })
            .await;
            r.map_err(|e| self.err("read resource keys", e))?;
            return Ok(out);
        }
        let r: Result<(), sqlx::Error> = match property {
            None => on_tx!(self, c => async {
                let mut rows = sqlx::query_as::<_, (String, i64)>(
                    "SELECT key, id FROM resources WHERE entity_type = $1",
                )
                .bind(entity_type)
                .fetch(c);
                while let Some((k, id)) = rows.try_next().await? {
                    out.insert(k.into_boxed_str(), id);
                }
                Ok(())
            }.await),
            Some(prop) => on_tx!(self, c => async {
                let layouts = layouts_of(
                    sqlx::query_as(LAYOUTS).bind(entity_type).fetch_all(&mut *c).await?,
                );
                let mut rows = sqlx::query_as::<_, (String, i64)>(
                    "SELECT data, id FROM resources WHERE entity_type = $1",
                )
                .bind(entity_type)
                .fetch(c);
                while let Some((data, id)) = rows.try_next().await? {
                    if let Ok(m) = crate::values::decode(&data, &layouts)
                        && let Some(v) = m.get(prop)
                    {
                        match v {
                            serde_json::Value::String(s) => {
                                out.insert(s.as_str().into(), id);
                            }
                            serde_json::Value::Array(_) | serde_json::Value::Null => {}
                            other => {
                                out.insert(other.to_string().into_boxed_str(), id);
                            }
                        }
                    }
                }
                Ok(())
            }.await),
        };
        r.map_err(|e| self.err("read resource keys", e))?;
        Ok(out)
    }

    /// PostgreSQL: drops the resources' indexes for a load whose first `batch` rows alone at
    /// least double the resources (those of the store and those this transaction added: the
    /// indexes are built again over all of them), when the table can be locked at once.
    /// Whether they were dropped.
    async fn drop_resources_indexes(&mut self, batch: usize) -> Result<bool, sqlx::Error> {
        let pending: i64 = self.resources_added.values().sum();
        if self.all_kept(ALL_RESOURCES_COUNT).await? + pending > batch as i64 {
            return Ok(false);
        }
        match &mut self.tx {
            Tx::Postgres(t) => postgres_drop_indexes(t, &POSTGRES_RESOURCES_INDEXES).await,
            Tx::Sqlite(_) => Ok(false),
        }
    }

    /// The kept count of all resources or links (`ALL_RESOURCES_COUNT`, `ALL_LINKS_COUNT`), as
    /// the transaction began.
    async fn all_kept(&mut self, sql: &str) -> Result<i64, sqlx::Error> {
        on_tx!(self, c => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await)
    }

    /// Builds the resources' indexes again after a bulk load dropped them (PostgreSQL, see
    /// [`SyncTx::insert_resources`]); nothing otherwise. The caller calls it when its inserts
    /// of an entity type are done: until then, reading resources by key or id scans them.
    pub async fn index_resources(&mut self) -> Result<(), StoreError> {
        if !self.resources_unindexed {
            return Ok(());
        }
        if let Tx::Postgres(t) = &mut self.tx {
            let r = postgres_build_indexes(t, &POSTGRES_RESOURCES_INDEXES).await;
            r.map_err(|e| self.err("build the resources' indexes", e))?;
        }
        self.resources_unindexed = false;
        Ok(())
    }

    /// Reserves `n` fresh resource ids and returns the first (the others follow it).
    /// SQLite: counted from the largest id under the transaction's write lock. PostgreSQL:
    /// taken from the identity sequence under an advisory lock (sequence changes are not
    /// transactional, so a run rolled back leaves a gap, never a reuse).
    pub async fn allocate_ids(&mut self, n: usize) -> Result<i64, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        if let Tx::Sqlite(_) = self.tx {
            let next = match self.next_id {
                Some(id) => id,
                None => self.last_resource_id().await? + 1,
            };
            self.next_id = Some(next + n);
            return Ok(next);
        }
        if n == 0 {
            return Ok(0);
        }
        let r: Result<i64, sqlx::Error> = on_tx!(self, c => async {
            // A session lock, released at once: held to the end of the transaction, it
            // would make concurrent synchronizations of other connectors wait for this one.
            sqlx::query("SELECT pg_advisory_lock($1)").bind(ID_ALLOCATION_LOCK).execute(&mut *c).await?;
            let last: Result<i64, sqlx::Error> = sqlx::query_scalar(
                "SELECT setval(pg_get_serial_sequence('resources', 'id'), nextval(pg_get_serial_sequence('resources', 'id')) + $1 - 1)",
            )
            .bind(n)
            .fetch_one(&mut *c)
            .await;
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(ID_ALLOCATION_LOCK).execute(&mut *c).await?;
            Ok(last? - n + 1)
        }.await);
        r.map_err(|e| self.err("reserve resource ids", e))
    }

    /// The links of `association` whose `id1` is one of `ids1`.
    pub async fn links_of(
        &mut self,
        association: &str,
        ids1: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut out = Vec::new();
        for chunk in ids1.chunks(ROWS_PER_INSERT) {
            let r: Result<Vec<(i64, i64)>, sqlx::Error> = on_tx!(self, c => {
                let mut q = QueryBuilder::new("SELECT id1, id2 FROM links WHERE association = ");
                q.push_bind(association);
                q.push(" AND id1 IN (");
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                q.push(")");
                q.build_query_as().fetch_all(c).await
            });
            out.extend(r.map_err(|e| self.err("read links", e))?);
        }
        Ok(out)
    }

    /// How many links `association` has, in this transaction (as counted when written).
    pub async fn count_links(&mut self, association: &str) -> Result<u64, StoreError> {
        let added = self.links_added.get(association).copied().unwrap_or(0);
        self.kept_count(LINK_COUNT, association, added, "count links")
            .await
    }

    /// A kept count (`sql` of `name`) as this transaction leaves it so far: plus `added`.
    async fn kept_count(
        &mut self,
        sql: &str,
        name: &str,
        added: i64,
        operation: &'static str,
    ) -> Result<u64, StoreError> {
        let r: Result<i64, sqlx::Error> =
            on_tx!(self, c => sqlx::query_scalar(sql).bind(name).fetch_one(c).await);
        let n = r.map_err(|e| self.err(operation, e))?;
        Ok(u64::try_from(n + added).unwrap_or(0))
    }

    /// The value digests (the first 16 bytes of the digest) of the resources `ids`.
    pub async fn value_digests(&mut self, ids: &[i64]) -> Result<Vec<(i64, [u8; 16])>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let r: Result<Vec<(i64, Vec<u8>)>, sqlx::Error> = on_tx!(self, c => {
                let mut q = QueryBuilder::new("SELECT id, digest FROM resources WHERE id IN (");
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                q.push(")");
                q.build_query_as().fetch_all(c).await
            });
            let rows = r.map_err(|e| self.err("read resource digests", e))?;
            out.extend(
                rows.into_iter()
                    .map(|(id, d)| (id, Digest::from_bytes(&d).value)),
            );
        }
        Ok(out)
    }

    /// The ids of `entity_type`'s resources whose key is one of `keys`.
    pub async fn ids_of_keys(
        &mut self,
        entity_type: &str,
        keys: &[&str],
    ) -> Result<Vec<i64>, StoreError> {
        let found = self.resources_of_keys(entity_type, keys).await?;
        Ok(found.into_iter().map(|(_, id, _)| id).collect())
    }

    /// The key, id and digest of the resources of `entity_type` with one of `keys`.
    pub async fn resources_of_keys(
        &mut self,
        entity_type: &str,
        keys: &[&str],
    ) -> Result<Vec<(String, i64, Digest)>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        if let Tx::Sqlite(t) = &mut self.tx {
            // One indexed lookup per key, in key order (neighbours share their pages).
            let mut sorted = keys.to_vec();
            sorted.sort_unstable();
            let r = with_rusqlite(t, |db| {
                let mut st = db.prepare_cached(
                    "SELECT id, digest FROM resources WHERE entity_type = ?1 AND key = ?2",
                )?;
                for k in sorted {
                    let mut rows = st.query(rusqlite::params![entity_type, k])?;
                    if let Some(row) = rows.next()? {
                        let id: i64 = row.get(0)?;
                        let digest = Digest::from_bytes(row.get_ref(1)?.as_blob()?);
                        out.push((k.to_string(), id, digest));
                    }
                }
                Ok(())
            })
            .await;
            r.map_err(|e| self.err("read resources by key", e))?;
            return Ok(out);
        }
        for chunk in keys.chunks(ROWS_PER_INSERT) {
            let r: Result<Vec<(String, i64, Vec<u8>)>, sqlx::Error> = on_tx!(self, c => {
                let mut q = QueryBuilder::new("SELECT key, id, digest FROM resources WHERE entity_type = ");
                q.push_bind(entity_type);
                q.push(" AND key IN (");
                let mut sep = q.separated(", ");
                for k in chunk {
                    sep.push_bind(*k);
                }
                q.push(")");
                q.build_query_as().fetch_all(c).await
            });
            let rows = r.map_err(|e| self.err("read resources by key", e))?;
            out.extend(
                rows.into_iter()
                    .map(|(key, id, digest)| (key, id, Digest::from_bytes(&digest))),
            );
        }
        Ok(out)
    }

    /// How many resources of `entity_type` the store holds, in this transaction.
    pub async fn count_resources(&mut self, entity_type: &str) -> Result<u64, StoreError> {
        let added = self.resources_added.get(entity_type).copied().unwrap_or(0);
        self.kept_count(RESOURCE_COUNT, entity_type, added, "count resources")
            .await
    }

    /// The largest resource id so far (0 in an empty store).
    pub async fn last_resource_id(&mut self) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(MAX(id), 0) FROM resources";
        let r: Result<i64, sqlx::Error> =
            on_tx!(self, c => sqlx::query_scalar(sql).fetch_one(c).await);
        r.map_err(|e| self.err("read the last resource id", e))
    }

    /// Every link of `association` as (id1, id2).
    pub async fn link_set(&mut self, association: &str) -> Result<HashSet<(i64, i64)>, StoreError> {
        use futures_util::TryStreamExt as _;
        let mut out = HashSet::new();
        if let Tx::Sqlite(t) = &mut self.tx {
            // Packed by SQLite, keyset-paginated on the primary key (see `sqlite_packed`).
            let mut last = (i64::MIN, i64::MIN);
            loop {
                let text: Option<String> = sqlx::query_scalar(
                    "SELECT group_concat(id1 || ',' || id2, ';') FROM (SELECT id1, id2 FROM links
                     WHERE association = $1 AND (id1 > $2 OR (id1 = $2 AND id2 > $3))
                     ORDER BY id1, id2 LIMIT 50000)",
                )
                .bind(association)
                .bind(last.0)
                .bind(last.1)
                .fetch_one(&mut **t)
                .await
                .map_err(|e| self.store.db_error("read links", e))?;
                let Some(text) = text.filter(|t| !t.is_empty()) else {
                    break;
                };
                for pair in text.split(';') {
                    let (a, z) = pair
                        .split_once(',')
                        .and_then(|(a, z)| Some((a.parse().ok()?, z.parse().ok()?)))
                        .ok_or_else(|| corrupt(self.store, "a link", pair))?;
                    last = last.max((a, z));
                    out.insert((a, z));
                }
            }
            return Ok(out);
        }
        let r: Result<(), sqlx::Error> = on_tx!(self, c => async {
            let mut rows = sqlx::query_as::<_, (i64, i64)>(
                "SELECT id1, id2 FROM links WHERE association = $1",
            )
            .bind(association)
            .fetch(c);
            while let Some(p) = rows.try_next().await? {
                out.insert(p);
            }
            Ok(())
        }.await);
        r.map_err(|e| self.err("read links", e))?;
        Ok(out)
    }

    /// Inserts links, sorted first: in key order each index page is written once.
    pub async fn insert_links(
        &mut self,
        association: &str,
        mut sorted: Vec<(i64, i64)>,
    ) -> Result<(), StoreError> {
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Ok(());
        }
        // A load that at least doubles the links (a first synchronization) may build indexes
        // after them (see each store below): the links stored are the kept counts (plus what
        // this transaction added or removed so far), not counted.
        let bulk = sorted.len() >= BULK_LINKS && {
            let pending: i64 = self.links_added.values().sum();
            let r = self.all_kept(ALL_LINKS_COUNT).await;
            r.map_err(|e| self.err("count the links", e))? + pending <= sorted.len() as i64
        };
        if let Tx::Postgres(t) = &mut self.tx {
            // The pairs are new (the caller diffed them against the store): one COPY. A load
            // that at least doubles the links builds their indexes after them, as SQLite does
            // its reverse index, when the table can be locked at once: dropping them locks the
            // links until the commit (readers wait), and a lock never waited for cannot
            // deadlock with another run.
            let r: Result<u64, sqlx::Error> = async {
                let rebuild = bulk && postgres_drop_indexes(t, &POSTGRES_LINKS_INDEXES).await?;
                // In the binary format, as the resources (psql, 1M links into a temporary table: 0.66 s
                // against 0.82 s from CSV).
                let mut out = BinaryCopy::with_capacity(sorted.len() * (30 + association.len()));
                for (a, z) in &sorted {
                    out.row(3);
                    out.field(association.as_bytes());
                    out.field(&a.to_be_bytes());
                    out.field(&z.to_be_bytes());
                }
                let sql = "COPY links (association, id1, id2) FROM STDIN (FORMAT binary)";
                let n = copy(t, sql, out.finish()?).await?;
                if rebuild {
                    postgres_build_indexes(t, &POSTGRES_LINKS_INDEXES).await?;
                }
                Ok(n)
            }
            .await;
            let n = r.map_err(|e| self.err("insert links", e))?;
            self.counted_links(association, n as i64);
            return Ok(());
        }
        if let Tx::Sqlite(t) = &mut self.tx {
            let r = with_rusqlite(t, |db| {
                // A bulk load builds the reverse index after the links: CREATE INDEX sorts
                // once, where keeping it link by link writes its pages out of order (1M links:
                // 1.8 s against 0.8 s). Both statements are in the transaction, so a run killed
                // between them leaves the index as it was.
                if bulk {
                    db.execute_batch("DROP INDEX links_by_id2")?;
                }
                let n = insert_many(
                    db,
                    "INSERT INTO links (association, id1, id2)",
                    "ON CONFLICT DO NOTHING",
                    &[&association],
                    &sorted,
                    2,
                    |st, p, (a, z)| {
                        st.raw_bind_parameter(p, a)?;
                        st.raw_bind_parameter(p + 1, z)
                    },
                )?;
                if bulk {
                    db.execute_batch(LINKS_BY_ID2)?;
                }
                Ok(n)
            })
            .await;
            let n = r.map_err(|e| self.err("insert links", e))?;
            self.counted_links(association, n as i64);
        }
        Ok(())
    }

    pub async fn delete_links(
        &mut self,
        association: &str,
        pairs: &[(i64, i64)],
    ) -> Result<(), StoreError> {
        for chunk in pairs.chunks(ROWS_PER_INSERT) {
            let r = on_tx!(self, c => {
                let mut q = QueryBuilder::new("DELETE FROM links WHERE association = ");
                q.push_bind(association);
                q.push(" AND (id1, id2) IN (");
                let mut sep = q.separated(", ");
                for (a, z) in chunk {
                    sep.push("(");
                    sep.push_bind_unseparated(*a);
                    sep.push_unseparated(", ");
                    sep.push_bind_unseparated(*z);
                    sep.push_unseparated(")");
                }
                q.push(")");
                q.build().execute(c).await.map(|r| r.rows_affected())
            });
            let n = r.map_err(|e| self.err("delete links", e))?;
            self.counted_links(association, -(n as i64));
        }
        Ok(())
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        // Never without the resources' indexes.
        self.index_resources().await?;
        // What describes an entity type's resources and was not saved again since they were
        // written no longer does.
        let derived = [
            (
                "DELETE FROM resource_index_snapshots WHERE entity_type = $1",
                &self.saved,
                "delete an index snapshot",
            ),
            (
                "DELETE FROM synchronized_tables WHERE entity_type = $1",
                &self.digested,
                "delete a table digest",
            ),
        ];
        let stale: Vec<(&str, &'static str, String)> = derived
            .into_iter()
            .flat_map(|(sql, kept, what)| {
                self.written
                    .difference(kept)
                    .map(move |et| (sql, what, et.clone()))
            })
            .collect();
        for (sql, what, entity_type) in stale {
            let r = on_tx!(self, c => sqlx::query(sql)
                .bind(&entity_type)
                .execute(c)
                .await
                .map(|_| ()));
            r.map_err(|e| self.err(what, e))?;
        }
        let counts = [
            (
                "INSERT INTO resource_counts (entity_type, n) VALUES ($1, $2)
                 ON CONFLICT (entity_type) DO UPDATE SET n = resource_counts.n + excluded.n",
                std::mem::take(&mut self.resources_added),
            ),
            (
                "INSERT INTO link_counts (association, n) VALUES ($1, $2)
                 ON CONFLICT (association) DO UPDATE SET n = link_counts.n + excluded.n",
                std::mem::take(&mut self.links_added),
            ),
        ];
        for (sql, added) in counts {
            for (name, n) in added.into_iter().filter(|(_, n)| *n != 0) {
                let r = on_tx!(self, c => sqlx::query(sql)
                    .bind(&name)
                    .bind(n)
                    .execute(c)
                    .await
                    .map(|_| ()));
                r.map_err(|e| self.err("keep the counts", e))?;
            }
        }
        let store = self.store;
        match self.tx {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
        .map_err(|e| store.db_error("commit the synchronization", e))
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        let store = self.store;
        match self.tx {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Postgres(t) => t.rollback().await,
        }
        .map_err(|e| store.db_error("roll the synchronization back", e))
    }
}

/// Entries per row of `resource_index_snapshots` (2 MiB: SQLite copies a bound blob).
const SNAPSHOT_CHUNK: usize = 1 << 16;

/// The `idlink_meta` key of the seed of the key hashes in index snapshots.
const KEY_SEED: &str = "sync_key_seed";

/// One resource in an index snapshot: the hash of its key (with the store's seed, see
/// [`SyncTx::key_seed`]), its id and the raw part of its digest. Stored as 32 bytes, little
/// endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub key_hash: u128,
    pub id: i64,
    pub raw: u64,
}

impl SnapshotEntry {
    const SIZE: usize = 32;

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key_hash.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.raw.to_le_bytes());
    }

    fn read(b: &[u8]) -> SnapshotEntry {
        let mut h = [0u8; 16];
        h.copy_from_slice(&b[..16]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[16..24]);
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&b[24..32]);
        SnapshotEntry {
            key_hash: u128::from_le_bytes(h),
            id: i64::from_le_bytes(id),
            raw: u64::from_le_bytes(raw),
        }
    }
}

impl SyncTx<'_> {
    fn counted_resources(&mut self, entity_type: &str, n: i64) {
        *self
            .resources_added
            .entry(entity_type.to_string())
            .or_default() += n;
    }

    fn counted_links(&mut self, association: &str, n: i64) {
        *self.links_added.entry(association.to_string()).or_default() += n;
    }

    fn wrote(&mut self, entity_type: &str) {
        self.saved.remove(entity_type);
        self.digested.remove(entity_type);
        if !self.written.contains(entity_type) {
            self.written.insert(entity_type.to_string());
        }
    }

    /// The seed of the key hashes of the store's index snapshots; `fresh` becomes it when the
    /// store has none yet. Two first runs at once agree on one seed: the second waits for the
    /// first's row (PostgreSQL) and takes it.
    pub async fn key_seed(&mut self, fresh: u64) -> Result<u64, StoreError> {
        let r = on_tx!(self, c => sqlx::query(
            "INSERT INTO idlink_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
        )
        .bind(KEY_SEED)
        .bind(fresh.to_string())
        .execute(c)
        .await
        .map(|_| ()));
        r.map_err(|e| self.err("save the key seed", e))?;
        let r: Result<String, sqlx::Error> = on_tx!(self, c => sqlx::query_scalar(
            "SELECT value FROM idlink_meta WHERE key = $1"
        )
        .bind(KEY_SEED)
        .fetch_one(c)
        .await);
        let v = r.map_err(|e| self.err("read the key seed", e))?;
        v.parse()
            .map_err(|_| corrupt(self.store, "the key seed of the index snapshots", &v))
    }

    /// Calls `f` with every entry of `entity_type`'s index snapshot, in the order written (an
    /// appended entry replaces the earlier one of its key hash; id 0 deletes it), and returns
    /// how many there were, or None when there is no snapshot (never saved, or deleted by a
    /// transaction that wrote the entity type's resources without saving one).
    pub async fn each_snapshot_entry(
        &mut self,
        entity_type: &str,
        mut f: impl FnMut(SnapshotEntry),
    ) -> Result<Option<u64>, StoreError> {
        use futures_util::TryStreamExt as _;
        const SQL: &str = "SELECT entries, data FROM resource_index_snapshots WHERE entity_type = $1 ORDER BY chunk";
        let mut found = None;
        let mut each = |entries: i64, data: &[u8]| -> Result<(), String> {
            if usize::try_from(entries)
                .ok()
                .and_then(|n| n.checked_mul(SnapshotEntry::SIZE))
                != Some(data.len())
            {
                return Err(format!(
                    "a chunk of {} bytes does not hold {entries} entries",
                    data.len()
                ));
            }
            for e in data.chunks_exact(SnapshotEntry::SIZE) {
                f(SnapshotEntry::read(e));
            }
            *found.get_or_insert(0u64) += data.len() as u64 / SnapshotEntry::SIZE as u64;
            Ok(())
        };
        let r: Result<Result<(), String>, sqlx::Error> = match &mut self.tx {
            // rusqlite reads the blob in place, sqlx would copy it through its worker.
            Tx::Sqlite(t) => {
                with_rusqlite(t, |db| {
                    let mut st = db.prepare_cached(SQL)?;
                    let mut rows = st.query([entity_type])?;
                    while let Some(row) = rows.next()? {
                        let entries: i64 = row.get(0)?;
                        let data = row.get_ref(1)?.as_blob()?;
                        if let Err(e) = each(entries, data) {
                            return Ok(Err(e));
                        }
                    }
                    Ok(Ok(()))
                })
                .await
            }
            Tx::Postgres(t) => {
                async {
                    let mut rows = sqlx::query_as::<_, (i64, Vec<u8>)>(SQL)
                        .bind(entity_type)
                        .fetch(&mut **t);
                    while let Some((entries, data)) = rows.try_next().await? {
                        if let Err(e) = each(entries, &data) {
                            return Ok(Err(e));
                        }
                    }
                    Ok(Ok(()))
                }
                .await
            }
        };
        r.map_err(|e| self.err("read an index snapshot", e))?
            .map_err(|message| StoreError::Corrupt {
                store: self.store.location().to_string(),
                what: format!("the index snapshot of {entity_type}"),
                message,
            })?;
        Ok(found)
    }

    /// Replaces `entity_type`'s index snapshot with `entries`: every resource of the entity
    /// type as this transaction leaves it (the caller's to make sure). Written a chunk at a
    /// time: memory holds one chunk, not the snapshot.
    pub async fn save_snapshot(
        &mut self,
        entity_type: &str,
        entries: impl Iterator<Item = SnapshotEntry> + Send,
    ) -> Result<(), StoreError> {
        let r = on_tx!(self, c => sqlx::query("DELETE FROM resource_index_snapshots WHERE entity_type = $1")
            .bind(entity_type)
            .execute(c)
            .await
            .map(|_| ()));
        r.map_err(|e| self.err("save an index snapshot", e))?;
        self.write_snapshot_chunks(entity_type, 0, entries).await
    }

    /// Deletes `entity_type`'s index snapshot, if it has one.
    pub async fn delete_snapshot(&mut self, entity_type: &str) -> Result<(), StoreError> {
        let r = on_tx!(self, c => sqlx::query("DELETE FROM resource_index_snapshots WHERE entity_type = $1")
            .bind(entity_type)
            .execute(c)
            .await
            .map(|_| ()));
        r.map_err(|e| self.err("delete an index snapshot", e))
    }

    /// Appends `entries` to `entity_type`'s index snapshot: the changes of this transaction
    /// to a snapshot it read whole (an entry replaces the one of its key hash; id 0 deletes
    /// it). The caller's to make sure.
    pub async fn append_snapshot(
        &mut self,
        entity_type: &str,
        entries: impl Iterator<Item = SnapshotEntry> + Send,
    ) -> Result<(), StoreError> {
        let r: Result<i64, sqlx::Error> = on_tx!(self, c => sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(chunk) + 1, 0) AS BIGINT) FROM resource_index_snapshots WHERE entity_type = $1"
        )
        .bind(entity_type)
        .fetch_one(c)
        .await);
        let next = r.map_err(|e| self.err("save an index snapshot", e))?;
        self.write_snapshot_chunks(entity_type, next, entries).await
    }

    /// How many entries `entity_type`'s index snapshot holds (appended ones included), or
    /// None when it has none.
    pub async fn snapshot_entries(&mut self, entity_type: &str) -> Result<Option<u64>, StoreError> {
        let r: Result<Option<i64>, sqlx::Error> = on_tx!(self, c => sqlx::query_scalar(
            "SELECT CAST(SUM(entries) AS BIGINT) FROM resource_index_snapshots WHERE entity_type = $1"
        )
        .bind(entity_type)
        .fetch_one(c)
        .await);
        r.map(|n| n.map(|n| u64::try_from(n).unwrap_or(0)))
            .map_err(|e| self.err("read an index snapshot", e))
    }

    /// The digest of the table `entity_type` was last synchronized from (see
    /// [`SyncTx::save_table_digest`]), or None.
    pub async fn table_digest(&mut self, entity_type: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r: Result<Option<Vec<u8>>, sqlx::Error> = on_tx!(self, c => sqlx::query_scalar(
            "SELECT digest FROM synchronized_tables WHERE entity_type = $1"
        )
        .bind(entity_type)
        .fetch_optional(c)
        .await);
        r.map_err(|e| self.err("read a table digest", e))
    }

    /// Saves the digest of the table `entity_type`'s resources are, after this transaction,
    /// exactly the rows of (the caller's to make sure). Writing the entity type's resources
    /// afterwards in the same transaction deletes it at commit.
    pub async fn save_table_digest(
        &mut self,
        entity_type: &str,
        digest: &[u8],
    ) -> Result<(), StoreError> {
        let r = on_tx!(self, c => sqlx::query(
            "INSERT INTO synchronized_tables (entity_type, digest) VALUES ($1, $2) ON CONFLICT (entity_type) DO UPDATE SET digest = excluded.digest"
        )
        .bind(entity_type)
        .bind(digest)
        .execute(c)
        .await
        .map(|_| ()));
        r.map_err(|e| self.err("save a table digest", e))?;
        self.digested.insert(entity_type.to_string());
        Ok(())
    }

    async fn write_snapshot_chunks(
        &mut self,
        entity_type: &str,
        first_chunk: i64,
        entries: impl Iterator<Item = SnapshotEntry> + Send,
    ) -> Result<(), StoreError> {
        let mut entries = entries.peekable();
        let mut chunk = first_chunk;
        while entries.peek().is_some() {
            let mut data = Vec::with_capacity(SNAPSHOT_CHUNK * SnapshotEntry::SIZE);
            for e in entries.by_ref().take(SNAPSHOT_CHUNK) {
                e.write(&mut data);
            }
            let n = (data.len() / SnapshotEntry::SIZE) as i64;
            const SQL: &str = "INSERT INTO resource_index_snapshots (entity_type, chunk, entries, data) VALUES ($1, $2, $3, $4)";
            let r = match &mut self.tx {
                Tx::Sqlite(t) => {
                    with_rusqlite(t, |db| {
                        db.prepare_cached(SQL)?
                            .execute(rusqlite::params![entity_type, chunk, n, data])
                            .map(|_| ())
                    })
                    .await
                }
                Tx::Postgres(t) => sqlx::query(SQL)
                    .bind(entity_type)
                    .bind(chunk)
                    .bind(n)
                    .bind(data)
                    .execute(&mut **t)
                    .await
                    .map(|_| ()),
            };
            r.map_err(|e| self.err("save an index snapshot", e))?;
            chunk += 1;
        }
        self.saved.insert(entity_type.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{ValuesInText, values_match};

    /// The test on the text never drops a resource that the test on the values keeps: each
    /// value, and texts that read as it, wanted against the values written as JSON (an object
    /// and a layout's array alike hold each value as `serde_json` writes it).
    #[test]
    fn values_in_text_keeps_every_resource_that_matches() {
        let values = [
            json!("ada"),
            json!("say \"hi\""),
            json!("back\\slash"),
            json!("tab\there"),
            json!("Édith"),
            json!("KELVIN \u{212A}"),
            json!(7),
            json!(-3),
            json!(1.5),
            json!(1e21),
            json!(true),
            json!(["ENG", "OPS"]),
            json!([1, 2]),
        ];
        let mut wanted: Vec<String> = vec!["1.50".into(), "7.0".into(), "1E21".into(), "01".into()];
        for v in &values {
            match v {
                Value::String(s) => wanted.push(s.clone()),
                Value::Array(items) => wanted.extend(items.iter().map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })),
                other => wanted.push(other.to_string()),
            }
        }
        for v in &values {
            let data: serde_json::Map<String, Value> =
                [("P".to_string(), v.clone())].into_iter().collect();
            let text = serde_json::to_string(&data).expect("json");
            for w in &wanted {
                let filters = [("P".to_string(), w.clone())];
                if values_match(&data, &filters) {
                    assert!(
                        ValuesInText::new(&filters).may_match(&text),
                        "{w:?} in {text}"
                    );
                }
            }
        }
        let text = r#"[3,"ada","Lovelace",7]"#;
        let f = |w: &str| ValuesInText::new(&[("P".to_string(), w.to_string())]);
        assert!(!f("grace").may_match(text));
        assert!(f("ada").may_match(text));
        assert!(f("").may_match(text));
    }
}
