//! SCIM 2.0 services: `Usercube.SCIM`.

pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.SCIM@0000001`: exports resources, fulfills users and group memberships.
pub static SCIM: PackageInfo = PackageInfo {
    id: "Usercube.SCIM@0000001",
    display_name: "Custom/SCIM",
    capabilities: Capabilities {
        export: true,
        fulfill: true,
        incremental: true,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};
