//! Pages through `oneshot`: the connectors list, the connector page's Connections frame in
//! each state with its buttons, the resources browser, the configuration page.

use axum::http::StatusCode;

use crate::support::Fixture;

/// The `<tr>` of connection `id` in a connector page.
fn row<'p>(page: &'p str, id: &str) -> &'p str {
    let start = page
        .find(&format!("<tr id=\"connection-{id}\""))
        .unwrap_or_else(|| panic!("no row for {id} in\n{page}"));
    let end = page[start..].find("</tr>").expect("row end") + start;
    &page[start..end]
}

#[tokio::test]
async fn the_connections_frame_shows_each_state_and_its_actions() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    let list = c.get("/").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("<a href=\"/connectors/HR\">HR</a>"),
        "{}",
        list.body
    );
    assert!(list.body.contains("Human resources"));

    let page = c.get("/connectors/HR").await.body;
    assert!(page.contains("<h2 id=\"connections-title\">Connections</h2>"));
    assert!(page.contains(">Refresh all schemas</button>"));
    // Never refreshed.
    let people = row(&page, "HRPeople");
    assert!(
        people.contains("data-schema-state=\"never-refreshed\"")
            && people.contains("Never refreshed"),
        "{people}"
    );
    assert!(people.contains("HR people (CSV)") && people.contains("Usercube.CSV@0000001"));
    for button in ["Refresh schema", "Check connection", "Export now"] {
        assert!(
            people.contains(&format!(">{button}</button>")),
            "{button} in {people}"
        );
    }
    // No schema: the sentence, and no Refresh schema button.
    let tickets = row(&page, "HRTickets");
    assert!(
        tickets.contains("There is no schema for this connection"),
        "{tickets}"
    );
    assert!(!tickets.contains(">Refresh schema</button>"), "{tickets}");

    // Refreshed, with its time (the page after the button).
    let after = c.post("/connections/HRPeople/refresh-schema").await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    assert!(
        after
            .body
            .contains("HRPeople: schema refreshed (1 tables, 6 columns)"),
        "{}",
        after.body
    );
    let at = f
        .state
        .store()
        .schema_state("HRPeople")
        .await
        .expect("reads")
        .expect("recorded")
        .snapshot
        .expect("snapshot")
        .refreshed_at;
    let shown = idlink_engine::snapshots::show_time(&at);
    let people = row(&after.body, "HRPeople");
    assert!(
        people.contains("data-schema-state=\"refreshed\""),
        "{people}"
    );
    assert!(
        people.contains(&format!(
            "Refreshed <time datetime=\"{shown}\">{shown}</time>"
        )),
        "{people}"
    );

    // Failed: the icon, the error and its time (in the tooltip and in the details).
    let dir = c.post("/connections/DirectoryLDAP/refresh-schema").await;
    let ldap = row(&dir.body, "DirectoryLDAP");
    assert!(ldap.contains("data-schema-state=\"failed\""), "{ldap}");
    assert!(
        ldap.contains("class=\"icon-failed\" role=\"img\" aria-label=\"Schema refresh failed\""),
        "{ldap}"
    );
    let failure = f
        .state
        .store()
        .schema_state("DirectoryLDAP")
        .await
        .expect("reads")
        .expect("recorded")
        .failure
        .expect("failed");
    let failed_at = idlink_engine::snapshots::show_time(&failure.at);
    assert!(
        ldap.contains(&format!("title=\"Schema refresh failed at {failed_at}: ")),
        "{ldap}"
    );
    assert!(ldap.contains("127.0.0.1:9"), "the error is shown: {ldap}");

    // Refresh all schemas from the connector page.
    let all = c.post("/connectors/HR/refresh-schemas").await;
    assert!(
        all.body
            .contains("Refresh all schemas: 3 connections, 0 failed"),
        "{}",
        all.body
    );
    assert!(row(&all.body, "HROrganizations").contains("data-schema-state=\"refreshed\""));

    // Check connection and Export now from the page.
    let check = c.post("/connections/HRPeople/check").await;
    assert!(check.body.contains("HRPeople: reachable"), "{}", check.body);
    let export = c.post("/connections/HRPeople/export").await;
    assert!(
        export.body.contains("HRPeople: exported"),
        "{}",
        export.body
    );
    assert!(!export.body.contains("note:"), "{}", export.body);
    // A stray quote that swallows a row: Export now says so, with the line.
    let source = f.conf().join("data/hr_people.csv");
    let text = std::fs::read_to_string(&source).expect("reads");
    let broken =
        text.replacen("E002,Alan,", "E002,\"Alan,", 1)
            .replacen("Édith,Piaf", "Édith\",Piaf", 1);
    assert_ne!(broken, text);
    std::fs::write(&source, broken).expect("writes");
    let export = c.post("/connections/HRPeople/export").await;
    assert!(
        export.body.contains(
            "HRPeople: exported 6 rows; note: hr_people.csv:3: a quoted value holds 1 line"
        ),
        "{}",
        export.body
    );
}

#[tokio::test]
async fn the_resources_browser_searches_and_shows_links() {
    let f = Fixture::new().await;
    crate::api::load_hr(&f).await;
    let mut c = f.admin().await;
    let types = c.get("/resources").await.body;
    assert!(
        types.contains("<a href=\"/resources/HR_Person\">HR_Person</a>"),
        "{types}"
    );
    let found = c.get("/resources/HR_Person?q=turing").await.body;
    assert!(found.contains("1 found"), "{found}");
    assert!(
        found.contains("<a href=\"/resources/HR_Person/E002\">E002</a>"),
        "{found}"
    );
    let one = c.get("/resources/HR_Person/E002").await.body;
    assert!(one.contains("<dd>Turing</dd>"), "{one}");
    assert!(
        one.contains("<a href=\"/resources/HR_Organization/ENG\">ENG</a>"),
        "{one}"
    );
    let missing = c.get("/resources/HR_Person/NOPE").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn assets_are_embedded() {
    let f = Fixture::new().await;
    let mut c = f.anonymous();
    let css = c.get("/assets/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
    let js = c.get("/assets/app.js").await;
    assert!(js.body.contains("data-secured"));
    assert_eq!(c.get("/assets/nope.js").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_connection_page_lists_the_settings_with_secured_values_masked() {
    let f = Fixture::new().await;
    let mut admin = f.admin().await;
    let made = admin
        .api(
            axum::http::Method::POST,
            "/api/users",
            Some(serde_json::json!({ "name": "olga", "password": "operator-password-1", "role": "operator" })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    // An operator reads the settings; an administrator gets the form (see the edit tests).
    let mut c = f.login("olga", "operator-password-1").await;
    let hr = c.get("/connectors/Directory").await.body;
    assert!(
        hr.contains("<a href=\"/connections/DirectoryLDAP\">DirectoryLDAP</a>"),
        "{hr}"
    );
    let page = c.get("/connections/DirectoryLDAP").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let servers = &page.body[page
        .body
        .find("id=\"setting-Servers\"")
        .expect("Servers row")..];
    let servers = &servers[..servers.find("</tr>").expect("end")];
    assert!(
        servers.contains("Server: ldap:&#x2f;&#x2f;127.0.0.1:9"),
        "{servers}"
    );
    assert!(
        servers.contains("Password: ??????") && servers.contains("Login: ??????"),
        "{servers}"
    );
    // The flat shape's secured Password is not set: no mask.
    let flat = &page.body[page
        .body
        .find("id=\"setting-Password\"")
        .expect("Password row")..];
    let flat = &flat[..flat.find("</tr>").expect("end")];
    assert!(
        flat.contains("not set") && flat.contains("(secured)"),
        "{flat}"
    );
    assert!(
        !page.body.to_lowercase().contains("canary"),
        "{}",
        page.body
    );
    let people = c.get("/connections/HRPeople").await.body;
    assert!(
        people.contains("<code>data&#x2f;hr_people.csv</code>"),
        "{people}"
    );
    assert_eq!(
        c.get("/connections/Nope").await.status,
        StatusCode::NOT_FOUND
    );
}
