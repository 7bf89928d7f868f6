//! A private SCIM 2.0 service: PyPI's `scim2-server` (written by others, in memory) in a
//! virtual environment under a cache folder, started on a free `127.0.0.1` port with a bearer
//! token; and [`FaultProxy`], a small HTTP proxy that injects faults in front of it.
//!
//! The virtual environment is `$IDLINK_SCIM2_VENV`, else `/var/cache/idlink/scim2-venv`. When
//! it lacks `bin/scim2-server`, the launcher creates it (`python3 -m venv`, then `pip install
//! 'scim2-server[cursor]'`, once even when test processes start together); when that fails,
//! the error names the install line. Tests never skip for want of the server.
//!
//! One server serves many tests: with `--dynamic-tenants`, each test takes its own tenant
//! (`http://127.0.0.1:PORT/<tenant>`), a service of its own with its own resources.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::LaunchError;
use crate::process::{self, RunAs, Watched};

/// The default virtual environment.
pub const DEFAULT_VENV: &str = "/var/cache/idlink/scim2-venv";
/// The package installed (the `cursor` extra serves RFC 9865 cursors).
pub const PACKAGE: &str = "scim2-server[cursor]";

/// The virtual environment in use.
pub fn venv() -> PathBuf {
    std::env::var_os("IDLINK_SCIM2_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV))
}

/// The line that installs the server by hand.
pub fn install_line() -> String {
    package().install_line()
}

/// How a server is started.
#[derive(Debug, Clone, Default)]
pub struct ScimOptions {
    /// A `/ServiceProviderConfig` to announce (JSON), instead of the server's default (every
    /// feature but cursors).
    pub service_provider_config: Option<String>,
    /// Accept requests without a token (no `--bearer-token`).
    pub open: bool,
}

/// A scim2-server of its own, stopped when dropped.
#[derive(Debug)]
pub struct ScimServer {
    port: u16,
    token: String,
    tenants: AtomicUsize,
    _server: Watched,
}

impl ScimServer {
    /// Starts a server with the default options, panicking with the reason (and the install
    /// line): for tests.
    pub fn start() -> ScimServer {
        ScimServer::start_with(&ScimOptions::default())
    }

    /// [`ScimServer::start`] with options.
    pub fn start_with(options: &ScimOptions) -> ScimServer {
        match ScimServer::try_start(options) {
            Ok(s) => s,
            Err(e) => panic!("cannot start scim2-server: {e}"),
        }
    }

    pub fn try_start(options: &ScimOptions) -> Result<ScimServer, LaunchError> {
        let binary = ensure_installed()?;
        let mut last = None;
        for _ in 0..3 {
            match ScimServer::start_once(&binary, options) {
                Ok(s) => return Ok(s),
                Err(e) if e.0.contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LaunchError("no free port".into())))
    }

    fn start_once(binary: &Path, options: &ScimOptions) -> Result<ScimServer, LaunchError> {
        let dir = tempfile::Builder::new()
            .prefix("idlink-scim-")
            .tempdir()
            .map_err(|e| LaunchError(format!("cannot create a temporary folder: {e}")))?;
        let port = crate::free_port()?;
        let token = process::password("scimtoken");
        let mut args = vec![
            binary.display().to_string(),
            "--hostname".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--dynamic-tenants".into(),
        ];
        if !options.open {
            args.push("--bearer-token".into());
            args.push(token.clone());
        }
        if let Some(config) = &options.service_provider_config {
            let path = dir.path().join("service-provider-config.json");
            std::fs::write(&path, config)
                .map_err(|e| LaunchError(format!("cannot write {}: {e}", path.display())))?;
            args.push("--service-provider-config".into());
            args.push(path.display().to_string());
        }
        let server = Watched::spawn(dir, RunAs::current(), "TERM", &args)?;
        let s = ScimServer {
            port,
            token,
            tenants: AtomicUsize::new(0),
            _server: server,
        };
        s._server
            .wait_ready("scim2-server", Duration::from_secs(60), || {
                process::tcp_open(port)?;
                // Every tenant is created on its first request; `t0` answers readiness.
                match s.get("t0", "ServiceProviderConfig") {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => Err(format!("ServiceProviderConfig: {status} {body}")),
                    Err(e) => Err(e.0),
                }
            })?;
        Ok(s)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bearer token the server accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A tenant of its own (`t1`, `t2`, ...): a service with no resources yet.
    pub fn tenant(&self) -> String {
        format!("t{}", self.tenants.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// The base URL of a tenant, as a connection's `Server` (without `/v2`); `""` for the
    /// server's root.
    pub fn url(&self, tenant: &str) -> String {
        if tenant.is_empty() {
            format!("http://127.0.0.1:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}/{tenant}", self.port)
        }
    }

    /// `GET <tenant>/v2/<path>`: status and body.
    pub fn get(&self, tenant: &str, path: &str) -> Result<(u16, String), LaunchError> {
        self.request(tenant, "GET", path, None)
    }

    /// A request to a tenant with the token: status and body.
    pub fn request(
        &self,
        tenant: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), LaunchError> {
        let prefix = if tenant.is_empty() {
            String::new()
        } else {
            format!("/{tenant}")
        };
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {prefix}/v2/{path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\nAccept: application/scim+json\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n",
            self.port,
            self.token,
            body.len()
        );
        let raw = exchange(self.port, format!("{head}{body}").as_bytes())
            .map_err(|e| LaunchError(format!("{method} {path}: {e}")))?;
        let (status, body) = split_response(&raw)
            .ok_or_else(|| LaunchError(format!("{method} {path}: not an HTTP response")))?;
        Ok((status, String::from_utf8_lossy(body).into_owned()))
    }

    /// Creates a resource (`endpoint` such as `Users`) and returns its id; panics on failure.
    pub fn create(&self, tenant: &str, endpoint: &str, json: &str) -> String {
        let (status, body) = self
            .request(tenant, "POST", endpoint, Some(json))
            .unwrap_or_else(|e| panic!("create in {endpoint}: {e}"));
        assert_eq!(status, 201, "create in {endpoint}: {body}");
        let key = "\"id\": \"";
        let start = body
            .find(key)
            .map(|i| i + key.len())
            .unwrap_or_else(|| panic!("no id in {body}"));
        let end = body[start..].find('"').map_or(body.len(), |i| start + i);
        body[start..end].to_string()
    }
}

/// Installs the server into the cache venv when missing (one process at a time).
fn ensure_installed() -> Result<PathBuf, LaunchError> {
    package().ensure()
}

fn package() -> crate::venv::PyPackage<'static> {
    crate::venv::PyPackage {
        venv: venv(),
        package: PACKAGE,
        executable: "scim2-server",
    }
}

/// Sends `request` to `127.0.0.1:port` and reads until the server closes.
fn exchange(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// Status and body of a whole HTTP response.
fn split_response(raw: &[u8]) -> Option<(u16, &[u8])> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, &raw[end + 4..]))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request the proxy received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header lines (name, value).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of a query parameter (not decoded).
    pub fn query(&self, name: &str) -> Option<&str> {
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// What the proxy does with a request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Passes it to the server and its answer back.
    Forward,
    /// Forwards it with these headers set (replacing those of the same name).
    ForwardWith(Vec<(String, String)>),
    /// Answers itself.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Waits, then forwards (a slow server).
    Delay(Duration),
    /// Writes these bytes as the answer, then closes.
    Raw(Vec<u8>),
    /// Writes this head, then body bytes without end (until the client goes away).
    Endless { head: Vec<u8> },
}

impl Fault {
    /// A JSON answer.
    pub fn json(status: u16, body: &str) -> Fault {
        Fault::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/scim+json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Decides what to do with the n-th request (from 0).
pub type Rule = Box<dyn Fn(&Request, usize) -> Fault + Send + Sync>;

/// An HTTP proxy on `127.0.0.1` in front of a server, injecting faults; stopped when dropped.
pub struct FaultProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .finish()
    }
}

impl FaultProxy {
    /// A proxy to `127.0.0.1:upstream` applying `rule`; panics when it cannot bind.
    pub fn start(upstream: u16, rule: Rule) -> FaultProxy {
        FaultProxy::start_on(0, upstream, rule)
    }

    /// [`FaultProxy::start`] on a given port (0: any free one), for rules that must know
    /// the proxy's own address.
    pub fn start_on(port: u16, upstream: u16, rule: Rule) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        let port = listener.local_addr().expect("port").port();
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let rule = Arc::new(rule);
        let count = Arc::new(AtomicUsize::new(0));
        let (stop2, log2, open2) = (stop.clone(), log.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let (Ok(mut list), Ok(c)) = (open2.lock(), conn.try_clone()) {
                    list.push(c);
                }
                let (rule, count, log, stop) =
                    (rule.clone(), count.clone(), log2.clone(), stop2.clone());
                std::thread::spawn(move || serve(conn, upstream, &rule, &count, &log, &stop));
            }
        });
        FaultProxy {
            port,
            stop,
            log,
            open,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL of a tenant through the proxy (see [`ScimServer::url`]).
    pub fn url(&self, tenant: &str) -> String {
        if tenant.is_empty() {
            format!("http://127.0.0.1:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}/{tenant}", self.port)
        }
    }

    /// The requests seen so far (`METHOD target`).
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(list) = self.open.lock() {
            for c in list.iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves the requests of one client connection (keep-alive: several in a row).
fn serve(
    mut conn: TcpStream,
    upstream: u16,
    rule: &Rule,
    count: &AtomicUsize,
    log: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let _ = conn.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(request) = read_request(&mut conn, &mut buf) else {
            return;
        };
        if let Ok(mut l) = log.lock() {
            l.push(format!("{} {}", request.method, request.target));
        }
        let n = count.fetch_add(1, Ordering::SeqCst);
        let fault = rule(&request, n);
        let keep = match fault {
            Fault::Forward => forward(&mut conn, upstream, &request),
            Fault::ForwardWith(set) => {
                let mut r = request.clone();
                r.headers
                    .retain(|(k, _)| !set.iter().any(|(s, _)| s.eq_ignore_ascii_case(k)));
                r.headers.extend(set);
                forward(&mut conn, upstream, &r)
            }
            Fault::Delay(d) => {
                let end = Instant::now() + d;
                while Instant::now() < end {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                forward(&mut conn, upstream, &request)
            }
            Fault::Respond {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} Fault\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                conn.write_all(head.as_bytes()).is_ok() && conn.write_all(&body).is_ok()
            }
            Fault::Raw(bytes) => {
                let _ = conn.write_all(&bytes);
                false
            }
            Fault::Endless { head } => {
                if conn.write_all(&head).is_ok() {
                    let chunk = vec![b' '; 64 * 1024];
                    while !stop.load(Ordering::SeqCst) && conn.write_all(&chunk).is_ok() {}
                }
                false
            }
        };
        if !keep {
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Reads one request (head and Content-Length body).
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let mut parts = first.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let start = head_end + 4;
    while buf.len() < start + length {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[start..start + length].to_vec();
    buf.drain(..start + length);
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// Passes a request to the server (one connection each) and its whole answer back; keeps
/// the client's connection when the answer has a length.
fn forward(conn: &mut TcpStream, upstream: u16, r: &Request) -> bool {
    let mut head = format!("{} {} HTTP/1.0\r\n", r.method, r.target);
    for (k, v) in &r.headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&r.body);
    let Ok(answer) = exchange(upstream, &bytes) else {
        let _ = conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return false;
    };
    // Answer as HTTP/1.1 with a length, so the client may keep its connection.
    let Some(end) = find(&answer, b"\r\n\r\n") else {
        let _ = conn.write_all(&answer);
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let body = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("HTTP/1.0 502 Bad Gateway");
    let rest = status_line
        .split_once(' ')
        .map_or("502 Bad Gateway", |(_, r)| r);
    let mut out = format!("HTTP/1.1 {rest}\r\n");
    for l in lines {
        let name = l.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    conn.write_all(out.as_bytes()).is_ok() && conn.write_all(body).is_ok()
}
