//! `Usercube.FulfillToFile` against real files.

use idlink_model::package::PackageCatalog;
use idlink_packages::api::{FulfillRequest, NoProgress, OrderState, OrdersFile, PackageError};
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Registry, instantiate};
use serde_json::{Value, json};

const PACKAGE: &str = "Usercube.FulfillToFile@0000001";

fn env(base: &std::path::Path, roots: &[&str]) -> Environment {
    Environment {
        connection: "HRJson".into(),
        base_dir: base.to_path_buf(),
        roots: SourceRoots::new(base, roots),
        mapped_tables: Vec::new(),
    }
}

fn try_instance(
    settings: Value,
    env: Environment,
) -> Result<Box<dyn idlink_packages::api::Instance>, PackageError> {
    let registry = Registry::new();
    instantiate(registry.get(PACKAGE).expect("known package"), settings, env)
}

/// Issue #9: the 6.2 pages document no setting for this package, so a connection without
/// `OutputPath` (an empty settings object) writes to `FulfillToFile` in the first
/// SourcesRootPaths folder; without SourcesRootPaths either, the message says what to add.
#[tokio::test]
async fn regression_fulfill_to_file_without_settings_writes_to_the_default_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    let i = try_instance(json!({}), env(dir.path(), &["data", "other"])).expect("no settings");
    let orders: OrdersFile = serde_json::from_value(json!({"ProvisioningOrdersList": [{
        "Id": "42",
        "ChangeType": "Added",
        "ResourceType": {"Identifier": "HR_Account"},
        "Changes": {"login": "jdoe"},
    }]}))
    .expect("orders");
    let results = i
        .fulfill()
        .expect("fulfill")
        .fulfill(&FulfillRequest {
            orders: &orders.orders,
            dry_run: false,
            progress: &NoProgress,
        })
        .await
        .expect("fulfill runs");
    assert_eq!(results[0].state, OrderState::Executed, "{results:?}");
    let written = dir.path().join("data/FulfillToFile/HRJson_42.json");
    let text = std::fs::read_to_string(&written).expect("order file in the default folder");
    assert!(text.contains("jdoe"), "{text}");

    let e = try_instance(json!({}), env(dir.path(), &[]))
        .err()
        .expect("no roots");
    let m = e.to_string();
    assert!(
        m.contains("SourcesRootPaths") && m.contains("OutputPath"),
        "{m}"
    );
    let e = try_instance(json!({"OutputPath": " "}), env(dir.path(), &["data"]))
        .err()
        .expect("empty path");
    assert!(e.to_string().contains("is empty"), "{e}");
}
