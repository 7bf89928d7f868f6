//! LDAP package tests against a real slapd (started once for this test binary, with the
//! fixtures of `tests/fixtures/ldap/` and 2,500 generated entries); tests that write use their
//! own subtree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use idlink_model::config::{KeyType, ValueType};
use idlink_model::package::PackageCatalog;
use idlink_packages::api::{
    ExportOutcome, ExportRequest, FulfillRequest, Instance, MappedTable, NoProgress, OrderResult,
    OrderState, OrdersFile, PackageError,
};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Registry, instantiate};
use idlink_test_support::slapd::{ADMIN_DN, SUFFIX};
use idlink_test_support::{SlapdOptions, SlapdServer, closed_port};
use serde_json::{Value, json};

const CONNECTION: &str = "Directory";
const LDAP: &str = "Usercube.LDAP@0000001";
const OPENLDAP: &str = "Usercube.OpenLDAP@0000001";
/// The password of `uid=reader,ou=system` (in the fixtures), subject to a size limit of 100.
const READER_PASSWORD: &str = "reader-secret-42";
const READER: &str = "uid=reader,ou=system,dc=example,dc=org";
const PAGING_ENTRIES: usize = 2500;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ldap")
}

pub(crate) static SLAPD: LazyLock<SlapdServer> = LazyLock::new(|| {
    let mut ldif =
        std::fs::read_to_string(fixtures().join("fixtures.ldif")).expect("read fixtures");
    ldif.push_str(
        "\ndn: ou=paging,dc=example,dc=org\nobjectClass: organizationalUnit\nou: paging\n\n",
    );
    for i in 0..PAGING_ENTRIES {
        ldif.push_str(&format!(
            "dn: uid=p{i:05},ou=paging,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: p{i:05}\ncn: Person {i}\nsn: P{i}\n\n"
        ));
    }
    SlapdServer::start(&SlapdOptions {
        ldif,
        syncprov: true,
        session_log: true,
        tls: true,
        size_limit: Some(100),
        quick_load: false,
    })
});

pub(crate) fn server() -> String {
    format!("127.0.0.1:{}", SLAPD.port())
}

pub(crate) fn admin(server: String) -> Value {
    json!({
        "Server": server,
        "AuthType": "Basic",
        "Login": ADMIN_DN,
        "Password": SLAPD.admin_password(),
        "Controls": ["PagedResult"],
    })
}

fn settings(base: &str, filter: &str) -> Value {
    json!({
        "Servers": [admin(server())],
        "Tables": [{"Table": "entries", "BaseDN": base, "Filter": filter, "Scope": "Subtree"}],
    })
}

fn env(mapped: Vec<MappedTable>) -> Environment {
    let dir = fixtures();
    Environment {
        connection: CONNECTION.to_string(),
        base_dir: dir.clone(),
        roots: SourceRoots::new(&dir, &["."]),
        mapped_tables: mapped,
    }
}

fn mapped(suffix: &str, columns: &[&str]) -> MappedTable {
    MappedTable {
        name: format!("{CONNECTION}_{suffix}"),
        suffix: Some(suffix.to_string()),
        columns: columns.iter().map(|c| c.to_string()).collect(),
    }
}

fn instance(package: &str, settings: Value, mapped: Vec<MappedTable>) -> Box<dyn Instance> {
    try_instance(package, settings, mapped).expect("valid settings")
}

fn try_instance(
    package: &str,
    settings: Value,
    mapped: Vec<MappedTable>,
) -> Result<Box<dyn Instance>, PackageError> {
    let registry = Registry::new();
    let info = registry.get(package).expect("known package");
    instantiate(info, settings, env(mapped))
}

/// Table name -> CSV text.
type Tables = BTreeMap<String, String>;

async fn export(
    instance: &dyn Instance,
    cookie: Option<&str>,
) -> Result<(ExportOutcome, Tables), PackageError> {
    let staging = tempfile::tempdir().expect("tempdir");
    let mut out = ExportOutput::new(CONNECTION, staging.path());
    let request = ExportRequest {
        incremental: cookie.is_some(),
        cookie,
        progress: &NoProgress,
    };
    let outcome = instance
        .export()
        .expect("export")
        .export(&request, &mut out)
        .await?;
    let mut tables = Tables::new();
    for t in out.finish()? {
        tables.insert(
            t.name,
            std::fs::read_to_string(&t.path).expect("read table"),
        );
    }
    Ok((outcome, tables))
}

fn rows(csv_text: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv_text.as_bytes());
    r.records()
        .map(|x| x.expect("csv").iter().map(str::to_string).collect())
        .collect()
}

/// The row whose first cell is `dn`, as column -> value.
fn row(csv_text: &str, dn: &str) -> BTreeMap<String, String> {
    let all = rows(csv_text);
    let header = all[0].clone();
    let found = all[1..]
        .iter()
        .find(|r| r[0] == dn)
        .unwrap_or_else(|| panic!("no row {dn} in\n{csv_text}"));
    header.into_iter().zip(found.iter().cloned()).collect()
}

#[tokio::test]
async fn export_writes_entries_links_binary_and_non_ascii_dns() {
    let i = instance(
        LDAP,
        settings(
            SUFFIX,
            "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
        ),
        vec![],
    );
    let (outcome, tables) = export(i.as_ref(), None).await.expect("export");
    assert_eq!(outcome.cookie, None);
    let entries = &tables["Directory_entries"];
    let jdoe = row(entries, "uid=jdoe,ou=people,dc=example,dc=org");
    assert_eq!(jdoe["mail"], "jdoe@example.org\nJohn.Doe@example.org");
    assert_eq!(jdoe["jpegPhoto"], "/9j/4AAQSkZJRgABAQAAAQABAAD/2Q==");
    assert_eq!(jdoe["objectClass"], "inetOrgPerson");
    assert!(!jdoe.contains_key("manager"), "manager is a link table");
    let zoe = row(entries, "cn=Zoë Ærø,ou=people,dc=example,dc=org");
    assert_eq!(zoe["sn"], "Ærø");
    // OpenLDAP writes the escaped comma in hex.
    let smith = row(entries, r"cn=Smith\2C John,ou=people,dc=example,dc=org");
    assert_eq!(smith["cn"], "Smith, John");
    // Links: one row per value, DNs as the server writes them.
    let member = rows(&tables["Directory_member"]);
    assert_eq!(member[0], ["dn", "member"]);
    assert!(member.contains(&vec![
        "cn=staff,ou=groups,dc=example,dc=org".to_string(),
        "cn=Zoë Ærø,ou=people,dc=example,dc=org".to_string()
    ]));
    assert!(member.contains(&vec![
        "cn=admins,ou=groups,dc=example,dc=org".to_string(),
        // Values stay as written (only the entry's own DN is normalized by the server).
        r"cn=Smith\, John,ou=people,dc=example,dc=org".to_string()
    ]));
    assert!(member.contains(&vec![
        "cn=admins,ou=groups,dc=example,dc=org".to_string(),
        "cn=staff,ou=groups,dc=example,dc=org".to_string()
    ]));
    let manager = rows(&tables["Directory_manager"]);
    assert_eq!(manager.len(), 1 + 3, "{manager:?}");
}

#[tokio::test]
async fn export_reads_only_what_the_mappings_use() {
    let i = instance(
        LDAP,
        settings("ou=people,dc=example,dc=org", "(objectClass=inetOrgPerson)"),
        vec![
            mapped("entries", &["dn", "mail", "cn", "employeeNumber"]),
            mapped("manager", &["dn", "manager"]),
        ],
    );
    let (_, tables) = export(i.as_ref(), None).await.expect("export");
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        ["Directory_entries", "Directory_manager"]
    );
    let header = &rows(&tables["Directory_entries"])[0];
    assert_eq!(header, &["dn", "cn", "employeeNumber", "mail"]);
    let asmith = row(
        &tables["Directory_entries"],
        "uid=asmith,ou=people,dc=example,dc=org",
    );
    assert_eq!(asmith["employeeNumber"], "1002");
}

#[tokio::test]
async fn paging_reads_past_the_size_limit_and_without_it_says_so() {
    let reader = |controls: Value| {
        json!({
            "Servers": [{"Server": server(), "AuthType": "Basic", "Login": READER, "Password": READER_PASSWORD, "Controls": controls}],
            "Tables": [{"Table": "entries", "BaseDN": "ou=paging,dc=example,dc=org", "Filter": "(objectClass=inetOrgPerson)"}],
            "PageSize": 300,
        })
    };
    let mapping = || vec![mapped("entries", &["dn", "cn"])];
    let i = instance(LDAP, reader(json!(["PagedResult"])), mapping());
    let (_, tables) = export(i.as_ref(), None).await.expect("paged export");
    assert_eq!(rows(&tables["Directory_entries"]).len(), 1 + PAGING_ENTRIES);
    let i = instance(LDAP, reader(json!([])), mapping());
    let e = export(i.as_ref(), None).await.expect_err("size limit");
    let m = e.to_string();
    assert!(
        m.contains("size limit exceeded") && m.contains("enable PagedResult"),
        "{m}"
    );
    assert!(!m.contains(READER_PASSWORD), "{m}");
}

#[tokio::test]
async fn servers_fail_over_in_order_and_errors_say_why() {
    let closed = format!("127.0.0.1:{}", closed_port());
    let mut s = settings(SUFFIX, "(objectClass=organizationalUnit)");
    s["Servers"] = json!([admin(closed.clone()), admin(server())]);
    let i = instance(LDAP, s.clone(), vec![mapped("entries", &["dn", "ou"])]);
    let message = i
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect("second server");
    assert!(message.contains(&server()), "{message}");
    let (_, tables) = export(i.as_ref(), None).await.expect("export");
    assert!(tables["Directory_entries"].contains("ou=people"));

    s["Servers"] = json!([admin(closed.clone())]);
    let e = instance(LDAP, s, vec![])
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect_err("unreachable");
    let m = e.to_string();
    assert!(
        m.contains("cannot reach the server") && m.contains(&closed),
        "{m}"
    );
    assert!(m.contains("a retry may help"), "{m}");
}

#[tokio::test]
async fn bad_credentials_are_told_apart_and_never_shown() {
    let mut s = settings(SUFFIX, "(objectClass=*)");
    s["Servers"][0]["Password"] = json!("wrong-password-123");
    let e = instance(LDAP, s, vec![])
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect_err("bad credentials");
    let m = e.to_string();
    assert!(m.contains("bad credentials") && m.contains("49"), "{m}");
    assert!(
        !m.contains("wrong-password-123") && !m.contains(ADMIN_DN),
        "{m}"
    );
    assert!(!m.contains("a retry may help"), "{m}");
}

#[tokio::test]
async fn tls_trusts_the_ca_file_and_refuses_without_it() {
    let ca = SLAPD.ca_file().expect("TLS on").display().to_string();
    let tls_port = SLAPD.tls_port().expect("TLS on");
    let with = |server: Value| {
        let mut s = settings(SUFFIX, "(objectClass=*)");
        s["Servers"] = json!([server]);
        s
    };
    let check = |s: Value| async move {
        instance(LDAP, s, vec![])
            .check_connection()
            .expect("check")
            .check_connection()
            .await
    };
    let mut ldaps = admin(format!("127.0.0.1:{tls_port}"));
    ldaps["EnableSSL"] = json!(true);
    ldaps["CaFile"] = json!(ca);
    let m = check(with(ldaps.clone())).await.expect("ldaps with CaFile");
    assert!(m.contains("ldaps://"), "{m}");
    // Exports read through the same TLS (their searches use a connection of their own).
    let mapping = || vec![mapped("entries", &["dn", "ou"])];
    let mut s = with(ldaps.clone());
    s["Tables"][0]["Filter"] = json!("(objectClass=organizationalUnit)");
    let (_, tables) = export(instance(LDAP, s, mapping()).as_ref(), None)
        .await
        .expect("export over LDAPS");
    assert!(tables["Directory_entries"].contains("ou=people"));
    let mut starttls = admin(server());
    starttls["StartTls"] = json!(true);
    starttls["CaFile"] = json!(ca);
    check(with(starttls.clone()))
        .await
        .expect("StartTLS with CaFile");
    let mut s = with(starttls.clone());
    s["Tables"][0]["Filter"] = json!("(objectClass=organizationalUnit)");
    let (_, tables) = export(instance(LDAP, s, mapping()).as_ref(), None)
        .await
        .expect("export over StartTLS");
    assert!(tables["Directory_entries"].contains("ou=groups"));

    ldaps.as_object_mut().expect("object").remove("CaFile");
    let m = check(with(ldaps))
        .await
        .expect_err("unknown CA")
        .to_string();
    assert!(m.contains("TLS failure") && m.contains("CaFile"), "{m}");
    starttls.as_object_mut().expect("object").remove("CaFile");
    let m = check(with(starttls))
        .await
        .expect_err("unknown CA")
        .to_string();
    assert!(m.contains("TLS failure"), "{m}");
    // LDAPS against the plain port: a TLS failure too, not "unreachable".
    let mut wrong = admin(server());
    wrong["EnableSSL"] = json!(true);
    wrong["CaFile"] = json!(ca);
    let m = check(with(wrong))
        .await
        .expect_err("plain port")
        .to_string();
    assert!(m.contains("TLS failure"), "{m}");
}

#[tokio::test]
async fn schema_comes_from_the_subschema() {
    let i = instance(LDAP, settings(SUFFIX, "(objectClass=*)"), vec![]);
    let schema = i.schema().expect("schema").schema().await.expect("schema");
    let entries = schema
        .tables
        .iter()
        .find(|t| t.name == "Directory_entries")
        .expect("entries table");
    let col = |n: &str| {
        entries
            .columns
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("column {n}"))
    };
    assert_eq!(col("dn").key, KeyType::Primary);
    assert!(col("cn").multivalued);
    assert!(!col("employeeNumber").multivalued);
    assert_eq!(col("jpegPhoto").value_type, ValueType::Binary);
    assert!(entries.columns.iter().all(|c| c.name != "member"));
    let member = schema
        .tables
        .iter()
        .find(|t| t.name == "Directory_member")
        .expect("member link table");
    assert_eq!(
        member
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["dn", "member"]
    );
    assert!(schema.tables.iter().any(|t| t.name == "Directory_manager"));
    assert!(
        schema
            .tables
            .iter()
            .any(|t| t.name == "Directory_uniqueMember")
    );
}

#[tokio::test]
async fn openldap_incremental_round_trip_with_syncrepl() {
    let base = "ou=inc,dc=example,dc=org";
    SLAPD
        .ldapadd(&format!(
            "dn: {base}\nobjectClass: organizationalUnit\nou: inc\n\n\
             dn: uid=keep,{base}\nobjectClass: inetOrgPerson\nuid: keep\ncn: Keep\nsn: K\n\n\
             dn: uid=change,{base}\nobjectClass: inetOrgPerson\nuid: change\ncn: Change\nsn: C\n\n\
             dn: uid=gone,{base}\nobjectClass: inetOrgPerson\nuid: gone\ncn: Gone\nsn: G\n\n\
             dn: cn=team,{base}\nobjectClass: groupOfNames\ncn: team\nmember: uid=keep,{base}\n"
        ))
        .expect("load subtree");
    let s = settings(
        base,
        "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
    );
    let mapping = || {
        vec![
            mapped("entries", &["dn", "cn", "sn"]),
            mapped("member", &["dn", "member"]),
        ]
    };
    let i = instance(OPENLDAP, s, mapping());
    let (first, tables) = export(i.as_ref(), None).await.expect("complete");
    assert!(!first.incremental);
    let cookie = first.cookie.expect("a cookie");
    assert_eq!(rows(&tables["Directory_entries"]).len(), 1 + 4);
    assert_eq!(rows(&tables["Directory_entries"])[0], ["dn", "cn", "sn"]);

    SLAPD
        .ldapmodify(&format!(
            "dn: uid=new,{base}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: new\ncn: New\nsn: N\n\n\
             dn: uid=change,{base}\nchangetype: modify\nreplace: sn\nsn: Changed\n\n\
             dn: uid=gone,{base}\nchangetype: delete\n\n\
             dn: cn=team,{base}\nchangetype: modify\nadd: member\nmember: uid=new,{base}\n"
        ))
        .expect("changes");
    let (second, tables) = export(i.as_ref(), Some(&cookie))
        .await
        .expect("incremental");
    assert!(second.incremental);
    let entries = &tables["Directory_entries"];
    assert_eq!(rows(entries)[0], ["dn", "cn", "sn", "Command"]);
    assert_eq!(
        row(entries, &format!("uid=new,{base}"))["Command"],
        "Insert"
    );
    let changed = row(entries, &format!("uid=change,{base}"));
    assert_eq!(
        (changed["sn"].as_str(), changed["Command"].as_str()),
        ("Changed", "Update")
    );
    assert_eq!(
        row(entries, &format!("uid=gone,{base}"))["Command"],
        "Delete"
    );
    assert!(
        !entries.contains("uid=keep"),
        "unchanged entries are not exported:\n{entries}"
    );
    let member = rows(&tables["Directory_member"]);
    assert!(member.contains(&vec![
        format!("cn=team,{base}"),
        String::new(),
        "Delete".into()
    ]));
    assert!(member.contains(&vec![
        format!("cn=team,{base}"),
        format!("uid=new,{base}"),
        "Insert".into()
    ]));
    assert!(member.contains(&vec![
        format!("cn=team,{base}"),
        format!("uid=keep,{base}"),
        "Insert".into()
    ]));

    // The cookie moved: nothing changed since.
    let cookie = second.cookie.expect("a new cookie");
    let (third, tables) = export(i.as_ref(), Some(&cookie))
        .await
        .expect("incremental");
    assert!(third.incremental);
    assert_eq!(rows(&tables["Directory_entries"]).len(), 1, "{tables:?}");
    // A rename comes out as a Delete of the old DN and an Insert of the new one.
    let cookie = third.cookie.expect("cookie");
    SLAPD
        .ldapmodify(&format!(
            "dn: uid=keep,{base}\nchangetype: modrdn\nnewrdn: uid=kept\ndeleteoldrdn: 1\n"
        ))
        .expect("rename");
    let (_, tables) = export(i.as_ref(), Some(&cookie))
        .await
        .expect("incremental");
    let entries = &tables["Directory_entries"];
    assert_eq!(
        row(entries, &format!("uid=keep,{base}"))["Command"],
        "Delete"
    );
    assert_eq!(
        row(entries, &format!("uid=kept,{base}"))["Command"],
        "Insert"
    );
}

#[tokio::test]
async fn openldap_without_syncprov_falls_back_to_modify_timestamp() {
    let plain = SlapdServer::start(&SlapdOptions {
        ldif: std::fs::read_to_string(fixtures().join("fixtures.ldif")).expect("fixtures"),
        syncprov: false,
        session_log: false,
        tls: false,
        size_limit: None,
        quick_load: false,
    });
    let s = json!({
        "Servers": [{"Server": format!("127.0.0.1:{}", plain.port()), "AuthType": "Basic", "Login": ADMIN_DN, "Password": plain.admin_password()}],
        "Tables": [{"Table": "entries", "BaseDN": "ou=people,dc=example,dc=org", "Filter": "(objectClass=inetOrgPerson)"}],
    });
    let i = instance(OPENLDAP, s, vec![mapped("entries", &["dn", "sn"])]);
    let (first, _) = export(i.as_ref(), None).await.expect("complete");
    let cookie = first.cookie.expect("cookie");
    assert!(cookie.contains("\"timestamp\""), "{cookie}");
    // modifyTimestamp has a one-second resolution: let the clock move on.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    plain
        .ldapmodify(
            "dn: uid=asmith,ou=people,dc=example,dc=org\nchangetype: modify\nreplace: sn\nsn: Smyth\n\n\
             dn: uid=jdoe,ou=people,dc=example,dc=org\nchangetype: delete\n",
        )
        .expect("changes");
    let (second, tables) = export(i.as_ref(), Some(&cookie))
        .await
        .expect("incremental");
    assert!(second.incremental);
    let entries = &tables["Directory_entries"];
    let a = row(entries, "uid=asmith,ou=people,dc=example,dc=org");
    assert_eq!(
        (a["sn"].as_str(), a["Command"].as_str()),
        ("Smyth", "Update")
    );
    assert_eq!(
        row(entries, "uid=jdoe,ou=people,dc=example,dc=org")["Command"],
        "Delete"
    );
}

#[tokio::test]
async fn openldap_without_session_log_finds_deletions_in_the_present_phase() {
    let base = "ou=people,dc=example,dc=org";
    let plain = SlapdServer::start(&SlapdOptions {
        ldif: std::fs::read_to_string(fixtures().join("fixtures.ldif")).expect("fixtures"),
        syncprov: true,
        session_log: false,
        tls: false,
        size_limit: None,
        quick_load: false,
    });
    let s = json!({
        "Servers": [{"Server": format!("127.0.0.1:{}", plain.port()), "AuthType": "Basic", "Login": ADMIN_DN, "Password": plain.admin_password()}],
        "Tables": [{"Table": "entries", "BaseDN": base, "Filter": "(objectClass=inetOrgPerson)"}],
    });
    let i = instance(OPENLDAP, s, vec![mapped("entries", &["dn", "sn"])]);
    let (first, _) = export(i.as_ref(), None).await.expect("complete");
    let cookie = first.cookie.expect("cookie");
    assert!(cookie.contains("\"syncrepl\""), "{cookie}");
    plain
        .ldapmodify(&format!(
            "dn: uid=asmith,{base}\nchangetype: modify\nreplace: sn\nsn: Smyth\n\n\
             dn: uid=jdoe,{base}\nchangetype: delete\n"
        ))
        .expect("changes");
    let (second, tables) = export(i.as_ref(), Some(&cookie))
        .await
        .expect("incremental");
    assert!(second.incremental);
    let entries = &tables["Directory_entries"];
    let a = row(entries, &format!("uid=asmith,{base}"));
    assert_eq!(
        (a["sn"].as_str(), a["Command"].as_str()),
        ("Smyth", "Update")
    );
    assert_eq!(
        row(entries, &format!("uid=jdoe,{base}"))["Command"],
        "Delete"
    );
    assert_eq!(rows(entries).len(), 3, "{entries}");
    let (third, tables) = export(i.as_ref(), second.cookie.as_deref())
        .await
        .expect("nothing changed");
    assert!(third.incremental);
    assert_eq!(rows(&tables["Directory_entries"]).len(), 1, "{tables:?}");
}

/// Stops a private server once the first rows are reported: the export must fail.
struct StopAfterRows(std::sync::Mutex<Option<SlapdServer>>);

impl idlink_packages::api::Progress for StopAfterRows {
    fn rows(&self, _: &str, _: u64) {
        if let Ok(mut s) = self.0.lock() {
            drop(s.take());
        }
    }
    fn phase(&self, _: &str) {}
}

#[tokio::test]
async fn a_server_that_goes_away_mid_export_fails_the_export() {
    let mut ldif = String::from(
        "dn: ou=many,dc=example,dc=org\nobjectClass: organizationalUnit\nou: many\n\n",
    );
    for i in 0..30_000 {
        ldif.push_str(&format!(
            "dn: uid=m{i},ou=many,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: m{i}\ncn: M {i}\nsn: M\n\n"
        ));
    }
    let server = SlapdServer::start(&SlapdOptions {
        ldif,
        syncprov: false,
        session_log: false,
        tls: false,
        size_limit: None,
        quick_load: true,
    });
    let s = json!({
        "Servers": [{"Server": format!("127.0.0.1:{}", server.port()), "AuthType": "Basic", "Login": ADMIN_DN, "Password": server.admin_password(), "Controls": ["PagedResult"]}],
        "Tables": [{"Table": "entries", "BaseDN": "ou=many,dc=example,dc=org", "Filter": "(objectClass=inetOrgPerson)"}],
        "PageSize": 500,
        "TimeOut": 10,
    });
    let i = instance(LDAP, s, vec![mapped("entries", &["dn", "cn"])]);
    let progress = StopAfterRows(std::sync::Mutex::new(Some(server)));
    let staging = tempfile::tempdir().expect("tempdir");
    let mut out = ExportOutput::new(CONNECTION, staging.path());
    let request = ExportRequest {
        incremental: false,
        cookie: None,
        progress: &progress,
    };
    let e = i
        .export()
        .expect("export")
        .export(&request, &mut out)
        .await
        .expect_err("the server went away");
    let m = e.to_string();
    assert!(m.contains("a retry may help"), "{m}");
    assert!(
        m.contains("closed the connection") || m.contains("cannot reach"),
        "{m}"
    );
}

fn orders(json_text: Value) -> OrdersFile {
    serde_json::from_value(json_text).expect("orders")
}

async fn fulfill(settings: Value, orders: &OrdersFile, dry_run: bool) -> Vec<OrderResult> {
    let i = instance(LDAP, settings, vec![]);
    let request = FulfillRequest {
        orders: &orders.orders,
        dry_run,
        progress: &NoProgress,
    };
    i.fulfill()
        .expect("fulfill")
        .fulfill(&request)
        .await
        .expect("fulfill runs")
}

fn order(change: &str, resource: Value, changes: Value) -> Value {
    json!({
        "ChangeType": change,
        "ResourceType": {"Identifier": "LDAP_Account"},
        "Resource": resource,
        "Changes": changes,
    })
}

fn fulfill_settings() -> Value {
    let mut s = settings(SUFFIX, "(objectClass=*)");
    s["DefaultObjectClass"] = json!(["inetOrgPerson"]);
    s["IsLdapPasswordReset"] = json!(true);
    s
}

fn assert_no_secret(results: &[OrderResult], secret: &str) {
    let text = serde_json::to_string(results).expect("json");
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(SLAPD.admin_password()), "{text}");
}

#[tokio::test]
async fn fulfill_adds_modifies_members_renames_and_deletes_idempotently() {
    let base = "ou=fulfill,dc=example,dc=org";
    SLAPD
        .ldapadd(&format!(
            "dn: {base}\nobjectClass: organizationalUnit\nou: fulfill\n\n\
             dn: ou=moved,{base}\nobjectClass: organizationalUnit\nou: moved\n\n\
             dn: cn=group,{base}\nobjectClass: groupOfNames\ncn: group\nmember: cn=nobody\n"
        ))
        .expect("subtree");
    let secret = "Pa55-word-never-shown";
    let user = format!("uid=ann,{base}");
    let file = orders(json!({"ProvisioningOrdersList": [
        order("Added", Value::Null, json!({"dn": user, "cn": "Ann Lee", "sn": "Lee", "mail": ["ann@example.org", "a.lee@example.org"], "userPassword": secret})),
        order("Modified", json!({"dn": format!("cn=group,{base}")}), json!({"member_add": [{"dn": user}], "member_remove": [{"dn": "cn=nobody"}]})),
        order("Added", Value::Null, json!({"dn": format!("uid=bad,{base}"), "cn": "Bad", "objectClass": ["inetOrgPerson"]})),
    ]}));
    let results = fulfill(fulfill_settings(), &file, false).await;
    assert_eq!(results.len(), 3);
    let check = |results: &[OrderResult], first: bool| {
        for (i, r) in results.iter().enumerate() {
            if i == 2 {
                assert_eq!(r.state, OrderState::Errored, "{r:?}");
                assert!(
                    r.message.contains("65") && r.message.contains("objectClassViolation"),
                    "{r:?}"
                );
            } else {
                assert_eq!(r.state, OrderState::Executed, "{r:?}");
                assert!(r.message.starts_with("result code"), "{r:?}");
                if !first {
                    assert!(r.message.contains("already"), "{r:?}");
                }
            }
        }
    };
    check(&results, true);
    assert!(results[0].operations[0].contains("userPassword=**REDACTED**"));
    assert_no_secret(&results, secret);
    // Retried as they are: nothing changes, the orders that worked are Executed again.
    let retry = fulfill(fulfill_settings(), &file, false).await;
    check(&retry, false);
    assert!(
        retry[0]
            .message
            .contains("already exists with the same values"),
        "{:?}",
        retry[0]
    );
    assert_no_secret(&retry, secret);
    let group = SLAPD
        .ldapsearch(&format!("cn=group,{base}"), "(objectClass=*)", &["member"])
        .expect("search");
    assert!(
        group.contains(&format!("member: {user}")) && !group.contains("cn=nobody"),
        "{group}"
    );

    // Only the changed attributes are replaced; twice is the same as once.
    let modify = orders(json!({"ProvisioningOrdersList": [
        order("Modified", json!({"dn": user}), json!({"mail": "ann.lee@example.org", "description": "engineer"})),
    ]}));
    for _ in 0..2 {
        let r = fulfill(fulfill_settings(), &modify, false).await;
        assert_eq!(r[0].state, OrderState::Executed, "{r:?}");
        assert_eq!(
            r[0].operations,
            [format!(
                "modify {user}: replace description=engineer; replace mail=ann.lee@example.org"
            )]
        );
    }
    let ann = SLAPD
        .ldapsearch(
            &user,
            "(objectClass=*)",
            &["mail", "description", "userPassword", "sn"],
        )
        .expect("search");
    assert!(
        ann.contains("mail: ann.lee@example.org") && !ann.contains("a.lee@"),
        "{ann}"
    );
    assert!(
        ann.contains("description: engineer")
            && ann.contains("userPassword")
            && ann.contains("sn: Lee"),
        "{ann}"
    );

    // Rename to another parent, then delete (twice).
    let moved = format!("uid=ann2,ou=moved,{base}");
    let file = orders(json!({"ProvisioningOrdersList": [
        order("Modified", json!({"dn": user}), json!({"dn": moved, "description": "moved"})),
    ]}));
    let r = fulfill(fulfill_settings(), &file, false).await;
    assert_eq!(r[0].state, OrderState::Executed, "{r:?}");
    assert!(
        r[0].operations[0].starts_with(&format!("modrdn {user}: newrdn=uid=ann2")),
        "{r:?}"
    );
    let m = SLAPD
        .ldapsearch(&moved, "(objectClass=*)", &["uid", "description"])
        .expect("moved");
    assert!(
        m.contains("uid: ann2") && m.contains("description: moved"),
        "{m}"
    );
    let r = fulfill(fulfill_settings(), &file, false).await;
    assert_eq!(r[0].state, OrderState::Executed, "rename retried: {r:?}");
    let delete = orders(json!({"ProvisioningOrdersList": [
        order("Deleted", json!({"dn": moved}), json!({})),
    ]}));
    let r = fulfill(fulfill_settings(), &delete, false).await;
    assert_eq!(r[0].state, OrderState::Executed, "{r:?}");
    let r = fulfill(fulfill_settings(), &delete, false).await;
    assert_eq!(r[0].state, OrderState::Executed, "{r:?}");
    assert!(r[0].message.contains("already gone"), "{r:?}");
}

#[tokio::test]
async fn fulfill_dry_run_lists_operations_and_touches_nothing() {
    let base = "ou=dry,dc=example,dc=org";
    SLAPD
        .ldapadd(&format!(
            "dn: {base}\nobjectClass: organizationalUnit\nou: dry\n"
        ))
        .expect("subtree");
    let secret = "Dry-run-secret-77";
    let file = orders(json!({"ProvisioningOrdersList": [
        order("Added", Value::Null, json!({"dn": format!("uid=dry,{base}"), "cn": "Dry", "sn": "Run", "userPassword": secret})),
        order("Modified", json!({"dn": format!("uid=jdoe,ou=people,dc=example,dc=org")}), json!({"mail": "new@example.org"})),
        order("Deleted", json!({"dn": "uid=asmith,ou=people,dc=example,dc=org"}), json!({})),
    ]}));
    let snapshot = || {
        [
            base,
            "uid=jdoe,ou=people,dc=example,dc=org",
            "uid=asmith,ou=people,dc=example,dc=org",
        ]
        .map(|b| {
            SLAPD
                .ldapsearch(b, "(objectClass=*)", &["*", "+"])
                .expect("search")
        })
    };
    let before = snapshot();
    let r = fulfill(fulfill_settings(), &file, true).await;
    assert_eq!(
        r.iter()
            .map(|x| x.operations.join(" | "))
            .collect::<Vec<_>>(),
        [
            format!(
                "add uid=dry,{base}: objectClass=inetOrgPerson, cn=Dry, sn=Run, userPassword=**REDACTED**, uid=dry"
            ),
            "modify uid=jdoe,ou=people,dc=example,dc=org: replace mail=new@example.org".to_string(),
            "delete uid=asmith,ou=people,dc=example,dc=org".to_string(),
        ]
    );
    assert!(
        r.iter()
            .all(|x| x.state == OrderState::Executed && x.message.starts_with("dry run"))
    );
    assert_no_secret(&r, secret);
    assert_eq!(before, snapshot(), "a dry run changed the directory");
}

#[test]
fn settings_without_entries_table_are_refused() {
    let s = json!({
        "Servers": [{"Server": "127.0.0.1:389"}],
        "Tables": [{"Table": "member", "BaseDN": SUFFIX}],
    });
    let e = try_instance(LDAP, s, vec![]).err().expect("refused");
    assert!(e.to_string().contains("`entries` is required"), "{e}");
}

/// Data rows (after the header) of every table of an export.
fn data_rows(tables: &Tables) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (name, text) in tables {
        for r in rows(text).into_iter().skip(1) {
            out.push((name.clone(), r));
        }
    }
    out
}

/// Complete export, a change, then incremental exports: the one after the change carries it,
/// and each later one, with no change in between, yields no row in any table.
async fn no_change_yields_no_rows(i: &dyn Instance, change: impl Fn(), changed_dn: &str) {
    let (first, _) = export(i, None).await.expect("complete");
    let cookie = first.cookie.expect("cookie");
    // Right after the complete export, nothing changed.
    let (outcome, tables) = export(i, Some(&cookie)).await.expect("incremental");
    assert!(outcome.incremental);
    assert_eq!(
        data_rows(&tables),
        Vec::<(String, Vec<String>)>::new(),
        "no change since the complete export"
    );
    let cookie = outcome.cookie.expect("cookie");
    change();
    let (outcome, tables) = export(i, Some(&cookie)).await.expect("incremental");
    let rows_after_change = data_rows(&tables);
    assert!(
        rows_after_change
            .iter()
            .any(|(t, r)| t.ends_with("_entries") && r[0] == changed_dn),
        "the change is exported: {rows_after_change:?}"
    );
    let mut cookie = outcome.cookie.expect("cookie");
    for run in 0..2 {
        let (outcome, tables) = export(i, Some(&cookie)).await.expect("incremental");
        assert!(outcome.incremental);
        assert_eq!(
            data_rows(&tables),
            Vec::<(String, Vec<String>)>::new(),
            "run {run} with no change"
        );
        cookie = outcome.cookie.expect("cookie");
    }
}

#[tokio::test]
async fn regression_ldap_incremental_with_no_change_yields_no_rows_syncrepl() {
    let base = "ou=nochange,dc=example,dc=org";
    SLAPD
        .ldapadd(&format!(
            "dn: {base}\nobjectClass: organizationalUnit\nou: nochange\n\n\
             dn: uid=a,{base}\nobjectClass: inetOrgPerson\nuid: a\ncn: A\nsn: A\n\n\
             dn: uid=b,{base}\nobjectClass: inetOrgPerson\nuid: b\ncn: B\nsn: B\n\n\
             dn: cn=team,{base}\nobjectClass: groupOfNames\ncn: team\nmember: uid=a,{base}\nmember: uid=b,{base}\n"
        ))
        .expect("load subtree");
    let s = settings(
        base,
        "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
    );
    let i = instance(
        OPENLDAP,
        s,
        vec![
            mapped("entries", &["dn", "cn", "sn"]),
            mapped("member", &["dn", "member"]),
        ],
    );
    let dn = format!("uid=a,{base}");
    no_change_yields_no_rows(
        i.as_ref(),
        || {
            SLAPD
                .ldapmodify(&format!(
                    "dn: {dn}\nchangetype: modify\nreplace: sn\nsn: Changed\n"
                ))
                .expect("change");
        },
        &dn,
    )
    .await;
}

#[tokio::test]
async fn regression_ldap_incremental_with_no_change_yields_no_rows_timestamp() {
    let base = "ou=people,dc=example,dc=org";
    let plain = SlapdServer::start(&SlapdOptions {
        ldif: std::fs::read_to_string(fixtures().join("fixtures.ldif")).expect("fixtures"),
        syncprov: false,
        session_log: false,
        tls: false,
        size_limit: None,
        quick_load: false,
    });
    let s = json!({
        "Servers": [{"Server": format!("127.0.0.1:{}", plain.port()), "AuthType": "Basic", "Login": ADMIN_DN, "Password": plain.admin_password()}],
        "Tables": [{"Table": "entries", "BaseDN": "dc=example,dc=org", "Filter": "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))"}],
    });
    let i = instance(
        OPENLDAP,
        s,
        vec![
            mapped("entries", &["dn", "sn"]),
            mapped("member", &["dn", "member"]),
        ],
    );
    let dn = format!("uid=asmith,{base}");
    no_change_yields_no_rows(
        i.as_ref(),
        || {
            plain
                .ldapmodify(&format!(
                    "dn: {dn}\nchangetype: modify\nreplace: sn\nsn: Smyth\n"
                ))
                .expect("change");
        },
        &dn,
    )
    .await;
}

#[tokio::test]
async fn regression_ldap_incremental_with_no_change_yields_no_rows_syncrepl_present_phase() {
    // Without a session log, the server lists every unchanged entry (present phase).
    let base = "ou=people,dc=example,dc=org";
    let plain = SlapdServer::start(&SlapdOptions {
        ldif: std::fs::read_to_string(fixtures().join("fixtures.ldif")).expect("fixtures"),
        syncprov: true,
        session_log: false,
        tls: false,
        size_limit: None,
        quick_load: false,
    });
    let s = json!({
        "Servers": [{"Server": format!("127.0.0.1:{}", plain.port()), "AuthType": "Basic", "Login": ADMIN_DN, "Password": plain.admin_password()}],
        "Tables": [{"Table": "entries", "BaseDN": "dc=example,dc=org", "Filter": "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))"}],
    });
    let i = instance(
        OPENLDAP,
        s,
        vec![
            mapped("entries", &["dn", "sn"]),
            mapped("member", &["dn", "member"]),
        ],
    );
    let dn = format!("uid=asmith,{base}");
    no_change_yields_no_rows(
        i.as_ref(),
        || {
            plain
                .ldapmodify(&format!(
                    "dn: {dn}\nchangetype: modify\nreplace: sn\nsn: Smyth\n"
                ))
                .expect("change");
        },
        &dn,
    )
    .await;
}

#[tokio::test]
async fn openldap_complete_export_without_mapping_reads_every_attribute_once() {
    let base = "ou=nomap,dc=example,dc=org";
    SLAPD
        .ldapadd(&format!(
            "dn: {base}\nobjectClass: organizationalUnit\nou: nomap\n\n\
             dn: uid=a,{base}\nobjectClass: inetOrgPerson\nuid: a\ncn: A\nsn: A\nmail: a@example.org\n\n\
             dn: cn=team,{base}\nobjectClass: groupOfNames\ncn: team\nmember: uid=a,{base}\n"
        ))
        .expect("load subtree");
    let i = instance(
        OPENLDAP,
        settings(
            base,
            "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
        ),
        vec![],
    );
    let (first, tables) = export(i.as_ref(), None).await.expect("complete");
    let header = rows(&tables["Directory_entries"])[0].clone();
    assert_eq!(header, ["dn", "cn", "mail", "objectClass", "sn", "uid"]);
    assert_eq!(
        row(&tables["Directory_entries"], &format!("uid=a,{base}"))["mail"],
        "a@example.org"
    );
    assert_eq!(
        rows(&tables["Directory_member"])[1],
        [format!("cn=team,{base}"), format!("uid=a,{base}")]
    );
    // The incremental run lists the names first: the same columns, and a Command.
    SLAPD
        .ldapmodify(&format!(
            "dn: uid=a,{base}\nchangetype: modify\nreplace: sn\nsn: Changed\n"
        ))
        .expect("change");
    let cookie = first.cookie.expect("cookie");
    let (_, tables) = export(i.as_ref(), Some(&cookie))
        .await
        .expect("incremental");
    let mut expected = header.clone();
    expected.push("Command".to_string());
    assert_eq!(rows(&tables["Directory_entries"])[0], expected);
    assert_eq!(
        row(&tables["Directory_entries"], &format!("uid=a,{base}"))["sn"],
        "Changed"
    );
}

/// Issue #9: the OpenLDAP page's own shape (Server, DistinguishedName, Login, Password, Filter,
/// Scope, SSL at the connection level, values as strings the way the page writes them) runs
/// against a real slapd as one server and one `entries` table.
#[tokio::test]
async fn regression_openldap_flat_settings_shape_exports_entries() {
    let flat = json!({
        "Server": server(),
        "DistinguishedName": "ou=people,dc=example,dc=org",
        "Login": ADMIN_DN,
        "Password": SLAPD.admin_password(),
        "Filter": "(objectClass=inetOrgPerson)",
        "Scope": "SubTree",
        "SSL": false,
    });
    let i = instance(OPENLDAP, flat.clone(), vec![]);
    let (_, tables) = export(i.as_ref(), None).await.expect("export");
    let entries = &tables["Directory_entries"];
    let jdoe = row(entries, "uid=jdoe,ou=people,dc=example,dc=org");
    assert_eq!(jdoe["objectClass"], "inetOrgPerson");
    assert!(
        rows(entries)
            .iter()
            .skip(1)
            .all(|r| r[0].ends_with("ou=people,dc=example,dc=org")),
        "DistinguishedName is the base of the search:\n{entries}"
    );
    // A wrong password is told as such: the flat Login/Password are used to bind.
    let mut wrong = flat.clone();
    wrong["Password"] = json!("not-the-password-77");
    let i = instance(OPENLDAP, wrong, vec![]);
    let e = export(i.as_ref(), None).await.expect_err("bad password");
    assert!(!e.to_string().contains("not-the-password-77"), "{e}");
    // Mixing it with the LDAP page's shape is refused, saying what to keep.
    let mut mixed = flat;
    mixed["Tables"] = json!([{"Table": "entries", "BaseDN": SUFFIX}]);
    let e = try_instance(OPENLDAP, mixed, vec![])
        .err()
        .expect("mixed shapes");
    let m = e.to_string();
    assert!(m.contains("keep either Servers and Tables"), "{m}");
    assert!(!m.contains(SLAPD.admin_password()), "{m}");
}
