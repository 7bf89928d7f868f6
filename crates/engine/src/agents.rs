//! Where connection work runs (SPEC §1: a connector runs on one agent).
//!
//! The `Agent` attribute of a task, else of the connection's connector, names the agent that
//! runs a connection's work; without one, or when it names this process's embedded agent
//! (`Local` unless the server is told otherwise), the work runs here. Work for another agent
//! goes through [`RemoteAgents`], which the server implements with its work queue: the engine
//! stays the one place that decides what a job does, and the server only carries it.
//!
//! The tables a remote agent exports come back as files the server received into a staging
//! folder beside `ExportOutput`; [`Engine::commit_received`] commits them with the cookie the
//! agent returned as one set, as a local export commits its own.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use idlink_packages::api::{OrderResult, Progress, ProvisioningOrder};
use idlink_packages::output::StagedTable;
use idlink_secrets::Redactor;
use tokio_util::sync::CancellationToken;

use crate::export::{ExportOptions, ExportReport, cookies_dir};
use crate::{Engine, EngineError, ErrorKind, blocking};

/// What a remote agent's export sent: its tables, received into `dir`, and its cookie.
#[derive(Debug)]
pub struct Received {
    pub package: String,
    pub dir: PathBuf,
    pub tables: Vec<StagedTable>,
    pub cookie: Option<String>,
    pub incremental: bool,
    pub duration: Duration,
    /// What the package noticed on the agent (the export's notes).
    pub notes: Vec<String>,
}

/// The embedded agent's identifier unless configured otherwise.
pub const LOCAL_AGENT: &str = "Local";

/// Carries work to agents other than this process's embedded one.
#[async_trait]
pub trait RemoteAgents: Send + Sync + std::fmt::Debug {
    /// The identifier this process's embedded agent answers to.
    fn local_agent(&self) -> &str;

    /// Exports `connection` on `agent` and commits its tables here; returns the report of
    /// the commit.
    async fn export(
        &self,
        agent: &str,
        connection: &str,
        options: &ExportOptions,
        cancel: &CancellationToken,
    ) -> Result<ExportReport, EngineError>;

    /// Reads `connection`'s schema on `agent`.
    async fn refresh_schema(
        &self,
        agent: &str,
        connection: &str,
    ) -> Result<idlink_packages::api::ConnectionSchema, EngineError>;

    /// Checks that `connection`'s system answers `agent`: what answered, or why not.
    async fn check_connection(&self, agent: &str, connection: &str) -> Result<String, EngineError>;

    /// Sends one batch of orders to `connection` on `agent`; returns one result per order.
    async fn fulfill(
        &self,
        agent: &str,
        connection: &str,
        orders: Vec<ProvisioningOrder>,
        dry_run: bool,
    ) -> Result<Vec<OrderResult>, EngineError>;
}

/// What "Check connection" found: the connection as configured, and what answered (redacted)
/// or why nothing did.
#[derive(Debug)]
pub struct ConnectionCheck {
    pub connection: String,
    pub result: Result<String, (ErrorKind, String)>,
}

/// One "Export now": the connection as configured, the remote agent that exported it (None:
/// here), and the report or the failure, with what redacts the connection's secrets.
#[derive(Debug)]
pub struct ExportVia {
    pub connection: String,
    pub agent: Option<String>,
    pub result: Result<ExportReport, EngineError>,
    pub redactor: Redactor,
}

impl Engine {
    /// The remote agent that runs `id`'s work and the connection's identifier as configured,
    /// when `agents` carries work to one and the connection runs there.
    fn remote_of<'a>(
        &self,
        id: &str,
        agents: Option<&'a dyn RemoteAgents>,
    ) -> Option<(&'a dyn RemoteAgents, String, String)> {
        let agents = agents?;
        let agent = self.remote_agent_of(id, None, agents.local_agent())?;
        let connection = self.checked().config.connection(id)?.id.value.clone();
        Some((agents, agent, connection))
    }

    /// "Check connection", on the connection's remote agent when it runs on one. A system that
    /// cannot be reached is an answer; a connection that cannot be opened for a reason its
    /// settings do not explain (unknown, for one) is an error.
    pub async fn check_connection_via(
        &self,
        id: &str,
        agents: Option<&dyn RemoteAgents>,
    ) -> Result<ConnectionCheck, EngineError> {
        if let Some((agents, agent, connection)) = self.remote_of(id, agents) {
            let result = agents
                .check_connection(&agent, &connection)
                .await
                .map_err(|e| (e.kind(), e.to_string()));
            return Ok(ConnectionCheck { connection, result });
        }
        match self.open(id) {
            Err(e) if !crate::snapshots::records_open_failure(&e) => Err(e),
            Err(e) => Ok(ConnectionCheck {
                connection: id.to_string(),
                result: Err((e.kind(), e.to_string())),
            }),
            Ok(opened) => {
                let result = opened
                    .check_connection()
                    .await
                    .map(|what| opened.redact(&what))
                    .map_err(|e| (e.kind(), opened.redact(&e.to_string())));
                Ok(ConnectionCheck {
                    connection: opened.id().to_string(),
                    result,
                })
            }
        }
    }

    /// One export of `id` into `<work>/ExportOutput`, on the connection's remote agent when it
    /// runs on one (its tables are committed here). A connection that cannot be opened is an
    /// error, recorded as the connection's last export attempt when its settings explain it.
    pub async fn export_via(
        &self,
        id: &str,
        options: &ExportOptions,
        progress: std::sync::Arc<dyn Progress>,
        agents: Option<&dyn RemoteAgents>,
        cancel: &CancellationToken,
    ) -> Result<ExportVia, EngineError> {
        if let Some((agents, agent, connection)) = self.remote_of(id, agents) {
            let result = agents.export(&agent, &connection, options, cancel).await;
            return Ok(ExportVia {
                connection,
                agent: Some(agent),
                result,
                redactor: Redactor::default(),
            });
        }
        let opened = self.open(id).inspect_err(|e| {
            if crate::snapshots::records_open_failure(e) {
                self.record_failed_export(id, e, &e.to_string());
            }
        })?;
        let result = opened.export(options, progress, cancel).await;
        Ok(ExportVia {
            connection: opened.id().to_string(),
            agent: None,
            result,
            redactor: opened.redactor().clone(),
        })
    }

    /// The agent named for `connection`'s work: `task_agent` when the task names one, else the
    /// connector's `Agent`; `None` when neither does.
    pub fn agent_of(&self, connection: &str, task_agent: Option<&str>) -> Option<String> {
        if let Some(a) = task_agent {
            return Some(a.to_string());
        }
        let config = &self.checked().config;
        let c = config.connection(connection)?;
        config
            .connectors
            .iter()
            .find(|k| k.id.value.eq_ignore_ascii_case(&c.connector.value))
            .and_then(|k| k.agent.as_ref())
            .map(|a| a.value.clone())
    }

    /// The remote agent that runs `connection`'s work, or `None` when it runs here (no agent
    /// named, or the embedded one, `local`).
    pub fn remote_agent_of(
        &self,
        connection: &str,
        task_agent: Option<&str>,
        local: &str,
    ) -> Option<String> {
        self.agent_of(connection, task_agent)
            .filter(|a| !a.eq_ignore_ascii_case(local))
    }

    /// The cookie an export of `connection` would start from here (what a remote agent is
    /// given): `None` for a complete export.
    pub fn current_cookie(
        &self,
        connection: &str,
        ignore_cookies: bool,
    ) -> Result<Option<String>, EngineError> {
        if ignore_cookies {
            return Ok(None);
        }
        let file = cookies_dir(self.work_dir()).join(format!("{connection}.cookie"));
        match std::fs::read_to_string(&file) {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EngineError::io("read", &file, e)),
        }
    }

    /// The folder the tables of attempt `label` of a remote export of `connection` are
    /// received into: beside `ExportOutput` (one file system for the final renames), named as
    /// a staging folder so an interrupted one is removed by the connection's next export.
    pub fn received_dir(&self, connection: &str, label: &str) -> PathBuf {
        self.work_dir()
            .join("ExportOutput")
            .join(format!(".staging-{connection}_{label}"))
    }

    /// Commits tables a remote agent exported (received into `received.dir`, see
    /// [`Engine::received_dir`]) and its cookie as one set, under the connection's export lock.
    /// The folder is removed afterwards.
    pub async fn commit_received(
        &self,
        connection: &str,
        received: Received,
    ) -> Result<ExportReport, EngineError> {
        let Received {
            package,
            dir,
            tables,
            cookie,
            incremental,
            duration,
            notes,
        } = received;
        let id = connection.to_string();
        let work = self.work_dir().to_path_buf();
        let (tables, cookie_written) = blocking(move || {
            crate::export::commit_received(&id, &work, &dir, &tables, cookie.as_deref())
        })
        .await?;
        Ok(ExportReport {
            connection: connection.to_string(),
            package,
            incremental,
            tables,
            duration,
            cookie: cookie_written,
            notes,
        })
    }
}
