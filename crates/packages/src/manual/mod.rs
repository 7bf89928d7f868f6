//! Manual provisioning: `Usercube.Manual`.

pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.Manual@0000001`: each order opens a ticket for a person to carry out.
pub static MANUAL: PackageInfo = PackageInfo {
    id: "Usercube.Manual@0000001",
    display_name: "Ticket/manual",
    capabilities: Capabilities {
        export: false,
        fulfill: true,
        incremental: false,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};
