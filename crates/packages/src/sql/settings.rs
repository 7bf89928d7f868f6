//! Settings of the SQL packages (all share one schema), and their checked form.
//!
//! `ConnectionString` is a URL (`postgres://`, `postgresql://`, `mysql://`, `mariadb://`,
//! `sqlite:`) or ADO.NET-style pairs (`Host=..;Port=..;Database=..;Username=..;Password=..`,
//! keys case-insensitive, with the usual synonyms). The package identifier picks the database
//! kind; the generic `Usercube.SQL` takes it from the URL's scheme. Nothing here does I/O, and
//! no message quotes a value of the connection string.

use idlink_secrets::{Redactor, Secret};
use std::str::FromStr;
use std::time::Duration;

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};
use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::relay::DEFAULT_MAX_MESSAGE;
pub use super::tls::{SslMode, TlsSettings};
use crate::api::{PackageError, parse_settings};
use crate::csv::decode::SourceEncoding;

/// `ConnectionString`, then `SqlCommand` or `SqlFile` (neither: every mapped table).
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "ConnectionString",
            Kind::String,
            "how to reach the database: a URL (postgres://, mysql://, sqlite:) or Host=..;Database=..;Username=..;Password=.. pairs (secured: it may carry a password)",
        )
        .secured(),
        Field::optional(
            "SecuredOptions",
            Kind::Map,
            "secured key-value pairs merged into a Host=..;Database=.. connection string at run time (e.g. Password, Database)",
        )
        .secured(),
        Field::optional("SqlCommand", Kind::String, "query whose result is exported"),
        Field::optional(
            "SqlFile",
            Kind::String,
            "file holding the query whose result is exported",
        ),
        Field::optional(
            "CsvEncoding",
            Kind::CheckedString(crate::csv::settings::check_encoding),
            "encoding of the SqlFile (default UTF-8; a byte order mark wins)",
        ),
        Field::no_effect(
            "ProviderClassFullName",
            Kind::String,
            "names a .NET ADO.NET provider class; idlink connects with its own PostgreSQL, MySQL/MariaDB and SQLite drivers, chosen by the package or the connection string",
        ),
        Field::no_effect(
            "ProviderDllName",
            Kind::String,
            "names the .NET assembly of an ADO.NET provider; idlink loads no .NET assembly: its drivers are built in",
        ),
        Field::optional(
            "Timeout",
            Kind::Int {
                min: 0,
                max: 86_400,
            },
            "longest wait for the database, in seconds (default 30; 0: no limit): for connecting (TCP, TLS and login together), for each statement's answer, for the next rows while a result streams, and for each server message to arrive complete once its first byte has come (a server sending a message a byte at a time fails after this wait)",
        ),
        Field::optional(
            "MaxMessageSize",
            Kind::Int {
                min: 1024,
                max: 4_294_967_295,
            },
            "largest message the server may send, in bytes (default 67108864, 64 MiB): one row, one value or one reply; a server announcing more is refused before anything is allocated (PostgreSQL and MySQL)",
        ),
        Field::optional(
            "IsolationLevel",
            Kind::Enum(&[
                "ReadUncommitted",
                "ReadCommitted",
                "RepeatableRead",
                "Serializable",
                "Snapshot",
            ]),
            "transaction isolation level of the export",
        ),
    ],
    constraints: &[Constraint::AtMostOne(&["SqlCommand", "SqlFile"])],
};

/// The wait applied when `Timeout` is not set (as ADO.NET's command timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The database kinds this package talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// PostgreSQL (`Usercube.SQL.PostgreSQL`, `postgres://`).
    Postgres,
    /// MySQL and MariaDB (`Usercube.SQL.MySQL`, `mysql://`, `mariadb://`).
    MySql,
    /// SQLite files (`Idlink.SQL.SQLite`, `sqlite:`).
    Sqlite,
}

impl Driver {
    /// The product name, for messages.
    pub fn product(self) -> &'static str {
        match self {
            Driver::Postgres => "PostgreSQL",
            Driver::MySql => "MySQL",
            Driver::Sqlite => "SQLite",
        }
    }
}

/// Where the rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `SqlCommand`: one table named after the connection.
    Command(String),
    /// `SqlFile`: the query is read from this file (resolved under `SourcesRootPaths`) when
    /// the package runs.
    File(String),
    /// Neither: one table per mapped connection table, `SELECT * FROM <suffix>`.
    MappedTables,
}

/// Transaction isolation of the export's reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `READ UNCOMMITTED` (SQLite: `PRAGMA read_uncommitted`).
    ReadUncommitted,
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
    /// SQL Server's snapshot: a consistent view, i.e. `REPEATABLE READ` in PostgreSQL and
    /// MySQL.
    Snapshot,
}

impl Isolation {
    /// The SQL words (`REPEATABLE READ`, ...).
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "READ UNCOMMITTED",
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead | Isolation::Snapshot => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// How to reach the database, checked.
#[derive(Clone)]
pub enum Target {
    /// A PostgreSQL server.
    Postgres(Box<PgConnectOptions>),
    /// A MySQL or MariaDB server.
    MySql(Box<MySqlConnectOptions>),
    /// A database file (resolved under `SourcesRootPaths` when the package runs), or `None`
    /// for an in-memory database.
    Sqlite(Option<String>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The options hold the password: show only where they point.
        match self {
            Target::Postgres(o) => write!(
                f,
                "Postgres({}:{}/{})",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
            Target::MySql(o) => write!(
                f,
                "MySql({}:{}/{})",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
            Target::Sqlite(p) => write!(f, "Sqlite({p:?})"),
        }
    }
}

impl Target {
    /// The kind of database.
    pub fn driver(&self) -> Driver {
        match self {
            Target::Postgres(_) => Driver::Postgres,
            Target::MySql(_) => Driver::MySql,
            Target::Sqlite(_) => Driver::Sqlite,
        }
    }

    /// `PostgreSQL at host:port/database`: what messages call the system (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Target::Postgres(o) => match o.get_socket() {
                Some(s) => format!(
                    "PostgreSQL at {} database '{}'",
                    s.display(),
                    o.get_database().unwrap_or(o.get_username())
                ),
                None => format!(
                    "PostgreSQL at {}:{}/{}",
                    o.get_host(),
                    o.get_port(),
                    o.get_database().unwrap_or(o.get_username())
                ),
            },
            Target::MySql(o) => format!(
                "MySQL at {}:{}/{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
            Target::Sqlite(Some(p)) => format!("SQLite database '{p}'"),
            Target::Sqlite(None) => "SQLite in-memory database".to_string(),
        }
    }
}

/// The checked settings of one SQL connection.
#[derive(Clone)]
pub struct SqlSettings {
    /// Where the database is.
    pub target: Target,
    /// What to export.
    pub source: Source,
    /// `None`: no limit.
    pub timeout: Option<Duration>,
    /// The export's transaction isolation; `None`: no explicit transaction.
    pub isolation: Option<Isolation>,
    /// Values no message may show (the password, the whole connection string).
    pub secrets: Redactor,
    /// `MaxMessageSize`, in bytes.
    pub max_message: u64,
    /// TLS (PostgreSQL; MySQL connects without TLS, see [`parse_tls`]).
    pub tls: TlsSettings,
    /// `CsvEncoding`: how the `SqlFile` is decoded.
    pub file_encoding: SourceEncoding,
}

impl std::fmt::Debug for SqlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSettings")
            .field("target", &self.target)
            .field("source", &self.source)
            .field("timeout", &self.timeout)
            .field("isolation", &self.isolation)
            .field("max_message", &self.max_message)
            .field("tls", &self.tls)
            .field("secrets", &"**REDACTED**")
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    connection_string: Secret,
    #[serde(default)]
    secured_options: std::collections::BTreeMap<String, Secret>,
    sql_command: Option<String>,
    sql_file: Option<String>,
    timeout: Option<u64>,
    max_message_size: Option<u64>,
    isolation_level: Option<String>,
    csv_encoding: Option<String>,
}

impl SqlSettings {
    /// Checks settings (from [`idlink_model::settings::typed_json`]) for `package`, whose
    /// identifier picks the database kind (`None` for the generic `Usercube.SQL`).
    pub fn parse(
        connection: &str,
        driver: Option<Driver>,
        settings: serde_json::Value,
    ) -> Result<SqlSettings, PackageError> {
        let raw: Raw = parse_settings(connection, settings)?;
        let err = |path: &str, message: String| PackageError::Settings {
            connection: connection.to_string(),
            path: path.to_string(),
            message,
        };
        let command = raw.sql_command.filter(|c| !c.trim().is_empty());
        let file = raw.sql_file.filter(|f| !f.trim().is_empty());
        let source = match (command, file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "SqlCommand",
                    "set SqlCommand or SqlFile, not both".to_string(),
                ));
            }
            (Some(c), None) => Source::Command(c),
            (None, Some(f)) => Source::File(f),
            (None, None) => Source::MappedTables,
        };
        let timeout = match raw.timeout {
            None => Some(DEFAULT_TIMEOUT),
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        let isolation = match raw.isolation_level.as_deref() {
            None => None,
            Some(s) => Some(parse_isolation(s).ok_or_else(|| {
                err(
                    "IsolationLevel",
                    "expected ReadUncommitted, ReadCommitted, RepeatableRead, Serializable or Snapshot"
                        .to_string(),
                )
            })?),
        };
        let connection_string =
            merge_secured_options(raw.connection_string.expose_secret(), &raw.secured_options)
                .map_err(|m| err("SecuredOptions", m))?;
        let (target, password) = parse_connection_string(&connection_string, driver)
            .map_err(|m| err("ConnectionString", m))?;
        let tls = parse_tls(&connection_string, &target).map_err(|m| err("ConnectionString", m))?;
        let max_message = match raw.max_message_size {
            None => DEFAULT_MAX_MESSAGE,
            Some(n) if (1024..=u64::from(u32::MAX)).contains(&n) => n,
            Some(_) => {
                return Err(err(
                    "MaxMessageSize",
                    "expected a number of bytes from 1024 to 4294967295".to_string(),
                ));
            }
        };
        let mut secrets = Redactor::new();
        secrets.add_connection_string(raw.connection_string.expose_secret());
        secrets.add_connection_string(&connection_string);
        for v in raw.secured_options.values() {
            secrets.add(v.expose_secret());
        }
        if let Some(p) = password {
            secrets.add(p);
        }
        let file_encoding = match raw.csv_encoding.as_deref().map(str::trim) {
            None | Some("") => SourceEncoding::UTF8,
            Some(name) => SourceEncoding::from_name(name).ok_or_else(|| {
                err(
                    "CsvEncoding",
                    crate::csv::settings::check_encoding(name)
                        .err()
                        .unwrap_or_default(),
                )
            })?,
        };
        Ok(SqlSettings {
            target,
            source,
            timeout,
            isolation,
            secrets,
            max_message,
            tls,
            file_encoding,
        })
    }
}

/// Appends secured key-value options to an ADO-style connection string (SPEC §8: free
/// key-value secured options merged into the setting at run time). A later key wins, as in
/// ADO.NET. URL connection strings cannot take them: their parts have fixed places.
fn merge_secured_options(
    connection_string: &str,
    options: &std::collections::BTreeMap<String, Secret>,
) -> Result<String, String> {
    if options.is_empty() {
        return Ok(connection_string.to_string());
    }
    if connection_string.contains("://") || connection_string.trim_start().starts_with("sqlite:") {
        return Err(
            "secured options merge only into a Host=..;Database=.. connection string, not a URL"
                .to_string(),
        );
    }
    let mut merged = connection_string.trim().trim_end_matches(';').to_string();
    for (key, value) in options {
        if key.is_empty() || key.contains(['=', ';']) {
            return Err(format!("'{key}' is not a connection string key"));
        }
        // Double quotes keep ';' and '=' inside a value; a quote inside is doubled.
        merged.push_str(&format!(
            ";{key}=\"{}\"",
            value.expose_secret().replace('"', "\"\"")
        ));
    }
    Ok(merged)
}

fn parse_isolation(s: &str) -> Option<Isolation> {
    Some(match norm(s).as_str() {
        "readuncommitted" => Isolation::ReadUncommitted,
        "readcommitted" => Isolation::ReadCommitted,
        "repeatableread" => Isolation::RepeatableRead,
        "serializable" => Isolation::Serializable,
        "snapshot" => Isolation::Snapshot,
        _ => return None,
    })
}

/// Parses a connection string for `driver` (`None`: from the URL's scheme). Returns the target
/// and the password it holds, if any. Messages never quote values.
pub fn parse_connection_string(
    text: &str,
    driver: Option<Driver>,
) -> Result<(Target, Option<String>), String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the connection string is empty".to_string());
    }
    match url_driver(trimmed) {
        Some(url_driver) => {
            if let Some(d) = driver
                && d != url_driver
            {
                return Err(format!(
                    "the connection string is a {} URL, but this package connects to {}: use the {} package or a {} URL",
                    url_driver.product(),
                    d.product(),
                    url_driver.product(),
                    scheme_of(d)
                ));
            }
            parse_url(trimmed, url_driver)
        }
        None if trimmed.contains("://") => Err(format!(
            "unknown URL scheme: use postgres://, mysql://, mariadb:// or sqlite: (scheme '{}')",
            trimmed
                .split("://")
                .next()
                .unwrap_or("")
                .chars()
                .take(20)
                .collect::<String>()
        )),
        None => {
            let driver = driver.ok_or_else(|| {
                "Usercube.SQL cannot tell the database kind from Key=Value pairs: write a URL \
                 (postgres://, mysql://, sqlite:) or use the Usercube.SQL.PostgreSQL, \
                 Usercube.SQL.MySQL or Idlink.SQL.SQLite package"
                    .to_string()
            })?;
            let pairs = parse_pairs(trimmed)?;
            from_pairs(&pairs, driver)
        }
    }
}

fn scheme_of(d: Driver) -> &'static str {
    match d {
        Driver::Postgres => "postgres://",
        Driver::MySql => "mysql://",
        Driver::Sqlite => "sqlite:",
    }
}

fn url_driver(s: &str) -> Option<Driver> {
    let lower = s
        .get(..s.find(':').unwrap_or(0))
        .unwrap_or("")
        .to_ascii_lowercase();
    match lower.as_str() {
        "postgres" | "postgresql" if s[lower.len()..].starts_with("://") => Some(Driver::Postgres),
        "mysql" | "mariadb" if s[lower.len()..].starts_with("://") => Some(Driver::MySql),
        "sqlite" => Some(Driver::Sqlite),
        _ => None,
    }
}

/// The password in `scheme://user:password@host...`, raw and percent-decoded.
fn url_password(url: &str) -> Vec<String> {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return Vec::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return Vec::new();
    };
    let mut out = vec![password.to_string()];
    let decoded = percent_decode(password);
    if decoded != password {
        out.push(decoded);
    }
    out
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_url(url: &str, driver: Driver) -> Result<(Target, Option<String>), String> {
    let passwords = url_password(url);
    // sqlx's own errors may quote the URL: say only what kind of problem it is.
    let bad = |e: sqlx::Error| {
        let mut m = e.to_string();
        for p in std::iter::once(url).chain(passwords.iter().map(String::as_str)) {
            if !p.is_empty() {
                m = m.replace(p, "**REDACTED**");
            }
        }
        format!("the URL cannot be read: {m}")
    };
    let password = passwords.last().cloned();
    match driver {
        Driver::Postgres => {
            let o = PgConnectOptions::from_str(url).map_err(bad)?;
            Ok((Target::Postgres(Box::new(o)), password))
        }
        Driver::MySql => {
            // sqlx reads mysql:// only; mariadb:// means the same.
            let url = match url.get(..10) {
                Some(p) if p.eq_ignore_ascii_case("mariadb://") => {
                    format!("mysql://{}", &url[10..])
                }
                _ => url.to_string(),
            };
            let o = MySqlConnectOptions::from_str(&url).map_err(bad)?;
            Ok((Target::MySql(Box::new(o)), password))
        }
        Driver::Sqlite => {
            let rest = &url["sqlite:".len()..];
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err("the sqlite: URL names no database file".to_string());
            }
            if path == ":memory:" {
                return Ok((Target::Sqlite(None), None));
            }
            Ok((Target::Sqlite(Some(percent_decode(path))), None))
        }
    }
}

/// ADO.NET pairs: `Key=Value;Key='quoted;value'`. Keys are lower-cased with spaces removed.
/// Values may be quoted with `'` or `"` (a doubled quote inside stands for one).
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut index = 0usize;
    loop {
        // Key, up to '='.
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let key_norm: String = key
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        match chars.next() {
            None if key_norm.is_empty() => break,
            Some(';') if key_norm.is_empty() => continue,
            Some('=') if !key_norm.is_empty() => {}
            _ => {
                return Err(format!(
                    "pair {} is not Key=Value{}",
                    index + 1,
                    if key_norm.is_empty() {
                        String::new()
                    } else {
                        format!(" (key '{}')", key.trim())
                    }
                ));
            }
        }
        // Value: quoted, or up to ';'.
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut value = String::new();
        match chars.peek().copied() {
            Some(q @ ('\'' | '"')) => {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == q {
                        if chars.peek() == Some(&q) {
                            value.push(q);
                            chars.next();
                        } else {
                            closed = true;
                            break;
                        }
                    } else {
                        value.push(c);
                    }
                }
                if !closed {
                    return Err(format!(
                        "the value of '{}' has no closing quote",
                        key.trim()
                    ));
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                match chars.next() {
                    None | Some(';') => {}
                    Some(_) => {
                        return Err(format!(
                            "unexpected text after the quoted value of '{}'",
                            key.trim()
                        ));
                    }
                }
            }
            _ => {
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                }
                value = value.trim().to_string();
            }
        }
        out.push((key_norm, value));
        index += 1;
    }
    if out.is_empty() {
        return Err("the connection string holds no Key=Value pair".to_string());
    }
    Ok(out)
}

/// What each ADO.NET key means (keys lower-cased, spaces removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Host,
    Port,
    Database,
    User,
    Password,
    SslMode,
    RootCert,
    ApplicationName,
    SearchPath,
    /// SQLite's file.
    File,
    /// Known, harmless here (pooling, timeouts that `Timeout` governs, ...).
    Ignored,
    /// Known, but cannot work here.
    Refused(&'static str),
}

fn key_of(k: &str, driver: Driver) -> Option<Key> {
    Some(match k {
        "datasource" | "filename" if driver == Driver::Sqlite => Key::File,
        "host" | "server" | "datasource" | "address" | "addr" | "networkaddress" => Key::Host,
        "port" => Key::Port,
        "database" | "initialcatalog" | "db" => Key::Database,
        "username" | "userid" | "user" | "uid" => Key::User,
        "password" | "pwd" => Key::Password,
        "sslmode" | "ssl-mode" => Key::SslMode,
        "rootcertificate" | "sslrootcert" | "sslca" | "ssl-ca" => Key::RootCert,
        "applicationname" => Key::ApplicationName,
        "searchpath" => Key::SearchPath,
        "integratedsecurity" | "trusted_connection" => Key::Refused(
            "integrated (Kerberos/Windows) authentication is not supported: give Username and Password",
        ),
        "pooling"
        | "minpoolsize"
        | "maxpoolsize"
        | "minimumpoolsize"
        | "maximumpoolsize"
        | "connectionlifetime"
        | "connectionidlelifetime"
        | "keepalive"
        | "tcpkeepalive"
        | "timeout"
        | "connecttimeout"
        | "connectiontimeout"
        | "commandtimeout"
        | "defaultcommandtimeout"
        | "trustservercertificate"
        | "encrypt"
        | "persistsecurityinfo"
        | "multipleactiveresultsets"
        | "charset"
        | "characterset"
        | "allowuservariables"
        | "convertzerodatetime"
        | "allowzerodatetime"
        | "includeerrordetail"
        | "cache"
        | "mode"
        | "foreignkeys"
        | "enlist"
        | "servercompatibilitymode"
        | "encoding"
        | "clientencoding" => Key::Ignored,
        _ => return None,
    })
}

const KNOWN_KEYS: &str = "Host (or Server), Port, Database, Username (or User Id, Uid), Password (or Pwd), SSL Mode, Root Certificate, Application Name, Search Path; Data Source for SQLite";

fn from_pairs(
    pairs: &[(String, String)],
    driver: Driver,
) -> Result<(Target, Option<String>), String> {
    let mut host = None;
    let mut port = None;
    let mut database = None;
    let mut user = None;
    let mut password = None;
    let mut ssl = None;
    let mut app = None;
    let mut search_path = None;
    let mut file = None;
    for (k, v) in pairs {
        let key = key_of(k, driver)
            .ok_or_else(|| format!("unknown key '{k}' (known keys: {KNOWN_KEYS})"))?;
        let v = v.clone();
        match key {
            Key::Host => host = Some(v),
            Key::Port => {
                port = Some(
                    v.parse::<u16>()
                        .map_err(|_| "Port must be a number from 1 to 65535".to_string())?,
                )
            }
            Key::Database => database = Some(v),
            Key::User => user = Some(v),
            Key::Password => password = Some(v),
            Key::SslMode => ssl = Some(v),
            Key::RootCert => {}
            Key::ApplicationName => app = Some(v),
            Key::SearchPath => search_path = Some(v),
            Key::File => file = Some(v),
            Key::Ignored => {}
            Key::Refused(why) => return Err(why.to_string()),
        }
    }
    if driver == Driver::Sqlite {
        let file = file.ok_or("an SQLite connection string needs Data Source=<database file>")?;
        if file.is_empty() {
            return Err("Data Source is empty".to_string());
        }
        if file == ":memory:" {
            return Ok((Target::Sqlite(None), None));
        }
        return Ok((Target::Sqlite(Some(file)), None));
    }
    let host = host.filter(|h| !h.is_empty()).ok_or(
        "the connection string needs Host (or Server): the database server's name or address",
    )?;
    // `Server=host,port` (SQL Server style) or `host:port`.
    let (host, inline_port) = split_host_port(&host)?;
    let port = port.or(inline_port);
    match driver {
        Driver::Postgres => {
            let mut o = PgConnectOptions::new_without_pgpass().host(&host);
            if let Some(p) = port {
                o = o.port(p);
            }
            if let Some(d) = &database {
                o = o.database(d);
            }
            if let Some(u) = &user {
                o = o.username(u);
            }
            if let Some(p) = &password {
                o = o.password(p);
            }
            if let Some(s) = &ssl {
                o = o.ssl_mode(pg_ssl(s)?);
            }
            if let Some(a) = &app {
                o = o.application_name(a);
            }
            if let Some(s) = &search_path {
                o = o.options([("search_path", s.as_str())]);
            }
            Ok((Target::Postgres(Box::new(o)), password))
        }
        Driver::MySql => {
            let mut o = MySqlConnectOptions::new().host(&host);
            if let Some(p) = port {
                o = o.port(p);
            }
            if let Some(d) = &database {
                o = o.database(d);
            }
            if let Some(u) = &user {
                o = o.username(u);
            }
            if let Some(p) = &password {
                o = o.password(p);
            }
            if let Some(s) = &ssl {
                o = o.ssl_mode(mysql_ssl(s)?);
            }
            if search_path.is_some() {
                return Err("Search Path is a PostgreSQL setting".to_string());
            }
            Ok((Target::MySql(Box::new(o)), password))
        }
        Driver::Sqlite => Err("unreachable: SQLite handled above".to_string()),
    }
}

fn split_host_port(host: &str) -> Result<(String, Option<u16>), String> {
    let bad = || "the port after the server name must be a number from 1 to 65535".to_string();
    if let Some((h, p)) = host.split_once(',') {
        return Ok((
            h.trim().to_string(),
            Some(p.trim().parse().map_err(|_| bad())?),
        ));
    }
    if host.matches(':').count() == 1
        && let Some((h, p)) = host.split_once(':')
    {
        return Ok((h.to_string(), Some(p.parse().map_err(|_| bad())?)));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), None))
}

/// A name compared loosely: letters and digits only, lower-case (`Verify-Full` = `verifyfull`).
pub(crate) fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The TLS settings of a checked connection string: `SSL Mode` / `sslmode` (default Prefer, as
/// libpq and Npgsql; see `tls.rs` for what each mode does) and `Root Certificate` /
/// `sslrootcert`. TLS to MySQL and MariaDB is not available: the modes that require it are
/// refused here, so `check` reports them; `Preferred` connects without TLS.
pub fn parse_tls(text: &str, target: &Target) -> Result<TlsSettings, String> {
    let root_cert = root_cert_of(text);
    match target {
        Target::Postgres(o) => {
            let mode = match o.get_ssl_mode() {
                PgSslMode::Disable => SslMode::Disable,
                PgSslMode::Allow => SslMode::Allow,
                PgSslMode::Prefer => SslMode::Prefer,
                PgSslMode::Require => SslMode::Require,
                PgSslMode::VerifyCa => SslMode::VerifyCa,
                PgSslMode::VerifyFull => SslMode::VerifyFull,
            };
            if root_cert.as_deref().is_some_and(str::is_empty) {
                return Err("Root Certificate is empty: give the PEM file of the authority that signed the server's certificate".to_string());
            }
            if (o.get_socket().is_some() || o.get_host().starts_with('/')) && mode.requires_tls() {
                return Err(format!(
                    "SSL Mode={} cannot work over a Unix socket (PostgreSQL has no TLS there): connect with a host name, or use SSL Mode=Prefer",
                    mode.name()
                ));
            }
            Ok(TlsSettings { mode, root_cert })
        }
        Target::MySql(o) => match o.get_ssl_mode() {
            MySqlSslMode::Disabled | MySqlSslMode::Preferred if root_cert.is_none() => {
                Ok(TlsSettings {
                    mode: SslMode::Disable,
                    root_cert: None,
                })
            }
            _ => Err(
                "TLS to MySQL and MariaDB is not available in idlink (SSL Mode Required, VerifyCA, VerifyFull or a CA file): idlink checks every server message through a relay that negotiates TLS for PostgreSQL only; remove the TLS settings (SSL Mode=None or Preferred connect without TLS) and reach the server over a trusted network".to_string(),
            ),
        },
        Target::Sqlite(_) => Ok(TlsSettings {
            mode: SslMode::Disable,
            root_cert: None,
        }),
    }
}

/// `Root Certificate` (or `sslrootcert`, `ssl-ca`) of a URL's query or of Key=Value pairs.
fn root_cert_of(text: &str) -> Option<String> {
    let t = text.trim();
    let is_root = |k: &str| {
        matches!(
            k.to_ascii_lowercase().as_str(),
            "rootcertificate" | "sslrootcert" | "ssl-root-cert" | "sslca" | "ssl-ca"
        )
    };
    if t.contains("://") {
        let query = t.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| is_root(k))
            .map(|(_, v)| percent_decode(v))
    } else {
        parse_pairs(t)
            .ok()?
            .into_iter()
            .find(|(k, _)| is_root(k))
            .map(|(_, v)| v)
    }
}

fn pg_ssl(s: &str) -> Result<PgSslMode, String> {
    Ok(match norm(s).as_str() {
        "disable" | "disabled" | "none" => PgSslMode::Disable,
        "allow" => PgSslMode::Allow,
        "prefer" | "preferred" => PgSslMode::Prefer,
        "require" | "required" => PgSslMode::Require,
        "verifyca" => PgSslMode::VerifyCa,
        "verifyfull" => PgSslMode::VerifyFull,
        _ => {
            return Err(
                "SSL Mode must be Disable, Allow, Prefer, Require, VerifyCA or VerifyFull"
                    .to_string(),
            );
        }
    })
}

fn mysql_ssl(s: &str) -> Result<MySqlSslMode, String> {
    Ok(match norm(s).as_str() {
        "disable" | "disabled" | "none" => MySqlSslMode::Disabled,
        "prefer" | "preferred" => MySqlSslMode::Preferred,
        "require" | "required" => MySqlSslMode::Required,
        "verifyca" => MySqlSslMode::VerifyCa,
        "verifyfull" | "verifyidentity" => MySqlSslMode::VerifyIdentity,
        _ => {
            return Err(
                "SSL Mode must be None, Preferred, Required, VerifyCA or VerifyFull".to_string(),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str, d: Option<Driver>) -> Result<(Target, Option<String>), String> {
        parse_connection_string(s, d)
    }

    #[test]
    fn secured_options_merge_into_ado_strings_only() {
        let options: std::collections::BTreeMap<String, Secret> =
            [("Password".to_string(), Secret::new("p;w=\"d"))].into();
        let merged =
            merge_secured_options("Host=db;Database=hr;Username=bob;", &options).expect("merge");
        let (_, pw) = target(&merged, Some(Driver::Postgres)).expect("parse");
        assert_eq!(pw.as_deref(), Some("p;w=\"d"));
        let e = merge_secured_options("postgres://bob@db/hr", &options).expect_err("url");
        assert!(!e.contains("p;w"), "{e}");
    }

    #[test]
    fn ado_pairs_take_synonyms_quotes_and_any_case() {
        let (t, pw) = target(
            "server=db.example,6543; DATABASE=hr; User Id=bob; Pwd='p;w''d'",
            Some(Driver::Postgres),
        )
        .expect("parse");
        assert_eq!(pw.as_deref(), Some("p;w'd"));
        let Target::Postgres(o) = t else {
            panic!("{t:?}")
        };
        assert_eq!(
            (
                o.get_host(),
                o.get_port(),
                o.get_database(),
                o.get_username()
            ),
            ("db.example", 6543, Some("hr"), "bob")
        );
        let (t, _) = target(
            "Host=127.0.0.1;Port=3307;Database=x;Uid=u;Password=p",
            Some(Driver::MySql),
        )
        .expect("parse");
        assert_eq!(t.describe(), "MySQL at 127.0.0.1:3307/x");
        let (t, _) = target("Data Source=people.db", Some(Driver::Sqlite)).expect("parse");
        assert!(matches!(t, Target::Sqlite(Some(ref p)) if p == "people.db"));
    }

    #[test]
    fn urls_pick_the_driver_for_the_generic_package() {
        let (t, pw) = target("postgresql://u:s%40cret@h:1/db", None).expect("pg");
        assert_eq!(t.driver(), Driver::Postgres);
        assert!(pw.is_some_and(|p| p == "s@cret"));
        assert_eq!(
            target("mariadb://u:p@h/db", None).expect("my").0.driver(),
            Driver::MySql
        );
        assert!(matches!(
            target("sqlite://data/x.db", None).expect("lite").0,
            Target::Sqlite(Some(ref p)) if p == "data/x.db"
        ));
        assert!(matches!(
            target("sqlite::memory:", None).expect("mem").0,
            Target::Sqlite(None)
        ));
        let e = target("Host=h;Database=d", None).expect_err("generic needs a URL");
        assert!(e.contains("URL"), "{e}");
        let e = target("mysql://u:topsecret@h/db", Some(Driver::Postgres)).expect_err("mismatch");
        assert!(e.contains("MySQL URL") && !e.contains("topsecret"), "{e}");
    }

    #[test]
    fn bad_strings_are_refused_without_quoting_values() {
        for (s, wants) in [
            ("Host=h;Pasword=topsecret", "unknown key 'pasword'"),
            ("Host=h;Port=x;Password=topsecret", "Port must be a number"),
            ("Database=d;Password=topsecret", "needs Host"),
            ("Host=h;Password='topsecret", "no closing quote"),
            ("Host=h;Integrated Security=true", "not supported"),
            ("oracle://u:topsecret@h", "unknown URL scheme"),
            (
                "Host=h;SSL Mode=sometimes;Password=topsecret",
                "SSL Mode must be",
            ),
            ("", "empty"),
        ] {
            let e = target(s, Some(Driver::Postgres)).expect_err(s);
            assert!(e.contains(wants), "{s}: {e}");
            assert!(!e.contains("topsecret"), "{s}: {e}");
        }
    }

    #[test]
    fn tls_settings_come_from_pairs_and_urls() {
        let tls = |s: &str, d: Driver| {
            let (t, _) = target(s, Some(d))?;
            parse_tls(s, &t)
        };
        assert_eq!(
            tls(
                "Host=h;SSL Mode=VerifyFull;Root Certificate=certs/ca.pem",
                Driver::Postgres
            ),
            Ok(TlsSettings {
                mode: SslMode::VerifyFull,
                root_cert: Some("certs/ca.pem".to_string())
            })
        );
        assert_eq!(
            tls(
                "postgres://u@h/db?sslmode=verify-ca&sslrootcert=c%20a.pem",
                Driver::Postgres
            ),
            Ok(TlsSettings {
                mode: SslMode::VerifyCa,
                root_cert: Some("c a.pem".to_string())
            })
        );
        assert_eq!(
            tls("Host=h", Driver::Postgres).map(|t| t.mode),
            Ok(SslMode::Prefer),
            "Prefer by default, as libpq and Npgsql"
        );
        let e = tls("Host=/run/postgresql;SSL Mode=Require", Driver::Postgres).expect_err("socket");
        assert!(e.contains("Unix socket"), "{e}");
        assert_eq!(
            tls("Host=h;SSL Mode=Preferred", Driver::MySql).map(|t| t.mode),
            Ok(SslMode::Disable)
        );
        for s in [
            "Host=h;SSL Mode=Required",
            "Host=h;SSL Mode=None;SslCa=ca.pem",
            "mysql://u@h/db?ssl-mode=VERIFY_IDENTITY",
        ] {
            let e = tls(s, Driver::MySql).expect_err(s);
            assert!(
                e.contains("TLS to MySQL and MariaDB is not available"),
                "{s}: {e}"
            );
        }
    }

    #[test]
    fn max_message_size_defaults_to_64_mib_and_is_bounded() {
        let parse = |v: serde_json::Value| SqlSettings::parse("C", Some(Driver::Postgres), v);
        let s = parse(serde_json::json!({"ConnectionString": "Host=h"})).expect("ok");
        assert_eq!(s.max_message, 64 * 1024 * 1024);
        let s = parse(serde_json::json!({"ConnectionString": "Host=h", "MaxMessageSize": 2048}))
            .expect("ok");
        assert_eq!(s.max_message, 2048);
        let e = parse(serde_json::json!({"ConnectionString": "Host=h", "MaxMessageSize": 10}))
            .expect_err("too small");
        assert!(e.to_string().contains("MaxMessageSize"), "{e}");
    }

    #[test]
    fn settings_pick_the_source_and_timeout() {
        let parse = |v: serde_json::Value| SqlSettings::parse("C", Some(Driver::Postgres), v);
        let s = parse(
            serde_json::json!({"ConnectionString": "Host=h;Password=pw12",
            "SqlCommand": "SELECT 1", "Timeout": 0, "IsolationLevel": "repeatableread"}),
        )
        .expect("ok");
        assert_eq!(s.source, Source::Command("SELECT 1".to_string()));
        assert_eq!(s.timeout, None);
        assert_eq!(s.isolation, Some(Isolation::RepeatableRead));
        assert!(s.secrets.leaks("pw12"));
        assert!(!format!("{s:?}").contains("pw12"));
        let s = parse(serde_json::json!({"ConnectionString": "Host=h", "SqlCommand": " "}))
            .expect("ok");
        assert_eq!(s.source, Source::MappedTables);
        assert_eq!(s.timeout, Some(DEFAULT_TIMEOUT));
        let e = parse(
            serde_json::json!({"ConnectionString": "Host=h", "SqlCommand": "a",
            "SqlFile": "b"}),
        )
        .expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
        let e = parse(serde_json::json!({"SqlCommand": "a"})).expect_err("missing");
        assert!(e.to_string().contains("ConnectionString"), "{e}");
    }
}
