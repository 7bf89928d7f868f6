//! JSON order files: `Usercube.FulfillToFile`.

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
