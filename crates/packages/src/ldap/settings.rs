//! Settings of the LDAP packages (`Usercube.LDAP` and `Usercube.OpenLDAP` share them).
//!
//! Two documented shapes are read: the LDAP page's `Servers[]` + `Tables[]`, and the OpenLDAP
//! page's flat form (`Server`, `DistinguishedName`, `Login`, `Password`, `Filter`, `Scope`,
//! `SSL` at the connection level), which stands for one server and one `entries` table.

use std::time::Duration;

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};
use idlink_secrets::{Redactor, Secret};

use crate::api::{PackageError, parse_settings};

/// The fields of the LDAP page's shape.
const LIST_SHAPE: &[&str] = &["Servers", "Tables"];
/// The fields of the OpenLDAP page's flat shape.
const FLAT_SHAPE: &[&str] = &[
    "Server",
    "DistinguishedName",
    "Login",
    "Password",
    "SSL",
    "Filter",
    "Scope",
];

const SCOPES: &[&str] = &["Base", "OneLevel", "Subtree"];

/// `Servers[]`, `Tables[]` (or the flat shape) and search limits.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::optional(
            "Servers",
            Kind::ObjectList(&SERVER),
            "servers to try, in order (LDAP page's shape; with Tables)",
        ),
        Field::optional(
            "Tables",
            Kind::ObjectList(&TABLE),
            "searches; one table must be `entries` (LDAP page's shape; with Servers)",
        ),
        Field::optional(
            "Server",
            Kind::String,
            "host or host:port of the one server (OpenLDAP page's flat shape)",
        )
        .destination(),
        Field::optional(
            "DistinguishedName",
            Kind::String,
            "DN the `entries` search starts from (flat shape; required with Server)",
        ),
        Field::optional("Login", Kind::String, "DN to bind as (flat shape)").secured(),
        Field::optional(
            "Password",
            Kind::String,
            "password of the bind DN (flat shape)",
        )
        .secured(),
        Field::optional("SSL", Kind::Bool, "connect with LDAPS (flat shape)"),
        Field::optional(
            "Filter",
            Kind::String,
            "LDAP search filter of the `entries` table (flat shape; default (objectClass=*))",
        ),
        Field::optional(
            "Scope",
            Kind::Enum(SCOPES),
            "search depth of the `entries` table (flat shape; default Subtree)",
        ),
        Field::optional(
            "SizeLimit",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "most entries a search returns (0: no limit)",
        ),
        Field::optional(
            "TimeLimit",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "longest a search may run on the server, in seconds (0: no limit)",
        ),
        Field::optional(
            "TimeOut",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "seconds (default 120; 0: no limit). Connecting to one server (TCP, TLS, bind) takes at most TimeOut, else the next server is tried; check-connection and schema refresh take at most TimeOut in all on the server that answered; export and fulfill wait at most TimeOut for each complete response message (a server sending a message slowly, byte by byte, does not stretch it)",
        ),
        Field::optional(
            "MaxMessageSize",
            Kind::Int {
                min: 1024,
                max: i32::MAX as i64,
            },
            "largest LDAP message accepted from the server, in bytes (default 16777216, 16 MiB; one entry with its values is one message, so raise it for entries with larger photos or groups with more members). A message announcing more fails at once, before it is read",
        ),
        Field::optional(
            "PageSize",
            Kind::Int {
                min: 1,
                max: 100_000,
            },
            "entries per page when PagedResult is on (default 1000)",
        ),
        Field::optional(
            "DefaultObjectClass",
            Kind::StringList,
            "object classes of entries added by fulfill when an order names none",
        ),
        Field::optional(
            "IsLdapPasswordReset",
            Kind::Bool,
            "fulfill sets userPassword when an order carries a password",
        ),
        Field::optional(
            "AsAdLds",
            Kind::Bool,
            "the directory is an AD LDS instance (documented as required for fulfill; false and absent mean the same)",
        )
        .refusing(&[("true", AS_AD_LDS_REFUSED)]),
        Field::no_effect(
            "TimeFormat",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "the OpenLDAP page describes it as a request timeout under another name; idlink's wait is TimeOut",
        ),
        Field::no_effect(
            "WaitingTimeInSeconds",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "paces the polling of a persistent syncrepl phase; idlink's incremental export is one refreshOnly pass per run, with no persistent phase",
        ),
    ],
    constraints: &[
        Constraint::AtLeastOne(&["Servers", "Server"]),
        Constraint::OneShapeOf(&[LIST_SHAPE, FLAT_SHAPE]),
    ],
};

const AS_AD_LDS_REFUSED: &str = "idlink does not implement AD LDS specifics (unicodePwd passwords, msDS-UserAccountDisabled): it manages standard LDAP v3 directories only; set AsAdLds to false or remove it";

const NEGOTIATE_REFUSED: &str = "Kerberos (GSS-API) binds are not implemented: idlink binds anonymously or with a simple bind (over TLS with EnableSSL or StartTls); set AuthType to Basic with Login and Password";

/// One element of `Servers`.
pub static SERVER: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "Server",
            Kind::String,
            "host name or address, with an optional :port",
        )
        .destination(),
        Field::optional(
            "AuthType",
            Kind::Enum(&["Anonymous", "Basic", "Negotiate"]),
            "how to bind: Anonymous, or Basic with Login and Password (absent: Basic when Login is given, else Anonymous; the page's default, Negotiate, is refused)",
        )
        .refusing(&[("Negotiate", NEGOTIATE_REFUSED)]),
        Field::optional("Login", Kind::String, "DN to bind as").secured(),
        Field::optional("Password", Kind::String, "password of the bind DN").secured(),
        Field::optional(
            "Controls",
            Kind::StringList,
            "LDAP controls to use: PagedResult (paged searches); DomainScope is accepted without effect (idlink follows no referral)",
        ),
        Field::optional("EnableSSL", Kind::Bool, "connect with LDAPS"),
        Field::optional(
            "StartTls",
            Kind::Bool,
            "upgrade the connection with StartTLS",
        ),
        Field::optional(
            "CaFile",
            Kind::String,
            "PEM file of the CA certificates to trust",
        ),
        Field::no_effect(
            "NoSigning",
            Kind::Bool,
            "turns off Kerberos signing; idlink binds anonymously or with a simple bind (over TLS when asked), never with Kerberos",
        ),
    ],
    constraints: &[Constraint::RequiresWhen {
        field: "AuthType",
        equals: "Basic",
        then: &["Login", "Password"],
    }],
};

/// One element of `Tables`.
pub static TABLE: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "Table",
            Kind::String,
            "table name, suffix of the output file",
        ),
        Field::required("BaseDN", Kind::String, "DN the search starts from"),
        Field::optional("Filter", Kind::String, "LDAP search filter"),
        Field::optional("Scope", Kind::Enum(SCOPES), "search depth"),
    ],
    constraints: &[],
};

/// Port of plain LDAP (and StartTLS).
pub const LDAP_PORT: u16 = 389;
/// Port of LDAPS.
pub const LDAPS_PORT: u16 = 636;
/// Entries per page when `PageSize` is not set.
pub const DEFAULT_PAGE_SIZE: i32 = 1000;
/// The wait for each response when `TimeOut` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest message accepted when `MaxMessageSize` is not set (16 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain LDAP.
    None,
    /// LDAPS (`EnableSSL`): TLS from the first byte.
    Ldaps,
    /// Plain LDAP upgraded with StartTLS.
    StartTls,
}

/// How to bind.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No bind.
    Anonymous,
    /// Simple bind with a DN and a password.
    Basic { login: Secret, password: Secret },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { .. } => f.write_str("Basic(**REDACTED**)"),
        }
    }
}

/// One element of `Servers`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Host name or address.
    pub host: String,
    pub port: u16,
    pub auth: Auth,
    /// `Controls` lists `PagedResult`.
    pub paged: bool,
    pub tls: Tls,
    /// `CaFile` as written (resolved against the settings folder when connecting).
    pub ca_file: Option<String>,
}

impl ServerSettings {
    /// `host:port`, what messages call the server.
    pub fn describe(&self) -> String {
        let scheme = match self.tls {
            Tls::None => "ldap",
            Tls::Ldaps => "ldaps",
            Tls::StartTls => "ldap+starttls",
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The URL ldap3 connects to.
    pub fn url(&self) -> String {
        let scheme = if self.tls == Tls::Ldaps {
            "ldaps"
        } else {
            "ldap"
        };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Search scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Base,
    OneLevel,
    Subtree,
}

/// One element of `Tables`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSettings {
    /// `entries`, or the name of a link attribute (its table reads only that attribute).
    pub table: String,
    pub base_dn: String,
    pub filter: String,
    pub scope: Scope,
}

/// The checked settings of an LDAP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapSettings {
    pub servers: Vec<ServerSettings>,
    /// `entries` first.
    pub tables: Vec<TableSettings>,
    /// 0: no limit.
    pub size_limit: i32,
    /// Seconds; 0: no limit.
    pub time_limit: i32,
    /// Wait for each response; `None`: no limit.
    pub timeout: Option<Duration>,
    /// `MaxMessageSize`: the largest message read from a server, in bytes.
    pub max_message: usize,
    pub page_size: i32,
    pub default_object_class: Vec<String>,
    pub password_reset: bool,
}

impl LdapSettings {
    /// The `entries` table.
    pub fn entries(&self) -> &TableSettings {
        &self.tables[0]
    }

    /// The secured values, to remove from any message.
    pub fn secrets(&self) -> Redactor {
        let mut out = Redactor::new();
        for s in &self.servers {
            if let Auth::Basic { login, password } = &s.auth {
                out.add(password.expose_secret());
                out.add(login.expose_secret());
            }
        }
        out
    }
}

#[derive(Debug, serde::Deserialize)]
struct RawServer {
    #[serde(rename = "Server")]
    server: String,
    #[serde(rename = "AuthType", default)]
    auth_type: Option<String>,
    #[serde(rename = "Login", default)]
    login: Option<Secret>,
    #[serde(rename = "Password", default)]
    password: Option<Secret>,
    #[serde(rename = "Controls", default)]
    controls: Option<OneOrMany>,
    #[serde(rename = "EnableSSL", default)]
    enable_ssl: Option<bool>,
    #[serde(rename = "StartTls", default)]
    start_tls: Option<bool>,
    #[serde(rename = "CaFile", default)]
    ca_file: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct RawTable {
    #[serde(rename = "Table")]
    table: String,
    #[serde(rename = "BaseDN")]
    base_dn: String,
    #[serde(rename = "Filter", default)]
    filter: Option<String>,
    #[serde(rename = "Scope", default)]
    scope: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Raw {
    #[serde(rename = "Servers", default)]
    servers: Option<Vec<RawServer>>,
    #[serde(rename = "Server", default)]
    server: Option<String>,
    #[serde(rename = "DistinguishedName", default)]
    distinguished_name: Option<String>,
    #[serde(rename = "Login", default)]
    login: Option<Secret>,
    #[serde(rename = "Password", default)]
    password: Option<Secret>,
    #[serde(rename = "SSL", default)]
    ssl: Option<bool>,
    #[serde(rename = "Filter", default)]
    filter: Option<String>,
    #[serde(rename = "Scope", default)]
    scope: Option<String>,
    #[serde(rename = "AsAdLds", default)]
    as_ad_lds: Option<bool>,
    #[serde(rename = "Tables", default)]
    tables: Option<Vec<RawTable>>,
    #[serde(rename = "SizeLimit", default)]
    size_limit: Option<i64>,
    #[serde(rename = "TimeLimit", default)]
    time_limit: Option<i64>,
    #[serde(rename = "TimeOut", default)]
    timeout: Option<i64>,
    #[serde(rename = "PageSize", default)]
    page_size: Option<i64>,
    #[serde(rename = "MaxMessageSize", default)]
    max_message: Option<i64>,
    #[serde(rename = "DefaultObjectClass", default)]
    default_object_class: Option<OneOrMany>,
    #[serde(rename = "IsLdapPasswordReset", default)]
    password_reset: Option<bool>,
}

/// A list, or one string of values separated by spaces or commas.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<String>),
    One(String),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        let split = |s: &str| -> Vec<String> {
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        match self {
            OneOrMany::Many(v) => v.iter().flat_map(|s| split(s)).collect(),
            OneOrMany::One(s) => split(&s),
        }
    }
}

/// The OpenLDAP page's flat shape as one server and one `entries` table; the LDAP page's
/// shape as written. Mixing the two is refused, naming what to keep.
fn servers_and_tables(
    raw: &mut Raw,
    err: impl Fn(String, String) -> PackageError,
) -> Result<(Vec<RawServer>, Vec<RawTable>), PackageError> {
    let flat: Vec<&str> = [
        ("Server", raw.server.is_some()),
        ("DistinguishedName", raw.distinguished_name.is_some()),
        ("Login", raw.login.is_some()),
        ("Password", raw.password.is_some()),
        ("SSL", raw.ssl.is_some()),
        ("Filter", raw.filter.is_some()),
        ("Scope", raw.scope.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    let list: Vec<&str> = [
        ("Servers", raw.servers.is_some()),
        ("Tables", raw.tables.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    if !flat.is_empty() && !list.is_empty() {
        return Err(err(
            flat[0].to_string(),
            format!(
                "mixes the LDAP page's shape ({}) with the OpenLDAP page's flat shape ({}): keep either Servers and Tables, moving {} into them (Server, Login, Password into Servers[0], DistinguishedName as Tables[entries].BaseDN, Filter and Scope into Tables[entries], SSL as Servers[0].EnableSSL), or only the flat settings",
                list.join(", "),
                flat.join(", "),
                flat.join(", ")
            ),
        ));
    }
    if flat.is_empty() {
        return Ok((
            raw.servers.take().unwrap_or_default(),
            raw.tables.take().unwrap_or_default(),
        ));
    }
    let Some(server) = raw.server.take() else {
        return Err(err(
            "Server".into(),
            format!(
                "{} given without Server: add \"Server\": \"host:port\"",
                flat.join(", ")
            ),
        ));
    };
    let Some(base_dn) = raw
        .distinguished_name
        .take()
        .filter(|d| !d.trim().is_empty())
    else {
        return Err(err(
            "DistinguishedName".into(),
            "is required with Server: the DN the entries are read under, e.g. \"dc=example,dc=org\""
                .into(),
        ));
    };
    let auth_type = match (&raw.login, &raw.password) {
        (None, None) => None,
        _ => Some("Basic".to_string()),
    };
    Ok((
        vec![RawServer {
            server,
            auth_type,
            login: raw.login.take(),
            password: raw.password.take(),
            controls: None,
            enable_ssl: raw.ssl,
            start_tls: None,
            ca_file: None,
        }],
        vec![RawTable {
            table: "entries".into(),
            base_dn,
            filter: raw.filter.take(),
            scope: raw.scope.take(),
        }],
    ))
}

/// The message for a refused value, from the schema's own table (what `check` says too).
fn refused(schema: &SettingsSchema, field: &str, value: &str) -> String {
    let why = schema
        .field(field)
        .and_then(|f| f.refusal(value))
        .unwrap_or("idlink refuses this value");
    format!("is {value}, which idlink refuses: {why}")
}

/// Parses and checks the settings (no I/O). Messages name the setting, never a secured value.
pub fn parse(connection: &str, value: serde_json::Value) -> Result<LdapSettings, PackageError> {
    let mut raw: Raw = parse_settings(connection, value)?;
    let err = |path: String, message: String| PackageError::Settings {
        connection: connection.to_string(),
        path,
        message,
    };
    if raw.as_ad_lds == Some(true) {
        return Err(err("AsAdLds".into(), refused(&SETTINGS, "AsAdLds", "true")));
    }
    let (raw_servers, raw_tables) = servers_and_tables(&mut raw, err)?;
    if raw_servers.is_empty() {
        return Err(err(
            "Servers".into(),
            "list at least one server ({\"Server\": \"host:port\", ...})".into(),
        ));
    }
    let mut servers = Vec::new();
    for (i, s) in raw_servers.into_iter().enumerate() {
        let path = |field: &str| format!("Servers[{i}].{field}");
        let ldaps = s.enable_ssl.unwrap_or(false);
        let starttls = s.start_tls.unwrap_or(false);
        if ldaps && starttls {
            return Err(err(
                path("StartTls"),
                "EnableSSL (LDAPS) and StartTls exclude each other: choose one".into(),
            ));
        }
        let tls = if ldaps {
            Tls::Ldaps
        } else if starttls {
            Tls::StartTls
        } else {
            Tls::None
        };
        let (host, port) = split_server(&s.server, tls).map_err(|m| err(path("Server"), m))?;
        let auth = match s.auth_type.as_deref() {
            Some(a) if a.eq_ignore_ascii_case("Anonymous") => Auth::Anonymous,
            Some(a) if !a.eq_ignore_ascii_case("Basic") => {
                let message = if SERVER
                    .field("AuthType")
                    .and_then(|f| f.refusal(a))
                    .is_some()
                {
                    refused(&SERVER, "AuthType", a)
                } else {
                    "must be Anonymous or Basic".to_string()
                };
                return Err(err(path("AuthType"), message));
            }
            explicit => match (s.login, s.password) {
                (Some(login), Some(password)) if !login.is_empty() => {
                    Auth::Basic { login, password }
                }
                (None, None) if explicit.is_none() => Auth::Anonymous,
                _ => {
                    return Err(err(
                        path("Login"),
                        "AuthType Basic needs both Login (a DN) and Password".into(),
                    ));
                }
            },
        };
        let mut paged = false;
        for c in s.controls.map(OneOrMany::into_vec).unwrap_or_default() {
            if c.eq_ignore_ascii_case("PagedResult") || c.eq_ignore_ascii_case("PagedResults") {
                paged = true;
            } else if c.eq_ignore_ascii_case("DomainScope") {
                // Documented (Active Directory's "no referrals" control): idlink follows no
                // referral anyway, so it has nothing to add.
            } else {
                return Err(err(
                    path("Controls"),
                    format!(
                        "unknown control '{c}': the documented ones are PagedResult and DomainScope"
                    ),
                ));
            }
        }
        servers.push(ServerSettings {
            host,
            port,
            auth,
            paged,
            tls,
            ca_file: s.ca_file.filter(|c| !c.trim().is_empty()),
        });
    }
    let mut tables: Vec<TableSettings> = Vec::new();
    for (i, t) in raw_tables.into_iter().enumerate() {
        let path = |field: &str| format!("Tables[{i}].{field}");
        let name = t.table.trim().to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(err(
                path("Table"),
                "a table is `entries` or the name of a link attribute (letters, digits, '-')"
                    .into(),
            ));
        }
        if tables.iter().any(|x| x.table.eq_ignore_ascii_case(&name)) {
            return Err(err(path("Table"), format!("table '{name}' appears twice")));
        }
        let filter = t
            .filter
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "(objectClass=*)".to_string());
        let filter = if filter.starts_with('(') {
            filter
        } else {
            format!("({filter})")
        };
        if ldap3::parse_filter(&filter).is_err() {
            return Err(err(
                path("Filter"),
                format!(
                    "'{filter}' is not an LDAP search filter (RFC 4515), e.g. (objectClass=person)"
                ),
            ));
        }
        let scope = match t.scope.as_deref() {
            None => Scope::Subtree,
            Some(s) if s.eq_ignore_ascii_case("Base") => Scope::Base,
            Some(s) if s.eq_ignore_ascii_case("OneLevel") => Scope::OneLevel,
            Some(s) if s.eq_ignore_ascii_case("Subtree") => Scope::Subtree,
            Some(_) => {
                return Err(err(
                    path("Scope"),
                    "must be Base, OneLevel or Subtree".into(),
                ));
            }
        };
        let entry = TableSettings {
            table: if name.eq_ignore_ascii_case("entries") {
                "entries".to_string()
            } else {
                name
            },
            base_dn: t.base_dn.trim().to_string(),
            filter,
            scope,
        };
        if entry.table == "entries" {
            tables.insert(0, entry);
        } else {
            tables.push(entry);
        }
    }
    if tables.first().is_none_or(|t| t.table != "entries") {
        return Err(err(
            "Tables".into(),
            "a table named `entries` is required: {\"Table\": \"entries\", \"BaseDN\": \"dc=example,dc=org\", \"Filter\": \"(objectClass=*)\", \"Scope\": \"Subtree\"}".into(),
        ));
    }
    let secs = |v: Option<i64>| v.unwrap_or(0).clamp(0, i32::MAX as i64) as i32;
    let timeout = match raw.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s.max(0) as u64)),
    };
    Ok(LdapSettings {
        servers,
        tables,
        size_limit: secs(raw.size_limit),
        time_limit: secs(raw.time_limit),
        timeout,
        max_message: raw.max_message.map_or(DEFAULT_MAX_MESSAGE, |m| {
            m.clamp(1024, i32::MAX as i64) as usize
        }),
        page_size: raw
            .page_size
            .map_or(DEFAULT_PAGE_SIZE, |p| p.clamp(1, 100_000) as i32),
        default_object_class: raw
            .default_object_class
            .map(OneOrMany::into_vec)
            .unwrap_or_default(),
        password_reset: raw.password_reset.unwrap_or(false),
    })
}

/// `host`, `host:port`, `[v6]:port` or an `ldap://` / `ldaps://` URL.
fn split_server(server: &str, tls: Tls) -> Result<(String, u16), String> {
    let mut s = server.trim();
    let mut default_port = if tls == Tls::Ldaps {
        LDAPS_PORT
    } else {
        LDAP_PORT
    };
    if let Some(rest) = s.strip_prefix("ldaps://") {
        if tls != Tls::Ldaps {
            return Err("an ldaps:// server needs EnableSSL: true".into());
        }
        s = rest;
        default_port = LDAPS_PORT;
    } else if let Some(rest) = s.strip_prefix("ldap://") {
        if tls == Tls::Ldaps {
            return Err(
                "EnableSSL is set but the server is an ldap:// URL: write ldaps:// or host:port"
                    .into(),
            );
        }
        s = rest;
    }
    let s = s.trim_end_matches('/');
    if s.is_empty() {
        return Err("the server is empty: write host or host:port".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in an IPv6 address".to_string())?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (s.to_string(), None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("'{p}' is not a port (1 to 65535)"))?,
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err("write host or host:port (no user, no path)".into());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: serde_json::Value) -> Result<LdapSettings, PackageError> {
        parse("Directory", v)
    }

    #[test]
    fn servers_tables_and_defaults() {
        let s = settings(serde_json::json!({
            "Servers": [
                {"Server": "ldap1.example.org", "AuthType": "Basic", "Login": "cn=a", "Password": "pw-123", "Controls": ["PagedResult"]},
                {"Server": "ldaps://ldap2:1636", "EnableSSL": true, "CaFile": "ca.pem"},
            ],
            "Tables": [
                {"Table": "member", "BaseDN": "ou=groups,dc=x", "Filter": "objectClass=groupOfNames"},
                {"Table": "Entries", "BaseDN": "dc=x", "Scope": "OneLevel"},
            ],
            "DefaultObjectClass": "top inetOrgPerson",
        }))
        .expect("settings");
        assert_eq!(s.servers[0].port, 389);
        assert!(s.servers[0].paged);
        assert_eq!(s.servers[1].port, 1636);
        assert_eq!(s.servers[1].tls, Tls::Ldaps);
        assert_eq!(s.servers[1].auth, Auth::Anonymous);
        assert_eq!(s.entries().scope, Scope::OneLevel);
        assert_eq!(s.entries().filter, "(objectClass=*)");
        assert_eq!(s.tables[1].filter, "(objectClass=groupOfNames)");
        assert_eq!(s.default_object_class, ["top", "inetOrgPerson"]);
        assert_eq!(s.timeout, Some(DEFAULT_TIMEOUT));
        assert_eq!(s.max_message, DEFAULT_MAX_MESSAGE);
        assert!(!format!("{s:?}").contains("pw-123"));
    }

    #[test]
    fn entries_is_required_and_errors_never_echo_secrets() {
        let e = settings(serde_json::json!({
            "Servers": [{"Server": "h", "AuthType": "Basic", "Login": "cn=a", "Password": "pw-123"}],
            "Tables": [{"Table": "member", "BaseDN": "dc=x"}],
        }))
        .expect_err("no entries");
        let m = e.to_string();
        assert!(m.contains("`entries` is required"), "{m}");
        assert!(!m.contains("pw-123"));
        let e = settings(serde_json::json!({
            "Servers": [{"Server": "h", "AuthType": "Basic", "Login": "cn=a"}],
            "Tables": [{"Table": "entries", "BaseDN": "dc=x"}],
        }))
        .expect_err("no password");
        assert!(e.to_string().contains("Password"), "{e}");
        let e = settings(serde_json::json!({
            "Servers": [{"Server": "h:99999"}],
            "Tables": [{"Table": "entries", "BaseDN": "dc=x", "Filter": "(("}],
        }))
        .expect_err("bad port");
        assert!(e.to_string().contains("Servers[0].Server"), "{e}");
    }

    /// Issue #9: the OpenLDAP page's flat shape maps onto the same typed settings as one
    /// server and one `entries` table.
    #[test]
    fn regression_openldap_flat_settings_map_to_one_server_and_entries_table() {
        let s = settings(serde_json::json!({
            "Server": "ldap.example.org:1636",
            "DistinguishedName": "DC=example,DC=org",
            "Login": "cn=admin,dc=example,dc=org",
            "Password": "pw-123",
            "Filter": "(|(objectclass=person)(objectclass=ou))",
            "Scope": "SubTree",
            "SSL": true,
            "IsLdapPasswordReset": true,
            "AsAdLds": false,
        }))
        .expect("flat settings");
        assert_eq!(s.servers.len(), 1);
        assert_eq!(s.servers[0].host, "ldap.example.org");
        assert_eq!(s.servers[0].port, 1636);
        assert_eq!(s.servers[0].tls, Tls::Ldaps);
        assert!(matches!(s.servers[0].auth, Auth::Basic { .. }));
        assert_eq!(s.tables.len(), 1);
        assert_eq!(s.entries().table, "entries");
        assert_eq!(s.entries().base_dn, "DC=example,DC=org");
        assert_eq!(
            s.entries().filter,
            "(|(objectclass=person)(objectclass=ou))"
        );
        assert_eq!(s.entries().scope, Scope::Subtree);
        assert!(s.password_reset);
        // Without SSL, the default port of plain LDAP; without Login/Password, anonymous.
        let s = settings(serde_json::json!({"Server": "h", "DistinguishedName": "dc=x"}))
            .expect("anonymous");
        assert_eq!(
            (s.servers[0].port, s.servers[0].tls),
            (LDAP_PORT, Tls::None)
        );
        assert_eq!(s.servers[0].auth, Auth::Anonymous);
        assert_eq!(s.entries().filter, "(objectClass=*)");
        // DistinguishedName is the base of the search: required.
        let e = settings(serde_json::json!({"Server": "h", "Login": "cn=a", "Password": "pw-123"}))
            .expect_err("no DN");
        assert!(e.to_string().contains("DistinguishedName"), "{e}");
        assert!(!e.to_string().contains("pw-123"));
        let e = settings(serde_json::json!({"Filter": "(cn=*)"})).expect_err("no server");
        assert!(e.to_string().contains("without Server"), "{e}");
    }

    /// Issue #9: the two shapes mixed is an error that says which to keep.
    #[test]
    fn regression_ldap_mixed_settings_shapes_are_refused_naming_what_to_keep() {
        let e = settings(serde_json::json!({
            "Servers": [{"Server": "h"}],
            "Tables": [{"Table": "entries", "BaseDN": "dc=x"}],
            "DistinguishedName": "dc=x",
            "Password": "pw-123",
        }))
        .expect_err("mixed");
        let m = e.to_string();
        assert!(m.contains("Servers, Tables"), "{m}");
        assert!(m.contains("DistinguishedName, Password"), "{m}");
        assert!(m.contains("keep either Servers and Tables"), "{m}");
        assert!(!m.contains("pw-123"), "{m}");
    }

    /// Issue #9: AsAdLds is documented (as required) for LDAP fulfill: false is accepted,
    /// true is refused because idlink does not implement AD LDS specifics.
    #[test]
    fn regression_ldap_as_ad_lds_false_is_accepted_and_true_refused() {
        let base = serde_json::json!({
            "Servers": [{"Server": "h", "NoSigning": true, "Controls": ["PagedResult", "DomainScope"]}],
            "Tables": [{"Table": "entries", "BaseDN": "dc=x"}],
        });
        let mut ok = base.clone();
        ok["AsAdLds"] = serde_json::json!(false);
        settings(ok).expect("AsAdLds false");
        let mut refused = base;
        refused["AsAdLds"] = serde_json::json!(true);
        let e = settings(refused).expect_err("AsAdLds true");
        assert!(e.to_string().contains("AD LDS"), "{e}");
    }

    /// Issue #9: the values idlink refuses (AsAdLds true; AuthType Negotiate, the page's
    /// default) are refused by `check` and by the package with the same reason, taken from the
    /// settings schema both read.
    #[test]
    fn regression_ldap_refused_values_are_refused_by_check_and_package_for_the_same_reason() {
        for (json, field, value) in [
            (
                serde_json::json!({"Servers": [{"Server": "h"}], "Tables": [{"Table": "entries", "BaseDN": "dc=x"}], "AsAdLds": true}),
                ("AsAdLds", &SETTINGS),
                "true",
            ),
            (
                serde_json::json!({"Servers": [{"Server": "h", "AuthType": "Negotiate"}], "Tables": [{"Table": "entries", "BaseDN": "dc=x"}]}),
                ("AuthType", &SERVER),
                "Negotiate",
            ),
        ] {
            let why = field
                .1
                .field(field.0)
                .and_then(|f| f.refusal(value))
                .expect("refused");
            let e = settings(json.clone()).expect_err(field.0);
            assert!(e.to_string().contains(why), "{e}");
            let found = check(&format!(r#"{{"Connections": {{"Dir": {json}}}}}"#));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(
                found[0].contains("is refused by idlink") && found[0].contains(why),
                "{found:?}"
            );
        }
        // Basic and Anonymous stay accepted.
        settings(serde_json::json!({"Servers": [{"Server": "h", "AuthType": "Anonymous"}], "Tables": [{"Table": "entries", "BaseDN": "dc=x"}]}))
            .expect("Anonymous");
    }

    fn check(json: &str) -> Vec<String> {
        let mut d = idlink_model::diag::Diagnostics::default();
        let s = idlink_model::settings::parse("appsettings.agent.json", json.as_bytes(), &mut d);
        for c in &s.connections {
            idlink_model::settings::check_against(
                c,
                "Usercube.OpenLDAP@0000001",
                &SETTINGS,
                &mut d,
            );
        }
        d.iter()
            .map(|d| {
                format!(
                    "{}: {} ({})",
                    d.rule,
                    d.message,
                    d.hint.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Issue #9: `check` reads the OpenLDAP page's examples (export and fulfill, booleans as
    /// strings) with no finding, and says which shape to keep when they are mixed.
    #[test]
    fn regression_openldap_flat_settings_pass_check_and_mixing_says_what_to_keep() {
        let found = check(
            r#"{"Connections": {
                "OpenLDAPExport": {"Server": "ldap.example.org", "DistinguishedName": "DC=example,DC=org",
                    "Login": "cn=admin,dc=example,dc=org", "Password": "pw-1",
                    "Filter": "(|(objectclass=person)(objectclass=ou))", "Scope": "SubTree", "SSL": "true"},
                "OpenLDAPFulfillment": {"Server": "ldap.example.org", "DistinguishedName": "DC=example,DC=org",
                    "Login": "cn=admin,dc=example,dc=org", "Password": "pw-1", "SSL": "true",
                    "IsLdapPasswordReset": "true"},
                "LDAPFulfillment": {"Servers": [{"Server": "h", "AuthType": "Basic", "Login": "cn=a", "Password": "pw-1"}],
                    "Tables": [{"Table": "entries", "BaseDN": "DC=example,DC=org"}],
                    "IsLdapPasswordReset": true, "AsAdLds": false}
            }}"#,
        );
        assert!(found.is_empty(), "{found:?}");
        let found = check(
            r#"{"Connections": {"Dir": {"Servers": [{"Server": "h"}], "Tables": [{"Table": "entries", "BaseDN": "dc=x"}],
                "DistinguishedName": "dc=x", "Password": "pw-1"}}}"#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("mixes two shapes"), "{found:?}");
        assert!(
            found[0].contains("keep only Servers, Tables, or keep only Server"),
            "{found:?}"
        );
        assert!(!found[0].contains("pw-1"), "{found:?}");
        let found = check(r#"{"Connections": {"Dir": {"SizeLimit": 5}}}"#);
        assert!(
            found
                .iter()
                .any(|m| m.contains("at least one of Servers, Server")),
            "{found:?}"
        );
    }
}
