//! Fulfill into an SQL database: `Usercube.FulfillDatabase` (PostgreSQL, MySQL/MariaDB, SQLite).
//!
//! Each order becomes an `INSERT`, `UPDATE` or `DELETE` on the table its resource type maps to
//! (`Tables[]`), the row found by the table's `KeyColumn`. The connection string and the way to
//! connect are the SQL packages' (`crate::sql`): the same URL forms, `SourcesRootPaths` for
//! SQLite files, the same relay, TLS and error classes, the same redaction. See `fulfill.rs`
//! for how an order reads and what makes a retry harmless.

mod fulfill;
pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

use crate::api::{Environment, Instance, PackageError};

/// `Usercube.FulfillDatabase@0000001`: writes provisioning orders into database tables.
pub static FULFILL_DATABASE: PackageInfo = PackageInfo {
    id: "Usercube.FulfillDatabase@0000001",
    display_name: "Database/Fulfill to database",
    capabilities: Capabilities {
        export: false,
        fulfill: true,
        incremental: false,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// Checks settings (no I/O) and returns the package ready to run.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    let _ = package;
    let s = settings::FulfillDatabaseSettings::parse(&env.connection, settings)?;
    Ok(Box::new(fulfill::FulfillDatabase::new(s, env)))
}
