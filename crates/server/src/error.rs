//! Errors: [`ServerError`] for starting the server, [`AppError`] for handlers (one type
//! implementing `IntoResponse`: internal errors are logged and shown as a generic 500).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use idlink_engine::EngineError;
use idlink_store::StoreError;

/// What kind of failure a [`ServerError`] is (exit codes derive from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An option or file is wrong: fix it, a retry will not help.
    Configuration,
    /// The store or the address is unavailable: a retry may help.
    Unavailable,
    /// A local file could not be read.
    Io,
    /// idlink broke its own contract.
    Bug,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}; choose another address with --listen")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create the first administrator: {0}")]
    Admin(String),
    #[error("the server stopped: {0}")]
    Serve(String),
}

impl ServerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServerError::Listen { .. } => ErrorKind::Unavailable,
            ServerError::Tls(_) | ServerError::Admin(_) => ErrorKind::Configuration,
            ServerError::Store(e) => match e.kind() {
                idlink_store::ErrorKind::Configuration => ErrorKind::Configuration,
                idlink_store::ErrorKind::Unavailable => ErrorKind::Unavailable,
                idlink_store::ErrorKind::Io => ErrorKind::Io,
                idlink_store::ErrorKind::Data | idlink_store::ErrorKind::Bug => ErrorKind::Bug,
            },
            ServerError::Serve(_) => ErrorKind::Io,
        }
    }
}

/// Why a request failed. The message is shown to the user: it never holds a secret (engine
/// and package messages are redacted by the connection before they get here).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("sign in first")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("the CSRF token is missing or wrong: reload the page and try again")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("too many failed sign-ins: try again in {0} s")]
    TooManyRequests(u64),
    #[error(
        "no valid configuration is running: fix the errors shown on the configuration page (the folder is checked again on every change)"
    )]
    NoConfiguration,
    /// The engine refused or failed; the status derives from the error's kind.
    #[error("{message}")]
    Engine {
        kind: idlink_engine::ErrorKind,
        not_found: bool,
        message: String,
    },
    /// An edit that does not pass check: nothing was written.
    #[error("the change does not pass check, so nothing was written: {}", show_problems(.0))]
    Invalid(Vec<crate::running::Problem>),
    /// A bug or an unavailable store: logged in full, shown as a generic message.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        use idlink_engine::ErrorKind as K;
        match self {
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::NoConfiguration => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Engine {
                not_found: true, ..
            } => StatusCode::NOT_FOUND,
            AppError::Engine { kind, .. } => match kind {
                K::Configuration | K::Data => StatusCode::CONFLICT,
                K::Unavailable | K::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
                K::Credentials | K::Refused => StatusCode::BAD_GATEWAY,
                K::Io | K::Bug => StatusCode::INTERNAL_SERVER_ERROR,
            },
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown (generic for internal errors, which are logged instead).
    pub fn public_message(&self) -> String {
        if let AppError::Internal(detail) = self {
            tracing::error!(error = %detail, "internal error");
            return "internal error: the server log has the details".into();
        }
        self.to_string()
    }

    /// An engine error, with `redact` applied to its message.
    pub fn engine(e: &EngineError, redact: impl Fn(&str) -> String) -> AppError {
        AppError::Engine {
            kind: e.kind(),
            not_found: matches!(
                e,
                EngineError::UnknownConnection { .. } | EngineError::UnknownConnector { .. }
            ),
            message: redact(&e.to_string()),
        }
    }
}

fn show_problems(problems: &[crate::running::Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            let hint = p
                .hint
                .as_ref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            format!("{}: {}{hint}", p.location, p.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        AppError::engine(&e, str::to_string)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = serde_json::json!({
            "error": { "status": status.as_u16(), "message": self.public_message() }
        });
        if let AppError::Invalid(problems) = &self {
            body["error"]["problems"] = serde_json::json!(problems);
        }
        let mut response = (status, Json(body)).into_response();
        if let AppError::TooManyRequests(secs) = self
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}
