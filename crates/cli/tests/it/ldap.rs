//! The quickstart's Directory connection against a real slapd: check-connection, export
//! (entries and the member link table) and fulfill (dry run, then for real), with its
//! credentials encrypted to the agent's key.

use std::path::Path;

use idlink_test_support::slapd::SUFFIX;
use idlink_test_support::{SlapdOptions, SlapdServer};

const PEOPLE: &str = "dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: uid=E002,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: E002
cn: Alan Turing
sn: Turing
givenName: Alan
mail: alan.turing@example.org

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: cn=staff,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: staff
member: uid=E002,ou=people,dc=example,dc=org
";

const ORDERS: &str = r#"{"ProvisioningOrdersList": [
  {"Id": "add-E001", "ChangeType": "Added", "ResourceType": {"Identifier": "Directory_Person"},
   "Owner": {"EmployeeId": "E001"},
   "Changes": {"dn": "uid=E001,ou=people,dc=example,dc=org", "uid": "E001", "cn": "Ada Lovelace",
               "sn": "Lovelace", "givenName": "Ada", "mail": "ada.lovelace@example.org"}}
]}"#;

/// Every output of this test, searched for the directory password at the end.
static OUTPUTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn run(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let result = crate::support::run(dir, args, &env);
    OUTPUTS.lock().expect("lock").push(result.1.clone());
    result
}

#[test]
fn quickstart_directory_exports_and_fulfills_against_slapd() {
    let slapd = SlapdServer::start(&SlapdOptions {
        ldif: PEOPLE.into(),
        tls: false,
        ..SlapdOptions::default()
    });
    let (dir, env) = crate::support::quickstart_with_directory(&slapd);
    let (code, out) = run(
        dir.path(),
        &["check-connection", "--connection", "DirectoryLDAP"],
        &env,
    );
    assert_eq!(code, 0, "{out}");

    let (code, out) = run(
        dir.path(),
        &["export", "--connection", "DirectoryLDAP"],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let entries = std::fs::read_to_string(
        dir.path()
            .join("work/ExportOutput/DirectoryLDAP_entries.csv"),
    )
    .expect("entries");
    assert!(entries.starts_with("dn,"), "{entries}");
    assert!(
        entries.contains("uid=E002,ou=people,dc=example,dc=org") && entries.contains("Alan Turing"),
        "{entries}"
    );
    let members = std::fs::read_to_string(
        dir.path()
            .join("work/ExportOutput/DirectoryLDAP_member.csv"),
    )
    .expect("members");
    assert!(
        members
            .contains("cn=staff,ou=groups,dc=example,dc=org,uid=E002,ou=people,dc=example,dc=org")
            || members.contains(
                "\"cn=staff,ou=groups,dc=example,dc=org\",\"uid=E002,ou=people,dc=example,dc=org\""
            ),
        "{members}"
    );

    std::fs::write(dir.path().join("orders.json"), ORDERS).expect("write");
    let (code, out) = run(
        dir.path(),
        &[
            "fulfill",
            "--connection",
            "DirectoryLDAP",
            "--orders",
            "orders.json",
            "--dry-run",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("uid=E001,ou=people,dc=example,dc=org") && out.contains("inetOrgPerson"),
        "{out}"
    );
    let (_, found) = run(
        dir.path(),
        &["export", "--connection", "DirectoryLDAP"],
        &env,
    );
    assert!(
        !std::fs::read_to_string(
            dir.path()
                .join("work/ExportOutput/DirectoryLDAP_entries.csv")
        )
        .expect("entries")
        .contains("uid=E001"),
        "{found}"
    );

    let (code, out) = run(
        dir.path(),
        &[
            "fulfill",
            "--connection",
            "DirectoryLDAP",
            "--orders",
            "orders.json",
            "--results",
            "results.json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).expect("results"))
            .expect("json");
    assert_eq!(results["results"][0]["state"], "Executed", "{results}");
    // Idempotent: the same order again is Executed without a duplicate.
    let (code, out) = run(
        dir.path(),
        &[
            "fulfill",
            "--connection",
            "DirectoryLDAP",
            "--orders",
            "orders.json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(
        dir.path(),
        &["export", "--connection", "DirectoryLDAP"],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let entries = std::fs::read_to_string(
        dir.path()
            .join("work/ExportOutput/DirectoryLDAP_entries.csv"),
    )
    .expect("entries");
    assert!(
        entries.contains("uid=E001,ou=people,dc=example,dc=org")
            && entries.contains("Ada Lovelace"),
        "{entries}"
    );
    assert!(
        slapd
            .ldapsearch(SUFFIX, "(uid=E001)", &["cn"])
            .is_ok_and(|o| o.contains("Ada Lovelace"))
    );
    // A failing order (no surname: an objectClass violation) is Errored with the server's
    // message; the batch goes on and exits 1.
    let bad = ORDERS
        .replace("\"sn\": \"Lovelace\", ", "")
        .replace("E001", "E003");
    std::fs::write(dir.path().join("bad.json"), bad).expect("write");
    let (code, failed) = run(
        dir.path(),
        &[
            "fulfill",
            "--connection",
            "DirectoryLDAP",
            "--orders",
            "bad.json",
        ],
        &env,
    );
    assert_eq!(code, 1, "{failed}");
    assert!(failed.contains("Errored"), "{failed}");
    // The directory password never shows: not in any output nor any file written.
    for text in OUTPUTS.lock().expect("lock").iter() {
        assert!(
            !text.contains(slapd.admin_password()),
            "the password leaked:\n{text}"
        );
    }
    let mut stack = vec![dir.path().join("work")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("dir").filter_map(Result::ok) {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                let bytes = std::fs::read(entry.path()).expect("read");
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(slapd.admin_password()),
                    "{}",
                    entry.path().display()
                );
            }
        }
    }
    let results = std::fs::read_to_string(dir.path().join("results.json")).expect("read");
    assert!(!results.contains(slapd.admin_password()) && !out.contains(slapd.admin_password()));
}
