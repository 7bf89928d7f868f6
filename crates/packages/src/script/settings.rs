//! Settings of the script packages.

use idlink_model::package::{Field, Kind, SettingsSchema};

/// `Usercube.Powershell`: the script and its secured options.
pub static FULFILL_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "PowerShellScriptPath",
            Kind::String,
            "script run with the orders file and a results file path",
        ),
        OPTIONS,
    ],
    constraints: &[],
};

/// `Usercube.PowershellSync`: the script and its secured options.
pub static EXPORT_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "PowerShellScriptPath",
            Kind::String,
            "script run with the output path prefix and whether the export is incremental",
        ),
        OPTIONS,
    ],
    constraints: &[],
};

const OPTIONS: Field = Field::optional(
    "Options",
    Kind::Map,
    "key-values given to the script as JSON on stdin",
)
.secured();
