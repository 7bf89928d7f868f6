//! Settings of the JSON order-file package.

use idlink_model::package::{Field, Kind, SettingsSchema};

/// An optional output folder.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[Field::optional(
        "OutputPath",
        Kind::String,
        "folder the JSON order files go to",
    )],
    constraints: &[],
};
