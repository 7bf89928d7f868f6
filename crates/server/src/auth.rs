//! Authentication and authorization: users with argon2 password hashes, sessions in
//! HttpOnly SameSite=Strict cookies (Secure under TLS) kept in the store, CSRF tokens on every
//! form and state-changing request of a session, API tokens (`Authorization: Bearer`) for
//! automation, two roles, and login rate limiting.
//!
//! Tokens (session, API, CSRF) are 32 random bytes; the store keeps the SHA-256 of session
//! and API tokens only.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::state::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "idlink_session";
/// The login form's CSRF cookie (double submit: the form carries the same value).
pub const LOGIN_COOKIE: &str = "idlink_login";
/// The header a session's state-changing API request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field forms carry it in.
pub const CSRF_FIELD: &str = "csrf";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Shortest password accepted for a new user.
pub const MIN_PASSWORD: usize = 12;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Administrator,
    /// Read, refresh schemas, check connections, export, run jobs, close tickets; no
    /// settings, mapping or user edits.
    Operator,
    /// Read only: sees every page and list, starts and changes nothing.
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "administrator" => Some(Role::Administrator),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// `an administrator`, `an operator`, `a viewer`.
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Administrator => "an administrator",
            Role::Operator => "an operator",
            Role::Viewer => "a viewer",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// Who makes a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The session's CSRF token (none for an API token).
    pub csrf: Option<String>,
}

impl Principal {
    /// Refuses an operator.
    pub fn require_admin(&self, what: &str) -> Result<(), AppError> {
        match self.role {
            Role::Administrator => Ok(()),
            Role::Operator | Role::Viewer => Err(AppError::Forbidden(format!(
                "{what} needs the administrator role; '{}' is {}",
                self.name,
                self.role.with_article()
            ))),
        }
    }

    /// Refuses a viewer (read only).
    pub fn require_operator(&self, what: &str) -> Result<(), AppError> {
        match self.role {
            Role::Administrator | Role::Operator => Ok(()),
            Role::Viewer => Err(AppError::Forbidden(format!(
                "{what} needs the operator or administrator role; '{}' is a viewer (read only)",
                self.name
            ))),
        }
    }
}

/// 32 random bytes, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("cannot hash a password: {e}")))
}

/// Whether `password` matches `hash` (false on a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so both cases take as long.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// Checks a sign-in off the async executor; the user when the password matches.
pub async fn check_password(
    state: &AppState,
    name: &str,
    password: &str,
) -> Result<Option<idlink_store::User>, AppError> {
    let user = state.store().user_by_name(name).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_string(), |u| u.password_hash.clone());
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(user.filter(|_| ok))
}

/// First start: creates `admin` when there is no user, with `password` or a generated one.
/// Returns the generated password (to print once), `None` when given or when users exist.
pub async fn ensure_admin(
    store: &idlink_store::Store,
    password: Option<&str>,
) -> Result<Option<String>, AppError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match password.filter(|p| !p.is_empty()) {
        Some(p) if p.chars().count() < MIN_PASSWORD => {
            return Err(AppError::BadRequest(format!(
                "IDLINK_ADMIN_PASSWORD is shorter than {MIN_PASSWORD} characters: choose a longer one, or unset it to have one generated"
            )));
        }
        Some(p) => (p.to_string(), false),
        None => (random_token()[..24].to_string(), true),
    };
    let hash = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || hash_password(&p))
            .await
            .map_err(|e| AppError::Internal(e.to_string()))??
    };
    store
        .create_user("admin", &hash, Role::Administrator.as_str())
        .await?;
    store
        .audit(
            "system",
            "create-user",
            "admin",
            "first start: administrator created",
        )
        .await?;
    Ok(generated.then_some(password))
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure under TLS.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool) -> String {
    let mut s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if secure {
        s.push_str("; Secure");
    }
    s
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Who the request is from: an API token, else a session cookie. A bearer token that is not
/// valid is refused outright; a stale cookie is as no cookie.
async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AppError::Unauthorized)?;
        let user = state
            .store()
            .api_token_user(&token_hash(token.trim()))
            .await?
            .ok_or(AppError::Unauthorized)?;
        let role = Role::parse(&user.role)
            .ok_or_else(|| AppError::Internal(format!("user '{}' has no known role", user.name)))?;
        return Ok(Some(Principal {
            id: user.id,
            name: user.name,
            role,
            csrf: None,
        }));
    }
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = token_hash(token);
    let session = match state.sessions().get(&hash) {
        Some(s) if s.expires_at > idlink_store::now() => s,
        _ => {
            let Some(s) = state.store().session(&hash).await? else {
                state.sessions().remove(&hash);
                return Ok(None);
            };
            state.sessions().put(hash, s.clone());
            s
        }
    };
    let role = Role::parse(&session.user.role).ok_or_else(|| {
        AppError::Internal(format!("user '{}' has no known role", session.user.name))
    })?;
    Ok(Some(Principal {
        id: session.user.id,
        name: session.user.name,
        role,
        csrf: Some(session.csrf),
    }))
}

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The principal of the request (set by [`middleware`]).
#[derive(Debug, Clone)]
pub struct Auth(pub Option<Principal>);

/// Resolves who the request is from, and refuses a state-changing request of a session that
/// does not carry the session's CSRF token (in the `X-CSRF-Token` header or a form's `csrf`
/// field).
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Agents authenticate themselves on their own endpoints (see `agents::routes`).
    if req.uri().path().starts_with("/api/agent/") {
        let mut req = req;
        req.extensions_mut().insert(Auth(None));
        return next.run(req).await;
    }
    let api = req.uri().path().starts_with("/api");
    let principal = match resolve(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => return crate::ui::error_response(api, e),
    };
    let mut req = req;
    if let Some(Principal {
        csrf: Some(expected),
        ..
    }) = &principal
        && is_unsafe(req.method())
    {
        let header = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ok = match header {
            Some(h) => same_token(&h, expected),
            None if is_form(req.headers()) => {
                let (parts, body) = req.into_parts();
                let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
                    return crate::ui::error_response(
                        api,
                        AppError::BadRequest("the form is too large".into()),
                    );
                };
                let field = form_field(&bytes, CSRF_FIELD);
                req = Request::from_parts(parts, Body::from(bytes));
                field.is_some_and(|f| same_token(&f, expected))
            }
            None => false,
        };
        if !ok {
            return crate::ui::error_response(api, AppError::Csrf);
        }
    }
    req.extensions_mut().insert(Auth(principal));
    next.run(req).await
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// One field of a URL-encoded form.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded_pairs(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
}

/// A signed-in user, for API handlers: 401 otherwise.
#[derive(Debug, Clone)]
pub struct User(pub Principal);

impl FromRequestParts<AppState> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, AppError> {
        match parts.extensions.get::<Auth>() {
            Some(Auth(Some(p))) => Ok(User(p.clone())),
            _ => Err(AppError::Unauthorized),
        }
    }
}

/// Failed sign-ins per user name and per client address: after [`LoginLimiter::MAX`] within
/// [`LoginLimiter::WINDOW`], further attempts are refused until the window passes.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    pub const MAX: usize = 5;
    pub const WINDOW: Duration = Duration::from_secs(300);

    /// Seconds to wait when any of `keys` is blocked.
    pub fn blocked(&self, keys: &[String]) -> Option<u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None;
        for k in keys {
            if let Some(times) = map.get_mut(k) {
                times.retain(|t| now.duration_since(*t) < Self::WINDOW);
                if times.len() >= Self::MAX
                    && let Some(first) = times.first()
                {
                    let left = Self::WINDOW.saturating_sub(now.duration_since(*first));
                    wait = Some(wait.unwrap_or(0).max(left.as_secs().max(1)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            map.entry(k.clone()).or_default().push(Instant::now());
        }
        // Bounded memory: forget keys whose failures are all old.
        if map.len() > 10_000 {
            let now = Instant::now();
            map.retain(|_, t| t.iter().any(|t| now.duration_since(*t) < Self::WINDOW));
        }
    }

    pub fn succeeded(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            map.remove(k);
        }
    }
}

/// Creates a session for `user`: the cookie to set and the CSRF token.
pub async fn start_session(
    state: &AppState,
    user: &idlink_store::User,
) -> Result<String, AppError> {
    let token = random_token();
    let csrf = random_token();
    let expires = idlink_store::now()
        + chrono::Duration::from_std(SESSION_LIFETIME).unwrap_or(chrono::Duration::hours(12));
    state
        .store()
        .create_session(&token_hash(&token), user.id, &csrf, expires)
        .await?;
    Ok(set_cookie(
        SESSION_COOKIE,
        &token,
        Some(SESSION_LIFETIME),
        state.secure_cookies(),
    ))
}

/// Ends the request's session, if any; the cookie that clears it.
pub async fn end_session(state: &AppState, headers: &HeaderMap) -> Result<String, AppError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        let hash = token_hash(token);
        state.sessions().remove(&hash);
        state.store().delete_session(&hash).await?;
    }
    Ok(set_cookie(
        SESSION_COOKIE,
        "",
        Some(Duration::ZERO),
        state.secure_cookies(),
    ))
}
