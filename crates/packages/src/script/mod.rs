//! Scripts: `Usercube.Powershell` (fulfill) and `Usercube.PowershellSync` (export).
//!
//! Despite the names, the script may be any executable of the platform.

pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.Powershell@0000001`: runs a script on the provisioning orders.
pub static POWERSHELL: PackageInfo = PackageInfo {
    id: "Usercube.Powershell@0000001",
    display_name: "Custom/Script fulfill",
    capabilities: Capabilities {
        export: false,
        fulfill: true,
        incremental: false,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::FULFILL_SETTINGS,
};

/// `Usercube.PowershellSync@0000001`: runs a script that writes the connection's tables.
pub static POWERSHELL_SYNC: PackageInfo = PackageInfo {
    id: "Usercube.PowershellSync@0000001",
    display_name: "Custom/Script export",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: true,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::EXPORT_SETTINGS,
};
