//! JSON order files: `Usercube.FulfillToFile`. Each order becomes one file,
//! `<OutputPath>/<connection>_<order id or position>.json` (without `OutputPath`, in
//! `FulfillToFile` inside the first `SourcesRootPaths` folder: idlink's choice, as the 6.2
//! pages document no setting), holding the order in SPEC §6's
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
    let folder = match s.output_path {
        Some(p) if p.trim().is_empty() => {
            return Err(crate::api::PackageError::Settings {
                connection: env.connection.clone(),
                path: "OutputPath".into(),
                message: format!(
                    "is empty; give the folder the order files go to, or remove it to use {} in the first SourcesRootPaths folder",
                    settings::DEFAULT_FOLDER
                ),
            });
        }
        Some(p) => env.base_dir.join(p),
        None => match env.roots.first() {
            Some(root) => root.join(settings::DEFAULT_FOLDER),
            None => {
                return Err(crate::api::PackageError::Settings {
                    connection: env.connection.clone(),
                    path: "OutputPath".into(),
                    message: format!(
                        "is not given and SourcesRootPaths is empty, so there is no default folder ({} in the first SourcesRootPaths folder): add SourcesRootPaths or OutputPath to appsettings.agent.json",
                        settings::DEFAULT_FOLDER
                    ),
                });
            }
        },
    };
    let _ = package;
    Ok(Box::new(fulfill::JsonFiles { folder, env }))
}
