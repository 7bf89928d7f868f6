//! SCIM package tests against a real SCIM service: PyPI's scim2-server (started once for this
//! test binary; each test uses a tenant of its own, a service with its own resources).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use idlink_model::package::PackageCatalog;
use idlink_packages::api::{
    ErrorKind, ExportOutcome, ExportRequest, FulfillRequest, Instance, MappedTable, NoProgress,
    OrderResult, OrderState, OrdersFile, PackageError,
};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Registry, instantiate};
use idlink_test_support::scim::Request;
use idlink_test_support::{Fault, FaultProxy, ScimOptions, ScimServer, closed_port};
use serde_json::{Value, json};

pub(crate) const CONNECTION: &str = "SCIMExport";
pub(crate) const SCIM: &str = "Usercube.SCIM@0000001";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

pub(crate) static SERVER: LazyLock<ScimServer> = LazyLock::new(ScimServer::start);

pub(crate) fn env(mapped: Vec<MappedTable>) -> Environment {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Environment {
        connection: CONNECTION.to_string(),
        base_dir: dir.clone(),
        roots: SourceRoots::new(&dir, &["."]),
        mapped_tables: mapped,
    }
}

pub(crate) fn mapped(suffix: &str, columns: &[&str]) -> MappedTable {
    MappedTable {
        name: format!("{CONNECTION}_{suffix}"),
        suffix: Some(suffix.to_string()),
        columns: columns.iter().map(|c| c.to_string()).collect(),
    }
}

pub(crate) fn try_instance(
    package: &str,
    settings: Value,
    mapped: Vec<MappedTable>,
) -> Result<Box<dyn Instance>, PackageError> {
    let registry = Registry::new();
    let info = registry.get(package).expect("known package");
    instantiate(info, settings, env(mapped))
}

pub(crate) fn instance(settings: Value, mapped: Vec<MappedTable>) -> Box<dyn Instance> {
    try_instance(SCIM, settings, mapped).expect("valid settings")
}

/// Settings of a tenant with the server's token.
pub(crate) fn settings(server: &str) -> Value {
    json!({"Server": server, "OAuthToken": SERVER.token()})
}

/// Table name -> CSV text.
pub(crate) type Tables = BTreeMap<String, String>;

pub(crate) async fn export(
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

pub(crate) fn rows(csv_text: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv_text.as_bytes());
    r.records()
        .map(|x| x.expect("csv").iter().map(str::to_string).collect())
        .collect()
}

/// Rows as column -> value maps, keyed by the `key` column.
fn by(csv_text: &str, key: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let all = rows(csv_text);
    let header = all[0].clone();
    let k = header.iter().position(|h| h == key).expect("key column");
    all[1..]
        .iter()
        .map(|r| {
            (
                r[k].clone(),
                header.iter().cloned().zip(r.iter().cloned()).collect(),
            )
        })
        .collect()
}

fn user(name: &str, given: &str, emails: &[&str]) -> String {
    let emails: Vec<Value> = emails
        .iter()
        .map(|e| json!({"value": e, "type": "work"}))
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": name,
        "name": {"givenName": given, "familyName": "Tester"},
        "emails": emails,
        "active": true,
        ENTERPRISE: {"employeeNumber": format!("E-{name}"), "manager": {"value": "boss-1"}},
    })
    .to_string()
}

fn group(name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": members,
    })
    .to_string()
}

/// Creates `n` users named `<prefix><i>` through /Bulk (1,000 per request).
pub(crate) fn bulk_users(tenant: &str, prefix: &str, n: usize) {
    let mut i = 0;
    while i < n {
        let ops: Vec<Value> = (i..n.min(i + 1000))
            .map(|k| {
                json!({"method": "POST", "path": "/Users", "bulkId": format!("b{k}"),
                       "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                "userName": format!("{prefix}{k:05}"),
                                "name": {"givenName": format!("G{k}"), "familyName": "F"}}})
            })
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops});
        let (status, text) = SERVER
            .request(tenant, "POST", "Bulk", Some(&body.to_string()))
            .expect("bulk");
        assert_eq!(status, 200, "{text}");
        assert!(
            !text.contains("\"status\": \"4"),
            "{}",
            &text[..text.len().min(500)]
        );
        i += 1000;
    }
}

/// A tenant holding two users and a group of both, and an empty group.
fn small_tenant() -> (String, String, String, String) {
    let t = SERVER.tenant();
    let ada = SERVER.create(&t, "Users", &user("ada", "Ada", &["b@x.org", "a@x.org"]));
    let alan = SERVER.create(&t, "Users", &user("alan", "Alan", &["alan@x.org"]));
    let staff = SERVER.create(&t, "Groups", &group("staff", &[&ada, &alan]));
    SERVER.create(&t, "Groups", &group("empty", &[]));
    (t, ada, alan, staff)
}

#[tokio::test]
async fn scim_export_without_mapping_writes_every_attribute_and_the_memberships() {
    let (t, ada, alan, staff) = small_tenant();
    let i = instance(settings(&SERVER.url(&t)), Vec::new());
    let (outcome, tables) = export(&*i, None).await.expect("export");
    assert!(!outcome.incremental);
    assert!(
        outcome.cookie.is_some(),
        "an incremental package leaves a cookie"
    );
    let names: Vec<&str> = tables.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "SCIMExport_Groups",
            "SCIMExport_Users",
            "SCIMExport_members_Groups"
        ]
    );
    let users = by(&tables["SCIMExport_Users"], "userName");
    assert_eq!(users.len(), 2);
    let a = &users["ada"];
    assert_eq!(a["id"], ada);
    assert_eq!(a["name:givenName"], "Ada");
    assert_eq!(a["name:familyName"], "Tester");
    // Multi-valued: every value in one cell, sorted, newline-separated.
    assert_eq!(a["emails:value"], "a@x.org\nb@x.org");
    assert_eq!(a["emails:type"], "work\nwork");
    assert_eq!(a["active"], "true");
    assert_eq!(a[&format!("{ENTERPRISE}:employeeNumber")], "E-ada");
    assert_eq!(a[&format!("{ENTERPRISE}:manager:value")], "boss-1");
    assert!(!a["meta:lastModified"].is_empty());
    // Never-returned attributes are not columns.
    assert!(!a.contains_key("password"));
    let header = &rows(&tables["SCIMExport_Users"])[0];
    assert_eq!(
        &header[..4],
        ["id", "externalId", "meta:created", "meta:lastModified"]
    );
    // Groups: no members column, the memberships have their own table.
    let groups = by(&tables["SCIMExport_Groups"], "displayName");
    assert_eq!(groups.len(), 2);
    assert!(groups["staff"].keys().all(|k| !k.starts_with("members")));
    let mut members = rows(&tables["SCIMExport_members_Groups"]);
    assert_eq!(members.remove(0), ["value", "MemberId"]);
    members.sort();
    let mut expected = vec![
        vec![staff.clone(), ada.clone()],
        vec![staff.clone(), alan.clone()],
    ];
    expected.sort();
    assert_eq!(members, expected);
}

#[tokio::test]
async fn scim_export_reads_the_mapped_columns_of_the_filtered_entities() {
    let (t, ada, _, staff) = small_tenant();
    let mut s = settings(&SERVER.url(&t));
    s["Filter"] = json!("Users|?filter=userName sw \"ad\"");
    let i = instance(
        s,
        vec![
            mapped("Users", &["userName", "name:givenName", "emails:value"]),
            mapped("members_Groups", &["value", "MemberId"]),
        ],
    );
    let (_, tables) = export(&*i, None).await.expect("export");
    let users = rows(&tables["SCIMExport_Users"]);
    assert_eq!(
        users,
        vec![
            vec!["id", "userName", "name:givenName", "emails:value"],
            vec![ada.as_str(), "ada", "Ada", "a@x.org\nb@x.org"],
        ]
    );
    // The members table is mapped without its groups table: the groups are read for it.
    let members = rows(&tables["SCIMExport_members_Groups"]);
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members[1..].iter().all(|r| r[0] == staff));
    assert!(tables.contains_key("SCIMExport_Groups"));
}

#[tokio::test]
async fn scim_export_pages_through_many_resources() {
    let t = SERVER.tenant();
    bulk_users(&t, "p", 1234);
    for (page_size, ahead) in [(100, 0), (100, 3), (5000, 2)] {
        // 5,000 is more than the service's maxResults (1,000): it caps each page, and the
        // pages read ahead follow its size.
        let mut s = settings(&SERVER.url(&t));
        s["PageSize"] = json!(page_size);
        s["PagesAhead"] = json!(ahead);
        let i = instance(s, vec![mapped("Users", &["userName"])]);
        let (_, tables) = export(&*i, None).await.expect("export");
        let users = rows(&tables["SCIMExport_Users"]);
        assert_eq!(users.len(), 1235, "page size {page_size}");
        let ids: std::collections::BTreeSet<&String> = users[1..].iter().map(|r| &r[0]).collect();
        assert_eq!(ids.len(), 1234, "each resource once");
        let names: std::collections::BTreeSet<&String> = users[1..].iter().map(|r| &r[1]).collect();
        assert!(names.contains(&"p00000".to_string()) && names.contains(&"p01233".to_string()));
    }
}

#[tokio::test]
async fn scim_export_pages_by_cursor_when_the_service_announces_only_cursors() {
    let server = ScimServer::start_with(&ScimOptions {
        service_provider_config: Some(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                "patch": {"supported": true}, "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 10485760},
                "filter": {"supported": true, "maxResults": 1000},
                "changePassword": {"supported": false}, "sort": {"supported": true}, "etag": {"supported": false},
                "pagination": {"cursor": true, "index": false, "defaultPaginationMethod": "cursor", "defaultPageSize": 100, "maxPageSize": 1000, "cursorTimeout": 600},
            })
            .to_string(),
        ),
        open: false,
    });
    let t = server.tenant();
    for k in 0..25 {
        server.create(&t, "Users", &user(&format!("c{k:02}"), "C", &[]));
    }
    let proxy = FaultProxy::start(server.port(), Box::new(|_, _| Fault::Forward));
    let mut s = json!({"Server": proxy.url(&t), "OAuthToken": server.token(), "PageSize": 10});
    s["Filter"] = json!("Users");
    let i = instance(s, vec![mapped("Users", &["userName"])]);
    let (_, tables) = export(&*i, None).await.expect("export");
    assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 26);
    let pages: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.contains("/v2/Users?"))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages
            .iter()
            .all(|p| p.contains("cursor=") && !p.contains("startIndex")),
        "{pages:?}"
    );
}

#[tokio::test]
async fn scim_incremental_export_reads_only_users_changed_since_the_cookie() {
    let (t, ada, alan, _) = small_tenant();
    // The cookie is the service's clock when the export began, to the second (its Date):
    // resources changed within that second are read again by the next run. The fixtures are
    // a second older, and the changes a second newer, so that this test sees exactly them.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let i = instance(settings(&SERVER.url(&t)), Vec::new());
    let (first, _) = export(&*i, None).await.expect("complete");
    let cookie = first.cookie.expect("cookie");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Adeline"}]});
    let (status, body) = SERVER
        .request(
            &t,
            "PATCH",
            &format!("Users/{ada}"),
            Some(&patch.to_string()),
        )
        .expect("patch");
    assert!(status == 200 || status == 204, "{body}");
    let grace = SERVER.create(&t, "Users", &user("grace", "Grace", &[]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (second, tables) = export(&*i, Some(&cookie)).await.expect("incremental");
    assert!(second.incremental);
    let next = second.cookie.expect("cookie advances");
    assert!(next > cookie, "{next} after {cookie}");
    let users = by(&tables["SCIMExport_Users"], "id");
    assert_eq!(users.len(), 2, "{users:?}");
    assert_eq!(users[&ada]["Command"], "Update");
    assert_eq!(users[&ada]["name:givenName"], "Adeline");
    assert_eq!(users[&grace]["Command"], "Insert");
    assert!(!users.contains_key(&alan));
    // Groups are read completely, without a Command column.
    let groups = rows(&tables["SCIMExport_Groups"]);
    assert_eq!(groups.len(), 3);
    assert!(!groups[0].contains(&"Command".to_string()));
    // Nothing changed since: an empty incremental table.
    let (_, tables) = export(&*i, Some(&next)).await.expect("incremental");
    assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 1);
    // A cookie that is not a time: a complete export.
    let (again, tables) = export(&*i, Some("not-a-time")).await.expect("complete");
    assert!(!again.incremental);
    assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 4);
    // CyberArk's variant has no incremental mode.
    let c = try_instance(
        "Usercube.SCIM.CyberArk@0000001",
        settings(&SERVER.url(&t)),
        Vec::new(),
    )
    .expect("cyberark");
    let (o, tables) = export(&*c, Some(&next)).await.expect("complete");
    assert!(!o.incremental && o.cookie.is_none());
    assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 4);
}

#[tokio::test]
async fn scim_schema_lists_resource_types_with_extensions_and_members() {
    let t = SERVER.tenant();
    let i = instance(settings(&SERVER.url(&t)), Vec::new());
    let schema = i.schema().expect("schema").schema().await.expect("schema");
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SCIMExport_Users",
            "SCIMExport_Groups",
            "SCIMExport_members_Groups"
        ]
    );
    let users = &schema.tables[0];
    let col = |n: &str| {
        users
            .columns
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(col("id").key, idlink_model::config::KeyType::Primary);
    assert_eq!(
        col("active").value_type,
        idlink_model::config::ValueType::Bool
    );
    assert!(col("emails:value").multivalued);
    assert!(!col("name:givenName").multivalued);
    col(&format!("{ENTERPRISE}:manager:value"));
    assert!(users.columns.iter().all(|c| c.name != "password"));
    assert_eq!(
        schema.tables[2]
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["value", "MemberId"]
    );
}

#[tokio::test]
async fn scim_check_connection_tells_credentials_unreachable_and_tls_apart() {
    let t = SERVER.tenant();
    let ok = instance(settings(&SERVER.url(&t)), Vec::new());
    let m = ok
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect("reached");
    assert!(
        m.contains("reached with OAuthToken") && m.contains("bulk (up to 1000 operations)"),
        "{m}"
    );
    assert!(!m.contains(SERVER.token()));
    let bad = instance(
        json!({"Server": SERVER.url(&t), "OAuthToken": "not-the-token-42"}),
        Vec::new(),
    );
    let e = bad
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("401") && text.contains("OAuthToken"),
        "{text}"
    );
    assert!(!text.contains("not-the-token-42"), "{text}");
    let down = instance(
        json!({"Server": format!("http://127.0.0.1:{}", closed_port()), "OAuthToken": "t"}),
        Vec::new(),
    );
    let e = down
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect_err("unreachable");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
    // https against a plain HTTP service: the handshake fails.
    let tls = instance(
        json!({"Server": format!("https://127.0.0.1:{}/{t}", SERVER.port()), "OAuthToken": SERVER.token()}),
        Vec::new(),
    );
    let e = tls
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect_err("tls");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
}

pub(crate) fn orders(json: Value) -> OrdersFile {
    serde_json::from_value(json).expect("orders")
}

pub(crate) async fn fulfill(
    instance: &dyn Instance,
    orders: &OrdersFile,
    dry_run: bool,
) -> Vec<OrderResult> {
    instance
        .fulfill()
        .expect("fulfill")
        .fulfill(&FulfillRequest {
            orders: &orders.orders,
            dry_run,
            progress: &NoProgress,
        })
        .await
        .expect("fulfill")
}

fn get(t: &str, path: &str) -> Value {
    let (status, body) = SERVER.get(t, path).expect("get");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn members_of(t: &str, group: &str) -> Vec<String> {
    let g = get(t, &format!("Groups/{group}"));
    let mut m: Vec<String> = g["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["value"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    m.sort();
    m
}

fn find_user(t: &str, name: &str) -> Option<Value> {
    let filter = format!("userName%20eq%20%22{name}%22");
    let list = get(t, &format!("Users?filter={filter}"));
    list["Resources"]
        .as_array()
        .and_then(|a| a.first().cloned())
}

#[tokio::test]
async fn scim_fulfill_creates_modifies_deletes_and_manages_memberships_idempotently() {
    let (t, ada, alan, staff) = small_tenant();
    let ops = SERVER.create(&t, "Groups", &group("ops", &[]));
    let i = instance(settings(&SERVER.url(&t)), Vec::new());
    let file = orders(json!({"ProvisioningOrdersList": [
        {"Id": "add-grace", "ChangeType": "Added", "ResourceType": {"Identifier": "SCIM_User"},
         "Changes": {"objectClass": "Users", "userName": "grace", "name:givenName": "Grace",
                     "name:familyName": "Hopper", "emails:value": "grace@x.org", "active": "true",
                     "password": "Sup3r-secret!", format!("{ENTERPRISE}:employeeNumber"): "E-7",
                     "groups_add": [{"id": staff}, {"displayName": "ops"}]}},
        {"Id": "mod-ada", "ChangeType": "Modified", "ResourceType": {"Identifier": "SCIM_User"},
         "Resource": {"id": ada, "userName": "ada"},
         "Changes": {"name:givenName": "Adeline", "active": "false", format!("{ENTERPRISE}:manager:value"): "boss-2",
                     "groups_remove": [staff], "groups_add": [{"id": ops}]}},
        {"Id": "del-alan", "ChangeType": "Deleted", "ResourceType": {"Identifier": "SCIM_User"},
         "Resource": {"id": alan}},
    ]}));
    let results = fulfill(&*i, &file, false).await;
    for r in &results {
        assert_eq!(r.state, OrderState::Executed, "{r:?}");
        for line in &r.operations {
            assert!(
                !line.contains("Sup3r-secret!") && !line.contains(SERVER.token()),
                "{line}"
            );
        }
    }
    assert!(
        results[0].message.starts_with("created Users "),
        "{:?}",
        results[0]
    );
    assert!(results[0].message.contains("2 links"), "{:?}", results[0]);
    let grace = find_user(&t, "grace").expect("grace created");
    let grace_id = grace["id"].as_str().expect("id").to_string();
    assert_eq!(grace["name"]["familyName"], "Hopper");
    assert_eq!(grace["emails"][0]["value"], "grace@x.org");
    assert_eq!(grace["active"], true);
    assert_eq!(grace[ENTERPRISE]["employeeNumber"], "E-7");
    let ada_now = get(&t, &format!("Users/{ada}"));
    assert_eq!(ada_now["name"]["givenName"], "Adeline");
    assert_eq!(
        ada_now["name"]["familyName"], "Tester",
        "only the changes are sent"
    );
    assert_eq!(ada_now["active"], false);
    assert_eq!(ada_now[ENTERPRISE]["manager"]["value"], "boss-2");
    assert_eq!(ada_now[ENTERPRISE]["employeeNumber"], "E-ada");
    let (status, _) = SERVER.get(&t, &format!("Users/{alan}")).expect("get");
    assert_eq!(status, 404);
    // Ada left staff and Grace joined it (whether Alan's membership went with him is the
    // service's business).
    let staff_now = members_of(&t, &staff);
    assert!(
        staff_now.contains(&grace_id) && !staff_now.contains(&ada),
        "{staff_now:?}"
    );
    let mut expected = vec![grace_id.clone(), ada.clone()];
    expected.sort();
    assert_eq!(members_of(&t, &ops), expected);
    // The same orders again: nothing is duplicated and every order is Executed.
    let again = fulfill(&*i, &file, false).await;
    for r in &again {
        assert_eq!(r.state, OrderState::Executed, "{r:?}");
    }
    assert!(
        again[0].message.contains("existed already (409)"),
        "{:?}",
        again[0]
    );
    assert!(
        again[2].message.contains("already gone (404)"),
        "{:?}",
        again[2]
    );
    let list = get(&t, "Users?filter=userName%20eq%20%22grace%22");
    assert_eq!(list["totalResults"], 1);
    assert_eq!(members_of(&t, &ops).len(), 2);
}

#[tokio::test]
async fn scim_fulfill_errors_one_order_and_goes_on() {
    let (t, ada, _, _) = small_tenant();
    let i = instance(settings(&SERVER.url(&t)), Vec::new());
    let file = orders(json!({"ProvisioningOrdersList": [
        {"ChangeType": "Modified", "ResourceType": {"Identifier": "SCIM_User"},
         "Resource": {"id": "no-such-id"}, "Changes": {"title": "x"}},
        {"ChangeType": "Modified", "ResourceType": {"Identifier": "SCIM_User"},
         "Resource": {"userName": "ada"}, "Changes": {"title": "x"}},
        {"ChangeType": "Modified", "ResourceType": {"Identifier": "SCIM_User"},
         "Resource": {"id": ada}, "Changes": {"title": "Countess"}},
        {"ChangeType": "Added", "ResourceType": {"Identifier": "SCIM_User"},
         "Changes": {"userName": "nogroup", "groups_add": [{"displayName": "nope"}]}},
    ]}));
    let r = fulfill(&*i, &file, false).await;
    assert_eq!(r[0].state, OrderState::Errored);
    assert!(r[0].message.contains("404"), "{:?}", r[0]);
    assert_eq!(r[1].state, OrderState::Errored);
    assert!(
        r[1].message.contains("`id`") && r[1].operations.is_empty(),
        "{:?}",
        r[1]
    );
    assert_eq!(r[2].state, OrderState::Executed, "{:?}", r[2]);
    assert_eq!(get(&t, &format!("Users/{ada}"))["title"], "Countess");
    assert_eq!(r[3].state, OrderState::Errored);
    assert!(
        r[3].message
            .contains("no resource of Groups has displayName \"nope\""),
        "{:?}",
        r[3]
    );
}

#[tokio::test]
async fn scim_fulfill_sends_bulk_requests_within_bulk_max_operation() {
    let (t, _, _, staff) = small_tenant();
    let proxy = FaultProxy::start(SERVER.port(), Box::new(|_, _| Fault::Forward));
    let mut s = settings(&proxy.url(&t));
    s["ServiceSupportBulk"] = json!(true);
    s["BulkMaxOperation"] = json!(4);
    let i = instance(s, Vec::new());
    let list: Vec<Value> = (0..7)
        .map(|k| {
            json!({"ChangeType": "Added", "ResourceType": {"Identifier": "SCIM_User"},
                   "Changes": {"userName": format!("bulk{k}"), "groups_add": [{"id": staff}]}})
        })
        .collect();
    let r = fulfill(&*i, &orders(json!({"ProvisioningOrdersList": list})), false).await;
    for x in &r {
        assert_eq!(x.state, OrderState::Executed, "{x:?}");
        assert!(x.message.contains("(/Bulk)"), "{x:?}");
    }
    // 7 orders of 2 operations, at most 4 operations a request: 2 orders per request.
    let bulks = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST") && r.ends_with("/v2/Bulk"))
        .count();
    assert_eq!(bulks, 4, "{:?}", proxy.requests());
    assert_eq!(members_of(&t, &staff).len(), 2 + 7);
    // Again: the creates answer 409 inside the bulk and are redone one by one, idempotently.
    let file = orders(json!({"ProvisioningOrdersList": [
        {"ChangeType": "Added", "ResourceType": {"Identifier": "SCIM_User"},
         "Changes": {"userName": "bulk0", "title": "again", "groups_add": [{"id": staff}]}}]}));
    let r = fulfill(&*i, &file, false).await;
    assert_eq!(r[0].state, OrderState::Executed, "{:?}", r[0]);
    assert!(r[0].message.contains("existed already (409)"), "{:?}", r[0]);
    assert_eq!(find_user(&t, "bulk0").expect("bulk0")["title"], "again");
    assert_eq!(members_of(&t, &staff).len(), 9);
}

#[tokio::test]
async fn scim_fulfill_puts_the_whole_resource_when_the_service_has_no_patch() {
    let server = ScimServer::start_with(&ScimOptions {
        service_provider_config: Some(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                "patch": {"supported": false}, "bulk": {"supported": false},
                "filter": {"supported": true, "maxResults": 1000},
                "changePassword": {"supported": false}, "sort": {"supported": false}, "etag": {"supported": false},
            })
            .to_string(),
        ),
        open: false,
    });
    let t = server.tenant();
    let ada = server.create(&t, "Users", &user("ada", "Ada", &["a@x.org"]));
    let proxy = FaultProxy::start(server.port(), Box::new(|_, _| Fault::Forward));
    let i = instance(
        json!({"Server": proxy.url(&t), "OAuthToken": server.token()}),
        Vec::new(),
    );
    let file = orders(json!({"ProvisioningOrdersList": [
        {"ChangeType": "Modified", "ResourceType": {"Identifier": "SCIM_User"},
         "Resource": {"id": ada}, "Changes": {"name:givenName": "Adeline", "title": "Countess", "emails:value": null}}]}));
    let r = fulfill(&*i, &file, false).await;
    assert_eq!(r[0].state, OrderState::Executed, "{:?}", r[0]);
    let methods: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|x| x.contains(&format!("/Users/{ada}")))
        .collect();
    assert_eq!(methods.len(), 2, "{methods:?}");
    assert!(
        methods[0].starts_with("GET") && methods[1].starts_with("PUT"),
        "{methods:?}"
    );
    let (_, body) = server.get(&t, &format!("Users/{ada}")).expect("get");
    let now: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(now["name"]["givenName"], "Adeline");
    assert_eq!(now["name"]["familyName"], "Tester");
    assert_eq!(now["title"], "Countess");
    assert!(now.get("emails").is_none(), "{now}");
    assert_eq!(now[ENTERPRISE]["employeeNumber"], "E-ada");
}

#[tokio::test]
async fn scim_dry_run_lists_the_requests_with_secrets_redacted_and_sends_nothing() {
    let t = SERVER.tenant();
    let proxy = FaultProxy::start(SERVER.port(), Box::new(|_, _| Fault::Forward));
    let i = instance(settings(&proxy.url(&t)), Vec::new());
    let file = orders(json!({"ProvisioningOrdersList": [
        {"ChangeType": "Added", "ResourceType": {"Identifier": "SCIM_User"},
         "Changes": {"userName": "dry", "password": "Dry-run-pw-1", "groups_add": [{"displayName": "staff"}]}},
        {"ChangeType": "Modified", "ResourceType": {"Identifier": "SCIM_User"},
         "Resource": {"id": "u-1"}, "Changes": {"password": "Dry-run-pw-2", "title": null}},
        {"ChangeType": "Deleted", "ResourceType": {"Identifier": "SCIM_User"},
         "Resource": {"id": "u-2"}},
    ]}));
    let r = fulfill(&*i, &file, true).await;
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    let all = format!("{r:?}");
    assert!(
        !all.contains("Dry-run-pw") && !all.contains(SERVER.token()),
        "{all}"
    );
    let base = format!("/{t}/v2");
    assert_eq!(r[0].operations.len(), 3, "{:?}", r[0].operations);
    assert!(
        r[0].operations[0].starts_with(&format!("POST {base}/Users {{")),
        "{:?}",
        r[0].operations
    );
    assert!(r[0].operations[0].contains("\"password\":\"**REDACTED**\""));
    assert!(
        r[0].operations[1].starts_with(&format!(
            "GET {base}/Groups?filter=displayName+eq+%22staff%22"
        )),
        "{:?}",
        r[0].operations
    );
    assert!(r[0].operations[2].contains("<id of the new resource>"));
    assert_eq!(
        r[1].operations,
        [format!(
            "PATCH {base}/Users/u-1 {{\"Operations\":[{{\"op\":\"replace\",\"path\":\"password\",\"value\":\"**REDACTED**\"}},{{\"op\":\"remove\",\"path\":\"title\"}}],\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"]}}"
        )]
    );
    assert_eq!(r[2].operations, [format!("DELETE {base}/Users/u-2")]);
    assert!(
        r.iter()
            .all(|x| x.state == OrderState::Executed && x.message.starts_with("dry run"))
    );
}

#[tokio::test]
async fn scim_oauth2_tokens_are_cached_and_fetched_again_once_on_401() {
    let t = SERVER.tenant();
    SERVER.create(&t, "Users", &user("ada", "Ada", &[]));
    let token = SERVER.token().to_string();
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = issued.clone();
    // The token endpoint lives on the proxy: its first token is stale, the next ones good.
    // The first connection names it; the second finds it in the OpenID metadata.
    let port = idlink_test_support::free_port().expect("port");
    let origin = format!("http://127.0.0.1:{port}");
    let proxy = FaultProxy::start_on(
        port,
        SERVER.port(),
        Box::new(move |r: &Request, _| {
            if r.target == "/.well-known/oauth-authorization-server" {
                return Fault::json(404, "{}");
            }
            if r.target == "/.well-known/openid-configuration" {
                return Fault::json(
                    200,
                    &format!(r#"{{"token_endpoint": "{origin}/oauth2/token"}}"#),
                );
            }
            if r.target == "/oauth2/token" {
                let body = String::from_utf8_lossy(&r.body).to_string();
                let grant_ok = body.contains("grant_type=client_credentials")
                    && body.contains("client_id=app-1")
                    && body.contains("client_secret=App-key-9");
                if !grant_ok {
                    return Fault::json(401, r#"{"error": "invalid_client"}"#);
                }
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let value = if n == 0 {
                    "stale-token"
                } else {
                    token.as_str()
                };
                return Fault::json(
                    200,
                    &format!(
                        r#"{{"access_token": "{value}", "token_type": "Bearer", "expires_in": 3600}}"#
                    ),
                );
            }
            Fault::Forward
        }),
    );
    let s = json!({"Server": proxy.url(&t), "ApplicationId": "app-1", "ApplicationKey": "App-key-9",
                   "OAuth2Url": format!("{}/oauth2/token", proxy.url(""))});
    let i = instance(s.clone(), Vec::new());
    let (_, tables) = export(&*i, None).await.expect("export");
    assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 2);
    let m = i
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect("check");
    assert!(m.contains("token obtained with ApplicationId"), "{m}");
    // One stale token, refreshed once on the 401; then the cache serves every request.
    assert_eq!(
        issued.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "{:?}",
        proxy.requests()
    );
    // Without OAuth2Url: the endpoint comes from the service's metadata.
    let mut discovered = s.clone();
    discovered
        .as_object_mut()
        .expect("object")
        .remove("OAuth2Url");
    let d = instance(discovered, Vec::new());
    let (_, tables) = export(&*d, None).await.expect("export");
    assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 2);
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r == "GET /.well-known/openid-configuration"),
        "{:?}",
        proxy.requests()
    );
    // A wrong key: refused credentials, the key never shown.
    let mut bad = s;
    bad["ApplicationKey"] = json!("Wrong-key-1");
    let e = export(&*instance(bad, Vec::new()), None)
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    assert!(
        e.to_string().contains("invalid_client") && !e.to_string().contains("Wrong-key-1"),
        "{e}"
    );
}

#[tokio::test]
async fn scim_basic_authentication_sends_login_and_password() {
    let t = SERVER.tenant();
    SERVER.create(&t, "Users", &user("ada", "Ada", &[]));
    let token = SERVER.token().to_string();
    // The service takes bearer tokens: the proxy checks basic credentials and swaps them.
    let expected = format!("Basic {}", base64_text("scim-admin:Basic-pw-3"));
    let proxy = FaultProxy::start(
        SERVER.port(),
        Box::new(move |r: &Request, _| {
            if r.header("Authorization") == Some(expected.as_str()) {
                Fault::ForwardWith(vec![("Authorization".into(), format!("Bearer {token}"))])
            } else {
                Fault::json(401, r#"{"status": "401", "detail": "bad credentials"}"#)
            }
        }),
    );
    let i = instance(
        json!({"Server": proxy.url(&t), "Login": "scim-admin", "Password": "Basic-pw-3"}),
        Vec::new(),
    );
    let (_, tables) = export(&*i, None).await.expect("export");
    assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 2);
    let wrong = instance(
        json!({"Server": proxy.url(&t), "Login": "scim-admin", "Password": "Wrong-pw-4"}),
        Vec::new(),
    );
    let e = export(&*wrong, None).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    assert!(
        e.to_string().contains("Login and Password") && !e.to_string().contains("Wrong-pw-4"),
        "{e}"
    );
}

fn base64_text(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A stale token met by requests in flight together (the export's three discovery requests
/// go at once): each comes back 401, and the token must be fetched again once, not once per
/// request (each refresh used to drop the token the previous one had just got).
#[tokio::test]
async fn regression_scim_concurrent_401s_fetch_the_oauth2_token_again_once() {
    let t = SERVER.tenant();
    SERVER.create(&t, "Users", &user("ada", "Ada", &[]));
    let token = SERVER.token().to_string();
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = issued.clone();
    let proxy = FaultProxy::start(
        SERVER.port(),
        Box::new(move |r: &Request, _| {
            if r.target == "/token" {
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let value = if n == 0 {
                    "stale-token"
                } else {
                    token.as_str()
                };
                return Fault::json(200, &format!(r#"{{"access_token": "{value}"}}"#));
            }
            Fault::Forward
        }),
    );
    let s = json!({"Server": proxy.url(&t), "ApplicationId": "app", "ApplicationKey": "key",
                   "OAuth2Url": format!("{}/token", proxy.url(""))});
    for _ in 0..3 {
        issued.store(0, std::sync::atomic::Ordering::SeqCst);
        let i = instance(s.clone(), Vec::new());
        let (_, tables) = export(&*i, None).await.expect("export");
        assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 2);
        assert_eq!(
            issued.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "{:?}",
            proxy.requests()
        );
    }
}
