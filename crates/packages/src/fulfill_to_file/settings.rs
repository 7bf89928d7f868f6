//! Settings of the JSON order-file package.

use idlink_model::package::{Field, Kind, SettingsSchema};

/// The folder, inside the first `SourcesRootPaths` folder, that order files go to when
/// `OutputPath` is not given. The 6.2 pages document no setting for this package (its page is
/// empty), so idlink chooses one.
pub const DEFAULT_FOLDER: &str = "FulfillToFile";

/// The output folder (relative to the settings file's folder, under `SourcesRootPaths`).
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[Field::optional(
        "OutputPath",
        Kind::String,
        "folder the JSON order files go to, under SourcesRootPaths (default: FulfillToFile in the first SourcesRootPaths folder; the 6.2 pages document no setting)",
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
    #[serde(default)]
    pub output_path: Option<String>,
}
