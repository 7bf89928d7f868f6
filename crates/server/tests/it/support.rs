//! A server over a copy of the quickstart: HR (two CSV connections and a FulfillToFile one,
//! which has no schema), Directory (OpenLDAP with its password in plain text: the canary that
//! must never come back), a SQLite store, and `admin` with a known password.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use idlink_server::{AppState, Paths};
use idlink_store::{Location, Store};
use idlink_test_support::PostgresServer;
use tower::ServiceExt;

/// The secured value of the fixture: no response may hold it.
pub const SECRET: &str = "Canary-Secret-4d1f9b";
/// The secured login of the fixture (a DN: also never returned).
pub const SECRET_LOGIN: &str = "cn=canary-login-77a1,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

pub const SETTINGS: &str = r#"{
  "SourcesRootPaths": ["data", "tickets"],
  "Connections": {
    "HRPeople": { "Path": "data/hr_people.csv", "Separator": "," },
    "HROrganizations": { "Path": "data/hr_organizations.csv" },
    "HRTickets": { "Path": "tickets" },
    "DirectoryLDAP": {
      "Servers": [ { "Server": "ldap://127.0.0.1:9", "AuthType": "Basic",
                     "Login": "cn=canary-login-77a1,dc=example,dc=org", "Password": "Canary-Secret-4d1f9b" } ],
      "Tables": [ { "Table": "entries", "BaseDN": "dc=example,dc=org" } ]
    }
  }
}"#;

/// The fixture's configuration folder under `root` (`root/conf`): the quickstart, its
/// encrypted settings removed, a FulfillToFile connection added, the settings of [`SETTINGS`].
pub fn prepare_conf(root: &Path) -> PathBuf {
    let conf = root.join("conf");
    copy_dir(&repo_root().join("examples/quickstart"), &conf);

    std::fs::remove_file(conf.join("appsettings.encrypted.agent.json")).expect("rm");
    std::fs::create_dir_all(conf.join("tickets")).expect("mkdir");
    let hr = conf.join("hr.xml");
    let text = std::fs::read_to_string(&hr).expect("read").replace(
            "<!-- Schemas, as Refresh Schema writes them. -->",
            "<Connection Identifier=\"HRTickets\" DisplayName_L1=\"HR tickets\" Connector=\"HR\" Package=\"Usercube.FulfillToFile@0000001\" />",
        );
    std::fs::write(&hr, text).expect("write");
    // The fixture is the HR and Directory connectors: the applications database of the
    // quickstart's main job is left out, with that job.
    std::fs::remove_file(conf.join("apps.xml")).expect("rm apps.xml");
    let jobs = std::fs::read_to_string(conf.join("jobs.xml")).expect("jobs.xml");
    let start = jobs
        .find("  <!-- The main job")
        .expect("the Quickstart job's comment");
    let end = jobs.find("</Job>").expect("the Quickstart job's end") + "</Job>".len();
    std::fs::write(
        conf.join("jobs.xml"),
        format!("{}{}", &jobs[..start], &jobs[end..]),
    )
    .expect("write jobs.xml");
    std::fs::write(conf.join("appsettings.agent.json"), SETTINGS).expect("write");
    conf
}

/// A test server and what keeps it alive.
/// The tests' PostgreSQL server, started when a test first needs it.
pub static PG: LazyLock<PostgresServer> = LazyLock::new(PostgresServer::start);

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub app: Router,
}

impl Fixture {
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    pub async fn new() -> Fixture {
        Self::with_tls(false).await
    }

    pub async fn with_tls(tls: bool) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Location::Sqlite(dir.path().join("work/idlink.db"));
        Fixture::over_store(dir, store, tls).await
    }

    /// The fixture on a new database of the tests' PostgreSQL server.
    pub async fn on_postgres(database: &str) -> Fixture {
        PG.create_database(database).expect("create database");
        let store = Location::parse(&PG.url(database)).expect("url");
        let dir = tempfile::tempdir().expect("tempdir");
        Fixture::over_store(dir, store, false).await
    }

    async fn over_store(dir: tempfile::TempDir, store: Location, tls: bool) -> Fixture {
        let conf = prepare_conf(dir.path());
        let f = Fixture::over_location(dir, conf, store, Default::default(), tls).await;
        let running = f.state.running();
        assert!(
            running.engine.is_some(),
            "the fixture passes check: {:?}",
            running.rejected
        );
        f
    }

    /// A server over the configuration folder `conf` (its store `<dir>/work/idlink.db`, its
    /// administrator `admin` with [`ADMIN_PASSWORD`]).
    pub async fn over(
        dir: tempfile::TempDir,
        conf: PathBuf,
        schedule: idlink_server::scheduler::ScheduleOptions,
        tls: bool,
    ) -> Fixture {
        let store = Location::Sqlite(dir.path().join("work/idlink.db"));
        Fixture::over_location(dir, conf, store, schedule, tls).await
    }

    async fn over_location(
        dir: tempfile::TempDir,
        conf: PathBuf,
        store: Location,
        schedule: idlink_server::scheduler::ScheduleOptions,
        tls: bool,
    ) -> Fixture {
        let store = Store::open(&store).await.expect("store");
        let generated = idlink_server::auth::ensure_admin(&store, Some(ADMIN_PASSWORD))
            .await
            .expect("admin");
        assert_eq!(generated, None, "the password was given");
        let paths = Paths {
            config_dir: conf,
            settings: None,
            work_dir: dir.path().join("work"),
        };
        let state = AppState::with_schedule(store, paths, tls, schedule).await;
        let app = idlink_server::app(state.clone());
        Fixture { dir, state, app }
    }

    /// A client without any credentials.
    pub fn anonymous(&self) -> Client {
        Client {
            app: self.app.clone(),
            cookies: Vec::new(),
            csrf: None,
            bearer: None,
        }
    }

    /// A client signed in as `admin` through the login form.
    pub async fn admin(&self) -> Client {
        self.login("admin", ADMIN_PASSWORD).await
    }

    pub async fn login(&self, name: &str, password: &str) -> Client {
        let mut c = self.anonymous();
        let r = c.try_login(name, password).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        c
    }
}

/// A response, body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

/// A browser or a script: keeps cookies, knows its CSRF token once signed in.
#[derive(Clone)]
pub struct Client {
    pub app: Router,
    pub cookies: Vec<(String, String)>,
    pub csrf: Option<String>,
    pub bearer: Option<String>,
}

/// The value of `name="csrf" value="..."` in a page.
pub fn csrf_in(page: &str) -> Option<String> {
    let i = page.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let rest = &page[i..];
    Some(rest[..rest.find('"')?].to_string())
}

impl Client {
    pub async fn send(&mut self, req: Request<Body>) -> Reply {
        let mut req = req;
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req.headers_mut()
                .insert(header::COOKIE, cookie.parse().expect("cookie"));
        }
        if let Some(t) = &self.bearer {
            req.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        for v in headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().expect("ascii");
            let pair = v.split(';').next().unwrap_or_default();
            if let Some((k, val)) = pair.split_once('=') {
                self.cookies.retain(|(name, _)| name != k);
                if !val.is_empty() {
                    self.cookies.push((k.to_string(), val.to_string()));
                }
            }
        }
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let body = String::from_utf8(body.to_vec()).expect("utf-8");
        if let Some(t) =
            csrf_in(&body).filter(|_| self.cookies.iter().any(|(k, _)| k == "idlink_session"))
        {
            self.csrf = Some(t);
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        let req = Request::get(path).body(Body::empty()).expect("request");
        self.send(req).await
    }

    /// A form post, with the session's CSRF token unless `csrf` says otherwise.
    pub async fn post_form(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: Option<&str>,
    ) -> Reply {
        let mut pairs: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(t) = csrf {
            pairs.push(("csrf".into(), t.into()));
        }
        let body = serde_urlencoded::to_string(&pairs).expect("form");
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.send(req).await
    }

    /// A form post carrying the session's token.
    pub async fn post(&mut self, path: &str) -> Reply {
        if self.csrf.is_none() {
            self.get("/").await;
        }
        let csrf = self.csrf.clone();
        self.post_form(path, &[], csrf.as_deref()).await
    }

    /// A JSON request, with the session's CSRF header when signed in through a session.
    pub async fn api(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        if method != Method::GET
            && self.bearer.is_none()
            && self.csrf.is_none()
            && !self.cookies.is_empty()
        {
            self.get("/").await;
        }
        let mut b = Request::builder().method(method.clone()).uri(path);
        if method != Method::GET
            && self.bearer.is_none()
            && let Some(t) = &self.csrf
        {
            b = b.header("x-csrf-token", t);
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    /// Signs in through the login page (its double-submit token included).
    pub async fn try_login(&mut self, name: &str, password: &str) -> Reply {
        let page = self.get("/login").await;
        assert_eq!(page.status, StatusCode::OK);
        let token = csrf_in(&page.body).expect("the login form carries a token");
        self.post_form(
            "/login",
            &[("name", name), ("password", password)],
            Some(&token),
        )
        .await
    }
}

/// Writes an agent key into `conf` (`agent.key`) and names it in the settings
/// (`EncryptionIdentity`), so secured values typed in the UI can be encrypted to it.
pub fn add_agent_key(conf: &Path) -> idlink_secrets::AgentIdentity {
    let (identity, _) = idlink_secrets::generate_identity();
    idlink_secrets::write_identity(&conf.join("agent.key"), &identity, false).expect("key");
    let settings = conf.join("appsettings.agent.json");
    let text = std::fs::read_to_string(&settings).expect("read").replacen(
        '{',
        "{\n  \"EncryptionIdentity\": \"agent.key\",",
        1,
    );
    std::fs::write(&settings, text).expect("write");
    identity
}
