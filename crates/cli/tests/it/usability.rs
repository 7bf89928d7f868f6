//! What a new user hit on the landed `main` (issue #8's rough edges), each a regression test.

use crate::support::{copy_dir, repo_root, run};

/// A folder holding one configuration file `name` with `body` inside its root element (the
/// body starts on line 3).
fn configuration(name: &str, body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(name),
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ConfigurationFile xmlns=\"urn:schemas-usercube-com:configuration\">\n{body}</ConfigurationFile>\n"
        ),
    )
    .expect("xml");
    dir
}

fn quickstart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("examples/quickstart"), dir.path());
    dir
}

#[test]
fn regression_export_inside_the_quickstart_folder_uses_it_and_says_so() {
    let dir = quickstart();
    let (code, out) = run(dir.path(), &["export", "--connection", "HRPeople"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("./conf does not exist; using the configuration in the current folder"),
        "{out}"
    );
    assert!(dir.path().join("work/ExportOutput/HRPeople.csv").is_file());
}

#[test]
fn regression_no_configuration_anywhere_says_which_flag_to_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = run(dir.path(), &["export", "--connection", "HRPeople"], &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--config"), "{out}");
}

#[test]
fn regression_idlink_config_and_idlink_work_come_from_the_environment() {
    let dir = quickstart();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let config = dir.path().display().to_string();
    let work = elsewhere.path().join("w").display().to_string();
    let (code, out) = run(
        elsewhere.path(),
        &["export", "--connection", "HRPeople"],
        &[("IDLINK_CONFIG", &config), ("IDLINK_WORK", &work)],
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("does not exist"), "{out}");
    assert!(
        elsewhere
            .path()
            .join("w/ExportOutput/HRPeople.csv")
            .is_file()
    );
}

#[test]
fn regression_quiet_keeps_the_one_line_summary() {
    let dir = quickstart();
    let (code, out) = run(
        dir.path(),
        &["export", "-q", "--config", ".", "--connection", "HRPeople"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("exported HRPeople ("), "{out}");
}

#[test]
fn regression_keygen_and_packages_help_do_not_offer_config_or_work() {
    for cmd in ["keygen", "packages"] {
        let (code, out) = run(&repo_root(), &[cmd, "--help"], &[]);
        assert_eq!(code, 0, "{out}");
        assert!(
            !out.contains("--config") && !out.contains("--work"),
            "{cmd}: {out}"
        );
    }
    let (_, out) = run(&repo_root(), &["export", "--help"], &[]);
    assert!(
        out.contains("--config") && out.contains("IDLINK_CONFIG"),
        "{out}"
    );
}

#[test]
fn regression_a_failed_export_leaves_a_trace_in_reports() {
    let dir = quickstart();
    std::fs::write(
        dir.path().join("data/hr_people.csv"),
        "EmployeeId,FirstName\n1,\"Bob\n2,x\n",
    )
    .ok();
    let (code, out) = run(
        dir.path(),
        &["export", "--config", ".", "--connection", "HRPeople"],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    let attempt = std::fs::read_to_string(
        dir.path()
            .join("work/Reports/export-HRPeople.last-attempt.json"),
    )
    .expect("the failed attempt is recorded");
    let attempt: serde_json::Value = serde_json::from_str(&attempt).expect("json");
    assert_eq!(attempt["outcome"], "failed", "{attempt}");
    assert!(attempt["error"]["kind"].is_string(), "{attempt}");
    assert!(
        !dir.path()
            .join("work/Reports/export-HRPeople.json")
            .exists(),
        "no success to report"
    );
}

const ORDERS: &str = r#"{"ProvisioningOrdersList": [
  {"Id": "ok", "ChangeType": "Added", "ResourceType": {"Identifier": "Directory_Person"},
   "Changes": {"uid": "E001"}},
  {"Id": "bad", "ChangeType": "Added", "ResourceType": {"Identifier": "NoSuchType"},
   "Changes": {"uid": "E002"}}
]}"#;

#[test]
fn regression_fulfill_refuses_orders_for_undeclared_resource_types() {
    let dir = crate::fulfill::setup();
    std::fs::write(dir.path().join("o.json"), ORDERS).expect("write");
    // Dry run: the reason is shown.
    let (code, out) = run(
        dir.path(),
        &[
            "fulfill",
            "--connection",
            "HRJson",
            "--orders",
            "o.json",
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("order bad: would fail: resource type 'NoSuchType' is not declared"),
        "{out}"
    );
    assert!(
        out.contains("1 would fail (dry run: nothing sent)"),
        "{out}"
    );
    // For real: the good order is written, the bad one is Errored and nothing is written for it.
    let (code, out) = run(
        dir.path(),
        &["fulfill", "--connection", "HRJson", "--orders", "o.json"],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    let orders = dir.path().join("conf/data/orders");
    assert!(orders.join("HRJson_ok.json").is_file());
    assert!(!orders.join("HRJson_bad.json").exists());
    assert!(out.contains("\"Errored\""), "{out}");
}

#[test]
fn regression_options_before_the_command_are_still_accepted() {
    let dir = quickstart();
    let (code, out) = run(
        dir.path(),
        &[
            "-q",
            "--config",
            ".",
            "--work",
            "w2",
            "export",
            "--connection",
            "HRPeople",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(dir.path().join("w2/ExportOutput/HRPeople.csv").is_file());
    // After the command wins over before it, and over the environment.
    let (code, out) = run(
        dir.path(),
        &[
            "--work",
            "w3",
            "export",
            "--work",
            "w4",
            "--config",
            ".",
            "--connection",
            "HRPeople",
        ],
        &[("IDLINK_WORK", "w5")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(dir.path().join("w4/ExportOutput/HRPeople.csv").is_file());
    assert!(!dir.path().join("w3").exists() && !dir.path().join("w5").exists());
}

#[test]
fn regression_redaction_hides_the_password_but_keeps_host_database_and_user() {
    let dir = configuration(
        "db.xml",
        r#"  <Connector Identifier="HR" DisplayName_L1="HR" />
  <Connection Identifier="HRDb" DisplayName_L1="HR database" Connector="HR" Package="Usercube.SQL.PostgreSQL@0000001" />
"#,
    );
    // Nothing listens on port 1: the export fails at once and its message must help.
    std::fs::write(
        dir.path().join("appsettings.agent.json"),
        r#"{"Connections": {"HRDb": {
  "ConnectionString": "Host=127.0.0.1;Port=1;Database=payroll_db;Username=hr_reader;Password=Zq9-unique-secret",
  "SqlCommand": "SELECT 1", "Timeout": 5}}}"#,
    )
    .expect("json");
    let (code, out) = run(
        dir.path(),
        &["export", "--config", ".", "--connection", "HRDb"],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("Zq9-unique-secret"), "{out}");
    assert!(
        out.contains("127.0.0.1") && out.contains("payroll_db"),
        "the server and database stay readable: {out}"
    );
    let attempt = std::fs::read_to_string(
        dir.path()
            .join("work/Reports/export-HRDb.last-attempt.json"),
    )
    .expect("attempt");
    assert!(!attempt.contains("Zq9-unique-secret"), "{attempt}");
}

#[test]
fn regression_documented_settings_without_effect_are_listed_with_verbose_only() {
    let root = repo_root();
    let (code, quiet) = run(
        &root,
        &["check", "--config", "examples/documented-settings"],
        &[],
    );
    assert_eq!(code, 0, "{quiet}");
    assert!(!quiet.contains("accepted-without-effect"), "{quiet}");
    assert!(!quiet.contains("unknown-setting"), "{quiet}");
    let (code, verbose) = run(
        &root,
        &["check", "-v", "--config", "examples/documented-settings"],
        &[],
    );
    assert_eq!(code, 0, "{verbose}");
    assert!(
        verbose.contains(
            "info[accepted-without-effect]: setting NoSigning of Usercube.LDAP@0000001 is accepted without effect"
        ),
        "{verbose}"
    );
    assert!(
        verbose.contains("top-level section 'OpenId' is accepted without effect"),
        "{verbose}"
    );
}

#[test]
fn regression_fulfill_to_file_connection_needs_no_settings_entry() {
    let dir = configuration(
        "c.xml",
        r#"  <Connector Identifier="Cloud" DisplayName_L1="Cloud" />
  <Connection Identifier="CloudOrders" DisplayName_L1="Orders" Connector="Cloud" Package="Usercube.FulfillToFile@0000001" />
  <EntityType Identifier="Person" DisplayName_L1="Person"><Property Identifier="id" DisplayName_L1="Id" IsKey="true" /></EntityType>
  <EntityType Identifier="Account" DisplayName_L1="Account"><Property Identifier="id" DisplayName_L1="Id" IsKey="true" /></EntityType>
  <ResourceType Identifier="CloudAccount" DisplayName_L1="Account" SourceEntityType="Person" TargetEntityType="Account" />
"#,
    );
    std::fs::create_dir(dir.path().join("out")).expect("mkdir");
    std::fs::write(
        dir.path().join("appsettings.agent.json"),
        r#"{"SourcesRootPaths": ["out"]}"#,
    )
    .expect("json");
    let (code, out) = run(dir.path(), &["check", "--config", "."], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("missing-settings"), "{out}");
    std::fs::write(
        dir.path().join("o.json"),
        r#"{"ProvisioningOrdersList": [{"Id": "1", "ChangeType": "Added", "ResourceType": {"Identifier": "CloudAccount"}, "Changes": {"id": "a"}}]}"#,
    )
    .expect("orders");
    let (code, out) = run(
        dir.path(),
        &[
            "fulfill",
            "--config",
            ".",
            "--connection",
            "CloudOrders",
            "--orders",
            "o.json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let written: Vec<_> = std::fs::read_dir(dir.path().join("out/FulfillToFile"))
        .expect("the default folder")
        .collect();
    assert_eq!(written.len(), 1, "{out}");
}

#[test]
fn regression_check_tries_the_defaults_of_a_connection_without_settings() {
    let dir = configuration(
        "c.xml",
        r#"  <Connector Identifier="Cloud" DisplayName_L1="Cloud" />
  <Connection Identifier="CloudOrders" DisplayName_L1="Orders" Connector="Cloud" Package="Usercube.FulfillToFile@0000001" />
"#,
    );
    // No SourcesRootPaths: the default output folder has nowhere to go.
    std::fs::write(dir.path().join("appsettings.agent.json"), "{}").expect("json");
    let (code, out) = run(dir.path(), &["check", "--config", "."], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("c.xml:4:") && out.contains("connection 'CloudOrders' has no settings"),
        "{out}"
    );
}

#[test]
fn regression_documented_resource_type_mappings_check_clean() {
    let (code, out) = run(
        &repo_root(),
        &[
            "check",
            "-v",
            "--config",
            "examples/documented-provisioning",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(1 file, 0 errors, 0 warnings)") && !out.contains("unknown"),
        "{out}"
    );
}
