//! The HTTP client of a SCIM connection: one reqwest client (rustls) per instance, the
//! credentials, bounded responses, retries on 429 and 503, and errors that say what failed.
//!
//! - Every request takes at most `TimeOut` (connecting and reading the whole body included).
//! - A response body is at most `MaxMessageSize` bytes: a `Content-Length` announcing more
//!   fails before anything is read; a body that keeps coming fails as soon as it passes the
//!   bound. Nothing is buffered beyond it.
//! - 429 and 503 are retried up to [`MAX_RETRIES`] times, after the `Retry-After` the server
//!   gives (seconds or an HTTP date), else after 1, 2, 4, 8 s; a server asking for more than
//!   [`MAX_RETRY_WAIT`] fails at once, saying when it asked to come back. No other status is
//!   retried (the caller decides what a 404 or a 409 means).
//! - OAuth2 tokens are cached until they expire (30 s early) and fetched again once when the
//!   service answers 401.
//! - Messages name the connection, the server, the request (method and path) and the
//!   operation; they tell refused credentials (401) from an unreachable server from a TLS
//!   failure, and never hold a secured value (they go through the connection's redactor).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use idlink_secrets::{Redactor, Secret};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, Url};
use serde_json::Value;

use super::settings::{Auth, ScimSettings};
use crate::api::{Environment, PackageError};

/// Retries of a request answered 429 or 503.
pub const MAX_RETRIES: u32 = 4;
/// The longest wait idlink accepts from a `Retry-After`.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// A token is fetched again this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);
/// How much of a server's error text a message quotes.
const DETAIL_CHARS: usize = 400;

/// What messages need: the connection, the server, the redactor.
#[derive(Debug, Clone)]
pub struct Cx {
    pub connection: String,
    /// The base URL (no credentials in it).
    pub system: String,
    redactor: Redactor,
}

impl Cx {
    pub fn new(connection: &str, settings: &ScimSettings) -> Cx {
        Cx {
            connection: connection.to_string(),
            system: settings.system(),
            redactor: settings.secrets(),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// A failure of the system (`retryable`: a retry may help).
    pub fn error(
        &self,
        operation: &'static str,
        message: impl AsRef<str>,
        retryable: bool,
    ) -> PackageError {
        PackageError::System {
            connection: self.connection.clone(),
            system: self.system.clone(),
            operation,
            message: self.redact(message.as_ref()),
            retryable,
        }
    }

    /// Refused credentials.
    pub fn credentials(&self, operation: &'static str, message: impl AsRef<str>) -> PackageError {
        PackageError::Credentials {
            connection: self.connection.clone(),
            system: self.system.clone(),
            operation,
            message: self.redact(message.as_ref()),
        }
    }

    /// Malformed data from the server.
    pub fn data(&self, what: impl AsRef<str>, message: impl AsRef<str>) -> PackageError {
        PackageError::Data {
            location: format!(
                "connection '{}': {} on {}",
                self.connection,
                self.redact(what.as_ref()),
                self.system
            ),
            message: self.redact(message.as_ref()),
        }
    }
}

/// A response read whole (within `MaxMessageSize`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Date` header, as sent.
    pub date: Option<String>,
    /// The request, as messages show it (`GET /v2/Users?...`).
    pub request: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The SCIM error's `detail` (or the start of the body), for messages.
    pub fn detail(&self) -> String {
        let text = match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) => {
                let detail = v.get("detail").and_then(Value::as_str).unwrap_or("");
                let kind = v.get("scimType").and_then(Value::as_str).unwrap_or("");
                match (detail.is_empty(), kind.is_empty()) {
                    (false, false) => format!("{detail} (scimType {kind})"),
                    (false, true) => detail.to_string(),
                    (true, false) => format!("scimType {kind}"),
                    (true, true) => String::from_utf8_lossy(&self.body).into_owned(),
                }
            }
            Err(_) => String::from_utf8_lossy(&self.body).into_owned(),
        };
        let text = text.trim().replace(['\r', '\n'], " ");
        if text.chars().count() > DETAIL_CHARS {
            let cut: String = text.chars().take(DETAIL_CHARS).collect();
            format!("{cut}...")
        } else {
            text
        }
    }
}

struct Token {
    value: Secret,
    expires: Option<Instant>,
}

/// One connection's HTTP client.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    token: Mutex<Option<Token>>,
    /// One token request at a time.
    refresh: tokio::sync::Mutex<()>,
    pub cx: Cx,
    max_message: u64,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("auth", &self.auth)
            .finish()
    }
}

impl Client {
    /// Builds the client (reads `CaFile` when set).
    pub fn new(settings: &ScimSettings, env: &Environment) -> Result<Client, PackageError> {
        let cx = Cx::new(&env.connection, settings);
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("idlink/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(settings.concurrency.max(4))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(t) = settings.timeout {
            builder = builder.timeout(t).connect_timeout(t);
        }
        if let Some(ca) = &settings.ca_file {
            let path = env.base_dir.join(ca);
            let pem = std::fs::read(&path).map_err(|e| PackageError::io("read", &path, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                PackageError::Settings {
                    connection: env.connection.clone(),
                    path: "CaFile".into(),
                    message: format!("{} holds no PEM certificate: {e}", path.display()),
                }
            })?;
            if certs.is_empty() {
                return Err(PackageError::Settings {
                    connection: env.connection.clone(),
                    path: "CaFile".into(),
                    message: format!("{} holds no PEM certificate", path.display()),
                });
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| cx.error("build the HTTP client", chain(&e), false))?;
        Ok(Client {
            http,
            base: settings.base.clone(),
            auth: settings.auth.clone(),
            token: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            cx,
            max_message: settings.max_message,
            timeout: settings.timeout,
        })
    }

    /// `<base>/<segments...>?<query>`; segments are percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// How messages and dry runs show a request's target: its path and query.
    pub fn show(url: &Url) -> String {
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Whether a reference (a `$ref`, a `location`) points into this service.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Sends a request (with the credentials, retrying 429/503) and reads its response within
    /// `MaxMessageSize`. Any status comes back; transport failures are errors.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        operation: &'static str,
    ) -> Result<Reply, PackageError> {
        let request = format!("{method} {}", Client::show(url));
        let bytes = match body {
            Some(b) => Some(
                serde_json::to_vec(b)
                    .map_err(|e| self.cx.error(operation, format!("{request}: {e}"), false))?,
            ),
            None => None,
        };
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, "application/scim+json, application/json");
            if let Some(b) = &bytes {
                rb = rb
                    .header(CONTENT_TYPE, "application/scim+json")
                    .body(b.clone());
            }
            let (rb, used) = self.authorize(rb, operation).await?;
            let response = rb
                .send()
                .await
                .map_err(|e| self.transport(&e, &request, operation))?;
            let status = response.status().as_u16();
            if status == 401 && matches!(self.auth, Auth::OAuth2 { .. }) && !refreshed {
                // The token may have expired early: fetch a new one, once. Only the token
                // this request used is forgotten: requests in flight with it all come back
                // 401, and the first one's new token serves the others.
                self.forget_token(used.as_ref());
                refreshed = true;
                continue;
            }
            if (status == 429 || status == 503) && attempt < MAX_RETRIES {
                let wait = retry_after(response.headers()).unwrap_or(backoff(attempt));
                if wait > MAX_RETRY_WAIT {
                    return Err(self.cx.error(
                        operation,
                        format!(
                            "{request}: the server answered {status} and asks to come back in {} s, longer than idlink waits ({} s); run again later",
                            wait.as_secs(),
                            MAX_RETRY_WAIT.as_secs()
                        ),
                        true,
                    ));
                }
                drop(response);
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let date = response
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = self.read_body(response, &request, operation).await?;
            return Ok(Reply {
                status,
                body,
                date,
                request,
            });
        }
    }

    /// Reads a body within `MaxMessageSize`.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        request: &str,
        operation: &'static str,
    ) -> Result<Vec<u8>, PackageError> {
        let too_large = |n: String| {
            self.cx.error(
                operation,
                format!(
                    "{request}: the response {n}, more than MaxMessageSize ({} bytes); nothing more was read. Lower PageSize, or raise MaxMessageSize if the service's responses are that large",
                    self.max_message
                ),
                false,
            )
        };
        if let Some(n) = response.content_length()
            && n > self.max_message
        {
            return Err(too_large(format!("announces {n} bytes (Content-Length)")));
        }
        let mut body = Vec::with_capacity(
            response
                .content_length()
                .unwrap_or(0)
                .min(1024 * 1024)
                .try_into()
                .unwrap_or(0),
        );
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(&e, request, operation))?
        {
            if (body.len() + chunk.len()) as u64 > self.max_message {
                return Err(too_large("goes on past that".to_string()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Sends and requires a 2xx answer holding JSON.
    pub async fn json(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        operation: &'static str,
    ) -> Result<(Value, Reply), PackageError> {
        let reply = self.send(method, url, body, operation).await?;
        if !reply.ok() {
            return Err(self.status_error(&reply, operation));
        }
        let value = self.parse(&reply)?;
        Ok((value, reply))
    }

    /// A reply's body as JSON, or a data error naming the request.
    pub fn parse(&self, reply: &Reply) -> Result<Value, PackageError> {
        serde_json::from_slice(&reply.body).map_err(|e| {
            self.cx.data(
                &reply.request,
                format!(
                    "the response ({} bytes, status {}) is not valid JSON: {e}",
                    reply.body.len(),
                    reply.status
                ),
            )
        })
    }

    /// The error for a reply whose status says the request failed.
    pub fn status_error(&self, reply: &Reply, operation: &'static str) -> PackageError {
        let status = reply.status;
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let detail = reply.detail();
        let said = if detail.is_empty() {
            format!("{status} {reason}")
        } else {
            format!("{status} {reason}: {detail}")
        };
        let request = &reply.request;
        match status {
            401 => self.cx.credentials(
                operation,
                format!(
                    "{request}: the server refused {} ({said}); check them",
                    self.auth.describe()
                ),
            ),
            403 => self.cx.error(
                operation,
                format!(
                    "{request}: forbidden ({said}): the credentials were accepted but may not do this; give the account the right"
                ),
                false,
            ),
            429 | 503 => self.cx.error(
                operation,
                format!("{request}: {said}, still after {MAX_RETRIES} retries"),
                true,
            ),
            500.. => self.cx.error(operation, format!("{request}: {said}"), true),
            _ => self.cx.error(operation, format!("{request}: {said}"), false),
        }
    }

    /// A transport failure: timeout, TLS, unreachable.
    fn transport(
        &self,
        e: &reqwest::Error,
        request: &str,
        operation: &'static str,
    ) -> PackageError {
        let host = self
            .base
            .host_str()
            .map(|h| match self.base.port_or_known_default() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
            .unwrap_or_default();
        if e.is_timeout() {
            let limit = self
                .timeout
                .map_or_else(|| "no limit".to_string(), |t| format!("{} s", t.as_secs()));
            return self.cx.error(
                operation,
                format!("{request}: no complete answer within TimeOut ({limit})"),
                true,
            );
        }
        if let Some(tls) = tls_cause(e) {
            return self.cx.error(
                operation,
                format!(
                    "{request}: the TLS handshake with {host} failed ({tls}); check that Server's scheme matches the service (https only for TLS) and that its certificate is trusted (the system's authorities, or CaFile)"
                ),
                false,
            );
        }
        if e.is_connect() {
            return self.cx.error(
                operation,
                format!("{request}: cannot connect to {host}: {}", root_cause(e)),
                true,
            );
        }
        self.cx
            .error(operation, format!("{request}: {}", chain(e)), true)
    }

    /// Adds the credentials to a request; returns the OAuth2 token it used, if any.
    async fn authorize(
        &self,
        rb: reqwest::RequestBuilder,
        operation: &'static str,
    ) -> Result<(reqwest::RequestBuilder, Option<Secret>), PackageError> {
        Ok(match &self.auth {
            Auth::None => (rb, None),
            Auth::Basic { login, password } => (
                rb.basic_auth(login.expose_secret(), Some(password.expose_secret())),
                None,
            ),
            Auth::Bearer(t) => (rb.bearer_auth(t.expose_secret()), None),
            Auth::OAuth2 { .. } => {
                let token = self.token(operation).await?;
                (rb.bearer_auth(token.expose_secret()), Some(token))
            }
        })
    }

    fn cached_token(&self) -> Option<Secret> {
        let guard = self.token.lock().ok()?;
        let t = guard.as_ref()?;
        match t.expires {
            Some(e) if Instant::now() >= e => None,
            _ => Some(t.value.clone()),
        }
    }

    /// Forgets the cached token if it is `used` (a newer one stays).
    fn forget_token(&self, used: Option<&Secret>) {
        if let Ok(mut t) = self.token.lock()
            && t.as_ref().is_some_and(|c| Some(&c.value) == used)
        {
            *t = None;
        }
    }

    /// The cached OAuth2 token, or a new one from `OAuth2Url`.
    async fn token(&self, operation: &'static str) -> Result<Secret, PackageError> {
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let _one = self.refresh.lock().await;
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let (token, expires_in) = self.fetch_token(operation).await?;
        let expires = expires_in
            .map(|s| Instant::now() + Duration::from_secs(s).saturating_sub(TOKEN_MARGIN));
        if let Ok(mut t) = self.token.lock() {
            *t = Some(Token {
                value: token.clone(),
                expires,
            });
        }
        Ok(token)
    }

    async fn fetch_token(
        &self,
        operation: &'static str,
    ) -> Result<(Secret, Option<u64>), PackageError> {
        let Auth::OAuth2 {
            url,
            client_id,
            client_secret,
            account,
        } = &self.auth
        else {
            return Err(self.cx.error(operation, "no OAuth2 settings", false));
        };
        let url = match url {
            Some(u) => u.clone(),
            None => self.token_endpoint(operation).await?,
        };
        let request = format!("POST {url} (OAuth2 token)");
        let mut form: Vec<(&str, &str)> = vec![("client_id", client_id.as_str())];
        if let Some(k) = client_secret {
            form.push(("client_secret", k.expose_secret()));
        }
        match account {
            Some((login, password)) => {
                form.push(("grant_type", "password"));
                form.push(("username", login.expose_secret()));
                form.push(("password", password.expose_secret()));
            }
            None => form.push(("grant_type", "client_credentials")),
        }
        let response = self
            .http
            .post(url)
            .header(ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport(&e, &request, operation))?;
        let status = response.status().as_u16();
        let body = self.read_body(response, &request, operation).await?;
        let reply = Reply {
            status,
            body,
            date: None,
            request: request.clone(),
        };
        let value: Option<Value> = serde_json::from_slice(&reply.body).ok();
        if !reply.ok() {
            let said = value
                .as_ref()
                .map(|v| {
                    let e = v.get("error").and_then(Value::as_str).unwrap_or("");
                    let d = v
                        .get("error_description")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    format!("{e} {d}").trim().to_string()
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| reply.detail());
            let message = format!(
                "{request}: the token endpoint answered {status} ({said}) to {}",
                self.auth.describe()
            );
            return Err(if matches!(status, 400 | 401 | 403) {
                self.cx.credentials(operation, message)
            } else {
                self.cx.error(operation, message, status >= 500)
            });
        }
        let value = value.ok_or_else(|| {
            self.cx
                .data(&request, "the token endpoint's answer is not valid JSON")
        })?;
        let token = value
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.cx
                    .data(&request, "the token endpoint's answer has no access_token")
            })?;
        let expires_in = value.get("expires_in").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        });
        Ok((Secret::new(token), expires_in))
    }
}

impl Client {
    /// The token endpoint the service's origin publishes (RFC 8414 authorization server
    /// metadata, then OpenID Connect discovery).
    async fn token_endpoint(&self, operation: &'static str) -> Result<Url, PackageError> {
        let mut tried = Vec::new();
        for path in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let mut url = self.base.clone();
            url.set_path(path);
            url.set_query(None);
            tried.push(url.to_string());
            let request = format!("GET {url} (OAuth2 metadata)");
            let response = match self
                .http
                .get(url)
                .header(ACCEPT, "application/json")
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return Err(self.transport(&e, &request, operation)),
            };
            if !response.status().is_success() {
                continue;
            }
            let body = self.read_body(response, &request, operation).await?;
            let endpoint = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("token_endpoint")?.as_str().map(str::to_string))
                .and_then(|e| Url::parse(&e).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"));
            if let Some(e) = endpoint {
                return Ok(e);
            }
        }
        Err(self.cx.error(
            operation,
            format!(
                "OAuth2Url is not set and the service publishes no token endpoint ({} hold no token_endpoint); set OAuth2Url to its OAuth2 token endpoint",
                tried.join(", ")
            ),
            false,
        ))
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let now = chrono::Utc::now();
    let wait = when.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// 1, 2, 4, 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.min(5))
}

/// The error and its causes, one text ("a: b: c"), without repeats.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    for _ in 0..16 {
        let Some(err) = next else { break };
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// The innermost cause's text.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut next = e.source();
    for _ in 0..16 {
        let Some(err) = next else { break };
        last = err.to_string();
        next = err.source();
    }
    last
}

/// The TLS error in a chain, if the failure was one.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut depth = 0;
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        let io = err.downcast_ref::<std::io::Error>();
        if let Some(inner) = io.and_then(|io| io.get_ref())
            && let Some(t) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(t.to_string());
        }
        next = err.source().or_else(|| {
            io.and_then(|io| io.get_ref())
                .map(|i| i as &(dyn std::error::Error + 'static))
        });
        depth += 1;
        if depth > 16 {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        h.insert(RETRY_AFTER, later.to_rfc2822().parse().expect("header"));
        let wait = retry_after(&h).expect("date");
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        h.insert(
            RETRY_AFTER,
            "Mon, 01 Jan 2001 00:00:00 GMT".parse().expect("h"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().expect("h"));
        assert_eq!(retry_after(&h), None);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
    }

    #[test]
    fn details_come_from_scim_errors_and_are_cut() {
        let reply = |body: &str| Reply {
            status: 400,
            body: body.as_bytes().to_vec(),
            date: None,
            request: "GET /v2/Users".into(),
        };
        assert_eq!(
            reply(r#"{"detail": "bad filter", "scimType": "invalidFilter"}"#).detail(),
            "bad filter (scimType invalidFilter)"
        );
        assert_eq!(reply("plain\ntext").detail(), "plain text");
        assert!(reply(&"x".repeat(1000)).detail().ends_with("..."));
    }
}
