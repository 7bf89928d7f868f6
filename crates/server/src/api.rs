//! The JSON API under `/api`. Every route is added through [`ApiRouter`], which records it, so
//! a test can hold the router and the OpenAPI document ([`crate::openapi`]) to each other.
//!
//! The operations (refresh, check, export) live here as functions the UI calls too: one
//! place times them, counts them in the metrics and writes the audit log.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use idlink_engine::agents::ExportVia;
use idlink_engine::snapshots::{Refresh, show_time};
use idlink_engine::{CancellationToken, ExportOptions};
use idlink_packages::api::NoProgress;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Role, User};
use crate::error::AppError;
use crate::metrics::Operation;
use crate::state::AppState;
use crate::views;

/// The API's router and the list of what it routes.
#[derive(Debug)]
pub struct ApiRouter {
    pub router: Router<AppState>,
    /// Routes whose requests may carry more than the 1 MiB every other request is held to (an
    /// agent's results: a batch of orders' outcomes, a large schema); bounded by
    /// [`LARGE_BODY`].
    pub large: Router<AppState>,
    /// Every `(method, path)` routed, in OpenAPI's path syntax (which axum's is).
    pub routes: Vec<(Method, &'static str)>,
}

/// The largest body a route of [`ApiRouter::large`] accepts.
pub const LARGE_BODY: usize = 64 << 20;

impl ApiRouter {
    fn new() -> Self {
        ApiRouter {
            router: Router::new(),
            large: Router::new(),
            routes: Vec::new(),
        }
    }

    /// [`ApiRouter::add`] for a route whose requests may be large (up to [`LARGE_BODY`]).
    pub(crate) fn add_large(
        mut self,
        method: Method,
        path: &'static str,
        route: MethodRouter<AppState>,
    ) -> Self {
        self.routes.push((method, path));
        self.large = self.large.route(path, route);
        self
    }

    /// `f(self)`: lets another module add its routes to the chain.
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }

    pub(crate) fn add(
        mut self,
        method: Method,
        path: &'static str,
        route: MethodRouter<AppState>,
    ) -> Self {
        self.routes.push((method, path));
        self.router = self.router.route(path, route);
        self
    }
}

/// Every API route.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .add(Method::GET, "/api/openapi.json", get(openapi))
        .add(Method::GET, "/api/me", get(me))
        .add(Method::GET, "/api/configuration", get(configuration))
        .add(Method::GET, "/api/connectors", get(list_connectors))
        .add(
            Method::GET,
            "/api/connectors/{connector}",
            get(get_connector),
        )
        .add(
            Method::POST,
            "/api/connectors/{connector}/refresh-schemas",
            post(refresh_connector),
        )
        .add(Method::GET, "/api/connections", get(list_connections))
        .add(Method::POST, "/api/connections", post(create_connection))
        .add(Method::GET, "/api/packages", get(list_packages))
        .add(
            Method::PATCH,
            "/api/connections/{connection}/settings",
            axum::routing::patch(update_settings),
        )
        .add(
            Method::GET,
            "/api/connections/{connection}",
            get(get_connection),
        )
        .add(
            Method::DELETE,
            "/api/connections/{connection}",
            axum::routing::delete(delete_connection),
        )
        .add(
            Method::GET,
            "/api/connections/{connection}/schema",
            get(get_schema),
        )
        .add(
            Method::POST,
            "/api/connections/{connection}/refresh-schema",
            post(refresh_connection),
        )
        .add(
            Method::POST,
            "/api/connections/{connection}/check",
            post(check_connection),
        )
        .add(
            Method::POST,
            "/api/connections/{connection}/export",
            post(export_connection),
        )
        .add(Method::GET, "/api/entity-types", get(list_entity_types))
        .add(
            Method::GET,
            "/api/entity-types/{entityType}/resources",
            get(search_resources),
        )
        .add(
            Method::GET,
            "/api/entity-types/{entityType}/resources/{key}",
            get(get_resource),
        )
        .add(Method::GET, "/api/entity-type-mappings", get(list_mappings))
        .add(
            Method::GET,
            "/api/entity-type-mappings/{entityType}",
            get(get_mapping),
        )
        .add(
            Method::PUT,
            "/api/entity-type-mappings/{entityType}",
            axum::routing::put(save_mapping),
        )
        .add(Method::GET, "/api/audit", get(audit))
        .add(Method::POST, "/api/tokens", post(create_token))
        .add(Method::GET, "/api/tokens", get(list_tokens))
        .add(
            Method::DELETE,
            "/api/tokens/{token}",
            axum::routing::delete(revoke_token),
        )
        .add(Method::POST, "/api/users", post(create_user))
        .pipe(crate::jobs::api_routes)
        .pipe(crate::agents::routes::api_routes)
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn me(User(p): User) -> Json<Value> {
    Json(json!({ "name": p.name, "role": p.role }))
}

/// The running configuration and the last change refused, with its errors.
pub fn configuration_view(state: &AppState) -> Value {
    let r = state.running();
    json!({
        "configDir": state.paths().config_dir.display().to_string(),
        "running": r.engine.is_some(),
        "loadedAt": r.loaded_at.as_ref().map(show_time),
        "warnings": r.warnings,
        "rejected": r.rejected.as_ref().map(|x| json!({
            "at": show_time(&x.at),
            "errors": x.errors,
        })),
    })
}

async fn configuration(State(state): State<AppState>, _: User) -> Json<Value> {
    Json(configuration_view(&state))
}

async fn list_connectors(State(state): State<AppState>, _: User) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(json!(views::connectors(&engine))))
}

async fn get_connector(
    State(state): State<AppState>,
    _: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(json!(views::connector(&state, &id).await?)))
}

async fn list_connections(State(state): State<AppState>, _: User) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(json!(
        views::connections(&state, &engine, None).await?
    )))
}

/// The packages a connection may use (those this build runs), with their settings.
pub fn packages_view(engine: &idlink_engine::Engine) -> Vec<Value> {
    use idlink_model::package::{Availability, PackageCatalog};
    let mut list: Vec<Value> = engine
        .registry()
        .all()
        .filter(|p| p.availability == Availability::Supported)
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.display_name,
                "capabilities": {
                    "export": p.capabilities.export,
                    "incremental": p.capabilities.incremental,
                    "fulfill": p.capabilities.fulfill,
                    "schema": p.capabilities.schema,
                },
                "settings": p.settings.fields.iter().filter(|f| f.no_effect.is_none()).map(|f| json!({
                    "name": f.name,
                    "kind": f.kind.describe(),
                    "required": f.required,
                    "secured": f.secured,
                    "doc": f.doc,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    list
}

async fn list_packages(State(state): State<AppState>, _: User) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(json!(packages_view(&engine))))
}

/// Creates a connection (administrators only), then refreshes its schema when its package
/// has one.
async fn create_connection(
    State(state): State<AppState>,
    User(p): User,
    Json(body): Json<crate::configure::NewConnection>,
) -> Result<Response, AppError> {
    p.require_admin("creating a connection")?;
    let id = crate::configure::create(&state, &p.name, &body).await?;
    let engine = state.engine()?;
    let has_schema = engine
        .checked()
        .config
        .connection(&id)
        .and_then(|c| engine.registry().get_static(&c.package.value))
        .is_some_and(|p| p.capabilities.schema);
    let refresh = if has_schema {
        Some(refresh_one(&state, &p.name, &id).await?)
    } else {
        None
    };
    let mut out = views::connection(&state, &engine, &id).await?;
    out["refresh"] = json!(refresh);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Changes a connection's settings (administrators only): only the settings given change,
/// in place.
async fn update_settings(
    State(state): State<AppState>,
    User(p): User,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Map<String, Value>>,
) -> Result<Json<Value>, AppError> {
    p.require_admin("editing connection settings")?;
    let updated = crate::configure::update_settings(&state, &p.name, &id, &body).await?;
    let engine = state.engine()?;
    let mut out = views::connection(&state, &engine, &id).await?;
    out["changes"] = json!(updated.changes);
    out["warnings"] = json!(updated.warnings);
    Ok(Json(out))
}

/// Deletes a connection (administrators only), in place; refused (422) while something
/// still refers to it.
async fn delete_connection(
    State(state): State<AppState>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    p.require_admin("deleting a connection")?;
    let id = crate::configure::delete(&state, &p.name, &id).await?;
    Ok(Json(json!({ "deleted": id })))
}

async fn get_connection(
    State(state): State<AppState>,
    _: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(views::connection(&state, &engine, &id).await?))
}

async fn get_schema(
    State(state): State<AppState>,
    _: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(views::schema(&state, &engine, &id).await?))
}

/// The outcome of one refresh, as the API returns it.
fn refresh_json(r: &idlink_engine::snapshots::ConnectionRefresh) -> Value {
    match &r.outcome {
        Refresh::Refreshed { schema, at } => json!({
            "connection": r.connection,
            "package": r.package,
            "outcome": "refreshed",
            "refreshedAt": show_time(at),
            "tables": schema.tables.len(),
            "columns": schema.tables.iter().map(|t| t.columns.len()).sum::<usize>(),
        }),
        Refresh::NoSchema => json!({
            "connection": r.connection,
            "package": r.package,
            "outcome": "none",
            "message": idlink_engine::snapshots::NO_SCHEMA,
        }),
        Refresh::Failed { message, at, kind } => json!({
            "connection": r.connection,
            "package": r.package,
            "outcome": "failed",
            "failedAt": show_time(at),
            "kind": kind.to_string(),
            "message": r.redactor.redact(message),
        }),
    }
}

fn record_refresh(
    state: &AppState,
    r: &idlink_engine::snapshots::ConnectionRefresh,
    took: std::time::Duration,
) {
    let failure = match &r.outcome {
        Refresh::Failed { kind, .. } => Some(*kind),
        _ => None,
    };
    if !matches!(r.outcome, Refresh::NoSchema) {
        state
            .metrics()
            .record(Operation::RefreshSchema, &r.connection, took, failure);
    }
}

fn outcome_word(r: &idlink_engine::snapshots::ConnectionRefresh) -> &'static str {
    match r.outcome {
        Refresh::Refreshed { .. } => "refreshed",
        Refresh::NoSchema => "no schema",
        Refresh::Failed { .. } => "failed",
    }
}

/// "Refresh schema" of one connection: recorded in the store, the metrics and the audit log.
pub async fn refresh_one(state: &AppState, who: &str, id: &str) -> Result<Value, AppError> {
    let engine = state.engine()?;
    let started = Instant::now();
    let remote = crate::agents::Remote::new(state.clone());
    let r = engine
        .refresh_schema_via(state.store(), id, Some(&remote))
        .await;
    state.schemas().clear();
    let r = r?;
    record_refresh(state, &r, started.elapsed());
    state
        .store()
        .audit(who, "refresh-schema", &r.connection, outcome_word(&r))
        .await?;
    Ok(refresh_json(&r))
}

/// "Refresh all schemas" of a connector.
pub async fn refresh_all(state: &AppState, who: &str, connector: &str) -> Result<Value, AppError> {
    let engine = state.engine()?;
    let connector = engine.connector_id(connector)?;
    let started = Instant::now();
    let results = engine
        .refresh_connector_schemas(
            state.store(),
            &connector,
            Some(&crate::agents::Remote::new(state.clone())),
        )
        .await;
    state.schemas().clear();
    let results = results?;
    // The connector's time, shared out: each refresh ran in turn.
    let each = started.elapsed() / u32::try_from(results.len().max(1)).unwrap_or(1);
    for r in &results {
        record_refresh(state, r, each);
    }
    let failed = results.iter().filter(|r| r.outcome.failed()).count();
    state
        .store()
        .audit(
            who,
            "refresh-all-schemas",
            &connector,
            &format!("{} connections, {failed} failed", results.len()),
        )
        .await?;
    Ok(json!({
        "connector": connector,
        "results": results.iter().map(refresh_json).collect::<Vec<_>>(),
    }))
}

/// "Check connection": whether the system is reachable with the current settings. A system
/// that cannot be reached is an answer (`reachable: false`), not an error.
pub async fn check_one(state: &AppState, who: &str, id: &str) -> Result<Value, AppError> {
    let engine = state.engine()?;
    let started = Instant::now();
    let remote = crate::agents::Remote::new(state.clone());
    let idlink_engine::agents::ConnectionCheck { connection, result } =
        engine.check_connection_via(id, Some(&remote)).await?;
    state.metrics().record(
        Operation::CheckConnection,
        &connection,
        started.elapsed(),
        result.as_ref().err().map(|(k, _)| *k),
    );
    let (reachable, message) = match result {
        Ok(m) => (true, m),
        Err((_, m)) => (false, m),
    };
    state
        .store()
        .audit(
            who,
            "check-connection",
            &connection,
            if reachable {
                "reachable"
            } else {
                "not reachable"
            },
        )
        .await?;
    Ok(json!({ "connection": connection, "reachable": reachable, "message": message }))
}

/// "Export now": one export of the connection into `<work>/ExportOutput`.
pub async fn export_one(
    state: &AppState,
    who: &str,
    id: &str,
    cancel: &CancellationToken,
) -> Result<Value, AppError> {
    let engine = state.engine()?;
    let started = Instant::now();
    let remote = crate::agents::Remote::new(state.clone());
    let export = engine
        .export_via(
            id,
            &ExportOptions::default(),
            Arc::new(NoProgress),
            Some(&remote),
            cancel,
        )
        .await;
    let ExportVia {
        connection,
        agent,
        result,
        redactor,
    } = match export {
        Ok(e) => e,
        Err(e) => {
            if idlink_engine::snapshots::records_open_failure(&e) {
                state
                    .metrics()
                    .record(Operation::Export, id, started.elapsed(), Some(e.kind()));
                state.store().audit(who, "export", id, "failed").await?;
            }
            return Err(e.into());
        }
    };
    state.metrics().record(
        Operation::Export,
        &connection,
        started.elapsed(),
        result.as_ref().err().map(idlink_engine::EngineError::kind),
    );
    match result {
        Ok(report) => {
            // An agent's export is audited with its rows when its tables are committed.
            if agent.is_none() {
                state
                    .store()
                    .audit(
                        who,
                        "export",
                        &connection,
                        &format!("{} rows", report.rows()),
                    )
                    .await?;
            }
            let json =
                serde_json::to_string(&report).map_err(|e| AppError::Internal(e.to_string()))?;
            serde_json::from_str(&redactor.redact(&json))
                .map_err(|e| AppError::Internal(e.to_string()))
        }
        Err(e) => {
            state
                .store()
                .audit(who, "export", &connection, "failed")
                .await?;
            Err(AppError::engine(&e, |m| redactor.redact(m)))
        }
    }
}

async fn refresh_connection(
    State(state): State<AppState>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    p.require_operator("refreshing a schema")?;
    Ok(Json(refresh_one(&state, &p.name, &id).await?))
}

async fn refresh_connector(
    State(state): State<AppState>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    p.require_operator("refreshing schemas")?;
    Ok(Json(refresh_all(&state, &p.name, &id).await?))
}

async fn check_connection(
    State(state): State<AppState>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    p.require_operator("checking a connection")?;
    Ok(Json(check_one(&state, &p.name, &id).await?))
}

async fn export_connection(
    State(state): State<AppState>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    p.require_operator("exporting a connection")?;
    Ok(Json(
        export_one(&state, &p.name, &id, &state.shutdown()).await?,
    ))
}

async fn list_entity_types(
    State(state): State<AppState>,
    _: User,
) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(json!(views::entity_types(&engine))))
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
}

async fn search_resources(
    State(state): State<AppState>,
    _: User,
    Path(et): Path<String>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(views::search(&state, &engine, &et, &q.q).await?))
}

async fn get_resource(
    State(state): State<AppState>,
    _: User,
    Path((et, key)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(views::resource(&state, &engine, &et, &key).await?))
}

async fn list_mappings(State(state): State<AppState>, _: User) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(json!(crate::mappings::list(&state, &engine).await?)))
}

async fn get_mapping(
    State(state): State<AppState>,
    _: User,
    Path(et): Path<String>,
) -> Result<Json<Value>, AppError> {
    let engine = state.engine()?;
    Ok(Json(crate::mappings::editor(&state, &engine, &et).await?))
}

/// Saves an entity type mapping (administrators only), in place.
async fn save_mapping(
    State(state): State<AppState>,
    User(p): User,
    Path(et): Path<String>,
    Json(body): Json<crate::mappings::MappingEdit>,
) -> Result<Json<Value>, AppError> {
    p.require_admin("editing an entity type mapping")?;
    let changes = crate::mappings::save(&state, &p.name, &et, &body).await?;
    let engine = state.engine()?;
    let mut out = crate::mappings::editor(&state, &engine, &et).await?;
    out["changes"] = json!(changes);
    Ok(Json(out))
}

/// The audit log as JSON.
pub async fn audit_entries(state: &AppState, limit: u32) -> Result<Vec<Value>, AppError> {
    Ok(state
        .store()
        .audit_log(limit.clamp(1, 10_000))
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "at": show_time(&e.at),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            })
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    /// Entries, newest first (200 by default, at most 10,000).
    limit: Option<u32>,
}

async fn audit(
    State(state): State<AppState>,
    _: User,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(json!(
        audit_entries(&state, q.limit.unwrap_or(200)).await?
    )))
}

#[derive(Debug, Deserialize)]
struct NewToken {
    name: String,
}

/// An API token for the signed-in user, shown once.
async fn create_token(
    State(state): State<AppState>,
    User(p): User,
    Json(body): Json<NewToken>,
) -> Result<Response, AppError> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(AppError::BadRequest(
            "give the token a name (\"name\")".into(),
        ));
    }
    let token = new_token(&state, &p, name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "token": token, "user": p.name, "id": crate::auth::token_hash(&token).get(..TOKEN_ID_LEN) })),
    )
        .into_response())
}

/// Creates an API token for `p` (audited); returns it, to show once.
pub async fn new_token(
    state: &AppState,
    p: &crate::auth::Principal,
    name: &str,
) -> Result<String, AppError> {
    let token = crate::auth::random_token();
    state
        .store()
        .create_api_token(&crate::auth::token_hash(&token), p.id, name)
        .await?;
    state
        .store()
        .audit(&p.name, "create-api-token", name, "created")
        .await?;
    Ok(token)
}

/// How many hex characters of a token's hash name it in lists and in `DELETE /api/tokens/{token}`.
pub const TOKEN_ID_LEN: usize = 16;

/// The API tokens the user may see: their own, or every one for an administrator. Never a
/// token: its name, owner, creation time and an identifier (the start of its hash).
pub async fn tokens_view(
    state: &AppState,
    p: &crate::auth::Principal,
) -> Result<Vec<Value>, AppError> {
    let of = match p.role {
        Role::Administrator => None,
        Role::Operator | Role::Viewer => Some(p.id),
    };
    Ok(state
        .store()
        .api_tokens(of)
        .await?
        .into_iter()
        .map(|t| {
            json!({
                "id": t.token_hash.get(..TOKEN_ID_LEN).unwrap_or_default(),
                "name": t.name,
                "user": t.user_name,
                "createdAt": show_time(&t.created_at),
                "mine": t.user_id == p.id,
            })
        })
        .collect())
}

async fn list_tokens(
    State(state): State<AppState>,
    User(p): User,
) -> Result<Json<Value>, AppError> {
    Ok(Json(json!(tokens_view(&state, &p).await?)))
}

/// Revokes the token named by `id` (the start of its hash): one's own, or any for an
/// administrator. Audited with the token's name and owner.
pub async fn revoke(
    state: &AppState,
    p: &crate::auth::Principal,
    id: &str,
) -> Result<Value, AppError> {
    let id = id.trim().to_ascii_lowercase();
    let of = match p.role {
        Role::Administrator => None,
        Role::Operator | Role::Viewer => Some(p.id),
    };
    let found = if id.len() == TOKEN_ID_LEN && id.chars().all(|c| c.is_ascii_hexdigit()) {
        state
            .store()
            .api_tokens(of)
            .await?
            .into_iter()
            .find(|t| t.token_hash.starts_with(&id))
    } else {
        None
    };
    let t = found.ok_or_else(|| {
        AppError::NotFound(format!(
            "no API token '{id}' that you may revoke: GET /api/tokens lists them"
        ))
    })?;
    state.store().delete_api_token(&t.token_hash).await?;
    state
        .store()
        .audit(
            &p.name,
            "revoke-api-token",
            &t.name,
            &format!("revoked (a token of {})", t.user_name),
        )
        .await?;
    Ok(json!({ "id": id, "name": t.name, "user": t.user_name, "revoked": true }))
}

async fn revoke_token(
    State(state): State<AppState>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(revoke(&state, &p, &id).await?))
}

#[derive(Debug, Deserialize)]
struct NewUser {
    name: String,
    password: String,
    role: String,
}

/// Adds a user (administrators only).
async fn create_user(
    State(state): State<AppState>,
    User(p): User,
    Json(body): Json<NewUser>,
) -> Result<Response, AppError> {
    p.require_admin("creating a user")?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        AppError::BadRequest(format!(
            "role '{}' is not known: use administrator, operator or viewer",
            body.role
        ))
    })?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "a user name is 1 to 64 printable characters".into(),
        ));
    }
    if body.password.chars().count() < crate::auth::MIN_PASSWORD {
        return Err(AppError::BadRequest(format!(
            "the password is shorter than {} characters",
            crate::auth::MIN_PASSWORD
        )));
    }
    let password = body.password;
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let created = state
        .store()
        .create_user(&name, &hash, role.as_str())
        .await?
        .ok_or_else(|| AppError::BadRequest(format!("user '{name}' exists already")))?;
    state
        .store()
        .audit(&p.name, "create-user", &name, role.as_str())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": created.name, "role": role })),
    )
        .into_response())
}
