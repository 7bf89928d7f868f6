//! The engine's guarantees with a scripted package registered in the registry it is given:
//! staging, one commit for tables and cookie, cookies that advance only with the tables, a failed
//! or cancelled export that changes nothing, leftovers of interrupted exports removed, fulfill
//! refusing orders for undeclared resource types, and error kinds.
//! (Real packages are tested against real systems in `idlink-packages`.)

mod provision;
mod scripts;
mod sync;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use idlink_engine::{CancellationToken, Engine, EngineError, ErrorKind, ExportOptions};
use idlink_model::SettingsSource;
use idlink_model::package::{Availability, Capabilities, PackageInfo, SettingsSchema};
use idlink_packages::api::{
    ChangeType, Export, ExportOutcome, ExportRequest, Fulfill, FulfillRequest, Instance,
    NoProgress, OrderResult, OrderState, ProvisioningOrder, ResourceTypeRef,
};
use idlink_packages::output::ExportOutput;
use idlink_packages::{PackageError, Registry};

static PACKAGE: PackageInfo = PackageInfo {
    id: "Test.Scripted@0000001",
    display_name: "Test/Scripted",
    capabilities: Capabilities {
        export: true,
        fulfill: true,
        incremental: true,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &SettingsSchema::EMPTY,
};

/// What the scripted package does on its next export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Succeed,
    Fail,
    /// Writes rows until the run is cancelled (or for a very long while).
    Endless,
}

/// Writes `rows` rows to `<id>_entries` and `<id>_member`, then fails or returns cookie `c<run>`;
/// the run is incremental when it was given a cookie. Fulfill executes every order it gets.
struct Scripted {
    rows: usize,
    script: Script,
    runs: Arc<AtomicUsize>,
    fulfilled: Arc<AtomicUsize>,
}

#[async_trait]
impl Export for Scripted {
    async fn export(
        &self,
        req: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let entries = out.create(Some("entries"), &["dn", "cn"])?;
        let members = out.create(Some("member"), &["dn", "member"])?;
        let mut i = 0usize;
        // "Endless" stops after a long while, so a test of cancellation fails rather than hangs.
        while i < self.rows || (self.script == Script::Endless && i < 20_000_000) {
            out.write(entries, [format!("cn={i}"), format!("run{run}")])?;
            out.write(members, [format!("cn=g{i}"), format!("cn={i}")])?;
            i += 1;
        }
        if self.script == Script::Fail {
            return Err(PackageError::System {
                connection: "Dir".into(),
                system: "ldap://127.0.0.1:1".into(),
                operation: "search",
                message: "server went away".into(),
                retryable: true,
            });
        }
        Ok(ExportOutcome {
            notes: Vec::new(),
            cookie: Some(format!("c{run}")),
            incremental: req.cookie.is_some(),
        })
    }
}

#[async_trait]
impl Fulfill for Scripted {
    async fn fulfill(
        &self,
        request: &FulfillRequest<'_>,
    ) -> Result<Vec<OrderResult>, PackageError> {
        Ok(request
            .orders
            .iter()
            .enumerate()
            .map(|(index, o)| {
                self.fulfilled.fetch_add(1, Ordering::SeqCst);
                OrderResult {
                    index,
                    id: o.id.clone(),
                    state: OrderState::Executed,
                    message: "done".into(),
                    operations: vec![],
                }
            })
            .collect())
    }
}

impl Instance for Scripted {
    fn export(&self) -> Option<&dyn Export> {
        Some(self)
    }
    fn fulfill(&self) -> Option<&dyn Fulfill> {
        Some(self)
    }
}

const CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="D" DisplayName_L1="Directory" />
  <Connection Identifier="Dir" DisplayName_L1="Directory" Connector="D" Package="Test.Scripted@0000001" DEACTIVATION />
  <EntityType Identifier="Account" DisplayName_L1="Account">
    <Property Identifier="dn" DisplayName_L1="DN" IsKey="true" />
  </EntityType>
  <EntityType Identifier="Person" DisplayName_L1="Person">
    <Property Identifier="id" DisplayName_L1="Id" IsKey="true" />
  </EntityType>
  <ResourceType Identifier="Account" DisplayName_L1="Account" SourceEntityType="Person" TargetEntityType="Account" />
</ConfigurationFile>
"#;

/// A work folder, a configuration folder and an engine whose registry has the scripted package.
struct World {
    dir: tempfile::TempDir,
    runs: Arc<AtomicUsize>,
    fulfilled: Arc<AtomicUsize>,
}

impl World {
    fn new() -> Self {
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            runs: Arc::new(AtomicUsize::new(0)),
            fulfilled: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn work(&self) -> std::path::PathBuf {
        self.dir.path().join("work")
    }

    fn out(&self, name: &str) -> std::path::PathBuf {
        self.work().join("ExportOutput").join(name)
    }

    fn engine(&self, rows: usize, script: Script, deactivation: &str) -> Engine {
        let conf = self.dir.path().join("conf");
        std::fs::create_dir_all(&conf).expect("conf");
        std::fs::write(
            conf.join("c.xml"),
            CONFIG.replace("DEACTIVATION", deactivation),
        )
        .expect("xml");
        std::fs::write(
            conf.join("appsettings.agent.json"),
            r#"{"Connections": {"Dir": {}}}"#,
        )
        .expect("json");
        let (runs, fulfilled) = (self.runs.clone(), self.fulfilled.clone());
        let registry = Registry::new().with(
            &PACKAGE,
            Arc::new(move |_, _, _| {
                Ok(Box::new(Scripted {
                    rows,
                    script,
                    runs: runs.clone(),
                    fulfilled: fulfilled.clone(),
                }) as Box<dyn Instance>)
            }),
        );
        let checked = idlink_model::load_and_check(
            &conf,
            SettingsSource {
                path: &conf.join("appsettings.agent.json"),
                explicit: true,
            },
            std::iter::empty::<(String, String)>(),
            &registry,
        )
        .expect("load");
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        Engine::new(checked, registry, &conf, &self.work())
    }

    async fn export(
        &self,
        rows: usize,
        script: Script,
        ignore_cookies: bool,
    ) -> Result<idlink_engine::ExportReport, EngineError> {
        let opened = self.engine(rows, script, "").open("dir")?;
        let opts = ExportOptions {
            output_dir: None,
            ignore_cookies,
            volatile: false,
        };
        opened
            .export(&opts, Arc::new(NoProgress), &CancellationToken::new())
            .await
    }
}

/// Runs an export of `opened` as its own task, cancelled by `cancel`.
fn spawn_export(
    opened: idlink_engine::Opened,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<Result<idlink_engine::ExportReport, EngineError>> {
    let cancel = cancel.clone();
    tokio::spawn(async move {
        opened
            .export(&ExportOptions::default(), Arc::new(NoProgress), &cancel)
            .await
    })
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn hidden_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[tokio::test]
async fn tables_and_cookie_are_committed_after_success() {
    let w = World::new();
    let report = w.export(3, Script::Succeed, false).await.expect("export");
    assert_eq!(report.rows(), 6);
    let names: Vec<_> = report.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Dir_entries", "Dir_member"]);
    assert_eq!(
        read(&w.out("Dir_entries.csv")),
        "dn,cn\ncn=0,run1\ncn=1,run1\ncn=2,run1\n"
    );
    assert_eq!(read(&w.work().join("ExportCookies/Dir.cookie")), "c1");
    assert!(hidden_entries(&w.work().join("ExportOutput")).is_empty());
    let cookies: Vec<String> = std::fs::read_dir(w.work().join("ExportCookies"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(
        cookies,
        ["Dir.cookie"],
        "no journal or new/old cookie is left"
    );
    let report: serde_json::Value =
        serde_json::from_str(&read(&w.work().join("Reports/export-Dir.json"))).expect("json");
    assert_eq!(report["tables"][0]["rows"], 3);
    let attempt: serde_json::Value = serde_json::from_str(&read(
        &w.work().join("Reports/export-Dir.last-attempt.json"),
    ))
    .expect("json");
    assert_eq!(attempt["outcome"], "succeeded");
}

#[tokio::test]
async fn regression_a_failed_export_leaves_previous_tables_and_cookie_and_records_the_attempt() {
    let w = World::new();
    w.export(2, Script::Succeed, false).await.expect("first");
    let before = read(&w.out("Dir_entries.csv"));
    let e = w.export(50, Script::Fail, false).await.expect_err("fails");
    assert!(
        e.to_string().contains("server went away") && e.to_string().contains("retry may help"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.nothing_committed());
    assert_eq!(read(&w.out("Dir_entries.csv")), before);
    assert_eq!(read(&w.work().join("ExportCookies/Dir.cookie")), "c1");
    assert!(hidden_entries(&w.work().join("ExportOutput")).is_empty());
    // The last success is kept; the last attempt says what failed.
    let report: serde_json::Value =
        serde_json::from_str(&read(&w.work().join("Reports/export-Dir.json"))).expect("json");
    assert_eq!(report["tables"][0]["rows"], 2);
    let attempt: serde_json::Value = serde_json::from_str(&read(
        &w.work().join("Reports/export-Dir.last-attempt.json"),
    ))
    .expect("json");
    assert_eq!(attempt["outcome"], "failed");
    assert_eq!(attempt["error"]["kind"], "unavailable");
    assert_eq!(attempt["previous_set_unchanged"], true);
    assert!(
        attempt["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server went away")),
        "{attempt}"
    );
}

#[tokio::test]
async fn cookies_are_passed_back_unless_ignored() {
    let w = World::new();
    w.export(1, Script::Succeed, false).await.expect("first");
    let report = w.export(1, Script::Succeed, false).await.expect("second");
    assert!(
        report.incremental,
        "the stored cookie was passed to the package"
    );
    let report = w.export(1, Script::Succeed, true).await.expect("third");
    assert!(
        !report.incremental,
        "--ignore-cookies forces a complete export"
    );
}

#[tokio::test]
async fn deactivated_export_is_refused() {
    let w = World::new();
    let opened = w
        .engine(1, Script::Succeed, r#"DeactivationExportFulfill="Export""#)
        .open("Dir")
        .expect("open");
    let e = opened
        .export(
            &ExportOptions::default(),
            Arc::new(NoProgress),
            &CancellationToken::new(),
        )
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("deactivated"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Configuration);
    assert!(!w.out("Dir_entries.csv").exists());
}

#[tokio::test]
async fn regression_staging_folders_of_interrupted_exports_are_removed_and_reported() {
    let w = World::new();
    w.export(1, Script::Succeed, false).await.expect("first");
    // What `kill -9` leaves: staging folders with partial tables (old and new naming), and a
    // staging folder of another connection whose name starts the same way.
    for name in [
        ".staging-Dir_a1b2c3",
        ".staging-Dir-x9y8z7",
        ".staging-Dir-2_q1w2e3",
    ] {
        let d = w.out(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("Dir_entries.csv"), vec![b'x'; 5000]).expect("write");
    }
    let report = w.export(1, Script::Succeed, false).await.expect("export");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("removed 2 staging folders")),
        "{:?}",
        report.notes
    );
    assert_eq!(
        hidden_entries(&w.work().join("ExportOutput")),
        [".staging-Dir-2_q1w2e3"],
        "another connection's staging folder is not touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_cancelled_export_removes_its_staging_and_changes_nothing() {
    let w = World::new();
    w.export(1, Script::Succeed, false).await.expect("first");
    let before = read(&w.out("Dir_entries.csv"));
    let opened = w.engine(0, Script::Endless, "").open("Dir").expect("open");
    let cancel = CancellationToken::new();
    let task = spawn_export(opened, &cancel);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    cancel.cancel();
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("stops soon after the cancel")
        .expect("task")
        .expect_err("cancelled");
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert_eq!(read(&w.out("Dir_entries.csv")), before);
    assert_eq!(read(&w.work().join("ExportCookies/Dir.cookie")), "c1");
    assert!(hidden_entries(&w.work().join("ExportOutput")).is_empty());
    let attempt = read(&w.work().join("Reports/export-Dir.last-attempt.json"));
    assert!(attempt.contains("\"interrupted\""), "{attempt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_second_export_of_the_same_connection_is_refused_while_one_runs() {
    let w = World::new();
    let opened = w.engine(0, Script::Endless, "").open("Dir").expect("open");
    let cancel = CancellationToken::new();
    let task = spawn_export(opened.clone(), &cancel);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let e = opened
        .export(
            &ExportOptions::default(),
            Arc::new(NoProgress),
            &CancellationToken::new(),
        )
        .await
        .expect_err("busy");
    assert!(
        matches!(e, EngineError::Busy { .. }) && e.to_string().contains("process"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    cancel.cancel();
    let _ = task.await;
}

#[tokio::test]
async fn regression_a_folder_where_a_table_goes_fails_truthfully_and_changes_nothing() {
    let w = World::new();
    w.export(1, Script::Succeed, false).await.expect("first");
    let before = read(&w.out("Dir_entries.csv"));
    std::fs::remove_file(w.out("Dir_member.csv")).expect("rm");
    std::fs::create_dir(w.out("Dir_member.csv")).expect("mkdir");
    let e = w
        .export(3, Script::Succeed, false)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("is a folder"), "{e}");
    assert!(e.nothing_committed());
    assert_eq!(read(&w.out("Dir_entries.csv")), before);
    assert_eq!(read(&w.work().join("ExportCookies/Dir.cookie")), "c1");
}

#[tokio::test]
async fn regression_a_read_only_cookie_folder_fails_before_any_table_moves() {
    if nix_is_root() {
        // Root ignores permission bits: make the cookie's place a folder instead.
        let w = World::new();
        w.export(1, Script::Succeed, false).await.expect("first");
        let before = read(&w.out("Dir_entries.csv"));
        let cookie = w.work().join("ExportCookies/Dir.cookie");
        std::fs::remove_file(&cookie).expect("rm");
        std::fs::create_dir(&cookie).expect("mkdir");
        // A complete export does not read the cookie: the commit itself must refuse.
        let e = w
            .export(3, Script::Succeed, true)
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("is a folder"), "{e}");
        assert_eq!(read(&w.out("Dir_entries.csv")), before);
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    w.export(1, Script::Succeed, false).await.expect("first");
    let before = read(&w.out("Dir_entries.csv"));
    let cookies = w.work().join("ExportCookies");
    std::fs::set_permissions(&cookies, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let e = w
        .export(3, Script::Succeed, false)
        .await
        .expect_err("refused");
    std::fs::set_permissions(&cookies, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(e.nothing_committed(), "{e}");
    assert_eq!(read(&w.out("Dir_entries.csv")), before);
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn order(rt: &str) -> ProvisioningOrder {
    ProvisioningOrder {
        id: None,
        change_type: ChangeType::Added,
        resource_type: ResourceTypeRef {
            identifier: rt.into(),
            source_entity_type: None,
            target_entity_type: None,
            default_object_class: None,
        },
        owner: None,
        resource: None,
        changes: serde_json::Map::new(),
    }
}

#[tokio::test]
async fn regression_orders_for_undeclared_resource_types_are_errored_and_not_sent() {
    let w = World::new();
    let opened = w.engine(0, Script::Succeed, "").open("Dir").expect("open");
    let results = opened
        .fulfill(
            vec![order("Account"), order("NoSuchType"), order("account")],
            false,
            Arc::new(NoProgress),
        )
        .await
        .expect("fulfill");
    let states: Vec<OrderState> = results.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            OrderState::Executed,
            OrderState::Errored,
            OrderState::Errored
        ]
    );
    assert_eq!(
        results.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(
        results[1].message.contains("'NoSuchType' is not declared"),
        "{}",
        results[1].message
    );
    // Identifiers other than connections' are case-sensitive: 'account' is not 'Account'.
    assert!(
        results[2].message.contains("did you mean 'Account'?"),
        "{}",
        results[2].message
    );
    assert_eq!(
        w.fulfilled.load(Ordering::SeqCst),
        1,
        "only declared types are sent"
    );
}

#[tokio::test]
async fn an_engine_is_owned_and_work_can_be_spawned() {
    let w = World::new();
    let engine = w.engine(2, Script::Succeed, "");
    let task = tokio::spawn(async move {
        let opened = engine.open("Dir")?;
        opened
            .export(
                &ExportOptions::default(),
                Arc::new(NoProgress),
                &CancellationToken::new(),
            )
            .await
    });
    assert_eq!(task.await.expect("join").expect("export").rows(), 4);
    assert_eq!(w.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn regression_a_damaged_journal_stops_the_export_without_claiming_the_tables_are_intact() {
    let w = World::new();
    w.export(1, Script::Succeed, false).await.expect("first");
    std::fs::write(
        w.work().join("ExportCookies/Dir.journal"),
        "{\"connection\":\"Dir\",\"state\":\"prep",
    )
    .expect("write");
    let e = w
        .export(1, Script::Succeed, false)
        .await
        .expect_err("refused");
    assert!(!e.nothing_committed(), "{e}");
    assert!(
        e.to_string().contains("damaged") && e.to_string().contains("may mix two exports"),
        "{e}"
    );
    let attempt = read(&w.work().join("Reports/export-Dir.last-attempt.json"));
    assert!(
        attempt.contains("\"previous_set_unchanged\": false"),
        "{attempt}"
    );
}

/// The scripted package never yields (like a package reading a file synchronously): on a
/// single-threaded runtime the test's own task must still run, so the export is not on the
/// executor's only worker.
#[tokio::test(flavor = "current_thread")]
async fn regression_a_package_that_never_yields_does_not_stall_the_runtime() {
    let w = World::new();
    let opened = w.engine(0, Script::Endless, "").open("Dir").expect("open");
    let cancel = CancellationToken::new();
    let started = std::time::Instant::now();
    let task = spawn_export(opened, &cancel);
    // Wakes on time only if the runtime's one worker is free while the package runs (else
    // after the package's long run, seconds later).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let woke = started.elapsed();
    cancel.cancel();
    assert!(
        woke < std::time::Duration::from_secs(3),
        "the test's task waited {woke:?} for the package to yield"
    );
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("stops soon after the cancel")
        .expect("task")
        .expect_err("cancelled");
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
}

/// `docs/conformance.md` is the join of the documented corpus with what the loader and the
/// packages really do: regenerated here and compared. `IDLINK_BLESS=1` writes it instead.
#[test]
fn conformance_document_matches_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = root.join("docs/conformance.md");
    let made = idlink_engine::conformance::render(&root, &Registry::new()).expect("render");
    if std::env::var_os("IDLINK_BLESS").is_some() {
        std::fs::create_dir_all(root.join("docs")).expect("docs");
        std::fs::write(&file, &made).expect("write");
        return;
    }
    let written = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        written == made,
        "docs/conformance.md is out of date: run `IDLINK_BLESS=1 cargo test -p idlink-engine --test it conformance` and commit it"
    );
    // It covers the elements and packages in scope.
    for item in [
        "### `<Connection>`",
        "### `<ExportTask>`",
        "### `<ResourceType>`",
        "### `<ScimResourceTypeMapping>`",
        "### `<ManualProvisioningResourceTypeMapping>`",
        "### Usercube.OpenLDAP@0000001",
        "### Usercube.SQL.PostgreSQL@0000001",
        "### appsettings.agent.json sections",
    ] {
        assert!(made.contains(item), "{item} missing");
    }
}

/// Issue #9: every item the 6.2 reference documents for an in-scope element or a supported
/// package is known to idlink (used, accepted without effect with a reason, skipped with a
/// reason, or refused with a reason), and every documented element is reached by a fixture.
#[test]
fn conformance_every_documented_item_is_known_to_idlink() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report =
        idlink_engine::conformance::Report::build(&root, &Registry::new()).expect("report");
    let gaps = report.gaps();
    assert!(gaps.is_empty(), "{} gaps:\n{}", gaps.len(), gaps.join("\n"));
    // The corpus is not empty: the check above checks something.
    let documented: usize = report
        .elements
        .iter()
        .chain(&report.packages)
        .map(|t| t.rows.iter().filter(|r| r.documented.is_some()).count())
        .sum();
    assert!(documented > 300, "only {documented} documented items");
}
