//! `idlink agent`: a remote agent. It enrols its public key with the server, opens a session
//! (a token only its private key can read), fetches the configuration of its own connections
//! (secured values as ciphertext to its key, decrypted here only), then pulls work over HTTPS
//! long polling: export (tables streamed back gzip-compressed, each checked by its SHA-256),
//! schema refresh and check connection. Leases are renewed while work runs; a server that
//! goes away is retried with backoff, and results are sent again until the server answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use idlink_engine::{CancellationToken, Engine, ExportOptions};
use idlink_model::SettingsSource;
use idlink_packages::Registry;
use idlink_secrets::{AgentIdentity, decrypt_value};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::protocol::{
    AgentConfiguration, Enrol, Enrolled, ExportPayload, ExportResult, ExportedTable, HASH_HEADER,
    Lease, SessionGranted, SessionRequest, TaskResult, WorkItem, kind,
};

/// What `idlink agent` was given.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's base URL (`https://…`).
    pub server: String,
    pub agent: String,
    /// The agent's age identity; created on the first start when missing.
    pub key_file: PathBuf,
    /// The agent's own folder: the configuration it receives and its work in progress.
    pub work_dir: PathBuf,
    /// A one-time enrolment token.
    pub enrol_token: Option<String>,
    /// Allow `http://` to a loopback address (tests only).
    pub insecure_loopback: bool,
    /// A PEM certificate to trust besides the system's (a private CA, a self-signed server).
    pub ca_cert: Option<PathBuf>,
    /// Tasks run at once.
    pub concurrency: usize,
    /// How long one long poll waits.
    pub wait: Duration,
    /// The agent's own `SourcesRootPaths` (`--sources-root`): when given, they replace the
    /// ones the server sends, and scripts must lie under them too. Empty: the server's.
    pub sources_roots: Vec<PathBuf>,
    /// Refuse encrypted values not bound to their setting and destination
    /// (`idlink agent --bound-secrets-only`, see `idlink_engine::Confinement::secrets`).
    pub bound_secrets_only: bool,
}

/// The agent's own roots, canonical: each must be an existing folder.
fn own_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, ClientError> {
    roots
        .iter()
        .map(|r| match r.canonicalize() {
            Ok(c) if c.is_dir() => Ok(c),
            Ok(_) => Err(ClientError::Options(format!(
                "--sources-root {}: not a folder",
                r.display()
            ))),
            Err(e) => Err(ClientError::Options(format!(
                "--sources-root {}: {e}",
                r.display()
            ))),
        })
        .collect()
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Options(String),
    #[error("the agent key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    /// The server refuses this agent for good (revoked, another key, not declared).
    #[error("the server refuses agent '{agent}': {message}")]
    Refused { agent: String, message: String },
    #[error("{0}")]
    Io(String),
}

/// A response that is not a success: status and the server's message.
#[derive(Debug)]
struct HttpError {
    status: Option<StatusCode>,
    message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl HttpError {
    fn transport(e: &reqwest::Error) -> HttpError {
        // reqwest's own message is the request; the reason (refused, TLS, timeout) is below.
        let mut message = format!("cannot reach the server: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        HttpError {
            status: None,
            message,
        }
    }
}

/// The largest answer the agent reads from the server (a configuration, a batch of orders).
pub const MAX_ANSWER: usize = 64 << 20;

async fn answer<T: serde::de::DeserializeOwned>(
    r: Result<reqwest::Response, reqwest::Error>,
) -> Result<Option<T>, HttpError> {
    let r = r.map_err(|e| HttpError::transport(&e))?;
    let status = r.status();
    if status == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    // Bounded: a server that lies about (or never ends) its answer cannot exhaust memory.
    let mut r = r;
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| HttpError::transport(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(HttpError {
                status: Some(status),
                message: format!("the server's answer is larger than {MAX_ANSWER} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(500).collect());
        return Err(HttpError {
            status: Some(status),
            message,
        });
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| HttpError {
            status: Some(status),
            message: format!("the server's answer cannot be read: {e}"),
        })
}

/// Checks that `url` may carry an agent's traffic: HTTPS, or HTTP to a loopback address with
/// `insecure_loopback`.
pub fn check_server_url(url: &str, insecure_loopback: bool) -> Result<reqwest::Url, ClientError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ClientError::Options(format!("--server '{url}' is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if insecure_loopback && loopback {
                Ok(parsed)
            } else if insecure_loopback {
                Err(ClientError::Options(format!(
                    "--insecure-loopback allows http:// to 127.0.0.1 only; '{url}' is not a loopback address: use https://"
                )))
            } else {
                Err(ClientError::Options(format!(
                    "agents connect over HTTPS: '{url}' is plain http (for a test on 127.0.0.1 only, add --insecure-loopback)"
                )))
            }
        }
        other => Err(ClientError::Options(format!(
            "--server '{url}': '{other}' is not https"
        ))),
    }
}

/// The agent's key: read, or created (mode 0600) on the first start.
pub fn load_or_create_key(path: &Path) -> Result<AgentIdentity, ClientError> {
    let err = |message: String| ClientError::Key {
        path: path.to_path_buf(),
        message,
    };
    if !path.exists() {
        let identity = AgentIdentity::generate();
        idlink_secrets::write_identity(path, &identity, false).map_err(|e| err(e.to_string()))?;
        return Ok(identity);
    }
    idlink_secrets::load_identity(path).map_err(|e| err(e.to_string()))
}

struct Agent {
    options: ClientOptions,
    base: reqwest::Url,
    http: reqwest::Client,
    identity: AgentIdentity,
    key_path: PathBuf,
    token: tokio::sync::RwLock<Option<String>>,
    /// The engine over the configuration received last, with its version: loaded once per
    /// version, shared by the tasks (each exports into its own folder).
    engine: tokio::sync::Mutex<Option<(String, Engine)>>,
    /// One export of a connection at a time here (its cookie is written before it runs).
    exporting: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    log: Arc<dyn Fn(&str) + Send + Sync>,
}

/// Runs the agent until `stop` (or until the server refuses it for good).
pub async fn run(
    options: ClientOptions,
    stop: CancellationToken,
    log: Arc<dyn Fn(&str) + Send + Sync>,
) -> Result<(), ClientError> {
    let base = check_server_url(&options.server, options.insecure_loopback)?;
    let mut options = options;
    options.sources_roots = own_roots(&options.sources_roots)?;
    if options.sources_roots.is_empty() {
        log(
            "note: without --sources-root, the server's configuration decides which folders \
             this agent reads and writes and which scripts it runs",
        );
    }
    let identity = load_or_create_key(&options.key_file)?;
    let key_path =
        std::path::absolute(&options.key_file).map_err(|e| ClientError::Io(e.to_string()))?;
    // A pooled connection is let go before the server closes it for idleness
    // (`http::HEADER_READ_TIMEOUT`): a request is never sent on one the server is closing.
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(crate::http::HEADER_READ_TIMEOUT / 2)
        .use_rustls_tls();
    if let Some(ca) = &options.ca_cert {
        let pem = std::fs::read(ca)
            .map_err(|e| ClientError::Options(format!("--ca-cert {}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| ClientError::Options(format!("--ca-cert {}: {e}", ca.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    let http = builder
        .build()
        .map_err(|e| ClientError::Options(e.to_string()))?;
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| ClientError::Io(format!("{}: {e}", options.work_dir.display())))?;
    let agent = Arc::new(Agent {
        options,
        base,
        http,
        identity,
        key_path,
        token: tokio::sync::RwLock::new(None),
        engine: tokio::sync::Mutex::new(None),
        exporting: std::sync::Mutex::new(std::collections::HashMap::new()),
        log,
    });
    agent.main_loop(stop).await
}

/// Backoff between attempts after a failure: 200 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((200u64 << attempt.min(5)).min(5_000))
}

impl Agent {
    fn url(&self, path: &str) -> reqwest::Url {
        let mut u = self.base.clone();
        let prefix = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{prefix}{path}"));
        u
    }

    fn say(&self, line: &str) {
        (self.log)(line);
    }

    /// Enrols (once per start; the server answers Known when nothing changed), then opens a
    /// session, waiting for an administrator's approval when needed.
    async fn connect(&self, stop: &CancellationToken) -> Result<(), ClientError> {
        let mut attempt = 0u32;
        let mut told_pending = false;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let enrol = Enrol {
                agent: self.options.agent.clone(),
                public_key: self.identity.recipient().to_string(),
                token: self.options.enrol_token.clone(),
            };
            let r: Result<Option<Enrolled>, HttpError> = answer(
                self.http
                    .post(self.url("/api/agent/enrol"))
                    .timeout(Duration::from_secs(30))
                    .json(&enrol)
                    .send()
                    .await,
            )
            .await;
            match r {
                Ok(Some(e)) if e.state == "Approved" => {}
                Ok(Some(e)) => {
                    if !told_pending {
                        self.say(&format!("agent '{}': {}", e.agent, e.message));
                        told_pending = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        () = stop.cancelled() => return Ok(()),
                    }
                    continue;
                }
                Ok(None) => {}
                Err(HttpError {
                    status: Some(s),
                    message,
                }) if s.is_client_error() && s != StatusCode::TOO_MANY_REQUESTS => {
                    return Err(ClientError::Refused {
                        agent: self.options.agent.clone(),
                        message,
                    });
                }
                Err(e) => {
                    self.say(&format!("{e}; trying again"));
                    tokio::select! {
                        () = tokio::time::sleep(backoff(attempt)) => {}
                        () = stop.cancelled() => return Ok(()),
                    }
                    attempt += 1;
                    continue;
                }
            }
            match self.open_session().await {
                Ok(()) => return Ok(()),
                Err(HttpError {
                    status: Some(StatusCode::FORBIDDEN),
                    message,
                }) => {
                    return Err(ClientError::Refused {
                        agent: self.options.agent.clone(),
                        message,
                    });
                }
                Err(e) => {
                    self.say(&format!("{e}; trying again"));
                    tokio::select! {
                        () = tokio::time::sleep(backoff(attempt)) => {}
                        () = stop.cancelled() => return Ok(()),
                    }
                    attempt += 1;
                }
            }
        }
    }

    async fn open_session(&self) -> Result<(), HttpError> {
        let granted: Option<SessionGranted> = answer(
            self.http
                .post(self.url("/api/agent/session"))
                .timeout(Duration::from_secs(30))
                .json(&SessionRequest {
                    agent: self.options.agent.clone(),
                })
                .send()
                .await,
        )
        .await?;
        let granted = granted.ok_or_else(|| HttpError {
            status: None,
            message: "the server granted no session".into(),
        })?;
        let token =
            decrypt_value(&self.identity, &granted.sealed_token).map_err(|e| HttpError {
                status: None,
                message: format!("the session token does not decrypt with this agent's key: {e}"),
            })?;
        *self.token.write().await = Some(token.expose_secret().to_string());
        Ok(())
    }

    async fn bearer(&self) -> String {
        self.token.read().await.clone().unwrap_or_default()
    }

    async fn main_loop(self: &Arc<Self>, stop: CancellationToken) -> Result<(), ClientError> {
        self.connect(&stop).await?;
        if stop.is_cancelled() {
            return Ok(());
        }
        // The configuration is fetched and loaded before any work comes, so the first task
        // does not wait for it (a failure is told; the first task tries again).
        if let Err(e) = self.engine_for("").await {
            self.say(&format!("{e}; the first task tries again"));
        }
        self.say(&format!(
            "agent '{}' connected to {}; waiting for work",
            self.options.agent, self.base
        ));
        let slots = Arc::new(tokio::sync::Semaphore::new(self.options.concurrency.max(1)));
        let mut failures = 0u32;
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return Ok(());
            };
            let wait = self.options.wait.as_secs().max(1);
            let request = self
                .http
                .get(self.url("/api/agent/work"))
                .query(&[("wait", wait.to_string())])
                .bearer_auth(self.bearer().await)
                .timeout(self.options.wait + Duration::from_secs(30))
                .send();
            let r: Result<Option<WorkItem>, HttpError> = tokio::select! {
                r = request => answer(r).await,
                () = stop.cancelled() => return Ok(()),
            };
            match r {
                Ok(Some(item)) => {
                    failures = 0;
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        let _permit = permit;
                        me.work(item).await;
                    });
                }
                Ok(None) => failures = 0,
                Err(HttpError {
                    status: Some(StatusCode::UNAUTHORIZED),
                    ..
                }) => {
                    // The session expired, or the server forgot it: a new one (refused for
                    // good when the agent was revoked).
                    self.connect(&stop).await?;
                }
                Err(e) => {
                    self.say(&format!("{e}; trying again"));
                    tokio::select! {
                        () = tokio::time::sleep(backoff(failures)) => {}
                        () = stop.cancelled() => return Ok(()),
                    }
                    failures += 1;
                }
            }
        }
    }

    /// The engine over the configuration of `version`: the one in use, or the configuration
    /// the server sends now, written into `<work>/config` and loaded.
    async fn engine_for(&self, version: &str) -> Result<Engine, String> {
        let mut current = self.engine.lock().await;
        if let Some((v, engine)) = current.as_ref()
            && v == version
        {
            return Ok(engine.clone());
        }
        let c: Option<AgentConfiguration> = answer(
            self.http
                .get(self.url("/api/agent/configuration"))
                .bearer_auth(self.bearer().await)
                .timeout(Duration::from_secs(60))
                .send()
                .await,
        )
        .await
        .map_err(|e| format!("cannot fetch the configuration: {e}"))?;
        let c = c.ok_or("the server sent no configuration")?;
        let received = c.version.clone();
        let key = self.key_path.clone();
        let dir = self.options.work_dir.join("config");
        let work = self.options.work_dir.clone();
        let roots = self.options.sources_roots.clone();
        let bound_secrets_only = self.options.bound_secrets_only;
        let engine = tokio::task::spawn_blocking(move || -> Result<Engine, String> {
            write_configuration(&dir, &c, &key, &roots)?;
            let settings = dir.join("appsettings.agent.json");
            let registry = Registry::new();
            let checked = idlink_model::load_and_check(
                &dir,
                SettingsSource {
                    path: &settings,
                    explicit: true,
                },
                std::iter::empty::<(String, String)>(),
                &registry,
            )
            .map_err(|e| format!("the configuration received does not load: {e}"))?;
            // The server checked the whole configuration; here only this agent's connections
            // have settings, so the other connections' missing settings are expected.
            let confinement = idlink_engine::Confinement {
                programs: !roots.is_empty(),
                secrets: bound_secrets_only,
            };
            Ok(Engine::confined(
                checked,
                registry,
                &dir,
                &work,
                confinement,
            ))
        })
        .await
        .map_err(|e| e.to_string())??;
        *current = Some((received, engine.clone()));
        Ok(engine)
    }

    /// The lock one connection's exports take here.
    fn export_lock(&self, connection: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.exporting.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(connection.to_ascii_lowercase()).or_default())
    }

    async fn work(self: &Arc<Self>, item: WorkItem) {
        let done = CancellationToken::new();
        let renewer = {
            let me = Arc::clone(self);
            let (done, id, lease) = (done.clone(), item.id, item.lease.clone());
            let every = Duration::from_millis(
                u64::try_from((item.lease_expires_ms - idlink_store::agents::now_ms()) / 3)
                    .unwrap_or(1_000)
                    .max(100),
            );
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = done.cancelled() => return,
                        () = tokio::time::sleep(every) => {
                            let _ = answer::<Value>(
                                me.http
                                    .post(me.url(&format!("/api/agent/tasks/{id}/renew")))
                                    .bearer_auth(me.bearer().await)
                                    .timeout(Duration::from_secs(10))
                                    .json(&Lease { lease: lease.clone() })
                                    .send()
                                    .await,
                            )
                            .await;
                        }
                    }
                }
            })
        };
        let outcome = self.execute(&item).await;
        done.cancel();
        let _ = renewer.await;
        let result = match outcome {
            Ok(v) => TaskResult {
                lease: item.lease.clone(),
                ok: Some(v),
                error: None,
                retryable: false,
            },
            Err(e) => TaskResult {
                lease: item.lease.clone(),
                ok: None,
                error: Some(e),
                retryable: false,
            },
        };
        self.post_result(item.id, &result).await;
        let _ = std::fs::remove_dir_all(self.task_dir(item.id));
    }

    fn task_dir(&self, id: i64) -> PathBuf {
        self.options.work_dir.join("tasks").join(id.to_string())
    }

    /// Sends the result until the server answers (it may be restarting); gives up when the
    /// server says the lease is gone.
    async fn post_result(&self, id: i64, result: &TaskResult) {
        for attempt in 0..60u32 {
            let r: Result<Option<Value>, HttpError> = answer(
                self.http
                    .post(self.url(&format!("/api/agent/tasks/{id}/result")))
                    .bearer_auth(self.bearer().await)
                    .timeout(Duration::from_secs(300))
                    .json(result)
                    .send()
                    .await,
            )
            .await;
            match r {
                Ok(_) => return,
                Err(HttpError {
                    status: Some(StatusCode::UNAUTHORIZED),
                    ..
                }) => {
                    let _ = self.open_session().await;
                }
                Err(HttpError {
                    status: Some(s),
                    message,
                }) if s.is_client_error() && s != StatusCode::TOO_MANY_REQUESTS => {
                    self.say(&format!(
                        "task {id}: the server refused the result: {message}"
                    ));
                    return;
                }
                Err(e) => {
                    self.say(&format!("task {id}: {e}; sending the result again"));
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    async fn execute(&self, item: &WorkItem) -> Result<Value, String> {
        let engine = self.engine_for(&item.config_version).await?;
        let opened = engine.open(&item.connection).map_err(|e| e.to_string())?;
        match item.kind.as_str() {
            kind::EXPORT => {
                let payload: ExportPayload =
                    serde_json::from_value(item.payload.clone()).unwrap_or_default();
                let lock = self.export_lock(opened.id());
                let _one_at_a_time = lock.lock().await;
                // The export starts from the server's cookie (none: a complete export).
                let file = idlink_engine::export::cookie_path(engine.work_dir(), opened.id());
                match &payload.cookie {
                    Some(cookie) => {
                        if let Some(parent) = file.parent() {
                            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                        }
                        std::fs::write(&file, cookie).map_err(|e| e.to_string())?;
                    }
                    None => match std::fs::remove_file(&file) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(format!("{}: {e}", file.display()));
                        }
                        _ => {}
                    },
                }
                // The server commits the tables durably; this copy is temporary.
                let options = ExportOptions {
                    ignore_cookies: payload.ignore_cookies,
                    output_dir: Some(self.task_dir(item.id)),
                    volatile: true,
                };
                let report = super::export_when_free(&opened, &options, &CancellationToken::new())
                    .await
                    .map_err(|e| opened.redact(&e.to_string()))?;
                let mut tables = Vec::with_capacity(report.tables.len());
                for t in &report.tables {
                    let sha256 = self
                        .upload(item, &t.name, &t.file)
                        .await
                        .map_err(|e| opened.redact(&e))?;
                    tables.push(ExportedTable {
                        name: t.name.clone(),
                        rows: t.rows,
                        bytes: t.bytes,
                        sha256,
                        columns: Vec::new(),
                    });
                }
                let cookie = match &report.cookie {
                    Some(p) => Some(std::fs::read_to_string(p).map_err(|e| e.to_string())?),
                    None => None,
                };
                let r = ExportResult {
                    package: report.package.clone(),
                    incremental: report.incremental,
                    tables,
                    cookie,
                    duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
                    notes: report.notes.clone(),
                };
                serde_json::to_value(r).map_err(|e| e.to_string())
            }
            kind::SCHEMA => {
                let schema = opened
                    .refresh_schema()
                    .await
                    .map_err(|e| opened.redact(&e.to_string()))?;
                serde_json::to_value(schema).map_err(|e| e.to_string())
            }
            kind::FULFILL => {
                let payload = serde_json::from_value(item.payload.clone())
                    .map_err(|e| format!("the orders cannot be read: {e}"))?;
                super::fulfill_answer(&opened, payload).await
            }
            kind::CHECK => Ok(super::check_answer(&opened).await),
            other => Err(format!("this agent does not know work of kind '{other}'")),
        }
    }

    /// Streams one table, gzip-compressed, with its SHA-256; retried while the server is away
    /// or the table arrived damaged. Returns the hash.
    async fn upload(&self, item: &WorkItem, table: &str, file: &Path) -> Result<String, String> {
        let path = file.to_path_buf();
        let sha256 = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut f = std::fs::File::open(&path)?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", file.display()))?;
        let url = self.url(&format!("/api/agent/tasks/{}/tables/{table}", item.id));
        let mut last = String::new();
        for attempt in 0..8u32 {
            let f = tokio::fs::File::open(file)
                .await
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let gz =
                async_compression::tokio::bufread::GzipEncoder::new(tokio::io::BufReader::new(f));
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(gz));
            let r: Result<Option<Value>, HttpError> = answer(
                self.http
                    .put(url.clone())
                    .query(&[("lease", item.lease.as_str())])
                    .bearer_auth(self.bearer().await)
                    .header(HASH_HEADER, &sha256)
                    .header(reqwest::header::CONTENT_ENCODING, "gzip")
                    .timeout(Duration::from_secs(3600))
                    .body(body)
                    .send()
                    .await,
            )
            .await;
            match r {
                Ok(_) => return Ok(sha256),
                Err(HttpError {
                    status: Some(StatusCode::UNAUTHORIZED),
                    ..
                }) => {
                    let _ = self.open_session().await;
                }
                Err(HttpError {
                    status: Some(s),
                    message,
                }) if s.is_client_error()
                    && s != StatusCode::UNPROCESSABLE_ENTITY
                    && s != StatusCode::TOO_MANY_REQUESTS =>
                {
                    return Err(format!("table '{table}' refused: {message}"));
                }
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Err(format!("table '{table}' could not be sent: {last}"))
    }
}

/// Writes the received configuration: the XML files, and the settings with `EncryptionIdentity`
/// naming this agent's key and, when the agent has its own (`roots`), its `SourcesRootPaths`.
fn write_configuration(
    dir: &Path,
    c: &AgentConfiguration,
    key: &Path,
    roots: &[PathBuf],
) -> Result<(), String> {
    let staging = dir.with_extension("new");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    for f in &c.files {
        let rel = Path::new(&f.name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|p| !matches!(p, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "the server sent a file outside the configuration: '{}'",
                f.name
            ));
        }
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, &f.text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut settings = c.settings.clone();
    if let Value::Object(top) = &mut settings {
        top.insert(
            "EncryptionIdentity".into(),
            Value::String(key.display().to_string()),
        );
        if !roots.is_empty() {
            // Whatever the server's key is spelled as (keys are case-insensitive).
            top.retain(|k, _| !k.eq_ignore_ascii_case("SourcesRootPaths"));
            top.insert(
                "SourcesRootPaths".into(),
                Value::Array(
                    roots
                        .iter()
                        .map(|r| Value::String(r.display().to_string()))
                        .collect(),
                ),
            );
        }
    }
    let write_json = |name: &str, v: &Value| {
        let path = staging.join(name);
        let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write_json("appsettings.agent.json", &settings)?;
    if let Some(enc) = &c.encrypted {
        write_json(idlink_model::settings::ENCRYPTED_SETTINGS_FILE, enc)?;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&staging, dir).map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_with_the_flag() {
        assert!(check_server_url("https://idm.example.com/", false).is_ok());
        assert!(check_server_url("http://127.0.0.1:5000/", true).is_ok());
        assert!(check_server_url("http://[::1]:5000/", true).is_ok());
        let e = check_server_url("http://127.0.0.1:5000/", false).expect_err("refused");
        assert!(e.to_string().contains("--insecure-loopback"), "{e}");
        let e = check_server_url("http://10.0.0.5:5000/", true).expect_err("refused");
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(check_server_url("ftp://x/", false).is_err());
    }

    #[test]
    fn the_agents_own_roots_and_key_replace_the_servers_however_it_spells_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config");
        let c = AgentConfiguration {
            version: "1".into(),
            files: Vec::new(),
            settings: serde_json::json!({
                "sourcesRootPaths": ["/"],
                "EncryptionIdentity": "/the/servers.key",
                "Connections": {}
            }),
            encrypted: None,
        };
        let read = || -> Value {
            let text = std::fs::read_to_string(config.join("appsettings.agent.json"))
                .expect("settings written");
            serde_json::from_str(&text).expect("json")
        };
        let own = dir.path().join("data");
        write_configuration(
            &config,
            &c,
            Path::new("/agent.key"),
            std::slice::from_ref(&own),
        )
        .expect("writes");
        let settings = read();
        assert_eq!(
            settings,
            serde_json::json!({
                "SourcesRootPaths": [own.display().to_string()],
                "EncryptionIdentity": "/agent.key",
                "Connections": {}
            })
        );
        // Without roots of its own, the server's stay.
        write_configuration(&config, &c, Path::new("/agent.key"), &[]).expect("writes");
        assert_eq!(read()["sourcesRootPaths"], serde_json::json!(["/"]));
    }
}
