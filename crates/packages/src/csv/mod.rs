//! CSV files: `Usercube.CSV` (complete and incremental) and `Usercube.CSV.Complete`.

pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.CSV@0000001`: exports a CSV file, incrementally from `PathIncremental`.
pub static CSV: PackageInfo = PackageInfo {
    id: "Usercube.CSV@0000001",
    display_name: "File/CSV",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: true,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// `Usercube.CSV.Complete@0000001`: the CSV package without incremental mode.
pub static CSV_COMPLETE: PackageInfo = PackageInfo {
    id: "Usercube.CSV.Complete@0000001",
    display_name: "File/CSV (complete only)",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: false,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::COMPLETE_SETTINGS,
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
