//! Scripts: `Usercube.Powershell` and `Usercube.RobotFramework` (fulfill) and
//! `Usercube.PowershellSync` (export).
//!
//! Despite the names, the script may be any executable of the platform.
//!
//! # How a script is run
//! - **Which program.** The script's path (relative paths from the settings file's folder)
//!   picks it by extension, case-insensitively: a `.ps1` runs through `pwsh` and a `.robot`
//!   through `robot` (each found on `PATH`; when it is missing the run fails, saying how to
//!   install it); any other file runs itself and must be executable.
//! - **Where.** The working folder is the settings file's folder. The orders and results files
//!   live in a private temporary folder (mode 0700) removed after the run.
//! - **Options.** `Options` (secured) reach the script as one JSON object on one line on stdin
//!   (`{"Login":"admin","Password":"..."}`; `{}` when there are none), then stdin is closed.
//!   They never appear in its arguments or environment. The script's environment is idlink's
//!   without the variables whose names start with `IDLINK` (settings overrides may hold
//!   secured values).
//! - **Time.** `TimeOut` (idlink extension, seconds, default 3600; the 6.2 pages document no
//!   limit) bounds the run. The script runs in its own process group: past the limit the group
//!   gets SIGTERM, then SIGKILL two seconds later. When the script ends, whatever it left
//!   running in its group is killed too. Each line the script writes on stdout is reported as
//!   progress, secrets redacted; the end of stderr goes into error messages, secrets redacted.
//!
//! # Fulfill (`Usercube.Powershell`, `Usercube.RobotFramework`)
//! - The orders go to `orders.json` in SPEC §6's form (`{"ProvisioningOrdersList": [...]}`).
//! - Arguments, as the 6.2 page *Write a PowerShell Script for Provisioning* names them:
//!   through pwsh, `pwsh -NoProfile -NonInteractive -File <script> -resultsFilePath <results>
//!   -ordersPath <orders>`; through robot, `robot --outputdir <temp> --variable
//!   ordersPath:<orders> --variable resultsFilePath:<results> <script>`; any other executable
//!   gets `<orders> <results>`. (The page calls `ordersPath` a folder of orders; idlink passes
//!   one file holding them all.)
//! - The script appends one JSON object per line to the results file, one per order:
//!   `{"Id":"<order Id>","State":"Executed"|"Errored","Message":"..."}`, or `"Index": <n>`
//!   (0-based position in `ProvisioningOrdersList`) in place of `Id` for orders without one.
//!   `State` is compared case-insensitively; `Message` is optional; when an order is reported
//!   twice, the last line wins. Messages are redacted like every other output.
//! - Orders the script did not report are Errored: after a clean exit, "no result"; after a
//!   non-zero exit, a signal or the time limit, why it ended and the end of its stderr. Results
//!   already reported stand.
//! - Dry run: nothing runs; each order's result says what would run.
//!
//! # Export (`Usercube.PowershellSync`)
//! - `OutputPath` is `<private temp folder>/<connection>_`: the script writes each table as
//!   `$OutputPath<table>.csv` (`<connection>_<table>.csv`, the table `<connection>_<table>`) or
//!   `<connection>.csv` beside it for the table named after the connection.
//! - `IsIncremental` is `true` when the run is incremental and an earlier export left a cookie,
//!   `false` otherwise. Through pwsh both are variables set before the script runs (`pwsh
//!   -NoProfile -NonInteractive -Command "$OutputPath = '...'; $IsIncremental = $true; & '<script>'"`),
//!   as the PowerShellSync page describes them; any other executable gets `<OutputPath>
//!   <true|false>` as arguments.
//! - After a clean exit every `.csv` file of the folder is checked and copied into the
//!   connection's staged tables: UTF-8 (a byte-order mark is dropped), a header row with no
//!   empty or repeated name, every row as long as the header. A file that fails, a file
//!   named for another connection, a script that fails, or one that writes no table fails the
//!   export, and the previous tables stay (the runner commits nothing).
//! - Every successful export leaves a cookie (the time it started), so the next incremental
//!   run says `IsIncremental` true.

mod export;
mod fulfill;
mod run;
pub mod settings;

use idlink_model::package::{Availability, Capabilities, PackageInfo};
use idlink_secrets::Redactor;

use crate::api::{Environment, Export, Fulfill, Instance, PackageError};
use settings::ScriptSettings;

/// `Usercube.Powershell@0000001`: runs a script on the provisioning orders.
pub static POWERSHELL: PackageInfo = PackageInfo {
    id: "Usercube.Powershell@0000001",
    display_name: "Custom/Script fulfill",
    capabilities: Capabilities {
        export: false,
        fulfill: true,
        incremental: false,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::FULFILL_SETTINGS,
};

/// `Usercube.RobotFramework@0000001`: runs a Robot Framework script on the provisioning orders.
pub static ROBOT_FRAMEWORK: PackageInfo = PackageInfo {
    id: "Usercube.RobotFramework@0000001",
    display_name: "Custom/Robot Framework",
    capabilities: Capabilities {
        export: false,
        fulfill: true,
        incremental: false,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::ROBOT_SETTINGS,
};

/// `Usercube.PowershellSync@0000001`: runs a script that writes the connection's tables.
pub static POWERSHELL_SYNC: PackageInfo = PackageInfo {
    id: "Usercube.PowershellSync@0000001",
    display_name: "Custom/Script export",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: true,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::EXPORT_SETTINGS,
};

/// Checks settings (no I/O) and returns the package ready to run.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    let robot = package.id == ROBOT_FRAMEWORK.id;
    let settings = ScriptSettings::parse(&env, settings, robot)?;
    let mut redactor = Redactor::new();
    for v in settings.options.values() {
        redactor.add_connection_string(v.expose_secret());
    }
    Ok(Box::new(Script {
        export: package.id == POWERSHELL_SYNC.id,
        settings,
        redactor,
        env,
        path_var: std::env::var_os("PATH"),
    }))
}

/// A script connection with checked settings.
struct Script {
    /// Export (`PowershellSync`) rather than fulfill.
    export: bool,
    settings: ScriptSettings,
    redactor: Redactor,
    env: Environment,
    /// Where `pwsh` and `robot` are looked for (the agent's `PATH`).
    path_var: Option<std::ffi::OsString>,
}

impl Instance for Script {
    fn export(&self) -> Option<&dyn Export> {
        self.export.then_some(self as &dyn Export)
    }
    fn fulfill(&self) -> Option<&dyn Fulfill> {
        (!self.export).then_some(self as &dyn Fulfill)
    }
}

/// How a script file is run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Runner {
    Pwsh(std::path::PathBuf),
    Robot(std::path::PathBuf),
    Direct,
}

impl Script {
    /// The options line for stdin: `{"key":"value",...}\n`, built in memory that is zeroized.
    fn stdin_line(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut line = zeroize::Zeroizing::new(Vec::with_capacity(256));
        line.push(b'{');
        for (i, (k, v)) in self.settings.options.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            // Writing to a Vec cannot fail; the value is escaped straight into `line`.
            let _ = serde_json::to_writer(&mut *line, k);
            line.push(b':');
            let _ = serde_json::to_writer(&mut *line, v.expose_secret());
        }
        line.extend_from_slice(b"}\n");
        line
    }

    fn longest_secret(&self) -> usize {
        self.settings
            .options
            .values()
            .map(|v| v.expose_secret().len())
            .max()
            .unwrap_or(0)
    }

    fn settings_error(&self, message: String) -> PackageError {
        PackageError::Settings {
            connection: self.env.connection.clone(),
            path: self.settings.script_setting.to_string(),
            message,
        }
    }

    /// Checks that the script exists and picks how to run it.
    fn runner(&self) -> Result<Runner, PackageError> {
        let script = &self.settings.script;
        let meta = std::fs::metadata(script).map_err(|e| {
            self.settings_error(format!(
                "cannot use '{}': {e}; give the path of an existing script (relative paths start from the settings file's folder)",
                script.display()
            ))
        })?;
        if !meta.is_file() {
            return Err(self.settings_error(format!(
                "'{}' is not a file; give the path of the script to run",
                script.display()
            )));
        }
        let ext = script
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("ps1") => run::find_in_path("pwsh", self.path_var.as_deref())
                .map(Runner::Pwsh)
                .ok_or_else(|| self.settings_error(format!(
                    "'{}' is a PowerShell script but pwsh is not on PATH: install PowerShell (on Debian: https://learn.microsoft.com/powershell/scripting/install/install-debian), or give an executable script",
                    script.display()
                ))),
            Some("robot") => run::find_in_path("robot", self.path_var.as_deref())
                .map(Runner::Robot)
                .ok_or_else(|| self.settings_error(format!(
                    "'{}' is a Robot Framework script but robot is not on PATH: install it with `pip install robotframework`, or give an executable script",
                    script.display()
                ))),
            _ => {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o111 == 0 {
                    return Err(self.settings_error(format!(
                        "'{}' is not executable: make it executable (chmod +x) with a #! line naming its interpreter, or use a .ps1 or .robot script",
                        script.display()
                    )));
                }
                Ok(Runner::Direct)
            }
        }
    }

    fn run_spec<'a>(
        &'a self,
        invocation: &'a run::Invocation,
        progress: &'a dyn crate::api::Progress,
    ) -> run::Run<'a> {
        run::Run {
            invocation,
            cwd: &self.env.base_dir,
            stdin: self.stdin_line(),
            timeout: self.settings.timeout,
            redactor: &self.redactor,
            longest_secret: self.longest_secret(),
            progress,
            connection: &self.env.connection,
        }
    }
}

/// A private temporary folder for one run.
fn work_dir(connection: &str) -> Result<tempfile::TempDir, PackageError> {
    tempfile::Builder::new()
        .prefix(&format!("idlink-script-{connection}-"))
        .tempdir()
        .map_err(|e| PackageError::io("create a temporary folder in", &std::env::temp_dir(), e))
}
