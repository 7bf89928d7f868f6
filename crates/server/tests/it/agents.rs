//! The Agents page and the agent endpoints in process: approve and revoke from the page (with
//! the CSRF token), a one-time enrolment token shown once; the agent endpoints refuse requests
//! without a session, undeclared agents and keys that are not age keys; an agent's table
//! that arrives damaged (or not at all) is not committed.

use axum::http::{Method, StatusCode};
use idlink_store::AgentState;
use serde_json::json;

use crate::support::{Fixture, csrf_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_page_approves_revokes_and_gives_enrolment_tokens() {
    let f = Fixture::new().await;
    let key = idlink_secrets::AgentIdentity::generate()
        .recipient()
        .to_string();
    f.state
        .store()
        .enrol_agent("Paris", &key, None)
        .await
        .expect("enrols");
    let mut c = f.admin().await;
    let page = c.get("/agents").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("id=\"agent-Paris\" data-state=\"Pending\""),
        "{}",
        page.body
    );
    assert!(page.body.contains(&key));
    let csrf = csrf_in(&page.body).expect("csrf");

    // Without the CSRF token: refused, nothing changes.
    let r = c.post_form("/agents/Paris/approve", &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c.post_form("/agents/Paris/approve", &[], Some(&csrf)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("data-state=\"Approved\""), "{}", r.body);
    let a = f
        .state
        .store()
        .agent("Paris")
        .await
        .expect("reads")
        .expect("found");
    assert_eq!(
        (a.state, a.decided_by.as_deref()),
        (AgentState::Approved, Some("admin"))
    );

    let r = c.post_form("/agents/Paris/revoke", &[], Some(&csrf)).await;
    assert!(r.body.contains("data-state=\"Revoked\""), "{}", r.body);
    // A revoked agent has no Approve button, and cannot be approved again.
    assert!(!r.body.contains("/agents/Paris/approve"), "{}", r.body);
    let r = c.api(Method::POST, "/api/agents/Paris/approve", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // A one-time token, shown once on the page; its hash only in the store.
    let r = c
        .post_form("/agents/tokens", &[("agent", "Lyon")], Some(&csrf))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r
        .body
        .split("<code id=\"enrolment-token\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the token is shown")
        .to_string();
    assert!(token.len() >= 32, "{token}");
    let again = c.get("/agents").await;
    assert!(!again.body.contains(&token), "shown once");
    assert_eq!(
        f.state
            .store()
            .use_enrolment_token(&idlink_server::auth::token_hash(&token), "Lyon")
            .await
            .expect("runs")
            .as_deref(),
        Some("admin")
    );
    let audit = c.get("/api/audit").await.body;
    for action in ["agent-approve", "agent-revoke", "agent-token"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    // Signed out: the page asks to sign in.
    let r = f.anonymous().get("/agents").await;
    assert!(r.status.is_redirection(), "{}", r.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_endpoints_need_a_session_a_declared_agent_and_an_age_key() {
    let f = Fixture::new().await;
    let mut anon = f.anonymous();
    for (method, path) in [
        (Method::GET, "/api/agent/work"),
        (Method::GET, "/api/agent/configuration"),
        (Method::POST, "/api/agent/tasks/1/result"),
    ] {
        let r = anon
            .api(method.clone(), path, Some(json!({ "lease": "x" })))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            r.body
        );
    }
    // An agent the configuration does not declare cannot enrol; a key that is not an age
    // public key is refused.
    let key = idlink_secrets::AgentIdentity::generate();
    let r = anon
        .api(
            Method::POST,
            "/api/agent/enrol",
            Some(json!({ "agent": "Nowhere", "publicKey": key.recipient().to_string() })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = anon
        .api(
            Method::POST,
            "/api/agent/enrol",
            Some(json!({ "agent": "Local", "publicKey": "not-a-key" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // The embedded agent's identifier is not for a remote agent.
    let r = anon
        .api(
            Method::POST,
            "/api/agent/enrol",
            Some(json!({ "agent": "Local", "publicKey": key.recipient().to_string() })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

async fn gzip(bytes: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(bytes)
        .read_to_end(&mut out)
        .await
        .expect("compresses");
    out
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Agent Paris enrolled, with the session "paris-session", holding a task of `kind` on
/// connection HRPeople under lease "L1"; its id.
async fn paris_holds_a_task(store: &idlink_store::Store, kind: &str) -> i64 {
    let key = idlink_secrets::AgentIdentity::generate()
        .recipient()
        .to_string();
    store
        .enrol_agent("Paris", &key, Some("test"))
        .await
        .expect("enrols");
    store
        .create_agent_session(
            &idlink_server::auth::token_hash("paris-session"),
            "Paris",
            idlink_store::agents::now_ms() + 60_000,
        )
        .await
        .expect("session");
    let id = store
        .queue_agent_task("Paris", kind, "HRPeople", "{}")
        .await
        .expect("queues");
    let task = store
        .claim_agent_task(
            "Paris",
            "L1",
            "agent Paris",
            60_000,
            2,
            idlink_store::agents::now_ms(),
        )
        .await
        .expect("claims")
        .expect("one");
    assert_eq!(task.id, id);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_arrives_damaged_or_unannounced_is_not_committed() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let f = Fixture::new().await;
    let store = f.state.store();
    let id = paris_holds_a_task(store, "export").await;
    let table = b"EmployeeId,FirstName\nE1,Ada\n";
    let put = |hash: String, body: Vec<u8>, name: &str| {
        Request::put(format!("/api/agent/tasks/{id}/tables/{name}?lease=L1"))
            .header("authorization", "Bearer paris-session")
            .header("x-idlink-sha256", hash)
            .body(Body::from(body))
            .expect("request")
    };
    // Damaged: the hash does not match: refused (503: send it again), nothing kept.
    let r = f
        .app
        .clone()
        .oneshot(put(sha256(b"other"), gzip(table).await, "HRPeople"))
        .await
        .expect("answers");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Not gzip: refused.
    let r = f
        .app
        .clone()
        .oneshot(put(sha256(table), table.to_vec(), "HRPeople"))
        .await
        .expect("answers");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Another connection's table: refused.
    let r = f
        .app
        .clone()
        .oneshot(put(sha256(table), gzip(table).await, "AD_users"))
        .await
        .expect("answers");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A result naming a table that was not received whole: the task is Errored, nothing
    // committed.
    let mut c = f.anonymous();
    let result = json!({ "lease": "L1", "ok": { "package": "Usercube.CSV@0000001", "incremental": false,
        "tables": [{ "name": "HRPeople", "rows": 1, "bytes": 30, "sha256": sha256(table), "columns": [] }],
        "cookie": null, "durationMs": 5 } });
    let req = Request::post(format!("/api/agent/tasks/{id}/result"))
        .header("authorization", "Bearer paris-session")
        .header("content-type", "application/json")
        .body(Body::from(result.to_string()))
        .expect("request");
    let r = c.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "Errored", "{}", r.body);
    assert!(r.body.contains("not received whole"), "{}", r.body);
    assert!(!f.dir.path().join("work/ExportOutput/HRPeople.csv").exists());
    let t = store.agent_task(id).await.expect("reads").expect("found");
    assert_eq!(t.state, "Errored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_is_rate_limited() {
    let f = Fixture::new().await;
    let mut anon = f.anonymous();
    let key = idlink_secrets::AgentIdentity::generate()
        .recipient()
        .to_string();
    let mut statuses = Vec::new();
    for _ in 0..70 {
        let r = anon
            .api(
                Method::POST,
                "/api/agent/enrol",
                Some(json!({ "agent": "Nowhere", "publicKey": key })),
            )
            .await;
        statuses.push(r.status);
    }
    // 60 a minute from one address are answered (the agent is not declared: 404), then 429.
    assert!(
        statuses[..60].iter().all(|s| *s == StatusCode::NOT_FOUND),
        "{statuses:?}"
    );
    assert!(
        statuses[60..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// An agent's result over the 1 MiB every other request is held to (a batch of 500 orders'
/// outcomes with the requests sent, a large schema) was refused with 413, and the task was
/// retried, then Errored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_result_larger_than_a_mebibyte_is_accepted() {
    use axum::body::Body;
    use axum::http::Request;
    let f = Fixture::new().await;
    let store = f.state.store();
    let id = paris_holds_a_task(store, "check").await;
    let big = "x".repeat(3 << 20);
    let body = json!({ "lease": "L1", "ok": { "reachable": true, "message": big } });
    let req = Request::post(format!("/api/agent/tasks/{id}/result"))
        .header("authorization", "Bearer paris-session")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let r = f.anonymous().send(req).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        &r.body[..r.body.len().min(300)]
    );
    let t = store.agent_task(id).await.expect("reads").expect("found");
    assert_eq!(t.state, "Done");
    // Every other request is still held to 1 MiB.
    let req = Request::post("/api/agent/enrol")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({ "agent": big, "publicKey": "k" }).to_string(),
        ))
        .expect("request");
    let r = f.anonymous().send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}
