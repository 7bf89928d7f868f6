//! LDIF files: `Usercube.LDIF`.

pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.LDIF@0000001`: exports the entries of an LDIF file.
pub static LDIF: PackageInfo = PackageInfo {
    id: "Usercube.LDIF@0000001",
    display_name: "Directory/LDIF",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: false,
        schema: true,
    },
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
