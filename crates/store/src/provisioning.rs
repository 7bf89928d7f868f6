//! Provisioning (SPEC §6): the orders a provisioning run generates and what became of them,
//! which owner holds which target resource (assignments), and job runs with their reports.
//!
//! An order's life: `Pending` (stored by a provisioning run) → `Transmitted` (handed to a
//! package that finishes later, such as a ticket for a person) → `Executed` or `Errored` (the
//! package's result) → `Verified` (the next synchronization shows the target as ordered). While
//! an order is open (Pending, Transmitted or Executed) no second order is generated for the same
//! owner and resource type.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Pool, Store, StoreError, on_pool};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum OrderState {
    Pending,
    Transmitted,
    Executed,
    Errored,
    Verified,
}

impl OrderState {
    pub const ALL: [OrderState; 5] = [
        OrderState::Pending,
        OrderState::Transmitted,
        OrderState::Executed,
        OrderState::Errored,
        OrderState::Verified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "Pending",
            OrderState::Transmitted => "Transmitted",
            OrderState::Executed => "Executed",
            OrderState::Errored => "Errored",
            OrderState::Verified => "Verified",
        }
    }

    /// Pending, Transmitted and Executed: the order's effect is not confirmed yet.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OrderState::Pending | OrderState::Transmitted | OrderState::Executed
        )
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrderState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OrderState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "'{s}' is not an order state: use Pending, Transmitted, Executed, Errored or Verified"
                )
            })
    }
}

/// An order to store.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub resource_type: String,
    /// The connection its resource type mapping names.
    pub connection: Option<String>,
    /// The owner's key (the source resource), absent for an orphan's deletion.
    pub owner_key: Option<String>,
    /// The target resource's key, when known (not for an Added order whose key the system gives).
    pub target_key: Option<String>,
    /// `Added`, `Modified` or `Deleted`.
    pub change_type: String,
    /// The order as packages receive it (SPEC §6 order JSON).
    pub body: String,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredOrder {
    pub id: i64,
    pub resource_type: String,
    pub connection: Option<String>,
    pub owner_key: Option<String>,
    pub target_key: Option<String>,
    pub change_type: String,
    pub body: String,
    pub state: OrderState,
    /// The system's answer, or why it failed, or why it is not verified yet.
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which orders to read. Empty fields select all.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub states: Vec<OrderState>,
    pub resource_types: Vec<String>,
    /// Compared case-insensitively, as connection identifiers are.
    pub connection: Option<String>,
    pub ids: Vec<i64>,
    /// The newest `limit` (by id) when given; otherwise all, oldest first.
    pub limit: Option<u32>,
}

/// One owner → target resource pair of a resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub resource_type: String,
    pub owner_key: String,
    pub target_key: String,
}

/// An order's new state.
#[derive(Debug, Clone)]
pub struct OrderUpdate {
    pub id: i64,
    pub state: OrderState,
    pub message: String,
}

/// A job run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    pub id: i64,
    pub job: String,
    /// `Running`, `Succeeded`, `Failed` (a task failed), `Interrupted` (the process ended first).
    pub state: String,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The run's report (JSON), once finished.
    pub report: Option<String>,
    /// What the run printed, one line per event.
    pub log: String,
}

type OrderRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);

const ORDER_COLUMNS: &str = "id, resource_type, connection, owner_key, target_key, change_type, body, state, message, created_at, updated_at";

fn order(row: OrderRow) -> Result<StoredOrder, String> {
    let state = row.7.parse::<OrderState>()?;
    Ok(StoredOrder {
        id: row.0,
        resource_type: row.1,
        connection: row.2,
        owner_key: row.3,
        target_key: row.4,
        change_type: row.5,
        body: row.6,
        state,
        message: row.8,
        created_at: row.9,
        updated_at: row.10,
    })
}

/// Rows per statement when lists are bound as parameters.
const CHUNK: usize = 400;

/// Orders per multi-row INSERT (8 parameters each: within SQLite's 32,766).
const ORDERS_PER_INSERT: usize = 400;

impl Store {
    /// Stores a provisioning run's orders and the assignments it found (adopted targets), in one
    /// transaction. Returns the new orders' ids in the order given.
    pub async fn record_provisioning(
        &self,
        orders: &[NewOrder],
        adopted: &[Assignment],
    ) -> Result<Vec<i64>, StoreError> {
        let now = crate::now();
        let op = "store provisioning orders";
        let mut ids = Vec::with_capacity(orders.len());
        // Multi-row inserts with ids chosen here (one statement per CHUNK orders): a provisioning
        // run of 100,000 orders is 250 statements, not 100,000 round trips.
        const COLUMNS: &str = "id, resource_type, connection, owner_key, target_key, change_type, body, state, message, created_at, updated_at";
        let values = |n: usize| -> String {
            (0..n)
                .map(|i| {
                    let b = i * 8;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, 'Pending', '', ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8,
                        b + 8
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        macro_rules! insert_chunk {
            ($tx:expr, $sql:expr, $chunk:expr, $first:expr) => {{
                let mut q = sqlx::query($sql);
                for (i, o) in $chunk.iter().enumerate() {
                    q = q
                        .bind($first[i])
                        .bind(&o.resource_type)
                        .bind(&o.connection)
                        .bind(&o.owner_key)
                        .bind(&o.target_key)
                        .bind(&o.change_type)
                        .bind(&o.body)
                        .bind(now);
                }
                q.execute(&mut *$tx)
                    .await
                    .map_err(|e| self.db_error(op, e))?;
            }};
        }
        macro_rules! assign {
            ($tx:expr) => {{
                for a in adopted {
                    sqlx::query(
                        "INSERT INTO assignments (resource_type, owner_key, target_key) VALUES ($1, $2, $3)
                         ON CONFLICT (resource_type, owner_key) DO UPDATE SET target_key = excluded.target_key",
                    )
                    .bind(&a.resource_type)
                    .bind(&a.owner_key)
                    .bind(&a.target_key)
                    .execute(&mut *$tx)
                    .await
                    .map_err(|e| self.db_error(op, e))?;
                }
            }};
        }
        match self.pool() {
            Pool::Sqlite(p) => {
                // The write lock from the start: the ids counted from the largest are ours.
                let mut tx = p
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| self.db_error(op, e))?;
                let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM orders")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| self.db_error(op, e))?;
                let first = last + 1;
                let at = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                crate::resources::with_rusqlite(&mut tx, |conn| {
                    let mut st = conn.prepare_cached(&format!(
                        "INSERT INTO orders ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'Pending', '', ?8, ?8)"
                    ))?;
                    for (i, o) in orders.iter().enumerate() {
                        st.execute(rusqlite::params![
                            first + i as i64,
                            o.resource_type,
                            o.connection,
                            o.owner_key,
                            o.target_key,
                            o.change_type,
                            o.body,
                            at,
                        ])?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| self.db_error(op, e))?;
                ids.extend(first..first + orders.len() as i64);
                assign!(tx);
                tx.commit().await.map_err(|e| self.db_error(op, e))?;
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await.map_err(|e| self.db_error(op, e))?;
                for chunk in orders.chunks(ORDERS_PER_INSERT) {
                    let chunk_ids: Vec<i64> = sqlx::query_scalar(
                        "SELECT nextval(pg_get_serial_sequence('orders', 'id')) FROM generate_series(1, $1)",
                    )
                    .bind(chunk.len() as i64)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.db_error(op, e))?;
                    let sql = format!(
                        "INSERT INTO orders ({COLUMNS}) OVERRIDING SYSTEM VALUE VALUES {}",
                        values(chunk.len())
                    );
                    insert_chunk!(tx, &sql, chunk, chunk_ids);
                    ids.extend(chunk_ids);
                }
                assign!(tx);
                tx.commit().await.map_err(|e| self.db_error(op, e))?;
            }
        }
        Ok(ids)
    }

    /// The orders `filter` selects.
    pub async fn orders(&self, filter: &OrderFilter) -> Result<Vec<StoredOrder>, StoreError> {
        let mut sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if !filter.states.is_empty() {
            let ps: Vec<String> = filter.states.iter().map(|_| next()).collect();
            sql.push_str(&format!(" AND state IN ({})", ps.join(", ")));
        }
        if !filter.resource_types.is_empty() {
            let ps: Vec<String> = filter.resource_types.iter().map(|_| next()).collect();
            sql.push_str(&format!(" AND resource_type IN ({})", ps.join(", ")));
        }
        if filter.connection.is_some() {
            sql.push_str(&format!(" AND LOWER(connection) = LOWER({})", next()));
        }
        if !filter.ids.is_empty() {
            let ps: Vec<String> = filter.ids.iter().map(|_| next()).collect();
            sql.push_str(&format!(" AND id IN ({})", ps.join(", ")));
        }
        match filter.limit {
            Some(l) => sql.push_str(&format!(" ORDER BY id DESC LIMIT {l}")),
            None => sql.push_str(" ORDER BY id"),
        }
        macro_rules! bind_all {
            ($q:expr) => {{
                let mut q = $q;
                for s in &filter.states {
                    q = q.bind(s.as_str());
                }
                for r in &filter.resource_types {
                    q = q.bind(r.as_str());
                }
                if let Some(c) = &filter.connection {
                    q = q.bind(c.as_str());
                }
                for id in &filter.ids {
                    q = q.bind(*id);
                }
                q
            }};
        }
        let rows: Vec<OrderRow> =
            on_pool!(self, p => bind_all!(sqlx::query_as(&sql)).fetch_all(p).await)
                .map_err(|e| self.db_error("read orders", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.0;
            out.push(order(row).map_err(|message| StoreError::Corrupt {
                store: self.location().to_string(),
                what: format!("order {id}"),
                message,
            })?);
        }
        if filter.limit.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    /// The owner and target keys of `resource_type`'s open orders (Pending, Transmitted,
    /// Executed): what a provisioning run must not order twice. Reads no order body.
    pub async fn open_order_keys(
        &self,
        resource_type: &str,
    ) -> Result<Vec<(Option<String>, Option<String>)>, StoreError> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT owner_key, target_key FROM orders
             WHERE resource_type = $1 AND state IN ('Pending', 'Transmitted', 'Executed')"
        )
        .bind(resource_type)
        .fetch_all(p)
        .await)
        .map_err(|e| self.db_error("read open orders", e))
    }

    /// One order by id.
    pub async fn order(&self, id: i64) -> Result<Option<StoredOrder>, StoreError> {
        let filter = OrderFilter {
            ids: vec![id],
            ..OrderFilter::default()
        };
        Ok(self.orders(&filter).await?.pop())
    }

    /// Sets orders' states and messages, in one transaction.
    pub async fn update_orders(&self, updates: &[OrderUpdate]) -> Result<(), StoreError> {
        self.record_verification(updates, &[], &[]).await
    }

    /// Moves orders from `from` to `to` only if they are still in `from` (a second fulfill of
    /// the same orders finds them taken). Returns the ids that moved.
    pub async fn claim_orders(
        &self,
        ids: &[i64],
        from: OrderState,
        to: OrderState,
    ) -> Result<Vec<i64>, StoreError> {
        let now = crate::now();
        let mut moved = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let ps: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
            let sql = format!(
                "UPDATE orders SET state = $1, updated_at = $2 WHERE state = $3 AND id IN ({}) RETURNING id",
                ps.join(", ")
            );
            let got: Vec<i64> = on_pool!(self, p => {
                let mut q = sqlx::query_scalar(&sql).bind(to.as_str()).bind(now).bind(from.as_str());
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await
            })
            .map_err(|e| self.db_error("claim orders", e))?;
            moved.extend(got);
        }
        moved.sort_unstable();
        Ok(moved)
    }

    /// The assignments of `resource_type`: owner key → target key.
    pub async fn assignments(
        &self,
        resource_type: &str,
    ) -> Result<HashMap<String, String>, StoreError> {
        let rows: Vec<(String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT owner_key, target_key FROM assignments WHERE resource_type = $1"
        )
        .bind(resource_type)
        .fetch_all(p)
        .await)
        .map_err(|e| self.db_error("read assignments", e))?;
        Ok(rows.into_iter().collect())
    }

    /// Records what verification learnt: orders verified (or still waiting, with why), targets
    /// now assigned to owners, and assignments of deleted targets removed; one transaction.
    pub async fn record_verification(
        &self,
        updates: &[OrderUpdate],
        assigned: &[Assignment],
        unassigned: &[(String, String)],
    ) -> Result<(), StoreError> {
        if updates.is_empty() && assigned.is_empty() && unassigned.is_empty() {
            return Ok(());
        }
        let now = crate::now();
        let op = "record order states";
        const UPDATE: &str =
            "UPDATE orders SET state = $1, message = $2, updated_at = $3 WHERE id = $4";
        const ASSIGN: &str =
            "INSERT INTO assignments (resource_type, owner_key, target_key) VALUES ($1, $2, $3)
             ON CONFLICT (resource_type, owner_key) DO UPDATE SET target_key = excluded.target_key";
        const UNASSIGN: &str =
            "DELETE FROM assignments WHERE resource_type = $1 AND owner_key = $2";
        match self.pool() {
            // One prepared statement stepped per row on this thread (sqlx would hand each
            // row to its worker: seconds for the 10,000 results of one fulfill).
            Pool::Sqlite(p) => {
                let mut tx = p
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| self.db_error(op, e))?;
                let at = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                crate::resources::with_rusqlite(&mut tx, |conn| {
                    let mut st = conn.prepare_cached(UPDATE)?;
                    for u in updates {
                        st.execute(rusqlite::params![u.state.as_str(), u.message, at, u.id])?;
                    }
                    let mut st = conn.prepare_cached(ASSIGN)?;
                    for a in assigned {
                        st.execute(rusqlite::params![
                            a.resource_type,
                            a.owner_key,
                            a.target_key
                        ])?;
                    }
                    let mut st = conn.prepare_cached(UNASSIGN)?;
                    for (rt, owner) in unassigned {
                        st.execute(rusqlite::params![rt, owner])?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| self.db_error(op, e))?;
                tx.commit().await.map_err(|e| self.db_error(op, e))?;
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await.map_err(|e| self.db_error(op, e))?;
                for u in updates {
                    sqlx::query(UPDATE)
                        .bind(u.state.as_str())
                        .bind(&u.message)
                        .bind(now)
                        .bind(u.id)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.db_error(op, e))?;
                }
                for a in assigned {
                    sqlx::query(ASSIGN)
                        .bind(&a.resource_type)
                        .bind(&a.owner_key)
                        .bind(&a.target_key)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.db_error(op, e))?;
                }
                for (rt, owner) in unassigned {
                    sqlx::query(UNASSIGN)
                        .bind(rt)
                        .bind(owner)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.db_error(op, e))?;
                }
                tx.commit().await.map_err(|e| self.db_error(op, e))?;
            }
        }
        Ok(())
    }

    /// The links of `association` as (id1, id2) pairs.
    pub async fn link_pairs(&self, association: &str) -> Result<Vec<(i64, i64)>, StoreError> {
        const SQL: &str = "SELECT id1, id2 FROM links WHERE association = $1";
        match self.pool() {
            Pool::Sqlite(p) => {
                let mut c = p
                    .acquire()
                    .await
                    .map_err(|e| self.db_error("read links", e))?;
                crate::resources::with_rusqlite(&mut c, |conn| {
                    let mut st = conn.prepare_cached(SQL)?;
                    let rows = st.query_map([association], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect()
                })
                .await
            }
            Pool::Postgres(p) => sqlx::query_as(SQL).bind(association).fetch_all(p).await,
        }
        .map_err(|e| self.db_error("read links", e))
    }

    /// Starts a job run (state `Running`). Returns its id.
    pub async fn start_job_run(&self, job: &str, dry_run: bool) -> Result<i64, StoreError> {
        on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO job_runs (job, state, dry_run, started_at, log) VALUES ($1, 'Running', $2, $3, '') RETURNING id"
        )
        .bind(job)
        .bind(dry_run)
        .bind(crate::now())
        .fetch_one(p)
        .await)
        .map_err(|e| self.db_error("start a job run", e))
    }

    /// Appends lines to a running job's log (the server shows it live).
    pub async fn append_job_log(&self, run: i64, lines: &str) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE job_runs SET log = log || $1 WHERE id = $2"
        )
        .bind(lines)
        .bind(run)
        .execute(p)
        .await
        .map(drop))
        .map_err(|e| self.db_error("write a job log", e))
    }

    /// Ends a job run with its state and report.
    pub async fn finish_job_run(
        &self,
        run: i64,
        state: &str,
        report: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE job_runs SET state = $1, report = $2, finished_at = $3 WHERE id = $4"
        )
        .bind(state)
        .bind(report)
        .bind(crate::now())
        .bind(run)
        .execute(p)
        .await
        .map(drop))
        .map_err(|e| self.db_error("finish a job run", e))
    }

    /// Runs still marked `Running` of `job` are from a process that ended without finishing
    /// them (the caller holds the job's lock): they become `Interrupted`.
    pub async fn interrupt_stale_job_runs(&self, job: &str) -> Result<u64, StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE job_runs SET state = 'Interrupted', finished_at = $1 WHERE job = $2 AND state = 'Running'"
        )
        .bind(crate::now())
        .bind(job)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("mark interrupted job runs", e))
    }

    /// Job runs (of `job` when given), newest first, at most `limit`.
    pub async fn job_runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<JobRun>, StoreError> {
        let rows: Vec<JobRunRow> = on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE $1 IS NULL OR job = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(job)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)
        .map_err(|e| self.db_error("read job runs", e))?;
        Ok(rows.into_iter().map(job_run).collect())
    }

    /// One job run by id.
    pub async fn job_run(&self, id: i64) -> Result<Option<JobRun>, StoreError> {
        let row: Option<JobRunRow> = on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("read a job run", e))?;
        Ok(row.map(job_run))
    }
}

const JOB_RUN_COLUMNS: &str = "id, job, state, dry_run, started_at, finished_at, report, log";

type JobRunRow = (
    i64,
    String,
    String,
    bool,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    String,
);

fn job_run((id, job, state, dry_run, started_at, finished_at, report, log): JobRunRow) -> JobRun {
    JobRun {
        id,
        job,
        state,
        dry_run,
        started_at,
        finished_at,
        report,
        log,
    }
}
