//! The JSON API through `oneshot`: connectors, connections with masked settings, schema
//! refresh (one, all of a connector) with each state, check connection, export now,
//! resources with links, mappings; and no response holding a secured value.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{Fixture, SECRET, SECRET_LOGIN};

#[tokio::test]
async fn connectors_and_connections_with_each_schema_state() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    let r = c.api(Method::GET, "/api/connectors", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!([
            { "id": "Directory", "name": "Directory", "connections": 1 },
            { "id": "HR", "name": "Human resources", "connections": 3 },
        ])
    );
    let hr = c.api(Method::GET, "/api/connectors/HR", None).await.json();
    let states: Vec<(&str, &str)> = hr["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap_or_default(),
                x["schema"]["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("HRPeople", "never-refreshed"),
            ("HROrganizations", "never-refreshed"),
            ("HRTickets", "none")
        ]
    );
    assert_eq!(
        hr["connections"][2]["schema"]["message"],
        "There is no schema for this connection"
    );

    // Refresh one.
    let r = c
        .api(
            Method::POST,
            "/api/connections/HRPeople/refresh-schema",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(
        (
            j["outcome"].as_str(),
            j["tables"].as_u64(),
            j["columns"].as_u64()
        ),
        (Some("refreshed"), Some(1), Some(6))
    );
    let schema = c
        .api(Method::GET, "/api/connections/HRPeople/schema", None)
        .await
        .json();
    assert_eq!(schema["state"]["state"], "refreshed");
    assert_eq!(schema["state"]["refreshedAt"], j["refreshedAt"]);
    assert_eq!(schema["tables"][0]["name"], "HRPeople");
    assert_eq!(schema["tables"][0]["columns"][0]["name"], "EmployeeId");

    // A failing refresh is an answer (recorded), not an error.
    let r = c
        .api(
            Method::POST,
            "/api/connections/DirectoryLDAP/refresh-schema",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["outcome"], "failed");
    assert!(
        j["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1:9")),
        "{j}"
    );
    let d = c
        .api(Method::GET, "/api/connections/DirectoryLDAP", None)
        .await
        .json();
    assert_eq!(d["schema"]["state"], "failed");
    assert_eq!(d["schema"]["failedAt"], j["failedAt"]);

    // Refresh all schemas of HR: each connection, the one without schema said so.
    let r = c
        .api(Method::POST, "/api/connectors/HR/refresh-schemas", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let outcomes: Vec<String> = r.json()["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| {
            format!(
                "{}={}",
                x["connection"].as_str().unwrap_or_default(),
                x["outcome"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "HRPeople=refreshed",
            "HROrganizations=refreshed",
            "HRTickets=none"
        ]
    );

    // Unknown names are 404 with a suggestion.
    let r = c.api(Method::GET, "/api/connectors/hr", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("did you mean 'HR'?"), "{}", r.body);
    let r = c
        .api(Method::POST, "/api/connections/Nope/refresh-schema", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

#[tokio::test]
async fn secured_settings_come_back_as_set_flags_only() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    let d = c
        .api(Method::GET, "/api/connections/DirectoryLDAP", None)
        .await
        .json();
    let server = &d["settings"]["Servers"][0];
    assert_eq!(server["Password"], json!({ "secured": true, "set": true }));
    assert_eq!(server["Login"], json!({ "secured": true, "set": true }));
    assert_eq!(server["Server"], "ldap://127.0.0.1:9");
    // Secured fields not given are shown as not set.
    assert_eq!(
        d["settings"]["Password"],
        json!({ "secured": true, "set": false })
    );
    let p = c
        .api(Method::GET, "/api/connections/HRPeople", None)
        .await
        .json();
    assert_eq!(p["settings"]["Path"], "data/hr_people.csv");
}

#[tokio::test]
async fn check_connection_and_export_now_are_counted_in_the_metrics() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    let r = c
        .api(Method::POST, "/api/connections/HRPeople/check", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["reachable"], true);
    let r = c
        .api(Method::POST, "/api/connections/DirectoryLDAP/check", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["reachable"], false);

    let r = c
        .api(Method::POST, "/api/connections/HRPeople/export", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["connection"], "HRPeople");
    assert_eq!(
        j["tables"][0]["rows"].as_u64(),
        Some(
            std::fs::read_to_string(f.conf().join("data/hr_people.csv"))
                .expect("read")
                .lines()
                .count() as u64
                - 1
        )
    );
    let r = c
        .api(Method::POST, "/api/connections/DirectoryLDAP/export", None)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);

    let m = c.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    for line in [
        "idlink_exports_total{connection=\"HRPeople\",outcome=\"ok\"} 1",
        "idlink_exports_total{connection=\"DirectoryLDAP\",outcome=\"failed\"} 1",
        "idlink_connection_checks_total{connection=\"HRPeople\",outcome=\"ok\"} 1",
        "idlink_export_duration_seconds_count{connection=\"HRPeople\"} 1",
        "idlink_errors_total{connection=\"DirectoryLDAP\",operation=\"export\",kind=\"unavailable\"} 1",
    ] {
        assert!(m.body.contains(line), "{line} not in\n{}", m.body);
    }
}

/// Exports and synchronizes HR so the store holds people, organizations and their links.
pub async fn load_hr(f: &Fixture) {
    let engine = f.state.engine().expect("engine");
    let cancel = idlink_engine::CancellationToken::new();
    for id in ["HRPeople", "HROrganizations"] {
        engine
            .open(id)
            .expect("opens")
            .export(
                &idlink_engine::ExportOptions::default(),
                std::sync::Arc::new(idlink_packages::api::NoProgress),
                &cancel,
            )
            .await
            .expect("exports");
    }
    engine
        .sync(
            f.state.store(),
            "HR",
            &idlink_engine::sync::SyncOptions {
                mode: idlink_engine::sync::SyncMode::Initial,
                force: false,
            },
            &idlink_packages::api::NoProgress,
            &cancel,
        )
        .await
        .expect("syncs");
}

#[tokio::test]
async fn resources_search_and_read_with_links() {
    let f = Fixture::new().await;
    load_hr(&f).await;
    let mut c = f.admin().await;
    let types = c.api(Method::GET, "/api/entity-types", None).await.json();
    let person = types
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["id"] == "HR_Person")
        .expect("declared");
    assert!(
        person["properties"]
            .as_array()
            .expect("properties")
            .iter()
            .any(|p| p == "FirstName")
    );
    let r = c
        .api(
            Method::GET,
            "/api/entity-types/HR_Person/resources?q=lovelace",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["total"], 1);
    assert_eq!(j["resources"][0]["key"], "E001");
    assert_eq!(j["resources"][0]["properties"]["FirstName"], "Ada");
    let all = c
        .api(Method::GET, "/api/entity-types/HR_Person/resources", None)
        .await
        .json();
    assert!(all["total"].as_u64().unwrap_or(0) > 1);

    let r = c
        .api(
            Method::GET,
            "/api/entity-types/HR_Person/resources/E001",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["links"][0]["association"], "HR_Person_Organization");
    assert_eq!(j["links"][0]["keys"], json!(["ENG"]));
    let org = c
        .api(
            Method::GET,
            "/api/entity-types/HR_Organization/resources/ENG",
            None,
        )
        .await
        .json();
    let members = org["links"][0]["keys"].as_array().expect("members");
    assert!(members.iter().any(|k| k == "E001"), "{org}");

    let r = c
        .api(
            Method::GET,
            "/api/entity-types/HR_Person/resources/NOPE",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = c
        .api(Method::GET, "/api/entity-types/HR_Persons/resources", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("did you mean 'HR_Person'?"), "{}", r.body);

    let maps = c
        .api(Method::GET, "/api/entity-type-mappings", None)
        .await
        .json();
    let person = maps
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["entityType"] == "HR_Person")
        .expect("mapped");
    assert_eq!(person["connectionTable"], "HRPeople");
    assert!(
        person["location"]
            .as_str()
            .is_some_and(|l| l.contains("hr.xml:")),
        "{person}"
    );
}

/// Every API response and every page, after every action, searched for the fixture's secured
/// values.
#[tokio::test]
async fn no_response_holds_a_secured_value() {
    let f = Fixture::new().await;
    load_hr(&f).await;
    let mut c = f.admin().await;
    let mut bodies = Vec::new();
    for (method, path) in [
        (
            Method::POST,
            "/api/connections/DirectoryLDAP/refresh-schema",
        ),
        (Method::POST, "/api/connectors/Directory/refresh-schemas"),
        (Method::POST, "/api/connections/DirectoryLDAP/check"),
        (Method::POST, "/api/connections/DirectoryLDAP/export"),
        (Method::GET, "/api/openapi.json"),
        (Method::GET, "/api/me"),
        (Method::GET, "/api/configuration"),
        (Method::GET, "/api/connectors"),
        (Method::GET, "/api/connectors/Directory"),
        (Method::GET, "/api/connections"),
        (Method::GET, "/api/connections/DirectoryLDAP"),
        (Method::GET, "/api/connections/DirectoryLDAP/schema"),
        (Method::GET, "/api/entity-types"),
        (Method::GET, "/api/entity-types/HR_Person/resources"),
        (Method::GET, "/api/entity-types/HR_Person/resources/E001"),
        (Method::GET, "/api/entity-type-mappings"),
        (Method::GET, "/api/audit"),
    ] {
        let r = c.api(method, path, None).await;
        bodies.push((path.to_string(), r.body));
    }
    for path in [
        "/connections/DirectoryLDAP/refresh-schema",
        "/connections/DirectoryLDAP/check",
        "/connections/DirectoryLDAP/export",
        "/connectors/Directory/refresh-schemas",
    ] {
        let r = c.post(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        bodies.push((path.to_string(), r.body));
    }
    for path in [
        "/",
        "/connectors/Directory",
        "/connectors/HR",
        "/connections/DirectoryLDAP",
        "/connections/HRPeople",
        "/resources",
        "/resources/HR_Person",
        "/resources/HR_Person/E001",
        "/audit",
        "/configuration",
        "/metrics",
    ] {
        let r = c.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        bodies.push((path.to_string(), r.body));
    }
    assert!(bodies.len() > 25);
    for (path, body) in &bodies {
        for secret in [SECRET, SECRET_LOGIN, "canary"] {
            assert!(
                !body.to_lowercase().contains(&secret.to_lowercase()),
                "{path} holds a secured value:\n{body}"
            );
        }
    }
    // The failure recorded in the store has none either.
    let state = f
        .state
        .store()
        .schema_state("DirectoryLDAP")
        .await
        .expect("reads")
        .expect("recorded");
    assert!(!state.failure.expect("failed").message.contains(SECRET));
}
