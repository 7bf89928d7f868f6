//! Synchronization (issue #10) against real stores: SQLite in a temporary folder and
//! PostgreSQL started by test-support. Each test runs on both.

use std::collections::HashMap;
use std::path::PathBuf;

use idlink_engine::sync::keys::KeyHasher;
use idlink_engine::sync::{SyncMode, SyncOptions, SyncReport};
use idlink_engine::{CancellationToken, Engine, EngineError};
use idlink_model::SettingsSource;
use idlink_packages::Registry;
use idlink_packages::api::NoProgress;
use idlink_store::{Location, SnapshotEntry, Store};
use idlink_test_support::PostgresServer;

const CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="HR" DisplayName_L1="HR" CONNECTOR_THRESHOLDS />
  <Connection Identifier="HRP" DisplayName_L1="People" Connector="HR" Package="Usercube.CSV@0000001" />
  <Connection Identifier="HRO" DisplayName_L1="Orgs" Connector="HR" Package="Usercube.CSV@0000001" />
  <EntityType Identifier="Person" DisplayName_L1="Person">
    <Property Identifier="Id" DisplayName_L1="Id" IsKey="true" />
    <Property Identifier="Name" DisplayName_L1="Name" />
    <Property Identifier="Age" DisplayName_L1="Age" Type="Int32" />
    <Property Identifier="Start" DisplayName_L1="Start" Type="DateTime" />
    EXTRA_PROPERTY
    <Property Identifier="Org" DisplayName_L1="Org" Type="ForeignKey" />
  </EntityType>
  <EntityType Identifier="Org" DisplayName_L1="Org">
    <Property Identifier="Code" DisplayName_L1="Code" IsKey="true" />
    <Property Identifier="Title" DisplayName_L1="Title" />
    <Property Identifier="Members" DisplayName_L1="Members" Type="ForeignKey" />
  </EntityType>
  <EntityAssociation Identifier="Person_Org" DisplayName_L1="Org of a person"
                     Property1="Person:Org" Property2="Org:Members" IsProperty2Collection="true" />
  <EntityTypeMapping Identifier="Person" Connector="HR" ConnectionTable="HRP" MAPPING_THRESHOLDS>
    <Property Identifier="Id" ConnectionColumn="id" IsPrimaryKey="true" />
    <Property Identifier="Name" ConnectionColumn="name" />
    <Property Identifier="Age" ConnectionColumn="age" />
    <Property Identifier="Start" ConnectionColumn="start" Format="dd/MM/yyyy" />
    EXTRA_MAPPING
  </EntityTypeMapping>
  <EntityTypeMapping Identifier="Org" Connector="HR" ConnectionTable="HRO">
    <Property Identifier="Code" ConnectionColumn="code" IsPrimaryKey="true" />
    <Property Identifier="Title" ConnectionColumn="title" />
  </EntityTypeMapping>
  <EntityAssociationMapping Identifier="Person_Org" Connector="HR" ConnectionTable="HRP"
                            Column1="id" EntityPropertyMapping1="Person:Id"
                            Column2="org" EntityPropertyMapping2="Org:Code" />
</ConfigurationFile>
"#;

const SETTINGS: &str = r#"{
  "SourcesRootPaths": ["data"],
  "Connections": {
    "HRP": { "Path": "data/p.csv" },
    "HRO": { "Path": "data/o.csv" }
  }
}"#;

struct Site {
    dir: tempfile::TempDir,
    store: Store,
    connector_thresholds: String,
    mapping_thresholds: String,
    extra: bool,
}

enum Backend<'a> {
    Sqlite,
    Postgres(&'a PostgresServer, &'a str),
}

impl Site {
    async fn new(backend: Backend<'_>) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = match backend {
            Backend::Sqlite => Location::default_in(&dir.path().join("work")),
            Backend::Postgres(pg, db) => {
                pg.execute("postgres", &format!("CREATE DATABASE {db}"))
                    .expect("create db");
                Location::parse(&pg.url(db)).expect("url")
            }
        };
        std::fs::create_dir_all(dir.path().join("work")).expect("work");
        let store = Store::open(&location).await.expect("store");
        Site {
            dir,
            store,
            // Thresholds off unless a test sets them: tests of other things change many rows.
            connector_thresholds: ALL_OFF.to_string(),
            mapping_thresholds: String::new(),
            extra: false,
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn engine(&self) -> Engine {
        let conf = self.dir.path().join("conf");
        std::fs::create_dir_all(conf.join("data")).expect("conf");
        let xml = CONFIG
            .replace("CONNECTOR_THRESHOLDS", &self.connector_thresholds)
            .replace("MAPPING_THRESHOLDS", &self.mapping_thresholds)
            .replace(
                "EXTRA_PROPERTY",
                if self.extra {
                    r#"<Property Identifier="Mail" DisplayName_L1="Mail" />"#
                } else {
                    ""
                },
            )
            .replace(
                "EXTRA_MAPPING",
                if self.extra {
                    r#"<Property Identifier="Mail" ConnectionColumn="mail" />"#
                } else {
                    ""
                },
            );
        std::fs::write(conf.join("c.xml"), xml).expect("xml");
        std::fs::write(conf.join("appsettings.agent.json"), SETTINGS).expect("json");
        let registry = Registry::new();
        let checked = idlink_model::load_and_check(
            &conf,
            SettingsSource {
                path: &conf.join("appsettings.agent.json"),
                explicit: true,
            },
            std::iter::empty::<(String, String)>(),
            &registry,
        )
        .expect("load");
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        Engine::new(checked, registry, &conf, &self.work())
    }

    /// Writes an exported table as an export does: a new file renamed over the old one.
    fn table(&self, name: &str, text: &str) {
        self.table_bytes(name, text.as_bytes());
    }

    /// A table that may hold bytes that are not UTF-8.
    fn table_bytes(&self, name: &str, bytes: &[u8]) {
        let dir = self.work().join("ExportOutput");
        std::fs::create_dir_all(&dir).expect("out");
        let new = dir.join(format!("{name}.csv.new"));
        std::fs::write(&new, bytes).expect("table");
        std::fs::rename(&new, dir.join(format!("{name}.csv"))).expect("rename");
    }

    /// Deletes the copies of the tables last synchronized: the next run compares its tables
    /// with the store's index (the snapshot's).
    fn forget_last_tables(&self) {
        for e in std::fs::read_dir(self.work().join("Prepared")).expect("prepared") {
            let path = e.expect("entry").path();
            if path.to_string_lossy().ends_with(".synchronized.csv") {
                std::fs::remove_file(path).expect("remove");
            }
        }
    }

    async fn sync(&self, mode: SyncMode, force: bool) -> Result<SyncReport, EngineError> {
        self.engine()
            .sync(
                &self.store,
                "HR",
                &SyncOptions { mode, force },
                &NoProgress,
                &CancellationToken::new(),
            )
            .await
    }

    /// The index snapshot of each entity type is exactly its resources: the key hash (with the
    /// store's seed), id and raw digest of each; or there is none (the next run reads the
    /// resources). The counts the store keeps are its resources and links.
    async fn assert_snapshots_match(&self, when: &str) {
        let mut tx = self.store.begin_sync("HR").await.expect("begin");
        let keys = KeyHasher::with_seed(tx.key_seed(0).await.expect("seed"));
        for et in ["Person", "Org"] {
            let mut want = Vec::new();
            tx.each_resource(et, |k, id, raw| want.push((keys.of(k), id, raw)))
                .await
                .expect("resources");
            // Later entries replace earlier ones of their key; id 0 deletes.
            let mut map = std::collections::HashMap::new();
            let n = tx
                .each_snapshot_entry(et, |e| {
                    if e.id == 0 {
                        map.remove(&e.key_hash);
                    } else {
                        map.insert(e.key_hash, (e.id, e.raw));
                    }
                })
                .await
                .expect("snapshot");
            let mut got: Vec<(u128, i64, u64)> =
                map.into_iter().map(|(h, (id, raw))| (h, id, raw)).collect();
            want.sort_unstable();
            got.sort_unstable();
            // Without a snapshot, the table last synchronized describes the resources.
            let kept = tx.table_digest(et).await.expect("table digest").is_some();
            assert!(
                n.is_some() || kept || want.is_empty(),
                "{when}: {et} has resources, no snapshot and no table kept"
            );
            if n.is_some() {
                assert_eq!(got, want, "{when}: {et}");
            }
            // The counts the store keeps are its rows.
            let kept = tx.count_resources(et).await.expect("count");
            assert_eq!(kept, want.len() as u64, "{when}: resources of {et}");
        }
        let links = tx.link_set("Person_Org").await.expect("links").len() as u64;
        let kept = tx.count_links("Person_Org").await.expect("count");
        assert_eq!(kept, links, "{when}: links");
        tx.rollback().await.expect("rollback");
    }

    /// Every resource of an entity type as "key: data", sorted.
    async fn dump(&self, entity_type: &str) -> Vec<String> {
        self.store
            .resources(entity_type, &[])
            .await
            .expect("resources")
            .into_iter()
            .map(|r| format!("{}: {}", r.key, serde_json::Value::Object(r.data)))
            .collect()
    }

    /// person key -> org key, and org key -> person keys, read both ways.
    async fn links(&self) -> (Vec<String>, Vec<String>) {
        let persons = self.store.resources("Person", &[]).await.expect("p");
        let orgs = self.store.resources("Org", &[]).await.expect("o");
        let forward = self.store.linked_keys("Person_Org", 1).await.expect("l1");
        let backward = self.store.linked_keys("Person_Org", 2).await.expect("l2");
        // One resource and its links, read by indexed look-ups (a resource's page), agree with
        // the whole reads (for some 50 resources of each type: a store may hold thousands).
        for (et, side, all, map) in [
            ("Person", 1u8, &persons, &forward),
            ("Org", 2, &orgs, &backward),
        ] {
            for r in all.iter().step_by((all.len() / 50).max(1)) {
                let one = self.store.resource_by_key(et, &r.key).await.expect("one");
                let one = one.expect("found by key");
                assert_eq!((one.id, &one.key, &one.data), (r.id, &r.key, &r.data));
                let keys = self
                    .store
                    .linked_keys_of("Person_Org", side, r.id)
                    .await
                    .expect("links of one");
                assert_eq!(
                    keys,
                    map.get(&r.id).cloned().unwrap_or_default(),
                    "{et} {}",
                    r.key
                );
            }
            let none = self.store.resource_by_key(et, "no such key").await;
            assert!(none.expect("none").is_none());
            // Read a page at a time (as a search does): the same resources, in the same order.
            let (mut paged, mut after) = (Vec::new(), None::<String>);
            loop {
                let page = self
                    .store
                    .resources_page(et, after.as_deref(), 7)
                    .await
                    .expect("page");
                let done = page.len() < 7;
                // The page's links, read by its resources' ids, are the whole read's for them
                // (`idlink resources` reads them so).
                {
                    let ids: Vec<i64> = page.iter().map(|r| r.id).collect();
                    let links = self
                        .store
                        .linked_keys_of_ids("Person_Org", side, &ids)
                        .await
                        .expect("a page's links");
                    let want: HashMap<i64, Vec<String>> = page
                        .iter()
                        .filter_map(|r| map.get(&r.id).map(|keys| (r.id, keys.clone())))
                        .collect();
                    assert_eq!(links, want, "{et}: the links of a page after {after:?}");
                }
                after = page.last().map(|r| r.key.clone());
                paged.extend(page.into_iter().map(|r| (r.id, r.key, r.data)));
                if done {
                    break;
                }
            }
            let whole: Vec<_> = all
                .iter()
                .map(|r| (r.id, r.key.clone(), r.data.clone()))
                .collect();
            assert_eq!(paged, whole, "{et}");
        }
        let f = persons
            .iter()
            .filter_map(|p| {
                forward
                    .get(&p.id)
                    .map(|o| format!("{}->{}", p.key, o.join(",")))
            })
            .collect();
        let b = orgs
            .iter()
            .filter_map(|o| {
                backward
                    .get(&o.id)
                    .map(|p| format!("{}<-{}", o.key, p.join(",")))
            })
            .collect();
        (f, b)
    }
}

const ALL_OFF: &str = r#"MaximumInsertedLines="0" MaximumUpdatedLines="0" MaximumDeletedLines="0" MaximumLinkInsertedLines="0" MaximumLinkDeletedLines="0" MaxPercentageInsertedLines="0" MaxPercentageUpdatedLines="0" MaxPercentageDeletedLines="0" MaxLinkPercentageInsertedLines="0" MaxLinkPercentageDeletedLines="0""#;

const ORGS: &str = "code,title\nENG,Engineering\nOPS,Operations\n";
const PEOPLE: &str = "id,name,age,start,org\n\
E1,Ada,36,01/03/2019,ENG\n\
E2,Alan,41,15/01/2020,ENG\n\
E3,Grace,45,02/02/2018,OPS\n";

/// Where a mapping's bad values are: (line, column) of each.
fn located(m: &idlink_engine::sync::MappingReport) -> Vec<(u64, &str)> {
    m.bad_values
        .iter()
        .map(|b| (b.line, b.column.as_str()))
        .collect()
}

/// Runs `test` on a SQLite store and on a PostgreSQL store.
async fn on_both<F, Fut>(name: &str, test: F)
where
    F: Fn(Site) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    test(Site::new(Backend::Sqlite).await).await;
    let pg = pg();
    test(Site::new(Backend::Postgres(pg, name)).await).await;
}

pub(crate) fn pg() -> &'static PostgresServer {
    static PG: std::sync::OnceLock<PostgresServer> = std::sync::OnceLock::new();
    PG.get_or_init(PostgresServer::start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_runs_insert_update_delete_and_link_both_ways() {
    on_both("complete_runs", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        let r = s.sync(SyncMode::Initial, false).await.expect("initial");
        assert!(r.committed);
        assert_eq!((r.mappings[0].counts.inserted, r.mappings[1].counts.inserted), (3, 2));
        assert_eq!(r.associations[0].counts.added, 3);
        assert_eq!(
            s.dump("Person").await,
            [
                r#"E1: {"Age":36,"Id":"E1","Name":"Ada","Start":"2019-03-01T00:00:00Z"}"#,
                r#"E2: {"Age":41,"Id":"E2","Name":"Alan","Start":"2020-01-15T00:00:00Z"}"#,
                r#"E3: {"Age":45,"Id":"E3","Name":"Grace","Start":"2018-02-02T00:00:00Z"}"#,
            ]
        );
        let (f, b) = s.links().await;
        assert_eq!(f, ["E1->ENG", "E2->ENG", "E3->OPS"]);
        assert_eq!(b, ["ENG<-E1,E2", "OPS<-E3"]);

        // Same tables again: nothing changes.
        let r = s.sync(SyncMode::Complete, false).await.expect("again");
        let c = &r.mappings[0].counts;
        assert_eq!((c.inserted, c.updated, c.deleted, c.unchanged), (0, 0, 0, 3));
        assert_eq!((r.associations[0].counts.added, r.associations[0].counts.removed), (0, 0));

        // Alan leaves, Grace moves to ENG and has a birthday, Edsger arrives.
        s.table(
            "HRP",
            "id,name,age,start,org\nE1,Ada,36,01/03/2019,ENG\nE3,Grace,46,02/02/2018,ENG\nE4,Edsger,,,OPS\n",
        );
        let r = s.sync(SyncMode::Complete, false).await.expect("complete");
        let c = &r.mappings[0].counts;
        assert_eq!((c.inserted, c.updated, c.deleted, c.unchanged), (1, 1, 1, 1));
        assert_eq!(s.dump("Person").await[2], r#"E4: {"Id":"E4","Name":"Edsger"}"#);
        let (f, b) = s.links().await;
        assert_eq!(f, ["E1->ENG", "E3->ENG", "E4->OPS"]);
        assert_eq!(b, ["ENG<-E1,E3", "OPS<-E4"]);
        let report = std::fs::read_to_string(s.work().join("Reports/sync-HR.json")).expect("report");
        assert!(report.contains("\"committed\": true"), "{report}");
    })
    .await;
}

/// A NUL character in a cell (a file in the wrong encoding, a corrupt export) made a
/// PostgreSQL store refuse the whole run ("invalid byte sequence for encoding UTF8: 0x00").
/// Its row is set aside and located instead, on both stores, and the rest goes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_nul_character_in_a_value_sets_the_row_aside_on_both_stores() {
    on_both("nul", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        // E2's name and a new row's key hold a NUL; an unmapped column may hold one.
        s.table(
            "HRP",
            "id,name,age,start,org,note\n\
             E1,Ada,37,01/03/2019,ENG,a\0b\n\
             E2,Al\0an,42,15/01/2020,ENG,\n\
             E3,Grace,45,02/02/2018,OPS,\n\
             E\09,Nul,20,01/01/2024,OPS,\n",
        );
        let r = s.sync(SyncMode::Complete, false).await.expect("complete");
        let m = &r.mappings[0];
        let c = &m.counts;
        assert_eq!(
            (c.invalid, c.inserted, c.updated, c.deleted),
            (2, 0, 1, 0),
            "{c:?}"
        );
        assert_eq!(located(m), [(3, "name"), (5, "id")]);
        assert!(
            m.bad_values[0].message.contains("NUL"),
            "{:?}",
            m.bad_values
        );
        let people = s.dump("Person").await;
        assert_eq!(people.len(), 3, "{people:?}");
        assert!(people[0].contains("\"Age\":37"), "{people:?}");
        assert!(people[1].contains("\"Alan\"") && people[1].contains("\"Age\":41"));
        assert!(people.iter().all(|p| !p.contains('\0')), "{people:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_value_that_is_not_utf8_sets_its_row_aside_instead_of_failing_the_run() {
    on_both("not_utf8", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        // E2's name is Latin-1, not UTF-8, and so is E1's unmapped note (the run failed:
        // "CSV parse error: record 1 (line 2, field: 5, byte: 27): invalid utf-8"); E3 twice,
        // once with such a note (the rows of a duplicated key are copied to their file from a
        // second read of the table).
        s.table_bytes(
            "HRP",
            b"id,name,age,start,org,note\n\
              E1,Ada,37,01/03/2019,ENG,caf\xe9\n\
              E2,Fran\xe7ois,42,15/01/2020,ENG,\n\
              E3,Grace,45,02/02/2018,OPS,\n\
              E3,Grace,46,02/02/2018,OPS,\xff\n",
        );
        let r = s.sync(SyncMode::Complete, true).await.expect("complete");
        let m = &r.mappings[0];
        let c = &m.counts;
        assert_eq!(
            (c.invalid, c.duplicates, c.inserted, c.updated, c.deleted),
            (1, 2, 0, 1, 0),
            "{c:?}"
        );
        assert_eq!(located(m), [(3, "name")]);
        assert!(
            m.bad_values[0].message.contains("not UTF-8"),
            "{:?}",
            m.bad_values
        );
        let people = s.dump("Person").await;
        assert_eq!(people.len(), 3, "{people:?}");
        assert!(people[0].contains("\"Age\":37"), "{people:?}");
        assert!(people[1].contains("\"Alan\""), "{people:?}");
        assert!(people.iter().all(|p| !p.contains('\u{fffd}')), "{people:?}");
        let prepared = s.work().join("Prepared");
        let invalid = std::fs::read_to_string(prepared.join("HRP.invalid.csv")).expect("invalid");
        assert!(invalid.contains("Fran\u{fffd}ois"), "{invalid}");
        let duplicates =
            std::fs::read_to_string(prepared.join("HRP.duplicates.csv")).expect("duplicates");
        assert_eq!(duplicates.lines().count(), 3, "{duplicates}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_empty_table_is_said_to_have_no_header() {
    let s = Site::new(Backend::Sqlite).await;
    s.table("HRO", ORGS);
    s.table("HRP", PEOPLE);
    s.sync(SyncMode::Initial, false).await.expect("initial");
    // It said: "has no column 'id', which ... reads; its columns are: " (and nothing).
    s.table("HRP", "");
    let e = s
        .sync(SyncMode::Complete, true)
        .await
        .expect_err("no header");
    let e = e.to_string();
    assert!(
        e.contains("has no column 'id'") && e.contains("no header line"),
        "{e}"
    );
    s.table("HRP", "name,age\nAda,36\n");
    let e = s.sync(SyncMode::Complete, true).await.expect_err("no id");
    assert!(e.to_string().contains("its columns are: name, age"), "{e}");
    assert_eq!(s.dump("Person").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_mapped_column_named_twice_in_a_header_is_refused() {
    let s = Site::new(Backend::Sqlite).await;
    s.table("HRO", ORGS);
    s.table("HRP", PEOPLE);
    s.sync(SyncMode::Initial, false).await.expect("initial");
    let before = s.dump("Person").await;
    // The first 'name' was read, whichever was meant.
    s.table(
        "HRP",
        "id,name,age,start,org,name\nE1,Ada,36,01/03/2019,ENG,Lovelace\n",
    );
    let e = s
        .sync(SyncMode::Complete, true)
        .await
        .expect_err("name twice");
    let e = e.to_string();
    assert!(
        e.contains("has column 'name' twice (columns 2 and 6"),
        "{e}"
    );
    // Ignoring case too, where no column has the exact name.
    s.table(
        "HRP",
        "id,NAME,age,start,org,Name\nE1,Ada,36,01/03/2019,ENG,x\n",
    );
    let e = s
        .sync(SyncMode::Complete, true)
        .await
        .expect_err("NAME and Name");
    assert!(
        e.to_string().contains("columns 2 and 6, 'NAME' and 'Name'"),
        "{e}"
    );
    // A column named twice that no mapping reads is left alone; an exact name wins over
    // another that differs by case.
    s.table(
        "HRP",
        "id,name,NAME,age,start,org,note,note\n\
         E1,Ada,x,36,01/03/2019,ENG,a,b\n\
         E2,Alan,x,41,15/01/2020,ENG,,\n\
         E3,Grace,x,45,02/02/2018,OPS,,\n",
    );
    s.sync(SyncMode::Complete, true)
        .await
        .expect("unmapped twice");
    assert_eq!(s.dump("Person").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_key_too_long_to_index_sets_the_row_aside_on_both_stores() {
    use idlink_engine::sync::MAX_KEY_BYTES;
    // Keys that do not compress: PostgreSQL failed the whole run on a key of 3,000 bytes
    // ("index row size 3024 exceeds btree version 4 maximum 2704"), and SQLite kept it. (A
    // value over its own limit takes the same path; the limits are tested in `prepare`.)
    let key = |len: usize| -> String {
        let mut k = String::from("K");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        while k.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            k.push_str(&format!("{x:016x}"));
        }
        k.truncate(len);
        k
    };
    let (longest, too_long) = (key(MAX_KEY_BYTES), key(MAX_KEY_BYTES + 1));
    let table = format!(
        "id,name,age,start,org\n\
         E1,Ada,36,01/03/2019,ENG\n\
         {longest},Longest,45,02/02/2018,OPS\n\
         {too_long},Too long,20,01/01/2024,OPS\n\
         E2,Alan,41,15/01/2020,ENG\n"
    );
    on_both("too_long", |s| {
        let (table, longest) = (table.clone(), longest.clone());
        async move {
            s.table("HRO", ORGS);
            s.table("HRP", &table);
            let r = s.sync(SyncMode::Initial, false).await.expect("initial");
            let m = &r.mappings[0];
            let c = &m.counts;
            assert_eq!((c.invalid, c.inserted), (1, 3), "{c:?}");
            assert_eq!(located(m), [(4, "id")]);
            assert!(
                m.bad_values[0].message.contains("2001 bytes long"),
                "{:?}",
                m.bad_values
            );
            let people = s.dump("Person").await;
            assert_eq!(people.len(), 3, "{people:?}");
            assert!(people.iter().any(|p| p.contains(&longest)), "{people:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_without_key_with_duplicate_keys_or_bad_values_are_set_aside_and_located() {
    on_both("set_aside", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        // E1 twice, a row without id, E2 with a bad age and E3 with a bad date.
        s.table(
            "HRP",
            "id,name,age,start,org\n\
             E1,Ada,36,01/03/2019,ENG\n\
             E1,Ada Byron,37,01/03/2019,OPS\n\
             ,Nobody,1,01/01/2000,ENG\n\
             E2,Alan,forty,15/01/2020,OPS\n\
             E3,Grace,45,2018-02-02,OPS\n\
             E5,New,20,01/01/2024,OPS\n",
        );
        let r = s.sync(SyncMode::Complete, false).await.expect("complete");
        let m = &r.mappings[0];
        let c = &m.counts;
        assert_eq!((c.nullpk, c.duplicates, c.invalid), (1, 2, 2), "{c:?}");
        assert_eq!((c.inserted, c.updated, c.deleted), (1, 0, 0), "{c:?}");
        assert_eq!(m.bad_values.len(), 2);
        let bad = &m.bad_values[0];
        assert_eq!(
            (bad.table.as_str(), bad.line, bad.column.as_str()),
            ("HRP", 5, "age")
        );
        assert!(bad.message.contains("Int32"), "{}", bad.message);
        assert_eq!(
            (m.bad_values[1].line, m.bad_values[1].column.as_str()),
            (6, "start")
        );
        assert!(
            m.bad_values[1].message.contains("dd/MM/yyyy"),
            "{}",
            m.bad_values[1].message
        );
        // Set-aside keys keep what the store had: nothing deleted, nothing coerced.
        let people = s.dump("Person").await;
        assert_eq!(people.len(), 4);
        assert!(
            people[0].contains("\"Ada\"") && people[1].contains("\"Age\":41"),
            "{people:?}"
        );
        // Their links are set aside with them: E1 and E2 stay in ENG, E3 in OPS.
        let (f, _) = s.links().await;
        assert_eq!(f, ["E1->ENG", "E2->ENG", "E3->OPS", "E5->OPS"]);
        let dir = s.work().join("Prepared");
        let dups = std::fs::read_to_string(dir.join("HRP.duplicates.csv")).expect("dups");
        assert_eq!(dups.lines().count(), 3, "{dups}");
        assert!(dups.contains("Ada Byron"));
        let nullpk = std::fs::read_to_string(dir.join("HRP.nullpk.csv")).expect("nullpk");
        assert!(nullpk.contains("Nobody"));
        let invalid = std::fs::read_to_string(dir.join("HRP.invalid.csv")).expect("invalid");
        assert!(
            invalid.contains("5,age,") && invalid.contains("forty"),
            "{invalid}"
        );
        assert!(
            r.warnings.iter().any(|w| w.contains("5 row(s) set aside")),
            "{:?}",
            r.warnings
        );

        // The next clean run removes the old set-aside files.
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Complete, false).await.expect("clean");
        assert!(!dir.join("HRP.duplicates.csv").exists());
        assert!(!dir.join("HRP.invalid.csv").exists());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_tables_apply_command_rows_or_upsert_without_them() {
    on_both("incremental", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        // A Command column: E2 deleted, E1 updated, E6 inserted, an unknown command set aside.
        s.table(
            "HRP",
            "id,name,age,start,org,Command\n\
             E2,,,,,Delete\n\
             E1,Ada L.,36,01/03/2019,ENG,Update\n\
             E6,Barbara,30,01/06/2021,OPS,Insert\n\
             E3,Grace,45,02/02/2018,OPS,Rename\n",
        );
        s.table("HRO", "code,title,Command\n");
        let err = s
            .sync(SyncMode::Complete, false)
            .await
            .expect_err("Command in a complete run");
        assert!(err.to_string().contains("--mode incremental"), "{err}");
        let r = s
            .sync(SyncMode::Incremental, false)
            .await
            .expect("incremental");
        let c = &r.mappings[0].counts;
        assert_eq!(
            (c.inserted, c.updated, c.deleted, c.invalid),
            (1, 1, 1, 1),
            "{c:?}"
        );
        let keys: Vec<String> = s
            .dump("Person")
            .await
            .iter()
            .map(|l| l[..2].to_string())
            .collect();
        assert_eq!(keys, ["E1", "E3", "E6"]);
        let (f, _) = s.links().await;
        assert_eq!(f, ["E1->ENG", "E3->OPS", "E6->OPS"]);

        // Without a Command column: the rows present are inserted or updated, others stay.
        s.table(
            "HRP",
            "id,name,age,start,org\nE3,Grace H.,45,02/02/2018,ENG\n",
        );
        let r = s.sync(SyncMode::Incremental, false).await.expect("upserts");
        let c = &r.mappings[0].counts;
        assert_eq!((c.inserted, c.updated, c.deleted), (0, 1, 0));
        assert_eq!(s.dump("Person").await.len(), 3);
        let (f, _) = s.links().await;
        assert_eq!(f, ["E1->ENG", "E3->ENG", "E6->OPS"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_threshold_kind_blocks_changes_nothing_and_force_runs_anyway() {
    on_both("thresholds", |mut s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        let before = (s.dump("Person").await, s.links().await);
        let five = "id,name,age,start,org\n\
                    E1,Ada,37,01/03/2019,OPS\n\
                    E2,Alan,42,15/01/2020,OPS\n\
                    E7,Seven,1,01/01/2024,OPS\n\
                    E8,Eight,1,01/01/2024,OPS\n";
        s.table("HRP", five);
        // Inserted 2, updated 2, deleted 1, links added 4 (E1, E2 moved; E7, E8), removed 2.
        let cases = [
            (r#"MaximumInsertedLines="1""#, "", "MaximumInsertedLines"),
            (r#"MaximumUpdatedLines="1""#, "", "MaximumUpdatedLines"),
            (
                r#"MaxPercentageDeletedLines="30""#,
                "",
                "MaxPercentageDeletedLines",
            ),
            (
                r#"MaximumLinkInsertedLines="3""#,
                "",
                "MaximumLinkInsertedLines",
            ),
            (
                r#"MaxLinkPercentageDeletedLines="50""#,
                "",
                "MaxLinkPercentageDeletedLines",
            ),
            (
                "",
                r#"MaximumDeletedLines="0" MaxPercentageInsertedLines="50""#,
                "MaxPercentageInsertedLines",
            ),
        ];
        for (connector, mapping, expected) in cases {
            // Every other connector threshold off, so only the one under test can block.
            s.connector_thresholds = ALL_OFF
                .split(' ')
                .filter(|a| {
                    connector.is_empty() || a.split('=').next() != connector.split('=').next()
                })
                .chain(std::iter::once(connector))
                .collect::<Vec<_>>()
                .join(" ");
            s.mapping_thresholds = mapping.to_string();
            let err = s.sync(SyncMode::Complete, false).await.expect_err(expected);
            let EngineError::Blocked(r) = &err else {
                panic!("{expected}: {err}");
            };
            assert!(!r.committed);
            assert_eq!(r.exceeded.len(), 1, "{expected}: {err}");
            assert_eq!(r.exceeded[0].threshold, expected, "{err}");
            assert!(err.to_string().contains("nothing changed"), "{err}");
            assert_eq!(
                (s.dump("Person").await, s.links().await),
                before,
                "{expected}"
            );
        }
        // The connector's documented defaults (100, 5%) block 100% of deletions.
        s.connector_thresholds = String::new();
        s.mapping_thresholds = String::new();
        s.table("HRP", "id,name,age,start,org\n");
        let err = s
            .sync(SyncMode::Complete, false)
            .await
            .expect_err("defaults");
        assert!(
            err.to_string().contains("MaxPercentageDeletedLines = 5%"),
            "{err}"
        );
        assert_eq!((s.dump("Person").await, s.links().await), before);
        // --force runs anyway and says what was exceeded.
        let r = s.sync(SyncMode::Complete, true).await.expect("forced");
        assert!(r.committed && r.forced && !r.exceeded.is_empty());
        assert!(s.dump("Person").await.is_empty());
        // Initial ignores thresholds.
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false)
            .await
            .expect("initial ignores thresholds");
        assert_eq!(s.dump("Person").await.len(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_added_then_removed_needs_no_migration_and_loses_nothing_else() {
    on_both("property_change", |mut s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        s.extra = true;
        s.table(
            "HRP",
            "id,name,age,start,org,mail\nE1,Ada,36,01/03/2019,ENG,ada@x.org\nE2,Alan,41,15/01/2020,ENG,\nE3,Grace,45,02/02/2018,OPS,grace@x.org\n",
        );
        let r = s.sync(SyncMode::Complete, false).await.expect("added");
        assert_eq!(r.mappings[0].counts.updated, 2);
        let people = s.dump("Person").await;
        assert!(people[0].contains(r#""Mail":"ada@x.org""#) && people[0].contains(r#""Age":36"#), "{people:?}");
        s.extra = false;
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Complete, false).await.expect("removed");
        let people = s.dump("Person").await;
        assert!(!people[0].contains("Mail") && people[0].contains(r#""Name":"Ada""#), "{people:?}");
        assert_eq!(s.dump("Org").await.len(), 2);
        assert_eq!(s.links().await.0.len(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_connector_lock_refuses_the_run_and_names_its_holder() {
    on_both("lock", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        let held = s.store.lock_connector("HR", "sync").await.expect("lock");
        let err = s.sync(SyncMode::Initial, false).await.expect_err("locked");
        let text = err.to_string();
        assert!(
            text.contains(&std::process::id().to_string()) && text.contains("since"),
            "{text}"
        );
        held.release().await.expect("release");
        s.sync(SyncMode::Initial, false)
            .await
            .expect("after release");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_missing_a_mapped_column_or_missing_altogether_is_refused_with_what_to_do() {
    let s = Site::new(Backend::Sqlite).await;
    let err = s
        .sync(SyncMode::Initial, false)
        .await
        .expect_err("no tables");
    assert!(
        err.to_string().contains("export its connection first"),
        "{err}"
    );
    s.table("HRO", ORGS);
    s.table("HRP", "id,name,start,org\nE1,Ada,01/03/2019,ENG\n");
    let err = s.sync(SyncMode::Initial, false).await.expect_err("no age");
    assert!(err.to_string().contains("no column 'age'"), "{err}");
    assert!(s.dump("Org").await.is_empty(), "nothing committed");
}

/// Rows whose cells did not change carry their links from run to run without being read; a
/// person whose organization was missing must still be linked once it arrives (the rows did
/// not change, the other side did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_unchanged_row_is_linked_when_its_missing_target_arrives() {
    on_both("late_target", |s| async move {
        s.table("HRO", "code,title\nENG,Engineering\n");
        s.table("HRP", PEOPLE);
        let r = s.sync(SyncMode::Initial, false).await.expect("initial");
        assert_eq!(r.associations[0].counts.added, 2);
        assert_eq!(r.associations[0].counts.unresolved, 1);
        assert_eq!(s.links().await.0, ["E1->ENG", "E2->ENG"]);
        // OPS arrives; the people table is the same.
        s.table("HRO", ORGS);
        let r = s.sync(SyncMode::Complete, false).await.expect("complete");
        assert_eq!(r.mappings[0].counts.unchanged, 3);
        assert_eq!(r.mappings[1].counts.inserted, 1);
        assert_eq!(r.associations[0].counts.added, 1);
        let (f, b) = s.links().await;
        assert_eq!(f, ["E1->ENG", "E2->ENG", "E3->OPS"]);
        assert_eq!(b, ["ENG<-E1,E2", "OPS<-E3"]);
    })
    .await;
}

/// A row whose link cell alone changed moves its link and is not an update of the person;
/// a row rewritten with equal values (`036` for 36) is not an update either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_link_cell_moves_the_link_and_equal_values_are_no_update() {
    on_both("link_cell", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        s.table(
            "HRP",
            "id,name,age,start,org\nE1,Ada,036,01/03/2019,OPS\nE2,Alan,41,15/01/2020,ENG\nE3,Grace,45,02/02/2018,OPS\n",
        );
        let r = s.sync(SyncMode::Complete, false).await.expect("complete");
        let c = &r.mappings[0].counts;
        assert_eq!((c.inserted, c.updated, c.deleted, c.unchanged), (0, 0, 0, 3));
        let a = &r.associations[0].counts;
        assert_eq!((a.before, a.added, a.removed), (3, 1, 1));
        let (f, b) = s.links().await;
        assert_eq!(f, ["E1->OPS", "E2->ENG", "E3->OPS"]);
        assert_eq!(b, ["ENG<-E2", "OPS<-E1,E3"]);
        // The digests were refreshed: the same table again reads as unchanged, links too.
        let r = s.sync(SyncMode::Complete, false).await.expect("again");
        assert_eq!(r.mappings[0].counts.unchanged, 3);
        let a = &r.associations[0].counts;
        assert_eq!((a.added, a.removed), (0, 0));
        assert_eq!(
            s.dump("Person").await[0],
            r#"E1: {"Age":36,"Id":"E1","Name":"Ada","Start":"2019-03-01T00:00:00Z"}"#
        );
    })
    .await;
}

/// The snapshot of each entity type's index a run saves (and the next run reads instead of
/// the resources) is the store as the run left it, whatever the run did: inserts, updates,
/// deletes, set-aside and duplicate rows, command rows, a blocked run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_snapshot_is_the_store_after_every_kind_of_run() {
    on_both("snapshots", |mut s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        s.assert_snapshots_match("initial").await;
        // The table kept for the next run to compare with describes the resources: no
        // snapshot is written beside it.
        let mut tx = s.store.begin_sync("HR").await.expect("begin");
        assert_eq!(tx.each_snapshot_entry("Person", |_| {}).await.expect("read"), None);
        assert!(tx.table_digest("Person").await.expect("digest").is_some());
        tx.rollback().await.expect("rollback");
        let runs: [(&str, SyncMode, &str); 4] = [
            (
                "complete",
                SyncMode::Complete,
                "id,name,age,start,org\nE1,Ada,37,01/03/2019,ENG\nE3,Grace,45,02/02/2018,OPS\nE4,Edsger,,,OPS\n",
            ),
            (
                "set aside",
                SyncMode::Complete,
                "id,name,age,start,org\nE1,Ada,37,01/03/2019,ENG\nE1,Twice,1,01/03/2019,ENG\nE3,Grace,old,02/02/2018,OPS\nE5,New,2,,OPS\nE5,Again,3,,OPS\n,Nobody,,,\n",
            ),
            (
                "incremental",
                SyncMode::Incremental,
                "id,name,age,start,org,Command\nE4,,,,,Delete\nE1,Ada L.,36,01/03/2019,ENG,Update\nE6,Barbara,30,01/06/2021,OPS,Insert\n",
            ),
            (
                "same values, other cells",
                SyncMode::Complete,
                "id,name,age,start,org\nE1,Ada L.,036,01/03/2019,ENG\nE3,Grace,45,02/02/2018,OPS\nE6,Barbara,30,01/06/2021,OPS\n",
            ),
        ];
        for (when, mode, people) in runs {
            s.table("HRP", people);
            s.sync(mode, false).await.expect(when);
            s.assert_snapshots_match(when).await;
        }
        // A blocked run changes nothing, the snapshot included.
        s.connector_thresholds = r#"MaximumDeletedLines="0""#.into();
        s.table("HRP", "id,name,age,start,org\nE1,Ada L.,36,01/03/2019,ENG\n");
        let err = s.sync(SyncMode::Complete, false).await.expect_err("blocked");
        assert!(matches!(err, EngineError::Blocked(_)), "{err}");
        s.assert_snapshots_match("blocked").await;
        let r = s.sync(SyncMode::Complete, true).await.expect("forced");
        assert_eq!(r.mappings[0].counts.deleted, 2);
        s.assert_snapshots_match("forced").await;
    })
    .await;
}

/// A snapshot that does not describe the store (a store edited by hand, a bug) is not
/// trusted: the run reads the resources and does what it would have done without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_does_not_match_the_store_is_not_trusted() {
    on_both("stale_snapshot", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        // A snapshot that forgot E3: trusted, the run would insert E3 a second time.
        let mut tx = s.store.begin_sync("HR").await.expect("begin");
        let keys = KeyHasher::with_seed(tx.key_seed(0).await.expect("seed"));
        let mut entries = Vec::new();
        tx.each_resource("Person", |k, id, raw| {
            entries.push(SnapshotEntry {
                key_hash: keys.of(k),
                id,
                raw,
            })
        })
        .await
        .expect("read");
        assert_eq!(entries.len(), 3);
        entries.sort_by_key(|e| e.id);
        tx.save_snapshot("Person", entries[..2].iter().copied())
            .await
            .expect("save");
        tx.commit().await.expect("commit");
        // Through the index (a run compared with the last table reads no snapshot).
        s.forget_last_tables();
        let r = s.sync(SyncMode::Complete, false).await.expect("complete");
        let c = &r.mappings[0].counts;
        assert_eq!(
            (c.inserted, c.updated, c.deleted, c.unchanged),
            (0, 0, 0, 3)
        );
        assert_eq!(s.dump("Person").await.len(), 3);
        s.assert_snapshots_match("after a stale snapshot").await;
    })
    .await;
}

/// Rows are read in batches (their keys looked up ahead): a key found twice across a batch
/// boundary, rows without a key and bad values in later batches are found as in one pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_set_aside_rows_are_found_across_read_batches() {
    on_both("batches", |s| async move {
        s.table("HRO", ORGS);
        let mut people = String::from("id,name,age,start,org\n");
        for i in 0..300 {
            match i {
                // Rows 64 and 65 of the table (the first two of the second batch) repeat the
                // keys of rows 63 and 0.
                64 => people.push_str("P063,Again,1,,ENG\n"),
                65 => people.push_str("P000,Again,1,,ENG\n"),
                130 => people.push_str(",Nobody,1,,ENG\n"),
                200 => people.push_str("P200,Bad,old,,ENG\n"),
                _ => people.push_str(&format!("P{i:03},Name {i},{},,OPS\n", i % 90)),
            }
        }
        s.table("HRP", &people);
        let r = s.sync(SyncMode::Initial, false).await.expect("initial");
        let c = &r.mappings[0].counts;
        assert_eq!(
            (c.rows, c.inserted, c.duplicates, c.nullpk, c.invalid),
            (300, 294, 4, 1, 1),
            "{c:?}"
        );
        assert_eq!(r.mappings[0].bad_values[0].line, 202);
        assert_eq!(s.dump("Person").await.len(), 294);
        s.assert_snapshots_match("batches").await;
        // The same table again: nothing changes, through the snapshot this time.
        let r = s.sync(SyncMode::Complete, false).await.expect("again");
        let c = &r.mappings[0].counts;
        assert_eq!(
            (c.inserted, c.updated, c.deleted, c.unchanged),
            (0, 0, 0, 294),
            "{c:?}"
        );
    })
    .await;
}

/// A snapshot whose bytes do not hold what its row says (a damaged store) is derived data:
/// the run reads the resources instead of failing, and saves a good snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_snapshot_is_not_used_and_is_replaced() {
    on_both("damaged_snapshot", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        let damage = "UPDATE resource_index_snapshots SET entries = entries + 1";
        match s.store.pool() {
            idlink_store::Pool::Sqlite(p) => sqlx::query(damage).execute(p).await.map(|_| ()),
            idlink_store::Pool::Postgres(p) => sqlx::query(damage).execute(p).await.map(|_| ()),
        }
        .expect("damage");
        // Through the index (a run compared with the last table reads no snapshot).
        s.forget_last_tables();
        let r = s.sync(SyncMode::Complete, false).await.expect("complete");
        let c = &r.mappings[0].counts;
        assert_eq!(
            (c.inserted, c.updated, c.deleted, c.unchanged),
            (0, 0, 0, 3)
        );
        s.assert_snapshots_match("after a damaged snapshot").await;
    })
    .await;
}

/// When a large index is still to be read, the ones read before it are kept as lists (the
/// links need no map of them): the snapshots and links come out as with maps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_kept_as_lists_beside_a_large_one_give_the_same_snapshots() {
    on_both("lists", |s| async move {
        let mut orgs = String::from("code,title\nENG,Engineering\nOPS,Operations\n");
        for i in 0..100_000 {
            orgs.push_str(&format!("O{i:06},Org {i}\n"));
        }
        s.table("HRO", &orgs);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        // Person is read before 100,002 organizations now: kept as a list.
        s.table(
            "HRP",
            "id,name,age,start,org\nE1,Ada,37,01/03/2019,OPS\nE3,Grace,45,02/02/2018,OPS\nE4,Edsger,,,O000007\n",
        );
        let r = s.sync(SyncMode::Complete, false).await.expect("complete");
        let c = &r.mappings[0].counts;
        assert_eq!((c.inserted, c.updated, c.deleted), (1, 1, 1), "{c:?}");
        s.assert_snapshots_match("lists").await;
        let (f, _) = s.links().await;
        assert_eq!(f, ["E1->OPS", "E3->OPS", "E4->O000007"]);
    })
    .await;
}

/// A Complete run compares its table with the copy of the one last synchronized and prepares
/// only the records that differ; whatever the table did, it must come to what comparing with
/// the store's index gives: the same counts, located bad values, set-aside files, resources,
/// links and snapshot. Two stores take the same tables, one with the copy and one without
/// (each run deletes it first); every step also says which way the first one went, so a
/// shortcut never taken fails too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_compared_with_the_last_table_gives_what_the_index_gives() {
    fn people(rows: impl IntoIterator<Item = String>) -> String {
        std::iter::once("id,name,age,start,org\n".to_string())
            .chain(rows.into_iter().map(|r| r + "\n"))
            .collect()
    }
    let row = |i: usize| {
        format!(
            "P{i:03},Name {i},{},,{}",
            i % 90,
            if i.is_multiple_of(3) { "ENG" } else { "OPS" }
        )
    };
    let base: Vec<String> = (0..300).map(row).collect();
    let mut changed = base.clone();
    changed[5] = "P005,Renamed,5,,ENG".into();
    changed[100] = "P100,Name 100,11,,ENG".into();
    changed.insert(50, "P1000,Inserted,1,,OPS".into());
    changed.remove(201); // P200
    changed.push("P1001,Last,2,,ENG".into());
    let with_note = |rows: &[String], note: &dyn Fn(usize) -> String| {
        std::iter::once("id,name,age,start,org,note\n".to_string())
            .chain(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| format!("{r},{}\n", note(i))),
            )
            .collect::<String>()
    };
    // Rows set aside, and a row written: the run keeps no digest of its table.
    let mut bad = changed.clone();
    bad[10] = "P010,Name 10,old,,ENG".into();
    bad[20] = "P020,Renamed,20,,OPS".into();
    bad.push(",Nobody,1,,ENG".into());
    let mut duplicate = changed.clone();
    duplicate.push("P020,Other,1,,ENG".into());
    let mut quoted = changed.clone();
    quoted[7] = "P007,\"Multi\nLine, Name\",7,,OPS".into();
    quoted[8] = "P008,\"Quoted \"\"Name\"\"\",8,,OPS".into();
    let mut quoted2 = quoted.clone();
    quoted2[7] = "P007,\"Multi\nLine, Other\",7,,OPS".into();
    quoted2[9] = "P009,Name 9b,9,,OPS".into();
    let reversed: Vec<String> = quoted2.iter().rev().cloned().collect();
    let crlf = people(reversed.iter().cloned()).replace('\n', "\r\n");
    let mut fewer = reversed.clone();
    fewer.truncate(250);
    // (what, table, compared with the last table)
    let steps: Vec<(&str, String, bool)> = vec![
        ("the same table", people(base.clone()), true),
        (
            "changed, inserted and deleted rows",
            people(changed.clone()),
            true,
        ),
        (
            "a new unmapped column",
            with_note(&changed, &|_| "n".into()),
            false,
        ),
        (
            "only the unmapped column changed",
            with_note(&changed, &|i| {
                if i % 7 == 0 { "m".into() } else { "n".into() }
            }),
            true,
        ),
        ("the unmapped column gone", people(changed.clone()), false),
        (
            "a bad value, a row without key, a row changed",
            people(bad.clone()),
            true,
        ),
        (
            "the same, after rows were set aside",
            people(bad.clone()),
            false,
        ),
        ("fixed", people(changed.clone()), false),
        // Set aside, nothing written: the store still is the last table.
        (
            "a duplicate of an unchanged row's key",
            people(duplicate),
            false,
        ),
        ("quoted records, one over two lines", people(quoted), true),
        ("a quoted record changed", people(quoted2), true),
        ("every record moved", people(reversed), true),
        ("CR LF line ends", crlf, true),
        ("fewer rows, forced past a threshold", people(fewer), true),
    ];
    for backend in ["sqlite", "postgres"] {
        let (mut a, mut b) = if backend == "sqlite" {
            (
                Site::new(Backend::Sqlite).await,
                Site::new(Backend::Sqlite).await,
            )
        } else {
            (
                Site::new(Backend::Postgres(pg(), "last_table_a")).await,
                Site::new(Backend::Postgres(pg(), "last_table_b")).await,
            )
        };
        let copy = |s: &Site| s.work().join("Prepared/Person.synchronized.csv");
        for s in [&a, &b] {
            s.table("HRO", ORGS);
            s.table("HRP", &people(base.clone()));
            s.sync(SyncMode::Initial, false).await.expect("initial");
        }
        assert!(copy(&a).exists(), "{backend}: the initial run kept no copy");
        for (when, table, expect_compared) in &steps {
            let when = format!("{backend}: {when}");
            let forced = when.contains("forced");
            if forced {
                a.connector_thresholds = r#"MaximumDeletedLines="10""#.into();
                b.connector_thresholds = a.connector_thresholds.clone();
                // Blocked: nothing changes, the copy and the store's digest included.
                for s in [&a, &b] {
                    s.table("HRP", table);
                    let err = s
                        .sync(SyncMode::Complete, false)
                        .await
                        .expect_err("blocked");
                    assert!(matches!(err, EngineError::Blocked(_)), "{when}: {err}");
                }
            }
            let _ = std::fs::remove_file(copy(&b));
            let mut reports = Vec::new();
            for s in [&a, &b] {
                s.table("HRP", table);
                reports.push(s.sync(SyncMode::Complete, forced).await.expect(&when));
            }
            let (ra, rb) = (&reports[0].mappings[0], &reports[1].mappings[0]);
            assert_eq!(ra.compared_with_last_table, *expect_compared, "{when}");
            assert!(!rb.compared_with_last_table, "{when}");
            assert_eq!(
                format!("{:?}", ra.counts),
                format!("{:?}", rb.counts),
                "{when}"
            );
            assert_eq!(ra.before, rb.before, "{when}");
            assert_eq!(
                format!("{:?}", ra.bad_values),
                format!("{:?}", rb.bad_values),
                "{when}"
            );
            for f in ["HRP.invalid.csv", "HRP.nullpk.csv", "HRP.duplicates.csv"] {
                let read =
                    |s: &Site| std::fs::read_to_string(s.work().join("Prepared").join(f)).ok();
                assert_eq!(read(&a), read(&b), "{when}: {f}");
            }
            assert_eq!(
                format!("{:?}", reports[0].associations[0].counts),
                format!("{:?}", reports[1].associations[0].counts),
                "{when}"
            );
            assert_eq!(a.dump("Person").await, b.dump("Person").await, "{when}");
            assert_eq!(a.links().await, b.links().await, "{when}");
            a.assert_snapshots_match(&when).await;
        }
        // What the steps did, end to end: 250 people, their links.
        assert_eq!(a.dump("Person").await.len(), 250, "{backend}");
        let (forward, _) = a.links().await;
        assert_eq!(forward.len(), 250, "{backend}");
        // A copy changed behind the store's back is not trusted.
        let text = std::fs::read_to_string(copy(&a)).expect("copy");
        std::fs::remove_file(copy(&a)).expect("unlink");
        std::fs::write(copy(&a), text.replacen("Name 11", "Name 12", 1)).expect("edit");
        let r = a
            .sync(SyncMode::Complete, false)
            .await
            .expect("edited copy");
        assert!(
            !r.mappings[0].compared_with_last_table,
            "{backend}: an edited copy"
        );
        assert_eq!(r.mappings[0].counts.unchanged, 250, "{backend}");
        a.connector_thresholds = ALL_OFF.into();
        b.connector_thresholds = ALL_OFF.into();
    }
}

/// The copy of the last table is only read when it is a plain file of the size saved: a pipe
/// in its place (nobody writing it) must not hang the run, nor a link to a device feed it
/// without end; the run compares with the store's index instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_pipe_or_a_device_in_place_of_the_last_table_is_not_read() {
    on_both("odd_copies", |s| async move {
        s.table("HRO", ORGS);
        s.table("HRP", PEOPLE);
        s.sync(SyncMode::Initial, false).await.expect("initial");
        let copy = s.work().join("Prepared/Person.synchronized.csv");
        let odd: [(&str, &dyn Fn()); 2] = [
            ("a pipe", &|| {
                let ok = std::process::Command::new("mkfifo")
                    .arg(&copy)
                    .status()
                    .expect("mkfifo");
                assert!(ok.success());
            }),
            ("a link to /dev/zero", &|| {
                std::os::unix::fs::symlink("/dev/zero", &copy).expect("symlink");
            }),
        ];
        for (what, make) in odd {
            std::fs::remove_file(&copy).expect("remove the copy");
            make();
            let run = s.sync(SyncMode::Complete, false);
            tokio::pin!(run);
            let r = match tokio::time::timeout(std::time::Duration::from_secs(30), &mut run).await {
                Ok(r) => r.expect(what),
                Err(_) => {
                    // Let a reader stuck on the pipe go (a blocked thread would hold the test
                    // for ever), then fail.
                    let _ = std::fs::OpenOptions::new().write(true).open(&copy);
                    let _ = run.await;
                    panic!("{what}: the run hung");
                }
            };
            assert!(!r.mappings[0].compared_with_last_table, "{what}");
            assert_eq!(r.mappings[0].counts.unchanged, 3, "{what}");
            // The run kept a plain copy again.
            assert!(
                std::fs::symlink_metadata(&copy).expect("copy").is_file(),
                "{what}"
            );
        }
    })
    .await;
}
