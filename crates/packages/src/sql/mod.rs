//! SQL databases: `Usercube.SQL` (generic), PostgreSQL, MySQL, and our SQLite package.
//!
//! - export: the result of `SqlCommand` / `SqlFile` as `<id>.csv`, or, with neither, one table
//!   per mapped connection table (`SELECT * FROM <suffix>` as written) as `<id>_<suffix>.csv`.
//!   Rows stream from the server and are written as they arrive; values are rendered
//!   canonically (see `render.rs`); a column whose type cannot be rendered fails the export before any
//!   row is read, naming the column and its type.
//! - schema: the result's columns with their types; with no command, the mapped tables and
//!   every table and view of the database, so that mappings can choose among them.
//! - check connection: connect, `SELECT 1`, and say which server answered.
//!
//! Errors name the connection, the server (never the password nor the connection string), and
//! tell an unreachable server (a retry may help) from bad credentials, a missing database and
//! an SQL error (the database's own message).
//!
//! Bounds on what a server may do (issue 8): PostgreSQL and MySQL connections go through a
//! relay (`relay.rs`) that refuses any server message announcing more than `MaxMessageSize`
//! bytes (default 64 MiB) before anything is allocated for it, and any message that does not
//! arrive complete within `Timeout` seconds once begun. `Timeout` also bounds the connection
//! (TCP, TLS and login together), each statement's answer, and the wait for the next rows.
//! TLS to PostgreSQL (`SSL Mode`, `Root Certificate`; `sslmode`, `sslrootcert` in URLs) is
//! negotiated by the relay with rustls (`tls.rs`); TLS to MySQL is refused when settings are
//! checked.

pub(crate) mod error;
mod export;
mod mysql;
mod postgres;
mod relay;
mod render;
pub(crate) mod schema;
pub mod settings;
mod sqlite;
mod tls;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use idlink_model::package::{Availability, Capabilities, PackageInfo};
use sqlx::mysql::{MySqlConnection, MySqlSslMode};
use sqlx::postgres::{PgConnection, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};

use crate::api::{
    CheckConnection, ConnectionSchema, Environment, Export, ExportOutcome, ExportRequest, Instance,
    PackageError, Progress, Schema,
};
use crate::output::ExportOutput;
use error::Cx;
use settings::{Driver, Isolation, Source, SqlSettings, Target};

const CAPABILITIES: Capabilities = Capabilities {
    export: true,
    fulfill: false,
    incremental: false,
    schema: true,
};

/// `Usercube.SQL@0000001`: exports the result of a query, or every mapped table.
pub static SQL: PackageInfo = PackageInfo {
    id: "Usercube.SQL@0000001",
    display_name: "Database/Generic SQL",
    capabilities: CAPABILITIES,
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// `Usercube.SQL.PostgreSQL@0000001`.
pub static POSTGRESQL: PackageInfo = PackageInfo {
    id: "Usercube.SQL.PostgreSQL@0000001",
    display_name: "Database/PostgreSQL",
    capabilities: CAPABILITIES,
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// `Usercube.SQL.MySQL@0000001` (MySQL and MariaDB).
pub static MYSQL: PackageInfo = PackageInfo {
    id: "Usercube.SQL.MySQL@0000001",
    display_name: "Database/MySQL",
    capabilities: CAPABILITIES,
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// `Idlink.SQL.SQLite@0000001`: our own, for SQLite database files.
pub static SQLITE: PackageInfo = PackageInfo {
    id: "Idlink.SQL.SQLite@0000001",
    display_name: "Database/SQLite",
    capabilities: CAPABILITIES,
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// Checks settings (no I/O) and returns the package ready to run.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    let driver = match package.id {
        id if id == POSTGRESQL.id => Some(Driver::Postgres),
        id if id == MYSQL.id => Some(Driver::MySql),
        id if id == SQLITE.id => Some(Driver::Sqlite),
        id if id == SQL.id => None,
        other => {
            return Err(PackageError::NotAvailable {
                package: other.to_string(),
            });
        }
    };
    let settings = SqlSettings::parse(&env.connection, driver, settings)?;
    Ok(Box::new(SqlPackage { settings, env }))
}

/// A configured SQL connection.
#[derive(Debug)]
pub struct SqlPackage {
    settings: SqlSettings,
    env: Environment,
}

impl Instance for SqlPackage {
    fn export(&self) -> Option<&dyn Export> {
        Some(self)
    }
    fn schema(&self) -> Option<&dyn Schema> {
        Some(self)
    }
    fn check_connection(&self) -> Option<&dyn CheckConnection> {
        Some(self)
    }
}

/// An open connection to one of the supported databases.
pub(crate) enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

impl Conn {
    pub(crate) async fn close(self) {
        // Closing politely is a courtesy: the data are already read.
        let _ = match self {
            Conn::Pg(c) => c.close().await,
            Conn::My(c) => c.close().await,
            Conn::Lite(c) => c.close().await,
        };
    }
}

/// What one query or table export needs to know.
pub(crate) struct Query<'a> {
    pub sql: &'a str,
    /// `None`: the table named after the connection.
    pub suffix: Option<&'a str>,
}

impl SqlPackage {
    /// A package over checked settings (the fulfill-to-database package connects with it).
    pub(crate) fn new(settings: SqlSettings, env: Environment) -> Self {
        SqlPackage { settings, env }
    }

    pub(crate) fn cx<'a>(&'a self, progress: &'a dyn Progress) -> Cx<'a> {
        Cx {
            connection: &self.env.connection,
            system: self.settings.target.describe(),
            secrets: &self.settings.secrets,
            timeout: self.settings.timeout,
            progress,
            relay: std::sync::Arc::default(),
        }
    }

    /// The queries to run: the command, or one per mapped table.
    fn queries(&self, cx: &Cx<'_>) -> Result<Vec<(String, Option<String>)>, PackageError> {
        match &self.settings.source {
            Source::Command(sql) => Ok(vec![(sql.clone(), None)]),
            Source::File(file) => {
                let path = self.env.source_path(file)?;
                let bytes = std::fs::read(&path).map_err(|e| PackageError::io("read", &path, e))?;
                let wanted = self.settings.file_encoding;
                // A byte order mark wins over CsvEncoding, as .NET's readers do.
                let (sql, used, malformed) = wanted.encoding().decode(&bytes);
                if malformed {
                    return Err(PackageError::Data {
                        location: path.display().to_string(),
                        message: format!(
                            "the SqlFile is not valid {} (CsvEncoding): save it in that encoding or set CsvEncoding to the file's",
                            if used == wanted.encoding() {
                                wanted.name
                            } else {
                                used.name()
                            }
                        ),
                    });
                }
                let sql = sql.into_owned();
                if sql.trim().is_empty() {
                    return Err(PackageError::Data {
                        location: path.display().to_string(),
                        message: "the SqlFile is empty: write the query to export in it"
                            .to_string(),
                    });
                }
                Ok(vec![(sql, None)])
            }
            Source::MappedTables => {
                let mut out = Vec::new();
                for t in &self.env.mapped_tables {
                    let Some(suffix) = t.suffix.as_deref().filter(|s| !s.trim().is_empty()) else {
                        return Err(cx.settings(format!(
                            "table '{}' is mapped, but without SqlCommand or SqlFile a mapped table must be named '{}_<database table>'",
                            t.name, self.env.connection
                        )));
                    };
                    out.push((format!("SELECT * FROM {suffix}"), Some(suffix.to_string())));
                }
                Ok(out)
            }
        }
    }

    async fn connect(&self, cx: &Cx<'_>) -> Result<Conn, PackageError> {
        self.connect_for(cx, false, false).await
    }

    /// Connects; `write`: an SQLite file opens read-write (servers are reached the same way
    /// either way: what a session may write is the account's business).
    /// `create`: an SQLite file that does not exist yet is created (in a folder under
    /// `SourcesRootPaths`).
    pub(crate) async fn connect_for(
        &self,
        cx: &Cx<'_>,
        write: bool,
        create: bool,
    ) -> Result<Conn, PackageError> {
        cx.progress.phase(&format!("connecting to {}", cx.system));
        let op = "connect";
        let conn = match &self.settings.target {
            Target::Postgres(o) => {
                let deadline = self
                    .settings
                    .timeout
                    .map(|t| tokio::time::Instant::now() + t);
                let server = if let Some(dir) = o.get_socket() {
                    relay::Server::Unix(dir.join(format!(".s.PGSQL.{}", o.get_port())))
                } else if o.get_host().starts_with('/') {
                    relay::Server::Unix(
                        std::path::Path::new(o.get_host())
                            .join(format!(".s.PGSQL.{}", o.get_port())),
                    )
                } else {
                    relay::Server::Tcp {
                        host: o.get_host().to_string(),
                        port: o.get_port(),
                    }
                };
                let tls = match server {
                    relay::Server::Tcp { .. } => {
                        tls::TlsPlan::build(&self.settings.tls, &self.env.base_dir).map_err(
                            |m| PackageError::Settings {
                                connection: self.env.connection.clone(),
                                path: "ConnectionString".to_string(),
                                message: m,
                            },
                        )?
                    }
                    relay::Server::Unix(_) => tls::TlsPlan::none(),
                };
                let socket = self
                    .start_relay(relay::Protocol::Postgres, server, tls, deadline, cx)
                    .await?;
                let dir = socket.parent().unwrap_or(&socket).to_path_buf();
                let inner = (**o)
                    .clone()
                    .socket(dir)
                    .port(relay::PG_SOCKET_PORT)
                    .ssl_mode(PgSslMode::Disable);
                Conn::Pg(
                    until(
                        deadline,
                        cx,
                        op,
                        Box::pin(PgConnection::connect_with(&inner)),
                    )
                    .await?,
                )
            }
            Target::MySql(o) => {
                let deadline = self
                    .settings
                    .timeout
                    .map(|t| tokio::time::Instant::now() + t);
                let server = match o.get_socket() {
                    Some(path) => relay::Server::Unix(path.clone()),
                    None => relay::Server::Tcp {
                        host: o.get_host().to_string(),
                        port: o.get_port(),
                    },
                };
                let socket = self
                    .start_relay(
                        relay::Protocol::MySql,
                        server,
                        tls::TlsPlan::none(),
                        deadline,
                        cx,
                    )
                    .await?;
                let inner = (**o)
                    .clone()
                    .socket(socket)
                    .ssl_mode(MySqlSslMode::Disabled);
                Conn::My(
                    until(
                        deadline,
                        cx,
                        op,
                        Box::pin(MySqlConnection::connect_with(&inner)),
                    )
                    .await?,
                )
            }
            Target::Sqlite(path) => {
                let mut o = SqliteConnectOptions::new()
                    .read_only(!write)
                    .create_if_missing(false)
                    .busy_timeout(self.settings.timeout.unwrap_or(Duration::from_secs(3600)));
                let wanted = path.as_ref().map(|p| self.env.base_dir.join(p));
                o = match path {
                    Some(_) if write && create && wanted.as_ref().is_some_and(|w| !w.exists()) => {
                        let wanted = wanted.unwrap_or_default();
                        let (Some(folder), Some(name)) = (wanted.parent(), wanted.file_name())
                        else {
                            return Err(cx.system_error(
                                op,
                                "the SQLite path names no file".to_string(),
                                false,
                            ));
                        };
                        let folder = self.env.roots.check_for_write(folder)?;
                        std::fs::create_dir_all(&folder).map_err(|e| {
                            PackageError::io("create the database folder", &folder, e)
                        })?;
                        o.create_if_missing(true).filename(folder.join(name))
                    }
                    Some(p) => {
                        let resolved = self.env.source_path(p).map_err(|e| match e {
                            PackageError::Io { source, .. }
                                if source.kind() == std::io::ErrorKind::NotFound =>
                            {
                                cx.system_error(
                                    op,
                                    format!("database missing: there is no file '{p}'"),
                                    false,
                                )
                            }
                            other => other,
                        })?;
                        o.filename(resolved)
                    }
                    None => o.in_memory(true),
                };
                Conn::Lite(
                    cx.wait(op, Box::pin(SqliteConnection::connect_with(&o)))
                        .await?,
                )
            }
        };
        Ok(conn)
    }

    /// Connects to the server through a relay that bounds every server message (see
    /// `relay.rs`); returns the socket sqlx must connect to.
    async fn start_relay(
        &self,
        protocol: relay::Protocol,
        server: relay::Server,
        tls: tls::TlsPlan,
        deadline: Option<tokio::time::Instant>,
        cx: &Cx<'_>,
    ) -> Result<std::path::PathBuf, PackageError> {
        let plan = relay::Plan {
            protocol,
            server,
            tls,
            max_message: self.settings.max_message,
            timeout: self.settings.timeout,
        };
        let started = relay::start(plan, std::sync::Arc::clone(&cx.relay));
        let result = match deadline {
            Some(d) => tokio::time::timeout_at(d, started)
                .await
                .map_err(|_| cx.timed_out("connect"))?,
            None => started.await,
        };
        result.map_err(|f| cx.system_error("connect", f.message, f.retryable))
    }

    /// Starts the export's transaction when an isolation level is set.
    async fn begin(&self, conn: &mut Conn, cx: &Cx<'_>) -> Result<bool, PackageError> {
        let Some(level) = self.settings.isolation else {
            return Ok(false);
        };
        let op = "begin transaction";
        match conn {
            Conn::Pg(c) => {
                let sql = format!("BEGIN ISOLATION LEVEL {} READ ONLY", level.sql());
                cx.wait(op, Box::pin(c.execute(sql.as_str()))).await?;
            }
            Conn::My(c) => {
                let sql = format!(
                    "SET TRANSACTION ISOLATION LEVEL {}; START TRANSACTION READ ONLY",
                    level.sql()
                );
                cx.wait(op, Box::pin(c.execute(sql.as_str()))).await?;
            }
            Conn::Lite(c) => {
                let uncommitted = level == Isolation::ReadUncommitted;
                let sql = format!(
                    "PRAGMA read_uncommitted = {}; BEGIN",
                    if uncommitted { 1 } else { 0 }
                );
                cx.wait(op, Box::pin(c.execute(sql.as_str()))).await?;
            }
        }
        Ok(true)
    }

    async fn commit(conn: &mut Conn, cx: &Cx<'_>) -> Result<(), PackageError> {
        let op = "commit";
        match conn {
            Conn::Pg(c) => cx.wait(op, Box::pin(c.execute("COMMIT"))).await.map(|_| ()),
            Conn::My(c) => cx.wait(op, Box::pin(c.execute("COMMIT"))).await.map(|_| ()),
            Conn::Lite(c) => cx.wait(op, Box::pin(c.execute("COMMIT"))).await.map(|_| ()),
        }
    }
}

#[async_trait]
impl Export for SqlPackage {
    async fn export(
        &self,
        request: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError> {
        let cx = self.cx(request.progress);
        let queries = self.queries(&cx)?;
        if queries.is_empty() {
            let mut conn = self.connect(&cx).await?;
            let tables = schema::table_names(&mut conn, &cx)
                .await
                .unwrap_or_default();
            conn.close().await;
            return Err(cx.settings(no_source_message(&self.env.connection, &tables)));
        }
        let mut conn = self.connect(&cx).await?;
        let in_transaction = self.begin(&mut conn, &cx).await?;
        for (sql, suffix) in &queries {
            let q = Query {
                sql,
                suffix: suffix.as_deref(),
            };
            match &mut conn {
                Conn::Pg(c) => postgres::export(c, &q, out, &cx).await?,
                Conn::My(c) => export::export_query::<mysql::My>(c, &q, out, &cx).await?,
                Conn::Lite(c) => export::export_query::<sqlite::Lite>(c, &q, out, &cx).await?,
            };
        }
        if in_transaction {
            Self::commit(&mut conn, &cx).await?;
        }
        conn.close().await;
        Ok(ExportOutcome::default())
    }
}

/// Why nothing can be exported, with the database's tables when they could be listed.
fn no_source_message(connection: &str, tables: &[String]) -> String {
    let mut m = format!(
        "there is nothing to export: set SqlCommand or SqlFile, or map tables named '{connection}_<database table>'"
    );
    if !tables.is_empty() {
        const SHOWN: usize = 20;
        let list: Vec<&str> = tables.iter().take(SHOWN).map(String::as_str).collect();
        m.push_str(&format!(
            "; the database has {}: {}{}",
            if tables.len() == 1 {
                "this table"
            } else {
                "these tables"
            },
            list.join(", "),
            if tables.len() > SHOWN {
                format!(" and {} more", tables.len() - SHOWN)
            } else {
                String::new()
            }
        ));
    }
    m
}

#[async_trait]
impl Schema for SqlPackage {
    async fn schema(&self) -> Result<ConnectionSchema, PackageError> {
        let progress = crate::api::NoProgress;
        let cx = self.cx(&progress);
        let queries = self.queries(&cx)?;
        let mut conn = self.connect(&cx).await?;
        let result = schema::schema(
            &mut conn,
            &queries,
            matches!(self.settings.source, Source::MappedTables),
            &self.env.connection,
            &cx,
        )
        .await;
        conn.close().await;
        result
    }
}

#[async_trait]
impl CheckConnection for SqlPackage {
    async fn check_connection(&self) -> Result<String, PackageError> {
        let progress = crate::api::NoProgress;
        let cx = self.cx(&progress);
        if let Source::File(_) = &self.settings.source {
            self.queries(&cx)?;
        }
        let mut conn = self.connect(&cx).await?;
        let version = schema::server_version(&mut conn, &cx).await;
        conn.close().await;
        Ok(format!("{} ({})", cx.system, version?))
    }
}

/// Runs a database call that must end by `deadline`; errors classified.
async fn until<T>(
    deadline: Option<tokio::time::Instant>,
    cx: &Cx<'_>,
    operation: &'static str,
    fut: futures_util::future::BoxFuture<'_, Result<T, sqlx::Error>>,
) -> Result<T, PackageError> {
    let result = match deadline {
        Some(d) => tokio::time::timeout_at(d, fut)
            .await
            .map_err(|_| cx.timed_out(operation))?,
        None => fut.await,
    };
    result.map_err(|e| cx.sqlx(operation, e))
}

/// Runs `fut`, bounded by `timeout` when there is one.
async fn bounded<T>(timeout: Option<Duration>, fut: impl Future<Output = T>) -> Option<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.ok(),
        None => Some(fut.await),
    }
}
