//! Schema snapshots in the store (SPEC §7) end to end: `refresh-schema` (one connection, or a
//! connector's), `connections`, `check` with snapshots and `schema-drift`, `--database`
//! (SQLite and PostgreSQL), and the store's refusals.

use std::path::Path;
use std::sync::LazyLock;

use idlink_test_support::PostgresServer;
use serde_json::Value;

use crate::support::{copy_dir, repo_root, run};

static PG: LazyLock<PostgresServer> = LazyLock::new(PostgresServer::start);

/// The quickstart in `<dir>/conf` without its `<ConnectionTable>` elements (the snapshots are
/// the only schema), with a connection whose package has no schema (`HRTickets`).
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    copy_dir(&repo_root().join("examples/quickstart"), &conf);
    for file in ["hr.xml", "directory.xml"] {
        let path = conf.join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        let mut out = String::new();
        let mut skipping = false;
        for line in text.lines() {
            if line.trim_start().starts_with("<ConnectionTable ") {
                skipping = true;
            }
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
            if line.trim_start().starts_with("</ConnectionTable>") {
                skipping = false;
            }
        }
        assert!(!out.contains("ConnectionTable "), "{out}");
        let out = out.replace(
            "<!-- Schemas, as Refresh Schema writes them. -->",
            "<Connection Identifier=\"HRTickets\" DisplayName_L1=\"HR tickets\" Connector=\"HR\" Package=\"Usercube.FulfillToFile@0000001\" />",
        );
        std::fs::write(&path, out).expect("write");
    }
    dir
}

/// Runs `sql` on the SQLite file at `path` (created if needed), as another program would.
fn sqlite_execute(path: &Path, sql: &str) {
    use sqlx::Connection;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open");
        sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
        conn.close().await.expect("close");
    });
}

fn json(text: &str) -> Value {
    let start = text
        .find(['[', '{'])
        .unwrap_or_else(|| panic!("no JSON in {text}"));
    let mut de = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    de.next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no JSON in {text}"))
}

/// `idlink connections --format json` in `dir`, by connection identifier.
fn connections(dir: &Path, env: &[(&str, &str)]) -> Vec<Value> {
    let (code, out) = run(dir, &["connections", "--format", "json"], env);
    assert_eq!(code, 0, "{out}");
    json(&out).as_array().expect("array").clone()
}

fn find<'a>(list: &'a [Value], connection: &str) -> &'a Value {
    list.iter()
        .find(|c| c["connection"] == connection)
        .unwrap_or_else(|| panic!("{connection} not in {list:?}"))
}

#[test]
fn refresh_schema_records_the_snapshot_and_connections_shows_every_state() {
    let dir = fixture();
    // Before any refresh: no store is created by listing or checking.
    let (code, out) = run(dir.path(), &["connections"], &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(dir.path(), &["check"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning[schema-not-refreshed]"), "{out}");
    assert!(
        !dir.path().join("work/idlink.db").exists(),
        "check and connections created a store"
    );

    let (code, out) = run(
        dir.path(),
        &[
            "refresh-schema",
            "--connection",
            "hrpeople",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let schema = json(&out);
    assert_eq!(
        schema["connection"], "HRPeople",
        "the output stays as it was"
    );
    assert_eq!(schema["tables"][0]["columns"][3]["name"], "Email");
    assert!(dir.path().join("work/idlink.db").is_file());

    let list = connections(dir.path(), &[]);
    let names: Vec<&str> = list
        .iter()
        .filter_map(|c| c["connection"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "AppsDB",
            "AppsExport",
            "DirectoryLDAP",
            "HRPeople",
            "HROrganizations",
            "HRTickets"
        ],
        "configuration order (files by name)"
    );
    let people = find(&list, "HRPeople");
    assert_eq!(people["connector"], "HR");
    assert_eq!(people["package"], "Usercube.CSV@0000001");
    assert_eq!(people["available"], true);
    assert_eq!(
        people["capabilities"],
        serde_json::json!({"export": true, "incremental": true, "fulfill": false, "schema": true})
    );
    assert_eq!(people["schema"]["state"], "refreshed");
    assert_eq!(people["schema"]["tables"], 1);
    assert_eq!(people["schema"]["columns"], 6);
    let at = people["schema"]["refreshedAt"].as_str().expect("time");
    chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time");
    assert_eq!(
        find(&list, "HRTickets")["schema"],
        serde_json::json!({"state": "none", "message": "There is no schema for this connection"})
    );
    assert_eq!(
        find(&list, "HROrganizations")["schema"]["state"],
        "never-refreshed"
    );

    // Text: one line per connection under a header.
    let (code, out) = run(dir.path(), &["connections", "--connector", "HR"], &[]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("connection"), "{out}");
    assert!(
        lines[1].starts_with("HRPeople")
            && lines[1].contains(&format!("refreshed {at} (1 table, 6 columns)")),
        "{out}"
    );
    assert!(
        lines[2].starts_with("HROrganizations") && lines[2].contains("never refreshed"),
        "{out}"
    );
    assert!(
        lines[3].ends_with("There is no schema for this connection"),
        "{out}"
    );
    assert!(!out.contains("DirectoryLDAP"), "{out}");
}

#[test]
fn a_failed_refresh_is_recorded_and_keeps_the_last_good_snapshot() {
    let dir = fixture();
    let (code, out) = run(
        dir.path(),
        &["refresh-schema", "--connection", "HRPeople"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let good = find(&connections(dir.path(), &[]), "HRPeople")["schema"]["refreshedAt"].clone();
    std::fs::remove_file(dir.path().join("conf/data/hr_people.csv")).expect("rm");
    let (code, out) = run(
        dir.path(),
        &["refresh-schema", "--connection", "HRPeople"],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: schema refresh of 'HRPeople' failed: "),
        "{out}"
    );
    assert!(out.contains("hr_people.csv"), "{out}");
    let people = find(&connections(dir.path(), &[]), "HRPeople").clone();
    assert_eq!(people["schema"]["state"], "failed", "{people}");
    assert!(
        people["schema"]["message"]
            .as_str()
            .expect("message")
            .contains("hr_people.csv"),
        "{people}"
    );
    assert_eq!(
        people["schema"]["refreshedAt"], good,
        "the last good snapshot is kept"
    );
    assert!(people["schema"]["failedAt"].as_str().expect("time") >= good.as_str().expect("time"));
    // check still reads the last good snapshot: no "not refreshed" for HRPeople.
    let (code, out) = run(dir.path(), &["check"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.lines()
            .any(|l| l.contains("schema-not-refreshed") && l.contains("'HRPeople'")),
        "{out}"
    );
    // Text shows the failure and the kept snapshot.
    let (_, out) = run(dir.path(), &["connections"], &[]);
    let line = out
        .lines()
        .find(|l| l.starts_with("HRPeople"))
        .expect("line");
    assert!(line.contains("refresh failed "), "{line}");
    assert!(
        line.contains(&format!(
            "(last good snapshot {} kept)",
            good.as_str().expect("time")
        )),
        "{line}"
    );
}

#[test]
fn a_package_without_schema_is_not_a_failure() {
    let dir = fixture();
    let (code, out) = run(
        dir.path(),
        &["refresh-schema", "--connection", "HRTickets"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("HRTickets: There is no schema for this connection"),
        "{out}"
    );
}

#[test]
fn check_warns_schema_drift_with_the_mapping_the_column_and_the_snapshot_time() {
    let dir = fixture();
    for id in ["HRPeople", "HROrganizations"] {
        let (code, out) = run(dir.path(), &["refresh-schema", "--connection", id], &[]);
        assert_eq!(code, 0, "{out}");
    }
    // The snapshots stand in for <ConnectionTable>: nothing to warn about HR any more.
    let (code, out) = run(dir.path(), &["check", "--format", "json"], &[]);
    assert_eq!(code, 0, "{out}");
    let report = json(&out);
    let hr_warnings: Vec<&Value> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["file"].as_str().is_some_and(|f| f.ends_with("hr.xml")))
        .collect();
    assert!(hr_warnings.is_empty(), "{hr_warnings:?}");

    // The source drops the Email column; the next refresh records it.
    let source = dir.path().join("conf/data/hr_people.csv");
    let text = std::fs::read_to_string(&source).expect("read");
    let dropped: String = text
        .lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.remove(3);
            cells.join(",") + "\n"
        })
        .collect();
    std::fs::write(&source, dropped).expect("write");
    let (code, out) = run(
        dir.path(),
        &["refresh-schema", "--connection", "HRPeople"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let at = find(&connections(dir.path(), &[]), "HRPeople")["schema"]["refreshedAt"]
        .as_str()
        .expect("time")
        .to_string();

    let (code, out) = run(dir.path(), &["check", "--format", "json"], &[]);
    assert_eq!(code, 0, "a drift is a warning: {out}");
    let report = json(&out);
    let drift: Vec<&Value> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["rule"] == "schema-drift")
        .collect();
    assert_eq!(drift.len(), 1, "{out}");
    let d = drift[0];
    assert_eq!(d["severity"], "warning");
    assert!(d["file"].as_str().expect("file").ends_with("hr.xml"));
    let hr = std::fs::read_to_string(dir.path().join("conf/hr.xml")).expect("read");
    let line = hr
        .lines()
        .position(|l| l.contains("ConnectionColumn=\"Email\""))
        .expect("Email line")
        + 1;
    assert_eq!(d["line"], line, "at the mapping's Email property");
    assert_eq!(
        d["message"],
        format!(
            "entity type mapping 'HR_Person' reads column 'Email', which table 'HRPeople' does not have in the latest schema snapshot of connection 'HRPeople' (refreshed {at})"
        )
    );
    // Text: the rule id in brackets.
    let (code, out) = run(dir.path(), &["check"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning[schema-drift]: entity type mapping 'HR_Person' reads column 'Email'"),
        "{out}"
    );
}

#[test]
fn refresh_all_schemas_continues_past_failures_and_exits_1() {
    let dir = fixture();
    std::fs::remove_file(dir.path().join("conf/data/hr_people.csv")).expect("rm");
    let (code, out) = run(dir.path(), &["refresh-schema", "--connector", "HR"], &[]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("HRPeople ") && lines[0].contains("failed: "),
        "{out}"
    );
    assert!(lines[0].contains("hr_people.csv"), "{out}");
    assert!(
        lines[1].starts_with("HROrganizations ")
            && lines[1].contains("refreshed: 1 table, 2 columns (Usercube.CSV@0000001, "),
        "{out}"
    );
    assert!(
        lines[2].starts_with("HRTickets ")
            && lines[2].ends_with("There is no schema for this connection"),
        "{out}"
    );
    assert_eq!(
        lines[3], "connector 'HR': 3 connections: 1 refreshed, 1 failed, 1 without schema",
        "{out}"
    );
    let list = connections(dir.path(), &[]);
    assert_eq!(find(&list, "HRPeople")["schema"]["state"], "failed");
    assert_eq!(
        find(&list, "HRPeople")["schema"]["refreshedAt"],
        Value::Null
    );
    assert_eq!(
        find(&list, "HROrganizations")["schema"]["state"],
        "refreshed"
    );

    // Everything fine: exit 0.
    copy_dir(
        &repo_root().join("examples/quickstart/data"),
        &dir.path().join("conf/data"),
    );
    let (code, out) = run(dir.path(), &["refresh-schema", "--connector", "HR"], &[]);
    assert_eq!(code, 0, "{out}");
    // An unknown connector: said, with a suggestion.
    let (code, out) = run(dir.path(), &["refresh-schema", "--connector", "Hr"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("connector 'Hr' is not declared in the configuration; did you mean 'HR'?"),
        "{out}"
    );
    let (code, out) = run(dir.path(), &["connections", "--connector", "Directry"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("did you mean 'Directory'?"), "{out}");
}

#[test]
fn a_busy_connector_is_refused_with_who_holds_it_since_when() {
    let dir = fixture();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let location = idlink_store::Location::default_in(&dir.path().join("work"));
    let store = rt
        .block_on(idlink_store::Store::open(&location))
        .expect("store");
    let lock = rt
        .block_on(store.lock_connector("HR", "sync"))
        .expect("lock");
    let (code, out) = run(dir.path(), &["refresh-schema", "--connector", "HR"], &[]);
    assert_eq!(code, 1, "{out}");
    let since = lock
        .holder()
        .since
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        out.contains(&format!(
            "error: connector 'HR' is busy: sync holds it (process {} on {}) since {since}; wait for it to end, or stop that process",
            std::process::id(),
            lock.holder().host
        )),
        "{out}"
    );
    drop(lock);
    let (code, out) = run(dir.path(), &["refresh-schema", "--connector", "HR"], &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn regression_a_file_that_is_not_an_idlink_store_is_refused_by_every_store_command() {
    let dir = fixture();
    let notes = dir.path().join("notes.csv");
    std::fs::write(&notes, "a,b\n1,2\n").expect("write");
    let foreign = dir.path().join("app.db");
    sqlite_execute(&foreign, "CREATE TABLE customers (id INTEGER);");
    for (file, expected) in [
        (
            &notes,
            "is not an idlink store: it is not a SQLite database",
        ),
        (
            &foreign,
            "is not an idlink store: it holds tables of another application (customers)",
        ),
    ] {
        let given = file.display().to_string();
        for args in [
            vec!["check", "--database", &given],
            vec!["connections", "--database", &given],
            vec![
                "refresh-schema",
                "--connection",
                "HRPeople",
                "--database",
                &given,
            ],
        ] {
            let (code, out) = run(dir.path(), &args, &[]);
            assert_eq!(code, 2, "{args:?}: {out}");
            assert!(out.contains(expected), "{args:?}: {out}");
        }
        // The environment variable too.
        let (code, out) = run(dir.path(), &["connections"], &[("IDLINK_DATABASE", &given)]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(expected), "{out}");
    }
    assert_eq!(std::fs::read_to_string(&notes).expect("read"), "a,b\n1,2\n");
}

#[test]
fn regression_a_store_written_by_a_newer_idlink_is_refused() {
    let dir = fixture();
    let (code, out) = run(
        dir.path(),
        &["refresh-schema", "--connection", "HRPeople"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let db = dir.path().join("work/idlink.db");
    sqlite_execute(
        &db,
        "UPDATE idlink_meta SET value = '99' WHERE key = 'format_version';",
    );
    for args in [
        vec!["connections"],
        vec!["check"],
        vec!["refresh-schema", "--connection", "HRPeople"],
    ] {
        let (code, out) = run(dir.path(), &args, &[]);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(
            out.contains(&format!(
                "'./work/idlink.db' was written by a newer idlink (store format 99, this idlink reads up to {}): use a newer idlink or another --database",
                idlink_store::migrate::FORMAT_VERSION
            )),
            "{args:?}: {out}"
        );
    }
}

#[test]
fn a_postgres_store_through_database_and_the_environment() {
    PG.create_database("cli_store").expect("database");
    let url = PG.url("cli_store");
    let dir = fixture();
    let (code, out) = run(
        dir.path(),
        &["refresh-schema", "--connector", "HR", "--database", &url],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        !dir.path().join("work/idlink.db").exists(),
        "no SQLite store beside"
    );
    let list = connections(dir.path(), &[("IDLINK_DATABASE", &url)]);
    assert_eq!(find(&list, "HRPeople")["schema"]["state"], "refreshed");
    assert_eq!(find(&list, "HROrganizations")["schema"]["columns"], 2);
    // The option wins over the environment; before the command too.
    let (code, out) = run(
        dir.path(),
        &["--database", &url, "check", "--format", "json"],
        &[("IDLINK_DATABASE", "/nonexistent/folder/x.db")],
    );
    assert_eq!(code, 0, "{out}");
    let report = json(&out);
    let not_refreshed: Vec<&Value> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["rule"] == "schema-not-refreshed")
        .filter(|d| d["file"].as_str().is_some_and(|f| f.ends_with("hr.xml")))
        .collect();
    assert!(
        not_refreshed.is_empty(),
        "the PostgreSQL store's snapshots were not used: {out}"
    );
    // A wrong password is refused without showing it.
    let wrong = url.replace(PG.password(), "Not-The-Password-42");
    let (code, out) = run(dir.path(), &["connections", "--database", &wrong], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cannot open the store postgres://postgres@127.0.0.1:"),
        "{out}"
    );
    assert!(
        !out.contains("Not-The-Password-42") && !out.contains(PG.password()),
        "{out}"
    );
}
