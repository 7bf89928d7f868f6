//! API tokens: listed without their value, revoked by their owner or an administrator,
//! audited; a revoked token no longer signs anything in.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::Fixture;

#[tokio::test]
async fn tokens_are_listed_without_their_value_and_revoked_by_owner_or_administrator() {
    let f = Fixture::new().await;
    let mut admin = f.admin().await;
    let made = admin
        .api(
            Method::POST,
            "/api/users",
            Some(json!({ "name": "olga", "password": "operator-password-1", "role": "operator" })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let mut op = f.login("olga", "operator-password-1").await;
    let a = admin
        .api(Method::POST, "/api/tokens", Some(json!({ "name": "ci" })))
        .await
        .json();
    let o = op
        .api(
            Method::POST,
            "/api/tokens",
            Some(json!({ "name": "backup" })),
        )
        .await
        .json();
    let (a_token, o_token) = (
        a["token"].as_str().expect("token"),
        o["token"].as_str().expect("token"),
    );
    let (a_id, o_id) = (a["id"].as_str().expect("id"), o["id"].as_str().expect("id"));
    // Lists: the operator's own; every one for the administrator; never a token's value.
    let mine = op.api(Method::GET, "/api/tokens", None).await;
    assert_eq!(
        mine.json().as_array().map(Vec::len),
        Some(1),
        "{}",
        mine.body
    );
    assert_eq!(mine.json()[0]["name"], "backup");
    let all = admin.api(Method::GET, "/api/tokens", None).await;
    assert_eq!(all.json().as_array().map(Vec::len), Some(2), "{}", all.body);
    let page = admin.get("/tokens").await.body;
    for seen in [&mine.body, &all.body, &page] {
        assert!(
            !seen.contains(a_token) && !seen.contains(o_token),
            "a token's value is shown"
        );
    }
    assert!(page.contains(a_id) && page.contains(o_id), "{page}");
    // The operator cannot revoke the administrator's token.
    let r = op
        .api(Method::DELETE, &format!("/api/tokens/{a_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // The operator revokes their own; it no longer works.
    let mut script = f.anonymous();
    script.bearer = Some(o_token.to_string());
    assert_eq!(
        script.api(Method::GET, "/api/me", None).await.status,
        StatusCode::OK
    );
    let r = op
        .api(Method::DELETE, &format!("/api/tokens/{o_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        script.api(Method::GET, "/api/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The administrator revokes through the page (with the CSRF token; without it, refused).
    let r = admin
        .post_form(&format!("/tokens/{a_id}/revoke"), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let csrf = admin.csrf.clone();
    let r = admin
        .post_form(&format!("/tokens/{a_id}/revoke"), &[], csrf.as_deref())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Token ci of admin revoked."), "{}", r.body);
    assert_eq!(
        admin.api(Method::GET, "/api/tokens", None).await.json(),
        json!([])
    );
    let audit = admin.api(Method::GET, "/api/audit", None).await.body;
    assert_eq!(audit.matches("revoke-api-token").count(), 2, "{audit}");
    assert!(!audit.contains(a_token) && !audit.contains(o_token));
}

#[tokio::test]
async fn the_tokens_page_shows_a_new_token_once() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    assert!(c.get("/tokens").await.body.contains("No API token."));
    let csrf = c.csrf.clone();
    let r = c
        .post_form("/tokens", &[("name", "deploy")], csrf.as_deref())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let start =
        r.body.find("<code id=\"new-token\">").expect("shown") + "<code id=\"new-token\">".len();
    let token = &r.body[start..start + r.body[start..].find('<').expect("end")];
    assert!(token.len() >= 40, "{token}");
    let later = c.get("/tokens").await.body;
    assert!(
        later.contains("deploy") && !later.contains(token),
        "{later}"
    );
}
