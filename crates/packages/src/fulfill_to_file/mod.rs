//! JSON order files: `Usercube.FulfillToFile`. Each order becomes one file,
//! `<OutputPath>/<connection>_<order id or position>.json`, holding the order in SPEC §6's
//! form (`{"ProvisioningOrdersList": [order]}`), written atomically. A retried order rewrites
//! the same file, so fulfill is idempotent. The folder must lie under `SourcesRootPaths`.

mod fulfill;
pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.FulfillToFile@0000001`: writes one JSON file per provisioning order.
pub static FULFILL_TO_FILE: PackageInfo = PackageInfo {
    id: "Usercube.FulfillToFile@0000001",
    display_name: "Custom/JSON",
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
    env: crate::api::Environment,
) -> Result<Box<dyn crate::api::Instance>, crate::api::PackageError> {
    let s: settings::Settings = crate::api::parse_settings(&env.connection, settings)?;
    if s.output_path.trim().is_empty() {
        return Err(crate::api::PackageError::Settings {
            connection: env.connection.clone(),
            path: "OutputPath".into(),
            message: "is empty; give the folder the order files go to".into(),
        });
    }
    let _ = package;
    Ok(Box::new(fulfill::JsonFiles {
        folder: env.base_dir.join(&s.output_path),
        env,
    }))
}
