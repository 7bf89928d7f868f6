//! The agent endpoints (`/api/agent/…`, see [`super::protocol`]) and the administrators'
//! routes over agents (`/api/agents`, enrolment tokens, the queue).
//!
//! Agent endpoints authenticate agents, not users: enrolment proves nothing but is answered
//! with Pending (or Approved with a one-time token); a session token is only ever sent
//! encrypted to the agent's registered key; every later call carries it as a bearer token,
//! and names only the agent's own work (another agent's task is refused, 403). Over plain
//! HTTP they answer loopback clients only (TLS is required for remote agents). Each agent,
//! and each address for enrolment and sessions, is held to a number of requests per minute.

use std::io::Write as _;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use idlink_store::agents::{agent_key, now_ms, task_state};
use idlink_store::{AgentState, Enrolment};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::protocol::{
    AgentConfiguration, ConfigFile, Enrol, Enrolled, ExportResult, HASH_HEADER, Lease,
    SessionGranted, SessionRequest, TaskResult, WorkItem, kind,
};
use super::{MAX_ATTEMPTS, MAX_WAIT, SESSION_LIFETIME};
use crate::api::ApiRouter;
use crate::auth::{User, random_token, token_hash};
use crate::error::AppError;
use crate::state::AppState;
use crate::tls::ClientAddr;

/// The largest table an agent may send, uncompressed.
pub const MAX_TABLE_BYTES: u64 = 16 << 30;

/// The agent endpoints and the administrators' routes (documented in the OpenAPI document).
pub fn api_routes(r: ApiRouter) -> ApiRouter {
    r.add(Method::POST, "/api/agent/enrol", post(enrol))
        .add(Method::POST, "/api/agent/session", post(session))
        .add(Method::GET, "/api/agent/configuration", get(configuration))
        .add(Method::GET, "/api/agent/work", get(work))
        .add(Method::POST, "/api/agent/tasks/{task}/renew", post(renew))
        // A batch of orders' outcomes or a schema can pass 1 MiB.
        .add_large(Method::POST, "/api/agent/tasks/{task}/result", post(result))
        .add(Method::GET, "/api/agents", get(list_agents))
        .add(Method::POST, "/api/agents/{agent}/approve", post(approve))
        .add(Method::POST, "/api/agents/{agent}/revoke", post(revoke))
        .add(Method::POST, "/api/agent-tokens", post(create_token))
        .add(Method::GET, "/api/agent-tasks", get(list_tasks))
        .add(Method::POST, "/api/agent-tasks", post(queue_task))
        .add(Method::GET, "/api/agent-tasks/{task}", get(get_task))
}

/// The Agents page and its forms.
pub fn ui_routes() -> Router<AppState> {
    Router::new()
        .route("/agents", get(agents_page))
        .route("/agents/{agent}/approve", post(approve_form))
        .route("/agents/{agent}/revoke", post(revoke_form))
        .route("/agents/tokens", post(token_form))
}

/// The table upload, outside the 1 MiB body limit of every other route (its size is bounded
/// by [`MAX_TABLE_BYTES`] after decompression).
pub fn upload_routes() -> Router<AppState> {
    Router::new().route("/api/agent/tasks/{task}/tables/{table}", put(upload_table))
}

/// The upload route as the OpenAPI test sees it.
pub const UPLOAD_ROUTE: (Method, &str) = (Method::PUT, "/api/agent/tasks/{task}/tables/{table}");

fn too_many() -> AppError {
    AppError::TooManyRequests(60)
}

/// The client's address, when the server was started with it (`idlink serve`); an app driven
/// in process (tests) has none.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<ConnectInfo<ClientAddr>>()
                .map(|c| c.0.0),
        ))
    }
}

impl Client {
    fn key(&self) -> String {
        self.0
            .map_or_else(|| "in-process".into(), |a| a.ip().to_string())
    }
}

/// Plain HTTP is for loopback agents only.
fn require_tls_or_loopback(state: &AppState, client: Client) -> Result<(), AppError> {
    if state.secure_cookies() || client.0.is_none_or(|a| a.ip().is_loopback()) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "agents connect over HTTPS: start the server with --tls-cert and --tls-key".into(),
        ))
    }
}

fn valid_agent_id(id: &str) -> Result<(), AppError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!(
            "'{id}' is not an agent identifier: a letter, then up to 63 letters, digits, '-' or '.'"
        )))
    }
}

/// The agent declared in the running configuration under `id` (its spelling there).
fn declared_agent(state: &AppState, id: &str) -> Result<String, AppError> {
    let engine = state.engine()?;
    engine
        .checked()
        .config
        .agents
        .iter()
        .find(|a| a.id.value.eq_ignore_ascii_case(id))
        .map(|a| a.id.value.clone())
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "agent '{id}' is not declared in the configuration: add <Agent Identifier=\"{id}\" …/> and name it in the Agent attribute of its connectors"
            ))
        })
}

/// Over TLS or from loopback, and within `per_minute` requests of `what` from the client's
/// address (and the agents' overall rate).
fn admit(state: &AppState, client: Client, what: &str, per_minute: u32) -> Result<(), AppError> {
    require_tls_or_loopback(state, client)?;
    let limit = state.agent_options().rate_per_minute.min(per_minute);
    if state
        .hub()
        .allow(&format!("{what}:{}", client.key()), limit)
    {
        Ok(())
    } else {
        Err(too_many())
    }
}

/// Spends one-time enrolment token `token` for `agent`: who vouched, or the refusal (audited).
async fn spend_token(state: &AppState, agent: &str, token: &str) -> Result<String, AppError> {
    let store = state.store();
    match store
        .use_enrolment_token(&token_hash(token.trim()), agent)
        .await?
    {
        Some(creator) => Ok(format!("enrolment token of {creator}")),
        None => {
            store
                .audit(
                    &format!("agent {agent}"),
                    "agent-enrol",
                    agent,
                    "refused: the enrolment token is not valid",
                )
                .await?;
            Err(AppError::Forbidden(
                "the enrolment token is not valid: unknown, already used, expired, or for another agent; ask an administrator for a new one".into(),
            ))
        }
    }
}

/// The refusal of an enrolment under another key than the agent's (audited).
async fn other_key(state: &AppState, agent: &str) -> Result<AppError, AppError> {
    state
        .store()
        .audit(
            &format!("agent {agent}"),
            "agent-enrol",
            agent,
            "refused: enrolled already with another key",
        )
        .await?;
    Ok(AppError::Engine {
        kind: idlink_engine::ErrorKind::Configuration,
        not_found: false,
        message: format!(
            "agent '{agent}' is enrolled with another key: use that key, or have an administrator revoke it and enrol under a new identifier"
        ),
    })
}

async fn enrol(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<Enrol>,
) -> Result<Json<Enrolled>, AppError> {
    admit(&state, client, "enrol", 60)?;
    valid_agent_id(&req.agent)?;
    let agent = declared_agent(&state, &req.agent)?;
    idlink_secrets::parse_recipient(req.public_key.trim()).map_err(|e| {
        AppError::BadRequest(format!("the public key is not an age public key: {e}"))
    })?;
    if agent.eq_ignore_ascii_case(&state.agent_options().local_agent) {
        return Err(AppError::Forbidden(format!(
            "agent '{agent}' is this server's embedded agent: a remote agent enrols under its own identifier"
        )));
    }
    let store = state.store();
    let public_key = req.public_key.trim();
    // An agent enrolled already: its key decides; a token is spent only when it changes
    // something (a Pending agent approved).
    let existing = store.agent(&agent).await?;
    if let Some(e) = &existing {
        // An unapproved enrolment under another key (someone enrolled the identifier first)
        // gives way to an enrolment with a valid one-time token.
        if e.public_key != public_key
            && e.state == AgentState::Pending
            && let Some(t) = &req.token
        {
            let by = spend_token(&state, &agent, t).await?;
            if store.replace_pending_agent(&agent, public_key, &by).await? {
                store
                    .audit(
                        &format!("agent {agent}"),
                        "agent-enrol",
                        &agent,
                        &format!("the pending enrolment's key replaced, approved by {by}"),
                    )
                    .await?;
                return Ok(Json(Enrolled {
                    agent,
                    state: AgentState::Approved.to_string(),
                    message: "approved: the agent may work".into(),
                }));
            }
        }
        if e.public_key != public_key {
            return Err(other_key(&state, &agent).await?);
        }
        if e.state == AgentState::Revoked {
            return Err(AppError::Forbidden(format!(
                "agent '{agent}' was revoked; it enrols again only under a new identifier"
            )));
        }
    }
    let wants_token = existing
        .as_ref()
        .is_none_or(|e| e.state == AgentState::Pending);
    let approved_by = match &req.token {
        Some(t) if wants_token => Some(spend_token(&state, &agent, t).await?),
        _ => None,
    };
    let outcome = store
        .enrol_agent(&agent, public_key, approved_by.as_deref())
        .await?;
    let (record, new) = match outcome {
        Enrolment::Created(r) => (r, true),
        Enrolment::Known(r) => (r, false),
        // Enrolled meanwhile, by another request.
        Enrolment::OtherKey(_) => return Err(other_key(&state, &agent).await?),
    };
    let message = match record.state {
        AgentState::Approved => "approved: the agent may work".to_string(),
        AgentState::Pending => {
            "enrolled: waiting for an administrator to approve it (Agents page)".to_string()
        }
        AgentState::Revoked => {
            return Err(AppError::Forbidden(format!(
                "agent '{agent}' was revoked; it enrols again only under a new identifier"
            )));
        }
    };
    if new || approved_by.is_some() {
        let detail = match &approved_by {
            Some(by) => format!("enrolled, approved by {by}"),
            None => "enrolled, waiting for approval".to_string(),
        };
        store
            .audit(&format!("agent {agent}"), "agent-enrol", &agent, &detail)
            .await?;
    }
    Ok(Json(Enrolled {
        agent,
        state: record.state.to_string(),
        message,
    }))
}

async fn session(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<SessionRequest>,
) -> Result<Json<SessionGranted>, AppError> {
    admit(&state, client, "session", 120)?;
    valid_agent_id(&req.agent)?;
    let Some(record) = state.store().agent(&req.agent).await? else {
        return Err(AppError::Forbidden(format!(
            "agent '{}' is not enrolled: run `idlink agent` with its key to enrol it",
            req.agent
        )));
    };
    match record.state {
        AgentState::Approved => {}
        AgentState::Pending => {
            return Err(AppError::Forbidden(format!(
                "agent '{}' waits for an administrator's approval",
                record.agent
            )));
        }
        AgentState::Revoked => {
            return Err(AppError::Forbidden(format!(
                "agent '{}' was revoked",
                record.agent
            )));
        }
    }
    let recipient = idlink_secrets::parse_recipient(&record.public_key)
        .map_err(|e| AppError::Internal(format!("the agent's stored key: {e}")))?;
    let token = random_token();
    let sealed = idlink_secrets::encrypt_value(&recipient, &token)
        .map_err(|e| AppError::Internal(format!("cannot seal a session: {e}")))?;
    state
        .store()
        .create_agent_session(
            &token_hash(&token),
            &record.agent,
            now_ms() + i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(i64::MAX),
        )
        .await?;
    state.store().agent_seen(&record.agent).await?;
    Ok(Json(SessionGranted {
        sealed_token: sealed,
        expires_in_secs: SESSION_LIFETIME.as_secs(),
    }))
}

/// An approved agent with a live session.
#[derive(Debug, Clone)]
pub struct AgentPrincipal(pub String);

impl FromRequestParts<AppState> for AgentPrincipal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let reject = |e: AppError| crate::ui::error_response(true, e);
        let client = Client::from_request_parts(parts, state)
            .await
            .unwrap_or(Client(None));
        require_tls_or_loopback(state, client).map_err(reject)?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| reject(AppError::Unauthorized))?;
        let agent = state
            .store()
            .agent_session(&token_hash(token.trim()))
            .await
            .map_err(|e| reject(e.into()))?
            .ok_or_else(|| reject(AppError::Unauthorized))?;
        let limit = state.agent_options().rate_per_minute;
        if !state
            .hub()
            .allow(&format!("agent:{}", agent_key(&agent)), limit)
        {
            return Err(reject(too_many()));
        }
        Ok(AgentPrincipal(agent))
    }
}

/// The version of the running configuration agents work under.
pub fn config_version(state: &AppState) -> String {
    state
        .running()
        .loaded_at
        .map_or_else(|| "none".into(), |t| t.to_rfc3339())
}

/// Keeps, in a settings document, only the connections of `keep`; drops `EncryptionIdentity`
/// (the agent names its own key).
fn only_connections(mut doc: Value, keep: &dyn Fn(&str) -> bool) -> Value {
    if let Value::Object(top) = &mut doc {
        top.retain(|k, _| !k.eq_ignore_ascii_case("EncryptionIdentity"));
        for (k, v) in top.iter_mut() {
            if k.eq_ignore_ascii_case("Connections")
                && let Value::Object(conns) = v
            {
                conns.retain(|id, _| keep(id));
            }
        }
    }
    doc
}

fn read_jsonc(path: &FsPath) -> Result<Option<Value>, AppError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AppError::Internal(format!("{}: {e}", path.display()))),
    };
    jsonc_parser::parse_to_serde_value(&text, &Default::default())
        .map_err(|e| AppError::Internal(format!("{}: {e}", path.display())))
}

async fn configuration(
    State(state): State<AppState>,
    AgentPrincipal(agent): AgentPrincipal,
) -> Result<Json<AgentConfiguration>, AppError> {
    let engine = state.engine()?;
    let paths = state.paths().clone();
    // This agent's connections: those of the connectors that name it (as
    // `Engine::remote_agent_of` decides, looked up once per connector, not per connection).
    let config = &engine.checked().config;
    let its_connectors: std::collections::HashSet<String> = config
        .connectors
        .iter()
        .filter(|k| {
            k.agent
                .as_ref()
                .is_some_and(|a| a.value.eq_ignore_ascii_case(&agent))
        })
        .map(|k| k.id.value.to_ascii_lowercase())
        .collect();
    let mine: std::collections::HashSet<String> = config
        .connections
        .iter()
        .filter(|c| its_connectors.contains(&c.connector.value.to_ascii_lowercase()))
        .map(|c| c.id.value.to_ascii_lowercase())
        .collect();
    let version = config_version(&state);
    let built = tokio::task::spawn_blocking(move || -> Result<AgentConfiguration, AppError> {
        let mut files = Vec::new();
        let list = idlink_model::xml::config_files(&paths.config_dir)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        for f in list {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| AppError::Internal(format!("{}: {e}", f.display())))?;
            let name = f
                .strip_prefix(&paths.config_dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            files.push(ConfigFile { name, text });
        }
        let keep = |id: &str| mine.contains(&id.to_ascii_lowercase());
        let settings_file = paths.settings_file();
        let settings = read_jsonc(&settings_file)?
            .map(|d| only_connections(d, &keep))
            .unwrap_or_else(|| json!({ "Connections": {} }));
        let encrypted = read_jsonc(
            &settings_file.with_file_name(idlink_model::settings::ENCRYPTED_SETTINGS_FILE),
        )?
        .map(|d| only_connections(d, &keep));
        Ok(AgentConfiguration {
            version,
            files,
            settings,
            encrypted,
        })
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(Json(built))
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    /// Seconds to wait for work.
    wait: Option<u64>,
}

async fn work(
    State(state): State<AppState>,
    AgentPrincipal(agent): AgentPrincipal,
    Query(q): Query<WaitQuery>,
) -> Result<Response, AppError> {
    let asked = now_ms();
    let wait = Duration::from_secs(q.wait.unwrap_or(25)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let lease_ms = i64::try_from(state.agent_options().lease.as_millis()).unwrap_or(30_000);
    let notify = state.hub().work_for(&agent);
    let stop = state.shutdown();
    if state.hub().note_visit(&agent) {
        let _ = state.store().agent_seen(&agent).await;
    }
    loop {
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let lease = random_token();
        if let Some(task) = state
            .store()
            .claim_agent_task(
                &agent,
                &lease,
                &format!("agent {agent}"),
                lease_ms,
                MAX_ATTEMPTS,
                asked,
            )
            .await?
        {
            let payload: Value = serde_json::from_str(&task.payload).unwrap_or(Value::Null);
            return Ok(Json(WorkItem {
                id: task.id,
                lease,
                lease_expires_ms: task.lease_expires_ms.unwrap_or_default(),
                kind: task.kind,
                connection: task.connection,
                attempt: task.attempts,
                config_version: config_version(&state),
                payload,
            })
            .into_response());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep((deadline - now).min(super::POLL)) => {}
            () = stop.cancelled() => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}

/// Task `id`, when it is `agent`'s (403 for another agent's task, 404 for none).
async fn own_task(
    state: &AppState,
    agent: &str,
    id: i64,
) -> Result<idlink_store::AgentTask, AppError> {
    let task = state
        .store()
        .agent_task(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("there is no agent task {id}")))?;
    if task.agent_key != agent_key(agent) {
        let _ = state
            .store()
            .audit(
                &format!("agent {agent}"),
                "agent-refused",
                &format!("task {id}"),
                "refused: the task is another agent's",
            )
            .await;
        return Err(AppError::Forbidden(format!(
            "task {id} is not agent '{agent}''s work"
        )));
    }
    Ok(task)
}

/// Whether lease `lease` holds `task` now (the row read once per request).
fn lease_holds(task: &idlink_store::AgentTask, lease: &str) -> bool {
    task.state == task_state::LEASED
        && task.lease_id.as_deref() == Some(lease)
        && task.lease_expires_ms.is_some_and(|e| e >= now_ms())
}

fn lease_lost(id: i64) -> AppError {
    AppError::Engine {
        kind: idlink_engine::ErrorKind::Configuration,
        not_found: false,
        message: format!(
            "task {id} is not leased to this attempt any more (its lease expired and it was handed out again, or it already has its result)"
        ),
    }
}

async fn renew(
    State(state): State<AppState>,
    AgentPrincipal(agent): AgentPrincipal,
    Path(id): Path<i64>,
    Json(l): Json<Lease>,
) -> Result<Json<Value>, AppError> {
    own_task(&state, &agent, id).await?;
    let lease_ms = i64::try_from(state.agent_options().lease.as_millis()).unwrap_or(30_000);
    if !state
        .store()
        .renew_agent_lease(id, &l.lease, lease_ms)
        .await?
    {
        return Err(lease_lost(id));
    }
    Ok(Json(json!({ "leaseExpiresMs": now_ms() + lease_ms })))
}

/// Where attempt `lease` of task `id` receives its tables.
fn received_dir(
    state: &AppState,
    connection: &str,
    id: i64,
    lease: &str,
) -> Result<PathBuf, AppError> {
    let engine = state.engine()?;
    // The lease is a URL-safe token: keep letters and digits only in the folder's name.
    let label: String = lease
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    Ok(engine.received_dir(connection, &format!("task{id}-{label}")))
}

/// Removes what every attempt of task `id` received (an earlier attempt whose agent died
/// mid-upload left its folder).
fn remove_received(state: &AppState, connection: &str, id: i64) {
    let Ok(any) = received_dir(state, connection, id, "") else {
        return;
    };
    let (Some(parent), Some(prefix)) = (any.parent(), any.file_name()) else {
        return;
    };
    let prefix = prefix.to_string_lossy().into_owned();
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where a table received whole is kept until its commit: named by its verified SHA-256, so
/// the result's hash finds it (a table still arriving, or damaged, has no such name).
fn received_table(dir: &std::path::Path, table: &str, sha256: &str) -> PathBuf {
    dir.join(format!("{table}.{sha256}.csv"))
}

/// Whether `table` is a table of `connection`: `<connection>` or `<connection>_<suffix>`.
fn table_of(table: &str, connection: &str) -> bool {
    let safe = !table.is_empty()
        && table.len() <= 200
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !table.contains("..");
    let prefix = table.get(..connection.len());
    safe && prefix.is_some_and(|p| p.eq_ignore_ascii_case(connection))
        && (table.len() == connection.len() || table[connection.len()..].starts_with('_'))
}

#[derive(Debug, Deserialize)]
struct LeaseQuery {
    lease: String,
}

async fn upload_table(
    State(state): State<AppState>,
    AgentPrincipal(agent): AgentPrincipal,
    Path((id, table)): Path<(i64, String)>,
    Query(q): Query<LeaseQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, AppError> {
    let started = std::time::Instant::now();
    let task = own_task(&state, &agent, id).await?;
    if !lease_holds(&task, &q.lease) {
        return Err(lease_lost(id));
    }
    if task.kind != kind::EXPORT || !table_of(&table, &task.connection) {
        return Err(AppError::BadRequest(format!(
            "'{table}' is not a table of connection '{}'",
            task.connection
        )));
    }
    let expected = headers
        .get(HASH_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .ok_or_else(|| AppError::BadRequest(format!("the {HASH_HEADER} header is missing")))?;
    let dir = received_dir(&state, &task.connection, id, &q.lease)?;
    // Received under a temporary name; kept under its verified hash (see `received_table`).
    let file = dir.join(format!("{table}.part"));
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let reader = tokio_util::io::StreamReader::new(stream);
    let mut gz = async_compression::tokio::bufread::GzipDecoder::new(reader);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let write_file = file.clone();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        if let Some(parent) = write_file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(&write_file)?);
        let mut hash = Sha256::new();
        let mut n = 0u64;
        for chunk in rx {
            hash.update(&chunk);
            out.write_all(&chunk)?;
            n += chunk.len() as u64;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((n, digest))
    });
    let mut total = 0u64;
    let mut failure = None;
    loop {
        let mut buf = vec![0u8; 256 * 1024];
        match gz.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if total > MAX_TABLE_BYTES {
                    failure = Some(format!("the table is larger than {MAX_TABLE_BYTES} bytes"));
                    break;
                }
                buf.truncate(n);
                if tx.send(buf).is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(format!("the upload is not a complete gzip stream: {e}"));
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| AppError::Internal(format!("{}: {e}", file.display())));
    // Damaged in transit: sending it again may help (503).
    let refuse = |message: String| {
        let _ = std::fs::remove_file(&file);
        AppError::Engine {
            kind: idlink_engine::ErrorKind::Unavailable,
            not_found: false,
            message,
        }
    };
    if let Some(f) = failure {
        return Err(refuse(f));
    }
    let (bytes, digest) = written?;
    if digest != expected {
        return Err(refuse(format!(
            "table '{table}' arrived damaged: its SHA-256 is {digest}, the agent sent {expected}; send it again"
        )));
    }
    let kept = received_table(&dir, &table, &digest);
    std::fs::rename(&file, &kept)
        .map_err(|e| AppError::Internal(format!("{}: {e}", kept.display())))?;
    let took = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    // Counted in the task's server time when its result is recorded.
    state.hub().add_upload_time(id, took);
    Ok(Json(
        json!({ "table": table, "bytes": bytes, "sha256": digest }),
    ))
}

async fn result(
    State(state): State<AppState>,
    AgentPrincipal(agent): AgentPrincipal,
    Path(id): Path<i64>,
    Json(r): Json<TaskResult>,
) -> Result<Json<Value>, AppError> {
    let started = std::time::Instant::now();
    let task = own_task(&state, &agent, id).await?;
    if !lease_holds(&task, &r.lease) {
        return Err(lease_lost(id));
    }
    let outcome: Result<(String, Option<String>), String> = match (&r.ok, &r.error) {
        (_, Some(e)) => Err(e.clone()),
        (Some(v), None) => accept(&state, &task, &r.lease, v).await,
        (None, None) => Err("the agent sent neither a result nor an error".into()),
    };
    let store = state.store();
    let took = i64::try_from(started.elapsed().as_millis())
        .unwrap_or(i64::MAX)
        .saturating_add(state.hub().take_upload_time(id));
    // An export's commit is audited with the task's answer, in one transaction.
    let actor = format!("agent {}", task.agent_key);
    let accepted = match &outcome {
        Ok((json, detail)) => {
            let audit = detail
                .as_deref()
                .map(|detail| idlink_store::audit::NewAuditEntry {
                    actor: &actor,
                    action: "export",
                    target: &task.connection,
                    detail,
                });
            store
                .finish_agent_task_timed(id, &r.lease, Ok(json), took, audit)
                .await?
        }
        Err(e) => {
            store
                .finish_agent_task_timed(id, &r.lease, Err(e), took, None)
                .await?
        }
    };
    if !accepted && let Ok((_, Some(detail))) = &outcome {
        // The tables were committed, though the lease was lost meanwhile: still audited.
        store
            .audit(&actor, "export", &task.connection, detail)
            .await?;
    }
    if task.attempts > 1 {
        // An earlier attempt may have left what it received.
        remove_received(&state, &task.connection, id);
    } else if let Ok(dir) = received_dir(&state, &task.connection, id, &r.lease) {
        let _ = std::fs::remove_dir_all(dir);
    }
    state.hub().done.notify_waiters();
    if !accepted {
        return Err(lease_lost(id));
    }
    Ok(Json(json!({
        "task": id,
        "state": if outcome.is_ok() { task_state::DONE } else { task_state::ERRORED },
        "error": outcome.err(),
    })))
}

/// What an agent's answer does here: an export's tables are committed, a schema recorded.
/// `Ok` is the task's stored result; `Err` its error.
async fn accept(
    state: &AppState,
    task: &idlink_store::AgentTask,
    lease: &str,
    v: &Value,
) -> Result<(String, Option<String>), String> {
    let engine = state.engine().map_err(|e| e.to_string())?;
    match task.kind.as_str() {
        kind::EXPORT => {
            let r: ExportResult = serde_json::from_value(v.clone())
                .map_err(|e| format!("the agent's export result cannot be read: {e}"))?;
            let dir =
                received_dir(state, &task.connection, task.id, lease).map_err(|e| e.to_string())?;
            let mut staged = Vec::with_capacity(r.tables.len());
            for t in &r.tables {
                if !table_of(&t.name, &task.connection) {
                    return Err(format!(
                        "'{}' is not a table of connection '{}'",
                        t.name, task.connection
                    ));
                }
                // Received whole, with the hash the result names.
                let sha256 = t.sha256.to_ascii_lowercase();
                let path = received_table(&dir, &t.name, &sha256);
                if !sha256.chars().all(|c| c.is_ascii_hexdigit()) || !path.is_file() {
                    return Err(format!(
                        "table '{}' was not received whole (send it before the result)",
                        t.name
                    ));
                }
                staged.push(idlink_packages::output::StagedTable {
                    name: t.name.clone(),
                    path,
                    columns: t.columns.clone(),
                    rows: t.rows,
                    bytes: t.bytes,
                });
            }
            let report = engine
                .commit_received(
                    &task.connection,
                    idlink_engine::agents::Received {
                        package: r.package.clone(),
                        dir,
                        tables: staged,
                        cookie: r.cookie.clone(),
                        incremental: r.incremental,
                        duration: Duration::from_millis(r.duration_ms),
                        notes: r.notes.clone(),
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            let detail = format!("{} rows (task {})", report.rows(), task.id);
            let json = serde_json::to_string(&report).map_err(|e| e.to_string())?;
            Ok((json, Some(detail)))
        }
        // A schema is recorded by the refresh that asked for it (see
        // `Engine::refresh_schema_via`).
        _ => Ok((v.to_string(), None)),
    }
}

// ---------------------------------------------------------------------------------------------
// Administrators' routes

fn agent_json(a: &idlink_store::AgentRecord) -> Value {
    json!({
        "agent": a.agent,
        "publicKey": a.public_key,
        "state": a.state.as_str(),
        "enrolledAt": a.enrolled_at.to_rfc3339(),
        "decidedBy": a.decided_by,
        "decidedAt": a.decided_at.map(|t| t.to_rfc3339()),
        "lastSeen": a.last_seen.map(|t| t.to_rfc3339()),
    })
}

pub fn task_json(t: &idlink_store::AgentTask) -> Value {
    json!({
        "id": t.id,
        "agent": t.agent_key,
        "kind": t.kind,
        "connection": t.connection,
        "state": t.state,
        "attempts": t.attempts,
        "leasedBy": t.leased_by,
        "result": t.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
        "error": t.error,
        "createdMs": t.created_ms,
        "claimedMs": t.claimed_ms,
        "finishedMs": t.finished_ms,
        "serverMs": t.server_ms,
    })
}

async fn list_agents(State(state): State<AppState>, _: User) -> Result<Json<Value>, AppError> {
    let agents = state.store().agents().await?;
    Ok(Json(json!({
        "localAgent": state.agent_options().local_agent,
        "agents": agents.iter().map(agent_json).collect::<Vec<_>>(),
    })))
}

/// Approves (or revokes) an agent, audited.
pub async fn decide(
    state: &AppState,
    who: &str,
    agent: &str,
    to: AgentState,
) -> Result<Value, AppError> {
    let Some(record) = state.store().agent(agent).await? else {
        return Err(AppError::NotFound(format!(
            "agent '{agent}' never enrolled"
        )));
    };
    if !state.store().decide_agent(agent, to, who).await? {
        return Err(AppError::Engine {
            kind: idlink_engine::ErrorKind::Configuration,
            not_found: false,
            message: format!(
                "agent '{}' was revoked: it cannot be approved again; it enrols under a new identifier",
                record.agent
            ),
        });
    }
    let action = if to == AgentState::Revoked {
        "agent-revoke"
    } else {
        "agent-approve"
    };
    state
        .store()
        .audit(who, action, &record.agent, to.as_str())
        .await?;
    let record = state.store().agent(agent).await?.unwrap_or(record);
    Ok(agent_json(&record))
}

async fn approve(
    State(state): State<AppState>,
    User(p): User,
    Path(agent): Path<String>,
) -> Result<Json<Value>, AppError> {
    p.require_admin("approving an agent")?;
    Ok(Json(
        decide(&state, &p.name, &agent, AgentState::Approved).await?,
    ))
}

async fn revoke(
    State(state): State<AppState>,
    User(p): User,
    Path(agent): Path<String>,
) -> Result<Json<Value>, AppError> {
    p.require_admin("revoking an agent")?;
    Ok(Json(
        decide(&state, &p.name, &agent, AgentState::Revoked).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// Bind the token to this agent (any agent when absent).
    pub agent: Option<String>,
    /// Hours the token stays valid (24 by default).
    pub hours: Option<u32>,
}

/// A one-time enrolment token's text: it starts with letters, so that `--enrol-token TOKEN`
/// never reads as an option (base64url may start with '-').
pub fn enrolment_token() -> String {
    format!("enrol.{}", random_token())
}

/// A new one-time enrolment token: shown once, its hash stored.
pub async fn new_enrolment_token(
    state: &AppState,
    who: &str,
    req: &TokenRequest,
) -> Result<Value, AppError> {
    if let Some(a) = &req.agent {
        valid_agent_id(a)?;
    }
    let hours = i64::from(req.hours.unwrap_or(24).clamp(1, 24 * 30));
    let token = enrolment_token();
    let expires = now_ms() + hours * 3_600_000;
    state
        .store()
        .create_enrolment_token(&token_hash(&token), req.agent.as_deref(), who, expires)
        .await?;
    state
        .store()
        .audit(
            who,
            "agent-token",
            req.agent.as_deref().unwrap_or("any agent"),
            &format!("one-time enrolment token, valid {hours} h"),
        )
        .await?;
    Ok(json!({ "token": token, "agent": req.agent, "expiresMs": expires }))
}

async fn create_token(
    State(state): State<AppState>,
    User(p): User,
    Json(req): Json<TokenRequest>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    p.require_admin("creating an enrolment token")?;
    Ok((
        StatusCode::CREATED,
        Json(new_enrolment_token(&state, &p.name, &req).await?),
    ))
}

#[derive(Debug, Deserialize)]
struct TasksQuery {
    agent: Option<String>,
    limit: Option<u32>,
}

async fn list_tasks(
    State(state): State<AppState>,
    _: User,
    Query(q): Query<TasksQuery>,
) -> Result<Json<Value>, AppError> {
    let tasks = state
        .store()
        .agent_tasks(q.agent.as_deref(), q.limit.unwrap_or(200).min(10_000))
        .await?;
    Ok(Json(Value::Array(tasks.iter().map(task_json).collect())))
}

async fn get_task(
    State(state): State<AppState>,
    _: User,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AppError> {
    let task = state
        .store()
        .agent_task(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("there is no agent task {id}")))?;
    Ok(Json(task_json(&task)))
}

#[derive(Debug, Deserialize)]
pub struct QueueRequest {
    pub connection: String,
    /// `export`, `schema` or `check`.
    pub kind: String,
}

/// Queues work on a connection for the agent that runs it (this server's embedded agent, or
/// a remote one); answers at once with the task (202).
async fn queue_task(
    State(state): State<AppState>,
    User(p): User,
    Json(req): Json<QueueRequest>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    p.require_operator("queueing agent work")?;
    let engine = state.engine()?;
    let Some(connection) = engine.checked().config.connection(&req.connection) else {
        return Err(idlink_engine::EngineError::UnknownConnection {
            id: req.connection.clone(),
            suggestion: None,
        }
        .into());
    };
    let connection = connection.id.value.clone();
    if ![kind::EXPORT, kind::SCHEMA, kind::CHECK].contains(&req.kind.as_str()) {
        return Err(AppError::BadRequest(format!(
            "'{}' is not a kind of agent work: export, schema or check",
            req.kind
        )));
    }
    let local = state.agent_options().local_agent.clone();
    let agent = engine
        .remote_agent_of(&connection, None, &local)
        .unwrap_or(local);
    let payload = if req.kind == kind::EXPORT {
        serde_json::to_value(super::protocol::ExportPayload {
            ignore_cookies: false,
            cookie: engine.current_cookie(&connection, false)?,
        })
        .unwrap_or(Value::Null)
    } else {
        json!({})
    };
    let id = super::queue(&state, &agent, &req.kind, &connection, &payload).await?;
    state
        .store()
        .audit(
            &p.name,
            "agent-queue",
            &connection,
            &format!("{} for agent {agent} (task {id})", req.kind),
        )
        .await?;
    let task = state.store().agent_task(id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(task.as_ref().map_or(Value::Null, task_json)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token that began with '-' (one in 64) was read by `idlink agent --enrol-token` as an
    /// option, and the agent did not start.
    #[test]
    fn regression_an_enrolment_token_never_starts_with_a_hyphen() {
        for _ in 0..2000 {
            let t = enrolment_token();
            assert!(t.starts_with(|c: char| c.is_ascii_alphabetic()), "{t}");
        }
    }

    #[test]
    fn tables_of_a_connection_only() {
        assert!(table_of("HR", "HR"));
        assert!(table_of("HR_people", "hr"));
        assert!(!table_of("HRX", "HR"));
        assert!(!table_of("AD_users", "HR"));
        assert!(!table_of("HR_../x", "HR"));
        assert!(!table_of("HR_a/b", "HR"));
        assert!(!table_of("", "HR"));
    }

    #[test]
    fn settings_keep_the_agents_connections_and_drop_the_key_path() {
        let doc = json!({
            "EncryptionIdentity": "/etc/idlink/agent.key",
            "SourcesRootPaths": ["data"],
            "Connections": { "A": {"x": 1}, "B": {"y": 2} }
        });
        let kept = only_connections(doc, &|id: &str| id == "B");
        assert_eq!(
            kept,
            json!({ "SourcesRootPaths": ["data"], "Connections": { "B": {"y": 2} } })
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The Agents page

async fn agents_page_with(
    state: &AppState,
    p: &crate::auth::Principal,
    notice: Option<Value>,
) -> Result<axum::response::Html<String>, crate::ui::UiError> {
    let agents = state.store().agents().await.map_err(AppError::from)?;
    let tasks = state
        .store()
        .agent_tasks(None, 50)
        .await
        .map_err(AppError::from)?;
    crate::ui::render(
        state,
        "agents.html",
        crate::ui::page(
            state,
            p,
            "Agents",
            json!({
                "agents": agents.iter().map(agent_json).collect::<Vec<_>>(),
                "tasks": tasks.iter().map(task_json).collect::<Vec<_>>(),
                "local_agent": state.agent_options().local_agent,
                "notice": notice,
            }),
        ),
    )
}

async fn agents_page(
    State(state): State<AppState>,
    crate::ui::Viewer(p): crate::ui::Viewer,
) -> Result<axum::response::Html<String>, crate::ui::UiError> {
    agents_page_with(&state, &p, None).await
}

async fn decide_form(
    state: &AppState,
    p: &crate::auth::Principal,
    agent: &str,
    to: AgentState,
) -> Result<Response, crate::ui::UiError> {
    let what = if to == AgentState::Revoked {
        "revoking an agent"
    } else {
        "approving an agent"
    };
    p.require_admin(what)?;
    let notice = match decide(state, &p.name, agent, to).await {
        Ok(a) => {
            json!({ "ok": true, "text": format!("Agent {} is {}.", a["agent"].as_str().unwrap_or(agent), a["state"].as_str().unwrap_or_default()) })
        }
        Err(e @ (AppError::Engine { .. } | AppError::NotFound(_))) => {
            json!({ "ok": false, "text": e.public_message() })
        }
        Err(e) => return Err(e.into()),
    };
    Ok(agents_page_with(state, p, Some(notice))
        .await?
        .into_response())
}

async fn approve_form(
    State(state): State<AppState>,
    crate::ui::Viewer(p): crate::ui::Viewer,
    Path(agent): Path<String>,
) -> Result<Response, crate::ui::UiError> {
    decide_form(&state, &p, &agent, AgentState::Approved).await
}

async fn revoke_form(
    State(state): State<AppState>,
    crate::ui::Viewer(p): crate::ui::Viewer,
    Path(agent): Path<String>,
) -> Result<Response, crate::ui::UiError> {
    decide_form(&state, &p, &agent, AgentState::Revoked).await
}

#[derive(Debug, Default, Deserialize)]
struct TokenForm {
    #[serde(default)]
    agent: String,
}

async fn token_form(
    State(state): State<AppState>,
    crate::ui::Viewer(p): crate::ui::Viewer,
    axum::Form(form): axum::Form<TokenForm>,
) -> Result<Response, crate::ui::UiError> {
    p.require_admin("creating an enrolment token")?;
    let agent = Some(form.agent.trim().to_string()).filter(|a| !a.is_empty());
    let req = TokenRequest { agent, hours: None };
    let notice = match new_enrolment_token(&state, &p.name, &req).await {
        Ok(t) => json!({
            "ok": true,
            "text": format!("A one-time enrolment token for {}, valid 24 h: give it to the agent (--enrol-token).", req.agent.as_deref().unwrap_or("any agent")),
            "token": t["token"],
        }),
        Err(e @ AppError::BadRequest(_)) => json!({ "ok": false, "text": e.public_message() }),
        Err(e) => return Err(e.into()),
    };
    Ok(agents_page_with(&state, &p, Some(notice))
        .await?
        .into_response())
}
