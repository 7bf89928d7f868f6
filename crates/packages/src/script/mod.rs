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
//!   twice, the last line wins; an `Id` names the first order that has it (report orders that
//!   share an Id by `Index`). Messages are redacted like every other output. Lines that name
//!   no order or are not such objects are listed in the messages of the unreported orders.
//! - Orders the script did not report are Errored: after a clean exit, "no result"; after a
//!   non-zero exit, a signal or the time limit, why it ended and the end of its stderr. Results
//!   already reported stand.
//! - Dry run: nothing runs; each order's result says what would run.
//!
//! # Check connection
//! The script exists and can run (a file, executable, or its interpreter on `PATH`); it is not
//! run.
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

use crate::api::{CheckConnection, Environment, Export, Fulfill, Instance, PackageError};
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
    fn check_connection(&self) -> Option<&dyn CheckConnection> {
        Some(self)
    }
}

/// Check connection: the script exists and can run (its interpreter is installed); nothing runs.
#[async_trait::async_trait]
impl CheckConnection for Script {
    async fn check_connection(&self) -> Result<String, PackageError> {
        let script = self.settings.script.display();
        Ok(match self.runner()? {
            Runner::Pwsh(p) => format!("{script} (run through {})", p.display()),
            Runner::Robot(p) => format!("{script} (run through {})", p.display()),
            Runner::Direct => format!("{script} (executable)"),
        })
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
            environment: std::env::vars_os().collect(),
            connection: &self.env.connection,
        }
    }
}

/// What the temporary folder of a run is named with: `idlink-script-<pid>-<connection>-XXXXXX`.
const WORK_DIR_PREFIX: &str = "idlink-script-";

/// A private temporary folder for one run: only its owner may list or read it (it holds the
/// exported rows, orders and results; tempfile would create it as the umask says, 0755). It is
/// named after the idlink process, so that the folders of a run killed before it could remove
/// them (`kill -9`) are removed by the next ([`remove_orphans`]).
fn work_dir(connection: &str) -> Result<tempfile::TempDir, PackageError> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    let dir = tempfile::Builder::new()
        .prefix(&format!(
            "{WORK_DIR_PREFIX}{}-{connection}-",
            std::process::id()
        ))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&tmp)
        .map_err(|e| PackageError::io("create a temporary folder in", &tmp, e))?;
    remove_orphans(&tmp, dir.path());
    Ok(dir)
}

/// Removes from `tmp` the run folders whose idlink process is gone, owned by the owner of
/// `ours` (a folder of this process just created): what they hold (exported rows, orders) is
/// no one's any more. A folder of a live process, of another user, a link, or one named
/// otherwise (as idlink named them before) is left alone; so is one whose process number was
/// taken again since. Nothing here fails a run.
fn remove_orphans(tmp: &std::path::Path, ours: &std::path::Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(owner) = std::fs::symlink_metadata(ours).map(|m| m.uid()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(WORK_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
            .filter(|&pid| pid > 0 && pid.unsigned_abs() != std::process::id())
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        let path = entry.path();
        let orphan =
            gone && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == owner);
        if orphan {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::api::{ExportRequest, FulfillRequest, NoProgress, OrderState, OrdersFile};
    use crate::output::ExportOutput;
    use crate::paths::SourceRoots;

    fn executable(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A script connection whose `pwsh` and `robot` are looked for in `bin` only.
    fn script(dir: &Path, file: &str, robot: bool, export: bool) -> Script {
        let env = Environment {
            connection: "Conn".into(),
            base_dir: dir.to_path_buf(),
            roots: SourceRoots::new(dir, &["."]),
            mapped_tables: Vec::new(),
        };
        let name = if robot {
            "RobotFrameworkScriptPath"
        } else {
            "PowerShellScriptPath"
        };
        let value = json!({ name: file, "Options": {"Password": "secret-7d1e"} });
        let settings = ScriptSettings::parse(&env, value, robot).expect("settings");
        let mut redactor = Redactor::new();
        redactor.add("secret-7d1e");
        Script {
            export,
            settings,
            redactor,
            env,
            path_var: Some(dir.join("bin").into_os_string()),
        }
    }

    /// A fake interpreter: saves its arguments (one per line) and stdin, then runs `then`.
    fn fake(dir: &Path, name: &str, then: &str) {
        std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        executable(
            &dir.join("bin").join(name),
            &format!(
                "#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$PWD/argv.txt\"\ncat > \"$PWD/stdin.txt\"\n{then}\n"
            ),
        );
    }

    /// A `.ps1` export connection in `dir` whose fake `pwsh` finds `$OutputPath` in its
    /// command (as `$prefix`), runs `then`, and writes table `users` there.
    fn pwsh_export(dir: &Path, then: &str) -> Script {
        std::fs::write(dir.join("export.ps1"), "# PowerShell").expect("write");
        fake(
            dir,
            "pwsh",
            &format!(
                r#"prefix=$(printf '%s' "$4" | sed -n "s/^\$OutputPath = '\([^']*\)'.*/\1/p")
{then}
printf 'id\n1\n' > "${{prefix}}users.csv""#
            ),
        );
        script(dir, "export.ps1", false, true)
    }

    /// Runs `s`'s export (incremental from `cookie` when given): its outcome and the names of
    /// its tables.
    async fn export_with(
        s: &Script,
        cookie: Option<&str>,
    ) -> (crate::api::ExportOutcome, Vec<String>) {
        let staging = tempfile::tempdir().expect("staging");
        let mut out = ExportOutput::new("Conn", staging.path());
        let request = ExportRequest {
            incremental: cookie.is_some(),
            cookie,
            progress: &NoProgress,
        };
        let outcome = Instance::export(s)
            .expect("exports")
            .export(&request, &mut out)
            .await
            .expect("runs");
        let tables = out.finish().expect("finish");
        (outcome, tables.into_iter().map(|t| t.name).collect())
    }

    fn argv(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("argv.txt"))
            .expect("the fake ran")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn one_order() -> Vec<crate::api::ProvisioningOrder> {
        let file: OrdersFile = serde_json::from_value(json!({"ProvisioningOrdersList": [
            {"Id": "a", "ChangeType": "Added", "ResourceType": {"Identifier": "R"}}
        ]}))
        .expect("orders");
        file.orders
    }

    async fn fulfill(s: &Script) -> Result<Vec<crate::api::OrderResult>, PackageError> {
        let orders = one_order();
        Instance::fulfill(s)
            .expect("fulfills")
            .fulfill(&FulfillRequest {
                orders: &orders,
                dry_run: false,
                progress: &NoProgress,
            })
            .await
    }

    #[tokio::test]
    async fn ps1_scripts_run_through_pwsh_with_the_documented_parameter_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("Fulfill.PS1"), "# PowerShell").expect("write");
        fake(
            d,
            "pwsh",
            r#"echo '{"Id":"a","State":"Executed","Message":"via pwsh"}' >> "$6""#,
        );
        let s = script(d, "Fulfill.PS1", false, false);
        let results = fulfill(&s).await.expect("runs");
        assert_eq!(results[0].state, OrderState::Executed, "{results:?}");
        assert_eq!(results[0].message, "via pwsh");
        let a = argv(d);
        assert_eq!(a[..3], ["-NoProfile", "-NonInteractive", "-File"]);
        assert_eq!(Path::new(&a[3]), d.join("Fulfill.PS1"));
        assert_eq!(
            (a[4].as_str(), a[6].as_str()),
            ("-resultsFilePath", "-ordersPath")
        );
        assert!(
            a[5].ends_with("results.jsonl") && a[7].ends_with("orders.json"),
            "{a:?}"
        );
        let stdin = std::fs::read_to_string(d.join("stdin.txt")).expect("stdin");
        assert_eq!(stdin, "{\"Password\":\"secret-7d1e\"}\n");
    }

    #[tokio::test]
    async fn robot_scripts_run_through_robot_with_variables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("fulfill.robot"), "*** Test Cases ***").expect("write");
        fake(
            d,
            "robot",
            r#"echo '{"Id":"a","State":"Errored","Message":"via robot"}' >> "${6#resultsFilePath:}""#,
        );
        let s = script(d, "fulfill.robot", true, false);
        let results = fulfill(&s).await.expect("runs");
        assert_eq!(results[0].state, OrderState::Errored, "{results:?}");
        assert_eq!(results[0].message, "via robot");
        let a = argv(d);
        assert_eq!(a.len(), 7, "{a:?}");
        assert_eq!(
            (a[0].as_str(), a[2].as_str(), a[4].as_str()),
            ("--outputdir", "--variable", "--variable")
        );
        assert!(
            a[3].starts_with("ordersPath:") && a[3].ends_with("orders.json"),
            "{a:?}"
        );
        assert!(a[5].starts_with("resultsFilePath:"), "{a:?}");
        assert_eq!(Path::new(&a[6]), d.join("fulfill.robot"));
    }

    /// The real `robot` (PyPI's robotframework, installed into a cache venv by the test
    /// harness) runs a .robot script that reads the documented variables and the options on
    /// stdin, and writes its result.
    #[tokio::test]
    async fn real_robot_framework_runs_a_robot_script() {
        let bin = idlink_test_support::robot::robot_bin().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(
            d.join("fulfill.robot"),
            "*** Settings ***\n\
             Library    OperatingSystem\n\
             \n\
             *** Test Cases ***\n\
             Provision\n\
             \x20   ${options}=    Evaluate    json.loads(sys.stdin.readline())    modules=json,sys\n\
             \x20   ${orders}=    Get File    ${ordersPath}\n\
             \x20   ${count}=    Evaluate    len(json.loads($orders)['ProvisioningOrdersList'])    modules=json\n\
             \x20   Should Be Equal As Integers    ${count}    1\n\
             \x20   Append To File    ${resultsFilePath}    {\"Id\":\"a\",\"State\":\"Executed\",\"Message\":\"robot saw ${options}[Password]\"}\\n\n",
        )
        .expect("write");
        let mut s = script(d, "fulfill.robot", true, false);
        s.path_var = Some(bin.into_os_string());
        let results = fulfill(&s).await.expect("runs");
        assert_eq!(results[0].state, OrderState::Executed, "{results:?}");
        assert_eq!(results[0].message, "robot saw **REDACTED**");
    }

    #[tokio::test]
    async fn pwsh_exports_get_output_path_and_is_incremental_as_variables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let s = pwsh_export(d, "");
        let (outcome, tables) = export_with(&s, Some("earlier")).await;
        assert!(outcome.incremental);
        assert_eq!(tables, ["Conn_users"]);
        let a = argv(d);
        assert_eq!(a[..3], ["-NoProfile", "-NonInteractive", "-Command"]);
        assert!(
            a[3].starts_with("$OutputPath = '")
                && a[3].contains("/ExportOutput/Conn_'; $IsIncremental = $true; & '")
                && a[3].ends_with("export.ps1'"),
            "{a:?}"
        );
    }

    #[tokio::test]
    async fn regression_the_run_folder_of_a_script_is_private_to_its_owner() {
        // It was created 0755 (the umask's way): other local users could list and read the
        // rows a script exported there, and the orders of a fulfill.
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let s = pwsh_export(
            d,
            &format!(
                r#"stat -c %a "$(dirname "$(dirname "${{prefix}}x")")" > '{}/mode.txt'"#,
                d.display()
            ),
        );
        export_with(&s, None).await;
        let mode = std::fs::read_to_string(d.join("mode.txt")).expect("mode seen");
        assert_eq!(mode.trim(), "700");
    }

    /// Settings overrides (`IDLINK__...`) may hold secured values: the script's environment
    /// has none of idlink's variables, and keeps the others.
    #[tokio::test]
    async fn idlink_variables_never_reach_the_script_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        executable(
            &d.join("env.sh"),
            "#!/bin/bash\ntr '\\0' '\\n' < /proc/$$/environ > \"$PWD/environ.txt\"\n",
        );
        let s = script(d, "env.sh", false, false);
        let invocation = run::Invocation {
            program: d.join("env.sh"),
            args: Vec::new(),
        };
        let mut spec = s.run_spec(&invocation, &NoProgress);
        spec.environment = vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("KEEP_ME".into(), "yes".into()),
            (
                "IDLINK__Connections__Conn__Options__Password".into(),
                "secret-7d1e".into(),
            ),
            ("idlink_agent_key".into(), "AGE-SECRET-KEY-1XYZ".into()),
        ];
        let outcome = run::run(spec).await.expect("runs");
        assert!(outcome.exit.success(), "{}", outcome.describe());
        let environ = std::fs::read_to_string(d.join("environ.txt")).expect("environ");
        assert!(environ.lines().any(|l| l == "KEEP_ME=yes"), "{environ}");
        assert!(
            !environ.contains("secret-7d1e")
                && !environ.contains("AGE-SECRET")
                && !environ.to_ascii_uppercase().contains("IDLINK"),
            "{environ}"
        );
    }

    #[tokio::test]
    async fn a_missing_interpreter_says_how_to_install_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("f.ps1"), "").expect("write");
        std::fs::write(d.join("f.robot"), "").expect("write");
        let m = fulfill(&script(d, "f.ps1", false, false))
            .await
            .expect_err("no pwsh")
            .to_string();
        assert!(
            m.contains("pwsh is not on PATH") && m.contains("install PowerShell"),
            "{m}"
        );
        let m = fulfill(&script(d, "f.robot", true, false))
            .await
            .expect_err("no robot")
            .to_string();
        assert!(m.contains("pip install robotframework"), "{m}");
    }
}
