//! `idlink sync` and `idlink resources` end to end: the quickstart's HR connector as the README
//! tour shows it, and a synchronization killed with SIGKILL at random instants on both stores
//! (SQLite and PostgreSQL), which must leave the store as before or as after the run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use idlink_test_support::PostgresServer;

use crate::support::{copy_dir, idlink, repo_root};

fn run_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = idlink().current_dir(dir).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn quickstart_hr_synchronizes_and_lists_resources_with_navigation_both_ways() {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("conf");
    copy_dir(&repo_root().join("examples/quickstart"), &conf);
    let work = tmp.path().join("work");
    let w = work.to_str().expect("utf-8");
    let c = conf.to_str().expect("utf-8");
    for connection in ["HRPeople", "HROrganizations"] {
        let (code, _, err) = run_in(
            tmp.path(),
            &[
                "export",
                "--config",
                c,
                "--work",
                w,
                "--connection",
                connection,
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    // A complete run against an empty store is blocked by the percentage thresholds, and says
    // how a first load runs.
    let (code, _, err) = run_in(
        tmp.path(),
        &["sync", "--config", c, "--work", w, "--connector", "HR"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("nothing changed") && err.contains("--mode initial"),
        "{err}"
    );
    let (code, out, err) = run_in(
        tmp.path(),
        &[
            "sync",
            "--config",
            c,
            "--work",
            w,
            "--connector",
            "HR",
            "--mode",
            "initial",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("synchronized HR (Initial): 11 inserted"),
        "{out}"
    );
    assert!(out.contains("links: 8 added"), "{out}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.join("Reports/sync-HR.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(report["mappings"][0]["inserted"], 8);
    assert_eq!(report["committed"], true);

    // Navigation both ways: a person's organization, an organization's members.
    let (code, out, err) = run_in(
        tmp.path(),
        &[
            "resources",
            "--config",
            c,
            "--work",
            w,
            "--entity-type",
            "HR_Person",
            "--where",
            "EmployeeId=E001",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let people: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(people.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(people[0]["Organization"], "ENG");
    assert_eq!(people[0]["StartDate"], "2019-03-01T00:00:00Z");
    let (_, out, _) = run_in(
        tmp.path(),
        &[
            "resources",
            "--config",
            c,
            "--work",
            w,
            "--entity-type",
            "HR_Organization",
            "--format",
            "json",
        ],
    );
    let orgs: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(orgs[0]["Code"], "ENG");
    assert_eq!(
        orgs[0]["Members"],
        serde_json::json!(["E001", "E002", "E005", "E008"])
    );
    let (_, out, _) = run_in(
        tmp.path(),
        &[
            "resources",
            "--config",
            c,
            "--work",
            w,
            "--entity-type",
            "HR_Organization",
            "--format",
            "csv",
        ],
    );
    assert!(out.starts_with("Code,Name,Members\n"), "{out}");
    assert!(out.contains("MKT,Marketing,\"E004\nE007\"\n"), "{out}");

    // Nothing changed since: a complete run is allowed and changes nothing.
    let (code, out, err) = run_in(
        tmp.path(),
        &["sync", "--config", c, "--work", w, "--connector", "HR"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 inserted, 0 updated, 0 deleted"), "{out}");
    // An unknown connector or entity type is named with a suggestion.
    let (code, _, err) = run_in(
        tmp.path(),
        &["sync", "--config", c, "--work", w, "--connector", "Hr"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("did you mean 'HR'"), "{err}");
    let (code, _, err) = run_in(
        tmp.path(),
        &[
            "resources",
            "--config",
            c,
            "--work",
            w,
            "--entity-type",
            "HR_Persons",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("did you mean 'HR_Person'"), "{err}");
}

/// The quickstart copied into `dir`, its HR connector exported and synchronized (Initial):
/// the configuration and work folders, as arguments.
fn synchronized_quickstart(dir: &Path) -> (String, String) {
    let conf = dir.join("conf");
    copy_dir(&repo_root().join("examples/quickstart"), &conf);
    let c = conf.to_str().expect("utf-8").to_string();
    let w = dir.join("work").to_str().expect("utf-8").to_string();
    let runs: [&[&str]; 3] = [
        &["export", "--connection", "HRPeople"],
        &["export", "--connection", "HROrganizations"],
        &["sync", "--connector", "HR", "--mode", "initial"],
    ];
    for args in runs {
        let (code, _, err) = run_in(dir, &[args, &["--config", &c, "--work", &w]].concat());
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    (c, w)
}

/// An exported table cut short (a full disk, a copy stopped half-way) ends in a short row
/// without a line break. The synchronization refused it as a ragged row ("found record with 4
/// fields, but the previous record has 6 fields"), which sent the user looking for a bad row;
/// it now says the table looks cut short and to export again. A short row inside a table that
/// merely lacks its last line break is not called cut short.
#[test]
fn regression_a_table_cut_short_is_told_as_such() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (c, w) = synchronized_quickstart(tmp.path());
    let table = Path::new(&w).join("ExportOutput/HRPeople.csv");
    let whole = std::fs::read(&table).expect("table");
    let sync = || {
        let (code, _, err) = run_in(
            tmp.path(),
            &["sync", "--connector", "HR", "--config", &c, "--work", &w],
        );
        assert_ne!(code, 0, "{err}");
        err
    };
    std::fs::write(&table, &whole[..whole.len() - 20]).expect("cut");
    let err = sync();
    assert!(err.contains("HRPeople.csv:9:"), "{err}");
    assert!(
        err.contains("the table looks cut short (export the connection again)"),
        "{err}"
    );
    // The short row is the second; the table's last line is whole but for its line break.
    let text = String::from_utf8(whole).expect("utf-8");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "E002,Alan";
    std::fs::write(&table, lines.join("\n")).expect("ragged");
    let err = sync();
    assert!(err.contains("HRPeople.csv:3:"), "{err}");
    assert!(!err.contains("cut short"), "{err}");
}

/// `--where` on a navigation property (a person's `Organization`, an organization's
/// `Members`) compares with the linked keys that the listing shows. It used to compare with
/// the stored values, which hold no navigation: `--where Organization=ENG` listed no one,
/// without a word, though the same listing shows four people with `"Organization": "ENG"`.
#[test]
fn regression_where_on_a_navigation_property_filters_by_the_linked_keys() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (c, w) = synchronized_quickstart(tmp.path());
    let keys = |entity_type: &str, key: &str, filters: &[&str]| -> Vec<String> {
        let mut args = vec!["resources", "--config", &c, "--work", &w];
        args.extend(["--entity-type", entity_type, "--format", "json"]);
        for f in filters {
            args.extend(["--where", f]);
        }
        let (code, out, err) = run_in(tmp.path(), &args);
        assert_eq!(code, 0, "{filters:?}: {err}");
        let listed: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
        listed
            .iter()
            .map(|r| r[key].as_str().expect("a key").to_string())
            .collect()
    };
    assert_eq!(
        keys("HR_Person", "EmployeeId", &["Organization=ENG"]),
        ["E001", "E002", "E005", "E008"]
    );
    assert_eq!(
        keys(
            "HR_Person",
            "EmployeeId",
            &["Organization=ENG", "EmployeeId=E005"]
        ),
        ["E005"]
    );
    assert_eq!(keys("HR_Organization", "Code", &["Members=E004"]), ["MKT"]);
    assert!(keys("HR_Person", "EmployeeId", &["Organization=NOPE"]).is_empty());
    // An empty key: the resources linked to none (every person has an organization).
    assert!(keys("HR_Person", "EmployeeId", &["Organization="]).is_empty());
    // A misspelt property is named with a suggestion.
    let (code, _, err) = run_in(
        tmp.path(),
        &[
            "resources",
            "--config",
            &c,
            "--work",
            &w,
            "--entity-type",
            "HR_Person",
            "--where",
            "Organisation=ENG",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("did you mean 'Organization'"), "{err}");
}

const CONFIG: &str = r#"<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="HR" DisplayName_L1="HR" MaximumInsertedLines="0" MaximumUpdatedLines="0" MaximumDeletedLines="0" MaximumLinkInsertedLines="0" MaximumLinkDeletedLines="0" MaxPercentageInsertedLines="0" MaxPercentageUpdatedLines="0" MaxPercentageDeletedLines="0" MaxLinkPercentageInsertedLines="0" MaxLinkPercentageDeletedLines="0" />
  <Connection Identifier="HRP" DisplayName_L1="People" Connector="HR" Package="Usercube.CSV@0000001" />
  <EntityType Identifier="Person" DisplayName_L1="Person">
    <Property Identifier="Id" DisplayName_L1="Id" IsKey="true" />
    <Property Identifier="Name" DisplayName_L1="Name" />
    <Property Identifier="Grade" DisplayName_L1="Grade" Type="Int32" />
    <Property Identifier="Manager" DisplayName_L1="Manager" Type="ForeignKey" />
    <Property Identifier="Reports" DisplayName_L1="Reports" Type="ForeignKey" />
  </EntityType>
  <EntityAssociation Identifier="Person_Manager" DisplayName_L1="Manager"
                     Property1="Person:Manager" Property2="Person:Reports" IsProperty2Collection="true" />
  <EntityTypeMapping Identifier="Person" Connector="HR" ConnectionTable="HRP">
    <Property Identifier="Id" ConnectionColumn="id" IsPrimaryKey="true" />
    <Property Identifier="Name" ConnectionColumn="name" />
    <Property Identifier="Grade" ConnectionColumn="grade" />
  </EntityTypeMapping>
  <EntityAssociationMapping Identifier="Person_Manager" Connector="HR" ConnectionTable="HRP"
                            Column1="id" EntityPropertyMapping1="Person:Id"
                            Column2="manager" EntityPropertyMapping2="Person:Id" />
</ConfigurationFile>
"#;

/// A table of `n` people; `variant` changes names, grades, managers and who is there.
fn table(n: usize, variant: usize) -> String {
    let mut s = String::from("id,name,grade,manager\n");
    for i in 0..n {
        if (i + variant).is_multiple_of(10) {
            continue; // a tenth absent, a different tenth in each variant
        }
        let manager = if i == 0 {
            String::new()
        } else {
            format!("P{:06}", (i * 7 + variant) % i)
        };
        s.push_str(&format!(
            "P{i:06},Person {i} v{},{},{manager}\n",
            variant % 3,
            (i + variant) % 12
        ));
    }
    s
}

struct Site {
    dir: tempfile::TempDir,
    database: Option<String>,
}

impl Site {
    fn new(database: Option<String>) -> Site {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("conf/data")).expect("conf");
        std::fs::write(dir.path().join("conf/hr.xml"), CONFIG).expect("xml");
        std::fs::write(
            dir.path().join("conf/appsettings.agent.json"),
            r#"{"SourcesRootPaths": ["data"], "Connections": {"HRP": {"Path": "data/p.csv"}}}"#,
        )
        .expect("json");
        Site { dir, database }
    }

    fn args<'a>(&'a self, cmd: &'a str, extra: &[&'a str]) -> Vec<String> {
        let mut a = vec![
            cmd.to_string(),
            "--config".into(),
            self.path("conf"),
            "--work".into(),
            self.path("work"),
        ];
        if let Some(db) = &self.database {
            a.push("--database".into());
            a.push(db.clone());
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn path(&self, p: &str) -> String {
        self.dir.path().join(p).to_string_lossy().into_owned()
    }

    fn put_table(&self, text: &str) {
        let out = PathBuf::from(self.path("work/ExportOutput"));
        std::fs::create_dir_all(&out).expect("out");
        std::fs::write(out.join("HRP.csv.tmp"), text).expect("write");
        std::fs::rename(out.join("HRP.csv.tmp"), out.join("HRP.csv")).expect("rename");
    }

    fn sync(&self, mode: &str) -> (i32, String) {
        let out = idlink()
            .args(self.args("sync", &["--connector", "HR", "--mode", mode, "-q"]))
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The whole store's view of Person: resources with their navigations, as CSV.
    fn state(&self) -> String {
        self.people("csv").0
    }

    /// `idlink resources --entity-type Person` in `format`, which must succeed: its output and
    /// its messages.
    fn people(&self, format: &str) -> (String, String) {
        let out = idlink()
            .args(self.args(
                "resources",
                &["--entity-type", "Person", "--format", format],
            ))
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).expect("utf-8"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Kills `idlink sync` at random instants; after each kill the store must be the state before
/// or the state after that run, never between; the next run (the lock released by the kill)
/// goes on from whichever it is.
fn killed_at_random_instants_leave_the_store_before_or_after(site: &Site) {
    const ROWS: usize = 6000;
    let variants: Vec<String> = (0..2).map(|v| table(ROWS, v + 1)).collect();
    // The state each table gives, learnt by running each to the end once.
    let mut states = Vec::new();
    for t in &variants {
        site.put_table(t);
        let (code, out) = site.sync("initial");
        assert_eq!(code, 0, "{out}");
        states.push(site.state());
    }
    assert_ne!(states[0], states[1]);
    // How long a complete run takes: the kills land from its start to a little past its end.
    let mut slowest = Duration::ZERO;
    for t in [0, 1] {
        site.put_table(&variants[t]);
        let started = Instant::now();
        let (code, out) = site.sync("complete");
        assert_eq!(code, 0, "{out}");
        slowest = slowest.max(started.elapsed());
    }
    let mut current = 1; // the store holds variant 1's state
    let mut rng = fastrand_seed();
    let (mut kills, mut old, mut new, mut finished_runs) = (0, 0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while kills < 12 {
        assert!(Instant::now() < deadline, "only {kills} kills in time");
        let target = 1 - current;
        site.put_table(&variants[target]);
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("idlink"))
            .args(site.args("sync", &["--connector", "HR", "--mode", "complete", "-q"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // Somewhere in the run, most often in its second half where the commit is.
        let wait = slowest.mul_f64(0.2 + next(&mut rng) * 1.0);
        std::thread::sleep(wait);
        let finished = child.try_wait().expect("wait").is_some();
        let _ = child.kill();
        let _ = child.wait();
        if finished {
            finished_runs += 1;
            current = target;
            // The run was shorter than the window: measured on a busy machine, `slowest`
            // can be many times a run (CI once got 2 kills in 120 s that way). Narrowed, the
            // window still spans each run from its start.
            slowest = slowest.mul_f64(0.8).max(Duration::from_millis(20));
            continue;
        }
        kills += 1;
        let state = site.state();
        if state == states[current] {
            old += 1;
        } else if state == states[target] {
            new += 1;
            current = target;
        } else {
            panic!("after a kill at {wait:?} the store is neither before nor after the run");
        }
    }
    eprintln!(
        "{kills} kills: {old} left the store as before, {new} as after; {finished_runs} runs ended before their kill"
    );
    // The lock did not outlive the killed processes.
    site.put_table(&variants[1 - current]);
    let (code, out) = site.sync("complete");
    assert_eq!(code, 0, "{out}");
    assert_eq!(site.state(), states[1 - current]);
}

/// A small generator (no dependency): xorshift seeded from the clock.
fn fastrand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
        | 1
}

fn next(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn regression_sync_killed_at_any_instant_leaves_the_sqlite_store_before_or_after() {
    killed_at_random_instants_leave_the_store_before_or_after(&Site::new(None));
}

#[test]
fn regression_sync_killed_at_any_instant_leaves_the_postgres_store_before_or_after() {
    on_postgres(
        "killed",
        killed_at_random_instants_leave_the_store_before_or_after,
    );
}

/// Runs `test` on a site whose store is a new PostgreSQL database, `database`, of a server
/// started for it.
/// Whether another session holds the resources table exclusively (a load without its indexes).
const HOLDS_RESOURCES: &str =
    "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
     WHERE c.relname = 'resources' AND l.mode = 'AccessExclusiveLock' AND l.granted;";

/// A first synchronization into an empty PostgreSQL store loads the resources without their
/// indexes and builds them after (see `SyncTx::insert_resources`). Killed at random instants,
/// each into a store of its own, it leaves the store empty or whole, never without its primary
/// key and key index, and the next run completes.
#[test]
fn regression_a_first_sync_killed_on_postgres_leaves_the_store_empty_or_whole_and_indexed() {
    const ROWS: usize = 6000;
    let pg = PostgresServer::start();
    let site_for = |name: &str| {
        pg.create_database(name).expect("db");
        let site = Site::new(Some(pg.url(name)));
        site.put_table(&table(ROWS, 1));
        site
    };
    // The resources' primary key and unique constraints (an error when there is no store).
    let indexes = |name: &str| {
        pg.execute(
            name,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = 'resources'::regclass AND contype IN ('p', 'u') ORDER BY 1;",
        )
    };
    // The state and the indexes a first run gives, and how long it takes.
    let whole = site_for("first_whole");
    let started = Instant::now();
    let (code, out) = whole.sync("initial");
    assert_eq!(code, 0, "{out}");
    let slowest = started.elapsed();
    let (after, want) = (whole.state(), indexes("first_whole").expect("constraints"));
    assert_eq!(want.trim(), "PRIMARY KEY (id)\nUNIQUE (entity_type, key)");
    // Empty: no store yet (killed before its tables were made), or no resources.
    let header = format!("{}\n", after.lines().next().expect("a header"));
    let state = |site: &Site| {
        let out = idlink()
            .args(site.args("resources", &["--entity-type", "Person", "--format", "csv"]))
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && err.contains("there is no store at") {
            return None;
        }
        assert!(out.status.success(), "{err}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        (text != header).then_some(text)
    };
    let mut rng = fastrand_seed();
    let (mut kills, mut before, mut whole_runs, mut in_loads) = (0, 0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0.. {
        if kills >= 8 && in_loads >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {kills} kills ({in_loads} during the load without indexes) in time"
        );
        let name = format!("first_killed_{i}");
        let site = site_for(&name);
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("idlink"))
            .args(site.args("sync", &["--connector", "HR", "--mode", "initial", "-q"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // Every other run is killed the moment it holds the resources without their indexes
        // (as long as its load lasts), the others at a random instant.
        let started = Instant::now();
        let mut in_load = false;
        if i % 2 == 0 {
            while child.try_wait().expect("wait").is_none() && !in_load {
                in_load = pg
                    .execute(&name, HOLDS_RESOURCES)
                    .is_ok_and(|held| held.trim() == "1");
            }
        } else {
            std::thread::sleep(slowest.mul_f64(0.3 + next(&mut rng) * 0.8));
        }
        let wait = started.elapsed();
        let finished = child.try_wait().expect("wait").is_some();
        let _ = child.kill();
        let _ = child.wait();
        if !finished {
            kills += 1;
            in_loads += usize::from(in_load);
        }
        if in_load && !finished {
            assert_eq!(
                state(&site),
                None,
                "killed during its load, the run left nothing"
            );
        }
        match state(&site) {
            None => before += 1,
            Some(state) => {
                assert_eq!(
                    state, after,
                    "after a kill at {wait:?}: neither empty nor whole"
                );
                whole_runs += 1;
            }
        }
        // Unless there is no store yet (no resources table to ask about), its indexes are
        // there.
        match indexes(&name) {
            Ok(kept) => assert_eq!(kept, want, "after a kill at {wait:?}"),
            Err(e) => assert!(state(&site).is_none(), "{e}"),
        }
        let (code, out) = site.sync("initial");
        assert_eq!(code, 0, "{out}");
        assert_eq!(site.state(), after);
    }
    eprintln!(
        "{kills} kills ({in_loads} during the load without indexes): {before} left the store empty, {whole_runs} whole"
    );
}

fn on_postgres(database: &str, test: impl FnOnce(&Site)) {
    let pg = PostgresServer::start();
    pg.execute("postgres", &format!("CREATE DATABASE {database}"))
        .expect("db");
    test(&Site::new(Some(pg.url(database))));
}

/// `idlink resources` reads the store a page of 5,000 at a time: an entity type of more pages
/// lists every resource once, in key order, with its navigations both ways (the managers and
/// reports cross the pages), in each format, on both stores.
fn lists_an_entity_type_of_several_pages_whole(site: &Site) {
    const ROWS: usize = 12_000;
    site.put_table(&table(ROWS, 0));
    let (code, out) = site.sync("initial");
    assert_eq!(code, 0, "{out}");
    // What the table says: the people present (a tenth is absent), each one's manager when
    // the manager is present too, and the reports of each.
    let present = |i: usize| i < ROWS && !i.is_multiple_of(10);
    let key = |i: usize| format!("P{i:06}");
    let mut want = Vec::new();
    let mut reports: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for i in (0..ROWS).filter(|&i| present(i)) {
        let m = (i * 7) % i;
        if present(m) {
            reports.entry(m).or_default().push(key(i));
        }
    }
    for i in (0..ROWS).filter(|&i| present(i)) {
        let m = (i * 7) % i;
        want.push(serde_json::json!({
            "Id": key(i),
            "Name": format!("Person {i} v0"),
            "Grade": i % 12,
            "Manager": if present(m) { serde_json::json!(key(m)) } else { serde_json::Value::Null },
            "Reports": reports.get(&i).cloned().unwrap_or_default(),
        }));
    }
    let (json, _) = site.people("json");
    let got: serde_json::Value = serde_json::from_str(&json).expect("a JSON array");
    assert_eq!(got.as_array().map(Vec::len), Some(want.len()));
    assert_eq!(got, serde_json::Value::Array(want.clone()));
    // The array written element by element is the text the whole array pretty-printed is.
    assert_eq!(
        json,
        format!("{}\n", serde_json::to_string_pretty(&got).expect("text"))
    );
    let (csv, _) = site.people("csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(rows.len(), want.len());
    for (row, w) in rows.iter().zip(&want) {
        assert_eq!(&row[0], w["Id"].as_str().expect("id"));
        let reports: Vec<&str> = w["Reports"]
            .as_array()
            .expect("reports")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(&row[4], reports.join("\n"), "{}", &row[0]);
    }
    let (text, err) = site.people("text");
    assert_eq!(text.lines().count(), want.len());
    assert!(
        err.contains(&format!("{} resource(s) of Person", want.len())),
        "{err}"
    );
}

#[test]
fn resources_lists_an_entity_type_of_several_pages_whole_on_sqlite() {
    lists_an_entity_type_of_several_pages_whole(&Site::new(None));
}

#[test]
fn resources_lists_an_entity_type_of_several_pages_whole_on_postgres() {
    on_postgres("pages", lists_an_entity_type_of_several_pages_whole);
}

/// Rows tens of kilobytes wide (photos, large groups) went to the store 10,000 at a time, a
/// few batches in flight: the synchronization of a 1.6 GB table of 80 KB rows peaked at
/// 1.7 GB of memory. Batches now end at 8 MiB of values as well. This checks that wide rows
/// crossing several such batches, inserted and then updated, arrive whole (the memory itself
/// is measured with peak RSS, not here).
fn wide_rows_crossing_batches_arrive_whole(site: &Site) {
    const ROWS: usize = 400;
    let name = |i: usize, v: usize| {
        let letter = char::from(b'a' + ((i + v) % 26) as u8);
        letter.to_string().repeat(30_000 + i)
    };
    let changed = |i: usize| i.is_multiple_of(3);
    let table = |v: usize| {
        let mut s = String::from("id,name,grade,manager\n");
        for i in 0..ROWS {
            let n = if changed(i) { name(i, v) } else { name(i, 0) };
            s += &format!("P{i:06},{n},{},\n", i % 12);
        }
        s
    };
    let names = || -> Vec<String> {
        let (json, _) = site.people("json");
        let got: Vec<serde_json::Value> = serde_json::from_str(&json).expect("a JSON array");
        got.iter()
            .map(|r| r["Name"].as_str().expect("a name").to_string())
            .collect()
    };
    site.put_table(&table(0));
    let (code, out) = site.sync("initial");
    assert_eq!(code, 0, "{out}");
    assert!(
        names().iter().enumerate().all(|(i, n)| *n == name(i, 0)),
        "a wide row was not stored whole"
    );
    site.put_table(&table(1));
    let out = idlink()
        .args(site.args(
            "sync",
            &["--connector", "HR", "--mode", "complete", "--force", "-q"],
        ))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("{} updated", ROWS.div_ceil(3))),
        "{text}"
    );
    let got = names();
    assert_eq!(got.len(), ROWS);
    for (i, n) in got.iter().enumerate() {
        let want = if changed(i) { name(i, 1) } else { name(i, 0) };
        assert!(
            *n == want,
            "P{i:06}: {} bytes, not the {} expected",
            n.len(),
            want.len()
        );
    }
}

#[test]
fn wide_rows_crossing_batches_arrive_whole_on_sqlite() {
    wide_rows_crossing_batches_arrive_whole(&Site::new(None));
}

#[test]
fn wide_rows_crossing_batches_arrive_whole_on_postgres() {
    on_postgres("wide", wide_rows_crossing_batches_arrive_whole);
}

/// A synchronization that found a SQLite store written by another process (most often the
/// synchronization of another connector) failed after SQLite's 30 s wait with "(code: 5)
/// database is locked", and said nothing meanwhile. It now says at once that it waits and for
/// whom (the other connectors' lock holders), waits its turn up to `IDLINK_STORE_WAIT` seconds
/// (beyond one 30 s attempt), and then fails with what to do.
#[test]
fn regression_a_sync_waits_its_turn_for_another_writer_of_a_sqlite_store_and_says_so() {
    let site = Site::new(None);
    let config = CONFIG.replace(
        "</ConfigurationFile>",
        r#"  <Connector Identifier="AD" DisplayName_L1="AD" />
  <Connection Identifier="ADA" DisplayName_L1="Accounts" Connector="AD" Package="Usercube.CSV@0000001" />
  <EntityType Identifier="Account" DisplayName_L1="Account">
    <Property Identifier="Login" DisplayName_L1="Login" IsKey="true" />
  </EntityType>
  <EntityTypeMapping Identifier="Account" Connector="AD" ConnectionTable="ADA">
    <Property Identifier="Login" ConnectionColumn="login" IsPrimaryKey="true" />
  </EntityTypeMapping>
</ConfigurationFile>"#,
    );
    std::fs::write(site.dir.path().join("conf/hr.xml"), config).expect("xml");
    std::fs::write(
        site.dir.path().join("conf/appsettings.agent.json"),
        r#"{"SourcesRootPaths": ["data"], "Connections": {"HRP": {"Path": "data/p.csv"}, "ADA": {"Path": "data/a.csv"}}}"#,
    )
    .expect("json");
    site.put_table(&table(30, 0));
    std::fs::write(site.path("work/ExportOutput/ADA.csv"), "login\nada\nalan\n").expect("ada");
    let sync = |connector: &str, wait: Option<&str>| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("idlink"));
        cmd.args(site.args("sync", &["--connector", connector, "--mode", "initial"]))
            .env_remove("IDLINK_STORE_WAIT")
            .env_remove("IDLINK_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(w) = wait {
            cmd.env("IDLINK_STORE_WAIT", w);
        }
        cmd
    };
    for connector in ["HR", "AD"] {
        let out = sync(connector, None).output().expect("runs");
        assert!(out.status.success(), "{out:?}");
    }
    // Another process writes to the store: a synchronization of connector Other, which holds
    // that connector's lock and the store's write lock until it is told to end.
    let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
    let (end, end_rx) = std::sync::mpsc::channel::<()>();
    let store_path = site.path("work/idlink.db");
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let location = idlink_store::Location::parse(&store_path).expect("location");
            let store = idlink_store::Store::open(&location).await.expect("store");
            let lock = store.lock_connector("Other", "sync").await.expect("lock");
            let tx = store.begin_sync("Other").await.expect("writes");
            ready_tx.send(()).expect("ready");
            tokio::task::spawn_blocking(move || end_rx.recv())
                .await
                .expect("joins")
                .expect("told to end");
            tx.rollback().await.expect("rolls back");
            lock.release().await.expect("releases");
            store.close().await;
        });
    });
    ready.recv().expect("the other writer started");
    let started = Instant::now();
    let waiting = sync("HR", None).spawn().expect("starts");
    let gives_up = sync("AD", Some("0")).output().expect("runs");
    let gave_up_after = started.elapsed();
    // Past SQLite's own 30 s wait, so the one that waits has to try again.
    std::thread::sleep(Duration::from_secs(2));
    end.send(()).expect("ends the other writer");
    holder.join().expect("the other writer ended");
    let waited = waiting.wait_with_output().expect("waits");
    let (err_waited, err_gave_up) = (
        String::from_utf8_lossy(&waited.stderr),
        String::from_utf8_lossy(&gives_up.stderr),
    );
    let holder_said = format!(
        "work under way on other connectors: connector 'Other': sync by process {} on ",
        std::process::id()
    );
    let store_shown = site.path("work/idlink.db");
    for err in [&err_waited, &err_gave_up] {
        assert!(
            err.contains(&format!("waiting for the store '{store_shown}': another process is writing to it ({holder_said}"))
                && err.contains("waiting up to"),
            "{err}"
        );
    }
    assert_eq!(gives_up.status.code(), Some(1), "{err_gave_up}");
    assert!(
        gave_up_after >= Duration::from_secs(25),
        "gave up after {gave_up_after:?}: {err_gave_up}"
    );
    assert!(
        err_gave_up.contains(&format!(
            "store '{store_shown}' is being written by another process ({holder_said}"
        )) && err_gave_up.contains("a SQLite store takes one writer at a time")
            && err_gave_up.contains("IDLINK_STORE_WAIT")
            && !err_gave_up.contains("code: 5"),
        "{err_gave_up}"
    );
    assert!(waited.status.success(), "{err_waited}");
    // Its log went to a pipe: plain text, no terminal colours.
    assert!(!err_waited.contains('\u{1b}'), "{err_waited:?}");
    assert!(started.elapsed() > Duration::from_secs(30));
    assert_eq!(site.people("csv").0.lines().count(), 28, "{}", site.state());
}
