//! The export runner's guarantees, with a scripted package: staging, atomic commit, cookies
//! that advance only after the tables are durable, and a failed export that changes nothing.
//! (Real packages are tested against real systems in `idlink-packages`.)

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use idlink_engine::{ExportOptions, OpenConnection, run_export};
use idlink_model::config::{Connection, Deactivation, DisplayNames};
use idlink_model::diag::{Loc, Sp};
use idlink_model::package::{Availability, Capabilities, PackageInfo, SettingsSchema};
use idlink_packages::PackageError;
use idlink_packages::api::{
    Environment, Export, ExportOutcome, ExportRequest, Instance, NoProgress,
};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;

static PACKAGE: PackageInfo = PackageInfo {
    id: "Test.Scripted@0000001",
    display_name: "Test/Scripted",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: true,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &SettingsSchema::EMPTY,
};

/// Writes `rows` rows to `<id>_entries` and `<id>_member`, then fails if `fail` is set, else
/// returns cookie `c<run>`; the run is incremental when it was given a cookie.
struct Scripted {
    rows: usize,
    fail: bool,
    runs: AtomicUsize,
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
        for i in 0..self.rows {
            out.write(entries, [format!("cn={i}"), format!("run{run}")])?;
            out.write(members, [format!("cn=g{i}"), format!("cn={i}")])?;
        }
        if self.fail {
            return Err(PackageError::System {
                connection: "Dir".into(),
                system: "ldap://127.0.0.1:1".into(),
                operation: "search",
                message: "server went away".into(),
                retryable: true,
            });
        }
        Ok(ExportOutcome {
            cookie: Some(format!("c{run}")),
            incremental: req.cookie.is_some(),
        })
    }
}

impl Instance for Scripted {
    fn export(&self) -> Option<&dyn Export> {
        Some(self)
    }
}

fn connection() -> Connection {
    let at = Loc::file_only("t.xml");
    Connection {
        at: at.clone(),
        id: Sp::new("Dir".into(), at.clone()),
        display_names: DisplayNames::default(),
        connector: Sp::new("D".into(), at.clone()),
        package: Sp::new(PACKAGE.id.into(), at),
        deactivation: Deactivation::None,
        transformations: vec![],
    }
}

fn open<'c>(conn: &'c Connection, rows: usize, fail: bool) -> OpenConnection<'c> {
    OpenConnection {
        connection: conn,
        package: &PACKAGE,
        instance: Box::new(Scripted {
            rows,
            fail,
            runs: AtomicUsize::new(0),
        }),
        env: Environment {
            connection: "Dir".into(),
            base_dir: ".".into(),
            roots: SourceRoots::default(),
            mapped_tables: vec![],
        },
        secrets: vec![],
    }
}

fn opts<'a>(work: &'a std::path::Path, ignore: bool) -> ExportOptions<'a> {
    ExportOptions {
        work_dir: work,
        output_dir: None,
        ignore_cookies: ignore,
        progress: &NoProgress,
    }
}

#[tokio::test]
async fn tables_and_cookie_are_committed_after_success() {
    let work = tempfile::tempdir().expect("tempdir");
    let conn = connection();
    let report = run_export(&open(&conn, 3, false), &opts(work.path(), false))
        .await
        .expect("export");
    assert_eq!(report.rows(), 6);
    let names: Vec<_> = report.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Dir_entries", "Dir_member"]);
    let entries =
        std::fs::read_to_string(work.path().join("ExportOutput/Dir_entries.csv")).expect("table");
    assert_eq!(entries, "dn,cn\ncn=0,run1\ncn=1,run1\ncn=2,run1\n");
    assert_eq!(
        std::fs::read_to_string(work.path().join("ExportCookies/Dir.cookie")).expect("cookie"),
        "c1"
    );
    // No staging folder is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(work.path().join("ExportOutput"))
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test]
async fn a_failed_export_leaves_previous_tables_and_cookie_untouched() {
    let work = tempfile::tempdir().expect("tempdir");
    let conn = connection();
    run_export(&open(&conn, 2, false), &opts(work.path(), false))
        .await
        .expect("first export");
    let before = std::fs::read(work.path().join("ExportOutput/Dir_entries.csv")).expect("table");
    let e = run_export(&open(&conn, 50, true), &opts(work.path(), false))
        .await
        .expect_err("fails");
    assert!(
        e.to_string().contains("server went away") && e.to_string().contains("retry may help"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(work.path().join("ExportOutput/Dir_entries.csv")).expect("table"),
        before
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("ExportCookies/Dir.cookie")).expect("cookie"),
        "c1"
    );
    let entries: Vec<_> = std::fs::read_dir(work.path().join("ExportOutput"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
}

#[tokio::test]
async fn cookies_are_passed_back_unless_ignored() {
    let work = tempfile::tempdir().expect("tempdir");
    let conn = connection();
    run_export(&open(&conn, 1, false), &opts(work.path(), false))
        .await
        .expect("first");
    let second = open(&conn, 1, false);
    let report = run_export(&second, &opts(work.path(), false))
        .await
        .expect("second");
    assert!(
        report.incremental,
        "the stored cookie was passed to the package"
    );
    let third = open(&conn, 1, false);
    let report = run_export(&third, &opts(work.path(), true))
        .await
        .expect("third");
    assert!(
        !report.incremental,
        "--ignore-cookies forces a complete export"
    );
}

#[tokio::test]
async fn deactivated_export_is_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut conn = connection();
    conn.deactivation = Deactivation::Export;
    let e = run_export(&open(&conn, 1, false), &opts(work.path(), false))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("deactivated"), "{e}");
    assert!(
        !work
            .path()
            .join("ExportOutput")
            .join("Dir_entries.csv")
            .exists()
    );
}
