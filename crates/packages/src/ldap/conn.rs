//! Reaching a directory: servers tried in order, TLS with rustls (LDAPS or StartTLS, trusting
//! `CaFile` or the system's authorities, never "any certificate"), the bind, and errors that
//! say which server failed and why, without a secured value.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, SearchOptions};

use ldap3::StdStream;

use super::bulk::Bulk;
use super::entry::{self, RawEntry};
use super::settings::{Auth, LdapSettings, ServerSettings};
use super::wire::{self, Link, timed_out};
use crate::api::{Environment, PackageError};

/// The system's certificate authorities (Debian's `ca-certificates`), trusted when a server
/// has no `CaFile`.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What went wrong with one server, as messages tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Unreachable,
    BadCredentials,
    Tls,
    /// The server answered with an error result.
    Refused,
    /// The server sent something that is not LDAP, or a message above `MaxMessageSize`.
    Malformed,
    Other,
}

/// The context of one package operation: names for messages, secrets to remove.
#[derive(Debug, Clone)]
pub(crate) struct Cx {
    pub connection: String,
    pub system: String,
    secrets: idlink_secrets::Redactor,
    /// `TimeOut`, for messages.
    pub timeout: Option<Duration>,
    /// The relay in front of ldap3 on the server reached: why it closed, if it did.
    link: Option<Link>,
}

impl Cx {
    pub(crate) fn new(env: &Environment, settings: &LdapSettings) -> Cx {
        let system = match settings.servers.as_slice() {
            [one] => format!("LDAP server {}", one.describe()),
            many => format!(
                "LDAP servers {}",
                many.iter()
                    .map(ServerSettings::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Cx {
            connection: env.connection.clone(),
            system,
            secrets: settings.secrets(),
            timeout: settings.timeout,
            link: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Cx {
        Cx {
            connection: "Test".into(),
            system: "LDAP server ldap://127.0.0.1:1".into(),
            secrets: idlink_secrets::Redactor::new(),
            timeout: None,
            link: None,
        }
    }

    /// The same context, naming the server actually reached (and its relay).
    pub(crate) fn on(&self, server: &ServerSettings, link: Option<Link>) -> Cx {
        Cx {
            system: format!("LDAP server {}", server.describe()),
            link,
            ..self.clone()
        }
    }

    /// The class and message of an ldap3 error: the relay's reason when it closed the
    /// connection (a message too large, malformed), else [`classify`].
    pub(crate) fn explain(&self, e: &LdapError) -> (Class, String) {
        if let Some(f) = self.link.as_ref().and_then(Link::failure) {
            return f;
        }
        if let LdapError::Timeout { .. } = e {
            return timed_out(self.timeout);
        }
        classify(e)
    }

    /// Why the connection is unusable, when the relay closed it.
    pub(crate) fn broken(&self, operation: &'static str) -> Option<PackageError> {
        let (class, m) = self.link.as_ref().and_then(Link::failure)?;
        Some(self.error(operation, m, retryable(class)))
    }

    /// Removes every secret from `message`.
    pub(crate) fn redact(&self, message: &str) -> String {
        self.secrets.redact(message)
    }

    pub(crate) fn error(
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

    /// An ldap3 error during `operation`.
    pub(crate) fn ldap(&self, operation: &'static str, e: LdapError) -> PackageError {
        let (class, message) = self.explain(&e);
        self.error(operation, message, retryable(class))
    }
}

/// Whether a retry may help after a failure of this class.
pub(crate) fn retryable(class: Class) -> bool {
    matches!(class, Class::Unreachable | Class::Other)
}

/// The standard name of an LDAP result code (RFC 4511).
pub(crate) fn result_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        _ => "unknown",
    }
}

/// `result code 65 (objectClassViolation): <server text>`.
pub(crate) fn describe_code(rc: u32, text: &str) -> String {
    let mut m = format!("result code {rc} ({})", result_name(rc));
    if !text.is_empty() {
        m.push_str(": ");
        m.push_str(text);
    }
    m
}

/// [`describe_code`] of a result, with the closest existing entry when the DN is missing.
pub(crate) fn describe_result(r: &LdapResult) -> String {
    let mut m = describe_code(r.rc, &r.text);
    if !r.matched.is_empty() && r.rc == 32 {
        m.push_str(&format!(" (closest existing entry: {})", r.matched));
    }
    m
}

/// The class and message of an ldap3 error.
pub(crate) fn classify(e: &LdapError) -> (Class, String) {
    match e {
        LdapError::Io { source } => {
            if let Some(tls) = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return (Class::Tls, tls_message(&tls.to_string()));
            }
            match source.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    if source.to_string().contains("tls") || source.to_string().contains("TLS") =>
                {
                    (Class::Tls, tls_message(&source.to_string()))
                }
                _ => (
                    Class::Unreachable,
                    format!("cannot reach the server: {source}"),
                ),
            }
        }
        LdapError::Rustls { source } => (Class::Tls, tls_message(&source.to_string())),
        LdapError::DNSName { source } => (
            Class::Tls,
            tls_message(&format!("the server name is not valid for TLS: {source}")),
        ),
        LdapError::Timeout { .. } => (
            Class::Unreachable,
            "no answer within TimeOut (the TimeOut setting, in seconds; 0 waits without limit)"
                .to_string(),
        ),
        LdapError::LdapResult { result } if result.rc == 49 => (
            Class::BadCredentials,
            format!(
                "bad credentials: the server refused the bind (result code 49, invalidCredentials); check Login and Password{}",
                if result.text.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", result.text)
                }
            ),
        ),
        LdapError::LdapResult { result } => (Class::Refused, describe_result(result)),
        LdapError::EndOfStream | LdapError::ResultRecv { .. } | LdapError::OpSend { .. } => (
            Class::Unreachable,
            "the server closed the connection".to_string(),
        ),
        LdapError::FilterParsing => (
            Class::Other,
            "the filter is not an LDAP search filter (RFC 4515)".to_string(),
        ),
        other => (Class::Other, other.to_string()),
    }
}

pub(crate) fn tls_message(detail: &str) -> String {
    format!(
        "TLS failure: {detail}; check EnableSSL/StartTls, and set CaFile to the PEM file of the authority that signed the server's certificate"
    )
}

/// A bound connection to one of the servers.
#[derive(Debug)]
pub(crate) struct Session {
    pub ldap: Ldap,
    /// Index in `Servers`.
    pub server: usize,
    /// The context naming that server.
    pub cx: Cx,
    /// `TimeOut`: the wait for each response.
    pub timeout: Option<Duration>,
    /// `MaxMessageSize`.
    max_message: usize,
    /// When connecting to this server began (check-connection and schema refresh end
    /// within `TimeOut` of it).
    pub started: tokio::time::Instant,
    /// The server's settings, to open the bulk reader.
    settings: ServerSettings,
    env: Environment,
    /// The connection searches of exports use, opened on first use.
    bulk: Option<Bulk>,
}

impl Session {
    /// The deadline of a whole check-connection or schema refresh (`TimeOut` after connecting
    /// began), with `TimeOut`.
    pub(crate) fn whole_limit(&self) -> Option<(tokio::time::Instant, Duration)> {
        self.timeout.map(|t| (self.started + t, t))
    }

    /// The handle, with the response timeout set for its next operation.
    pub(crate) fn handle(&mut self) -> &mut Ldap {
        if let Some(t) = self.timeout {
            self.ldap.with_timeout(t);
        }
        &mut self.ldap
    }

    /// Closes politely (the work is done whatever happens).
    pub(crate) async fn close(mut self) {
        if let Some(b) = self.bulk.take() {
            b.close().await;
        }
        let _ = self.ldap.unbind().await;
    }

    /// The bulk reader (see `bulk.rs`), connected and bound to the same server.
    pub(crate) async fn bulk(&mut self) -> Result<&mut Bulk, PackageError> {
        if self.bulk.is_none() {
            // Like the first connection, connecting takes at most TimeOut in all.
            let open = Bulk::open(&self.settings, self.timeout, self.max_message, &self.env);
            let opened = match self.timeout {
                Some(t) => tokio::time::timeout(t, open)
                    .await
                    .unwrap_or_else(|_| Err(timed_out(Some(t)))),
                None => open.await,
            };
            let b = opened.map_err(|(class, m)| self.cx.error("connect", m, retryable(class)))?;
            self.bulk = Some(b);
        }
        match self.bulk.as_mut() {
            Some(b) => Ok(b),
            None => Err(self.cx.error("connect", "no connection", true)),
        }
    }
}

/// Tries the servers in order; the first that connects, negotiates TLS and accepts the bind
/// wins. The error names each server tried and why it failed.
pub(crate) async fn connect(
    settings: &LdapSettings,
    env: &Environment,
    cx: &Cx,
) -> Result<Session, PackageError> {
    let mut failures = Vec::new();
    let mut classes = Vec::new();
    for (i, server) in settings.servers.iter().enumerate() {
        let started = tokio::time::Instant::now();
        let attempt = connect_one(server, settings.timeout, settings.max_message, env);
        let attempt = match settings.timeout {
            Some(t) => match tokio::time::timeout(t, attempt).await {
                Ok(r) => r,
                Err(_) => Err(timed_out(Some(t))),
            },
            None => attempt.await,
        };
        match attempt {
            Ok((ldap, link)) => {
                return Ok(Session {
                    ldap,
                    server: i,
                    cx: cx.on(server, Some(link)),
                    timeout: settings.timeout,
                    max_message: settings.max_message,
                    started,
                    settings: server.clone(),
                    env: env.clone(),
                    bulk: None,
                });
            }
            Err((class, message)) => {
                classes.push(class);
                failures.push(format!("{}: {message}", server.describe()));
            }
        }
    }
    let retryable = classes.iter().any(|c| retryable(*c));
    let message = if failures.len() == 1 {
        failures.remove(0)
    } else {
        format!(
            "no server could be used ({} tried in order): {}",
            failures.len(),
            failures.join("; ")
        )
    };
    Err(cx.error("connect", message, retryable))
}

/// Connects to one server: the transport (TCP, TLS) and a relay in front of ldap3 (see
/// `wire.rs`), then ldap3's bind.
async fn connect_one(
    server: &ServerSettings,
    timeout: Option<Duration>,
    max_message: usize,
    env: &Environment,
) -> Result<(Ldap, Link), (Class, String)> {
    let transport = Bulk::transport(server, timeout, max_message, env).await?;
    let (stream, link) = wire::relay(transport)?;
    let conn_settings = LdapConnSettings::new().set_std_stream(StdStream::Unix(stream));
    let explain = |e: &LdapError| {
        link.failure().unwrap_or_else(|| match e {
            LdapError::Timeout { .. } => timed_out(timeout),
            _ => classify(e),
        })
    };
    let mut ldap = open(conn_settings, RELAY_URL)
        .await
        .map_err(|e| explain(&e))?;
    if let Some(t) = timeout {
        ldap.with_timeout(t);
    }
    if let Auth::Basic { login, password } = &server.auth {
        let bound = ldap
            .simple_bind(login.expose_secret(), password.expose_secret())
            .await
            .and_then(LdapResult::success);
        if let Err(e) = bound {
            let (class, m) = explain(&e);
            return Err((class, format!("bind: {m}")));
        }
    }
    Ok((ldap, link))
}

/// What ldap3 connects to: the relay's end of a Unix socket pair (the path is not used).
const RELAY_URL: &str = "ldapi://idlink-relay";

/// Opens the connection; its driver runs as a task of the caller's runtime.
async fn open(settings: LdapConnSettings, url: &str) -> Result<Ldap, LdapError> {
    let (conn, ldap) = LdapConnAsync::with_settings(settings, url).await?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// The rustls configuration of a server: its `CaFile`, else the system's authorities.
pub(crate) fn tls_config(
    server: &ServerSettings,
    env: &Environment,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let (path, shown) = match &server.ca_file {
        Some(f) => (env.base_dir.join(f), format!("CaFile '{f}'")),
        None => (
            std::path::PathBuf::from(SYSTEM_CAS),
            format!("the system's authorities ({SYSTEM_CAS}; no CaFile set)"),
        ),
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM file of certificates: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{shown} holds no usable certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The root DSE: what the server supports.
#[derive(Debug, Clone, Default)]
pub(crate) struct RootDse {
    pub naming_contexts: Vec<String>,
    pub subschema: Option<String>,
    pub supported_controls: Vec<String>,
    pub vendor: Option<String>,
}

/// RFC 4533 content synchronization.
pub(crate) const SYNC_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// RFC 2696 paged results.
pub(crate) const PAGED_OID: &str = "1.2.840.113556.1.4.319";

impl RootDse {
    pub(crate) fn supports(&self, oid: &str) -> bool {
        self.supported_controls.iter().any(|c| c == oid)
    }
}

/// Reads the root DSE.
pub(crate) async fn root_dse(session: &mut Session) -> Result<RootDse, PackageError> {
    let attrs = [
        "namingContexts",
        "subschemaSubentry",
        "supportedControl",
        "vendorName",
        "vendorVersion",
        "+",
    ];
    let entries = base_search(session, "", "(objectClass=*)", &attrs, "read the root DSE").await?;
    let mut dse = RootDse::default();
    if let Some(e) = entries.into_iter().next() {
        for (name, values) in e.attrs {
            let text = || {
                values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect::<Vec<_>>()
            };
            match name.to_ascii_lowercase().as_str() {
                "namingcontexts" => dse.naming_contexts = text(),
                "subschemasubentry" => dse.subschema = text().into_iter().next(),
                "supportedcontrol" => dse.supported_controls = text(),
                "vendorname" => {
                    let v = text().join(" ");
                    dse.vendor = Some(match dse.vendor.take() {
                        Some(version) => format!("{v} {version}"),
                        None => v,
                    });
                }
                "vendorversion" => {
                    let v = text().join(" ");
                    dse.vendor = Some(match dse.vendor.take() {
                        Some(name) => format!("{name} {v}"),
                        None => v,
                    });
                }
                _ => {}
            }
        }
    }
    Ok(dse)
}

/// A base-scope search returning the entry (or nothing when it does not exist).
pub(crate) async fn base_search(
    session: &mut Session,
    base: &str,
    filter: &str,
    attrs: &[&str],
    operation: &'static str,
) -> Result<Vec<RawEntry>, PackageError> {
    let result = session
        .handle()
        .with_search_options(SearchOptions::new())
        .search(base, ldap3::Scope::Base, filter, attrs.to_vec())
        .await
        .map_err(|e| session.cx.ldap(operation, e))?;
    let ldap3::SearchResult(entries, res) = result;
    if res.rc == 32 {
        return Ok(Vec::new());
    }
    if res.rc != 0 {
        return Err(session.cx.error(operation, describe_result(&res), false));
    }
    let mut out = Vec::new();
    for e in entries {
        if e.is_ref() || e.is_intermediate() {
            continue;
        }
        out.push(entry::parse(e.0).map_err(|m| session.cx.error(operation, m, false))?);
    }
    Ok(out)
}
