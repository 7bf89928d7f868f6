//! Creating, reopening, and refusing what is not an idlink store (or a newer one).

use idlink_store::migrate::{FORMAT_VERSION, MIGRATIONS};
use idlink_store::{ErrorKind, Location, Store, StoreError, on_pool};

use crate::both;
use crate::support::{PG, Target};

async fn count(store: &Store, sql: &str) -> i64 {
    on_pool!(store, p => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await).expect(sql)
}

async fn creates_then_reopens_at_the_current_format(t: Target, _: &str) {
    assert!(
        Store::open_existing(&t.location)
            .await
            .expect("looks")
            .is_none(),
        "nothing is created by a read-only look"
    );
    if let Some(path) = t.sqlite_path() {
        assert!(!path.exists(), "open_existing created {}", path.display());
    }
    let store = Store::open(&t.location).await.expect("creates");
    assert_eq!(
        store.format_version().await.expect("version"),
        FORMAT_VERSION
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM idlink_migrations").await,
        MIGRATIONS.len() as i64
    );
    let format: String = on_pool!(store, p => sqlx::query_scalar(
        "SELECT value FROM idlink_meta WHERE key = 'format'"
    ).fetch_one(p).await)
    .expect("format");
    assert_eq!(format, idlink_store::FORMAT);
    let by: String = on_pool!(store, p => sqlx::query_scalar(
        "SELECT value FROM idlink_meta WHERE key = 'created_by'"
    ).fetch_one(p).await)
    .expect("created_by");
    assert_eq!(by, format!("idlink {}", env!("CARGO_PKG_VERSION")));
    store.close().await;
    // Reopened: nothing applied twice.
    let again = Store::open(&t.location).await.expect("reopens");
    assert_eq!(
        count(&again, "SELECT COUNT(*) FROM idlink_migrations").await,
        MIGRATIONS.len() as i64
    );
    assert!(
        Store::open_existing(&t.location)
            .await
            .expect("opens")
            .is_some()
    );
}
both!(
    creates_then_reopens,
    creates_then_reopens_at_the_current_format
);

async fn two_processes_creating_one_store_apply_migrations_once(t: Target, _: &str) {
    let opens = (0..4).map(|_| {
        let l = t.location.clone();
        tokio::spawn(async move { Store::open(&l).await })
    });
    for o in opens {
        o.await.expect("task").expect("opens");
    }
    let store = Store::open(&t.location).await.expect("opens");
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM idlink_migrations").await,
        MIGRATIONS.len() as i64
    );
}
both!(
    concurrent_creation,
    two_processes_creating_one_store_apply_migrations_once
);

async fn regression_a_store_written_by_a_newer_idlink_is_refused(t: Target, _: &str) {
    Store::open(&t.location)
        .await
        .expect("creates")
        .close()
        .await;
    let newer = FORMAT_VERSION + 3;
    t.execute(&format!(
        "UPDATE idlink_meta SET value = '{newer}' WHERE key = 'format_version'"
    ))
    .await;
    for e in [
        Store::open(&t.location).await.expect_err("refused"),
        Store::open_existing(&t.location)
            .await
            .expect_err("refused"),
    ] {
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert_eq!(
            e.to_string(),
            format!(
                "{} was written by a newer idlink (store format {newer}, this idlink reads up to {FORMAT_VERSION}): use a newer idlink or another --database",
                t.location
            )
        );
    }
}
both!(
    newer_store,
    regression_a_store_written_by_a_newer_idlink_is_refused
);

async fn regression_a_database_of_another_application_is_refused_untouched(t: Target, _: &str) {
    if let Some(path) = t.sqlite_path() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    }
    t.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE orders (id INTEGER)")
        .await;
    let before = t.sqlite_path().map(|p| std::fs::read(p).expect("read"));
    for e in [
        Store::open(&t.location).await.expect_err("refused"),
        Store::open_existing(&t.location)
            .await
            .expect_err("refused"),
    ] {
        assert_eq!(e.kind(), ErrorKind::Configuration);
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "{} is not an idlink store: it holds tables of another application (customers, orders); ",
                t.location
            )),
            "{text}"
        );
        match &t.location {
            Location::Sqlite(_) => assert!(text.contains("--database"), "{text}"),
            Location::Postgres(_) => assert!(
                text.contains("a database of its own") && text.contains("a schema of its own"),
                "{text}"
            ),
        }
    }
    if let Some(path) = t.sqlite_path() {
        assert_eq!(
            Some(std::fs::read(&path).expect("read")),
            before,
            "the file changed"
        );
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        assert!(
            !std::path::Path::new(&wal).exists(),
            "a WAL file was created"
        );
    }
}
both!(
    foreign_database,
    regression_a_database_of_another_application_is_refused_untouched
);

#[tokio::test]
async fn regression_a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "name,email\nada,ada@example.org\n").expect("write");
    let location = Location::parse(&path.display().to_string()).expect("path");
    for e in [
        Store::open(&location).await.expect_err("refused"),
        Store::open_existing(&location).await.expect_err("refused"),
    ] {
        assert!(matches!(e, StoreError::NotSqlite { .. }), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert_eq!(
            e.to_string(),
            format!(
                "'{}' is not an idlink store: it is not a SQLite database (it starts with \"name,email.a\", a SQLite file with \"SQLite format 3\"); pass --database (or set IDLINK_DATABASE) to an idlink store, or to a new file",
                path.display()
            )
        );
    }
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "name,email\nada,ada@example.org\n"
    );
}

#[tokio::test]
async fn regression_a_sqlite_file_of_another_application_id_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    crate::support::sqlite_execute(
        &path,
        "PRAGMA application_id = 1234; CREATE TABLE t (x); DROP TABLE t;",
    )
    .await;
    let e = Store::open(&Location::Sqlite(path.clone()))
        .await
        .expect_err("refused");
    assert!(
        e.to_string().contains(
            "it holds tables of another application (no tables yet, application_id 0x4d2)"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_new_sqlite_store_is_wal_with_foreign_keys_and_its_application_id() {
    let t = crate::support::sqlite();
    let store = Store::open(&t.location).await.expect("creates");
    let idlink_store::Pool::Sqlite(pool) = store.pool() else {
        panic!("sqlite")
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .expect("mode");
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .expect("fk");
    assert_eq!(fk, 1);
    let app: i32 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(pool)
        .await
        .expect("application_id");
    assert_eq!(app, idlink_store::SQLITE_APPLICATION_ID);
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await
        .expect("busy_timeout");
    assert!(busy >= 5000, "busy_timeout {busy}");
}

#[tokio::test]
async fn an_empty_file_becomes_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("idlink.db");
    std::fs::write(&path, "").expect("touch");
    let location = Location::Sqlite(path);
    assert!(
        Store::open_existing(&location)
            .await
            .expect("looks")
            .is_none()
    );
    let store = Store::open(&location).await.expect("creates");
    assert_eq!(
        store.format_version().await.expect("version"),
        FORMAT_VERSION
    );
}

#[tokio::test]
async fn a_postgres_schema_of_its_own_beside_foreign_tables_is_accepted() {
    let t = crate::support::postgres();
    let db = t.database.clone().expect("db");
    t.execute("CREATE TABLE customers (id INTEGER); CREATE SCHEMA idlink;")
        .await;
    let url = format!("{}?options=-csearch_path%3Didlink", PG.url(&db));
    let location = Location::parse(&url).expect("url");
    let store = Store::open(&location)
        .await
        .expect("opens in its own schema");
    assert_eq!(
        store.format_version().await.expect("version"),
        FORMAT_VERSION
    );
    let schema = PG
        .execute(
            &db,
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'idlink_meta'",
        )
        .expect("psql");
    assert_eq!(schema.trim(), "idlink");
}

#[tokio::test]
async fn a_postgres_store_that_cannot_be_reached_says_where_without_the_password() {
    let url = format!(
        "postgres://idlink:Sup3r-Secret@127.0.0.1:{}/store",
        idlink_test_support::closed_port()
    );
    let e = Store::open(&Location::parse(&url).expect("url"))
        .await
        .expect_err("unreachable");
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{text}");
    assert!(
        text.starts_with("cannot open the store postgres://idlink@127.0.0.1:"),
        "{text}"
    );
    assert!(text.ends_with("(a retry may help)"), "{text}");
    assert!(!text.contains("Sup3r-Secret"), "{text}");
}

#[tokio::test]
async fn a_wrong_postgres_password_is_not_shown_nor_retried() {
    let url = format!(
        "postgres://postgres:Wrong-Pw-123@127.0.0.1:{}/postgres",
        PG.port()
    );
    let e = Store::open(&Location::parse(&url).expect("url"))
        .await
        .expect_err("refused");
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Configuration, "{text}");
    assert!(text.contains("check the user and password"), "{text}");
    assert!(!text.contains("Wrong-Pw-123"), "{text}");
}

#[tokio::test]
async fn regression_a_new_sqlite_store_and_its_wal_are_readable_by_their_owner_only() {
    // They were created as the umask said (0644): any local user could read every identity.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("work/idlink.db");
    let store = Store::open(&Location::Sqlite(path.clone()))
        .await
        .expect("creates");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "the store");
    let wal = dir.path().join("work/idlink.db-wal");
    assert!(wal.exists(), "the store is in WAL mode while open");
    assert_eq!(mode(&wal), 0o600, "its WAL");
    store.close().await;
}
