//! Settings of the JSON order-file package.

use idlink_model::package::{Field, Kind, SettingsSchema};

/// The output folder (relative to the settings file's folder, under `SourcesRootPaths`).
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[Field::required(
        "OutputPath",
        Kind::String,
        "folder the JSON order files go to, under SourcesRootPaths",
    )
    .under_roots()],
    constraints: &[],
};

/// The settings as `typed_json` gives them.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
// A field the schema lacks is refused, so the schema and this parser cannot disagree
// silently (the settings schema test in idlink-engine walks both).
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    pub output_path: String,
}
