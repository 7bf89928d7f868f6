//! The idlink engine: runs the work the configuration describes. Today: the export runner
//! (staging, atomic commit, cookies, transformations, reports); synchronization, provisioning
//! and jobs follow.

pub mod check;
pub mod connection;
pub mod export;
pub mod fulfill;
pub mod secured;
pub mod transform;

pub use connection::{OpenConnection, open_connection};
pub use export::{ExportOptions, ExportReport, TableReport, run_export};
pub use fulfill::{run_fulfill, with_mapping_defaults};

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("connection '{id}' is not declared in the configuration{}", suggestion.as_ref().map(|s| format!("; did you mean '{s}'?")).unwrap_or_default())]
    UnknownConnection {
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
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
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
}
