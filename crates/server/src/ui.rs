//! The web UI: server-rendered pages (minijinja templates embedded in the binary), one
//! stylesheet and one script served from `/assets` (no inline script, no network), forms that
//! work with a keyboard and carry the session's CSRF token.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api;
use crate::auth::{self, Auth, Principal};
use crate::error::AppError;
use crate::state::AppState;
use crate::views;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("agents.html", include_str!("../templates/agents.html")),
    ("login.html", include_str!("../templates/login.html")),
    (
        "connectors.html",
        include_str!("../templates/connectors.html"),
    ),
    (
        "connector_rows.html",
        include_str!("../templates/connector_rows.html"),
    ),
    (
        "connector.html",
        include_str!("../templates/connector.html"),
    ),
    (
        "connection.html",
        include_str!("../templates/connection.html"),
    ),
    (
        "entity_types.html",
        include_str!("../templates/entity_types.html"),
    ),
    (
        "resources.html",
        include_str!("../templates/resources.html"),
    ),
    ("resource.html", include_str!("../templates/resource.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    (
        "configuration.html",
        include_str!("../templates/configuration.html"),
    ),
    ("error.html", include_str!("../templates/error.html")),
    ("fields.html", include_str!("../templates/fields.html")),
    ("mappings.html", include_str!("../templates/mappings.html")),
    ("mapping.html", include_str!("../templates/mapping.html")),
    ("tokens.html", include_str!("../templates/tokens.html")),
    (
        "new_connection.html",
        include_str!("../templates/new_connection.html"),
    ),
    ("jobs.html", include_str!("../templates/jobs.html")),
    ("job.html", include_str!("../templates/job.html")),
    ("job_run.html", include_str!("../templates/job_run.html")),
    ("orders.html", include_str!("../templates/orders.html")),
    ("tickets.html", include_str!("../templates/tickets.html")),
];

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
];

/// The templates, parsed once.
pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // A template that does not parse is a bug caught by the tests; the page that
            // needs it answers with a generic error.
            tracing::error!(template = name, error = %e, "template does not parse");
        }
    }
    env
}

/// An error shown as a page: sign-in needed redirects to the login page.
#[derive(Debug)]
pub struct UiError(pub AppError);

impl From<AppError> for UiError {
    fn from(e: AppError) -> Self {
        UiError(e)
    }
}

impl From<idlink_store::StoreError> for UiError {
    fn from(e: idlink_store::StoreError) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        error_response(false, self.0)
    }
}

/// A refused or failed request: JSON for the API, a page (or the login redirect) otherwise.
pub fn error_response(api: bool, e: AppError) -> Response {
    if api {
        return e.into_response();
    }
    if matches!(e, AppError::Unauthorized) {
        return Redirect::to("/login").into_response();
    }
    let status = e.status();
    let message = e.public_message();
    // Parsed once: an error page needs no state, and errors must stay cheap under load.
    static ERROR_TEMPLATES: std::sync::LazyLock<minijinja::Environment<'static>> =
        std::sync::LazyLock::new(templates);
    let body = ERROR_TEMPLATES
        .get_template("error.html")
        .and_then(|t| t.render(json!({ "status": status.as_u16(), "message": message })))
        .unwrap_or_else(|_| format!("{} {message}", status.as_u16()));
    (status, Html(body)).into_response()
}

/// A signed-in user, for pages: the login page otherwise.
#[derive(Debug, Clone)]
pub struct Viewer(pub Principal);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, UiError> {
        match parts.extensions.get::<Auth>() {
            Some(Auth(Some(p))) => Ok(Viewer(p.clone())),
            _ => Err(UiError(AppError::Unauthorized)),
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(connectors))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/connectors/{connector}", get(connector))
        .route(
            "/connectors/{connector}/refresh-schemas",
            post(refresh_connector),
        )
        .route(
            "/connections/{connection}/refresh-schema",
            post(refresh_connection),
        )
        .route("/connections/{connection}", get(connection))
        .route("/connections/{connection}/settings", post(save_settings))
        .route("/connections/{connection}/delete", post(delete_connection))
        .route(
            "/connectors/{connector}/new-connection",
            get(new_connection).post(create_connection),
        )
        .route("/connections/{connection}/check", post(check_connection))
        .route("/connections/{connection}/export", post(export_connection))
        .route("/mappings", get(mappings))
        .route("/mappings/{entityType}", get(mapping).post(save_mapping))
        .route("/resources", get(entity_types))
        .route("/resources/{entityType}", get(resources))
        .route("/resources/{entityType}/{key}", get(resource))
        .route("/audit", get(audit))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{token}/revoke", post(revoke_token))
        .route("/configuration", get(configuration))
        .route("/assets/{name}", get(asset))
        .merge(crate::jobs::ui_routes())
        .merge(crate::agents::routes::ui_routes())
}

pub(crate) fn render(state: &AppState, name: &str, ctx: Value) -> Result<Html<String>, UiError> {
    state
        .templates()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map(Html)
        .map_err(|e| UiError(AppError::Internal(format!("template {name}: {e:#}"))))
}

/// What every page's frame needs: who is signed in, the CSRF token, the configuration state.
pub(crate) fn page(state: &AppState, viewer: &Principal, title: &str, mut ctx: Value) -> Value {
    let running = state.running();
    let base = json!({
        "title": title,
        "user": { "name": viewer.name, "role": viewer.role, "admin": viewer.role == auth::Role::Administrator, "operator": viewer.role != auth::Role::Viewer },
        "csrf": viewer.csrf.clone().unwrap_or_default(),
        "running": running.engine.is_some(),
        "rejected": running.rejected.as_ref().map(|r| r.errors.len()),
    });
    if let (Value::Object(c), Value::Object(b)) = (&mut ctx, base) {
        for (k, v) in b {
            c.entry(k).or_insert(v);
        }
    }
    ctx
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, bytes)) => (
            [
                (header::CONTENT_TYPE, *ty),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

fn login_form(state: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    let token = auth::random_token();
    let cookie = auth::set_cookie(auth::LOGIN_COOKIE, &token, None, state.secure_cookies());
    match render(
        state,
        "login.html",
        json!({ "title": "Sign in", "csrf": token, "error": error }),
    ) {
        Ok(html) => (status, [(header::SET_COOKIE, cookie)], html).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, None, StatusCode::OK)
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::tls::ClientIp(ip): crate::tls::ClientIp,
    Form(form): Form<LoginForm>,
) -> Response {
    // Double submit: the form's token must be the one its page set in a cookie.
    let cookie = auth::cookie(&headers, auth::LOGIN_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !auth::same_token(&form.csrf, cookie) {
        return UiError(AppError::Csrf).into_response();
    }
    let mut keys = vec![format!("user:{}", form.name.trim().to_lowercase())];
    if let Some(ip) = ip {
        keys.push(format!("ip:{ip}"));
    }
    if let Some(wait) = state.limiter().blocked(&keys) {
        let _ = state
            .store()
            .audit(
                form.name.trim(),
                "login",
                form.name.trim(),
                "refused: too many failures",
            )
            .await;
        let e = AppError::TooManyRequests(wait);
        return login_form(&state, Some(&e.to_string()), StatusCode::TOO_MANY_REQUESTS);
    }
    let user = match auth::check_password(&state, form.name.trim(), &form.password).await {
        Ok(u) => u,
        Err(e) => return UiError(e).into_response(),
    };
    let Some(user) = user else {
        state.limiter().failed(&keys);
        let _ = state
            .store()
            .audit(form.name.trim(), "login", form.name.trim(), "failed")
            .await;
        return login_form(
            &state,
            Some("the user name or the password is wrong"),
            StatusCode::UNAUTHORIZED,
        );
    };
    state.limiter().succeeded(&keys[..1]);
    let cookie = match auth::start_session(&state, &user).await {
        Ok(c) => c,
        Err(e) => return UiError(e).into_response(),
    };
    let _ = state
        .store()
        .audit(&user.name, "login", &user.name, "signed in")
        .await;
    let clear = auth::set_cookie(
        auth::LOGIN_COOKIE,
        "",
        Some(std::time::Duration::ZERO),
        state.secure_cookies(),
    );
    (
        StatusCode::SEE_OTHER,
        AppendHeaders([
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
            (header::SET_COOKIE, clear),
        ]),
    )
        .into_response()
}

async fn logout(State(state): State<AppState>, Viewer(p): Viewer, headers: HeaderMap) -> Response {
    let cookie = match auth::end_session(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return UiError(e).into_response(),
    };
    let _ = state
        .store()
        .audit(&p.name, "logout", &p.name, "signed out")
        .await;
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

async fn connectors(
    State(state): State<AppState>,
    Viewer(p): Viewer,
) -> Result<Html<String>, UiError> {
    // The table is rendered once per configuration (it depends on nothing else).
    let (rows, count) = match state.pages() {
        Ok((_, pages)) => (pages.connector_rows.clone(), pages.connectors),
        Err(AppError::NoConfiguration) => (std::sync::Arc::from(""), 0),
        Err(e) => return Err(e.into()),
    };
    let ctx = page(&state, &p, "Connectors", json!({ "count": count }));
    state
        .templates()
        .get_template("connectors.html")
        .and_then(|t| {
            t.render(minijinja::context! {
                rows => minijinja::Value::from_safe_string(rows.to_string()),
                ..minijinja::Value::from_serialize(&ctx)
            })
        })
        .map(Html)
        .map_err(|e| {
            UiError(AppError::Internal(format!(
                "template connectors.html: {e:#}"
            )))
        })
}

async fn connector_page(
    state: &AppState,
    p: &Principal,
    id: &str,
    notice: Option<Value>,
) -> Result<Html<String>, UiError> {
    let detail = views::connector(state, id).await?;
    render(
        state,
        "connector.html",
        page(
            state,
            p,
            &detail.name.clone(),
            json!({ "connector": detail, "notice": notice }),
        ),
    )
}

async fn connector(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, UiError> {
    connector_page(&state, &p, &id, None).await
}

/// The connector of a connection (to show its page after an action).
fn connector_of(state: &AppState, connection: &str) -> Result<String, UiError> {
    let engine = state.engine()?;
    engine
        .checked()
        .config
        .connections
        .iter()
        .find(|c| c.id.value.eq_ignore_ascii_case(connection))
        .map(|c| c.connector.value.clone())
        .ok_or_else(|| {
            UiError(AppError::NotFound(format!(
                "connection '{connection}' is not declared"
            )))
        })
}

async fn refresh_connector(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, UiError> {
    p.require_operator("refreshing schemas")?;
    let result = api::refresh_all(&state, &p.name, &id).await?;
    let results = result["results"].as_array().cloned().unwrap_or_default();
    let failed = results.iter().filter(|r| r["outcome"] == "failed").count();
    let notice = json!({
        "ok": failed == 0,
        "text": format!("Refresh all schemas: {} connections, {failed} failed", results.len()),
        "details": results,
    });
    connector_page(&state, &p, &id, Some(notice)).await
}

async fn refresh_connection(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, UiError> {
    p.require_operator("refreshing a schema")?;
    let connector = connector_of(&state, &id)?;
    let r = api::refresh_one(&state, &p.name, &id).await?;
    let notice = json!({
        "ok": r["outcome"] != "failed",
        "text": match r["outcome"].as_str() {
            Some("refreshed") => format!("{}: schema refreshed ({} tables, {} columns)", r["connection"].as_str().unwrap_or_default(), r["tables"], r["columns"]),
            Some("none") => format!("{}: {}", r["connection"].as_str().unwrap_or_default(), idlink_engine::snapshots::NO_SCHEMA),
            _ => format!("{}: schema refresh failed: {}", r["connection"].as_str().unwrap_or_default(), r["message"].as_str().unwrap_or_default()),
        },
    });
    connector_page(&state, &p, &connector, Some(notice)).await
}

async fn check_connection(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, UiError> {
    p.require_operator("checking a connection")?;
    let connector = connector_of(&state, &id)?;
    let r = api::check_one(&state, &p.name, &id).await?;
    let reachable = r["reachable"].as_bool().unwrap_or(false);
    let notice = json!({
        "ok": reachable,
        "text": format!(
            "{}: {}: {}",
            r["connection"].as_str().unwrap_or_default(),
            if reachable { "reachable" } else { "not reachable" },
            r["message"].as_str().unwrap_or_default()
        ),
    });
    connector_page(&state, &p, &connector, Some(notice)).await
}

async fn export_connection(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, UiError> {
    p.require_operator("exporting a connection")?;
    let connector = connector_of(&state, &id)?;
    let notice = match api::export_one(&state, &p.name, &id, &state.shutdown()).await {
        Ok(r) => {
            let rows: u64 = r["tables"]
                .as_array()
                .map(|t| t.iter().filter_map(|t| t["rows"].as_u64()).sum())
                .unwrap_or(0);
            let mut text = format!(
                "{}: exported {rows} rows",
                r["connection"].as_str().unwrap_or(&id)
            );
            // What the export noticed (a stray quote that swallowed rows) is shown with it.
            for note in r["notes"].as_array().into_iter().flatten() {
                text.push_str("; note: ");
                text.push_str(note.as_str().unwrap_or_default());
            }
            json!({ "ok": true, "text": text })
        }
        Err(e @ (AppError::Engine { .. } | AppError::NoConfiguration)) => {
            json!({ "ok": false, "text": format!("{id}: export failed: {}", e.public_message()) })
        }
        Err(e) => return Err(e.into()),
    };
    connector_page(&state, &p, &connector, Some(notice)).await
}

async fn entity_types(
    State(state): State<AppState>,
    Viewer(p): Viewer,
) -> Result<Html<String>, UiError> {
    let engine = state.engine()?;
    let mut types = views::entity_types(&engine);
    for t in &mut types {
        let id = t["id"].as_str().unwrap_or_default().to_string();
        t["count"] = json!(state.store().count_resources(&id).await?);
    }
    render(
        &state,
        "entity_types.html",
        page(&state, &p, "Resources", json!({ "types": types })),
    )
}

async fn resources(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(et): Path<String>,
    Query(q): Query<api::SearchQuery>,
) -> Result<Html<String>, UiError> {
    let engine = state.engine()?;
    let found = views::search(&state, &engine, &et, &q.q).await?;
    let properties = engine
        .checked()
        .config
        .entity_type(&et)
        .map(|e| {
            e.properties
                .iter()
                .map(|p| p.id.value.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let rows: Vec<Value> = found["resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    json!({
                        "key": r["key"],
                        "values": properties.iter().map(|p| views::value_text(&r["properties"][p])).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    render(
        &state,
        "resources.html",
        page(
            &state,
            &p,
            &format!("Resources: {et}"),
            json!({ "entityType": found["entityType"], "q": q.q, "total": found["total"], "properties": properties, "rows": rows, "limit": views::SEARCH_LIMIT }),
        ),
    )
}

async fn resource(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path((et, key)): Path<(String, String)>,
) -> Result<Html<String>, UiError> {
    let engine = state.engine()?;
    let r = views::resource(&state, &engine, &et, &key).await?;
    let properties: Vec<Value> = r["properties"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| json!({ "name": k, "value": views::value_text(v) }))
                .collect()
        })
        .unwrap_or_default();
    render(
        &state,
        "resource.html",
        page(
            &state,
            &p,
            &format!("{et}: {key}"),
            json!({ "resource": r, "properties": properties }),
        ),
    )
}

async fn audit(State(state): State<AppState>, Viewer(p): Viewer) -> Result<Html<String>, UiError> {
    let entries = api::audit_entries(&state, 200).await?;
    render(
        &state,
        "audit.html",
        page(&state, &p, "Audit log", json!({ "entries": entries })),
    )
}

async fn configuration(
    State(state): State<AppState>,
    Viewer(p): Viewer,
) -> Result<Html<String>, UiError> {
    let view = api::configuration_view(&state);
    render(
        &state,
        "configuration.html",
        page(
            &state,
            &p,
            "Configuration",
            json!({ "configuration": view }),
        ),
    )
}

/// A setting's value as the connection page shows it: secured values as `??????` (or nothing
/// when not set), secured key-value options as their keys with `??????`.
fn shown_value(v: &Value) -> Option<String> {
    fn text(v: &Value) -> String {
        match v {
            Value::Object(o) if o.get("secured") == Some(&Value::Bool(true)) => {
                if o.get("set") == Some(&Value::Bool(true)) {
                    "??????".into()
                } else {
                    String::new()
                }
            }
            Value::Object(o) => {
                let inner: Vec<String> =
                    o.iter().map(|(k, v)| format!("{k}: {}", text(v))).collect();
                format!("{{ {} }}", inner.join(", "))
            }
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(text).collect();
                format!("[{}]", inner.join(", "))
            }
            other => views::value_text(other),
        }
    }
    match v {
        Value::Null => None,
        Value::Object(o)
            if o.get("secured") == Some(&Value::Bool(true))
                && o.get("set") != Some(&Value::Bool(true)) =>
        {
            None
        }
        other => Some(text(other)),
    }
}

async fn connection(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, UiError> {
    connection_page(&state, &p, &id, None).await
}

/// The connection page: the settings form for an administrator, the settings read-only for
/// an operator.
async fn connection_page(
    state: &AppState,
    p: &Principal,
    id: &str,
    notice: Option<Value>,
) -> Result<Html<String>, UiError> {
    let engine = state.engine()?;
    let detail = views::connection(state, &engine, id).await?;
    let package = detail["package"].as_str().unwrap_or_default().to_string();
    let values = detail["settings"].as_object().cloned().unwrap_or_default();
    let mut settings = Vec::new();
    let mut form = Value::Null;
    if let Some(info) = engine.registry().get_static(&package) {
        for f in info.settings.fields {
            let value = values
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(f.name))
                .and_then(|(_, v)| shown_value(v));
            if f.no_effect.is_some() && value.is_none() {
                continue;
            }
            settings.push(json!({
                "name": f.name,
                "kind": f.kind.describe(),
                "required": f.required,
                "secured": f.secured,
                "doc": f.doc,
                "value": value,
            }));
        }
        if p.role == auth::Role::Administrator
            && info.availability == idlink_model::package::Availability::Supported
        {
            let current = engine
                .checked()
                .settings
                .connection(detail["id"].as_str().unwrap_or(id))
                .map(|s| s.entries.clone())
                .unwrap_or_default();
            form = json!(crate::configure::form_fields(info.settings, &current, ""));
        }
    }
    let name = detail["name"].as_str().unwrap_or(id).to_string();
    render(
        state,
        "connection.html",
        page(
            state,
            p,
            &name,
            json!({ "connection": detail, "settings": settings, "form": form, "notice": notice }),
        ),
    )
}

/// A refused edit as a notice: the message, and the check's errors when there are some.
fn edit_notice(e: &AppError) -> Value {
    let problems = match e {
        AppError::Invalid(p) => json!(p),
        _ => Value::Null,
    };
    let text = match e {
        AppError::Invalid(_) => {
            "The change does not pass check, so nothing was written:".to_string()
        }
        other => other.public_message(),
    };
    json!({ "ok": false, "text": text, "problems": problems })
}

fn is_refusal(e: &AppError) -> bool {
    matches!(
        e,
        AppError::Invalid(_) | AppError::BadRequest(_) | AppError::Engine { .. }
    )
}

async fn save_settings(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    p.require_admin("editing connection settings")?;
    let engine = state.engine()?;
    let connection = engine.checked().config.connection(&id).ok_or_else(|| {
        UiError(AppError::NotFound(format!(
            "connection '{id}' is not declared"
        )))
    })?;
    let cid = connection.id.value.clone();
    let info = engine
        .registry()
        .get_static(&connection.package.value)
        .ok_or_else(|| UiError(AppError::BadRequest("unknown package".into())))?;
    let current = engine
        .checked()
        .settings
        .connection(&cid)
        .map(|s| s.entries.clone())
        .unwrap_or_default();
    let patch = crate::configure::form_patch(info.settings, &current, &form, "");
    drop(engine);
    let notice = match crate::configure::update_settings(&state, &p.name, &cid, &patch).await {
        Ok(u) if u.changes.is_empty() => json!({ "ok": true, "text": "Nothing changed." }),
        Ok(u) => {
            let warnings: String = u
                .warnings
                .iter()
                .map(|w| format!(" Warning: {w}."))
                .collect();
            json!({ "ok": true, "text": format!("Saved: {}.{warnings}", u.changes.join("; ")) })
        }
        Err(e) if is_refusal(&e) => {
            let html = connection_page(&state, &p, &cid, Some(edit_notice(&e))).await?;
            return Ok((e.status(), html).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(connection_page(&state, &p, &cid, Some(notice))
        .await?
        .into_response())
}

async fn delete_connection(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    p.require_admin("deleting a connection")?;
    let connector = connector_of(&state, &id)?;
    match crate::configure::delete(&state, &p.name, &id).await {
        Ok(cid) => Ok(connector_page(
            &state,
            &p,
            &connector,
            Some(json!({ "ok": true, "text": format!("Connection {cid} deleted.") })),
        )
        .await?
        .into_response()),
        Err(e) if is_refusal(&e) => {
            let html = connection_page(&state, &p, &id, Some(edit_notice(&e))).await?;
            Ok((e.status(), html).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct PackageQuery {
    #[serde(default)]
    package: String,
}

async fn new_connection_page(
    state: &AppState,
    p: &Principal,
    connector: &str,
    form: &crate::configure::Form,
    notice: Option<Value>,
) -> Result<Html<String>, UiError> {
    p.require_admin("creating a connection")?;
    let engine = state.engine()?;
    let detail = views::connector(state, connector).await?;
    let packages = api::packages_view(&engine);
    let get = |k: &str| {
        form.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let package = get("package");
    let fields = engine
        .registry()
        .get_static(&package)
        .filter(|i| i.availability == idlink_model::package::Availability::Supported)
        .map(|i| crate::configure::form_fields(i.settings, &[], ""));
    render(
        state,
        "new_connection.html",
        page(
            state,
            p,
            "New connection",
            json!({
                "connector": detail,
                "packages": packages,
                "package": if fields.is_some() { package } else { String::new() },
                "identifier": get("identifier"),
                "name": get("name"),
                "form": fields,
                "notice": notice,
            }),
        ),
    )
}

async fn new_connection(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(connector): Path<String>,
    Query(q): Query<PackageQuery>,
) -> Result<Html<String>, UiError> {
    let form = vec![("package".to_string(), q.package)];
    new_connection_page(&state, &p, &connector, &form, None).await
}

async fn create_connection(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(connector): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    p.require_admin("creating a connection")?;
    let engine = state.engine()?;
    let get = |k: &str| {
        form.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let package = get("package");
    let schema = engine
        .registry()
        .get_static(&package)
        .map_or(&idlink_model::package::SettingsSchema::EMPTY, |i| {
            i.settings
        });
    let new = crate::configure::NewConnection {
        identifier: get("identifier"),
        name: get("name"),
        connector: connector.clone(),
        package: package.clone(),
        settings: crate::configure::form_patch(schema, &[], &form, ""),
    };
    drop(engine);
    let id = match crate::configure::create(&state, &p.name, &new).await {
        Ok(id) => id,
        Err(e) if is_refusal(&e) => {
            // The form again, as typed (secured values are not sent back).
            let html =
                new_connection_page(&state, &p, &connector, &form, Some(edit_notice(&e))).await?;
            return Ok((e.status(), html).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let engine = state.engine()?;
    let has_schema = engine
        .registry()
        .get_static(&package)
        .is_some_and(|i| i.capabilities.schema);
    let mut text = format!("Connection {id} created");
    let mut ok = true;
    if has_schema {
        let r = api::refresh_one(&state, &p.name, &id).await?;
        match r["outcome"].as_str() {
            Some("refreshed") => text.push_str(&format!(
                "; schema refreshed ({} tables, {} columns)",
                r["tables"], r["columns"]
            )),
            _ => {
                ok = false;
                text.push_str(&format!(
                    "; its schema refresh failed: {}",
                    r["message"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    let connector = connector_of(&state, &id)?;
    Ok(connector_page(
        &state,
        &p,
        &connector,
        Some(json!({ "ok": ok, "text": text })),
    )
    .await?
    .into_response())
}

async fn mappings(
    State(state): State<AppState>,
    Viewer(p): Viewer,
) -> Result<Html<String>, UiError> {
    let engine = state.engine()?;
    let list = crate::mappings::list(&state, &engine).await?;
    render(
        &state,
        "mappings.html",
        page(&state, &p, "Mappings", json!({ "mappings": list })),
    )
}

#[derive(Debug, Deserialize)]
struct TableQuery {
    #[serde(default)]
    table: String,
}

async fn mapping_page(
    state: &AppState,
    p: &Principal,
    et: &str,
    table: &str,
    notice: Option<Value>,
) -> Result<Html<String>, UiError> {
    let engine = state.engine()?;
    let m = crate::mappings::editor(state, &engine, et).await?;
    let sources = m["sources"].as_array().cloned().unwrap_or_default();
    let pick = |name: &str| {
        sources
            .iter()
            .find(|s| {
                s["table"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(name))
            })
            .cloned()
    };
    let chosen = pick(table)
        .or_else(|| pick(m["connectionTable"].as_str().unwrap_or_default()))
        .or_else(|| sources.first().cloned());
    let columns: Vec<String> = chosen
        .as_ref()
        .and_then(|s| s["columns"].as_array())
        .map(|c| {
            c.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mapped = m["properties"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Value> = m["entityTypeProperties"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.as_str())
        .map(|prop| {
            let cur = mapped.iter().find(|x| x["property"] == prop);
            let column = cur
                .and_then(|c| c["connectionColumn"].as_str())
                .unwrap_or_default();
            json!({
                "property": prop,
                "column": column,
                "missing": !column.is_empty() && !columns.iter().any(|c| c == column),
                "pk": cur.is_some_and(|c| c["isPrimaryKey"] == true),
                "uk": cur.is_some_and(|c| c["isUniqueKey"] == true),
                "format": cur.and_then(|c| c["format"].as_str()),
            })
        })
        .collect();
    let title = format!("Mapping {}", m["entityType"].as_str().unwrap_or(et));
    render(
        state,
        "mapping.html",
        page(
            state,
            p,
            &title,
            json!({
                "mapping": m,
                "table": chosen.as_ref().map(|s| s["table"].clone()),
                "columns": columns,
                "rows": rows,
                "notice": notice,
            }),
        ),
    )
}

async fn mapping(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(et): Path<String>,
    Query(q): Query<TableQuery>,
) -> Result<Html<String>, UiError> {
    mapping_page(&state, &p, &et, &q.table, None).await
}

async fn save_mapping(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(et): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    p.require_admin("editing an entity type mapping")?;
    let get = |k: &str| {
        form.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let table = get("connectionTable").unwrap_or_default();
    let pk = get("pk").unwrap_or_default();
    let engine = state.engine()?;
    let properties: Vec<String> = engine
        .checked()
        .config
        .entity_type_mappings
        .iter()
        .find(|m| m.id.value == et)
        .and_then(|m| engine.checked().config.entity_type(&m.id.value))
        .map(|e| e.properties.iter().map(|p| p.id.value.clone()).collect())
        .unwrap_or_default();
    drop(engine);
    let edit = crate::mappings::MappingEdit {
        connection_table: table.clone(),
        properties: properties
            .iter()
            .filter_map(|prop| {
                let column = get(&format!("col.{prop}")).filter(|c| !c.is_empty())?;
                Some(crate::mappings::PropertyEdit {
                    property: prop.clone(),
                    connection_column: column,
                    is_primary_key: pk == *prop,
                    is_unique_key: get(&format!("uk.{prop}")).is_some(),
                    format: get(&format!("fmt.{prop}")).filter(|f| !f.trim().is_empty()),
                })
            })
            .collect(),
    };
    let notice = match crate::mappings::save(&state, &p.name, &et, &edit).await {
        Ok(changes) if changes.is_empty() => json!({ "ok": true, "text": "Nothing changed." }),
        Ok(changes) => json!({ "ok": true, "text": format!("Saved: {}.", changes.join("; ")) }),
        Err(e) if is_refusal(&e) => {
            let html = mapping_page(&state, &p, &et, &table, Some(edit_notice(&e))).await?;
            return Ok((e.status(), html).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(mapping_page(&state, &p, &et, &table, Some(notice))
        .await?
        .into_response())
}

async fn tokens_page(
    state: &AppState,
    p: &Principal,
    notice: Option<Value>,
    created: Option<Value>,
) -> Result<Html<String>, UiError> {
    let list = api::tokens_view(state, p).await?;
    render(
        state,
        "tokens.html",
        page(
            state,
            p,
            "API tokens",
            json!({ "tokens": list, "notice": notice, "created": created }),
        ),
    )
}

async fn tokens(State(state): State<AppState>, Viewer(p): Viewer) -> Result<Html<String>, UiError> {
    tokens_page(&state, &p, None, None).await
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(default)]
    name: String,
}

async fn create_token(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Form(form): Form<TokenForm>,
) -> Result<Response, UiError> {
    let name = form.name.trim();
    if name.is_empty() {
        let html = tokens_page(
            &state,
            &p,
            Some(json!({ "ok": false, "text": "Give the token a name." })),
            None,
        )
        .await?;
        return Ok((StatusCode::BAD_REQUEST, html).into_response());
    }
    let token = api::new_token(&state, &p, name).await?;
    // The one time the token is shown; the page is not cached.
    let html = tokens_page(
        &state,
        &p,
        None,
        Some(json!({ "name": name, "token": token })),
    )
    .await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], html).into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    match api::revoke(&state, &p, &id).await {
        Ok(r) => Ok(tokens_page(
            &state,
            &p,
            Some(json!({ "ok": true, "text": format!("Token {} of {} revoked.", r["name"].as_str().unwrap_or_default(), r["user"].as_str().unwrap_or_default()) })),
            None,
        )
        .await?
        .into_response()),
        Err(e @ AppError::NotFound(_)) => {
            let html = tokens_page(&state, &p, Some(json!({ "ok": false, "text": e.public_message() })), None).await?;
            Ok((StatusCode::NOT_FOUND, html).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn regression_every_template_file_is_registered_and_parses() {
        let env = super::templates();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for file in std::fs::read_dir(dir).expect("templates") {
            let name = file
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string();
            assert!(
                super::TEMPLATES.iter().any(|(n, _)| *n == name),
                "templates/{name} is not registered in TEMPLATES"
            );
        }
        for (name, _) in super::TEMPLATES {
            if let Err(e) = env.get_template(name) {
                panic!("{name}: {e:#}");
            }
        }
    }
}
