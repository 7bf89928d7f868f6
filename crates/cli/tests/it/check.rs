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
        "valid: 3 connectors, 5 connections, 4 entity types, 6 mappings, 2 resource types, 2 jobs \
         (6 files, 0 errors, 0 warnings)"
    );
}

/// examples/documented: configuration written the way the 6.2 reference pages write it
/// (issue #9). Valid with no warning; documented items without effect in idlink show only
/// with -v, one line per attribute.
#[test]
fn regression_documented_forms_check_clean_and_explain_no_effect_items_with_verbose() {
    let run = |verbose: bool| {
        let mut cmd = idlink();
        if verbose {
            cmd.arg("-v");
        }
        let out = cmd
            .args(["check", "--config", "examples/documented"])
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let quiet = run(false);
    assert_eq!(
        quiet.trim(),
        "valid: 2 connectors, 3 connections, 3 entity types, 5 mappings, 1 resource type, 1 job \
         (5 files, 0 errors, 0 warnings)"
    );
    let verbose = run(true);
    let infos: Vec<&str> = verbose
        .lines()
        .filter(|l| l.contains("info[accepted-without-effect]"))
        .collect();
    assert!(!verbose.contains("unknown"), "{verbose}");
    // OpenIdClient is on eight tasks of five kinds: one line.
    assert_eq!(
        infos.iter().filter(|l| l.contains("OpenIdClient")).count(),
        1,
        "{verbose}"
    );
    for attr in [
        "LogLevel",
        "SourceMatchedConfidenceLevel",
        "TimeOffsetReference",
        "ComparisonType",
        "Policy",
    ] {
        assert!(
            infos
                .iter()
                .any(|l| l.contains(&format!(": {attr} is accepted without effect in idlink: "))),
            "{attr}: {verbose}"
        );
    }
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
    assert_eq!(report["summary"]["connections"], 5);
    let diags = report["diagnostics"].as_array().expect("diagnostics");
    let unresolved = diags
        .iter()
        .find(|d| d["rule"] == "unresolved-reference")
        .expect("unresolved reference");
    assert_eq!(unresolved["severity"], "error");
    assert_eq!(unresolved["file"], hr.display().to_string());
    assert_eq!(unresolved["line"], 11);
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
        5,
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

/// The quickstart plus a PostgreSQL connection `HRDb`, without its encrypted settings file, in
/// `<tmp>/qs`; `settings` becomes its appsettings.agent.json.
fn package_settings_case(settings: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let qs = dir.path().join("qs");
    copy_dir(&repo_root().join("examples/quickstart"), &qs);
    std::fs::remove_file(qs.join("appsettings.encrypted.agent.json")).expect("rm");
    let hr = qs.join("hr.xml");
    let text = std::fs::read_to_string(&hr).expect("read").replace(
        "<!-- Schemas, as Refresh Schema writes them. -->",
        "<Connection Identifier=\"HRDb\" DisplayName_L1=\"HR database\" Connector=\"HR\" Package=\"Usercube.SQL.PostgreSQL@0000001\" />",
    );
    std::fs::write(&hr, text).expect("write");
    std::fs::write(qs.join("appsettings.agent.json"), settings).expect("write");
    dir
}

/// Settings every package accepts; each case below breaks one thing.
const GOOD_SETTINGS: &str = r#"{
  "SourcesRootPaths": ["data"],
  "Connections": {
    "HRPeople": {
      "Path": "data/hr_people.csv"
    },
    "HROrganizations": {
      "Path": "data/hr_organizations.csv"
    },
    "DirectoryLDAP": {
      "Servers": [
        {
          "Server": "ldap://127.0.0.1:3389",
          "AuthType": "Anonymous"
        }
      ],
      "Tables": [
        { "Table": "entries", "BaseDN": "dc=example,dc=org" }
      ]
    },
    "HRDb": {
      "ConnectionString": "age:YWdlLWVuY3J5cHRpb24ub3JnL3YxCg==",
      "Timeout": 30
    },
    "AppsDB": {
      "ConnectionString": "sqlite:data/apps.db",
      "Tables": [{ "ResourceType": "Apps_Account", "Table": "accounts", "KeyColumn": "login" }]
    },
    "AppsExport": { "ConnectionString": "sqlite:data/apps.db", "SqlCommand": "SELECT 1" }
  }
}"#;

/// 1-based line and column (in characters) of the first occurrence of `needle`.
fn position(text: &str, needle: &str) -> (u64, u64) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {text}"));
    let before = &text[..at];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, column)
}

/// `idlink check --format json` on a case: its exit code and diagnostics.
fn check_json(dir: &std::path::Path) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = idlink()
        .current_dir(dir)
        .args(["check", "--config", "qs", "--format", "json"])
        .output()
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let diags = report["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (out.status.code(), diags)
}

/// Defect 7 of issue #8: `check` never instantiated packages, so what they find wrong in their
/// settings surfaced only at export time, one at a time. Each problem is now reported by
/// `check`, at its place in appsettings.agent.json.
#[test]
fn regression_check_reports_what_packages_find_wrong_in_their_settings_with_locations() {
    // (what, replace this, with that, the value where it is reported, words of the message)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "a bad connection string",
            "\"ConnectionString\": \"age:YWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\"",
            "\"ConnectionString\": \"Host=db.example.org;Port=5432;Databse=hr;Username=idlink\"",
            "\"Host=db.example.org",
            "Connections.HRDb.ConnectionString:",
        ),
        (
            "EnableSSL with StartTls",
            "\"AuthType\": \"Anonymous\"",
            "\"AuthType\": \"Anonymous\", \"EnableSSL\": true, \"StartTls\": true",
            "true\n",
            "Connections.DirectoryLDAP.Servers[0].StartTls: EnableSSL (LDAPS) and StartTls exclude each other",
        ),
        (
            "Tables without entries",
            "\"Table\": \"entries\"",
            "\"Table\": \"member\"",
            "[\n        { \"Table\": \"member\"",
            "Connections.DirectoryLDAP.Tables: a table named `entries` is required",
        ),
        (
            "a bad Path regex",
            "\"Path\": \"data/hr_people.csv\"",
            "\"Path\": \"data/hr_(people.csv\", \"IsFileNameRegex\": true",
            "\"data/hr_(people.csv\"",
            "Connections.HRPeople.Path: 'hr_(people.csv' is not a valid regular expression: unclosed group",
        ),
        (
            "a Path outside SourcesRootPaths",
            "\"Path\": \"data/hr_organizations.csv\"",
            "\"Path\": \"data/../../secret/hr_organizations.csv\"",
            "\"data/../../secret",
            "Connections.HROrganizations.Path: 'data/../../secret/hr_organizations.csv' is outside SourcesRootPaths (data)",
        ),
        (
            "a Server holding credentials",
            "\"ldap://127.0.0.1:3389\"",
            "\"ldap://admin:Canary-pw-3141@127.0.0.1:3389\"",
            "\"ldap://admin",
            "Connections.DirectoryLDAP.Servers[0].Server: write host or host:port (no user, no path)",
        ),
        (
            "a port that is not a number",
            "\"ldap://127.0.0.1:3389\"",
            "\"ldap://127.0.0.1:389x\"",
            "\"ldap://127.0.0.1:389x\"",
            "Connections.DirectoryLDAP.Servers[0].Server: '389x' is not a port",
        ),
    ];
    // The good settings: nothing to say (the encrypted connection string is not looked into).
    let dir = package_settings_case(GOOD_SETTINGS);
    let (code, diags) = check_json(dir.path());
    assert_eq!(code, Some(0), "{diags:#?}");
    assert!(diags.is_empty(), "{diags:#?}");
    for (what, from, to, at, words) in cases {
        assert!(GOOD_SETTINGS.contains(from), "{what}");
        let settings = GOOD_SETTINGS.replacen(from, to, 1);
        let (line, column) = position(&settings, at);
        let dir = package_settings_case(&settings);
        let (code, diags) = check_json(dir.path());
        assert_eq!(code, Some(1), "{what}: {diags:#?}");
        let errors: Vec<&serde_json::Value> =
            diags.iter().filter(|d| d["severity"] == "error").collect();
        assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
        let d = errors[0];
        assert_eq!(d["rule"], "setting-value", "{what}: {d:#}");
        assert_eq!(d["file"], "qs/appsettings.agent.json", "{what}: {d:#}");
        assert_eq!(
            (d["line"].as_u64(), d["column"].as_u64()),
            (Some(line), Some(column)),
            "{what}: {d:#}"
        );
        let message = d["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(words), "{what}: {message}");
        assert!(!d.to_string().contains("Canary-pw-3141"), "{what}: {d:#}");
    }
}

/// Defect 7 of issue #8: every connection's problem is reported in one run, not only the
/// first connection's, and a problem the schema check already reports is not said twice.
#[test]
fn regression_check_reports_package_problems_of_every_connection_at_once() {
    let settings = GOOD_SETTINGS
        .replacen("data/hr_people.csv", "../people.csv", 1)
        .replacen(
            "data/hr_organizations.csv\"",
            "data/(x\", \"IsFileNameRegex\": true",
            1,
        )
        .replacen("\"entries\"", "\"member\"", 1)
        .replacen("age:YWdlLWVuY3J5cHRpb24ub3JnL3YxCg==", "Host=db;Port=0", 1)
        .replacen("\"Timeout\": 30", "\"Timeout\": \"soon\"", 1);
    let dir = package_settings_case(&settings);
    let (code, diags) = check_json(dir.path());
    assert_eq!(code, Some(1));
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| {
            format!(
                "{}:{} {} {}",
                d["line"], d["column"], d["rule"], d["message"]
            )
        })
        .collect();
    let with = |s: &str| errors.iter().filter(|e| e.contains(s)).count();
    assert_eq!(with("Connections.HRPeople.Path"), 1, "{errors:#?}");
    assert_eq!(with("Connections.HROrganizations.Path"), 1, "{errors:#?}");
    assert_eq!(with("Connections.DirectoryLDAP.Tables"), 1, "{errors:#?}");
    // HRDb breaks a schema rule (Timeout): reported once, by that rule; its package is not run.
    assert_eq!(with("Connections.HRDb"), 1, "{errors:#?}");
    assert_eq!(with("Connections.HRDb.Timeout"), 1, "{errors:#?}");
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

/// The quickstart's applications database is a SQLite file: its connection string carries no
/// credential, so it is no plaintext secret; a server's connection string is one.
#[test]
fn regression_a_sqlite_connection_string_is_not_a_plaintext_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &repo_root().join("examples/quickstart"),
        &dir.path().join("qs"),
    );
    let (code, diags) = check_json(dir.path());
    assert_eq!(code, Some(0));
    assert!(
        !diags.iter().any(|d| d["rule"] == "plaintext-secret"),
        "{diags:#?}"
    );
    let settings = dir.path().join("qs/appsettings.agent.json");
    let text = std::fs::read_to_string(&settings).expect("read");
    let text = text.replacen(
        "\"ConnectionString\": \"sqlite:data/apps.db\",\n      \"SqlCommand\"",
        "\"ConnectionString\": \"postgres://apps:pw-123@127.0.0.1/apps\",\n      \"SqlCommand\"",
        1,
    );
    std::fs::write(&settings, text).expect("write");
    let (_, diags) = check_json(dir.path());
    let plain: Vec<&serde_json::Value> = diags
        .iter()
        .filter(|d| d["rule"] == "plaintext-secret")
        .collect();
    assert_eq!(plain.len(), 1, "{diags:#?}");
    assert!(
        plain[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("AppsExport.ConnectionString") && !m.contains("pw-123")),
        "{plain:#?}"
    );
}
