//! `idlink fulfill` end to end with the JSON order-file package.

use crate::support::{copy_dir, idlink, repo_root};

const ORDERS: &str = r#"{"ProvisioningOrdersList": [
  {"Id": "42", "ChangeType": "Added", "ResourceType": {"Identifier": "Directory_Person"},
   "Owner": {"EmployeeId": "E001"}, "Changes": {"uid": "E001", "mail": "ada.lovelace@example.org"}},
  {"ChangeType": "Deleted", "ResourceType": {"Identifier": "Directory_Person"},
   "Resource": {"dn": "uid=E099,ou=people,dc=example,dc=org"}}
]}"#;

/// The quickstart plus a JSON order-file connection writing under data/orders.
pub(crate) fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    copy_dir(&repo_root().join("examples/quickstart"), &conf);
    let hr = conf.join("hr.xml");
    let text = std::fs::read_to_string(&hr).expect("read").replace(
        "<!-- Schemas, as Refresh Schema writes them. -->",
        "<Connection Identifier=\"HRJson\" DisplayName_L1=\"Orders as JSON\" Connector=\"HR\" Package=\"Usercube.FulfillToFile@0000001\" />",
    );
    std::fs::write(&hr, text).expect("write");
    let settings = conf.join("appsettings.agent.json");
    let text = std::fs::read_to_string(&settings).expect("read").replace(
        "\"Connections\": {",
        "\"Connections\": {\n    \"HRJson\": { \"OutputPath\": \"data/orders\" },",
    );
    std::fs::write(&settings, text).expect("write");
    std::fs::write(dir.path().join("orders.json"), ORDERS).expect("write");
    dir
}

#[test]
fn orders_become_files_and_results() {
    let dir = setup();
    let out = idlink()
        .current_dir(dir.path())
        .args([
            "fulfill",
            "--connection",
            "HRJson",
            "--orders",
            "orders.json",
            "--results",
            "results.json",
        ])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = dir.path().join("conf/data/orders/HRJson_42.json");
    let order: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&written).expect("order file")).expect("json");
    assert_eq!(order["ProvisioningOrdersList"][0]["Changes"]["uid"], "E001");
    assert!(
        dir.path()
            .join("conf/data/orders/HRJson_000001.json")
            .exists()
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).expect("results"))
            .expect("json");
    let results = results["results"].as_array().expect("array");
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["state"] == "Executed"));
    assert_eq!(results[0]["id"], "42");
}

#[test]
fn dry_run_lists_operations_and_writes_nothing() {
    let dir = setup();
    let out = idlink()
        .current_dir(dir.path())
        .args([
            "fulfill",
            "--connection",
            "HRJson",
            "--orders",
            "orders.json",
            "--dry-run",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("order 42:") && stdout.contains("HRJson_42.json"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("conf/data/orders").exists(),
        "a dry run creates nothing"
    );
}

#[test]
fn bad_orders_files_and_packages_that_cannot_fulfill() {
    let dir = setup();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"ProvisioningOrdersList": [{"ChangeType": "Renamed"}]}"#,
    )
    .expect("write");
    let out = idlink()
        .current_dir(dir.path())
        .args(["fulfill", "--connection", "HRJson", "--orders", "bad.json"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "order #1 (ProvisioningOrdersList[0]), ChangeType: 'Renamed' is not a change type"
        ) && stderr.contains("bad.json:1:"),
        "{stderr}"
    );
    let out = idlink()
        .current_dir(dir.path())
        .args([
            "fulfill",
            "--connection",
            "HRPeople",
            "--orders",
            "orders.json",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot fulfill"));
}
