//! The package seam: what a package is given and what it gives back.
//!
//! A package is split like a pipeline component: its settings are parsed and checked without
//! I/O when it is instantiated ([`crate::registry::instantiate`]), and it touches the managed
//! system only inside the capability calls. Capabilities are small separate traits, so the
//! registry can say what a package does without running it.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Serialize;

/// The schema types live in the model (the store keeps them too); packages produce them.
pub use idlink_model::schema::{ColumnSchema, ConnectionSchema, TableSchema, value_type_name};

use crate::output::ExportOutput;
use crate::paths::SourceRoots;

/// Everything a package instance may need from outside, fixed when it is instantiated.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The connection's identifier: the prefix of its tables' names.
    pub connection: String,
    /// Relative paths in settings are resolved against this folder (the settings file's).
    pub base_dir: PathBuf,
    /// Where file-based packages may read (`SourcesRootPaths`).
    pub roots: SourceRoots,
    /// The connection's tables that the configuration maps, with the columns it uses: SQL
    /// exports one table per mapped table when it has no command, LDAP exports the attributes
    /// mappings use.
    pub mapped_tables: Vec<MappedTable>,
}

impl Environment {
    /// Resolves a path from settings: relative to [`Environment::base_dir`], then checked to be
    /// under the source roots.
    pub fn source_path(&self, path: &str) -> Result<PathBuf, PackageError> {
        self.roots.resolve(&self.base_dir.join(path))
    }
}

/// A table the configuration maps, and the columns its mappings read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedTable {
    /// The full table name (`<connection>` or `<connection>_<suffix>`).
    pub name: String,
    /// The part after `<connection>_`, if any.
    pub suffix: Option<String>,
    pub columns: Vec<String>,
}

/// A package with checked settings, ready to talk to its system.
pub trait Instance: Send + Sync {
    fn export(&self) -> Option<&dyn Export> {
        None
    }
    fn schema(&self) -> Option<&dyn Schema> {
        None
    }
    fn check_connection(&self) -> Option<&dyn CheckConnection> {
        None
    }
    fn fulfill(&self) -> Option<&dyn Fulfill> {
        None
    }
}

/// Reports progress of long work (rows read so far); the CLI draws a bar or logs lines.
pub trait Progress: Send + Sync {
    /// `rows` more rows were written to `table`.
    fn rows(&self, table: &str, rows: u64);
    /// A phase starts ("connecting", "reading people.csv", ...).
    fn phase(&self, message: &str);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn rows(&self, _: &str, _: u64) {}
    fn phase(&self, _: &str) {}
}

/// One export run.
pub struct ExportRequest<'a> {
    /// Incremental mode: read only what changed since `cookie`.
    pub incremental: bool,
    /// The cookie the previous successful export left, if any (and not ignored).
    pub cookie: Option<&'a str>,
    pub progress: &'a dyn Progress,
}

impl std::fmt::Debug for ExportRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportRequest")
            .field("incremental", &self.incremental)
            .field("cookie", &self.cookie)
            .finish()
    }
}

/// What an export returns besides its tables.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    /// The cookie to store once the tables are durable (incremental packages only).
    pub cookie: Option<String>,
    /// Whether this run was incremental (a package may fall back to complete).
    pub incremental: bool,
    /// What the package noticed in the data that its user should know, though the export
    /// succeeded (a CSV value that seems to swallow rows): the export's report shows them.
    pub notes: Vec<String>,
}

/// Export: system -> connection tables. Rows go to the output as they arrive.
#[async_trait]
pub trait Export: Send + Sync {
    async fn export(
        &self,
        request: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError>;
}

/// Refresh schema: the tables and columns a connection exports.
#[async_trait]
pub trait Schema: Send + Sync {
    async fn schema(&self) -> Result<ConnectionSchema, PackageError>;
}

/// Check connection: is the system reachable with these settings? Returns what was reached.
#[async_trait]
pub trait CheckConnection: Send + Sync {
    async fn check_connection(&self) -> Result<String, PackageError>;
}

/// Fulfill: provisioning orders -> the managed system -> one result per order. An order that
/// fails is `Errored` with the system's message and the others go on; `Err` is for failures
/// that stop the whole batch (the system unreachable before anything was sent).
#[async_trait]
pub trait Fulfill: Send + Sync {
    async fn fulfill(&self, request: &FulfillRequest<'_>)
    -> Result<Vec<OrderResult>, PackageError>;
}

/// One fulfill run.
pub struct FulfillRequest<'a> {
    pub orders: &'a [ProvisioningOrder],
    /// Plan only: each result lists the operations that would be sent, and nothing is sent.
    pub dry_run: bool,
    pub progress: &'a dyn Progress,
}

impl std::fmt::Debug for FulfillRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FulfillRequest")
            .field("orders", &self.orders.len())
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

/// The orders file of SPEC §6: `{"ProvisioningOrdersList": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, Serialize)]
pub struct OrdersFile {
    #[serde(rename = "ProvisioningOrdersList")]
    pub orders: Vec<ProvisioningOrder>,
}

/// `Added`, `Modified` or `Deleted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One change to apply in a managed system (SPEC §6).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
pub struct ProvisioningOrder {
    /// The order's identifier, echoed in its result (orders without one are numbered).
    #[serde(rename = "Id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "ChangeType")]
    pub change_type: ChangeType,
    #[serde(rename = "ResourceType")]
    pub resource_type: ResourceTypeRef,
    #[serde(rename = "Owner", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<serde_json::Map<String, serde_json::Value>>,
    /// The target resource's current values (absent for `Added`).
    #[serde(rename = "Resource", default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<serde_json::Map<String, serde_json::Value>>,
    /// Changed properties; multi-valued navigation properties as `<prop>_add` / `<prop>_remove`.
    #[serde(rename = "Changes", default)]
    pub changes: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
pub struct ResourceTypeRef {
    #[serde(rename = "Identifier")]
    pub identifier: String,
    #[serde(
        rename = "SourceEntityType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub source_entity_type: Option<serde_json::Value>,
    #[serde(
        rename = "TargetEntityType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_entity_type: Option<serde_json::Value>,
    /// The object class the provisioner uses for this resource type's resources (for SCIM, the
    /// endpoint: `Users`, `Groups`, ...): the resource type mapping's `DefaultObjectClass`,
    /// which the engine fills in for every order (Added, Modified and Deleted) that names none.
    #[serde(
        rename = "DefaultObjectClass",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub default_object_class: Option<String>,
}

/// The state an order reaches at the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
pub enum OrderState {
    Executed,
    Errored,
    /// Handed over; the outcome comes later (a ticket a person closes).
    Transmitted,
}

/// The outcome of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OrderResult {
    /// The order's position in the request (0-based).
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub state: OrderState,
    /// The system's result (e.g. the LDAP result code and message), or why it failed.
    pub message: String,
    /// The operations sent (or, in a dry run, that would be sent), one line each.
    pub operations: Vec<String>,
}

/// Why a package could not do what was asked. Messages name the connection, the system and the
/// operation, say whether a retry may help, and never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(
        "package {package} is not available in this build: it is known, but idlink cannot run it yet"
    )]
    NotAvailable { package: String },
    #[error("package {package} cannot {capability}")]
    Unsupported {
        package: String,
        capability: &'static str,
    },
    #[error("connection '{connection}': setting {path}: {message}")]
    Settings {
        connection: String,
        path: String,
        message: String,
    },
    #[error("path '{}' is outside SourcesRootPaths ({roots}): {why}", path.display())]
    OutsideRoots {
        path: PathBuf,
        roots: String,
        why: String,
    },
    #[error("cannot {operation} '{}': {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Data { location: String, message: String },
    #[error("connection '{connection}': {operation} on {system} failed: {message}{}", if *retryable { " (a retry may help)" } else { "" })]
    System {
        connection: String,
        system: String,
        operation: &'static str,
        message: String,
        retryable: bool,
    },
    /// The run was asked to stop (a signal, a cancelled job).
    #[error("connection '{connection}': interrupted")]
    Cancelled { connection: String },
    /// The system refused the credentials (bad login or password, expired token).
    #[error("connection '{connection}': {operation} on {system} failed: {message}")]
    Credentials {
        connection: String,
        system: String,
        operation: &'static str,
        message: String,
    },
}

/// What kind of failure an error is: jobs, HTTP status codes and exit codes are derived from
/// it, never from message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The configuration or the settings are wrong: fix them, a retry will not help.
    Configuration,
    /// The system could not be reached or timed out: a retry may help.
    Unavailable,
    /// The system refused the credentials.
    Credentials,
    /// The system refused the operation (a query error, a constraint, a protocol violation).
    Refused,
    /// The data read is malformed (a ragged CSV row, an undecodable byte).
    Data,
    /// A local file could not be read or written (disk full, permissions).
    Io,
    /// The work was interrupted (a signal, a cancelled job).
    Cancelled,
    /// idlink broke its own contract: a bug to report.
    Bug,
}

impl ErrorKind {
    /// Whether running the same work again later may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Io | ErrorKind::Cancelled
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Configuration => "configuration",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Credentials => "credentials",
            ErrorKind::Refused => "refused",
            ErrorKind::Data => "data",
            ErrorKind::Io => "io",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Bug => "bug",
        })
    }
}

impl PackageError {
    /// The kind of failure (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            PackageError::NotAvailable { .. }
            | PackageError::Unsupported { .. }
            | PackageError::Settings { .. }
            | PackageError::OutsideRoots { .. } => ErrorKind::Configuration,
            PackageError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    ErrorKind::Configuration
                }
                _ => ErrorKind::Io,
            },
            PackageError::Data { .. } => ErrorKind::Data,
            PackageError::System {
                retryable: true, ..
            } => ErrorKind::Unavailable,
            PackageError::System { .. } => ErrorKind::Refused,
            PackageError::Credentials { .. } => ErrorKind::Credentials,
            PackageError::Cancelled { .. } => ErrorKind::Cancelled,
        }
    }

    pub fn io(operation: &'static str, path: &Path, source: std::io::Error) -> Self {
        PackageError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Deserializes a package's typed settings (from [`idlink_model::settings::typed_json`]);
/// errors name the setting's path and never echo its value.
pub fn parse_settings<T: serde::de::DeserializeOwned>(
    connection: &str,
    value: serde_json::Value,
) -> Result<T, PackageError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde quotes offending values ("invalid value: string \"x\""): keep only the kind of problem.
        let message = match message.find(": ") {
            Some(i) if message.starts_with("invalid") => message[..i].to_string(),
            _ => message,
        };
        PackageError::Settings {
            connection: connection.to_string(),
            path,
            message,
        }
    })
}
