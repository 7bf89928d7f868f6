//! `idlink check` end to end: exit codes, text and JSON output, global options.

use crate::support::{copy_dir, idlink, repo_root};

#[test]
fn quickstart_is_valid() {
    let out = idlink()
        .args(["check", "--config", "examples/quickstart"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "valid: 2 connectors, 3 connections, 3 entity types, 5 mappings, 1 resource type, 1 job \
         (5 files, 0 errors, 0 warnings)"
    );
}

#[test]
fn json_output_lists_every_diagnostic_with_its_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("examples/quickstart"), dir.path());
    let hr = dir.path().join("hr.xml");
    let text = std::fs::read_to_string(&hr).expect("read");
    let text = text.replace("Connector=\"HR\" Package=\"Usercube.CSV@0000001\" />\n  <Connection Identifier=\"HROrganizations\"", "Connector=\"HRR\" Package=\"Usercube.CSV@0000001\" />\n  <Connection Identifier=\"HROrganizations\"");
    std::fs::write(
        &hr,
        text.replace(
            "<Connector Identifier=\"HR\"",
            "<Connector Identifier=\"HR\" Agnt=\"x\"",
        ),
    )
    .expect("write");
    let out = idlink()
        .args(["check", "--format", "json", "--config"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["valid"], false);
    assert_eq!(report["summary"]["connections"], 3);
    let diags = report["diagnostics"].as_array().expect("diagnostics");
    let unresolved = diags
        .iter()
        .find(|d| d["rule"] == "unresolved-reference")
        .expect("unresolved reference");
    assert_eq!(unresolved["severity"], "error");
    assert_eq!(unresolved["file"], hr.display().to_string());
    assert_eq!(unresolved["line"], 7);
    assert!(unresolved["column"].as_u64().is_some_and(|c| c > 1));
    assert!(
        unresolved["message"]
            .as_str()
            .is_some_and(|m| m.contains("'HRR'"))
    );
    assert!(
        unresolved["hint"]
            .as_str()
            .is_some_and(|h| h.contains("did you mean 'HR'"))
    );
    let unknown = diags
        .iter()
        .find(|d| d["rule"] == "unknown-attribute")
        .expect("warning");
    assert_eq!(unknown["severity"], "warning");
    assert!(
        unknown["hint"]
            .as_str()
            .is_some_and(|h| h.contains("did you mean 'Agent'"))
    );
}

#[test]
fn warnings_print_but_do_not_fail_and_quiet_hides_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("examples/quickstart"), dir.path());
    let settings = dir.path().join("appsettings.agent.json");
    let text = std::fs::read_to_string(&settings).expect("read");
    let text = text
        .replace("\"Separator\": \",\",", "\"Separater\": \",\",")
        .replacen(
            "\"Connections\": {",
            "\"Connections\": {\n    \"HRPeopel\": { \"Path\": \"x.csv\" },",
            1,
        );
    std::fs::write(&settings, text).expect("write");
    let out = idlink()
        .args(["check", "--config"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("warning[unknown-setting]") && stdout.contains("did you mean 'Separator'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning[unknown-connection-settings]")
            && stdout.contains("did you mean 'HRPeople'"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("valid: ") && l.contains("2 warnings")),
        "{stdout}"
    );
    let quiet = idlink()
        .args(["check", "-q", "--config"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let quiet_out = String::from_utf8_lossy(&quiet.stdout);
    assert_eq!(quiet_out.lines().count(), 1, "{quiet_out}");
}

#[test]
fn io_and_usage_errors_exit_2() {
    let out = idlink()
        .args(["check", "--config", "does/not/exist"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist"));

    let out = idlink()
        .args([
            "check",
            "--config",
            "examples/quickstart",
            "--settings",
            "nope.json",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.json"));

    let out = idlink()
        .args(["check", "--format", "yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = idlink().args(["frobnicate"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn default_config_folder_and_env_overrides() {
    // Run from a folder holding ./conf: the default --config.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &repo_root().join("examples/quickstart"),
        &dir.path().join("conf"),
    );
    let out = idlink()
        .current_dir(dir.path())
        .env(
            "IDLINK__Connections__HRPeople__NumberOfLinesToSkip",
            "several",
        )
        .arg("check")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("environment variable IDLINK__Connections__HRPeople__NumberOfLinesToSkip: error[setting-value]"),
        "{stdout}"
    );
}

#[test]
fn a_missing_default_settings_file_reports_each_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("examples/quickstart"), dir.path());
    std::fs::remove_file(dir.path().join("appsettings.agent.json")).expect("rm");
    std::fs::remove_file(dir.path().join("appsettings.encrypted.agent.json")).expect("rm");
    let out = idlink()
        .args(["check", "--config"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.matches("error[missing-settings]").count(),
        3,
        "{stdout}"
    );
}

#[test]
fn packages_lists_every_identifier() {
    let out = idlink().arg("packages").output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("Usercube.CSV@0000001")
            && stdout.contains("Usercube.SQL.SQLServer@0000001")
    );
    assert!(stdout.lines().any(
        |l| l.starts_with("Usercube.SAP@0000001") && l.ends_with("not available in this build")
    ));
}
