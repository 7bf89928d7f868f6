//! The provisioning loop end to end, through the `idlink` binary (issue #12): the quickstart's
//! Directory job runs HR CSV → store → orders → LDAP fulfill into slapd → LDAP export → sync,
//! and every order is Verified; one HR value changed gives exactly one Modified order carrying
//! only that attribute; a person removed gives one Deleted; a rerun with no change gives no
//! order and writes nothing to the directory; a move to another organization changes the group
//! memberships the NavigationRule computes (added, then removed).

use std::path::Path;

use idlink_test_support::slapd::SUFFIX;
use idlink_test_support::{SlapdOptions, SlapdServer};

use crate::support::{quickstart_with_directory, run};

const DIRECTORY: &str = "dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: uid=E002,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: E002
cn: Alan Turing
sn: Turing
givenName: Alan
mail: old.alan@example.org

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: cn=eng,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: eng
member: cn=nobody,dc=example,dc=org

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: ops
member: cn=nobody,dc=example,dc=org

dn: cn=mkt,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: mkt
member: cn=nobody,dc=example,dc=org
";

fn job(dir: &Path, env: &[(&str, String)]) -> (i32, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(dir, &["run-job", "Directory"], &env)
}

fn orders(dir: &Path) -> Vec<serde_json::Value> {
    let (code, out) = run(dir, &["orders", "--format", "json"], &[]);
    assert_eq!(code, 0, "{out}");
    let json = &out[..out.rfind(']').expect("json array") + 1];
    serde_json::from_str::<Vec<serde_json::Value>>(json).expect("orders json")
}

/// The directory's change sequence number: it moves with every write.
fn csn(slapd: &SlapdServer) -> String {
    slapd
        .ldapsearch(SUFFIX, "(dc=example)", &["contextCSN"])
        .map(|o| o.replace(['\n', ' '], ""))
        .expect("contextCSN")
}

fn members(slapd: &SlapdServer, group: &str) -> String {
    slapd
        .ldapsearch(
            &format!("cn={group},ou=groups,dc=example,dc=org"),
            "(objectClass=*)",
            &["member"],
        )
        .expect("group")
}

fn edit_people(dir: &Path, f: impl Fn(&str) -> String) {
    let path = dir.join("conf/data/hr_people.csv");
    let text = std::fs::read_to_string(&path).expect("people");
    std::fs::write(&path, f(&text)).expect("write people");
}

#[test]
fn directory_job_provisions_verifies_and_follows_hr_changes() {
    let slapd = SlapdServer::start(&SlapdOptions {
        ldif: DIRECTORY.into(),
        tls: false,
        ..SlapdOptions::default()
    });
    let (dir, env) = quickstart_with_directory(&slapd);
    let dir = dir.path();
    // First run: 8 people; E002 exists (adopted by uid, its mail corrected), 7 are created.
    let (code, out) = job(dir, &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("job 'Directory' succeeded"), "{out}");
    let all = orders(dir);
    assert_eq!(all.len(), 8, "{all:#?}");
    let added = all.iter().filter(|o| o["changeType"] == "Added").count();
    assert_eq!(added, 7, "{all:#?}");
    let e002 = all.iter().find(|o| o["owner"] == "E002").expect("E002");
    assert_eq!(e002["changeType"], "Modified");
    let changed: Vec<&String> = e002["order"]["Changes"]
        .as_object()
        .expect("changes")
        .keys()
        .collect();
    assert_eq!(changed, ["mail", "memberOf_add"], "{e002:#}");
    assert!(
        all.iter().all(|o| o["state"] == "Verified"),
        "every order is verified by the job's last synchronization: {all:#?}"
    );
    let cn = slapd
        .ldapsearch(SUFFIX, "(uid=E004)", &["cn", "mail"])
        .expect("E004");
    assert!(cn.contains("cn:: ") || cn.contains("cn: "), "{cn}");
    assert!(members(&slapd, "eng").contains("uid=E001,ou=people,dc=example,dc=org"));
    assert!(members(&slapd, "eng").contains("uid=E002,ou=people,dc=example,dc=org"));

    // A rerun with no change: no order, and nothing written to the directory.
    let before = csn(&slapd);
    let (code, out) = job(dir, &env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(orders(dir).len(), 8, "no new order");
    assert_eq!(csn(&slapd), before, "the directory was written to: {out}");

    // One HR value changed: exactly one Modified order, carrying only that attribute.
    edit_people(dir, |t| {
        t.replace("grace.hopper@example.org", "grace.b.hopper@example.org")
    });
    let (code, out) = job(dir, &env);
    assert_eq!(code, 0, "{out}");
    let all = orders(dir);
    assert_eq!(all.len(), 9, "{all:#?}");
    let last = &all[8];
    assert_eq!(last["changeType"], "Modified");
    assert_eq!(last["owner"], "E003");
    assert_eq!(
        last["order"]["Changes"],
        serde_json::json!({"mail": "grace.b.hopper@example.org"})
    );
    assert_eq!(last["state"], "Verified", "{last:#}");

    // A move to another organization: the old group loses the person, the new one gains them.
    edit_people(dir, |t| {
        t.replace(
            "E001,Ada,Lovelace,ada.lovelace@example.org,ENG",
            "E001,Ada,Lovelace,ada.lovelace@example.org,OPS",
        )
    });
    let (code, out) = job(dir, &env);
    assert_eq!(code, 0, "{out}");
    let all = orders(dir);
    assert_eq!(all.len(), 10, "{all:#?}");
    assert_eq!(
        all[9]["order"]["Changes"],
        serde_json::json!({
            "memberOf_add": [{"dn": "cn=ops,ou=groups,dc=example,dc=org"}],
            "memberOf_remove": [{"dn": "cn=eng,ou=groups,dc=example,dc=org"}]
        })
    );
    assert_eq!(all[9]["state"], "Verified", "{:#}", all[9]);
    assert!(!members(&slapd, "eng").contains("uid=E001,"));
    assert!(members(&slapd, "ops").contains("uid=E001,ou=people,dc=example,dc=org"));

    // A person removed: one Deleted order, and the entry is gone.
    edit_people(dir, |t| {
        t.lines()
            .filter(|l| !l.starts_with("E008"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let (code, out) = job(dir, &env);
    assert_eq!(code, 0, "{out}");
    let all = orders(dir);
    assert_eq!(all.len(), 11, "{all:#?}");
    assert_eq!(all[10]["changeType"], "Deleted");
    assert_eq!(all[10]["owner"], "E008");
    assert_eq!(all[10]["state"], "Verified", "{:#}", all[10]);
    assert!(
        slapd
            .ldapsearch(SUFFIX, "(uid=E008)", &["dn"])
            .expect("search")
            .trim()
            .is_empty()
    );
    // The job history keeps every run.
    let (code, out) = run(dir, &["orders", "--state", "Pending"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 orders"), "{out}");
}

/// The README's first command: the quickstart's main job with files and SQLite alone.
#[test]
fn quickstart_job_runs_with_files_and_sqlite_alone() {
    // The README's first command is this run.
    let readme =
        std::fs::read_to_string(crate::support::repo_root().join("README.md")).expect("README");
    let first = readme
        .lines()
        .find(|l| l.starts_with("cargo run"))
        .expect("a cargo run line");
    assert!(
        first.contains("-- run-job Quickstart --config examples/quickstart"),
        "{first}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    crate::support::copy_dir(
        &crate::support::repo_root().join("examples/quickstart"),
        &dir.path().join("conf"),
    );
    let dir = dir.path();
    let quickstart = |dir: &Path| run(dir, &["run-job", "Quickstart", "--config", "conf"], &[]);
    let (code, out) = quickstart(dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("job 'Quickstart' succeeded"), "{out}");
    assert!(out.contains("8 orders verified"), "{out}");
    let all = orders(dir);
    assert_eq!(all.len(), 8, "{all:#?}");
    assert!(all.iter().all(|o| o["state"] == "Verified"), "{all:#?}");
    let epiaf = all
        .iter()
        .find(|o| o["owner"] == "E004")
        .expect("E004's order");
    assert_eq!(
        epiaf["order"]["Changes"]["login"], "epiaf",
        "unaccented login"
    );
    assert_eq!(epiaf["order"]["Changes"]["department"], "Marketing");

    // Again, nothing changed: no order.
    let (code, out) = quickstart(dir);
    assert_eq!(code, 0, "{out}");
    assert_eq!(orders(dir).len(), 8);

    // A change in HR: one Modified order with that attribute only, written and verified.
    let people = dir.join("conf/data/hr_people.csv");
    let text = std::fs::read_to_string(&people).expect("people");
    std::fs::write(
        &people,
        text.replace(
            "E003,Grace,Hopper,grace.hopper@example.org,OPS",
            "E003,Grace,Hopper,grace.hopper@example.org,ENG",
        ),
    )
    .expect("write");
    let (code, out) = quickstart(dir);
    assert_eq!(code, 0, "{out}");
    let all = orders(dir);
    assert_eq!(all.len(), 9, "{all:#?}");
    assert_eq!(all[8]["changeType"], "Modified");
    assert_eq!(
        all[8]["order"]["Changes"],
        serde_json::json!({"department": "Engineering"})
    );
    assert_eq!(all[8]["state"], "Verified", "{:#}", all[8]);
    // The run history keeps each run's report.
    let (code, out) = run(
        dir,
        &["run-job", "Quickstart", "--config", "conf", "--dry-run"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Planned") && out.contains("(dry run)"),
        "{out}"
    );
    assert_eq!(orders(dir).len(), 9, "a dry run stores nothing");
}

/// `-q` promises errors and the one-line summary only; `run-job -q` printed the whole report.
#[test]
fn regression_run_job_quiet_prints_only_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::support::copy_dir(
        &crate::support::repo_root().join("examples/quickstart"),
        &dir.path().join("conf"),
    );
    let (code, out) = run(dir.path(), &["run-job", "Quickstart", "-q"], &[]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("job 'Quickstart' succeeded"), "{out}");
}
