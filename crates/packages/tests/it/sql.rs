//! sql package tests: a real PostgreSQL and a real MariaDB (each started once for this test
//! binary by `idlink-test-support`, one database per test), and SQLite files.

use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use idlink_model::config::ValueType;
use idlink_model::package::{PackageCatalog, PackageInfo};
use idlink_packages::Registry;
use idlink_packages::api::{
    ConnectionSchema, Environment, ExportRequest, MappedTable, NoProgress, PackageError, Progress,
};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;
use idlink_test_support::{FakePgServer, Hostility, MariaDbServer, PostgresServer};
use serde_json::{Value, json};

static PG: LazyLock<PostgresServer> = LazyLock::new(PostgresServer::start);
static MY: LazyLock<MariaDbServer> = LazyLock::new(MariaDbServer::start);

const CONNECTION: &str = "HR";
const PG_ID: &str = "Usercube.SQL.PostgreSQL@0000001";
const MY_ID: &str = "Usercube.SQL.MySQL@0000001";
const LITE_ID: &str = "Idlink.SQL.SQLite@0000001";
const GENERIC_ID: &str = "Usercube.SQL@0000001";

fn package(id: &str) -> &'static PackageInfo {
    static REGISTRY: Registry = Registry::new();
    REGISTRY
        .get(id)
        .unwrap_or_else(|| panic!("{id} is registered"))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A PostgreSQL database of its own for one test, set up with `sql`.
fn pg_database(name: &str, sql: &str) -> String {
    PG.create_database(name).expect("create database");
    if !sql.is_empty() {
        PG.execute(name, sql).expect("setup SQL");
    }
    PG.url(name)
}

/// A MariaDB database of its own for one test, set up with `sql`.
fn my_database(name: &str, sql: &str) -> String {
    MY.create_database(name).expect("create database");
    if !sql.is_empty() {
        MY.execute(name, sql).expect("setup SQL");
    }
    MY.url(name)
}

/// A settings folder with a `data` source root and a staging folder.
struct Folder {
    dir: tempfile::TempDir,
}

/// One exported table: its name and its whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    name: String,
    text: String,
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

    fn env(&self, mapped_tables: Vec<MappedTable>) -> Environment {
        Environment {
            connection: CONNECTION.to_string(),
            base_dir: self.base().to_path_buf(),
            roots: SourceRoots::new(self.base(), &["data"]),
            mapped_tables,
        }
    }

    /// Writes `data/<name>` and returns the setting that names it.
    fn file(&self, name: &str, text: &str) -> String {
        std::fs::write(self.base().join("data").join(name), text).expect("write");
        format!("data/{name}")
    }

    fn export(&self, id: &str, settings: Value) -> Result<Vec<Table>, PackageError> {
        self.export_mapped(id, settings, vec![], &NoProgress)
    }

    fn export_mapped(
        &self,
        id: &str,
        settings: Value,
        mapped: Vec<MappedTable>,
        progress: &dyn Progress,
    ) -> Result<Vec<Table>, PackageError> {
        let staging = tempfile::tempdir_in(self.base()).expect("staging");
        let instance = idlink_packages::instantiate(package(id), settings, self.env(mapped))?;
        let export = instance.export().expect("SQL packages export");
        let mut out = ExportOutput::new(CONNECTION, staging.path());
        let request = ExportRequest {
            incremental: false,
            cookie: None,
            progress,
        };
        let outcome = block_on(export.export(&request, &mut out))?;
        assert!(outcome.cookie.is_none() && !outcome.incremental);
        Ok(out
            .finish()?
            .into_iter()
            .map(|t| Table {
                text: std::fs::read_to_string(&t.path).expect("read table"),
                name: t.name,
            })
            .collect())
    }

    /// Exports and returns the single table's text.
    fn export_one(&self, id: &str, settings: Value) -> String {
        let tables = self
            .export(id, settings)
            .unwrap_or_else(|e| panic!("export failed: {e}"));
        assert_eq!(tables.len(), 1, "{tables:?}");
        assert_eq!(tables[0].name, CONNECTION);
        tables
            .into_iter()
            .next()
            .map(|t| t.text)
            .unwrap_or_default()
    }

    fn schema(
        &self,
        id: &str,
        settings: Value,
        mapped: Vec<MappedTable>,
    ) -> Result<ConnectionSchema, PackageError> {
        let instance = idlink_packages::instantiate(package(id), settings, self.env(mapped))?;
        block_on(
            instance
                .schema()
                .expect("SQL packages have a schema")
                .schema(),
        )
    }

    fn check(&self, id: &str, settings: Value) -> Result<String, PackageError> {
        let instance = idlink_packages::instantiate(package(id), settings, self.env(vec![]))?;
        block_on(
            instance
                .check_connection()
                .expect("SQL packages check connections")
                .check_connection(),
        )
    }
}

fn mapped(suffix: &str) -> MappedTable {
    MappedTable {
        name: format!("{CONNECTION}_{suffix}"),
        suffix: Some(suffix.to_string()),
        columns: vec![],
    }
}

/// The error's text, checked to hold no secret, in both its display and debug forms.
fn clean(e: &PackageError, secrets: &[&str]) -> String {
    let shown = e.to_string();
    let debug = format!("{e:?}");
    for s in secrets {
        assert!(!shown.contains(s), "secret '{s}' in: {shown}");
        assert!(!debug.contains(s), "secret '{s}' in: {debug}");
    }
    shown
}

fn retryable(e: &PackageError) -> bool {
    matches!(
        e,
        PackageError::System {
            retryable: true,
            ..
        }
    )
}

// ---------------------------------------------------------------- PostgreSQL

const PG_TYPES: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE everything (
    id int4 PRIMARY KEY, flag bool, small int2, big int8, real4 float4, real8 float8,
    money numeric(10, 2), huge numeric, name text, code varchar(8), fixed char(3), guid uuid,
    doc json, docb jsonb, raw bytea, at timestamp, at_tz timestamptz, day date, clock time,
    feeling mood, count positive, tags text[], scores int4[]
);
INSERT INTO everything VALUES
 (1, true, -32768, 9223372036854775807, 1.1, 0.1, 12.5, 123456789012345678901234567890.000000000001,
  'Ng, "Andrew"', 'x', 'ab', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b": 1,  "a": [1, 2]}',
  '{"b": 1, "a": [1, 2]}', '\x000102ff', '2024-01-02 03:04:05', '2024-01-02 05:04:05.123+02',
  '2024-02-29', '13:14:15.5', 'happy', 7, '{b,A,a}', '{3,1,2}'),
 (2, false, 0, 0, 'NaN', '-Infinity', 0, -0.5, '', '', '', NULL, 'null', '[]', '', 'infinity',
  '1999-12-31 23:59:59.999999+00', '0044-03-15 BC', '24:00:00', 'sad', 1, '{}', '{1,NULL}'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

const PG_EXPECTED: &str = "id,flag,small,big,real4,real8,money,huge,name,code,fixed,guid,doc,docb,raw,at,at_tz,day,clock,feeling,count,tags,scores
1,true,-32768,9223372036854775807,1.1,0.1,12.50,123456789012345678901234567890.000000000001,\"Ng, \"\"Andrew\"\"\",x,ab ,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,\"{\"\"a\"\":[1,2],\"\"b\"\":1}\",\"{\"\"a\"\":[1,2],\"\"b\"\":1}\",AAEC/w==,2024-01-02T03:04:05Z,2024-01-02T03:04:05.123Z,2024-02-29,13:14:15.500,happy,7,\"A
a
b\",\"1
2
3\"
2,false,0,0,NaN,-Infinity,0.00,-0.5,,,   ,,null,[],,infinity,1999-12-31T23:59:59.999999Z,-0043-03-15,24:00:00,sad,1,,1
3,,,,,,,,,,,,,,,,,,,,,,
";

#[test]
fn postgres_renders_every_type_canonically_by_copy_and_by_rows() {
    let url = pg_database("types", PG_TYPES);
    let folder = Folder::new();
    // A plain query goes through binary COPY ...
    let copied = folder.export_one(
        PG_ID,
        json!({"ConnectionString": url, "SqlCommand": "SELECT * FROM everything ORDER BY id"}),
    );
    assert_eq!(copied, PG_EXPECTED);
    // ... a statement that is not a plain query (here, because of the ';' in a comment) row
    // by row: the same text either way.
    let rows = folder.export_one(
        PG_ID,
        json!({"ConnectionString": url,
               "SqlCommand": "SELECT * FROM everything ORDER BY id -- ; row path"}),
    );
    assert_eq!(rows, PG_EXPECTED);
}

#[test]
fn postgres_accepts_ado_pairs_and_urls_for_the_generic_package() {
    let url = pg_database(
        "ado",
        "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2);",
    );
    let folder = Folder::new();
    let pw = PG.password();
    let port = PG.port();
    for cs in [
        format!("Host=127.0.0.1;Port={port};Database=ado;Username=postgres;Password={pw}"),
        format!("server = 127.0.0.1,{port} ; DATABASE=ado; User Id=postgres; PWD='{pw}';"),
        format!(
            "HOST=127.0.0.1;port={port};Initial Catalog=ado;uid=postgres;pwd={pw};Pooling=true"
        ),
    ] {
        let text = folder.export_one(
            PG_ID,
            json!({"ConnectionString": cs, "SqlCommand": "SELECT n FROM t ORDER BY n"}),
        );
        assert_eq!(text, "n\n1\n2\n", "{cs}");
    }
    // The generic package reads the kind of database from the URL's scheme ...
    let generic = folder.export_one(
        GENERIC_ID,
        json!({"ConnectionString": url.replace("postgres://", "postgresql://"),
               "SqlCommand": "SELECT n FROM t ORDER BY n"}),
    );
    assert_eq!(generic, "n\n1\n2\n");
    // ... and cannot guess it from pairs.
    let e = folder
        .export(
            GENERIC_ID,
            json!({"ConnectionString": format!("Host=127.0.0.1;Password={pw}"), "SqlCommand": "SELECT 1"}),
        )
        .expect_err("generic needs a URL");
    assert!(clean(&e, &[pw]).contains("URL"), "{e}");
}

#[test]
fn postgres_sql_file_is_read_under_the_source_roots() {
    let url = pg_database("file", "CREATE TABLE t (n int); INSERT INTO t VALUES (5);");
    let folder = Folder::new();
    let file = folder.file("query.sql", "-- people\nSELECT n * 2 AS twice\nFROM t;\n");
    let text = folder.export_one(PG_ID, json!({"ConnectionString": url, "SqlFile": file}));
    assert_eq!(text, "twice\n10\n");
    std::fs::write(folder.base().join("outside.sql"), "SELECT 1").expect("write");
    let e = folder
        .export(
            PG_ID,
            json!({"ConnectionString": url, "SqlFile": "data/../outside.sql"}),
        )
        .expect_err("outside the roots");
    assert!(e.to_string().contains("outside SourcesRootPaths"), "{e}");
    let e = folder
        .check(
            PG_ID,
            json!({"ConnectionString": url, "SqlFile": "data/missing.sql"}),
        )
        .expect_err("missing file");
    assert!(e.to_string().contains("missing.sql"), "{e}");
}

#[test]
fn postgres_without_command_exports_each_mapped_table() {
    let url = pg_database(
        "mapped",
        "CREATE TABLE people (id int, name text); INSERT INTO people VALUES (1, 'Ada');
         CREATE SCHEMA hr; CREATE TABLE hr.\"Groups\" (gid int); INSERT INTO hr.\"Groups\" VALUES (7);",
    );
    let folder = Folder::new();
    let settings = json!({"ConnectionString": url});
    let tables = folder
        .export_mapped(
            PG_ID,
            settings.clone(),
            vec![mapped("people"), mapped("\"hr\".\"Groups\"")],
            &NoProgress,
        )
        .expect("export");
    assert_eq!(
        tables,
        vec![
            Table {
                name: "HR_people".to_string(),
                text: "id,name\n1,Ada\n".to_string()
            },
            Table {
                name: "HR_\"hr\".\"Groups\"".to_string(),
                text: "gid\n7\n".to_string()
            },
        ]
    );
    // Nothing mapped and no command: say what to do, with the database's tables.
    let e = folder
        .export(PG_ID, settings.clone())
        .expect_err("nothing to export");
    let m = e.to_string();
    assert!(
        m.contains("SqlCommand") && m.contains("people") && m.contains("hr.\"Groups\""),
        "{m}"
    );
    // A mapped table named after the connection alone has no database table.
    let whole = MappedTable {
        name: CONNECTION.to_string(),
        suffix: None,
        columns: vec![],
    };
    let e = folder
        .export_mapped(PG_ID, settings, vec![whole], &NoProgress)
        .expect_err("no suffix");
    assert!(e.to_string().contains("HR_<database table>"), "{e}");
}

#[test]
fn postgres_schema_lists_result_columns_and_database_tables() {
    let url = pg_database(
        "schema",
        "CREATE TABLE people (id int8, login varchar(20), born date, active bool, photo bytea,
                              guid uuid, tags text[]);
         CREATE VIEW actives AS SELECT id FROM people WHERE active;
         CREATE TABLE shapes (p point);",
    );
    let folder = Folder::new();
    let s = folder
        .schema(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT * FROM people"}),
            vec![],
        )
        .expect("schema");
    assert_eq!(s.tables.len(), 1);
    assert_eq!(s.tables[0].name, CONNECTION);
    let cols: Vec<(&str, ValueType, Option<&str>, bool)> = s.tables[0]
        .columns
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.value_type,
                c.source_type.as_deref(),
                c.multivalued,
            )
        })
        .collect();
    assert_eq!(
        cols,
        vec![
            ("id", ValueType::Int64, Some("INT8"), false),
            ("login", ValueType::String, Some("VARCHAR"), false),
            ("born", ValueType::DateTime, Some("DATE"), false),
            ("active", ValueType::Bool, Some("BOOL"), false),
            ("photo", ValueType::Binary, Some("BYTEA"), false),
            ("guid", ValueType::Guid, Some("UUID"), false),
            ("tags", ValueType::String, Some("TEXT[]"), true),
        ]
    );
    // No command: the mapped tables, then the database's tables and views.
    let s = folder
        .schema(
            PG_ID,
            json!({"ConnectionString": url}),
            vec![mapped("actives")],
        )
        .expect("schema");
    let names: Vec<&str> = s.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["HR_actives", "HR_people", "HR_shapes"]);
    // A command whose result cannot be exported fails its schema too.
    let e = folder
        .schema(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT * FROM shapes"}),
            vec![],
        )
        .expect_err("point");
    assert!(e.to_string().contains("'p' has type POINT"), "{e}");
}

#[test]
fn postgres_check_connection_tells_unreachable_bad_credentials_and_missing_database() {
    let url = pg_database("checks", "");
    let folder = Folder::new();
    let ok = folder
        .check(PG_ID, json!({"ConnectionString": url}))
        .expect("reachable");
    assert!(
        ok.contains("PostgreSQL 1") && ok.contains(&format!("127.0.0.1:{}/checks", PG.port())),
        "{ok}"
    );

    let wrong = "Wrong-Password-123";
    let e = folder
        .check(
            PG_ID,
            json!({"ConnectionString": PG.url_for("postgres", wrong, "checks")}),
        )
        .expect_err("bad password");
    let m = clean(&e, &[wrong, PG.password()]);
    assert!(
        m.contains("bad credentials") && m.contains("password authentication failed"),
        "{m}"
    );
    assert!(!retryable(&e), "{m}");

    PG.create_user("reader", "Reader-Secret-1").expect("user");
    let e = folder
        .check(
            PG_ID,
            json!({"ConnectionString": PG.url_for("reader", "Reader-Secret-1", "nope")}),
        )
        .expect_err("missing database");
    let m = clean(&e, &["Reader-Secret-1"]);
    assert!(
        m.contains("database missing") && m.contains("\"nope\" does not exist"),
        "{m}"
    );
    assert!(!retryable(&e));

    let closed = idlink_test_support::closed_port();
    let cs = format!("Host=127.0.0.1;Port={closed};Database=x;Username=u;Password=Unreachable-Pw");
    let e = folder
        .check(PG_ID, json!({"ConnectionString": cs}))
        .expect_err("unreachable");
    let m = clean(&e, &["Unreachable-Pw"]);
    assert!(
        retryable(&e) && m.contains("cannot reach the server") && m.contains("a retry may help"),
        "{m}"
    );
    assert!(m.contains(&format!("127.0.0.1:{closed}")), "{m}");
}

#[test]
fn postgres_errors_carry_the_database_message_never_the_password() {
    let url = pg_database("errors", "CREATE TABLE t (n int);");
    let folder = Folder::new();
    let pw = PG.password();
    let e = folder
        .export(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELEC n FROM t"}),
        )
        .expect_err("syntax");
    let m = clean(&e, &[pw, &url]);
    assert!(
        m.contains("syntax error at or near \"SELEC\"") && m.contains("42601"),
        "{m}"
    );
    assert!(!retryable(&e));
    let e = folder
        .export(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT missing FROM t"}),
        )
        .expect_err("unknown column");
    assert!(
        clean(&e, &[pw]).contains("column \"missing\" does not exist"),
        "{e}"
    );
    // A password that also appears in the query text is still never shown.
    let e = folder
        .export(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": format!("SELECT '{pw}'::int")}),
        )
        .expect_err("bad cast");
    clean(&e, &[pw]);
    let e = folder
        .export(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": "UPDATE t SET n = 1"}),
        )
        .expect_err("not a query");
    assert!(e.to_string().contains("returns no columns"), "{e}");
}

#[test]
fn postgres_unrenderable_types_are_named() {
    let url = pg_database("unrenderable", "");
    let folder = Folder::new();
    let e = folder
        .export(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT 1 AS n, point(1, 2) AS spot"}),
        )
        .expect_err("point");
    let m = e.to_string();
    assert!(
        m.contains("column 'spot' has type POINT") && m.contains("CAST(spot AS text)"),
        "{m}"
    );
    // Cast, it exports.
    let text = folder.export_one(
        PG_ID,
        json!({"ConnectionString": url, "SqlCommand": "SELECT point(1, 2)::text AS spot"}),
    );
    assert_eq!(text, "spot\n\"(1,2)\"\n");
    // Network addresses and XML are text.
    let text = folder.export_one(
        PG_ID,
        json!({"ConnectionString": url, "SqlCommand":
            "SELECT inet '192.0.2.1' AS a, inet '192.0.2.1/24' AS b, cidr '10.0.0.0/8' AS c, \
             inet '2001:db8::1' AS d, macaddr '08:00:2B:01:02:03' AS e, xmlparse(content '<a>x</a>') AS f"}),
    );
    assert_eq!(
        text,
        "a,b,c,d,e,f\n192.0.2.1,192.0.2.1/24,10.0.0.0/8,2001:db8::1,08:00:2b:01:02:03,<a>x</a>\n"
    );
}

#[test]
fn postgres_timeout_bounds_the_wait_and_isolation_applies() {
    let url = pg_database(
        "timeout",
        "CREATE TABLE t (n int); INSERT INTO t VALUES (1);",
    );
    let folder = Folder::new();
    let start = Instant::now();
    let e = folder
        .export(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT pg_sleep(5)::text AS slept", "Timeout": 1}),
        )
        .expect_err("timeout");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(retryable(&e) && e.to_string().contains("within 1 s"), "{e}");
    for level in [
        "ReadCommitted",
        "RepeatableRead",
        "Serializable",
        "Snapshot",
    ] {
        let text = folder.export_one(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT n FROM t", "IsolationLevel": level}),
        );
        assert_eq!(text, "n\n1\n", "{level}");
    }
}

#[test]
fn postgres_streams_many_rows_with_progress() {
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicU64);
    impl Progress for Count {
        fn rows(&self, _: &str, rows: u64) {
            self.0.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        }
        fn phase(&self, _: &str) {}
    }
    let url = pg_database("many", "");
    let folder = Folder::new();
    let count = Count::default();
    let sql = "SELECT i, 'user' || i AS login FROM generate_series(1, 100000) AS i";
    let tables = folder
        .export_mapped(
            PG_ID,
            json!({"ConnectionString": url, "SqlCommand": sql}),
            vec![],
            &count,
        )
        .expect("export");
    let text = &tables[0].text;
    assert_eq!(text.lines().count(), 100_001);
    assert!(text.ends_with("100000,user100000\n"));
    assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 100_000);
}

// ---------------------------------------------------------------- MariaDB

const MY_TYPES: &str = r#"
CREATE TABLE everything (
    id INT PRIMARY KEY, flag BOOLEAN, tiny TINYINT, utiny TINYINT UNSIGNED, small SMALLINT,
    big BIGINT, ubig BIGINT UNSIGNED, real4 FLOAT, real8 DOUBLE, money DECIMAL(10, 2),
    name VARCHAR(40), body TEXT, fixed CHAR(3), color ENUM('red', 'blue'), sizes SET('s', 'm', 'l'),
    doc JSON, raw VARBINARY(8), blobby BLOB, login VARCHAR(20) COLLATE utf8mb4_bin, bits BIT(8), at DATETIME(6), stamp TIMESTAMP NULL,
    day DATE, clock TIME(3), yr YEAR
);
INSERT INTO everything VALUES
 (1, TRUE, -128, 255, -32768, -9223372036854775808, 18446744073709551615, 1.5, 0.1, 12.5,
  'Ng, "Andrew"', 'line1\nline2', 'ab', 'blue', 's,l', '{"b": 1,  "a": [1, 2]}', X'000102FF',
  X'00FF', 'Émile', b'00000101', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05', '2024-02-29',
  '-838:59:59.5', 2024),
 (2, FALSE, 0, 0, 0, 0, 0, 0, 0, 0, '', '', '', 'red', '', '[]', X'', X'', '', b'0',
  '2024-01-02 03:04:05', '1999-12-31 23:59:59', '1000-01-01', '00:00:00', 1999),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

/// MariaDB's JSON is text with a binary collation: written as stored (see `Kind::Bytes`).
const MY_EXPECTED: &str = "id,flag,tiny,utiny,small,big,ubig,real4,real8,money,name,body,fixed,color,sizes,doc,raw,blobby,login,bits,at,stamp,day,clock,yr
1,true,-128,255,-32768,-9223372036854775808,18446744073709551615,1.5,0.1,12.50,\"Ng, \"\"Andrew\"\"\",\"line1
line2\",ab,blue,\"s,l\",\"{\"\"b\"\": 1,  \"\"a\"\": [1, 2]}\",AAEC/w==,AP8=,Émile,5,2024-01-02T03:04:05.123456Z,2024-01-02T03:04:05Z,2024-02-29,-838:59:59.500,2024
2,false,0,0,0,0,0,0,0,0.00,,,,red,,[],,,,0,2024-01-02T03:04:05Z,1999-12-31T23:59:59Z,1000-01-01,00:00:00,1999
3,,,,,,,,,,,,,,,,,,,,,,,,
";

#[test]
fn mariadb_renders_every_type_canonically() {
    let url = my_database("types", MY_TYPES);
    let folder = Folder::new();
    let text = folder.export_one(
        MY_ID,
        json!({"ConnectionString": url, "SqlCommand": "SELECT * FROM everything ORDER BY id"}),
    );
    assert_eq!(text, MY_EXPECTED);
    // An expression that is always NULL.
    let text = folder.export_one(
        MY_ID,
        json!({"ConnectionString": url, "SqlCommand": "SELECT NULL AS nothing, 1 AS one"}),
    );
    assert_eq!(text, "nothing,one\n,1\n");
}

#[test]
fn mariadb_accepts_ado_pairs_and_both_url_schemes() {
    let url = my_database(
        "ado",
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2);",
    );
    let folder = Folder::new();
    let (user, pw, port) = (MY.user(), MY.password(), MY.port());
    for cs in [
        format!("Server=127.0.0.1;Port={port};Database=ado;Uid={user};Pwd={pw};SslMode=None"),
        format!("host=127.0.0.1:{port};database=ado;user id={user};password=\"{pw}\""),
    ] {
        let text = folder.export_one(
            MY_ID,
            json!({"ConnectionString": cs, "SqlCommand": "SELECT n FROM t ORDER BY n"}),
        );
        assert_eq!(text, "n\n1\n2\n", "{cs}");
    }
    for url in [url.clone(), url.replace("mysql://", "mariadb://")] {
        let text = folder.export_one(
            GENERIC_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT n FROM t ORDER BY n"}),
        );
        assert_eq!(text, "n\n1\n2\n");
    }
    // A URL for another kind of database is refused by a specific package.
    let e = folder
        .export(
            MY_ID,
            json!({"ConnectionString": PG_URL_EXAMPLE, "SqlCommand": "SELECT 1"}),
        )
        .expect_err("postgres URL");
    assert!(clean(&e, &["pg-secret"]).contains("PostgreSQL URL"), "{e}");
}

const PG_URL_EXAMPLE: &str = "postgres://u:pg-secret@127.0.0.1/db";

#[test]
fn mariadb_errors_mapped_tables_schema_and_check() {
    let url = my_database(
        "misc",
        "CREATE TABLE people (id INT, login VARCHAR(20), born DATE, active BOOLEAN);
         INSERT INTO people VALUES (1, 'ada', '1815-12-10', TRUE);
         CREATE TABLE `group` (gid INT); INSERT INTO `group` VALUES (7);
         CREATE TABLE shapes (p POINT);",
    );
    let folder = Folder::new();
    let pw = MY.password();
    // Mapped tables, quoted as MySQL quotes.
    let tables = folder
        .export_mapped(
            MY_ID,
            json!({"ConnectionString": url}),
            vec![mapped("people"), mapped("`group`")],
            &NoProgress,
        )
        .expect("export");
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["HR_people", "HR_`group`"]);
    assert_eq!(
        tables[0].text,
        "id,login,born,active\n1,ada,1815-12-10,true\n"
    );
    // Schema: the result's columns, or every table of the database.
    let s = folder
        .schema(
            MY_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT * FROM people"}),
            vec![],
        )
        .expect("schema");
    let cols: Vec<(&str, ValueType)> = s.tables[0]
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.value_type))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("id", ValueType::Int32),
            ("login", ValueType::String),
            ("born", ValueType::DateTime),
            ("active", ValueType::Bool)
        ]
    );
    let s = folder
        .schema(MY_ID, json!({"ConnectionString": url}), vec![])
        .expect("schema");
    let names: Vec<&str> = s.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["HR_`group`", "HR_people", "HR_shapes"]);
    // Unrenderable.
    let e = folder
        .export(
            MY_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT p AS shape FROM shapes"}),
        )
        .expect_err("geometry");
    assert!(
        e.to_string().contains("column 'shape' has type GEOMETRY"),
        "{e}"
    );
    // Syntax error: MariaDB's message, no password.
    let e = folder
        .export(
            MY_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELEC 1"}),
        )
        .expect_err("syntax");
    let m = clean(&e, &[pw, &url]);
    assert!(
        m.contains("You have an error in your SQL syntax") && m.contains("1064"),
        "{m}"
    );
    // Check connection.
    let ok = folder
        .check(MY_ID, json!({"ConnectionString": url}))
        .expect("reachable");
    assert!(
        ok.starts_with(&format!("MySQL at 127.0.0.1:{}/misc (MariaDB ", MY.port())),
        "{ok}"
    );
    let wrong = "Wrong-Password-456";
    let e = folder
        .check(
            MY_ID,
            json!({"ConnectionString": MY.url_for(MY.user(), wrong, "misc")}),
        )
        .expect_err("bad password");
    let m = clean(&e, &[wrong, pw]);
    assert!(
        m.contains("bad credentials") && m.contains("Access denied"),
        "{m}"
    );
    assert!(!retryable(&e));
    let e = folder
        .check(MY_ID, json!({"ConnectionString": MY.url("nope")}))
        .expect_err("missing database");
    let m = clean(&e, &[pw]);
    assert!(m.contains("database missing") && m.contains("nope"), "{m}");
    let closed = idlink_test_support::closed_port();
    let e = folder
        .check(
            MY_ID,
            json!({"ConnectionString": format!("mysql://u:Unreachable-Pw@127.0.0.1:{closed}/x")}),
        )
        .expect_err("unreachable");
    let m = clean(&e, &["Unreachable-Pw"]);
    assert!(retryable(&e) && m.contains("a retry may help"), "{m}");
    // Timeout.
    let e = folder
        .export(
            MY_ID,
            json!({"ConnectionString": url, "SqlCommand": "SELECT SLEEP(5) AS s", "Timeout": 1}),
        )
        .expect_err("timeout");
    assert!(retryable(&e) && e.to_string().contains("within 1 s"), "{e}");
}

// ---------------------------------------------------------------- SQLite

async fn sqlite_file(path: &Path, sql: &str) {
    use sqlx::{ConnectOptions, Executor};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .expect("create sqlite file");
    conn.execute(sql).await.expect("sqlite setup");
}

const LITE_SETUP: &str = "
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, score REAL, active BOOLEAN,
                     born DATE, seen DATETIME, photo BLOB, anything);
INSERT INTO people VALUES
 (1, 'Ng, Andrew', 1.5, 1, '1815-12-10', '2024-01-02 05:04:05+02:00', X'000102FF', 42),
 (2, 'Émile', 0.1, 0, '2000-01-01', 1704164645, NULL, 'text'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE groups (gid INTEGER, name TEXT);
INSERT INTO groups VALUES (7, 'staff');
";

#[test]
fn sqlite_files_export_with_urls_ado_pairs_mapped_tables_and_schema() {
    let folder = Folder::new();
    let db = folder.base().join("data/hr.db");
    block_on(sqlite_file(&db, LITE_SETUP));
    let expected = "id,name,score,active,born,seen,photo,anything
1,\"Ng, Andrew\",1.5,true,1815-12-10,2024-01-02T03:04:05Z,AAEC/w==,42
2,Émile,0.1,false,2000-01-01,2024-01-02T03:04:05Z,,text
3,,,,,,,
";
    let query = "SELECT * FROM people ORDER BY id";
    for (id, cs) in [
        (LITE_ID, "Data Source=data/hr.db".to_string()),
        (LITE_ID, "sqlite:data/hr.db".to_string()),
        (GENERIC_ID, "sqlite://data/hr.db".to_string()),
    ] {
        let text = folder.export_one(id, json!({"ConnectionString": cs, "SqlCommand": query}));
        assert_eq!(text, expected, "{cs}");
    }
    let settings = json!({"ConnectionString": "Data Source=data/hr.db"});
    let tables = folder
        .export_mapped(
            LITE_ID,
            settings.clone(),
            vec![mapped("groups")],
            &NoProgress,
        )
        .expect("mapped");
    assert_eq!(tables[0].name, "HR_groups");
    assert_eq!(tables[0].text, "gid,name\n7,staff\n");
    let s = folder
        .schema(LITE_ID, settings.clone(), vec![])
        .expect("schema");
    let names: Vec<&str> = s.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["HR_groups", "HR_people"]);
    let people = &s.tables[1];
    let types: Vec<ValueType> = people.columns.iter().map(|c| c.value_type).collect();
    assert_eq!(
        types,
        vec![
            ValueType::Int64,
            ValueType::String,
            ValueType::Double,
            ValueType::Bool,
            ValueType::DateTime,
            ValueType::DateTime,
            ValueType::Binary,
            ValueType::String
        ]
    );
    let ok = folder.check(LITE_ID, settings).expect("check");
    assert!(ok.contains("(SQLite 3."), "{ok}");
    // The export is read-only: a write is refused by SQLite.
    let e = folder
        .export(
            LITE_ID,
            json!({"ConnectionString": "Data Source=data/hr.db",
                                "SqlCommand": "DELETE FROM people RETURNING id"}),
        )
        .expect_err("read-only");
    assert!(e.to_string().contains("readonly"), "{e}");
}

#[test]
fn sqlite_missing_outside_and_invalid_files_are_refused() {
    let folder = Folder::new();
    let e = folder
        .check(
            LITE_ID,
            json!({"ConnectionString": "Data Source=data/none.db"}),
        )
        .expect_err("missing");
    assert!(
        e.to_string().contains("database missing") && !retryable(&e),
        "{e}"
    );
    let outside = folder.base().join("outside.db");
    block_on(sqlite_file(&outside, "CREATE TABLE t (n INTEGER);"));
    let e = folder
        .check(
            LITE_ID,
            json!({"ConnectionString": "Data Source=outside.db"}),
        )
        .expect_err("outside the roots");
    assert!(e.to_string().contains("outside SourcesRootPaths"), "{e}");
    let junk = folder.file(
        "junk.db",
        "this is not a database, just some text that is long enough",
    );
    for result in [
        folder.check(
            LITE_ID,
            json!({"ConnectionString": format!("Data Source={junk}")}),
        ),
        folder
            .export(
                LITE_ID,
                json!({"ConnectionString": format!("Data Source={junk}"),
                                    "SqlCommand": "SELECT * FROM t"}),
            )
            .map(|_| String::new()),
    ] {
        let e = result.expect_err("not a database");
        assert!(e.to_string().contains("not a database"), "{e}");
    }
    let e = folder
        .export(
            LITE_ID,
            json!({"ConnectionString": "Data Source=data/x.db;Pasword=oops-secret"}),
        )
        .expect_err("unknown key");
    assert!(
        clean(&e, &["oops-secret"]).contains("unknown key 'pasword'"),
        "{e}"
    );
}

#[test]
fn settings_are_checked_without_io() {
    let folder = Folder::new();
    for (settings, wants) in [
        (json!({"SqlCommand": "SELECT 1"}), "ConnectionString"),
        (
            json!({"ConnectionString": "Host=h", "SqlCommand": "a", "SqlFile": "b"}),
            "not both",
        ),
        (
            json!({"ConnectionString": "Host=h", "IsolationLevel": "Chaos"}),
            "IsolationLevel",
        ),
        (json!({"ConnectionString": "Host=h;Port=99999"}), "Port"),
    ] {
        let e = idlink_packages::instantiate(package(PG_ID), settings.clone(), folder.env(vec![]))
            .map(drop)
            .expect_err("invalid");
        assert!(e.to_string().contains(wants), "{settings}: {e}");
    }
}

// ---------------------------------------------------------------- Hostile servers (issue 8, defect 1)

/// The error of a check and of an export of `settings` (Timeout 2) against a fake server:
/// each within the timeout + 2 s.
fn against_fake(hostility: Hostility) -> (FakePgServer, Vec<PackageError>) {
    let fake = FakePgServer::start(hostility).expect("fake server");
    let url = format!("postgres://bob:Topsecret-1@127.0.0.1:{}/hr", fake.port());
    let settings = json!({"ConnectionString": url, "SqlCommand": "SELECT 1", "Timeout": 2});
    let folder = Folder::new();
    let mut errors = Vec::new();
    for export in [false, true] {
        let start = Instant::now();
        let e = if export {
            folder
                .export(PG_ID, settings.clone())
                .expect_err("export fails")
        } else {
            folder
                .check(PG_ID, settings.clone())
                .expect_err("check fails")
        };
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "{hostility:?}: took {took:?}: {e}"
        );
        let shown = clean(&e, &["Topsecret-1"]);
        assert!(
            shown.contains(&format!("127.0.0.1:{}", fake.port())),
            "the message names the server: {shown}"
        );
        errors.push(e);
    }
    (fake, errors)
}

#[test]
fn regression_sql_postgres_huge_message_is_bounded() {
    let (fake, errors) = against_fake(Hostility::HugeMessage);
    assert!(fake.connections() >= 2);
    for e in errors {
        let shown = e.to_string();
        assert!(
            shown.contains("2147483647 bytes") && shown.contains("MaxMessageSize"),
            "{shown}"
        );
        assert!(
            !retryable(&e),
            "a hostile server is not worth a retry: {shown}"
        );
    }
}

#[test]
fn regression_sql_postgres_trickling_server_is_bounded_by_timeout() {
    let (_fake, errors) = against_fake(Hostility::Trickle);
    for e in errors {
        let shown = e.to_string();
        assert!(shown.contains("within 2 s"), "{shown}");
        assert!(retryable(&e), "{shown}");
    }
}

#[test]
fn regression_sql_postgres_silent_server_is_bounded_by_timeout() {
    let (_fake, errors) = against_fake(Hostility::Silent);
    for e in errors {
        let shown = e.to_string();
        assert!(shown.contains("within 2 s"), "{shown}");
    }
}

#[test]
fn regression_sql_max_message_size_bounds_real_rows() {
    let sql = "SELECT repeat('x', 5000) AS v";
    let pg = pg_database("maxmsg", "");
    let my = my_database("maxmsg", "");
    let folder = Folder::new();
    for (id, url) in [(PG_ID, &pg), (MY_ID, &my)] {
        let e = folder
            .export(
                id,
                json!({"ConnectionString": url, "SqlCommand": sql, "MaxMessageSize": 1024}),
            )
            .expect_err("a 5000-byte row is more than 1024");
        let shown = e.to_string();
        assert!(
            shown.contains("more than MaxMessageSize (1024 bytes)") && !retryable(&e),
            "{id}: {shown}"
        );
        let text = folder.export_one(id, json!({"ConnectionString": url, "SqlCommand": sql}));
        assert_eq!(text.len(), "v\n".len() + 5001, "{id}");
    }
    let e = folder
        .check(PG_ID, json!({"ConnectionString": pg, "MaxMessageSize": 12}))
        .expect_err("below the minimum");
    assert!(e.to_string().contains("MaxMessageSize"), "{e}");
}

/// A MySQL-speaking server whose greeting is made of 16 MiB continuation packets without end
/// (each packet is within the protocol's limit; the message they make is not).
#[test]
fn regression_sql_mysql_endless_continuation_packets_are_bounded() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let body = vec![0x41u8; 1 << 20];
        for seq in 0u8.. {
            if stream.write_all(&[0xff, 0xff, 0xff, seq]).is_err() {
                return;
            }
            // 0xFFFFFF bytes: 16 MiB less one.
            for i in 0..16 {
                let part = if i == 15 { &body[1..] } else { &body[..] };
                if stream.write_all(part).is_err() {
                    return;
                }
            }
        }
    });
    let folder = Folder::new();
    let start = Instant::now();
    let e = folder
        .check(
            MY_ID,
            json!({"ConnectionString": format!("mysql://u:Topsecret-1@127.0.0.1:{port}/d"),
                "MaxMessageSize": 20_000_000, "Timeout": 5}),
        )
        .expect_err("endless message");
    let shown = clean(&e, &["Topsecret-1"]);
    assert!(
        shown.contains("more than MaxMessageSize (20000000 bytes)")
            && shown.contains(&format!("127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------- TLS (issue 8, defect 8)

static PG_TLS: LazyLock<PostgresServer> = LazyLock::new(PostgresServer::start_tls);

/// Whether the session runs over TLS, as the server sees it.
const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// A folder holding the TLS server's authority as `ca.pem` and another one as `other-ca.pem`.
fn tls_folder() -> Folder {
    let folder = Folder::new();
    let ca = PG_TLS.ca_file().expect("TLS server has a CA");
    std::fs::copy(ca, folder.base().join("ca.pem")).expect("copy CA");
    let other = folder.base().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let other_ca = idlink_test_support::make_certificates(&other).expect("another CA");
    std::fs::copy(other_ca, folder.base().join("other-ca.pem")).expect("copy CA");
    folder
}

fn tls_ado(database: &str, host: &str, extra: &str) -> String {
    format!(
        "Host={host};Port={};Database={database};Username=postgres;Password={};{extra}",
        PG_TLS.port(),
        PG_TLS.password()
    )
}

#[test]
fn postgres_tls_verify_full_with_the_right_ca_exports_over_tls() {
    PG_TLS.create_database("tls_ok").expect("database");
    let folder = tls_folder();
    for cs in [
        tls_ado(
            "tls_ok",
            "127.0.0.1",
            "SSL Mode=VerifyFull;Root Certificate=ca.pem",
        ),
        format!(
            "postgres://postgres:{}@localhost:{}/tls_ok?sslmode=verify-full&sslrootcert=ca.pem",
            PG_TLS.password(),
            PG_TLS.port()
        ),
        tls_ado(
            "tls_ok",
            "127.0.0.1",
            "SSL Mode=VerifyCA;Root Certificate=ca.pem",
        ),
        // Require without an authority encrypts without checking the certificate (libpq).
        tls_ado("tls_ok", "127.0.0.1", "SSL Mode=Require"),
        // The default (Prefer) uses TLS when the server offers it.
        tls_ado("tls_ok", "127.0.0.1", ""),
    ] {
        let text = folder.export_one(
            PG_ID,
            json!({"ConnectionString": cs, "SqlCommand": SSL_IN_USE}),
        );
        assert_eq!(text, "ssl\ntrue\n", "{cs}");
    }
    let text = folder.export_one(
        PG_ID,
        json!({"ConnectionString": tls_ado("tls_ok", "127.0.0.1", "SSL Mode=Disable"), "SqlCommand": SSL_IN_USE}),
    );
    assert_eq!(text, "ssl\nfalse\n");
}

#[test]
fn postgres_tls_wrong_ca_is_refused_as_not_trusted() {
    PG_TLS.create_database("tls_wrong").expect("database");
    let folder = tls_folder();
    for mode in ["VerifyFull", "VerifyCA", "Require"] {
        let cs = tls_ado(
            "tls_wrong",
            "127.0.0.1",
            &format!("SSL Mode={mode};Root Certificate=other-ca.pem"),
        );
        let e = folder
            .check(PG_ID, json!({"ConnectionString": cs}))
            .expect_err("wrong CA");
        let shown = clean(&e, &[PG_TLS.password()]);
        assert!(
            shown.contains("certificate is not trusted")
                && shown.contains("other-ca.pem")
                && shown.contains(&format!("127.0.0.1:{}", PG_TLS.port())),
            "{mode}: {shown}"
        );
        assert!(!retryable(&e), "{shown}");
    }
    let e = folder
        .check(
            PG_ID,
            json!({"ConnectionString": tls_ado("tls_wrong", "127.0.0.1", "SSL Mode=VerifyFull;Root Certificate=missing.pem")}),
        )
        .expect_err("missing CA file");
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

#[test]
fn postgres_tls_require_against_a_server_without_tls_is_refused() {
    let url = pg_database("tls_none", "");
    let folder = Folder::new();
    for mode in ["require", "verify-full"] {
        let e = folder
            .check(
                PG_ID,
                json!({"ConnectionString": format!("{url}?sslmode={mode}")}),
            )
            .expect_err("no TLS on the server");
        assert!(e.to_string().contains("does not accept TLS"), "{mode}: {e}");
    }
    // Prefer (the default) connects without TLS.
    let text = folder.export_one(
        PG_ID,
        json!({"ConnectionString": url, "SqlCommand": SSL_IN_USE}),
    );
    assert_eq!(text, "ssl\nfalse\n");
}

#[test]
fn postgres_unix_socket_connections_go_through_the_relay() {
    pg_database("socket", "");
    let folder = Folder::new();
    let cs = format!(
        "Host={};Port={};Database=socket;Username=postgres",
        PG.socket_dir().display(),
        PG.port()
    );
    let text = folder.export_one(
        PG_ID,
        json!({"ConnectionString": cs, "SqlCommand": "SELECT 1 AS one", "MaxMessageSize": 1024}),
    );
    assert_eq!(text, "one\n1\n");
    let e = folder
        .export(
            PG_ID,
            json!({"ConnectionString": cs, "SqlCommand": "SELECT repeat('x', 5000) AS v", "MaxMessageSize": 1024}),
        )
        .expect_err("bounded over a socket too");
    assert!(e.to_string().contains("MaxMessageSize"), "{e}");
}

#[test]
fn mysql_tls_modes_are_refused_when_settings_are_checked() {
    for cs in [
        "Host=127.0.0.1;Database=d;Username=u;Password=Topsecret-1;SSL Mode=Required",
        "Host=127.0.0.1;Database=d;Username=u;Password=Topsecret-1;SSL Mode=VerifyFull",
        "mysql://u:Topsecret-1@127.0.0.1/d?ssl-mode=verify_ca",
    ] {
        let e = idlink_packages::instantiate(
            package(MY_ID),
            json!({"ConnectionString": cs}),
            Folder::new().env(vec![]),
        )
        .err()
        .unwrap_or_else(|| panic!("{cs} is refused"));
        let shown = clean(&e, &["Topsecret-1"]);
        assert!(
            shown.contains("TLS to MySQL and MariaDB is not available"),
            "{shown}"
        );
    }
}

/// Issue #9: `CsvEncoding` (documented: the encoding of the SqlFile, default UTF-8) is used:
/// a Windows-1252 SqlFile reads right with it, and is refused without it rather than garbled.
/// `ProviderClassFullName` and `ProviderDllName` are accepted without effect.
#[test]
fn regression_sql_csv_encoding_decodes_the_sql_file() {
    let folder = Folder::new();
    let db = folder.base().join("data/hr.db");
    block_on(sqlite_file(&db, LITE_SETUP));
    // `SELECT name FROM people WHERE name = 'Émile'` in Windows-1252 (É is 0xC9).
    let mut query = b"SELECT name FROM people WHERE name = '".to_vec();
    query.push(0xC9);
    query.extend_from_slice(b"mile'");
    std::fs::write(folder.base().join("data/q.sql"), &query).expect("write");
    let settings = json!({
        "ConnectionString": "Data Source=data/hr.db",
        "SqlFile": "data/q.sql",
        "CsvEncoding": "Windows-1252",
        "ProviderClassFullName": "System.Data.SQLite.SQLiteFactory",
        "ProviderDllName": "System.Data.SQLite.dll",
    });
    let text = folder.export_one(LITE_ID, settings.clone());
    assert_eq!(text, "name\nÉmile\n");
    let mut utf8 = settings.clone();
    utf8["CsvEncoding"] = json!("UTF-8");
    let e = folder.export(LITE_ID, utf8).expect_err("not UTF-8");
    assert!(
        e.to_string().contains("not valid UTF-8 (CsvEncoding)"),
        "{e}"
    );
    let mut unknown = settings;
    unknown["CsvEncoding"] = json!("EBCDIC");
    let e = folder
        .export(LITE_ID, unknown)
        .expect_err("unknown encoding");
    assert!(e.to_string().contains("CsvEncoding"), "{e}");
}
