//! `idlink export`, `refresh-schema` and `check-connection` end to end on the quickstart's
//! CSV connections.

use crate::support::{idlink, quickstart, repo_root, run};

/// `idlink <args>` run from `dir`.
fn idlink_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    idlink().current_dir(dir).args(args).output().expect("runs")
}

#[test]
fn quickstart_hr_connections_export() {
    let work = tempfile::tempdir().expect("tempdir");
    for id in ["HRPeople", "HROrganizations"] {
        let out = idlink()
            .args([
                "export",
                "--config",
                "examples/quickstart",
                "--connection",
                id,
                "--work",
            ])
            .arg(work.path())
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("exported {id} (Usercube.CSV@0000001, complete)")),
            "{stdout}"
        );
    }
    let people =
        std::fs::read_to_string(work.path().join("ExportOutput/HRPeople.csv")).expect("table");
    let source =
        std::fs::read_to_string(repo_root().join("examples/quickstart/data/hr_people.csv"))
            .expect("source");
    assert_eq!(
        people, source,
        "a UTF-8 CSV with a comma separator exports as it is"
    );
    let orgs = std::fs::read_to_string(work.path().join("ExportOutput/HROrganizations.csv"))
        .expect("table");
    assert_eq!(orgs.lines().count(), 4);
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.path().join("Reports/export-HRPeople.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(report["tables"][0]["rows"], 8);
    assert_eq!(report["tables"][0]["name"], "HRPeople");
}

/// The working folder that idlink creates holds every exported identity: it is private to its
/// owner (0700), not as the umask says (0755, readable by every local user). A folder that
/// exists keeps its mode.
#[test]
fn regression_a_new_work_folder_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    let new = dir.path().join("parent/work");
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    for work in [&new, &existing] {
        let args = [
            "export",
            "--config",
            "examples/quickstart",
            "--connection",
            "HRPeople",
        ];
        let w = work.to_str().expect("utf-8");
        let (code, out) = run(&repo_root(), &[&args[..], &["--work", w]].concat(), &[]);
        assert_eq!(code, 0, "{out}");
        assert!(work.join("ExportOutput/HRPeople.csv").is_file());
    }
    assert_eq!(mode(&new), 0o700, "the folder idlink created");
    assert_eq!(mode(&existing), 0o750, "the folder that existed");
}

/// A working folder that existed open to other users (0755, as `mkdir` makes it, or as idlink
/// made `./work` before it created it private) was used without a word, though every
/// identity's exported table is in it: idlink now says so and how to close it, and says
/// nothing of a folder closed to others (0750) or of one it created.
#[test]
fn regression_a_working_folder_open_to_other_users_is_told() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let export = |work: &std::path::Path| {
        let w = work.to_str().expect("utf-8");
        let args = [
            "export",
            "--config",
            "examples/quickstart",
            "--connection",
            "HRPeople",
            "--work",
            w,
        ];
        let out = idlink()
            .current_dir(repo_root())
            .args(args)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let err = export(&open);
    assert!(
        err.contains(&format!(
            "warning: other users can open the working folder {} (mode 755)",
            open.display()
        )) && err.contains(&format!("chmod o-rwx {}", open.display())),
        "{err}"
    );
    let group = dir.path().join("group");
    std::fs::create_dir(&group).expect("mkdir");
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let new = dir.path().join("new");
    for work in [&group, &new, &new] {
        let err = export(work);
        assert!(!err.contains("working folder"), "{}: {err}", work.display());
    }
}

#[test]
fn a_failed_export_keeps_the_previous_table() {
    let dir = quickstart();
    let work = dir.path().join("work");
    let export = || idlink_in(dir.path(), &["export", "--connection", "HRPeople"]);
    assert_eq!(export().status.code(), Some(0));
    let before = std::fs::read(work.join("ExportOutput/HRPeople.csv")).expect("table");
    // A ragged row in the source: the export fails with its line and changes nothing.
    let source = dir.path().join("conf/data/hr_people.csv");
    let mut text = std::fs::read_to_string(&source).expect("read");
    text.push_str("E009,Only,Three\n");
    std::fs::write(&source, text).expect("write");
    let out = export();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("hr_people.csv:10"), "{stderr}");
    assert!(stderr.contains("nothing was committed"), "{stderr}");
    assert_eq!(
        std::fs::read(work.join("ExportOutput/HRPeople.csv")).expect("table"),
        before
    );
    let names: Vec<String> = std::fs::read_dir(work.join("ExportOutput"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["HRPeople.csv"], "no staging folder left behind");
}

#[test]
fn refresh_schema_lists_the_header_and_check_connection_reads_the_file() {
    // The snapshots go to a store in a folder of the test's own, never the repository's.
    let work = tempfile::tempdir().expect("tempdir");
    let out = idlink()
        .args([
            "refresh-schema",
            "--config",
            "examples/quickstart",
            "--connection",
            "HRPeople",
            "--format",
            "json",
            "--work",
        ])
        .arg(work.path())
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let columns: Vec<&str> = schema["tables"][0]["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "EmployeeId",
            "FirstName",
            "LastName",
            "Email",
            "OrganizationCode",
            "StartDate"
        ]
    );

    let out = idlink()
        .args([
            "refresh-schema",
            "--config",
            "examples/quickstart",
            "--connection",
            "HROrganizations",
            "--format",
            "xml",
            "--work",
        ])
        .arg(work.path())
        .output()
        .expect("runs");
    let xml = String::from_utf8_lossy(&out.stdout);
    assert!(
        xml.contains(
            "<ConnectionTable Connection=\"HROrganizations\" Identifier=\"HROrganizations\">"
        ),
        "{xml}"
    );
    assert!(xml.contains("<Column Identifier=\"Code\" />"), "{xml}");

    let out = idlink()
        .args([
            "check-connection",
            "--config",
            "examples/quickstart",
            "--connection",
            "hrpeople",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("reachable") && stdout.contains("hr_people.csv"),
        "{stdout}"
    );
}

#[test]
fn a_path_outside_the_source_roots_is_refused() {
    let dir = quickstart();
    std::fs::write(dir.path().join("outside.csv"), "a,b\n1,2\n").expect("write");
    let out = idlink()
        .current_dir(dir.path())
        .env(
            "IDLINK__Connections__HRPeople__Path",
            "data/../../outside.csv",
        )
        .args(["check-connection", "--connection", "HRPeople"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("outside SourcesRootPaths"), "{stdout}");
}

#[test]
fn export_refuses_an_invalid_configuration_and_unknown_connections() {
    let out = idlink()
        .args([
            "export",
            "--config",
            "examples/broken/mapping-keys",
            "--connection",
            "HRPeople",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[mapping-keys]"));
    let out = idlink()
        .args([
            "export",
            "--config",
            "examples/quickstart",
            "--connection",
            "HRPeopel",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean 'HRPeople'"));
}

/// A stray quote in an HR file, closed by another a few lines down, takes the people between
/// into one value, as the CSV rules read it: the export succeeds, so it says so, with the line.
#[test]
fn regression_a_stray_quote_that_swallows_rows_is_noted_with_its_line() {
    let dir = quickstart();
    let source = dir.path().join("conf/data/hr_people.csv");
    let text = std::fs::read_to_string(&source).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 6, "{text}");
    // A quote opens the second person's second value and another closes it two people down.
    let mut broken: Vec<String> = lines.iter().map(|l| (*l).to_string()).collect();
    broken[2] = broken[2].replacen(',', ",\"", 1);
    assert!(broken[4].contains("Édith,Piaf"), "{text}");
    broken[4] = broken[4].replace("Édith,Piaf", "Édith\",Piaf");
    std::fs::write(&source, broken.join("\n") + "\n").expect("write");
    let out = idlink_in(dir.path(), &["export", "--connection", "HRPeople"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "note: hr_people.csv:3: a quoted value holds 1 line that looks like a row of its own"
        ),
        "{stderr}"
    );
    // A job that exports it says so in its report too.
    let out = idlink_in(dir.path(), &["run-job", "Quickstart"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("exported HRPeople: 6 rows in 1 table; note: hr_people.csv:3: a quoted value holds 1 line"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The file as it was: no note.
    std::fs::write(&source, &text).expect("write");
    let out = idlink_in(dir.path(), &["export", "--connection", "HRPeople"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("note:"), "{stderr}");
}
