//! Editing connections through the API and the UI: in place (every other byte stays), checked
//! before it is written, secured values encrypted to the agent's key and never returned,
//! administrators only, audited without values.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{Client, Fixture, SECRET, SECRET_LOGIN};

/// A new secured value typed in the tests: no response, page or plain file may hold it.
const TYPED: &str = "Typed-Secret-9c2e71";

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Gives the fixture an agent key (named by EncryptionIdentity) and reloads it.
async fn with_agent_key(f: &Fixture) -> idlink_secrets::AgentIdentity {
    let identity = crate::support::add_agent_key(&f.conf());
    let loaded = idlink_server::running::load(f.state.paths());
    f.state.replace_running(loaded).await;
    assert!(
        f.state.running().rejected.is_none(),
        "{:?}",
        f.state.running().rejected
    );
    identity
}

async fn operator(f: &Fixture, admin: &mut Client) -> Client {
    let made = admin
        .api(
            Method::POST,
            "/api/users",
            Some(json!({ "name": "olga", "password": "operator-password-1", "role": "operator" })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    f.login("olga", "operator-password-1").await
}

/// Every byte but `from` -> `to` (which must occur once) is the same.
fn assert_only_change(before: &str, after: &str, from: &str, to: &str) {
    assert_eq!(before.matches(from).count(), 1, "'{from}' once in {before}");
    assert_eq!(after, before.replacen(from, to, 1));
}

#[tokio::test]
async fn an_administrator_edits_a_setting_in_place_and_the_audit_names_it() {
    let f = Fixture::new().await;
    let settings = f.conf().join("appsettings.agent.json");
    let before = read(&settings);
    let mut c = f.admin().await;
    let r = c
        .api(
            Method::PATCH,
            "/api/connections/hrpeople/settings",
            Some(json!({ "Separator": ";", "Path": "data/hr_people.csv" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["changes"], json!(["set Separator"]));
    assert_eq!(r.json()["settings"]["Separator"], ";");
    assert_only_change(
        &before,
        &read(&settings),
        "\"Separator\": \",\"",
        "\"Separator\": \";\"",
    );
    // The running configuration is the edited one.
    let got = c.api(Method::GET, "/api/connections/HRPeople", None).await;
    assert_eq!(got.json()["settings"]["Separator"], ";");
    // Nothing changes: nothing is written.
    let again = c
        .api(
            Method::PATCH,
            "/api/connections/HRPeople/settings",
            Some(json!({ "Separator": ";" })),
        )
        .await;
    assert_eq!(again.json()["changes"], json!([]));
    let audit = c.api(Method::GET, "/api/audit", None).await.json();
    let entry = audit
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["action"] == "edit-connection")
        .expect("audited");
    assert_eq!(entry["target"], "HRPeople");
    assert_eq!(entry["detail"], "set Separator");
}

#[tokio::test]
async fn a_change_that_does_not_pass_check_writes_nothing() {
    let f = Fixture::new().await;
    let settings = f.conf().join("appsettings.agent.json");
    let before = read(&settings);
    let mut c = f.admin().await;
    // A CSV connection needs Path or PathIncremental.
    let r = c
        .api(
            Method::PATCH,
            "/api/connections/HRPeople/settings",
            Some(json!({ "Path": null })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let problems = &r.json()["error"]["problems"];
    assert!(
        problems.to_string().contains("appsettings.agent.json:"),
        "the error has its location: {problems}"
    );
    assert_eq!(read(&settings), before);
    let unknown = c
        .api(
            Method::PATCH,
            "/api/connections/HRPeople/settings",
            Some(json!({ "Nope": "x" })),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.body.contains("Separator"), "{}", unknown.body);
    assert_eq!(read(&settings), before);
}

#[tokio::test]
async fn a_secured_value_is_encrypted_to_the_agent_key_and_never_comes_back() {
    let f = Fixture::new().await;
    let identity = with_agent_key(&f).await;
    let settings = f.conf().join("appsettings.agent.json");
    let encrypted = f.conf().join("appsettings.encrypted.agent.json");
    assert!(!encrypted.exists());
    let mut c = f.admin().await;
    let r = c
        .api(
            Method::PATCH,
            "/api/connections/DirectoryLDAP/settings",
            Some(json!({ "Servers": [ { "Password": TYPED, "Login": { "secured": true, "set": true } } ] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["changes"],
        json!(["set secured Servers[0].Password"])
    );
    assert_eq!(
        r.json()["settings"]["Servers"][0]["Password"],
        json!({ "secured": true, "set": true })
    );
    // The plain copy is gone from the settings file, the login stays; the encrypted file
    // holds the ciphertext, which the agent's key opens.
    let plain = read(&settings);
    assert!(
        !plain.contains(SECRET) && plain.contains(SECRET_LOGIN),
        "{plain}"
    );
    let enc: serde_json::Value = serde_json::from_str(
        &read(&encrypted)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("json");
    let value = enc["Connections"]["DirectoryLDAP"]["Servers"][0]["Password"]
        .as_str()
        .expect("encrypted value");
    assert!(value.starts_with("age:"), "{value}");
    let opened = idlink_secrets::decrypt_value(&identity, value).expect("decrypt");
    assert_eq!(opened.expose_secret(), TYPED);
    // Bound to its setting and to the server the connection sends it to (the agent refuses
    // it anywhere else).
    let server = plain_server(&plain);
    let (_, bound) = idlink_secrets::decrypt_bound(&identity, value).expect("decrypt");
    assert_eq!(
        bound.expect("bound").to_string(),
        format!("Connections.DirectoryLDAP.Servers[0].Password with Server={server}")
    );
    // A password entered with a new server is bound to the new one.
    let r = c
        .api(
            Method::PATCH,
            "/api/connections/DirectoryLDAP/settings",
            Some(
                json!({ "Servers": [ { "Server": "ldap://127.0.0.1:1389", "Password": TYPED } ] }),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let enc_text = read(&encrypted);
    let start = enc_text.find("\"Password\": \"").expect("encrypted") + "\"Password\": \"".len();
    let moved = &enc_text[start..start + enc_text[start..].find('"').expect("end")];
    let (_, bound) = idlink_secrets::decrypt_bound(&identity, moved).expect("decrypt");
    assert_eq!(
        bound.expect("bound").to_string(),
        "Connections.DirectoryLDAP.Servers[0].Password with Server=ldap://127.0.0.1:1389"
    );
    assert_eq!(r.json()["warnings"], json!([]), "{}", r.body);
    // The server changed alone: the password encrypted for the old one is named (the Login,
    // in plain text, is bound to nothing).
    let r = c
        .api(
            Method::PATCH,
            "/api/connections/DirectoryLDAP/settings",
            Some(json!({ "Servers": [ { "Server": "ldap://127.0.0.1:2389" } ] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["warnings"],
        json!([
            "Servers[0].Password: a value encrypted here with Server=ldap://127.0.0.1:1389 (by this page or `idlink protect --file`) is refused by the agent with Server=ldap://127.0.0.1:2389: enter it again"
        ]),
        "{}",
        r.body
    );
    let plain = read(&settings);
    let value = moved;
    // Nowhere to be read back: API, pages, audit, plain settings.
    let mut seen = String::new();
    for path in [
        "/api/connections/DirectoryLDAP",
        "/api/connections",
        "/api/audit",
        "/api/connectors/Directory",
    ] {
        seen.push_str(&c.api(Method::GET, path, None).await.body);
    }
    for path in [
        "/connections/DirectoryLDAP",
        "/connectors/Directory",
        "/audit",
        "/configuration",
    ] {
        seen.push_str(&c.get(path).await.body);
    }
    seen.push_str(&plain);
    assert!(!seen.contains(TYPED), "the typed secret came back");
    // Deleting it alone does not pass check (Basic needs a password): nothing is written.
    let enc_before = read(&encrypted);
    let del = c
        .api(
            Method::PATCH,
            "/api/connections/DirectoryLDAP/settings",
            Some(json!({ "Servers": [ { "Password": null } ] })),
        )
        .await;
    assert_eq!(del.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", del.body);
    assert!(del.body.contains("Login and Password"), "{}", del.body);
    assert_eq!(read(&encrypted), enc_before);
    // With anonymous binds it does: it leaves both files.
    let del = c
        .api(
            Method::PATCH,
            "/api/connections/DirectoryLDAP/settings",
            Some(json!({ "Servers": [ { "AuthType": "Anonymous", "Login": null, "Password": null } ] })),
        )
        .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert!(!read(&encrypted).contains(value));
    assert_eq!(
        del.json()["settings"]["Servers"][0]["Password"],
        json!({ "secured": true, "set": false })
    );
}

#[tokio::test]
async fn regression_a_secured_value_without_an_agent_key_is_refused_and_not_echoed() {
    let f = Fixture::new().await;
    let settings = f.conf().join("appsettings.agent.json");
    let before = read(&settings);
    let mut c = f.admin().await;
    let r = c
        .api(
            Method::PATCH,
            "/api/connections/DirectoryLDAP/settings",
            Some(json!({ "Servers": [ { "Password": TYPED } ] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("idlink keygen"), "{}", r.body);
    assert!(!r.body.contains(TYPED));
    assert_eq!(read(&settings), before);
}

#[tokio::test]
async fn creating_a_connection_adds_its_element_and_settings_and_refreshes_its_schema() {
    let f = Fixture::new().await;
    let hr = f.conf().join("hr.xml");
    let settings = f.conf().join("appsettings.agent.json");
    let (xml_before, json_before) = (read(&hr), read(&settings));
    let mut c = f.admin().await;
    let r = c
        .api(
            Method::POST,
            "/api/connections",
            Some(json!({
                "identifier": "HRExtra", "name": "HR extra & more", "connector": "HR",
                "package": "Usercube.CSV@0000001",
                "settings": { "Path": "data/hr_people.csv", "Separator": "," },
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["refresh"]["outcome"], "refreshed", "{}", r.body);
    assert_eq!(r.json()["schema"]["state"], "refreshed");
    let xml_after = read(&hr);
    let anchor = "<Connection Identifier=\"HRTickets\" DisplayName_L1=\"HR tickets\" Connector=\"HR\" Package=\"Usercube.FulfillToFile@0000001\" />";
    assert_only_change(
        &xml_before,
        &xml_after,
        anchor,
        &format!(
            "{anchor}\n  <Connection Identifier=\"HRExtra\" DisplayName_L1=\"HR extra &amp; more\" Connector=\"HR\" Package=\"Usercube.CSV@0000001\" />"
        ),
    );
    let json_after = read(&settings);
    assert!(json_after.contains("\"HRExtra\""), "{json_after}");
    // Every connection that was there is byte for byte the same.
    let head = &json_before[..json_before.rfind("}\n  }").unwrap_or(json_before.len() - 6)];
    assert!(
        json_after.starts_with(head.trim_end_matches('\n')),
        "{json_after}"
    );
    let page = c.get("/connectors/HR").await.body;
    assert!(page.contains("id=\"connection-HRExtra\""), "{page}");
    // A clash is refused.
    let again = c
        .api(
            Method::POST,
            "/api/connections",
            Some(json!({ "identifier": "hrextra", "name": "x", "connector": "HR", "package": "Usercube.CSV@0000001" })),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    // A bad identifier does not pass check: nothing written.
    let bad = c
        .api(
            Method::POST,
            "/api/connections",
            Some(json!({ "identifier": "HR_Bad", "name": "x", "connector": "HR", "package": "Usercube.CSV@0000001", "settings": { "Path": "data/hr_people.csv" } })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(read(&hr), xml_after);
    assert_eq!(read(&settings), json_after);
}

#[tokio::test]
async fn an_operator_cannot_edit_or_create() {
    let f = Fixture::new().await;
    let settings = f.conf().join("appsettings.agent.json");
    let before = read(&settings);
    let mut admin = f.admin().await;
    let mut op = operator(&f, &mut admin).await;
    let r = op
        .api(
            Method::PATCH,
            "/api/connections/HRPeople/settings",
            Some(json!({ "Separator": ";" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = op
        .api(
            Method::POST,
            "/api/connections",
            Some(json!({ "identifier": "X", "name": "x", "connector": "HR", "package": "Usercube.CSV@0000001" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = op
        .api(Method::DELETE, "/api/connections/HRTickets", None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let page = op.get("/connections/HRPeople").await.body;
    assert!(!page.contains("settings-form"), "{page}");
    assert!(!page.contains("delete-connection"), "{page}");
    let csrf = op.csrf.clone();
    let post = op
        .post_form(
            "/connections/HRPeople/settings",
            &[("f.Separator", ";")],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    assert_eq!(read(&settings), before);
}

#[tokio::test]
async fn the_settings_form_saves_in_place_and_never_shows_a_secured_value() {
    let f = Fixture::new().await;
    with_agent_key(&f).await;
    let settings = f.conf().join("appsettings.agent.json");
    let mut c = f.admin().await;
    let page = c.get("/connections/DirectoryLDAP").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"settings-form\""), "{}", page.body);
    // The saved password is a masked, empty input.
    let pw = &page.body[page
        .body
        .find("name=\"f.Servers.0.Password\"")
        .expect("input")..];
    let pw = &pw[..pw.find('>').expect("end")];
    assert!(
        pw.contains("type=\"password\"")
            && pw.contains("data-secured")
            && pw.contains("placeholder=\"??????\""),
        "{pw}"
    );
    assert!(!pw.contains("value="), "{pw}");
    assert!(!page.body.to_lowercase().contains("canary"));
    // Without the CSRF token: refused.
    let no_csrf = c
        .post_form(
            "/connections/HRPeople/settings",
            &[("f.Separator", ";")],
            None,
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    // The form as the browser sends it: every field, one changed.
    let before = read(&settings);
    let csrf = c.csrf.clone();
    let saved = c
        .post_form(
            "/connections/HRPeople/settings",
            &[
                ("f.Path", "data/hr_people.csv"),
                ("f.Separator", "|"),
                ("f.Encoding", ""),
                ("f.NumberOfLinesToSkip", ""),
            ],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(
        saved.body.contains("Saved: set Separator."),
        "{}",
        saved.body
    );
    assert_only_change(
        &before,
        &read(&settings),
        "\"Separator\": \",\"",
        "\"Separator\": \"|\"",
    );
    // A new secured value through the form.
    let saved = c
        .post_form(
            "/connections/DirectoryLDAP/settings",
            &[
                ("n.Servers", "1"),
                ("f.Servers.0.Server", "ldap://127.0.0.1:9"),
                ("f.Servers.0.Password", TYPED),
                ("n.Tables", "1"),
                ("f.Tables.0.Table", "entries"),
                ("f.Tables.0.BaseDN", "dc=example,dc=org"),
            ],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(
        saved.body.contains("set secured Servers[0].Password"),
        "{}",
        saved.body
    );
    assert!(!saved.body.contains(TYPED));
    assert!(!read(&settings).contains(TYPED));
}

#[tokio::test]
async fn the_new_connection_form_creates_a_connection_and_refreshes_its_schema() {
    let f = Fixture::new().await;
    let mut c = f.admin().await;
    let hr = c.get("/connectors/HR").await.body;
    assert!(
        hr.contains("href=\"/connectors/HR/new-connection\""),
        "{hr}"
    );
    let page = c
        .get("/connectors/HR/new-connection?package=Usercube.CSV%400000001")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("name=\"f.Path\""), "{}", page.body);
    assert!(
        page.body
            .contains("<option value=\"Usercube.LDAP@0000001\""),
        "the registry's packages are offered"
    );
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
    assert!(
        made.body
            .contains("Connection HRForm created; schema refreshed"),
        "{}",
        made.body
    );
    assert!(made.body.contains("id=\"connection-HRForm\""));
    // A refused creation shows the form again with the errors, writing nothing.
    let hr_xml = read(&f.conf().join("hr.xml"));
    let bad = c
        .post_form(
            "/connectors/HR/new-connection",
            &[
                ("package", "Usercube.CSV@0000001"),
                ("identifier", "Bad_Id"),
                ("name", "x"),
                ("f.Path", "data/hr_organizations.csv"),
            ],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(
        bad.body.contains("does not pass check") && bad.body.contains("hr.xml:"),
        "{}",
        bad.body
    );
    assert_eq!(read(&f.conf().join("hr.xml")), hr_xml);
}

#[tokio::test]
async fn deleting_a_connection_takes_back_what_creating_it_wrote() {
    let f = Fixture::new().await;
    let hr = f.conf().join("hr.xml");
    let settings = f.conf().join("appsettings.agent.json");
    let (xml_before, json_before) = (read(&hr), read(&settings));
    let mut c = f.admin().await;
    let r = c
        .api(
            Method::POST,
            "/api/connections",
            Some(json!({ "identifier": "HRGone", "name": "Gone", "connector": "HR",
                         "package": "Usercube.CSV@0000001", "settings": { "Path": "data/hr_people.csv" } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = c.api(Method::DELETE, "/api/connections/hrgone", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["deleted"], "HRGone");
    assert_eq!(read(&hr), xml_before);
    assert_eq!(read(&settings), json_before);
    // A connection the mappings read cannot go: nothing is written.
    let r = c
        .api(Method::DELETE, "/api/connections/HRPeople", None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(read(&hr), xml_before);
    assert_eq!(read(&settings), json_before);
    // Through the page, for one nothing refers to.
    let page = c.get("/connections/HRTickets").await.body;
    assert!(page.contains("id=\"delete-connection\""), "{page}");
    let csrf = c.csrf.clone();
    let r = c
        .post_form("/connections/HRTickets/delete", &[], csrf.as_deref())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("Connection HRTickets deleted."),
        "{}",
        r.body
    );
    assert!(!read(&hr).contains("HRTickets"));
    let audit = c.api(Method::GET, "/api/audit", None).await.body;
    assert!(audit.contains("delete-connection"), "{audit}");
}

#[tokio::test]
async fn secured_key_value_options_are_added_and_removed_pair_by_pair() {
    let f = Fixture::new().await;
    let identity = with_agent_key(&f).await;
    let settings = f.conf().join("appsettings.agent.json");
    let encrypted = f.conf().join("appsettings.encrypted.agent.json");
    let mut c = f.admin().await;
    let r = c
        .api(
            Method::POST,
            "/api/connections",
            Some(json!({ "identifier": "HRDb", "name": "HR database", "connector": "HR",
                         "package": "Idlink.SQL.SQLite@0000001",
                         "settings": { "ConnectionString": "sqlite:data/hr.db", "SqlCommand": "SELECT 1 AS x",
                                       "SecuredOptions": { "Password": TYPED } } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.json()["settings"]["SecuredOptions"],
        json!({ "Password": { "secured": true, "set": true } })
    );
    assert!(!read(&settings).contains(TYPED) && !r.body.contains(TYPED));
    let enc = read(&encrypted);
    let start = enc.find("\"Password\": \"").expect("encrypted pair") + "\"Password\": \"".len();
    let value = &enc[start..start + enc[start..].find('"').expect("end")];
    assert_eq!(
        idlink_secrets::decrypt_value(&identity, value)
            .expect("decrypt")
            .expose_secret(),
        TYPED
    );
    // The page lists the pair's key, never its value; the form removes it and adds another.
    let page = c.get("/connections/HRDb").await.body;
    assert!(
        page.contains("name=\"mk.SecuredOptions.0\" value=\"Password\""),
        "{page}"
    );
    assert!(!page.contains(TYPED));
    let csrf = c.csrf.clone();
    let r = c
        .post_form(
            "/connections/HRDb/settings",
            &[
                ("f.ConnectionString", ""),
                ("mk.SecuredOptions.0", "Password"),
                ("mv.SecuredOptions.0", ""),
                ("mdel.SecuredOptions.0", "on"),
                ("mk.SecuredOptions.new", "Database"),
                ("mv.SecuredOptions.new", "hr-main"),
                ("f.SqlCommand", "SELECT 1 AS x"),
            ],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains(
            "Saved: set secured SecuredOptions.Database; removed SecuredOptions.Password."
        ),
        "{}",
        r.body
    );
    let enc = read(&encrypted);
    assert!(
        !enc.contains(value) && enc.contains("\"Database\": \"age:"),
        "{enc}"
    );
    let got = c
        .api(Method::GET, "/api/connections/HRDb", None)
        .await
        .json();
    assert_eq!(
        got["settings"]["SecuredOptions"],
        json!({ "Database": { "secured": true, "set": true } })
    );
    assert_eq!(
        got["settings"]["ConnectionString"],
        json!({ "secured": true, "set": true })
    );
}

#[tokio::test]
async fn regression_a_list_written_as_one_string_stays_a_string_when_the_form_is_saved() {
    let f = Fixture::new().await;
    let settings = f.conf().join("appsettings.agent.json");
    let text = read(&settings).replace(
        "\"Separator\": \",\" }",
        "\"Separator\": \",\", \"ValuesToTrim\": \"N/A\" }",
    );
    std::fs::write(&settings, &text).expect("write");
    let loaded = idlink_server::running::load(f.state.paths());
    f.state.replace_running(loaded).await;
    let mut c = f.admin().await;
    let page = c.get("/connections/HRPeople").await.body;
    assert!(page.contains(">N&#x2f;A</textarea>"), "{page}");
    let csrf = c.csrf.clone();
    let r = c
        .post_form(
            "/connections/HRPeople/settings",
            &[
                ("f.Path", "data/hr_people.csv"),
                ("f.Separator", ","),
                ("f.ValuesToTrim", "N/A"),
            ],
            csrf.as_deref(),
        )
        .await;
    assert!(r.body.contains("Nothing changed."), "{}", r.body);
    assert_eq!(read(&settings), text);
}

/// The `Server` of the first of `Servers` in a settings text.
fn plain_server(text: &str) -> String {
    let start = text.find("\"Server\": \"").expect("a Server") + "\"Server\": \"".len();
    text[start..start + text[start..].find('"').expect("end")].to_string()
}
