//! `examples/documented-settings`: package settings written the way the Netwrix Identity
//! Manager 6.2 connector pages write them (issue #9) pass the loader's checks and every
//! package's own parser.

use std::path::PathBuf;

use idlink_model::package::{Availability, PackageCatalog};
use idlink_model::settings::{once_per_kind, settings_without_effect, typed_json};
use idlink_model::{Rule, SettingsSource, load_and_check};
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Registry, instantiate};

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/documented-settings")
}

/// Issue #9: no error, no unknown-setting warning, each package's parser accepts its
/// connection's settings, and the documented items without effect are listed once each.
#[test]
fn regression_documented_package_settings_pass_check_without_unknown_settings() {
    let dir = folder();
    let settings = dir.join("appsettings.agent.json");
    let registry = Registry::new();
    let checked = load_and_check(
        &dir,
        SettingsSource {
            path: &settings,
            explicit: true,
        },
        std::iter::empty::<(String, String)>(),
        &registry,
    )
    .expect("loads");
    let bad: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error() || matches!(d.rule, Rule::UnknownSetting | Rule::UnknownAttribute))
        .map(|d| d.to_string())
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(checked.config.connections.len(), 6);

    let mut without_effect = checked.settings.without_effect.clone();
    for connection in &checked.config.connections {
        let package = registry
            .get(&connection.package.value)
            .expect("known package");
        assert_eq!(package.availability, Availability::Supported);
        let settings = checked
            .settings
            .connection(&connection.id.value)
            .expect("settings given");
        without_effect.extend(settings_without_effect(
            settings,
            package.id,
            package.settings,
        ));
        let env = Environment {
            connection: connection.id.value.clone(),
            base_dir: dir.clone(),
            roots: SourceRoots::new(&dir, &["data"]),
            mapped_tables: Vec::new(),
        };
        if let Err(e) = instantiate(package, typed_json(settings, package.settings), env) {
            panic!("{}: {e}", connection.id.value);
        }
    }
    let kinds: Vec<String> = once_per_kind(without_effect)
        .into_iter()
        .map(|n| n.kind)
        .collect();
    for expected in [
        "top-level section 'OpenId'",
        "top-level section 'Databases'",
        "top-level section 'TaskAgentConfiguration'",
        "setting NoSigning of Usercube.LDAP@0000001",
        "setting ProviderClassFullName of Idlink.SQL.SQLite@0000001",
        "setting ProviderDllName of Idlink.SQL.SQLite@0000001",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} not in {kinds:#?}"
        );
    }
    assert_eq!(
        kinds.len(),
        6,
        "each kind once, however many connections: {kinds:#?}"
    );
}
