//! The idlink engine: runs the work the configuration describes: export (staging, one atomic
//! commit of tables and cookie, recovery after a crash), schema refresh, check connection and
//! fulfill; synchronization, provisioning and jobs follow.
//!
//! [`Engine`] is an owned, cheaply cloned handle (an `Arc` of the checked configuration, the
//! package registry and the folders), so the CLI, a job runner or the server can spawn work on
//! one shared tokio runtime and keep it running across a configuration reload. The CLI and the
//! server are two thin fronts over the same calls.

pub mod agents;
pub mod check;
pub mod commit;
pub mod conformance;
pub mod connection;
pub mod dispatch;
pub mod export;
pub mod fulfill;
pub mod jobs;
pub mod orders;
pub mod provision;
pub mod schema;
pub mod secured;
pub mod snapshots;
pub mod sync;
pub mod tickets;
pub mod transform;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use idlink_model::Checked;
use idlink_packages::Registry;
pub use idlink_packages::api::ErrorKind;

pub use connection::{Opened, mapped_tables};
pub use export::{ExportOptions, ExportReport, TableReport};
pub use fulfill::with_mapping_defaults;
pub use tokio_util::sync::CancellationToken;

/// A checked configuration with what runs it. Clones share one configuration.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    checked: Checked,
    registry: Registry,
    /// Anchors relative paths when there is no settings file.
    config_dir: PathBuf,
    /// `ExportOutput`, `ExportCookies` and `Reports` live below it.
    work_dir: PathBuf,
    /// What the configuration is not trusted with ([`Engine::confined`]).
    confinement: Confinement,
}

/// What an engine does not take on trust from a configuration another party wrote (the one a
/// server sends a remote agent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confinement {
    /// The programs of script packages must lie under `SourcesRootPaths` too, as the files of
    /// file-based packages do (see `SourceRoots::confining_programs`).
    pub programs: bool,
    /// Encrypted values must be bound to their setting, and to their destination when their
    /// connection names one (see `idlink_secrets::Binding`): values encrypted unbound, or
    /// bound to their setting alone, are refused.
    pub secrets: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config_dir", &self.inner.config_dir)
            .field("work_dir", &self.inner.work_dir)
            .field("registry", &self.inner.registry)
            .finish()
    }
}

impl Engine {
    /// An engine over a checked configuration. Running work on a configuration with errors is
    /// refused by the callers (the CLI prints the errors first).
    pub fn new(checked: Checked, registry: Registry, config_dir: &Path, work_dir: &Path) -> Self {
        Engine::confined(
            checked,
            registry,
            config_dir,
            work_dir,
            Confinement::default(),
        )
    }

    /// [`Engine::new`] for a configuration another party wrote, such as the one a server sends
    /// a remote agent, trusting it less as `confinement` says.
    pub fn confined(
        checked: Checked,
        registry: Registry,
        config_dir: &Path,
        work_dir: &Path,
        confinement: Confinement,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                checked,
                registry,
                config_dir: config_dir.to_path_buf(),
                work_dir: work_dir.to_path_buf(),
                confinement,
            }),
        }
    }

    pub fn checked(&self) -> &Checked {
        &self.inner.checked
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn config_dir(&self) -> &Path {
        &self.inner.config_dir
    }

    pub fn work_dir(&self) -> &Path {
        &self.inner.work_dir
    }
}

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("connection '{id}' is not declared in the configuration{}", suggestion.as_ref().map(|s| format!("; did you mean '{s}'?")).unwrap_or_default())]
    UnknownConnection {
        id: String,
        suggestion: Option<String>,
    },
    #[error("connector '{id}' is not declared in the configuration{}", suggestion.as_ref().map(|s| format!("; did you mean '{s}'?")).unwrap_or_default())]
    UnknownConnector {
        id: String,
        suggestion: Option<String>,
    },
    #[error("connection '{connection}' uses package '{package}', which is not a known package")]
    UnknownPackage { connection: String, package: String },
    #[error(
        "connection '{connection}' has no settings in {file}; add \"Connections\": {{ \"{connection}\": {{ ... }} }}"
    )]
    MissingSettings { connection: String, file: String },
    #[error("connection '{connection}' ({package}) cannot {capability}")]
    Unsupported {
        connection: String,
        package: String,
        capability: &'static str,
    },
    #[error("export of connection '{connection}' is deactivated (DeactivationExportFulfill)")]
    Deactivated { connection: String },
    #[error(
        "fulfill of connection '{connection}' is deactivated (DeactivationExportFulfill); orders wait until it is turned back on"
    )]
    FulfillDeactivated { connection: String },
    #[error(transparent)]
    Package(#[from] idlink_packages::PackageError),
    /// The store could not be opened or written, or a connector is locked by another run.
    #[error(transparent)]
    Store(#[from] idlink_store::StoreError),
    #[error("{}{}{message}", connection.as_ref().map(|c| format!("connection '{c}': ")).unwrap_or_default(), setting.as_ref().map(|s| format!("setting {s}: ")).unwrap_or_default())]
    Secret {
        connection: Option<String>,
        setting: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Transform(String),
    /// A package broke its contract with the engine (a bug to report).
    #[error("{0}")]
    Contract(String),
    #[error("cannot {operation} '{}': {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process runs the same work.
    #[error(
        "{what} of connection '{connection}' is already running ({holder}); wait for it to end"
    )]
    Busy {
        what: &'static str,
        connection: String,
        holder: String,
    },
    /// Interrupted (a signal, a cancelled job) before anything was committed.
    #[error("{what} of connection '{connection}' was interrupted; nothing was committed")]
    Cancelled {
        what: &'static str,
        connection: String,
    },
    /// Moving the new tables and cookie into place failed; `outcome` says what the reader sees.
    #[error("connection '{connection}': the commit failed: {message}; {outcome}")]
    Commit {
        connection: String,
        message: String,
        outcome: String,
        /// The previous set was put back: nothing changed.
        restored: bool,
    },
    /// A table cannot be synchronized as it is (a mapped column missing, a Command column in a
    /// complete run, ...).
    #[error("{0}")]
    Data(String),
    /// A synchronization threshold was exceeded: nothing changed. The report says which.
    #[error("{}", blocked_message(.0))]
    Blocked(Box<sync::SyncReport>),
    /// A provisioning threshold was exceeded: no order was stored. The report says which.
    #[error("{}", provisioning_blocked_message(.0))]
    ProvisioningBlocked(Box<provision::ProvisionReport>),
    /// Work carried to a remote agent did not come back done.
    #[error("agent '{agent}': {message}")]
    Agent {
        agent: String,
        message: String,
        kind: ErrorKind,
    },
    /// The orders file is not what SPEC §6 describes.
    #[error("{file}{}: {message}", location.as_ref().map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Orders {
        file: String,
        location: Option<(usize, usize)>,
        message: String,
    },
}

impl EngineError {
    pub(crate) fn io(
        operation: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        EngineError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The kind of failure: jobs, HTTP and exit codes derive from it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::UnknownConnection { .. }
            | EngineError::UnknownConnector { .. }
            | EngineError::UnknownPackage { .. }
            | EngineError::MissingSettings { .. }
            | EngineError::Unsupported { .. }
            | EngineError::Deactivated { .. }
            | EngineError::FulfillDeactivated { .. }
            | EngineError::Secret { .. }
            | EngineError::Orders { .. } => ErrorKind::Configuration,
            EngineError::Package(e) => e.kind(),
            EngineError::Store(e) => match e.kind() {
                idlink_store::ErrorKind::Configuration => ErrorKind::Configuration,
                idlink_store::ErrorKind::Unavailable => ErrorKind::Unavailable,
                idlink_store::ErrorKind::Io => ErrorKind::Io,
                idlink_store::ErrorKind::Data => ErrorKind::Data,
                idlink_store::ErrorKind::Bug => ErrorKind::Bug,
            },
            EngineError::Transform(_) | EngineError::Data(_) => ErrorKind::Data,
            EngineError::Blocked(_) | EngineError::ProvisioningBlocked(_) => ErrorKind::Refused,
            EngineError::Contract(_) => ErrorKind::Bug,
            EngineError::Io { .. } | EngineError::Commit { .. } => ErrorKind::Io,
            EngineError::Busy { .. } => ErrorKind::Unavailable,
            EngineError::Cancelled { .. } => ErrorKind::Cancelled,
            EngineError::Agent { kind, .. } => *kind,
        }
    }

    /// Whether the previous tables and cookie are known to be unchanged after this failure
    /// (it happened before the commit, or the commit was rolled back).
    pub fn nothing_committed(&self) -> bool {
        match self {
            EngineError::Commit { restored, .. } => *restored,
            _ => true,
        }
    }
}

fn provisioning_blocked_message(r: &provision::ProvisionReport) -> String {
    let exceeded: Vec<String> = r.exceeded().map(ToString::to_string).collect();
    let mut s = format!(
        "provisioning blocked by {} threshold{}; no order was stored",
        exceeded.len(),
        if exceeded.len() == 1 { "" } else { "s" }
    );
    for b in exceeded {
        s.push_str("\n  ");
        s.push_str(&b);
    }
    s.push_str("\n  check the orders with --dry-run, then raise the threshold on the resource type or run again with --force");
    s
}

fn blocked_message(r: &sync::SyncReport) -> String {
    let mut s = format!(
        "synchronization of connector '{}' blocked by {} threshold{}; nothing changed",
        r.connector,
        r.exceeded.len(),
        if r.exceeded.len() == 1 { "" } else { "s" }
    );
    for b in &r.exceeded {
        s.push_str("\n  ");
        s.push_str(&b.to_string());
    }
    let empty = r.mappings.iter().all(|m| m.before == 0);
    if empty && r.mode == sync::SyncMode::Complete {
        s.push_str("\n  the store holds nothing for this connector yet: a first load runs with --mode initial");
    } else {
        s.push_str("\n  check the tables, then raise the threshold in the configuration or run again with --force");
    }
    s
}

/// A duration as seconds in reports.
pub(crate) fn secs<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Runs blocking file work (fsync, renames, directory walks) off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Contract(format!("a background task failed: {e}")))?
}
