//! The real script export (`Usercube.PowershellSync`) through the engine: its tables commit as
//! one set, and a run whose script writes a bad file commits nothing.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use idlink_engine::{CancellationToken, Engine, ExportOptions};
use idlink_model::SettingsSource;
use idlink_packages::Registry;
use idlink_packages::api::NoProgress;

const CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="S" DisplayName_L1="Scripted" />
  <Connection Identifier="Script" DisplayName_L1="Script" Connector="S" Package="Usercube.PowershellSync@0000001" />
</ConfigurationFile>
"#;

/// Run 1 writes two good tables; later runs write new users, and a groups file that is not
/// UTF-8 while `bad` exists beside the script.
const SCRIPT: &str = r#"#!/bin/bash
set -eu
dir=$(dirname "$0")
echo "$2" >> "$dir/flags.txt"
n=$(wc -l < "$dir/flags.txt")
printf 'id,run\n1,%s\n' "$n" > "${1}users.csv"
if [ -e "$dir/bad" ]; then
  printf 'group\nadmins\ncaf\xe9\n' > "${1}groups.csv"
else
  printf 'group\nadmins\n' > "${1}groups.csv"
fi
"#;

fn engine(conf: &std::path::Path, work: &std::path::Path) -> Engine {
    let registry = Registry::new();
    let checked = idlink_model::load_and_check(
        conf,
        SettingsSource {
            path: &conf.join("appsettings.agent.json"),
            explicit: true,
        },
        std::iter::empty::<(String, String)>(),
        &registry,
    )
    .expect("load");
    let errors: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    Engine::new(checked, registry, conf, work)
}

#[tokio::test]
async fn a_script_export_with_a_bad_file_commits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conf, work) = (dir.path().join("conf"), dir.path().join("work"));
    std::fs::create_dir_all(&conf).expect("conf");
    std::fs::write(conf.join("s.xml"), CONFIG).expect("xml");
    std::fs::write(
        conf.join("appsettings.agent.json"),
        r#"{"Connections": {"Script": {"PowerShellScriptPath": "export.sh", "TimeOut": 60}}}"#,
    )
    .expect("json");
    let script = conf.join("export.sh");
    std::fs::write(&script, SCRIPT).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let export = || async {
        engine(&conf, &work)
            .open("Script")
            .expect("open")
            .export(
                &ExportOptions::default(),
                Arc::new(NoProgress),
                &CancellationToken::new(),
            )
            .await
    };
    let out = work.join("ExportOutput");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).expect(name);

    let report = export().await.expect("first export");
    let names: Vec<&str> = report.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Script_groups", "Script_users"]);
    assert_eq!(read("Script_users.csv"), "id,run\n1,1\n");
    let cookie = read("../ExportCookies/Script.cookie");

    std::fs::write(conf.join("bad"), "").expect("marker");
    let e = export().await.expect_err("a file that is not UTF-8");
    assert!(
        e.to_string().contains("Script_groups.csv:3") && e.to_string().contains("not valid UTF-8"),
        "{e}"
    );
    assert!(e.nothing_committed(), "{e}");
    assert_eq!(
        read("Script_users.csv"),
        "id,run\n1,1\n",
        "users of run 1 stay"
    );
    assert_eq!(read("Script_groups.csv"), "group\nadmins\n");
    assert_eq!(read("../ExportCookies/Script.cookie"), cookie);

    std::fs::remove_file(conf.join("bad")).expect("marker");
    export().await.expect("third export");
    assert_eq!(read("Script_users.csv"), "id,run\n1,3\n");
    // Complete first (no cookie), incremental once a cookie was committed.
    let flags = std::fs::read_to_string(conf.join("flags.txt")).expect("flags");
    assert_eq!(flags, "false\ntrue\ntrue\n");
}
