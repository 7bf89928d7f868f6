//! Unplugged connections: `Usercube.Custom`.

pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.Custom@0000001`: a connection with no technology behind it (tables arrive by
/// other means).
pub static CUSTOM: PackageInfo = PackageInfo {
    id: "Usercube.Custom@0000001",
    display_name: "Custom/Unplugged",
    capabilities: Capabilities {
        export: false,
        fulfill: false,
        incremental: false,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};
