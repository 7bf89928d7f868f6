//! Settings of the LDAP packages (`Usercube.LDAP` and `Usercube.OpenLDAP` share them).

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};

/// `Servers[]`, `Tables[]` and search limits.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "Servers",
            Kind::ObjectList(&SERVER),
            "servers to try, in order",
        ),
        Field::required(
            "Tables",
            Kind::ObjectList(&TABLE),
            "searches; one table must be `entries`",
        ),
        Field::optional(
            "SizeLimit",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "most entries a search returns (0: no limit)",
        ),
        Field::optional(
            "TimeLimit",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "longest a search may run on the server, in seconds (0: no limit)",
        ),
        Field::optional(
            "TimeOut",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "longest the agent waits for a response, in seconds",
        ),
    ],
    constraints: &[],
};

/// One element of `Servers`.
pub static SERVER: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "Server",
            Kind::String,
            "host name or address, with an optional :port",
        ),
        Field::optional(
            "AuthType",
            Kind::Enum(&["Anonymous", "Basic"]),
            "how to bind",
        ),
        Field::optional("Login", Kind::String, "DN to bind as").secured(),
        Field::optional("Password", Kind::String, "password of the bind DN").secured(),
        Field::optional(
            "Controls",
            Kind::StringList,
            "LDAP controls to use, e.g. PagedResult",
        ),
        Field::optional("EnableSSL", Kind::Bool, "connect with LDAPS"),
        Field::optional(
            "StartTls",
            Kind::Bool,
            "upgrade the connection with StartTLS",
        ),
        Field::optional(
            "CaFile",
            Kind::String,
            "PEM file of the CA certificates to trust",
        ),
    ],
    constraints: &[Constraint::RequiresWhen {
        field: "AuthType",
        equals: "Basic",
        then: &["Login", "Password"],
    }],
};

/// One element of `Tables`.
pub static TABLE: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "Table",
            Kind::String,
            "table name, suffix of the output file",
        ),
        Field::required("BaseDN", Kind::String, "DN the search starts from"),
        Field::optional("Filter", Kind::String, "LDAP search filter"),
        Field::optional(
            "Scope",
            Kind::Enum(&["Base", "OneLevel", "Subtree"]),
            "search depth",
        ),
    ],
    constraints: &[],
};
