//! Remote agents and their work queue (issue P9).
//!
//! - `agents`: each agent's age public key and its state (Pending until an administrator
//!   approves it or it enrols with a one-time token; Revoked for ever after a revocation);
//! - `agent_enrolment_tokens`: one-time tokens (their hash only), optionally bound to one agent;
//! - `agent_sessions`: the bearer tokens agents work under (their hash only), dropped on
//!   revocation;
//! - `agent_tasks`: the work queue. A task is claimed with a lease that expires; an expired
//!   lease makes the task claimable again until it was attempted `max_attempts` times, then it
//!   is Errored. A result is accepted once, and only from the lease that holds the task. On
//!   PostgreSQL the claim takes the row `FOR UPDATE SKIP LOCKED`, so any number of servers
//!   share one queue and never hand one task out twice; SQLite serializes writers.
//!
//! Lease times are epoch milliseconds, compared exactly on both backends.

use chrono::{DateTime, Utc};

use crate::{Pool, Store, StoreError, on_pool};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Whether an agent may work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Enrolled, waiting for an administrator.
    Pending,
    Approved,
    /// Refused for ever (a new enrolment under the same identifier is refused too).
    Revoked,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Pending => "Pending",
            AgentState::Approved => "Approved",
            AgentState::Revoked => "Revoked",
        }
    }

    fn parse(s: &str) -> AgentState {
        match s {
            "Approved" => AgentState::Approved,
            "Revoked" => AgentState::Revoked,
            _ => AgentState::Pending,
        }
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The identifier as it enrolled.
    pub agent: String,
    /// Its age public key (`age1…`): secured values of its connections are encrypted to it.
    pub public_key: String,
    pub state: AgentState,
    pub enrolled_at: DateTime<Utc>,
    /// Who approved or revoked it (`enrolment token` for a token).
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// What an enrolment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolment {
    /// A new agent (Pending, or Approved with a token).
    Created(AgentRecord),
    /// The agent was already enrolled with this key (approved now when a token came).
    Known(AgentRecord),
    /// The identifier is enrolled with another key: refused.
    OtherKey(AgentRecord),
}

/// States of a work item.
pub mod task_state {
    pub const QUEUED: &str = "Queued";
    pub const LEASED: &str = "Leased";
    pub const DONE: &str = "Done";
    pub const ERRORED: &str = "Errored";
}

/// A work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTask {
    pub id: i64,
    /// The agent it is for (lower-cased identifier).
    pub agent_key: String,
    /// `export`, `schema`, `check`, `fulfill`.
    pub kind: String,
    pub connection: String,
    /// What the agent needs to do it (JSON).
    pub payload: String,
    pub state: String,
    pub attempts: i32,
    pub lease_id: Option<String>,
    pub lease_expires_ms: Option<i64>,
    /// Who holds (or last held) the lease: an agent session or a server's embedded agent.
    pub leased_by: Option<String>,
    /// The agent's answer (JSON) when Done.
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_ms: i64,
    /// When the last attempt claimed it.
    pub claimed_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Milliseconds the server spent on it (receiving its tables, committing its result).
    pub server_ms: i64,
}

type TaskRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i32,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

const TASK_COLUMNS: &str = "id, agent_key, kind, connection, payload, state, attempts, lease_id, \
     lease_expires_ms, leased_by, result, error, created_ms, claimed_ms, finished_ms, server_ms";

fn task(r: TaskRow) -> AgentTask {
    AgentTask {
        id: r.0,
        agent_key: r.1,
        kind: r.2,
        connection: r.3,
        payload: r.4,
        state: r.5,
        attempts: r.6,
        lease_id: r.7,
        lease_expires_ms: r.8,
        leased_by: r.9,
        result: r.10,
        error: r.11,
        created_ms: r.12,
        claimed_ms: r.13,
        finished_ms: r.14,
        server_ms: r.15,
    }
}

type AgentRow = (
    String,
    String,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

const AGENT_COLUMNS: &str =
    "agent, public_key, state, enrolled_at, decided_by, decided_at, last_seen";

fn agent(r: AgentRow) -> AgentRecord {
    AgentRecord {
        agent: r.0,
        public_key: r.1,
        state: AgentState::parse(&r.2),
        enrolled_at: r.3,
        decided_by: r.4,
        decided_at: r.5,
        last_seen: r.6,
    }
}

/// Agent identifiers compare case-insensitively.
pub fn agent_key(agent: &str) -> String {
    agent.to_ascii_lowercase()
}

impl Store {
    /// The agent `agent`, if it ever enrolled.
    pub async fn agent(&self, agent: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row: Option<AgentRow> = on_pool!(self, p => sqlx::query_as(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE agent_key = $1")
        )
        .bind(agent_key(agent))
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("read an agent", e))?;
        Ok(row.map(self::agent))
    }

    /// Every enrolled agent, by identifier.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows: Vec<AgentRow> = on_pool!(self, p => sqlx::query_as(
            &format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY agent_key")
        )
        .fetch_all(p)
        .await)
        .map_err(|e| self.db_error("list agents", e))?;
        Ok(rows.into_iter().map(agent).collect())
    }

    /// Enrols `agent` with `public_key`: Pending, or Approved when `approved_by` says who
    /// vouched (a valid enrolment token). An identifier already enrolled with another key is
    /// refused ([`Enrolment::OtherKey`]); a revoked one stays revoked.
    pub async fn enrol_agent(
        &self,
        agent: &str,
        public_key: &str,
        approved_by: Option<&str>,
    ) -> Result<Enrolment, StoreError> {
        let now = crate::now();
        let state = if approved_by.is_some() {
            AgentState::Approved
        } else {
            AgentState::Pending
        };
        let inserted = on_pool!(self, p => sqlx::query(
            "INSERT INTO agents (agent_key, agent, public_key, state, enrolled_at, decided_by, decided_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (agent_key) DO NOTHING"
        )
        .bind(agent_key(agent))
        .bind(agent)
        .bind(public_key)
        .bind(state.as_str())
        .bind(now)
        .bind(approved_by)
        .bind(approved_by.map(|_| now))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("enrol an agent", e))?;
        let found = self
            .agent(agent)
            .await?
            .ok_or_else(|| StoreError::Database {
                store: self.location().to_string(),
                operation: "enrol an agent",
                message: "the agent enrolled is not found".into(),
                kind: crate::ErrorKind::Bug,
            })?;
        if inserted == 1 {
            return Ok(Enrolment::Created(found));
        }
        if found.public_key != public_key {
            return Ok(Enrolment::OtherKey(found));
        }
        if let (Some(by), AgentState::Pending) = (approved_by, found.state) {
            self.decide_agent(agent, AgentState::Approved, by).await?;
            let approved = self.agent(agent).await?.unwrap_or(found);
            return Ok(Enrolment::Known(approved));
        }
        Ok(Enrolment::Known(found))
    }

    /// Approves or revokes an agent (a revoked agent is never approved again: it enrols under a
    /// new identifier). Revoking drops its sessions and ends its leases (their
    /// tasks are Errored when their leases expire with the attempts spent). `false` when no such
    /// agent, or when a revoked agent was to be approved.
    pub async fn decide_agent(
        &self,
        agent: &str,
        state: AgentState,
        by: &str,
    ) -> Result<bool, StoreError> {
        let key = agent_key(agent);
        let changed = on_pool!(self, p => sqlx::query(
            "UPDATE agents SET state = $1, decided_by = $2, decided_at = $3 \
             WHERE agent_key = $4 AND (state <> 'Revoked' OR $1 = 'Revoked')"
        )
        .bind(state.as_str())
        .bind(by)
        .bind(crate::now())
        .bind(&key)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("change an agent's state", e))?;
        if state == AgentState::Revoked {
            on_pool!(self, p => sqlx::query("DELETE FROM agent_sessions WHERE agent_key = $1")
                .bind(&key)
                .execute(p)
        .await
        .map(|r| r.rows_affected()))
            .map_err(|e| self.db_error("drop an agent's sessions", e))?;
        }
        Ok(changed == 1)
    }

    /// Gives a Pending agent another key and approves it: an enrolment that carries a valid
    /// one-time token replaces an unapproved enrolment (someone may have enrolled the
    /// identifier first). `false` when the agent is not Pending.
    pub async fn replace_pending_agent(
        &self,
        agent: &str,
        public_key: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE agents SET public_key = $1, state = 'Approved', decided_by = $2, decided_at = $3 \
             WHERE agent_key = $4 AND state = 'Pending'"
        )
        .bind(public_key)
        .bind(by)
        .bind(crate::now())
        .bind(agent_key(agent))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("replace an agent's key", e))?;
        Ok(n == 1)
    }

    /// Records that the agent was heard from.
    pub async fn agent_seen(&self, agent: &str) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("UPDATE agents SET last_seen = $1 WHERE agent_key = $2")
            .bind(crate::now())
            .bind(agent_key(agent))
            .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("record an agent's visit", e))?;
        Ok(())
    }

    /// Stores a one-time enrolment token (its hash), for `agent` only when given.
    pub async fn create_enrolment_token(
        &self,
        token_hash: &str,
        agent: Option<&str>,
        created_by: &str,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO agent_enrolment_tokens (token_hash, agent_key, created_by, expires_ms) \
             VALUES ($1, $2, $3, $4)"
        )
        .bind(token_hash)
        .bind(agent.map(agent_key))
        .bind(created_by)
        .bind(expires_ms)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("create an enrolment token", e))?;
        Ok(())
    }

    /// Uses a one-time enrolment token for `agent`: `Some(creator)` when the token was valid
    /// (unused, unexpired, for this agent or any), and it is spent now; `None` otherwise.
    pub async fn use_enrolment_token(
        &self,
        token_hash: &str,
        agent: &str,
    ) -> Result<Option<String>, StoreError> {
        let by: Option<String> = on_pool!(self, p => sqlx::query_scalar(
            "UPDATE agent_enrolment_tokens SET used_at = $1, used_by = $2 \
             WHERE token_hash = $3 AND used_at IS NULL AND expires_ms > $4 \
             AND (agent_key IS NULL OR agent_key = $5) RETURNING created_by"
        )
        .bind(crate::now())
        .bind(agent)
        .bind(token_hash)
        .bind(now_ms())
        .bind(agent_key(agent))
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("use an enrolment token", e))?;
        Ok(by)
    }

    /// Stores an agent session (the token's hash).
    pub async fn create_agent_session(
        &self,
        token_hash: &str,
        agent: &str,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO agent_sessions (token_hash, agent_key, expires_ms) VALUES ($1, $2, $3)"
        )
        .bind(token_hash)
        .bind(agent_key(agent))
        .bind(expires_ms)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("create an agent session", e))?;
        Ok(())
    }

    /// The approved agent a session token (its hash) belongs to, when the session is alive.
    pub async fn agent_session(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, p => sqlx::query_scalar(
            "SELECT a.agent FROM agent_sessions s JOIN agents a ON a.agent_key = s.agent_key \
             WHERE s.token_hash = $1 AND s.expires_ms > $2 AND a.state = 'Approved'"
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("read an agent session", e))
    }

    /// Queues a work item for `agent`; returns its id.
    pub async fn queue_agent_task(
        &self,
        agent: &str,
        kind: &str,
        connection: &str,
        payload: &str,
    ) -> Result<i64, StoreError> {
        on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO agent_tasks (agent_key, kind, connection, payload, state, created_ms) \
             VALUES ($1, $2, $3, $4, 'Queued', $5) RETURNING id"
        )
        .bind(agent_key(agent))
        .bind(kind)
        .bind(connection)
        .bind(payload)
        .bind(now_ms())
        .fetch_one(p)
        .await)
        .map_err(|e| self.db_error("queue agent work", e))
    }

    /// Ends, as Errored, the leased tasks whose lease expired after their last attempt; returns
    /// how many.
    pub async fn expire_agent_leases(&self, max_attempts: i32) -> Result<u64, StoreError> {
        let now = now_ms();
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE agent_tasks SET state = 'Errored', finished_ms = $1, \
             error = 'the agent working on it stopped answering (its lease expired) on every attempt' \
             WHERE state = 'Leased' AND lease_expires_ms < $1 AND attempts >= $2"
        )
        .bind(now)
        .bind(max_attempts)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("expire agent leases", e))?;
        Ok(n)
    }

    /// Claims the oldest task of `agent` that is queued, or whose lease expired with attempts
    /// left: it is leased to `lease_id` (held by `holder`) for `lease_ms`. `None` when there is
    /// nothing to do. Two claimers never get one task (PostgreSQL: `FOR UPDATE SKIP LOCKED`;
    /// SQLite: one writer at a time). `asked_ms`: when the claimer started asking (a long
    /// poll's start); from the later of that and the task's creation to now is the server's
    /// dispatch time, added to the task's `server_ms` on its first claim.
    pub async fn claim_agent_task(
        &self,
        agent: &str,
        lease_id: &str,
        holder: &str,
        lease_ms: i64,
        max_attempts: i32,
        asked_ms: i64,
    ) -> Result<Option<AgentTask>, StoreError> {
        let now = now_ms();
        // Most polls find nothing: look first, without taking SQLite's write lock.
        let (claimable, spent): (bool, bool) = on_pool!(self, p => sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM agent_tasks WHERE agent_key = $1 \
               AND (state = 'Queued' OR (state = 'Leased' AND lease_expires_ms < $2))), \
             EXISTS (SELECT 1 FROM agent_tasks WHERE state = 'Leased' \
               AND lease_expires_ms < $2 AND attempts >= $3)"
        )
        .bind(agent_key(agent))
        .bind(now)
        .bind(max_attempts)
        .fetch_one(p)
        .await)
        .map_err(|e| self.db_error("look for agent work", e))?;
        if spent {
            self.expire_agent_leases(max_attempts).await?;
        }
        if !claimable {
            return Ok(None);
        }
        let pick = "SELECT id FROM agent_tasks WHERE agent_key = $1 \
             AND (state = 'Queued' OR (state = 'Leased' AND lease_expires_ms < $2 AND attempts < $3)) \
             ORDER BY id LIMIT 1";
        let sql = |lock: &str, max: &str| {
            format!(
                "UPDATE agent_tasks SET state = 'Leased', attempts = attempts + 1, lease_id = $4, \
                 lease_expires_ms = $5, leased_by = $6, claimed_ms = $2, \
                 server_ms = server_ms + CASE WHEN attempts = 0 THEN $2 - {max}(created_ms, $7) ELSE 0 END \
                 WHERE id = ({pick}{lock}) RETURNING {TASK_COLUMNS}"
            )
        };
        let key = agent_key(agent);
        let row: Option<TaskRow> = match self.pool() {
            Pool::Sqlite(p) => {
                sqlx::query_as(&sql("", "MAX"))
                    .bind(&key)
                    .bind(now)
                    .bind(max_attempts)
                    .bind(lease_id)
                    .bind(now + lease_ms)
                    .bind(holder)
                    .bind(asked_ms.min(now))
                    .fetch_optional(p)
                    .await
            }
            Pool::Postgres(p) => {
                sqlx::query_as(&sql(" FOR UPDATE SKIP LOCKED", "GREATEST"))
                    .bind(&key)
                    .bind(now)
                    .bind(max_attempts)
                    .bind(lease_id)
                    .bind(now + lease_ms)
                    .bind(holder)
                    .bind(asked_ms.min(now))
                    .fetch_optional(p)
                    .await
            }
        }
        .map_err(|e| self.db_error("claim agent work", e))?;
        Ok(row.map(task))
    }

    /// Ends a task nobody took yet as Errored with `message`; `false` when it was taken (or
    /// ended) meanwhile.
    pub async fn withdraw_agent_task(&self, id: i64, message: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE agent_tasks SET state = 'Errored', error = $1, finished_ms = $2 \
             WHERE id = $3 AND state = 'Queued'"
        )
        .bind(message)
        .bind(now_ms())
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("withdraw agent work", e))?;
        Ok(n == 1)
    }

    /// Extends the lease `lease_id` of task `id`; `false` when that lease no longer holds it.
    pub async fn renew_agent_lease(
        &self,
        id: i64,
        lease_id: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE agent_tasks SET lease_expires_ms = $1 \
             WHERE id = $2 AND lease_id = $3 AND state = 'Leased'"
        )
        .bind(now_ms() + lease_ms)
        .bind(id)
        .bind(lease_id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("renew an agent lease", e))?;
        Ok(n == 1)
    }

    /// Whether lease `lease_id` holds task `id` now (leased, not expired).
    pub async fn agent_lease_holds(&self, id: i64, lease_id: &str) -> Result<bool, StoreError> {
        let n: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT id FROM agent_tasks WHERE id = $1 AND lease_id = $2 AND state = 'Leased' \
             AND lease_expires_ms >= $3"
        )
        .bind(id)
        .bind(lease_id)
        .bind(now_ms())
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("read an agent lease", e))?;
        Ok(n.is_some())
    }

    /// Records the answer of the lease `lease_id` for task `id`: Done with `result`, or Errored
    /// with `error`. Accepted once: `false` when the task is not leased to `lease_id` any more
    /// (another attempt holds it, or it already has its answer).
    pub async fn finish_agent_task(
        &self,
        id: i64,
        lease_id: &str,
        outcome: Result<&str, &str>,
    ) -> Result<bool, StoreError> {
        self.finish_agent_task_timed(id, lease_id, outcome, 0, None)
            .await
    }

    /// [`Store::finish_agent_task`], adding `server_ms` to the server's time on the task.
    pub async fn finish_agent_task_timed(
        &self,
        id: i64,
        lease_id: &str,
        outcome: Result<&str, &str>,
        server_ms: i64,
        audit: Option<crate::audit::NewAuditEntry<'_>>,
    ) -> Result<bool, StoreError> {
        // An agent's error says what a managed system said, which may hold NUL characters:
        // PostgreSQL refuses them in text (and with them the answer), so they are kept as
        // U+FFFD on both stores. A result is JSON text, where serde escapes them.
        let (state, result, error) = match outcome {
            Ok(r) => (task_state::DONE, Some(r), None),
            Err(e) if e.contains('\0') => (
                task_state::ERRORED,
                None,
                Some(std::borrow::Cow::Owned(e.replace('\0', "\u{FFFD}"))),
            ),
            Err(e) => (
                task_state::ERRORED,
                None,
                Some(std::borrow::Cow::Borrowed(e)),
            ),
        };
        // The answer and its audit entry in one transaction: one write lock, not two.
        let n = on_pool!(self, p => async {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "UPDATE agent_tasks SET state = $1, result = $2, error = $3, finished_ms = $4, \
                 server_ms = server_ms + $7 WHERE id = $5 AND lease_id = $6 AND state = 'Leased'"
            )
            .bind(state)
            .bind(result)
            .bind(error.as_deref())
            .bind(now_ms())
            .bind(id)
            .bind(lease_id)
            .bind(server_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1
                && let Some(a) = &audit
            {
                sqlx::query(
                    "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(crate::now())
                .bind(a.actor)
                .bind(a.action)
                .bind(a.target)
                .bind(a.detail)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(n)
        }
        .await)
        .map_err(|e| self.db_error("record agent work's result", e))?;
        Ok(n == 1)
    }

    /// One task.
    pub async fn agent_task(&self, id: i64) -> Result<Option<AgentTask>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM agent_tasks WHERE id = $1");
        let row: Option<TaskRow> = on_pool!(self, p => sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(|e| self.db_error("read agent work", e))?;
        Ok(row.map(task))
    }

    /// The latest `limit` tasks, newest first (of one agent when given).
    pub async fn agent_tasks(
        &self,
        agent: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AgentTask>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM agent_tasks WHERE ($1 IS NULL OR agent_key = $1) \
             ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<TaskRow> = on_pool!(self, p => sqlx::query_as(&sql)
            .bind(agent.map(agent_key))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
        .map_err(|e| self.db_error("list agent work", e))?;
        Ok(rows.into_iter().map(task).collect())
    }
}
