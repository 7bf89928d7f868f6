//! The OpenAPI document against the router: every route documented, every documented
//! operation routed (a request to it reaches a handler, not the router's 404 or 405).

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use idlink_server::openapi::{OPERATIONS, document};

use crate::support::Fixture;

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_routed() {
    let routed: BTreeSet<(String, String)> = idlink_server::api::router()
        .routes
        .iter()
        .map(|(m, p)| (m.as_str().to_lowercase(), p.to_string()))
        .collect();
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            documented.insert((method.clone(), path.clone()));
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<&str> = idlink_server::openapi::path_parameters(path)
                .into_iter()
                .collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
            // Every schema referenced exists.
            for r in op.to_string().split("#/components/schemas/").skip(1) {
                let name = &r[..r.find('"').expect("end")];
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "{method} {path}: schema {name}"
                );
            }
        }
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes without documentation: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    assert_eq!(OPERATIONS.len(), routed.len());

    // And the router really answers each: a handler's answer, never the router's own 404/405.
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    for (method, path) in &documented {
        let concrete = path
            .replace("{connector}", "HR")
            .replace("{connection}", "HRTickets")
            .replace("{entityType}", "HR_Person")
            .replace("{key}", "E001")
            // A job that does not exist: the handler answers 404, and nothing runs.
            .replace("{job}", "NoSuchJob")
            .replace("{run}", "1")
            .replace("{order}", "1")
            .replace("{ticket}", "1")
            .replace("{task}", "1")
            .replace("{table}", "HR")
            .replace("{agent}", "Paris");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let r = c
            .api(method.clone(), &concrete, Some(serde_json::json!({})))
            .await;
        assert_ne!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.body.is_empty()),
            "{method} {concrete}: not routed"
        );
    }
    // The document is served.
    let served = c.get("/api/openapi.json").await.json();
    assert_eq!(served, doc);
    assert_eq!(served["openapi"], "3.1.0");
}
