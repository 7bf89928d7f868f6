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
