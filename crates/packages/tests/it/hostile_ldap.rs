//! Defect 1 of issue #8 (LDAP side): a hostile or broken directory must not drive memory
//! without bound nor stretch TimeOut. Fake servers on 127.0.0.1 (see
//! `idlink_test_support::hostile`) answer with a header announcing 2 GiB, an element inside a
//! message announcing more than the message holds, or one byte a second; each operation
//! must fail within TimeOut + 2 s with a message naming the server and what went wrong.

use std::time::{Duration, Instant};

use idlink_model::package::PackageCatalog;
use idlink_packages::api::{ExportRequest, Instance, NoProgress, PackageError};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Registry, instantiate};
use idlink_test_support::hostile::ldap::{
    BIND_OK, HUGE_HEADER, entry_with_huge_inner_length, search_done,
};
use idlink_test_support::hostile::{HostileServer, Step};
use serde_json::{Value, json};

const CONNECTION: &str = "Hostile";
const TIMEOUT_SECS: u64 = 2;

fn settings(servers: Vec<Value>) -> Value {
    json!({
        "Servers": servers,
        "Tables": [{"Table": "entries", "BaseDN": "dc=example,dc=org"}],
        "TimeOut": TIMEOUT_SECS,
    })
}

fn basic(address: &str) -> Value {
    json!({"Server": address, "AuthType": "Basic", "Login": "cn=admin,dc=example,dc=org", "Password": "hostile-pw-1"})
}

fn instance(package: &str, settings: Value) -> Box<dyn Instance> {
    let dir = std::env::temp_dir();
    let env = Environment {
        connection: CONNECTION.to_string(),
        base_dir: dir.clone(),
        roots: SourceRoots::new(&dir, &["."]),
        mapped_tables: Vec::new(),
    };
    let registry = Registry::new();
    let info = registry.get(package).expect("known package");
    instantiate(info, settings, env).expect("valid settings")
}

async fn export(instance: &dyn Instance) -> Result<(), PackageError> {
    let staging = tempfile::tempdir().expect("tempdir");
    let mut out = ExportOutput::new(CONNECTION, staging.path());
    let request = ExportRequest {
        incremental: false,
        cookie: None,
        progress: &NoProgress,
    };
    instance
        .export()
        .expect("export")
        .export(&request, &mut out)
        .await?;
    Ok(())
}

/// Runs `op`, which must fail within TimeOut + 2 s; returns its message.
async fn fails_in_time<F: std::future::Future<Output = Result<T, PackageError>>, T>(
    what: &str,
    op: F,
) -> String {
    let start = Instant::now();
    let limit = Duration::from_secs(TIMEOUT_SECS + 2);
    let result = tokio::time::timeout(limit + Duration::from_secs(5), op).await;
    let elapsed = start.elapsed();
    let message = match result {
        Err(_) => panic!("{what}: still running after {:?}", limit),
        Ok(Ok(_)) => panic!("{what}: succeeded against a hostile server"),
        Ok(Err(e)) => e.to_string(),
    };
    assert!(
        elapsed <= limit,
        "{what}: failed after {elapsed:?}, more than TimeOut + 2 s: {message}"
    );
    assert!(
        !message.contains("hostile-pw-1"),
        "{what}: the password shows: {message}"
    );
    message
}

fn names_the_server(message: &str, server: &HostileServer) {
    assert!(
        message.contains(&format!("ldap://{}", server.address())),
        "the server is not named: {message}"
    );
    assert!(
        message.contains(&format!("connection '{CONNECTION}'")),
        "{message}"
    );
}

/// Bind answered by `30 84 7f ff ff ff` then bytes without end.
fn huge_bind_answer() -> Vec<Step> {
    vec![
        Step::ReadSome,
        Step::Write(HUGE_HEADER.to_vec()),
        Step::Endless(vec![0x41; 64 * 1024]),
    ]
}

#[tokio::test]
async fn regression_ldap_huge_ber_length_in_bind_response_is_bounded() {
    let server = HostileServer::start(huge_bind_answer());
    let ldap = instance(
        "Usercube.LDAP@0000001",
        settings(vec![basic(&server.address())]),
    );
    for what in ["check-connection", "export", "schema"] {
        let m = match what {
            "check-connection" => {
                fails_in_time(
                    what,
                    ldap.check_connection().expect("cap").check_connection(),
                )
                .await
            }
            "export" => fails_in_time(what, export(ldap.as_ref())).await,
            _ => fails_in_time(what, ldap.schema().expect("cap").schema()).await,
        };
        names_the_server(&m, &server);
        assert!(
            m.contains("bind: the server announced a 2147483647-byte message, above MaxMessageSize (16777216)"),
            "{what}: {m}"
        );
        assert!(!m.contains("a retry may help"), "{what}: {m}");
    }
}

#[tokio::test]
async fn regression_ldap_max_message_size_setting_is_applied() {
    // A 200-byte bind response, above a MaxMessageSize of 100... refused: the minimum is
    // 1024, so announce 2000 bytes against 1024.
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::Write(vec![0x30, 0x82, 0x07, 0xd0]),
        Step::Hang,
    ]);
    let mut s = settings(vec![basic(&server.address())]);
    s["MaxMessageSize"] = json!(1024);
    let ldap = instance("Usercube.LDAP@0000001", s);
    let m = fails_in_time(
        "check-connection",
        ldap.check_connection().expect("cap").check_connection(),
    )
    .await;
    assert!(
        m.contains("announced a 2000-byte message, above MaxMessageSize (1024)"),
        "{m}"
    );
}

#[tokio::test]
async fn regression_ldap_bind_trickled_one_byte_a_second_times_out() {
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::Trickle {
            bytes: BIND_OK.to_vec(),
            every: Duration::from_secs(1),
        },
    ]);
    let ldap = instance(
        "Usercube.OpenLDAP@0000001",
        settings(vec![basic(&server.address())]),
    );
    let m = fails_in_time(
        "check-connection",
        ldap.check_connection().expect("cap").check_connection(),
    )
    .await;
    names_the_server(&m, &server);
    assert!(
        m.contains("no complete response within TimeOut (2 s"),
        "{m}"
    );
    let m = fails_in_time("export", export(ldap.as_ref())).await;
    assert!(
        m.contains("no complete response within TimeOut (2 s"),
        "{m}"
    );
}

#[tokio::test]
async fn regression_ldap_huge_length_in_search_result_after_bind_is_bounded() {
    // ldap3's path: the root DSE search is answered with a 2 GiB header.
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::Write(BIND_OK.to_vec()),
        Step::ReadSome,
        Step::Write(HUGE_HEADER.to_vec()),
        Step::Endless(vec![0x41; 64 * 1024]),
    ]);
    let ldap = instance(
        "Usercube.LDAP@0000001",
        settings(vec![basic(&server.address())]),
    );
    let m = fails_in_time(
        "check-connection",
        ldap.check_connection().expect("cap").check_connection(),
    )
    .await;
    names_the_server(&m, &server);
    assert!(
        m.contains("read the root DSE") && m.contains("above MaxMessageSize (16777216)"),
        "{m}"
    );
    let m = fails_in_time("export", export(ldap.as_ref())).await;
    assert!(m.contains("above MaxMessageSize (16777216)"), "{m}");
}

#[tokio::test]
async fn regression_ldap_inner_element_longer_than_its_message_is_refused() {
    // A message of normal size whose DN announces 2 GiB, then valid messages without end:
    // ldap3's decoder alone would wait for the DN's bytes and buffer everything after it.
    let mut endless = Vec::new();
    for _ in 0..1000 {
        endless.extend_from_slice(&search_done(99, 0));
    }
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::Write(BIND_OK.to_vec()),
        Step::ReadSome,
        Step::Write(entry_with_huge_inner_length(2)),
        Step::Endless(endless),
    ]);
    let ldap = instance(
        "Usercube.LDAP@0000001",
        settings(vec![basic(&server.address())]),
    );
    let m = fails_in_time(
        "check-connection",
        ldap.check_connection().expect("cap").check_connection(),
    )
    .await;
    names_the_server(&m, &server);
    assert!(
        m.contains(
            "malformed LDAP message from the server (an element is longer than what contains it)"
        ),
        "{m}"
    );
}

/// The first connection (ldap3: bind, root DSE, subschema) is answered well; the second (the
/// bulk reader of exports) binds, then gets `search`.
fn bulk_scripts(search: Vec<Step>) -> Vec<Vec<Step>> {
    let ldap3 = vec![
        Step::ReadSome,
        Step::Write(BIND_OK.to_vec()),
        Step::ReadSome,
        Step::Write(search_done(2, 32)),
        Step::ReadSome,
        Step::Write(search_done(3, 32)),
        Step::Hang,
    ];
    let mut bulk = vec![
        Step::ReadSome,
        Step::Write(BIND_OK.to_vec()),
        Step::ReadSome,
    ];
    bulk.extend(search);
    vec![ldap3, bulk]
}

#[tokio::test]
async fn regression_ldap_bulk_reader_huge_length_in_search_result_is_bounded() {
    let server = HostileServer::start_each(bulk_scripts(vec![
        Step::Write(HUGE_HEADER.to_vec()),
        Step::Endless(vec![0x41; 64 * 1024]),
    ]));
    let ldap = instance(
        "Usercube.LDAP@0000001",
        settings(vec![basic(&server.address())]),
    );
    let m = fails_in_time("export", export(ldap.as_ref())).await;
    names_the_server(&m, &server);
    assert!(
        m.contains("search on") && m.contains("above MaxMessageSize (16777216)"),
        "{m}"
    );
    assert_eq!(server.connections(), 2, "the bulk reader was not reached");
}

#[tokio::test]
async fn regression_ldap_bulk_reader_trickle_is_bounded_per_message_not_per_byte() {
    // One byte a second: each read returns within TimeOut, the message never completes.
    let server = HostileServer::start_each(bulk_scripts(vec![Step::TrickleForever {
        byte: 0x30,
        every: Duration::from_millis(500),
    }]));
    let ldap = instance(
        "Usercube.LDAP@0000001",
        settings(vec![basic(&server.address())]),
    );
    let m = fails_in_time("export", export(ldap.as_ref())).await;
    names_the_server(&m, &server);
    assert!(
        m.contains("no complete response within TimeOut (2 s"),
        "{m}"
    );
}

#[tokio::test]
async fn regression_ldap_server_repeating_its_paged_results_cookie_cannot_page_forever() {
    let mut pages = Vec::new();
    for id in 2..=12u8 {
        pages.push(Step::Write(
            idlink_test_support::hostile::ldap::search_done_with_cookie(id),
        ));
        pages.push(Step::ReadSome);
    }
    pages.push(Step::Hang);
    let server = HostileServer::start_each(bulk_scripts(pages));
    let mut server_settings = basic(&server.address());
    server_settings["Controls"] = json!(["PagedResult"]);
    let ldap = instance("Usercube.LDAP@0000001", settings(vec![server_settings]));
    let m = fails_in_time("export", export(ldap.as_ref())).await;
    names_the_server(&m, &server);
    assert!(
        m.contains("paged-results cookie it had already given"),
        "{m}"
    );
}

#[tokio::test]
async fn regression_ldap_hostile_first_server_fails_over_to_the_next() {
    let hostile = HostileServer::start(huge_bind_answer());
    let mut real = crate::ldap::admin(crate::ldap::server());
    real["Controls"] = json!([]);
    let ldap = instance(
        "Usercube.LDAP@0000001",
        settings(vec![basic(&hostile.address()), real]),
    );
    let m = ldap
        .check_connection()
        .expect("cap")
        .check_connection()
        .await
        .expect("the second server answers");
    assert!(
        m.contains(&format!("ldap://{}", crate::ldap::server())),
        "{m}"
    );
    assert_eq!(hostile.connections(), 1);
}

/// A well-formed SearchResultEntry for message `id` with one attribute of `values` empty
/// values: tiny elements that a decoder would allocate for one by one.
fn entry_of_tiny_values(id: u8, values: usize) -> Vec<u8> {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = content.len();
        if n < 0x80 {
            v.push(n as u8);
        } else {
            v.push(0x84);
            v.extend_from_slice(&(n as u32).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }
    let set = tlv(0x31, &[0x04, 0x00].repeat(values));
    let attr = tlv(0x30, &[tlv(0x04, b"description"), set].concat());
    let attrs = tlv(0x30, &attr);
    let entry = tlv(0x64, &[tlv(0x04, b"cn=x"), attrs].concat());
    tlv(0x30, &[vec![0x02, 0x01, id], entry].concat())
}

#[tokio::test]
async fn regression_ldap_message_of_tiny_elements_is_bounded_by_element_count() {
    // 5,000 values in a 10 KB message: within MaxMessageSize (65536), above its 4,096
    // elements (MaxMessageSize / 16), on both readers.
    let message = entry_of_tiny_values(2, 5000);
    assert!(message.len() < 65536);
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::Write(BIND_OK.to_vec()),
        Step::ReadSome,
        Step::Write(message.clone()),
        Step::Hang,
    ]);
    let mut s = settings(vec![basic(&server.address())]);
    s["MaxMessageSize"] = json!(65536);
    let ldap = instance("Usercube.LDAP@0000001", s.clone());
    let m = fails_in_time(
        "check-connection",
        ldap.check_connection().expect("cap").check_connection(),
    )
    .await;
    names_the_server(&m, &server);
    assert!(m.contains("more than 4096 elements"), "{m}");

    let bulk = HostileServer::start_each(bulk_scripts(vec![Step::Write(message), Step::Hang]));
    let mut s = settings(vec![basic(&bulk.address())]);
    s["MaxMessageSize"] = json!(65536);
    let ldap = instance("Usercube.LDAP@0000001", s);
    let m = fails_in_time("export", export(ldap.as_ref())).await;
    assert!(
        m.contains("search on") && m.contains("more than 4096 elements"),
        "{m}"
    );
}
