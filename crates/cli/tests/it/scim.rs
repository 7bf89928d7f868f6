//! A SCIM connection end to end against scim2-server: check-connection, export (users,
//! groups, memberships; then incremental), refresh-schema, fulfill (dry run, then for real),
//! with the bearer token and an order's password never in any output, report or file.

use std::path::Path;
use std::sync::LazyLock;

use idlink_test_support::ScimServer;

static SERVER: LazyLock<ScimServer> = LazyLock::new(ScimServer::start);

const CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Agent Identifier="Local" DisplayName_L1="Local agent" />
  <Connector Identifier="Cloud" DisplayName_L1="Cloud application" Agent="Local" />
  <Connection Identifier="CloudSCIM" DisplayName_L1="Cloud (SCIM)" Connector="Cloud"
              Package="Usercube.SCIM@0000001" />

  <EntityType Identifier="Cloud_User" DisplayName_L1="Cloud user">
    <Property Identifier="id" DisplayName_L1="Id" IsKey="true" />
    <Property Identifier="userName" DisplayName_L1="User name" />
    <Property Identifier="givenName" DisplayName_L1="Given name" />
    <Property Identifier="groups" DisplayName_L1="Groups" Type="ForeignKey" />
  </EntityType>
  <EntityType Identifier="Cloud_Group" DisplayName_L1="Cloud group">
    <Property Identifier="id" DisplayName_L1="Id" IsKey="true" />
    <Property Identifier="displayName" DisplayName_L1="Name" />
    <Property Identifier="members" DisplayName_L1="Members" Type="ForeignKey" />
  </EntityType>
  <EntityAssociation Identifier="Cloud_Memberships" DisplayName_L1="Memberships"
                     Property1="Cloud_Group:members" Property2="Cloud_User:groups"
                     IsProperty1Collection="true" IsProperty2Collection="true" />

  <EntityTypeMapping Identifier="Cloud_User" Connector="Cloud" ConnectionTable="CloudSCIM_Users">
    <Property Identifier="id" ConnectionColumn="id" IsPrimaryKey="true" />
    <Property Identifier="userName" ConnectionColumn="userName" IsUniqueKey="true" />
    <Property Identifier="givenName" ConnectionColumn="name:givenName" />
  </EntityTypeMapping>
  <EntityTypeMapping Identifier="Cloud_Group" Connector="Cloud" ConnectionTable="CloudSCIM_Groups">
    <Property Identifier="id" ConnectionColumn="id" IsPrimaryKey="true" />
    <Property Identifier="displayName" ConnectionColumn="displayName" />
  </EntityTypeMapping>
  <EntityAssociationMapping Identifier="Cloud_Memberships" Connector="Cloud" ConnectionTable="CloudSCIM_members_Groups"
                            Column1="value" EntityPropertyMapping1="Cloud_Group:id"
                            Column2="MemberId" EntityPropertyMapping2="Cloud_User:id" />

  <ResourceType Identifier="Cloud_Account" DisplayName_L1="Cloud account"
                SourceEntityType="Cloud_User" TargetEntityType="Cloud_User">
    <ScalarRule Property="userName" Binding="userName" />
  </ResourceType>
  <ScimResourceTypeMapping Identifier="Cloud_Account" Connection="CloudSCIM" DefaultObjectClass="Users" />
</ConfigurationFile>
"#;

const PASSWORD: &str = "Order-Pa55word-77";

/// A configuration folder for a tenant; the token only in the environment.
fn setup(tenant: &str) -> (tempfile::TempDir, Vec<(&'static str, String)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).expect("mkdir");
    std::fs::write(conf.join("cloud.xml"), CONFIG).expect("write");
    let settings = format!(
        r#"{{"Connections": {{"CloudSCIM": {{"Server": "{}", "PageSize": 2}}}}}}"#,
        SERVER.url(tenant)
    );
    std::fs::write(conf.join("appsettings.agent.json"), settings).expect("write");
    let env = vec![(
        "IDLINK__Connections__CloudSCIM__OAuthToken",
        SERVER.token().to_string(),
    )];
    (dir, env)
}

fn run(dir: &Path, args: &[&str], env: &[(&'static str, String)]) -> (i32, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out) = crate::support::run(dir, args, &env);
    assert!(!out.contains(SERVER.token()), "the token leaked: {out}");
    assert!(!out.contains(PASSWORD), "the password leaked: {out}");
    (code, out)
}

/// Every file under `dir` but the orders given as input, searched for the secrets.
fn assert_no_secret_in_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "orders.json") {
            continue;
        }
        if path.is_dir() {
            assert_no_secret_in_files(&path);
        } else {
            let bytes = std::fs::read(&path).expect("read");
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SERVER.token()) && !text.contains(PASSWORD),
                "a secret in {}",
                path.display()
            );
        }
    }
}

#[test]
fn scim_connection_checks_exports_refreshes_and_fulfills_through_the_cli() {
    let t = SERVER.tenant();
    let user = |name: &str, given: &str| {
        format!(
            r#"{{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "{name}", "name": {{"givenName": "{given}"}}}}"#
        )
    };
    let ada = SERVER.create(&t, "Users", &user("ada", "Ada"));
    let alan = SERVER.create(&t, "Users", &user("alan", "Alan"));
    let bob = SERVER.create(&t, "Users", &user("bob", "Bob"));
    let staff = SERVER.create(
        &t,
        "Groups",
        &format!(
            r#"{{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "staff", "members": [{{"value": "{ada}"}}, {{"value": "{alan}"}}]}}"#
        ),
    );
    let (dir, env) = setup(&t);
    let d = dir.path();

    let (code, out) = run(d, &["check-connection", "--connection", "CloudSCIM"], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reached with OAuthToken"), "{out}");

    // Pages of 2 resources: three users take two pages.
    let (code, out) = run(d, &["export", "--connection", "CloudSCIM"], &env);
    assert_eq!(code, 0, "{out}");
    let users =
        std::fs::read_to_string(d.join("work/ExportOutput/CloudSCIM_Users.csv")).expect("users");
    let mut lines: Vec<&str> = users.lines().collect();
    assert_eq!(lines.remove(0), "id,userName,name:givenName");
    lines.sort_by_key(|l| l.split(',').nth(1).map(str::to_string));
    assert_eq!(
        lines,
        [
            format!("{ada},ada,Ada"),
            format!("{alan},alan,Alan"),
            format!("{bob},bob,Bob")
        ]
    );
    let groups =
        std::fs::read_to_string(d.join("work/ExportOutput/CloudSCIM_Groups.csv")).expect("groups");
    assert_eq!(groups, format!("id,displayName\n{staff},staff\n"));
    let members = std::fs::read_to_string(d.join("work/ExportOutput/CloudSCIM_members_Groups.csv"))
        .expect("members");
    let mut m: Vec<&str> = members.lines().skip(1).collect();
    m.sort();
    let mut expected = vec![format!("{staff},{ada}"), format!("{staff},{alan}")];
    expected.sort();
    assert_eq!(m, expected, "{members}");

    let (code, out) = run(
        d,
        &[
            "refresh-schema",
            "--connection",
            "CloudSCIM",
            "--format",
            "json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let json_start = out.find('{').expect("json");
    let schema: serde_json::Value =
        serde_json::from_str(out[json_start..].trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let tables: Vec<&str> = schema["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        tables,
        [
            "CloudSCIM_Users",
            "CloudSCIM_Groups",
            "CloudSCIM_members_Groups"
        ],
        "{out}"
    );

    let orders = format!(
        r#"{{"ProvisioningOrdersList": [
          {{"Id": "add-grace", "ChangeType": "Added", "ResourceType": {{"Identifier": "Cloud_Account"}},
            "Changes": {{"userName": "grace", "name:givenName": "Grace", "password": "{PASSWORD}",
                         "groups_add": [{{"id": "{staff}"}}]}}}},
          {{"Id": "del-bob", "ChangeType": "Deleted", "ResourceType": {{"Identifier": "Cloud_Account"}},
            "Resource": {{"id": "{bob}"}}}}
        ]}}"#
    );
    std::fs::write(d.join("orders.json"), orders).expect("write");
    let (code, out) = run(
        d,
        &[
            "fulfill",
            "--connection",
            "CloudSCIM",
            "--orders",
            "orders.json",
            "--dry-run",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("POST /{t}/v2/Users"))
            && out.contains("**REDACTED**")
            && out.contains(&format!("DELETE /{t}/v2/Users/{bob}")),
        "{out}"
    );
    // The dry run sent nothing: Bob is still there, Grace is not.
    let (status, _) = SERVER.get(&t, &format!("Users/{bob}")).expect("get");
    assert_eq!(status, 200);
    let (_, list) = SERVER
        .get(&t, "Users?filter=userName%20eq%20%22grace%22")
        .expect("get");
    assert!(list.contains("\"totalResults\": 0"), "{list}");

    let (code, out) = run(
        d,
        &[
            "fulfill",
            "--connection",
            "CloudSCIM",
            "--orders",
            "orders.json",
            "--results",
            "results.json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("results.json")).expect("results"))
            .expect("json");
    assert_eq!(results["results"][0]["state"], "Executed", "{results}");
    assert_eq!(results["results"][1]["state"], "Executed", "{results}");
    let (status, _) = SERVER.get(&t, &format!("Users/{bob}")).expect("get");
    assert_eq!(status, 404);
    let (_, list) = SERVER
        .get(&t, "Users?filter=userName%20eq%20%22grace%22")
        .expect("get");
    assert!(list.contains("\"totalResults\": 1"), "{list}");

    // Incremental: the cookie the first export left; only Grace changed since.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out) = run(d, &["export", "--connection", "CloudSCIM"], &env);
    assert_eq!(code, 0, "{out}");
    let users =
        std::fs::read_to_string(d.join("work/ExportOutput/CloudSCIM_Users.csv")).expect("users");
    assert!(
        users.starts_with("id,userName,name:givenName,Command\n")
            && users.contains(",grace,Grace,"),
        "{users}"
    );

    assert_no_secret_in_files(d);
}

#[test]
fn scim_check_connection_with_a_wrong_token_fails_without_showing_it() {
    let t = SERVER.tenant();
    let (dir, _) = setup(&t);
    let env = vec![(
        "IDLINK__Connections__CloudSCIM__OAuthToken",
        "Wrong-token-5150".to_string(),
    )];
    let (code, out) = run(
        dir.path(),
        &["check-connection", "--connection", "CloudSCIM"],
        &env,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("401") && out.contains("OAuthToken"), "{out}");
    assert!(!out.contains("Wrong-token-5150"), "{out}");
}

/// Issue 13: Modified and Deleted orders of a resource type mapped to another SCIM resource
/// type than Users (here `DefaultObjectClass="Groups"`) were sent to `/Users` (a DELETE there
/// even answered 404, taken for "already gone": the group stayed and the order said Executed).
#[test]
fn regression_scim_group_orders_modify_and_delete_groups_not_users() {
    let t = SERVER.tenant();
    let user = |name: &str| {
        format!(
            r#"{{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "{name}"}}"#
        )
    };
    let group = |name: &str, member: &str| {
        format!(
            r#"{{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "{name}", "members": [{{"value": "{member}"}}]}}"#
        )
    };
    let ada = SERVER.create(&t, "Users", &user("ada"));
    let bob = SERVER.create(&t, "Users", &user("bob"));
    let staff = SERVER.create(&t, "Groups", &group("staff", &ada));
    let old = SERVER.create(&t, "Groups", &group("old", &bob));
    let (dir, env) = setup(&t);
    let d = dir.path();
    let groups = r#"  <ResourceType Identifier="Cloud_GroupResource" DisplayName_L1="Cloud group"
                SourceEntityType="Cloud_Group" TargetEntityType="Cloud_Group" />
  <ScimResourceTypeMapping Identifier="Cloud_GroupResource" Connection="CloudSCIM" DefaultObjectClass="Groups" />
</ConfigurationFile>"#;
    std::fs::write(
        d.join("conf/cloud.xml"),
        CONFIG.replace("</ConfigurationFile>", groups),
    )
    .expect("write");
    let orders = format!(
        r#"{{"ProvisioningOrdersList": [
          {{"Id": "rename-staff", "ChangeType": "Modified", "ResourceType": {{"Identifier": "Cloud_GroupResource"}},
            "Resource": {{"id": "{staff}", "displayName": "staff"}},
            "Changes": {{"displayName": "staff-2", "members_add": [{{"id": "{bob}"}}],
                         "members_remove": [{{"id": "{ada}"}}]}}}},
          {{"Id": "delete-old", "ChangeType": "Deleted", "ResourceType": {{"Identifier": "Cloud_GroupResource"}},
            "Resource": {{"id": "{old}"}}}}
        ]}}"#
    );
    std::fs::write(d.join("orders.json"), orders).expect("write");
    let fulfill = |extra: &[&str]| {
        let mut args = vec![
            "fulfill",
            "--connection",
            "CloudSCIM",
            "--orders",
            "orders.json",
            "--results",
            "results.json",
        ];
        args.extend_from_slice(extra);
        run(d, &args, &env)
    };

    let (code, out) = fulfill(&["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("PATCH /{t}/v2/Groups/{staff}"))
            && out.contains(&format!("DELETE /{t}/v2/Groups/{old}"))
            && !out.contains("/v2/Users/"),
        "{out}"
    );

    let (code, out) = fulfill(&[]);
    assert_eq!(code, 0, "{out}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("results.json")).expect("results"))
            .expect("json");
    for r in results["results"].as_array().expect("results") {
        assert_eq!(r["state"], "Executed", "{results}");
        let ops = r["operations"].to_string();
        assert!(!ops.contains("/v2/Users/"), "{results}");
    }
    // The group was modified: renamed, Bob in, Ada out.
    let (status, body) = SERVER.get(&t, &format!("Groups/{staff}")).expect("get");
    assert_eq!(status, 200, "{body}");
    let g: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(g["displayName"], "staff-2", "{body}");
    let members: Vec<&str> = g["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(members, [bob.as_str()], "{body}");
    // The other group is gone; both users are still there.
    let (status, body) = SERVER.get(&t, &format!("Groups/{old}")).expect("get");
    assert_eq!(status, 404, "{body}");
    for u in [&ada, &bob] {
        let (status, body) = SERVER.get(&t, &format!("Users/{u}")).expect("get");
        assert_eq!(status, 200, "{body}");
    }
    assert_no_secret_in_files(d);
}
