//! Users, sessions, API tokens and the audit log, on both backends.

use chrono::{Duration, Utc};
use idlink_store::Store;

use crate::both;
use crate::support::Target;

async fn users_sessions_tokens_and_audit(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    assert_eq!(store.count_users().await.expect("counts"), 0);
    let admin = store
        .create_user("admin", "$argon2id$v=19$fake", "administrator")
        .await
        .expect("creates")
        .expect("new");
    assert_eq!(store.count_users().await.expect("counts"), 1);
    // Names compare case-insensitively: a second Admin is refused.
    assert_eq!(
        store
            .create_user("Admin", "x", "operator")
            .await
            .expect("runs"),
        None
    );
    let found = store
        .user_by_name("ADMIN")
        .await
        .expect("reads")
        .expect("found");
    assert_eq!(found, admin);

    let expires = idlink_store::now() + Duration::hours(1);
    store
        .create_session("hash1", admin.id, "csrf1", expires)
        .await
        .expect("session");
    let s = store.session("hash1").await.expect("reads").expect("found");
    assert_eq!((s.user.name.as_str(), s.csrf.as_str()), ("admin", "csrf1"));
    assert!(store.session("other").await.expect("reads").is_none());
    // An expired session is not given back, and is gone afterwards.
    store
        .create_session("old", admin.id, "c", Utc::now() - Duration::seconds(1))
        .await
        .expect("session");
    assert!(store.session("old").await.expect("reads").is_none());
    store.delete_session("hash1").await.expect("deletes");
    assert!(store.session("hash1").await.expect("reads").is_none());

    store
        .create_api_token("tok", admin.id, "ci")
        .await
        .expect("token");
    assert_eq!(
        store
            .api_token_user("tok")
            .await
            .expect("reads")
            .map(|u| u.name),
        Some("admin".into())
    );
    assert!(store.api_token_user("nope").await.expect("reads").is_none());
    // Listed (all, or one user's) and revoked.
    let olga = store
        .create_user("olga", "x", "operator")
        .await
        .expect("creates")
        .expect("new");
    store
        .create_api_token("tok2", olga.id, "backup")
        .await
        .expect("token");
    let all = store.api_tokens(None).await.expect("lists");
    let mut names: Vec<(&str, &str)> = all
        .iter()
        .map(|t| (t.name.as_str(), t.user_name.as_str()))
        .collect();
    names.sort_unstable();
    assert_eq!(names, [("backup", "olga"), ("ci", "admin")]);
    let hers = store.api_tokens(Some(olga.id)).await.expect("lists");
    assert_eq!(hers.len(), 1);
    assert_eq!(hers[0].token_hash, "tok2");
    assert!(store.delete_api_token("tok2").await.expect("revokes"));
    assert!(
        !store.delete_api_token("tok2").await.expect("runs"),
        "gone already"
    );
    assert!(store.api_token_user("tok2").await.expect("reads").is_none());
    assert_eq!(store.api_tokens(None).await.expect("lists").len(), 1);

    store
        .audit("admin", "login", "admin", "signed in")
        .await
        .expect("audit");
    store
        .audit("admin", "refresh-schema", "HRPeople", "refreshed")
        .await
        .expect("audit");
    let log = store.audit_log(10).await.expect("reads");
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["refresh-schema", "login"], "newest first");
    assert_eq!(store.audit_log(1).await.expect("reads").len(), 1);
}

both!(users, users_sessions_tokens_and_audit);
