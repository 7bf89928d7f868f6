//! The web UI in headless Chromium, driven over WebDriver (chromedriver) against a real
//! server on a loopback port: the Connections frame in each state, both refresh buttons,
//! creating a connection, a secured value that never comes back, the mapping editor's Source
//! before and after a refresh and a save that changes only its element, an operator who
//! cannot edit, and CSRF. With `IDLINK_BLESS=1` it saves the screenshots of the README into
//! docs/.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs them).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use idlink_server::{Options, Paths};
use idlink_store::Location;
use serde_json::{Value, json};

use crate::support::{
    ADMIN_PASSWORD, SECRET, SECRET_LOGIN, add_agent_key, prepare_conf, repo_root,
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "apt-get install -y chromium chromium-driver (scripts/test.sh installs them)";
/// Typed into a secured field: no page or API response may hold it afterwards.
const TYPED: &str = "Browser-Typed-Secret-51d0";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// chromedriver on a loopback port, stopped on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn driver() -> Driver {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the browser tests need it; install it with: {INSTALL}"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; install it with: {INSTALL}"));
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

pub(crate) async fn browser(d: &Driver) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"],
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&d.url)
            .await
        {
            Ok(c) => return c,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a Chromium session through chromedriver: {e}"),
        }
    }
}

/// Waits until the page holds `text`; returns the page.
pub(crate) async fn wait_text(c: &Client, text: &str) -> String {
    let started = Instant::now();
    loop {
        let page = c.source().await.expect("source");
        if page.contains(text) {
            return page;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the page never showed '{text}': {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn fill(c: &Client, css: &str, text: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.expect("clear");
    e.send_keys(text).await.expect("type");
}

pub(crate) async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}login")).await.expect("login page");
    fill(c, "#name", name).await;
    fill(c, "#password", password).await;
    click(c, "form.login button[type=submit]").await;
    wait_text(c, "Sign out").await;
}

/// The row of a connection in the Connections frame, as HTML.
async fn row(c: &Client, id: &str) -> String {
    c.find(Locator::Css(&format!("#connection-{id}")))
        .await
        .unwrap_or_else(|e| panic!("row {id}: {e}"))
        .html(false)
        .await
        .expect("html")
}

/// A state-changing request from the page's own script context, without the CSRF token.
async fn post_without_csrf(c: &Client, path: &str) -> u64 {
    let script = "const done = arguments[arguments.length - 1];
        fetch(arguments[0], { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'f.Separator=%3B' })
          .then(r => done(r.status)).catch(e => done(String(e)));";
    let v = c
        .execute_async(script, vec![json!(path)])
        .await
        .expect("script");
    v.as_u64().unwrap_or_else(|| panic!("fetch failed: {v}"))
}

fn element_split<'t>(xml: &'t str, start: &str, end: &str) -> (&'t str, &'t str, &'t str) {
    let a = xml.find(start).expect("element");
    let b = a + xml[a..].find(end).expect("end") + end.len();
    (&xml[..a], &xml[a..b], &xml[b..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_in_chromium() {
    let d = driver();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = prepare_conf(dir.path());
    add_agent_key(&conf);
    let server = idlink_server::start(Options {
        paths: Paths {
            config_dir: conf.clone(),
            settings: None,
            work_dir: dir.path().join("work"),
        },
        database: Location::Sqlite(dir.path().join("work/idlink.db")),
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: None,
        watch_every: Duration::from_millis(500),
        admin_password: Some(ADMIN_PASSWORD.into()),
        grace: Duration::from_secs(1),
        agents: Default::default(),
        schedule: Default::default(),
    })
    .await
    .expect("server");
    let base = server.url();
    let state = server.state.clone();
    let hash = idlink_server::auth::hash_password("operator-password-1").expect("hash");
    state
        .store()
        .create_user("olga", &hash, "operator")
        .await
        .expect("operator");
    let stop = idlink_engine::CancellationToken::new();
    let running = tokio::spawn(server.run(stop.clone()));
    let c = browser(&d).await;
    let mut pages: Vec<String> = Vec::new();

    sign_in(&c, &base, "admin", ADMIN_PASSWORD).await;

    // The mapping editor before any refresh: nothing to choose, Save disabled, the sentence.
    c.goto(&format!("{base}mappings/HR_Person"))
        .await
        .expect("editor");
    let page = wait_text(&c, "id=\"no-source\"").await;
    assert!(
        page.contains("refresh the schema of a connection of connector HR"),
        "{page}"
    );
    let options = c
        .find_all(Locator::Css("#source option"))
        .await
        .expect("options");
    assert!(
        options.is_empty(),
        "the Source dropdown is empty before a refresh"
    );
    let save = c.find(Locator::Css("#save-mapping")).await.expect("save");
    assert!(
        !save.is_enabled().await.expect("enabled"),
        "Save is disabled"
    );

    // The Connections frame: never refreshed, no schema; then Refresh schema of one.
    c.goto(&format!("{base}connectors/HR")).await.expect("HR");
    wait_text(&c, "Connections").await;
    assert!(row(&c, "HROrganizations").await.contains("Never refreshed"));
    let tickets = row(&c, "HRTickets").await;
    assert!(
        tickets.contains("There is no schema for this connection"),
        "{tickets}"
    );
    assert!(!tickets.contains("Refresh schema"), "{tickets}");
    click(&c, "#connection-HRPeople .refresh-schema").await;
    wait_text(&c, "HRPeople: schema refreshed").await;
    let people = row(&c, "HRPeople").await;
    assert!(people.contains("Refreshed <time datetime=\""), "{people}");
    // Refresh all schemas.
    click(&c, "#refresh-all").await;
    let page = wait_text(&c, "Refresh all schemas: ").await;
    assert!(page.contains("0 failed"), "{page}");
    assert!(row(&c, "HROrganizations").await.contains("Refreshed"));
    pages.push(page);
    save_screenshot(
        "screenshot-connector.png",
        c.screenshot().await.expect("screenshot"),
    );

    // A failed refresh: its icon and its error.
    c.goto(&format!("{base}connectors/Directory"))
        .await
        .expect("Directory");
    click(&c, "#connection-DirectoryLDAP .refresh-schema").await;
    wait_text(&c, "schema refresh failed").await;
    let ldap = row(&c, "DirectoryLDAP").await;
    assert!(
        ldap.contains("icon-failed") && ldap.contains("Refresh failed"),
        "{ldap}"
    );
    let summary = c
        .find(Locator::Css(
            "#connection-DirectoryLDAP details.failure summary",
        ))
        .await
        .expect("summary");
    let title = summary
        .attr("title")
        .await
        .expect("title")
        .unwrap_or_default();
    assert!(
        title.contains("127.0.0.1:9"),
        "the tooltip holds the error: {title}"
    );
    pages.push(c.source().await.expect("source"));

    // The mapping editor after the refresh: the Source lists the tables, and a save changes
    // only that element.
    let hr = conf.join("hr.xml");
    let before = std::fs::read_to_string(&hr).expect("read");
    c.goto(&format!("{base}mappings/HR_Person"))
        .await
        .expect("editor");
    wait_text(&c, "id=\"mapping-form\"").await;
    let options = c
        .find_all(Locator::Css("#source option"))
        .await
        .expect("options");
    let mut tables = Vec::new();
    for o in &options {
        tables.push(o.attr("value").await.expect("value").unwrap_or_default());
    }
    assert!(tables.contains(&"HRPeople".to_string()), "{tables:?}");
    save_screenshot(
        "screenshot-mapping-editor.png",
        c.screenshot().await.expect("screenshot"),
    );
    c.find(Locator::Css("select[name='col.StartDate']"))
        .await
        .expect("StartDate")
        .select_by_value("")
        .await
        .expect("unmap");
    click(&c, "#save-mapping").await;
    wait_text(&c, "Saved: unmapped StartDate.").await;
    let after = std::fs::read_to_string(&hr).expect("read");
    let open = "<EntityTypeMapping Identifier=\"HR_Person\"";
    let (b0, b1, b2) = element_split(&before, open, "</EntityTypeMapping>");
    let (a0, a1, a2) = element_split(&after, open, "</EntityTypeMapping>");
    assert_eq!((a0, a2), (b0, b2), "the file changed outside the mapping");
    assert_ne!(a1, b1);
    // Choosing another Source lists its columns as Source Columns (app.js).
    c.find(Locator::Css("#source"))
        .await
        .expect("source")
        .select_by_value("HROrganizations")
        .await
        .expect("choose");
    let mut columns = Vec::new();
    for o in c
        .find_all(Locator::Css("select[name='col.EmployeeId'] option"))
        .await
        .expect("options")
    {
        columns.push(o.text().await.expect("text"));
    }
    assert_eq!(columns, ["(not mapped)", "Code", "Name"]);

    // Creating a connection.
    c.goto(&format!("{base}connectors/HR")).await.expect("HR");
    click(&c, "#new-connection").await;
    wait_text(&c, "id=\"choose-package\"").await;
    c.find(Locator::Css("#package"))
        .await
        .expect("package")
        .select_by_value("Usercube.CSV@0000001")
        .await
        .expect("choose");
    click(&c, "#choose-package").await;
    wait_text(&c, "id=\"new-connection-form\"").await;
    fill(&c, "#identifier", "HRBrowser").await;
    fill(&c, "#name", "Made in the browser").await;
    fill(&c, "input[name='f.Path']", "data/hr_organizations.csv").await;
    click(&c, "#create-connection").await;
    let page = wait_text(&c, "Connection HRBrowser created; schema refreshed").await;
    assert!(page.contains("id=\"connection-HRBrowser\""));
    pages.push(page);

    // A secured field: masked while typed, revealed by the eye, never sent back.
    c.goto(&format!("{base}connections/DirectoryLDAP"))
        .await
        .expect("connection");
    wait_text(&c, "id=\"settings-form\"").await;
    let input = c
        .find(Locator::Css("input[name='f.Servers.0.Password']"))
        .await
        .expect("password input");
    assert_eq!(
        input.attr("type").await.expect("type").as_deref(),
        Some("password")
    );
    assert_eq!(
        input.attr("placeholder").await.expect("ph").as_deref(),
        Some("??????")
    );
    assert_eq!(
        input.prop("value").await.expect("value").as_deref(),
        Some("")
    );
    input.send_keys(TYPED).await.expect("type");
    click(&c, "#setting-Servers\\.0\\.Password button.reveal").await;
    assert_eq!(
        input.attr("type").await.expect("type").as_deref(),
        Some("text")
    );
    assert_eq!(
        input.prop("value").await.expect("value").as_deref(),
        Some(TYPED)
    );
    click(&c, "#save-settings").await;
    let page = wait_text(&c, "set secured Servers[0].Password").await;
    pages.push(page);
    let settings = std::fs::read_to_string(conf.join("appsettings.agent.json")).expect("read");
    assert!(!settings.contains(TYPED) && !settings.contains(SECRET));
    for path in [
        "",
        "connectors/HR",
        "connectors/Directory",
        "connections/DirectoryLDAP",
        "connections/HRPeople",
        "mappings",
        "mappings/HR_Person",
        "resources",
        "audit",
        "configuration",
        "tokens",
        "api/connections",
        "api/connections/DirectoryLDAP",
        "api/connections/DirectoryLDAP/schema",
        "api/connectors/Directory",
        "api/configuration",
        "api/entity-type-mappings",
        "api/audit",
        "api/packages",
    ] {
        c.goto(&format!("{base}{path}")).await.expect("page");
        pages.push(c.source().await.expect("source"));
    }
    for (i, p) in pages.iter().enumerate() {
        for secret in [TYPED, SECRET, SECRET_LOGIN] {
            assert!(!p.contains(secret), "page {i} holds a secured value: {p}");
        }
    }

    // CSRF: a post without the token is refused.
    c.goto(&format!("{base}connections/HRPeople"))
        .await
        .expect("page");
    assert_eq!(
        post_without_csrf(&c, "/connections/HRPeople/settings").await,
        403
    );

    // The operator cannot edit.
    c.delete_all_cookies().await.expect("sign out");
    sign_in(&c, &base, "olga", "operator-password-1").await;
    c.goto(&format!("{base}connections/HRPeople"))
        .await
        .expect("page");
    let page = wait_text(&c, "Only an administrator can change them.").await;
    assert!(!page.contains("id=\"settings-form\""));
    c.goto(&format!("{base}mappings/HR_Person"))
        .await
        .expect("editor");
    let page = wait_text(&c, "Only an administrator can change a mapping.").await;
    assert!(!page.contains("id=\"save-mapping\""));
    c.goto(&format!("{base}connectors/HR")).await.expect("HR");
    let page = wait_text(&c, "Connections").await;
    assert!(!page.contains("id=\"new-connection\""));
    c.goto(&format!("{base}connectors/HR/new-connection"))
        .await
        .expect("page");
    wait_text(&c, "Error 403").await;

    c.close().await.expect("close");
    stop.cancel();
    let _ = running.await;
}

/// Saves a screenshot: into docs/ (the README's) with `IDLINK_BLESS=1`, else into a temporary
/// folder, so a test run leaves the checkout as it was. Either way it must be a PNG.
fn save_screenshot(name: &str, png: Vec<u8>) {
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    let dir = if std::env::var_os("IDLINK_BLESS").is_some() {
        repo_root().join("docs")
    } else {
        std::env::temp_dir().join("idlink-screenshots")
    };
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    std::fs::write(dir.join(name), png).expect("write the screenshot");
}
