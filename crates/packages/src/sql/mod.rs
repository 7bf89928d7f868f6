//! SQL databases: `Usercube.SQL` (generic), PostgreSQL, MySQL, and our SQLite package.

pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

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

/// `Usercube.SQL.MySQL@0000001`.
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

/// Checks settings and returns the package ready to run.
pub fn instantiate(
    package: &idlink_model::package::PackageInfo,
    _settings: serde_json::Value,
    _env: crate::api::Environment,
) -> Result<Box<dyn crate::api::Instance>, crate::api::PackageError> {
    // Replaced by the implementation of this package (issue P2).
    Err(crate::api::PackageError::NotAvailable {
        package: package.id.to_string(),
    })
}
