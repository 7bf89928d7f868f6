//! Agents: the work queue between the server and the agents that talk to the managed systems.
//!
//! Every connection's work runs on the agent its task or connector names (see
//! [`idlink_engine::agents`]). Work for this server's embedded agent (`Local` unless
//! `--agent` says otherwise) runs in process; work for a remote agent is queued in the store
//! (`agent_tasks`) and pulled by that agent over HTTPS long polling ([`routes`]), with a lease
//! that expires: an agent that dies mid-task loses it and the task is tried once more, then
//! Errored. Tasks queued for the embedded agent (by the API, or by another server on the same
//! PostgreSQL store) are pulled by each server's [`worker`], so servers sharing a store share
//! that work, each task done once.
//!
//! The server never holds a remote agent's secrets in clear: secured values of its connections
//! are encrypted to its registered public key, and the server relays only the ciphertext.

pub mod client;
pub mod protocol;
pub mod routes;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use idlink_engine::agents::RemoteAgents;
use idlink_engine::{CancellationToken, EngineError, ErrorKind, ExportOptions, ExportReport};
use idlink_packages::api::{OrderResult, ProvisioningOrder};
use idlink_store::agents::{agent_key, task_state};
use tokio::sync::Notify;

use crate::state::AppState;
use protocol::{ExportPayload, kind};

/// How long a lease lasts without renewal (an agent renews every third of it).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Attempts of a task before it is Errored (the first, and one retry after a lost lease).
pub const MAX_ATTEMPTS: i32 = 2;
/// How long an agent session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiter looks at the store when no notification comes (work queued, or finished,
/// by another server on the same store).
pub const POLL: Duration = Duration::from_millis(500);

/// How agents are served.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The embedded agent's identifier.
    pub local_agent: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Requests per minute an agent (or an address, for enrolment and sessions) may make.
    pub rate_per_minute: u32,
    /// How long work waits for its agent to take it before it is withdrawn (Errored): a
    /// job or a request does not wait for ever on an agent that is down.
    pub claim_timeout: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            local_agent: idlink_engine::agents::LOCAL_AGENT.to_string(),
            lease: DEFAULT_LEASE,
            rate_per_minute: 1200,
            claim_timeout: Duration::from_secs(120),
        }
    }
}

/// What the agent endpoints and the queue share: wake-ups and rate limits.
#[derive(Debug, Default)]
pub struct Hub {
    /// Per agent (lower-cased): notified when work is queued for it.
    work: Mutex<HashMap<String, Arc<Notify>>>,
    /// Notified whenever a task ends.
    pub done: Notify,
    limiter: RateLimiter,
    /// When each agent's visit was last written to the store.
    seen: Mutex<HashMap<String, Instant>>,
    /// Milliseconds spent receiving each task's tables, until its result is recorded.
    uploads: Mutex<HashMap<i64, i64>>,
    /// This process, as lease holders and logs name it.
    pub instance: String,
}

impl Hub {
    pub fn new() -> Hub {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Hub {
            instance: format!("server {host}:{}", std::process::id()),
            ..Hub::default()
        }
    }

    /// The notification of work queued for `agent`.
    pub fn work_for(&self, agent: &str) -> Arc<Notify> {
        let mut map = self.work.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(agent_key(agent)).or_default())
    }

    /// Adds the time spent receiving one of task `id`'s tables.
    pub fn add_upload_time(&self, id: i64, ms: i64) {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.clear();
        }
        *map.entry(id).or_default() += ms;
    }

    /// The time spent receiving task `id`'s tables (on this server), forgotten now.
    pub fn take_upload_time(&self, id: i64) -> i64 {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&id).unwrap_or(0)
    }

    /// Whether the agent's visit should be written now (at most every 30 s per agent).
    pub fn note_visit(&self, agent: &str) -> bool {
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get(&agent_key(agent)) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(30) => false,
            _ => {
                map.insert(agent_key(agent), now);
                true
            }
        }
    }

    /// Whether `key` may make one more request this minute (`limit` per minute).
    pub fn allow(&self, key: &str, limit: u32) -> bool {
        self.limiter.allow(key, limit)
    }
}

/// Fixed one-minute windows per key.
#[derive(Debug, Default)]
struct RateLimiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    fn allow(&self, key: &str, limit: u32) -> bool {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let (start, count) = map.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= limit
    }
}

/// Queues work for `agent` and wakes it.
pub async fn queue(
    state: &AppState,
    agent: &str,
    kind: &str,
    connection: &str,
    payload: &serde_json::Value,
) -> Result<i64, idlink_store::StoreError> {
    let id = state
        .store()
        .queue_agent_task(agent, kind, connection, &payload.to_string())
        .await?;
    state.hub().work_for(agent).notify_waiters();
    Ok(id)
}

/// Waits until task `id` ends (or `cancel`); returns it.
pub async fn wait_for(
    state: &AppState,
    id: i64,
    cancel: &CancellationToken,
) -> Result<idlink_store::AgentTask, EngineError> {
    let untaken_after = tokio::time::Instant::now() + state.agent_options().claim_timeout;
    loop {
        let done = state.hub().done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        let task = state
            .store()
            .agent_task(id)
            .await?
            .ok_or_else(|| EngineError::Contract(format!("agent task {id} vanished")))?;
        if task.state == task_state::DONE || task.state == task_state::ERRORED {
            return Ok(task);
        }
        // Nobody took it: the agent is down (or never enrolled). The task is withdrawn, unless
        // the agent takes it this very instant.
        if task.state == task_state::QUEUED && tokio::time::Instant::now() >= untaken_after {
            let seen = match state.store().agent(&task.agent_key).await? {
                Some(a) => match a.last_seen {
                    Some(t) => format!("{}, last seen {}", a.state, t.to_rfc3339()),
                    None => format!("{}, never seen", a.state),
                },
                None => "not enrolled".to_string(),
            };
            let message = format!(
                "agent '{}' did not take the work within {} s ({seen}): is `idlink agent` running there?",
                task.agent_key,
                state.agent_options().claim_timeout.as_secs()
            );
            if state.store().withdraw_agent_task(id, &message).await? {
                return Err(EngineError::Agent {
                    agent: task.agent_key,
                    message,
                    kind: ErrorKind::Unavailable,
                });
            }
            continue;
        }
        tokio::select! {
            () = done => {}
            () = tokio::time::sleep(POLL) => {}
            () = cancel.cancelled() => {
                return Err(EngineError::Agent {
                    agent: task.agent_key,
                    message: format!("stopped waiting for task {id} (it goes on on the agent; its result is still accepted)"),
                    kind: ErrorKind::Cancelled,
                });
            }
        }
    }
}

/// The queue as the engine sees it: how a job's export reaches a remote agent.
#[derive(Debug, Clone)]
pub struct Remote {
    state: AppState,
}

impl Remote {
    pub fn new(state: AppState) -> Remote {
        Remote { state }
    }

    /// Queues work and waits for its end; an Errored task is an error.
    async fn run(
        &self,
        agent: &str,
        kind: &str,
        connection: &str,
        payload: &serde_json::Value,
    ) -> Result<idlink_store::AgentTask, EngineError> {
        let id = queue(&self.state, agent, kind, connection, payload).await?;
        let task = wait_for(&self.state, id, &self.state.shutdown()).await?;
        if task.state != task_state::DONE {
            return Err(EngineError::Agent {
                agent: agent.to_string(),
                message: format!(
                    "{kind} of connection '{connection}' (task {}) failed: {}",
                    task.id,
                    task.error.as_deref().unwrap_or("no reason given")
                ),
                kind: ErrorKind::Unavailable,
            });
        }
        Ok(task)
    }
}

#[async_trait]
impl RemoteAgents for Remote {
    fn local_agent(&self) -> &str {
        &self.state.agent_options().local_agent
    }

    async fn export(
        &self,
        agent: &str,
        connection: &str,
        options: &ExportOptions,
        cancel: &CancellationToken,
    ) -> Result<ExportReport, EngineError> {
        let engine = self
            .state
            .engine()
            .map_err(|e| EngineError::Data(e.to_string()))?;
        let payload = ExportPayload {
            ignore_cookies: options.ignore_cookies,
            cookie: engine.current_cookie(connection, options.ignore_cookies)?,
        };
        let payload =
            serde_json::to_value(&payload).map_err(|e| EngineError::Contract(e.to_string()))?;
        let id = queue(&self.state, agent, kind::EXPORT, connection, &payload).await?;
        let task = wait_for(&self.state, id, cancel).await?;
        finished_export(agent, &task)
    }

    async fn refresh_schema(
        &self,
        agent: &str,
        connection: &str,
    ) -> Result<idlink_packages::api::ConnectionSchema, EngineError> {
        let task = self
            .run(agent, kind::SCHEMA, connection, &serde_json::json!({}))
            .await?;
        serde_json::from_str(task.result.as_deref().unwrap_or("null")).map_err(|e| {
            EngineError::Contract(format!(
                "the schema of agent task {} cannot be read: {e}",
                task.id
            ))
        })
    }

    async fn check_connection(&self, agent: &str, connection: &str) -> Result<String, EngineError> {
        let task = self
            .run(agent, kind::CHECK, connection, &serde_json::json!({}))
            .await?;
        let v: serde_json::Value =
            serde_json::from_str(task.result.as_deref().unwrap_or("null")).unwrap_or_default();
        let message = v["message"].as_str().unwrap_or_default().to_string();
        if v["reachable"].as_bool() == Some(true) {
            Ok(message)
        } else {
            Err(EngineError::Agent {
                agent: agent.to_string(),
                message,
                kind: ErrorKind::Unavailable,
            })
        }
    }

    async fn fulfill(
        &self,
        agent: &str,
        connection: &str,
        orders: Vec<ProvisioningOrder>,
        dry_run: bool,
    ) -> Result<Vec<OrderResult>, EngineError> {
        let payload = serde_json::to_value(protocol::FulfillPayload { orders, dry_run })
            .map_err(|e| EngineError::Contract(e.to_string()))?;
        // Not sent, or sent and not answered: an error a retry may help (fulfill is idempotent).
        let task = self.run(agent, kind::FULFILL, connection, &payload).await?;
        serde_json::from_str(task.result.as_deref().unwrap_or("[]")).map_err(|e| {
            EngineError::Contract(format!(
                "the results of agent task {} cannot be read: {e}",
                task.id
            ))
        })
    }
}

/// The report of an ended export task, or its error.
pub fn finished_export(
    agent: &str,
    task: &idlink_store::AgentTask,
) -> Result<ExportReport, EngineError> {
    if task.state != task_state::DONE {
        return Err(EngineError::Agent {
            agent: agent.to_string(),
            message: format!(
                "export of connection '{}' (task {}) failed: {}",
                task.connection,
                task.id,
                task.error.as_deref().unwrap_or("no reason given")
            ),
            kind: ErrorKind::Unavailable,
        });
    }
    let text = task.result.as_deref().unwrap_or("null");
    serde_json::from_str(text).map_err(|e| {
        EngineError::Contract(format!(
            "the report of agent task {} cannot be read: {e}",
            task.id
        ))
    })
}

/// How long queued work waits for another export of the same connection to end.
pub const BUSY_WAIT: Duration = Duration::from_secs(600);

/// Exports `opened`, waiting while another export of the same connection holds its lock
/// (tasks of one connection queued back to back run one after the other, not fail).
pub async fn export_when_free(
    opened: &idlink_engine::Opened,
    options: &ExportOptions,
    cancel: &CancellationToken,
) -> Result<ExportReport, EngineError> {
    let started = Instant::now();
    loop {
        match opened
            .export(options, Arc::new(idlink_packages::api::NoProgress), cancel)
            .await
        {
            Err(EngineError::Busy { .. }) if started.elapsed() < BUSY_WAIT => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = cancel.cancelled() => {
                        return Err(EngineError::Cancelled { what: "the export", connection: opened.id().to_string() });
                    }
                }
            }
            other => return other,
        }
    }
}

/// "Check connection" of `opened`, as a task's answer: reachable or not, and what answered or
/// why not (secrets redacted).
pub async fn check_answer(opened: &idlink_engine::Opened) -> serde_json::Value {
    match opened.check_connection().await {
        Ok(m) => serde_json::json!({ "reachable": true, "message": opened.redact(&m) }),
        Err(e) => {
            serde_json::json!({ "reachable": false, "message": opened.redact(&e.to_string()) })
        }
    }
}

/// One batch of orders sent through `opened`, as a task's answer: one result per order, with
/// the connection's secrets redacted from messages and operations.
pub async fn fulfill_answer(
    opened: &idlink_engine::Opened,
    payload: protocol::FulfillPayload,
) -> Result<serde_json::Value, String> {
    let mut results = opened
        .fulfill(
            payload.orders,
            payload.dry_run,
            Arc::new(idlink_packages::api::NoProgress),
        )
        .await
        .map_err(|e| opened.redact(&e.to_string()))?;
    for r in &mut results {
        r.message = opened.redact(&r.message);
        for op in &mut r.operations {
            *op = opened.redact(op);
        }
    }
    serde_json::to_value(results).map_err(|e| e.to_string())
}
