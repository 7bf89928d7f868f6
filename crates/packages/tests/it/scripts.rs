//! Script packages (`Usercube.Powershell`, `Usercube.PowershellSync`) running real bash and
//! python3 scripts the tests write into a temporary folder.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use idlink_model::package::PackageCatalog;
use idlink_packages::api::{
    ExportOutcome, ExportRequest, FulfillRequest, Instance, OrderResult, OrderState, OrdersFile,
    PackageError, Progress, ProvisioningOrder,
};
use idlink_packages::output::{ExportOutput, StagedTable};
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Registry};
use serde_json::{Value, json};

const FULFILL: &str = "Usercube.Powershell@0000001";
const EXPORT: &str = "Usercube.PowershellSync@0000001";
const CONNECTION: &str = "HRScript";
/// The secured option every test passes: it must never come back out.
const SECRET: &str = "Pw-7f3c1e9a-do-not-leak";

fn require(tool: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(found, "{tool} is needed by these tests: {install}");
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        require("bash", "apt-get install -y bash");
        require("python3", "apt-get install -y python3");
        Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.base().join(rel)
    }

    /// Writes an executable script; returns its name (relative to the settings folder).
    fn script(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        name.to_string()
    }

    fn env(&self) -> Environment {
        Environment {
            connection: CONNECTION.to_string(),
            base_dir: self.base().to_path_buf(),
            roots: SourceRoots::new(self.base(), &["."]),
            mapped_tables: Vec::new(),
        }
    }

    fn instance(&self, package: &str, settings: Value) -> Result<Box<dyn Instance>, PackageError> {
        let registry = Registry::new();
        let info = registry.get(package).expect("registered package");
        idlink_packages::instantiate(info, settings, self.env())
    }

    /// Fulfills `orders` with the script; returns the results and what progress saw.
    async fn fulfill(
        &self,
        settings: Value,
        orders: &[ProvisioningOrder],
        dry_run: bool,
    ) -> (Result<Vec<OrderResult>, PackageError>, Recorded) {
        let instance = self.instance(FULFILL, settings).expect("settings accepted");
        let progress = Recorded::default();
        let request = FulfillRequest {
            orders,
            dry_run,
            progress: &progress,
        };
        let results = instance
            .fulfill()
            .expect("fulfills")
            .fulfill(&request)
            .await;
        (results, progress)
    }

    /// Exports with the script; returns the staged tables (sorted by name) and the outcome.
    async fn export(
        &self,
        settings: Value,
        incremental: bool,
        cookie: Option<&str>,
    ) -> (
        Result<(Vec<StagedTable>, ExportOutcome), PackageError>,
        Recorded,
        tempfile::TempDir,
    ) {
        let instance = self.instance(EXPORT, settings).expect("settings accepted");
        let staging = tempfile::tempdir().expect("staging");
        let mut out = ExportOutput::new(CONNECTION, staging.path());
        let progress = Recorded::default();
        let request = ExportRequest {
            incremental,
            cookie,
            progress: &progress,
        };
        let outcome = instance
            .export()
            .expect("exports")
            .export(&request, &mut out)
            .await;
        let result = outcome.and_then(|o| {
            let mut tables = out.finish()?;
            tables.sort_by(|a, b| a.name.cmp(&b.name));
            Ok((tables, o))
        });
        (result, progress, staging)
    }
}

#[derive(Default)]
struct Recorded {
    lines: Mutex<Vec<String>>,
}

impl Recorded {
    fn text(&self) -> String {
        self.lines.lock().expect("lock").join("\n")
    }
}

impl Progress for Recorded {
    fn rows(&self, table: &str, rows: u64) {
        self.lines
            .lock()
            .expect("lock")
            .push(format!("rows {table} {rows}"));
    }
    fn phase(&self, message: &str) {
        self.lines.lock().expect("lock").push(message.to_string());
    }
}

fn settings(script: &str) -> Value {
    json!({
        "PowerShellScriptPath": script,
        "Options": {"Login": "admin", "Password": SECRET},
    })
}

/// Orders `o0`, `o1`, ... (`ids` of them) and one without an Id at the end.
fn orders(ids: usize) -> Vec<ProvisioningOrder> {
    let mut list: Vec<Value> = (0..ids)
        .map(|i| {
            json!({
                "Id": format!("o{i}"),
                "ChangeType": if i % 2 == 0 { "Added" } else { "Deleted" },
                "ResourceType": {"Identifier": "HR_Account"},
                "Changes": {"login": format!("user{i}")},
            })
        })
        .collect();
    list.push(json!({
        "ChangeType": "Modified",
        "ResourceType": {"Identifier": "HR_Account"},
        "Changes": {"login": "noid"},
    }));
    let file: OrdersFile =
        serde_json::from_value(json!({ "ProvisioningOrdersList": list })).expect("orders");
    file.orders
}

fn all_text(results: &[OrderResult]) -> String {
    serde_json::to_string(results).expect("results serialize")
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: it runs no more).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("a pid")
}

#[tokio::test]
async fn bash_script_executes_orders_and_reads_the_options_on_stdin() {
    let f = Fixture::new();
    let script = f.script(
        "fulfill.sh",
        r#"#!/bin/bash
set -eu
IFS= read -r options
printf '%s' "$options" > "$PWD/stdin.txt"
printf '%s\n' "$#" "$1" "$2" > "$PWD/args.txt"
grep -q '"ProvisioningOrdersList"' "$1"
echo "working on $(grep -o '"Id":"[^"]*"' "$1" | wc -l) orders"
echo '{"Id":"o0","State":"Executed","Message":"created user0"}' >> "$2"
printf '\xef\xbb\xbf{"Id":"o1","State":"executed"}\r\n' >> "$2"
echo '{"Index":2,"State":"Executed","Message":"modified noid"}' >> "$2"
"#,
    );
    let orders = orders(2);
    let (results, progress) = f.fulfill(settings(&script), &orders, false).await;
    let results = results.expect("fulfill runs");
    let states: Vec<OrderState> = results.iter().map(|r| r.state).collect();
    assert_eq!(states, [OrderState::Executed; 3], "{results:#?}");
    assert_eq!(results[0].message, "created user0");
    assert_eq!(results[0].id.as_deref(), Some("o0"));
    assert_eq!(results[1].message, "the script reported Executed");
    assert_eq!(results[2].message, "modified noid");
    assert_eq!(results[2].id, None);

    let stdin = std::fs::read_to_string(f.path("stdin.txt")).expect("the script saved stdin");
    let options: Value = serde_json::from_str(&stdin).expect("one JSON line");
    assert_eq!(options, json!({"Login": "admin", "Password": SECRET}));
    let args = std::fs::read_to_string(f.path("args.txt")).expect("args");
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args[0], "2", "orders file and results file: {args:?}");
    assert!(args[1].ends_with("orders.json") && args[2].ends_with("results.jsonl"));
    // The run's files are removed afterwards.
    assert!(!Path::new(args[1]).exists(), "orders file left behind");
    assert!(
        progress.text().contains("working on 2 orders"),
        "stdout lines are reported: {}",
        progress.text()
    );
}

#[tokio::test]
async fn python_script_fails_some_orders() {
    let f = Fixture::new();
    let script = f.script(
        "fulfill.py",
        r#"#!/usr/bin/env python3
import json, sys
options = json.loads(sys.stdin.readline())
orders = json.load(open(sys.argv[1]))["ProvisioningOrdersList"]
with open(sys.argv[2], "a") as results:
    for i, order in enumerate(orders):
        key = {"Id": order["Id"]} if "Id" in order else {"Index": i}
        if order["ChangeType"] == "Deleted":
            line = dict(key, State="Errored", Message="refused: %s cannot be deleted" % order["Changes"]["login"])
        else:
            assert options["Login"] == "admin"
            line = dict(key, State="Executed", Message="done: " + order["Changes"]["login"])
        results.write(json.dumps(line) + "\n")
"#,
    );
    let orders = orders(4);
    let (results, _) = f.fulfill(settings(&script), &orders, false).await;
    let results = results.expect("fulfill runs");
    let got: Vec<(OrderState, &str)> = results
        .iter()
        .map(|r| (r.state, r.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (OrderState::Executed, "done: user0"),
            (OrderState::Errored, "refused: user1 cannot be deleted"),
            (OrderState::Executed, "done: user2"),
            (OrderState::Errored, "refused: user3 cannot be deleted"),
            (OrderState::Executed, "done: noid"),
        ]
    );
}

#[tokio::test]
async fn a_crash_errors_the_unreported_orders_with_the_end_of_stderr_redacted() {
    let f = Fixture::new();
    let script = f.script(
        "crash.sh",
        r#"#!/bin/bash
IFS= read -r options
echo '{"Id":"o0","State":"Executed","Message":"created"}' >> "$2"
echo "connecting with $options" >&2
echo "fatal: cannot reach the HR system" >&2
exit 3
"#,
    );
    let orders = orders(2);
    let (results, progress) = f.fulfill(settings(&script), &orders, false).await;
    let results = results.expect("a crash is per order, not a batch failure");
    assert_eq!(results[0].state, OrderState::Executed);
    for r in &results[1..] {
        assert_eq!(r.state, OrderState::Errored, "{r:?}");
        assert!(
            r.message.contains("exited with status 3")
                && r.message.contains("fatal: cannot reach the HR system")
                && r.message.contains("**REDACTED**"),
            "{}",
            r.message
        );
    }
    let text = format!("{}{}", all_text(&results), progress.text());
    assert!(!text.contains(SECRET), "the secret leaked: {text}");

    // Killed by a signal.
    let script = f.script(
        "segv.sh",
        "#!/bin/bash\necho '{\"Id\":\"o1\",\"State\":\"Executed\"}' >> \"$2\"\nkill -SEGV $$\n",
    );
    let (results, _) = f.fulfill(settings(&script), &orders, false).await;
    let results = results.expect("runs");
    assert_eq!(results[0].state, OrderState::Errored);
    assert!(
        results[0].message.contains("killed by signal SIGSEGV"),
        "{}",
        results[0].message
    );
    assert_eq!(results[1].state, OrderState::Executed);
}

#[tokio::test]
async fn a_clean_exit_without_results_errors_each_order_and_bad_lines_are_named() {
    let f = Fixture::new();
    let script = f.script(
        "partial.sh",
        r#"#!/bin/bash
cat > /dev/null
echo 'not json' >> "$2"
echo '{"Id":"nope","State":"Executed"}' >> "$2"
echo '{"Id":"o0","State":"Done"}' >> "$2"
echo '{"Id":"o1","State":"Errored","Message":"first"}' >> "$2"
echo '{"Id":"o1","State":"Executed","Message":"retried"}' >> "$2"
echo '{"Index":9,"State":"Executed"}' >> "$2"
"#,
    );
    let orders = orders(2);
    let (results, _) = f.fulfill(settings(&script), &orders, false).await;
    let results = results.expect("runs");
    assert_eq!(results[1].state, OrderState::Executed, "the last line wins");
    assert_eq!(results[1].message, "retried");
    for i in [0, 2] {
        let m = &results[i].message;
        assert_eq!(results[i].state, OrderState::Errored);
        assert!(
            m.contains("exited with status 0 without reporting this order"),
            "{m}"
        );
        for problem in [
            "results line 1: not a JSON object",
            "line 2: no order has Id nope",
            "line 3: State 'Done' is neither Executed nor Errored",
            "line 6: Index 9 is past the last order",
        ] {
            assert!(m.contains(problem), "{problem} in {m}");
        }
    }
}

#[tokio::test]
async fn a_hang_past_the_timeout_kills_the_whole_process_group() {
    let f = Fixture::new();
    // It ignores SIGTERM, so only the SIGKILL that follows ends it; its child sleeps on.
    let script = f.script(
        "hang.sh",
        r#"#!/bin/bash
trap '' TERM
sleep 300 &
echo $! > "$PWD/child.pid"
echo $$ > "$PWD/script.pid"
echo '{"Id":"o0","State":"Executed"}' >> "$2"
while true; do sleep 1; done
"#,
    );
    let mut s = settings(&script);
    s["TimeOut"] = json!(1);
    let orders = orders(1);
    let started = Instant::now();
    let (results, _) = f.fulfill(s, &orders, false).await;
    let elapsed = started.elapsed();
    let results = results.expect("runs");
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    assert!(elapsed >= Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(
        results[0].state,
        OrderState::Executed,
        "reported before the hang"
    );
    assert_eq!(results[1].state, OrderState::Errored);
    assert!(
        results[1].message.contains("ran longer than TimeOut (1s)"),
        "{}",
        results[1].message
    );
    for pid_file in ["script.pid", "child.pid"] {
        let pid = read_pid(&f.path(pid_file));
        assert!(dead(pid), "{pid_file}: process {pid} still runs");
    }
}

#[tokio::test]
async fn a_child_that_outlives_the_script_is_killed() {
    let f = Fixture::new();
    // The child keeps stdout and stderr open: waiting for them to close would hang.
    let script = f.script(
        "fork.sh",
        r#"#!/bin/bash
sleep 300 &
echo $! > "$PWD/child.pid"
echo '{"Id":"o0","State":"Executed"}' >> "$2"
echo '{"Index":1,"State":"Executed"}' >> "$2"
exit 0
"#,
    );
    let orders = orders(1);
    let started = Instant::now();
    let (results, _) = f.fulfill(settings(&script), &orders, false).await;
    let results = results.expect("runs");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        results.iter().all(|r| r.state == OrderState::Executed),
        "{results:?}"
    );
    let pid = read_pid(&f.path("child.pid"));
    assert!(dead(pid), "the child {pid} outlived the run");
}

/// The secret reaches the script on stdin only: not in any process's command line, not in the
/// script's environment, not in progress lines, results or messages, even when the script
/// prints it.
#[tokio::test]
async fn secret_options_never_reach_argv_environment_or_output() {
    let f = Fixture::new();
    let script = f.script(
        "spy.py",
        r#"#!/usr/bin/env python3
import glob, json, os, sys
options = json.loads(sys.stdin.readline())
secret = options["Password"].encode()
found = []
for path in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/environ"):
    try:
        if secret in open(path, "rb").read():
            found.append(path)
    except OSError:
        pass
mine = open("/proc/self/environ", "rb").read() + open("/proc/self/cmdline", "rb").read()
with open(os.path.join(os.getcwd(), "spy.json"), "w") as out:
    json.dump({"found": found, "own": secret in mine, "checked": len(glob.glob("/proc/[0-9]*/cmdline"))}, out)
print("the password is " + options["Password"])
print("the password is " + options["Password"], file=sys.stderr)
orders = json.load(open(sys.argv[1]))["ProvisioningOrdersList"]
with open(sys.argv[2], "a") as results:
    results.write(json.dumps({"Id": "o0", "State": "Errored", "Message": "bad password " + options["Password"]}) + "\n")
sys.exit(1)
"#,
    );
    let orders = orders(1);
    let (results, progress) = f.fulfill(settings(&script), &orders, false).await;
    let results = results.expect("runs");
    let spy: Value =
        serde_json::from_str(&std::fs::read_to_string(f.path("spy.json")).expect("spy ran"))
            .expect("spy json");
    assert_eq!(spy["own"], json!(false), "{spy}");
    assert_eq!(spy["found"], json!([]), "{spy}");
    assert!(spy["checked"].as_u64().unwrap_or(0) > 1, "{spy}");
    let text = format!("{}\n{}", all_text(&results), progress.text());
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
    assert!(
        results[0].message == "bad password **REDACTED**"
            && results[1].message.contains("the password is **REDACTED**")
            && progress.text().contains("the password is **REDACTED**"),
        "{text}"
    );
}

#[tokio::test]
async fn dry_run_says_what_would_run_and_runs_nothing() {
    let f = Fixture::new();
    let script = f.script("mark.sh", "#!/bin/bash\ntouch \"$PWD/ran\"\n");
    let orders = orders(1);
    let (results, _) = f.fulfill(settings(&script), &orders, true).await;
    let results = results.expect("plans");
    assert!(!f.path("ran").exists(), "a dry run ran the script");
    assert_eq!(results.len(), 2);
    let op = &results[0].operations[0];
    assert!(
        op.contains("mark.sh")
            && op.contains("Options Login, Password on stdin")
            && op.contains("Added HR_Account"),
        "{op}"
    );
    assert!(
        results[0].message.starts_with("dry run"),
        "{}",
        results[0].message
    );
    assert!(!all_text(&results).contains(SECRET));
}

#[tokio::test]
async fn unusable_scripts_fail_the_batch_saying_how_to_fix_them() {
    let f = Fixture::new();
    let orders = orders(1);
    let (e, _) = f.fulfill(settings("missing.sh"), &orders, false).await;
    let m = e.expect_err("missing script").to_string();
    assert!(
        m.contains("PowerShellScriptPath") && m.contains("missing.sh"),
        "{m}"
    );

    std::fs::write(f.path("plain.sh"), "#!/bin/bash\n").expect("write");
    let (e, _) = f.fulfill(settings("plain.sh"), &orders, false).await;
    let m = e.expect_err("not executable").to_string();
    assert!(
        m.contains("not executable") && m.contains("chmod +x"),
        "{m}"
    );

    let e = f
        .instance(FULFILL, json!({"PowerShellScriptPath": " "}))
        .err()
        .expect("empty path");
    assert!(e.to_string().contains("is empty"), "{e}");
    let e = f
        .instance(
            FULFILL,
            json!({"PowerShellScriptPath": "x.sh", "TimeOut": 0}),
        )
        .err()
        .expect("zero timeout");
    assert!(e.to_string().contains("TimeOut"), "{e}");
    let e = f
        .instance(
            FULFILL,
            json!({"PowerShellScriptPath": "x.sh", "Options": {"Password": 12345678}}),
        )
        .err()
        .expect("a number where a secret string goes");
    assert!(!e.to_string().contains("12345678"), "{e}");
}

#[tokio::test]
async fn robot_framework_package_takes_its_own_setting_name() {
    let f = Fixture::new();
    let script = f.script(
        "robot.sh",
        "#!/bin/bash\nread -r o\necho '{\"Index\":0,\"State\":\"Executed\"}' >> \"$2\"\n",
    );
    let registry = Registry::new();
    let info = registry
        .get("Usercube.RobotFramework@0000001")
        .expect("known");
    let instance = idlink_packages::instantiate(
        info,
        json!({"RobotFrameworkScriptPath": script, "Options": {"Message": "Hello"}}),
        f.env(),
    )
    .expect("settings accepted");
    let orders = orders(0);
    let results = instance
        .fulfill()
        .expect("fulfills")
        .fulfill(&FulfillRequest {
            orders: &orders,
            dry_run: false,
            progress: &Recorded::default(),
        })
        .await
        .expect("runs");
    assert_eq!(results[0].state, OrderState::Executed);
    let e = idlink_packages::instantiate(info, json!({"PowerShellScriptPath": "x"}), f.env())
        .err()
        .expect("the PowerShell name is not the Robot Framework one");
    assert!(e.to_string().contains("PowerShellScriptPath"), "{e}");
}

// ---- export ----

const EXPORT_SCRIPT: &str = r#"#!/bin/bash
set -eu
IFS= read -r options
echo "$2" >> "$PWD/flags.txt"
printf 'id,name\n1,"Ng, Andrew"\n2,"two\nlines"\n' > "${1}users.csv"
printf '\xef\xbb\xbfgroup,member\nadmins,1\n' > "${1}groups.csv"
"#;

#[tokio::test]
async fn export_turns_the_csv_files_into_tables_and_passes_the_incremental_flag() {
    let f = Fixture::new();
    let script = f.script("export.sh", EXPORT_SCRIPT);
    let (result, progress, _staging) = f.export(settings(&script), true, None).await;
    let (tables, outcome) = result.expect("exports");
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["HRScript_groups", "HRScript_users"]);
    let users = std::fs::read_to_string(&tables[1].path).expect("users");
    assert_eq!(users, "id,name\n1,\"Ng, Andrew\"\n2,\"two\nlines\"\n");
    let groups = std::fs::read_to_string(&tables[0].path).expect("groups");
    assert_eq!(groups, "group,member\nadmins,1\n", "the BOM is dropped");
    assert_eq!((tables[0].rows, tables[1].rows), (1, 2));
    assert!(!outcome.incremental, "no cookie yet: complete");
    let cookie = outcome.cookie.expect("a cookie");
    assert!(
        progress.text().contains("rows HRScript_users 2"),
        "{}",
        progress.text()
    );

    let (result, _, _staging) = f.export(settings(&script), true, Some(&cookie)).await;
    let (_, outcome) = result.expect("exports");
    assert!(outcome.incremental);
    let (result, _, _staging) = f.export(settings(&script), false, Some(&cookie)).await;
    assert!(!result.expect("exports").1.incremental);
    let flags = std::fs::read_to_string(f.path("flags.txt")).expect("flags");
    assert_eq!(flags, "false\ntrue\nfalse\n");
}

#[tokio::test]
async fn a_bad_file_fails_the_export() {
    let f = Fixture::new();
    let cases = [
        (
            "no header",
            "printf '' > \"${1}users.csv\"",
            "empty file: no header",
        ),
        (
            "invalid UTF-8",
            "printf 'id,name\\n1,ok\\n2,caf\\xe9\\n' > \"${1}users.csv\"",
            "users.csv:3: field 2 is not valid UTF-8",
        ),
        (
            "ragged",
            "printf 'id,name\\n1\\n' > \"${1}users.csv\"",
            "users.csv:2: 1 fields where the header has 2",
        ),
        (
            "blank column",
            "printf 'id,\\n1,2\\n' > \"${1}users.csv\"",
            "column 2 has no name",
        ),
        (
            "foreign",
            "printf 'a\\n' > \"$(dirname \"$1\")/Other_users.csv\"",
            "not a table of connection 'HRScript'",
        ),
        ("nothing", "rm \"${1}good.csv\"", "wrote no table"),
        (
            "failure",
            "echo 'export broke' >&2; exit 4",
            "exited with status 4; end of stderr:\nexport broke",
        ),
    ];
    for (case, line, expected) in cases {
        let script = f.script(
            "bad.sh",
            &format!("#!/bin/bash\nprintf 'id\\n1\\n' > \"${{1}}good.csv\"\n{line}\n"),
        );
        let (result, _, _staging) = f.export(settings(&script), false, None).await;
        let e = result.err().unwrap_or_else(|| panic!("{case}: exported"));
        let m = e.to_string();
        assert!(m.contains(expected), "{case}: {m}");
    }
}

#[tokio::test]
async fn check_connection_finds_the_script_without_running_it() {
    let f = Fixture::new();
    let script = f.script("mark.sh", "#!/bin/bash\ntouch \"$PWD/ran\"\n");
    for package in [FULFILL, EXPORT] {
        let i = f.instance(package, settings(&script)).expect("settings");
        let reached = i
            .check_connection()
            .expect("checks")
            .check_connection()
            .await
            .expect("the script is there");
        assert!(reached.contains("mark.sh (executable)"), "{reached}");
        let i = f.instance(package, settings("gone.sh")).expect("settings");
        let e = i
            .check_connection()
            .expect("checks")
            .check_connection()
            .await
            .expect_err("no script");
        assert!(e.to_string().contains("gone.sh"), "{e}");
    }
    assert!(!f.path("ran").exists(), "check connection ran the script");
}

/// A cancelled run (the job stopped: its future dropped) kills the script and its children.
#[tokio::test]
async fn a_cancelled_run_kills_the_whole_process_group() {
    let f = Fixture::new();
    let script = f.script(
        "forever.sh",
        r#"#!/bin/bash
sleep 300 &
echo $! > "$PWD/child.pid"
echo $$ > "$PWD/script.pid"
while true; do sleep 1; done
"#,
    );
    let orders = orders(1);
    let run = f.fulfill(settings(&script), &orders, false);
    let cancelled = tokio::time::timeout(Duration::from_millis(1500), run).await;
    assert!(cancelled.is_err(), "the script cannot finish on its own");
    for pid_file in ["script.pid", "child.pid"] {
        let pid = read_pid(&f.path(pid_file));
        let until = Instant::now() + Duration::from_secs(5);
        while !dead(pid) {
            assert!(
                Instant::now() < until,
                "{pid_file}: process {pid} survived the cancel"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
