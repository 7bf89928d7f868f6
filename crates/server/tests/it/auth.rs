//! Sign-in, sessions, CSRF, API tokens, roles, rate limiting, security headers, audit log.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use crate::support::{ADMIN_PASSWORD, Fixture};

#[tokio::test]
async fn without_credentials_the_api_says_401_and_pages_go_to_the_login() {
    let f = Fixture::new().await;
    let mut c = f.anonymous();
    let r = c.get("/api/connectors").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["message"], "sign in first");
    let r = c.get("/connectors/HR").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), "/login");
    // Health and metrics answer without credentials.
    assert_eq!(c.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(c.get("/metrics").await.status, StatusCode::OK);
    // A wrong bearer token is refused outright.
    c.bearer = Some("not-a-token".into());
    assert_eq!(
        c.get("/api/connectors").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn session_cookies_are_httponly_strict_and_secure_under_tls() {
    for tls in [false, true] {
        let f = Fixture::with_tls(tls).await;
        let mut c = f.anonymous();
        c.get("/login").await;
        let r = c.try_login("admin", ADMIN_PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let cookie = r
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .find(|v| v.starts_with("idlink_session="))
            .expect("a session cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        assert_eq!(cookie.contains("Secure"), tls, "{cookie}");
        assert_eq!(
            r.headers.contains_key(header::STRICT_TRANSPORT_SECURITY),
            tls
        );
        // Signed out, the cookie no longer works.
        let r = c.post("/logout").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(c.get("/api/me").await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn csrf_is_refused_without_the_token() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    // A form without the token, with a wrong one, and an API call without the header.
    let r = c
        .post_form("/connections/HRPeople/refresh-schema", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("CSRF"), "{}", r.body);
    let r = c
        .post_form("/connections/HRPeople/refresh-schema", &[], Some("wrong"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let req = Request::post("/api/connections/HRPeople/refresh-schema")
        .body(Body::empty())
        .expect("request");
    let r = c.send(req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["status"], 403);
    // Nothing was refreshed.
    assert!(
        f.state
            .store()
            .schema_state("HRPeople")
            .await
            .expect("reads")
            .is_none()
    );
    // With the token, it runs.
    let r = c.post("/connections/HRPeople/refresh-schema").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        f.state
            .store()
            .schema_state("HRPeople")
            .await
            .expect("reads")
            .is_some()
    );

    // The login form is protected too (double submit).
    let mut anon = f.anonymous();
    let r = anon
        .post_form(
            "/login",
            &[("name", "admin"), ("password", ADMIN_PASSWORD)],
            Some("forged"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!anon.cookies.iter().any(|(k, _)| k == "idlink_session"));
}

#[tokio::test]
async fn api_tokens_need_no_csrf_and_act_as_their_user() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    let r = c
        .api(Method::POST, "/api/tokens", Some(json!({ "name": "ci" })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = r.json()["token"].as_str().expect("token").to_string();
    let mut bot = f.anonymous();
    bot.bearer = Some(token);
    assert_eq!(
        bot.api(Method::GET, "/api/me", None).await.json()["name"],
        "admin"
    );
    let r = bot
        .api(
            Method::POST,
            "/api/connections/HRPeople/refresh-schema",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn an_operator_runs_work_but_cannot_administer() {
    let f = Fixture::new().await;
    let mut admin = f.admin().await;
    let r = admin
        .api(
            Method::POST,
            "/api/users",
            Some(json!({ "name": "olga", "password": "operator-password-1", "role": "operator" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = admin
        .api(
            Method::POST,
            "/api/users",
            Some(json!({ "name": "x", "password": "short", "role": "operator" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut op = f.login("olga", "operator-password-1").await;
    assert_eq!(
        op.api(Method::GET, "/api/me", None).await.json()["role"],
        "operator"
    );
    let r = op
        .api(
            Method::POST,
            "/api/connections/HRPeople/refresh-schema",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = op
        .api(Method::POST, "/api/users", Some(json!({ "name": "mallory", "password": "mallory-password", "role": "administrator" })))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("administrator role"), "{}", r.body);
    assert!(
        f.state
            .store()
            .user_by_name("mallory")
            .await
            .expect("reads")
            .is_none()
    );
}

#[tokio::test]
async fn sign_ins_are_rate_limited() {
    let f = Fixture::new().await;
    let mut c = f.anonymous();
    for _ in 0..5 {
        let r = c.try_login("admin", "wrong-password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("the user name or the password is wrong"));
    }
    // Even the right password is refused now.
    let r = c.try_login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("too many failed sign-ins"), "{}", r.body);
    let log = f.state.store().audit_log(20).await.expect("reads");
    assert!(
        log.iter()
            .any(|e| e.action == "login" && e.detail.starts_with("refused"))
    );
    // Passwords are never in the audit log.
    assert!(
        log.iter()
            .all(|e| !format!("{e:?}").contains("wrong-password"))
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    for path in [
        "/login",
        "/",
        "/connectors/HR",
        "/api/connectors",
        "/assets/app.css",
        "/nope",
        "/healthz",
    ] {
        let r = c.get(path).await;
        let csp = r.header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(r.header("x-frame-options"), "DENY", "{path}");
        assert_eq!(r.header("x-content-type-options"), "nosniff", "{path}");
    }
    // No page has an inline script or an inline event handler.
    for path in [
        "/login",
        "/",
        "/connectors/HR",
        "/resources",
        "/audit",
        "/configuration",
    ] {
        let body = c.get(path).await.body;
        assert!(
            !body.contains("<script>")
                && !body.contains(" onclick=")
                && !body.contains(" onsubmit="),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_audit_log_says_who_did_what() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    c.post("/connections/HRPeople/refresh-schema").await;
    c.post("/connections/HRPeople/check").await;
    let log = c.api(Method::GET, "/api/audit", None).await.json();
    let rows: Vec<String> = log
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["actor"].as_str().unwrap_or_default(),
                e["action"].as_str().unwrap_or_default(),
                e["target"].as_str().unwrap_or_default(),
                e["detail"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        rows[..3],
        [
            "admin check-connection HRPeople reachable".to_string(),
            "admin refresh-schema HRPeople refreshed".to_string(),
            "admin login admin signed in".to_string(),
        ]
    );
    let page = c.get("/audit").await;
    assert!(page.body.contains("refresh-schema"), "{}", page.body);
}

#[tokio::test]
async fn the_first_start_creates_admin_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = idlink_store::Store::open(&idlink_store::Location::Sqlite(dir.path().join("s.db")))
        .await
        .expect("store");
    let short = idlink_server::auth::ensure_admin(&store, Some("short")).await;
    assert!(short.is_err(), "a short IDLINK_ADMIN_PASSWORD is refused");
    let generated = idlink_server::auth::ensure_admin(&store, None)
        .await
        .expect("creates")
        .expect("generated");
    assert!(generated.len() >= 20);
    let admin = store
        .user_by_name("admin")
        .await
        .expect("reads")
        .expect("created");
    assert_eq!(admin.role, "administrator");
    assert!(admin.password_hash.starts_with("$argon2id$"), "argon2id");
    assert!(!admin.password_hash.contains(&generated));
    assert!(idlink_server::auth::verify_password(
        &admin.password_hash,
        &generated
    ));
    assert_eq!(
        idlink_server::auth::ensure_admin(&store, None)
            .await
            .expect("runs"),
        None
    );
    assert_eq!(store.count_users().await.expect("counts"), 1);
}

/// A NUL character in a sign-in's name made a PostgreSQL store refuse the user lookup: a 500,
/// no audit entry, and a failure the rate limit did not count. Requests holding one (in a
/// form, JSON or the query) are refused with 400 before they reach a handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_nul_character_in_a_request_is_refused_with_400_on_postgresql() {
    let f = Fixture::on_postgres(&format!("nul_{}", std::process::id())).await;
    let mut c = f.anonymous();
    let r = c.try_login("ad\0min", "wrong-password").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("NUL character"), "{}", r.body);
    let mut admin = f.admin().await;
    let r = admin
        .api(
            Method::POST,
            "/api/tokens",
            Some(serde_json::json!({ "name": "ci\u{0}token" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = admin.get("/api/connectors?q=%00").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // A backslash and the text u0000 are no NUL.
    let r = admin
        .api(
            Method::POST,
            "/api/tokens",
            Some(serde_json::json!({ "name": "ci\\u0000" })),
        )
        .await;
    assert_ne!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.status.is_success(), "{}", r.body);
}
