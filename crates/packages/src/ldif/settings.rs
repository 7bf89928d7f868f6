//! Settings of the LDIF package.

use idlink_model::package::{Field, Kind, SettingsSchema};

use crate::csv::settings::check_encoding;

/// `LDIFFile` and optional entry/attribute filters.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required("LDIFFile", Kind::String, "LDIF file to export"),
        Field::optional(
            "FilterAttribute",
            Kind::String,
            "attribute that selects the entries",
        ),
        Field::optional(
            "FilterValues",
            Kind::StringList,
            "values of FilterAttribute to keep",
        ),
        Field::optional(
            "Attributes",
            Kind::StringList,
            "attributes to export (default: all)",
        ),
        Field::optional(
            "LdifEncoding",
            Kind::CheckedString(check_encoding),
            "file encoding (default UTF-8)",
        ),
    ],
    constraints: &[],
};
