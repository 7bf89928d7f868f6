//! Settings of the script packages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use idlink_model::package::{Field, Kind, SettingsSchema};
use idlink_secrets::Secret;

use crate::api::{Environment, PackageError, parse_settings};

/// How long a script may run when `TimeOut` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// `Usercube.Powershell`: the script, its secured options and idlink's time limit.
pub static FULFILL_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "PowerShellScriptPath",
            Kind::String,
            "script run with the orders file and a results file path (a .ps1 through pwsh, any executable otherwise)",
        )
        .destination(),
        OPTIONS,
        TIMEOUT,
    ],
    constraints: &[],
};

/// `Usercube.RobotFramework`: the same, with the Robot Framework page's setting name.
pub static ROBOT_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "RobotFrameworkScriptPath",
            Kind::String,
            "Robot Framework script (.robot) run through robot with the orders file and a results file path as variables; any executable otherwise",
        ),
        OPTIONS,
        TIMEOUT,
    ],
    constraints: &[],
};

/// `Usercube.PowershellSync`: the script, its secured options and idlink's time limit.
pub static EXPORT_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "PowerShellScriptPath",
            Kind::String,
            "script run with the output path prefix and whether the export is incremental",
        )
        .destination(),
        OPTIONS,
        TIMEOUT,
    ],
    constraints: &[],
};

const OPTIONS: Field = Field::optional(
    "Options",
    Kind::Map,
    "key-values given to the script as one JSON line on stdin (never in its arguments or environment)",
)
.secured();

const TIMEOUT: Field = Field::optional(
    "TimeOut",
    Kind::Int {
        min: 1,
        max: 7 * 24 * 3600,
    },
    "seconds the script may run before its whole process group is killed (default 3600)",
);

/// The checked settings of a script connection.
#[derive(Debug)]
pub(crate) struct ScriptSettings {
    /// The script, resolved against the settings file's folder.
    pub script: PathBuf,
    /// The setting that named it (for messages).
    pub script_setting: &'static str,
    /// `Options`, sorted by key.
    pub options: BTreeMap<String, Secret>,
    pub timeout: Duration,
}

/// The settings as `typed_json` gives them.
#[derive(Debug, serde::Deserialize)]
// A field the schema lacks is refused, so the schema and this parser cannot disagree
// silently (the settings schema test in idlink-engine walks both).
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "PowerShellScriptPath", default)]
    powershell: Option<String>,
    #[serde(rename = "Options", default)]
    options: Option<BTreeMap<String, Secret>>,
    #[serde(rename = "TimeOut", default)]
    timeout: Option<i64>,
}

/// [`Raw`] for the Robot Framework package.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRobot {
    #[serde(rename = "RobotFrameworkScriptPath", default)]
    robot: Option<String>,
    #[serde(rename = "Options", default)]
    options: Option<BTreeMap<String, Secret>>,
    #[serde(rename = "TimeOut", default)]
    timeout: Option<i64>,
}

impl ScriptSettings {
    /// Parses and checks the settings (no I/O). `robot` selects the Robot Framework page's names.
    pub fn parse(
        env: &Environment,
        value: serde_json::Value,
        robot: bool,
    ) -> Result<Self, PackageError> {
        let (path, options, timeout, name) = if robot {
            let r: RawRobot = parse_settings(&env.connection, value)?;
            (r.robot, r.options, r.timeout, "RobotFrameworkScriptPath")
        } else {
            let r: Raw = parse_settings(&env.connection, value)?;
            (r.powershell, r.options, r.timeout, "PowerShellScriptPath")
        };
        let settings_error = |path: &str, message: String| PackageError::Settings {
            connection: env.connection.clone(),
            path: path.to_string(),
            message,
        };
        let script = match path {
            Some(p) if !p.trim().is_empty() => env.roots.program(&env.base_dir.join(p.trim()))?,
            Some(_) => {
                return Err(settings_error(
                    name,
                    "is empty: give the path of the script to run".into(),
                ));
            }
            None => {
                return Err(settings_error(
                    name,
                    "is missing: give the path of the script to run".into(),
                ));
            }
        };
        let timeout = match timeout {
            None => DEFAULT_TIMEOUT,
            Some(s) if s >= 1 => Duration::from_secs(s.unsigned_abs()),
            Some(_) => {
                return Err(settings_error(
                    "TimeOut",
                    "must be at least 1 (seconds)".into(),
                ));
            }
        };
        let options = options.unwrap_or_default();
        if let Some(key) = options.keys().find(|k| k.trim().is_empty()) {
            return Err(settings_error(
                &format!("Options.{key}"),
                "has an empty name: give each option a name".into(),
            ));
        }
        Ok(ScriptSettings {
            script,
            script_setting: name,
            options,
            timeout,
        })
    }
}
