//! Settings of the SQL packages (all share one schema).

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};

/// `ConnectionString`, then `SqlCommand` or `SqlFile` (neither: every mapped table).
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "ConnectionString",
            Kind::String,
            "how to reach the database (secured: it may carry a password)",
        )
        .secured(),
        Field::optional("SqlCommand", Kind::String, "query whose result is exported"),
        Field::optional(
            "SqlFile",
            Kind::String,
            "file holding the query whose result is exported",
        ),
        Field::optional(
            "Timeout",
            Kind::Int {
                min: 0,
                max: 86_400,
            },
            "query timeout, in seconds",
        ),
        Field::optional(
            "IsolationLevel",
            Kind::Enum(&[
                "ReadUncommitted",
                "ReadCommitted",
                "RepeatableRead",
                "Serializable",
                "Snapshot",
            ]),
            "transaction isolation level of the export",
        ),
    ],
    constraints: &[Constraint::AtMostOne(&["SqlCommand", "SqlFile"])],
};
