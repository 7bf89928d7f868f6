//! The caches behind the busy pages (sessions, schema states, the connectors table and the
//! connector index) never show something older than what this server itself just did.

use axum::http::StatusCode;

use crate::support::Fixture;

fn schema_state_of<'p>(page: &'p str, id: &str) -> &'p str {
    let start = page
        .find(&format!("<tr id=\"connection-{id}\""))
        .unwrap_or_else(|| panic!("no row for {id} in\n{page}"));
    let rest = &page[start..];
    let i = rest.find("data-schema-state=\"").expect("state") + "data-schema-state=\"".len();
    &rest[i..i + rest[i..].find('"').expect("end")]
}

#[tokio::test]
async fn a_refreshed_schema_shows_up_at_once_on_the_connector_page() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    let before = c.get("/connectors/HR").await.body;
    assert_eq!(schema_state_of(&before, "HRPeople"), "never-refreshed");
    // Refreshed through the API, then the page read at once (well within the cache's age).
    let r = c
        .api(
            axum::http::Method::POST,
            "/api/connections/HRPeople/refresh-schema",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let after = c.get("/connectors/HR").await.body;
    assert_eq!(schema_state_of(&after, "HRPeople"), "refreshed", "{after}");
    // A failed refresh shows at once as well.
    c.get("/connectors/Directory").await;
    c.post("/connections/DirectoryLDAP/refresh-schema").await;
    let dir = c.get("/connectors/Directory").await.body;
    assert_eq!(schema_state_of(&dir, "DirectoryLDAP"), "failed", "{dir}");
}

#[tokio::test]
async fn regression_a_signed_out_session_cookie_is_refused_at_once() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    assert_eq!(c.get("/api/me").await.status, StatusCode::OK);
    // The cookie as a copy kept elsewhere (another tab, a stolen cookie) holds it.
    let mut kept = c.clone();
    let r = c.post("/logout").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(kept.get("/api/me").await.status, StatusCode::UNAUTHORIZED);
    let page = kept.get("/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.header("location"), "/login");
}

#[tokio::test]
async fn a_new_configuration_shows_up_at_once_on_both_pages() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    let hr_row = |n: usize, name: &str| {
        format!("<tr><td><a href=\"/connectors/HR\">HR</a></td><td>{name}</td><td>{n}</td></tr>")
    };
    let list = c.get("/").await.body;
    assert!(list.contains(&hr_row(3, "Human resources")), "{list}");
    let hr = c.get("/connectors/HR").await.body;
    assert!(!hr.contains("connection-HRForm"), "{hr}");
    // A connection created through the UI (the file is edited and the configuration reloaded).
    let csrf = c.csrf.clone();
    let made = c
        .post_form(
            "/connectors/HR/new-connection",
            &[
                ("package", "Usercube.CSV@0000001"),
                ("identifier", "HRForm"),
                ("name", "From the form"),
                ("f.Path", "data/hr_organizations.csv"),
                ("f.Separator", ""),
            ],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let hr = c.get("/connectors/HR").await.body;
    assert!(hr.contains("id=\"connection-HRForm\""), "{hr}");
    assert!(hr.contains("From the form"), "{hr}");
    let list = c.get("/").await.body;
    assert!(list.contains(&hr_row(4, "Human resources")), "{list}");
    // An edit of the folder by hand (the watcher's path): a renamed connector.
    let file = f.conf().join("hr.xml");
    let text = std::fs::read_to_string(&file).expect("read");
    let renamed = text.replacen(
        "DisplayName_L1=\"Human resources\"",
        "DisplayName_L1=\"People office\"",
        1,
    );
    assert_ne!(text, renamed, "the fixture names HR 'Human resources'");
    std::fs::write(&file, renamed).expect("write");
    let loaded = idlink_server::running::load(f.state.paths());
    f.state.replace_running(loaded).await;
    let list = c.get("/").await.body;
    assert!(list.contains(&hr_row(4, "People office")), "{list}");
    assert!(!list.contains("Human resources"), "{list}");
    let hr = c.get("/connectors/HR").await.body;
    assert!(hr.contains("People office"), "{hr}");
}
