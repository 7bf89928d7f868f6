//! `Usercube.FulfillDatabase` against a real PostgreSQL, a real MariaDB (each started once for
//! this test binary, one database per test) and SQLite files.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use idlink_model::package::PackageCatalog;
use idlink_packages::api::{
    ErrorKind, FulfillRequest, NoProgress, OrderResult, OrderState, OrdersFile, PackageError,
};
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Registry, instantiate};
use idlink_test_support::{MariaDbServer, PostgresServer};
use serde_json::{Value, json};

static PG: LazyLock<PostgresServer> = LazyLock::new(PostgresServer::start);
static MY: LazyLock<MariaDbServer> = LazyLock::new(MariaDbServer::start);

const PACKAGE: &str = "Usercube.FulfillDatabase@0000001";
const CONNECTION: &str = "AppsDB";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The tables every database gets: a unique mail, so one order can break a constraint.
const SETUP: &str = "
CREATE TABLE accounts (login VARCHAR(50) PRIMARY KEY, mail VARCHAR(100) UNIQUE, age INTEGER,
                       active BOOLEAN, roles TEXT);
CREATE TABLE groups (name VARCHAR(50) PRIMARY KEY, title VARCHAR(100));
";

/// One database under test.
enum Db {
    Pg(String),
    My(String),
    Lite(PathBuf),
}

impl Db {
    fn pg(name: &str) -> Db {
        PG.create_database(name).expect("create database");
        PG.execute(name, SETUP).expect("setup");
        Db::Pg(name.to_string())
    }

    fn my(name: &str) -> Db {
        MY.create_database(name).expect("create database");
        MY.execute(name, SETUP).expect("setup");
        Db::My(name.to_string())
    }

    fn lite(folder: &Folder, name: &str) -> Db {
        let path = folder.base().join("data").join(name);
        block_on(async {
            use sqlx::{ConnectOptions, Executor};
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .connect()
                .await
                .expect("create sqlite file");
            conn.execute(SETUP).await.expect("sqlite setup");
        });
        Db::Lite(path)
    }

    /// The connection string (SQLite: relative, anchored at the settings folder).
    fn url(&self) -> String {
        match self {
            Db::Pg(name) => PG.url(name),
            Db::My(name) => MY.url(name),
            Db::Lite(path) => format!(
                "sqlite:data/{}",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
            ),
        }
    }

    /// How the dialect quotes a name.
    fn q(&self, name: &str) -> String {
        match self {
            Db::My(_) => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// `login|mail|age|roles` of every account, by login (newlines in roles as `+`).
    fn rows(&self) -> Vec<String> {
        let text = match self {
            Db::Pg(name) => PG
                .execute(
                    name,
                    "SELECT login || '|' || coalesce(mail, '') || '|' || coalesce(age::text, '') \
                     || '|' || replace(coalesce(roles, ''), chr(10), '+') FROM accounts ORDER BY login;",
                )
                .expect("select"),
            Db::My(name) => MY
                .execute(
                    name,
                    "SELECT CONCAT(login, '|', coalesce(mail, ''), '|', coalesce(age, ''), '|', \
                     replace(coalesce(roles, ''), CHAR(10), '+')) FROM accounts ORDER BY login;",
                )
                .expect("select"),
            Db::Lite(path) => block_on(async {
                use sqlx::ConnectOptions;
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .connect()
                    .await
                    .expect("open");
                let rows: Vec<String> = sqlx::query_scalar(
                    "SELECT login || '|' || coalesce(mail, '') || '|' || coalesce(age, '') \
                     || '|' || replace(coalesce(roles, ''), char(10), '+') FROM accounts ORDER BY login",
                )
                .fetch_all(&mut conn)
                .await
                .expect("select");
                rows.join("\n")
            }),
        };
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

/// A settings folder with a `data` source root.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("data")).expect("mkdir data");
        Folder { dir }
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn env(&self) -> Environment {
        Environment {
            connection: CONNECTION.to_string(),
            base_dir: self.base().to_path_buf(),
            roots: SourceRoots::new(self.base(), &["data"]),
            mapped_tables: Vec::new(),
        }
    }

    fn instance(
        &self,
        settings: Value,
    ) -> Result<Box<dyn idlink_packages::api::Instance>, PackageError> {
        let registry = Registry::new();
        instantiate(
            registry.get(PACKAGE).expect("known package"),
            settings,
            self.env(),
        )
    }

    fn fulfill(
        &self,
        settings: Value,
        orders: Value,
        dry_run: bool,
    ) -> Result<Vec<OrderResult>, PackageError> {
        let orders: OrdersFile =
            serde_json::from_value(json!({ "ProvisioningOrdersList": orders })).expect("orders");
        let instance = self.instance(settings)?;
        let fulfill = instance.fulfill().expect("the package fulfills");
        block_on(fulfill.fulfill(&FulfillRequest {
            orders: &orders.orders,
            dry_run,
            progress: &NoProgress,
        }))
    }

    fn check(&self, settings: Value) -> Result<String, PackageError> {
        let instance = self.instance(settings)?;
        block_on(
            instance
                .check_connection()
                .expect("the package checks connections")
                .check_connection(),
        )
    }
}

fn settings(db: &Db) -> Value {
    json!({
        "ConnectionString": db.url(),
        "Tables": [
            {"ResourceType": "Apps_Account", "Table": "accounts", "KeyColumn": "login"},
            {"ResourceType": "Apps_Group", "Table": "groups", "KeyColumn": "name"}
        ],
        "Timeout": 20
    })
}

fn added(id: &str, changes: Value) -> Value {
    json!({"Id": id, "ChangeType": "Added",
           "ResourceType": {"Identifier": "Apps_Account"}, "Changes": changes})
}

fn modified(id: &str, login: &str, changes: Value) -> Value {
    json!({"Id": id, "ChangeType": "Modified",
           "ResourceType": {"Identifier": "Apps_Account"},
           "Resource": {"login": login, "mail": "old@x"}, "Changes": changes})
}

fn deleted(id: &str, login: &str) -> Value {
    json!({"Id": id, "ChangeType": "Deleted",
           "ResourceType": {"Identifier": "Apps_Account"},
           "Resource": {"login": login}, "Changes": {}})
}

/// Asserts each result's state, in order, showing all results on failure.
fn states(results: &[OrderResult], want: &[OrderState]) {
    let got: Vec<OrderState> = results.iter().map(|r| r.state).collect();
    assert_eq!(got, want, "{results:#?}");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.index, i);
    }
}

/// The whole cycle on one database: create, modify (a rename too), delete, retries, refusals,
/// and a dry run, checking the rows after each batch.
fn lifecycle(folder: &Folder, db: &Db, secrets: &[&str]) {
    use OrderState::{Errored, Executed};
    let s = settings(db);
    // Everything the package said, to search for secrets at the end.
    let mut said = String::new();
    let mut keep = |r: &[OrderResult]| said.push_str(&serde_json::to_string(r).expect("json"));

    // 1. Creates.
    let r = folder
        .fulfill(
            s.clone(),
            json!([
                added("1", json!({"login": "jdoe", "mail": "j@x", "age": 30, "active": true,
                                  "roles": ["user", "Admin"]})),
                added("2", json!({"login": "asmith", "mail": "a@x", "age": "41",
                                  "objectClass": "inetOrgPerson"})),
                json!({"Id": "3", "ChangeType": "Added", "ResourceType": {"Identifier": "Apps_Group"},
                       "Changes": {"name": "staff", "title": "O'Hara's staff"}})
            ]),
            false,
        )
        .expect("batch 1");
    keep(&r);
    states(&r, &[Executed, Executed, Executed]);
    assert_eq!(r[0].id.as_deref(), Some("1"));
    assert!(
        r[0].message.contains(CONNECTION)
            && r[0]
                .message
                .contains("inserted the row login = 'jdoe' into accounts"),
        "{}",
        r[0].message
    );
    assert_eq!(r[0].operations.len(), 1, "{:?}", r[0].operations);
    assert!(
        r[1].message.contains("Changes.objectClass")
            && r[1]
                .message
                .contains("is not a column of accounts: not written")
            && !r[1].operations[0].contains("objectClass"),
        "the engine's DefaultObjectClass is left out when the table has no such column: {:?}",
        r[1]
    );
    assert!(
        r[0].operations[0].starts_with(&format!("INSERT INTO {} (", db.q("accounts"))),
        "{:?}",
        r[0].operations
    );
    assert!(
        r[0].operations[0].contains("'jdoe'"),
        "{:?}",
        r[0].operations
    );
    assert_eq!(
        db.rows(),
        ["asmith|a@x|41|", "jdoe|j@x|30|Admin+user"],
        "multi-valued values sorted case-insensitively, joined by newlines"
    );

    // 2. Retries, updates and refusals in one batch: the refused orders leave the others.
    let r = folder
        .fulfill(
            s.clone(),
            json!([
                added("4", json!({"login": "jdoe", "mail": "jd@x"})),
                modified("5", "asmith", json!({"login": "asmith2", "age": 42})),
                modified("6", "ghost", json!({"mail": "g@x"})),
                added("7", json!({"login": "bob", "mail": "jd@x"})),
                added("8", json!({"login": "carl", "phone": "555"})),
                json!({"Id": "9", "ChangeType": "Added", "ResourceType": {"Identifier": "HR_Person"},
                       "Changes": {"login": "x"}}),
                modified("10", "jdoe", json!({"groups_add": [{"name": "staff"}]})),
                added("11", json!({"mail": "nokey@x"})),
                added("12", json!({"login": "dave", "mail": "d@x"})),
            ]),
            false,
        )
        .expect("batch 2");
    keep(&r);
    states(
        &r,
        &[
            Executed, Executed, Errored, Errored, Errored, Errored, Errored, Errored, Executed,
        ],
    );
    assert!(
        r[0].message.contains("already there") && r[0].message.contains("updated"),
        "{}",
        r[0].message
    );
    assert!(
        r[0].operations[0].starts_with(&format!("UPDATE {} SET", db.q("accounts"))),
        "{:?}",
        r[0].operations
    );
    assert!(
        r[1].message.contains("login = 'asmith'") && r[1].message.contains("login = 'asmith2'"),
        "{}",
        r[1].message
    );
    assert!(
        r[2].message
            .contains("no row with login = 'ghost' in accounts"),
        "{}",
        r[2].message
    );
    let refused = &r[3].message;
    assert!(
        refused.contains("INSERT INTO accounts (login = 'bob')")
            && refused.contains("the database refused the statement"),
        "{refused}"
    );
    let db_says = match db {
        Db::Pg(_) => "duplicate key value violates unique constraint",
        Db::My(_) => "Duplicate entry 'jd@x'",
        Db::Lite(_) => "UNIQUE constraint failed: accounts.mail",
    };
    assert!(refused.contains(db_says), "{refused}");
    assert!(
        r[4].message
            .contains("column 'phone' is not in table accounts")
            && r[4]
                .message
                .contains("its columns: login, mail, age, active, roles"),
        "{}",
        r[4].message
    );
    assert!(
        r[5].message
            .contains("resource type 'HR_Person' has no entry in Tables")
            && r[5].message.contains("Apps_Account -> accounts")
            && r[5].message.contains("Apps_Group -> groups"),
        "{}",
        r[5].message
    );
    assert!(
        r[6].message
            .contains("memberships need a table of their own"),
        "{}",
        r[6].message
    );
    assert!(
        r[7].message.contains("an Added order needs its row's key"),
        "{}",
        r[7].message
    );
    assert_eq!(
        db.rows(),
        ["asmith2|a@x|42|", "dave|d@x||", "jdoe|jd@x|30|Admin+user"]
    );

    // 3. Deletes, twice; a retried rename; a modify that changes nothing.
    let r = folder
        .fulfill(
            s.clone(),
            json!([
                deleted("13", "jdoe"),
                deleted("14", "jdoe"),
                modified("15", "asmith", json!({"login": "asmith2", "age": 43})),
                modified("16", "dave", json!({})),
            ]),
            false,
        )
        .expect("batch 3");
    keep(&r);
    states(&r, &[Executed, Executed, Executed, Executed]);
    assert!(
        r[0].message
            .contains("deleted the row login = 'jdoe' from accounts"),
        "{}",
        r[0].message
    );
    assert_eq!(
        r[0].operations,
        [format!(
            "DELETE FROM {} WHERE {} = 'jdoe'",
            db.q("accounts"),
            db.q("login")
        )]
    );
    assert!(
        r[1].message.contains("already absent") && r[1].operations.is_empty(),
        "{r:#?}"
    );
    assert!(r[2].message.contains("already renamed"), "{}", r[2].message);
    assert!(
        r[3].message.contains("nothing to change"),
        "{}",
        r[3].message
    );
    assert_eq!(db.rows(), ["asmith2|a@x|43|", "dave|d@x||"]);

    // 4. A dry run touches nothing and lists the statements.
    let r = folder
        .fulfill(
            s.clone(),
            json!([
                added("17", json!({"login": "zed", "mail": "z@x"})),
                modified("18", "dave", json!({"mail": "O'd@x"})),
                deleted("19", "asmith2"),
                json!({"Id": "20", "ChangeType": "Deleted", "ResourceType": {"Identifier": "Nope"},
                       "Resource": {"login": "x"}})
            ]),
            true,
        )
        .expect("dry run");
    keep(&r);
    states(&r, &[Executed, Executed, Executed, Errored]);
    let (a, l, m) = (db.q("accounts"), db.q("login"), db.q("mail"));
    assert_eq!(
        r[0].operations,
        [format!("INSERT INTO {a} ({l},{m}) VALUES ('zed','z@x')")]
    );
    assert!(
        r[0].message.starts_with("dry run: nothing sent"),
        "{}",
        r[0].message
    );
    assert_eq!(
        r[1].operations,
        [format!("UPDATE {a} SET {m} = 'O''d@x' WHERE {l} = 'dave'")]
    );
    assert_eq!(
        r[2].operations,
        [format!("DELETE FROM {a} WHERE {l} = 'asmith2'")]
    );
    assert_eq!(
        db.rows(),
        ["asmith2|a@x|43|", "dave|d@x||"],
        "dry run wrote"
    );

    // 5. Check connection names the tables and their keys.
    let ok = folder.check(s.clone()).expect("check connection");
    assert!(
        ok.contains("tables: accounts (key login), groups (key name)"),
        "{ok}"
    );
    let mut bad = s.clone();
    bad["Tables"][1]["KeyColumn"] = json!("nom");
    let e = folder.check(bad).expect_err("missing key column");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert!(
        e.to_string().contains("Tables[1].KeyColumn")
            && e.to_string()
                .contains("column 'nom' is not in table groups"),
        "{e}"
    );
    let mut bad = s;
    bad["Tables"][0]["Table"] = json!("acounts");
    let e = folder.check(bad).expect_err("missing table");
    assert!(
        e.to_string().contains("Tables[0].Table")
            && e.to_string().contains("there is no table 'acounts'")
            && e.to_string().contains("groups"),
        "{e}"
    );

    said.push_str(&ok);
    said.push_str(&e.to_string());
    for secret in secrets {
        assert!(!said.contains(secret), "a secret in: {said}");
    }
}

#[test]
fn sqlite_file_fulfills_creates_updates_deletes_idempotently() {
    let folder = Folder::new();
    let db = Db::lite(&folder, "apps.db");
    lifecycle(&folder, &db, &[]);
}

#[test]
fn postgres_fulfills_creates_updates_deletes_idempotently_without_showing_the_password() {
    let folder = Folder::new();
    let db = Db::pg("fdb_cycle");
    lifecycle(&folder, &db, &[PG.password()]);
    // Every result of a run, serialized, is free of the password.
    let r = folder
        .fulfill(
            settings(&db),
            json!([
                added("p1", json!({"login": "pat", "mail": "a@x"})),
                added("p2", json!({"login": "quinn", "age": "not a number"})),
            ]),
            false,
        )
        .expect("run");
    states(&r, &[OrderState::Errored, OrderState::Errored]);
    assert!(
        r[1].message
            .contains("invalid input syntax for type integer"),
        "{}",
        r[1].message
    );
    let text = serde_json::to_string(&r).expect("json");
    assert!(!text.contains(PG.password()), "{text}");
}

#[test]
fn mariadb_fulfills_creates_updates_deletes_idempotently() {
    let folder = Folder::new();
    let db = Db::my("fdb_cycle");
    lifecycle(&folder, &db, &[MY.password()]);
}

#[test]
fn bad_credentials_and_unreachable_servers_fail_the_batch_without_the_password() {
    let folder = Folder::new();
    let db = Db::pg("fdb_creds");
    let wrong = "Wrong-Fdb-Password-9";
    let mut s = settings(&db);
    s["ConnectionString"] = json!(PG.url_for("postgres", wrong, "fdb_creds"));
    let orders = json!([added("1", json!({"login": "x"}))]);
    for e in [
        folder.check(s.clone()).expect_err("check"),
        folder
            .fulfill(s.clone(), orders.clone(), false)
            .expect_err("fulfill"),
    ] {
        assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
        let m = e.to_string();
        assert!(
            m.contains(CONNECTION) && m.contains("bad credentials"),
            "{m}"
        );
        assert!(
            !m.contains(wrong) && !format!("{e:?}").contains(wrong),
            "{m}"
        );
    }
    let mut s = settings(&Db::my("fdb_creds"));
    s["ConnectionString"] = json!(MY.url_for(MY.user(), wrong, "fdb_creds"));
    let e = folder.check(s).expect_err("mariadb check");
    assert_eq!(e.kind(), ErrorKind::Credentials, "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");

    let mut s = settings(&db);
    s["ConnectionString"] = json!(format!(
        "postgres://postgres:{wrong}@127.0.0.1:{}/fdb_creds",
        idlink_test_support::closed_port()
    ));
    let e = folder.fulfill(s, orders, false).expect_err("unreachable");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");
    assert!(db.rows().is_empty());
}

#[test]
fn sqlite_file_outside_the_source_roots_is_refused_and_empty_requests_do_not_connect() {
    let folder = Folder::new();
    let outside = tempfile::tempdir().expect("tempdir");
    let path = outside.path().join("apps.db");
    let s = json!({
        "ConnectionString": format!("sqlite://{}", path.display()),
        "Tables": [{"ResourceType": "Apps_Account", "Table": "accounts", "KeyColumn": "login"}]
    });
    let r = folder
        .fulfill(s.clone(), json!([]), false)
        .expect("nothing to do");
    assert!(r.is_empty());
    std::fs::write(&path, b"").expect("touch");
    let e = folder
        .fulfill(s, json!([added("1", json!({"login": "x"}))]), false)
        .expect_err("outside the roots");
    assert!(e.to_string().contains("SourcesRootPaths"), "{e}");
}

/// `SetupSql`: a demo database (the quickstart's) is created by its first fulfill, file and
/// table; later batches run the idempotent statements again and change nothing else. Without
/// `SetupSql` a missing SQLite file is an error, never silently created. A file under no
/// source root is not created either.
#[test]
fn setup_sql_creates_a_missing_sqlite_database_and_its_table() {
    let folder = Folder::new();
    let setup = "CREATE TABLE IF NOT EXISTS accounts (login TEXT PRIMARY KEY, mail TEXT, age INTEGER, roles TEXT)";
    let s = json!({
        "ConnectionString": "sqlite:data/new/apps.db",
        "Tables": [{"ResourceType": "Apps_Account", "Table": "accounts", "KeyColumn": "login"}],
        "SetupSql": setup
    });
    let without = json!({
        "ConnectionString": "sqlite:data/new/apps.db",
        "Tables": [{"ResourceType": "Apps_Account", "Table": "accounts", "KeyColumn": "login"}]
    });
    let e = folder
        .fulfill(
            without.clone(),
            json!([added("1", json!({"login": "a", "mail": "a@x"}))]),
            false,
        )
        .expect_err("no file, no SetupSql");
    assert!(e.to_string().contains("database missing"), "{e}");
    assert!(!folder.base().join("data/new/apps.db").exists());

    let r = folder
        .fulfill(
            s.clone(),
            json!([added("1", json!({"login": "a", "mail": "a@x"}))]),
            false,
        )
        .expect("created");
    states(&r, &[OrderState::Executed]);
    let r = folder
        .fulfill(
            s,
            json!([added("2", json!({"login": "b", "mail": "b@x"}))]),
            false,
        )
        .expect("again");
    states(&r, &[OrderState::Executed]);
    let db = Db::Lite(folder.base().join("data/new/apps.db"));
    assert_eq!(db.rows(), ["a|a@x||", "b|b@x||"]);
    // The file is now there: the settings without SetupSql work too.
    let r = folder
        .fulfill(without, json!([deleted("3", "a")]), false)
        .expect("plain");
    states(&r, &[OrderState::Executed]);
    assert_eq!(db.rows(), ["b|b@x||"]);

    // Outside the source roots nothing is created.
    let outside = tempfile::tempdir().expect("tempdir");
    let s = json!({
        "ConnectionString": format!("sqlite://{}", outside.path().join("x.db").display()),
        "Tables": [{"ResourceType": "Apps_Account", "Table": "accounts", "KeyColumn": "login"}],
        "SetupSql": setup
    });
    let e = folder
        .fulfill(s, json!([added("1", json!({"login": "a"}))]), false)
        .expect_err("outside the roots");
    assert!(e.to_string().contains("SourcesRootPaths"), "{e}");
    assert!(!outside.path().join("x.db").exists());
}
