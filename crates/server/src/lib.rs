//! The idlink server: the store, an engine over the running configuration, a JSON API under
//! `/api` (described by `/api/openapi.json`), a server-rendered web UI whose templates and
//! assets are embedded in the binary, authentication (users, sessions, API tokens, roles),
//! Prometheus metrics, a configuration watcher and a scheduler of the jobs with a crontab.
//!
//! The configuration folder stays the source of truth (SPEC §7.1): [`running`] watches it and
//! replaces the running configuration only with one that passes `check`; a change that does
//! not pass keeps the last valid one running and its errors are shown (file:line:col).
//!
//! [`app`] builds the whole router from an [`AppState`], so handlers are tested with
//! `tower::ServiceExt::oneshot`; [`serve`] binds, watches and shuts down gracefully.

pub mod agents;
pub mod api;
pub mod auth;
pub mod cache;
pub mod configure;
pub mod edit;
pub mod error;
pub mod http;
pub mod jobs;
pub mod mappings;
pub mod metrics;
mod nul;
pub mod openapi;
pub mod pages;
pub mod running;
pub mod scheduler;
pub mod serve;
pub mod state;
pub mod tls;
pub mod ui;
mod views;

pub use error::{AppError, ErrorKind, ServerError};
pub use running::Paths;
pub use scheduler::ScheduleOptions;
pub use serve::{Options, Server, serve, start};
pub use state::AppState;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The Content-Security-Policy of every response: scripts and styles from the server itself
/// only (no inline script), no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'";

/// The whole server: health, metrics, the API and the UI, behind authentication and the
/// security headers.
pub fn app(state: AppState) -> Router {
    let headers: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    let api = api::router();
    // Inside the authentication: a body is read for NUL characters once its sender is known
    // (or the route is public, as sign-in is).
    let large = api
        .large
        .layer(axum::middleware::from_fn(nul::middleware))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::middleware,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            api::LARGE_BODY,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(api::LARGE_BODY));
    let mut router = Router::new()
        .route("/healthz", axum::routing::get(health))
        .route("/metrics", axum::routing::get(metrics::handler))
        .merge(api.router)
        .merge(ui::router())
        .layer(axum::middleware::from_fn(nul::middleware))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::middleware,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20))
        .merge(large)
        // Agents' table uploads: streamed, bounded after decompression, authenticated by the
        // agent's session (not a user's).
        .merge(agents::routes::upload_routes());
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if state.secure_cookies() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    router.with_state(state)
}

/// `/healthz`: 200 with the state of the running configuration; 503 while the store does not
/// answer.
async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let running = state.running();
    let store_ok = state.store().format_version().await.is_ok();
    let body = serde_json::json!({
        "status": if store_ok { "ok" } else { "store unavailable" },
        "configuration": if running.engine.is_some() { "running" } else { "none valid" },
        "rejectedChange": running.rejected.is_some(),
    });
    let status = if store_ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
