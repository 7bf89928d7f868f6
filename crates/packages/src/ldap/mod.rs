//! LDAP directories: `Usercube.LDAP` (generic) and `Usercube.OpenLDAP` (incremental).

pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.LDAP@0000001`: any LDAPv3 directory.
pub static LDAP: PackageInfo = PackageInfo {
    id: "Usercube.LDAP@0000001",
    display_name: "Directory/Generic LDAP",
    capabilities: Capabilities {
        export: true,
        fulfill: true,
        incremental: false,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// `Usercube.OpenLDAP@0000001`: OpenLDAP, incremental through syncrepl or `modifyTimestamp`.
pub static OPENLDAP: PackageInfo = PackageInfo {
    id: "Usercube.OpenLDAP@0000001",
    display_name: "Directory/Open LDAP",
    capabilities: Capabilities {
        export: true,
        fulfill: true,
        incremental: true,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};
