//! Resources and links through a synchronization transaction: many rows (more than one packed
//! chunk of SQLite's fast read path), keys with the characters the packing uses, and links.

use idlink_store::{Digest, NewResource, Store, SyncTx, on_pool};

use crate::both;
use crate::support::Target;

/// More rows than one 50,000-row chunk, so reads cross chunk boundaries; not a multiple of
/// the rows of one multi-row insert, so the last ones go in one by one.
const ROWS: usize = 100_053;

fn key(i: usize) -> String {
    // Keys holding the packing's own separators, digits after them, multi-byte text, and what
    // CSV and COPY formats quote or escape (quotes, backslashes, line ends, tabs).
    match i % 6 {
        0 => format!("K{i}"),
        1 => format!("{i}:{i};x,y"),
        2 => format!("é{i}ü"),
        3 => format!("12:{i}"),
        4 => format!("k;{i},"),
        _ => format!("\"q\\{i}\r\n\t\\."),
    }
}

async fn many_rows_and_odd_keys_read_back_across_chunks(target: Target, _name: &str) {
    let store = Store::open(&target.location).await.expect("open");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let first = tx.allocate_ids(ROWS).await.expect("ids");
    let keys: Vec<String> = (0..ROWS).map(key).collect();
    // Values whose text holds quotes and backslashes (JSON's escapes).
    let data: Vec<String> = (0..ROWS)
        .map(|i| format!(r#"{{"n":{i},"s":"a\"b\\c\n"}}"#))
        .collect();
    let rows: Vec<NewResource> = (0..ROWS)
        .map(|i| NewResource {
            id: first + i as i64,
            key: &keys[i],
            data: &data[i],
            digest: Digest {
                value: [(i % 251) as u8; 16],
                raw: i as u64,
            },
        })
        .collect();
    tx.insert_resources("HR", "Person", &rows)
        .await
        .expect("insert");
    let first = tx.allocate_ids(10).await.expect("ids");
    let others: Vec<NewResource> = rows[..10]
        .iter()
        .enumerate()
        .map(|(i, r)| NewResource {
            id: first + i as i64,
            ..*r
        })
        .collect();
    tx.insert_resources("HR", "Other", &others)
        .await
        .expect("insert other");
    let index = tx.resource_index("Person").await.expect("index");
    assert_eq!(index.len(), ROWS);
    for i in [0, 1, 2, 3, 4, 49_999, 50_000, 50_001, ROWS - 1] {
        let e = index
            .get(key(i).as_str())
            .unwrap_or_else(|| panic!("{}", key(i)));
        assert_eq!(e.raw, i as u64, "{}", key(i));
    }
    // The value part of the digests, read by id.
    let some: Vec<i64> = [0, 49_999, 50_000, ROWS - 1]
        .iter()
        .map(|&i| index[key(i).as_str()].id)
        .collect();
    let values = tx.value_digests(&some).await.expect("values");
    assert_eq!(values.len(), some.len());
    for (id, value) in values {
        let r = rows.iter().find(|r| r.id == id).expect("a row of ours");
        assert_eq!(value, r.digest.value);
    }
    let ids = tx.resource_ids("Person", None).await.expect("ids");
    assert_eq!(ids.len(), ROWS);
    assert!(ids.iter().all(|(k, id)| index[k].id == *id));
    // The ids are the ones reserved.
    assert!(rows.iter().all(|r| index[r.key].id == r.id));
    let pairs: Vec<(i64, i64)> = (0..ROWS)
        .map(|i| {
            (
                index[key(i).as_str()].id,
                index[key((i * 7) % ROWS).as_str()].id,
            )
        })
        .collect();
    tx.insert_links("A", pairs.clone()).await.expect("links");
    let set = tx.link_set("A").await.expect("link set");
    assert_eq!(set.len(), ROWS);
    assert!(pairs.iter().all(|p| set.contains(p)));
    tx.commit().await.expect("commit");
    assert_eq!(
        store.count_resources("Person").await.expect("count"),
        ROWS as u64
    );
    assert_eq!(store.count_links("A").await.expect("count"), ROWS as u64);
    // Keys and values read back as written.
    let others = store.resources("Other", &[]).await.expect("others");
    assert_eq!(others.len(), 10);
    for (i, data) in data.iter().enumerate().take(10) {
        let r = others.iter().find(|r| r.key == key(i)).expect("the key");
        assert_eq!(
            serde_json::Value::Object(r.data.clone()),
            serde_json::from_str::<serde_json::Value>(data).expect("json"),
            "{}",
            key(i)
        );
    }
}

both!(
    many_rows_and_odd_keys,
    many_rows_and_odd_keys_read_back_across_chunks
);

/// Two synchronizations of different connectors at once on PostgreSQL (SQLite runs them one
/// after the other): the ids each reserves are its own, both insert and both commit. (Fewer
/// rows per insert than a bulk load: one would lock the resources until its commit, which this
/// test, taking turns in one task, would wait for forever; see the next test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_synchronizations_reserve_distinct_ids_on_postgres() {
    let target = crate::support::postgres();
    let store = Store::open(&target.location).await.expect("open");
    let mut a = store.begin_sync("A").await.expect("begin a");
    let mut b = store.begin_sync("B").await.expect("begin b");
    let row = |id: i64, key: &'static str| NewResource {
        id,
        key,
        data: "{}",
        digest: Digest::default(),
    };
    let mut all = Vec::new();
    for round in 0..3 {
        let fa = a.allocate_ids(500).await.expect("ids a");
        let fb = b.allocate_ids(500).await.expect("ids b");
        let ra: Vec<NewResource> = (0..500)
            .map(|i| row(fa + i, format!("a{round}-{i}").leak()))
            .collect();
        let rb: Vec<NewResource> = (0..500)
            .map(|i| row(fb + i, format!("b{round}-{i}").leak()))
            .collect();
        a.insert_resources("A", "PersonA", &ra)
            .await
            .expect("insert a");
        b.insert_resources("B", "PersonB", &rb)
            .await
            .expect("insert b");
        all.extend(ra.iter().chain(&rb).map(|r| r.id));
    }
    a.commit().await.expect("commit a");
    b.commit().await.expect("commit b");
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "an id was reserved twice");
    assert_eq!(
        store.count_resources("PersonA").await.expect("count"),
        1_500
    );
    assert_eq!(
        store.count_resources("PersonB").await.expect("count"),
        1_500
    );
}

/// PostgreSQL: while a first load holds the resources (their indexes dropped until its commit),
/// another connector's synchronization waits for that commit instead of failing or deadlocking,
/// then inserts and commits; both loads are there, indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronization_waits_for_a_first_load_on_postgres_then_commits() {
    let target = crate::support::postgres();
    let store = Store::open(&target.location).await.expect("open");
    let keys: Vec<String> = (0..5_000).map(key).collect();
    let mut a = store.begin_sync("A").await.expect("begin a");
    insert_resources(&mut a, &keys, "PersonA", 5_000).await;
    let (keys_b, store_b) = (keys.clone(), store.clone());
    let (inserted_tx, mut inserted) = tokio::sync::oneshot::channel();
    let other = tokio::spawn(async move {
        let mut b = store_b.begin_sync("B").await.expect("begin b");
        insert_resources(&mut b, &keys_b, "PersonB", 1_000).await;
        let _ = inserted_tx.send(());
        b.commit().await.expect("commit b");
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        inserted.try_recv().is_err(),
        "the other synchronization waits for the load's commit"
    );
    a.commit().await.expect("commit a");
    tokio::time::timeout(std::time::Duration::from_secs(30), other)
        .await
        .expect("the other synchronization goes on after the commit")
        .expect("joins");
    assert_eq!(
        store.count_resources("PersonA").await.expect("count"),
        5_000
    );
    assert_eq!(
        store.count_resources("PersonB").await.expect("count"),
        1_000
    );
    assert_eq!(resource_index_oids(&store).await.len(), 2);
    let b = store
        .resource_by_key("PersonB", &keys[999])
        .await
        .expect("read");
    assert!(b.is_some(), "found by its key");
}

/// Index snapshots: saved with the transaction, read back entry for entry across chunks; a transaction that writes an
/// entity type's resources without saving its snapshot deletes it, and one that rolls back
/// leaves the old one; the key seed is drawn once per store. The digest of the table last
/// synchronized follows the same rules.
async fn index_snapshots_follow_the_resources_they_describe(target: Target, _name: &str) {
    use idlink_store::{ResourceUpdate, SnapshotEntry};
    let store = Store::open(&target.location).await.expect("open");
    // More entries than one chunk holds (65,536).
    let entries: Vec<SnapshotEntry> = (0..150_000u64)
        .map(|i| SnapshotEntry {
            key_hash: u128::from(i) << 64 | 0xfeed,
            id: i as i64 + 1,
            raw: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        })
        .collect();
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let seed = tx.key_seed(42).await.expect("seed");
    assert_eq!(seed, 42, "the first seed is the one offered");
    assert_eq!(read(&mut tx, "Person").await, (None, Vec::new()));
    let first = tx.allocate_ids(1).await.expect("ids");
    tx.insert_resources(
        "HR",
        "Person",
        &[NewResource {
            id: first,
            key: "a",
            data: "{}",
            digest: Digest::default(),
        }],
    )
    .await
    .expect("insert");
    tx.save_snapshot("Person", entries.clone().into_iter())
        .await
        .expect("save");
    tx.save_snapshot("Org", std::iter::empty())
        .await
        .expect("save empty");
    let found = tx
        .resources_of_keys("Person", &["a", "nobody"])
        .await
        .expect("by key");
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].0.as_str(), found[0].1), ("a", first));
    assert_eq!(tx.table_digest("Person").await.expect("digest"), None);
    tx.save_table_digest("Person", b"first table")
        .await
        .expect("save digest");
    tx.commit().await.expect("commit");

    let mut tx = store.begin_sync("HR").await.expect("begin");
    assert_eq!(tx.key_seed(7).await.expect("seed"), 42, "the seed is kept");
    assert_eq!(
        read(&mut tx, "Person").await,
        (Some(entries.len() as u64), entries.clone())
    );
    assert_eq!(
        read(&mut tx, "Org").await.0,
        None,
        "no entries: no snapshot"
    );
    // Appended entries come after the others, in their order, in chunks of their own.
    let appended = [
        SnapshotEntry {
            id: 0,
            raw: 0,
            ..entries[0]
        },
        SnapshotEntry {
            raw: 7,
            ..entries[1]
        },
    ];
    tx.append_snapshot("Person", appended.into_iter())
        .await
        .expect("append");
    let (n, got) = read(&mut tx, "Person").await;
    assert_eq!(n, Some(entries.len() as u64 + 2));
    assert_eq!(
        tx.snapshot_entries("Person").await.expect("entries"),
        Some(entries.len() as u64 + 2)
    );
    assert_eq!(tx.snapshot_entries("Org").await.expect("entries"), None);
    assert_eq!(got[..entries.len()], entries[..]);
    assert_eq!(got[entries.len()..], appended[..]);
    // Written without a new snapshot, then rolled back: the snapshot stays.
    tx.update_resources(
        "Person",
        &[ResourceUpdate {
            id: first,
            data: None,
            digest: Digest::default(),
        }],
    )
    .await
    .expect("update");
    tx.rollback().await.expect("rollback");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    assert_eq!(read(&mut tx, "Person").await.0, Some(150_000));
    assert_eq!(
        tx.table_digest("Person").await.expect("digest").as_deref(),
        Some(&b"first table"[..])
    );
    // Saved, then written again: the snapshot and the digest no longer describe the
    // resources.
    tx.save_snapshot("Person", entries[..10].iter().copied())
        .await
        .expect("save");
    tx.save_table_digest("Person", b"second table")
        .await
        .expect("save digest");
    tx.delete_resources("Person", &[first])
        .await
        .expect("delete");
    tx.commit().await.expect("commit");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    assert_eq!(read(&mut tx, "Person").await, (None, Vec::new()));
    assert_eq!(tx.table_digest("Person").await.expect("digest"), None);
    tx.rollback().await.expect("rollback");
}

async fn read(
    tx: &mut idlink_store::SyncTx<'_>,
    entity_type: &str,
) -> (Option<u64>, Vec<idlink_store::SnapshotEntry>) {
    let mut got = Vec::new();
    let n = tx
        .each_snapshot_entry(entity_type, |e| got.push(e))
        .await
        .expect("read");
    (n, got)
}

both!(
    index_snapshots,
    index_snapshots_follow_the_resources_they_describe
);

/// Deleting resources deletes their links on both sides in every association (links are
/// found by id1 through the primary key, association by association), and no other link.
async fn deleted_resources_take_their_links_in_every_association(target: Target, _name: &str) {
    let store = Store::open(&target.location).await.expect("open");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let first = tx.allocate_ids(4).await.expect("ids");
    let rows: Vec<NewResource> = (0..4)
        .map(|i| NewResource {
            id: first + i,
            key: ["R0", "R1", "R2", "R3"][i as usize],
            data: "{}",
            digest: Digest::default(),
        })
        .collect();
    tx.insert_resources("HR", "Person", &rows)
        .await
        .expect("insert");
    let [a, b, c, d] = [first, first + 1, first + 2, first + 3];
    tx.insert_links("Manager", vec![(a, b), (c, a), (d, c)])
        .await
        .expect("links");
    tx.insert_links("Buddy", vec![(a, d), (b, c)])
        .await
        .expect("links");
    tx.insert_links("Zeta", vec![(a, a), (d, b)])
        .await
        .expect("links");
    tx.delete_resources("Person", &[a]).await.expect("delete");
    let mut left = Vec::new();
    for association in ["Buddy", "Manager", "Zeta"] {
        let mut set: Vec<(i64, i64)> = tx
            .link_set(association)
            .await
            .expect("links")
            .into_iter()
            .collect();
        set.sort_unstable();
        left.push(set);
    }
    assert_eq!(left, [vec![(b, c)], vec![(d, c)], vec![(d, b)]]);
    tx.commit().await.expect("commit");
    assert_eq!(store.count_resources("Person").await.expect("count"), 3);
}

both!(
    deleted_resources_take_their_links,
    deleted_resources_take_their_links_in_every_association
);

/// The first two synchronizations of a new PostgreSQL store, at once: both saved the key seed
/// of the index snapshots, and the second failed on the first's row (a unique violation).
/// Now the second waits for the first and takes its seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_two_first_synchronizations_at_once_agree_on_the_key_seed() {
    let target = crate::support::postgres();
    let store = Store::open(&target.location).await.expect("open");
    let mut a = store.begin_sync("A").await.expect("begin a");
    assert_eq!(a.key_seed(1).await.expect("seed a"), 1);
    let second = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut b = store.begin_sync("B").await.expect("begin b");
            let seed = b.key_seed(2).await.expect("seed b");
            b.commit().await.expect("commit b");
            seed
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    a.commit().await.expect("commit a");
    assert_eq!(second.await.expect("joins"), 1);
}

/// A load of links at least as many as those stored builds SQLite's reverse index after them
/// (dropped and created again in the run's transaction): rolled back, the index is as it was;
/// committed, it holds every link, old and new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_of_links_rebuilds_the_reverse_index_in_its_transaction() {
    let target = crate::support::sqlite();
    let store = Store::open(&target.location).await.expect("open");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.insert_links("Small", vec![(1, 3), (2, 3), (5, 4)])
        .await
        .expect("links");
    tx.commit().await.expect("commit");
    let bulk: Vec<(i64, i64)> = (10..20_010).map(|i| (i, i % 7)).collect();
    let path = target.sqlite_path().expect("a SQLite store");
    // Links whose id2 is 3, found through the reverse index (an error when it is missing).
    let by_id2 = |path: &std::path::Path| -> Vec<(String, i64)> {
        let db = rusqlite::Connection::open(path).expect("open");
        let mut st = db
            .prepare(
                "SELECT association, COUNT(*) FROM links INDEXED BY links_by_id2
                 WHERE id2 = 3 GROUP BY association ORDER BY association",
            )
            .expect("the reverse index is there");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.insert_links("Bulk", bulk.clone()).await.expect("links");
    tx.rollback().await.expect("rollback");
    assert_eq!(by_id2(&path), [("Small".to_string(), 2)]);
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.insert_links("Bulk", bulk.clone()).await.expect("links");
    tx.commit().await.expect("commit");
    let with_3 = bulk.iter().filter(|(_, z)| *z == 3).count() as i64;
    assert_eq!(
        by_id2(&path),
        [("Bulk".to_string(), with_3), ("Small".to_string(), 2)]
    );
    let db = rusqlite::Connection::open(&path).expect("open");
    let sql: String = db
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'links_by_id2'",
            [],
            |r| r.get(0),
        )
        .expect("the index");
    assert_eq!(
        sql,
        "CREATE INDEX links_by_id2 ON links (id2, association, id1)"
    );
}

/// PostgreSQL: a load that at least doubles the links drops the reverse index and the primary
/// key and builds them after the rows in its transaction (a rollback keeps the old ones), but
/// only when it can lock the links at once: a load while another transaction reads the links
/// neither waits for it nor drops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_of_links_on_postgres_rebuilds_their_indexes_only_when_it_can_lock() {
    let target = crate::support::postgres();
    let store = Store::open(&target.location).await.expect("open");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.insert_links("Small", vec![(1, 3), (2, 3), (5, 4)])
        .await
        .expect("links");
    tx.commit().await.expect("commit");
    // The index's object id: a new one means it was dropped and built again.
    let index_oid = || async {
        let sql = "SELECT c.oid::BIGINT FROM pg_class c JOIN pg_indexes i ON i.indexname = c.relname
                   WHERE c.relname = 'links_by_id2'
                   AND i.indexdef LIKE '%links_by_id2 ON public.links USING btree (id2, association, id1)'";
        on_pool!(store, p => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await)
            .expect("the reverse index is there, as migration 2 made it")
    };
    // The primary key's object id, likewise.
    let key_oid = || async {
        let sql = "SELECT conindid::BIGINT FROM pg_constraint
                   WHERE conname = 'links_pkey' AND contype = 'p'
                   AND pg_get_constraintdef(oid) = 'PRIMARY KEY (association, id1, id2)'";
        on_pool!(store, p => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await)
            .expect("the primary key is there, as migration 2 made it")
    };
    let by_id2 = || async {
        let sql = "SELECT association, COUNT(*) FROM links WHERE id2 = 3
                   GROUP BY association ORDER BY association";
        on_pool!(store, p => sqlx::query_as::<_, (String, i64)>(sql).fetch_all(p).await)
            .expect("links by id2")
    };
    let before = index_oid().await;
    let key_before = key_oid().await;

    // Another transaction reads the links meanwhile: the load does not wait for it.
    let mut reader = reading(&target, "links").await;
    let bulk: Vec<(i64, i64)> = (10..20_010).map(|i| (i, i % 7)).collect();
    let load = async {
        let mut tx = store.begin_sync("HR").await.expect("begin");
        tx.insert_links("Read", bulk.clone()).await.expect("links");
        tx.commit().await.expect("commit");
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), load)
        .await
        .expect("the load does not wait for the reader");
    sqlx::query("COMMIT")
        .execute(&mut reader)
        .await
        .expect("commit");
    assert_eq!(index_oid().await, before, "kept while the links were read");
    assert_eq!(
        key_oid().await,
        key_before,
        "kept while the links were read"
    );

    // Alone, a load of more links than stored rebuilds the index; a rollback keeps the old.
    let bulk: Vec<(i64, i64)> = (10..30_010).map(|i| (i, i % 7)).collect();
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.insert_links("Bulk", bulk.clone()).await.expect("links");
    tx.rollback().await.expect("rollback");
    assert_eq!(index_oid().await, before, "a rollback keeps the index");
    assert_eq!(key_oid().await, key_before, "a rollback keeps the key");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.insert_links("Bulk", bulk.clone()).await.expect("links");
    tx.commit().await.expect("commit");
    assert_ne!(index_oid().await, before, "built again");
    assert_ne!(key_oid().await, key_before, "built again");
    // The key holds: a link already there is not added twice.
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let twice = tx.insert_links("Bulk", vec![(10, 3)]).await;
    assert!(twice.is_err(), "a duplicate link is refused by the key");
    tx.rollback().await.expect("rollback");
    let count = |n: i64| {
        bulk.iter()
            .take(n as usize)
            .filter(|(_, z)| *z == 3)
            .count() as i64
    };
    assert_eq!(
        by_id2().await,
        [
            ("Bulk".to_string(), count(30_000)),
            ("Read".to_string(), count(20_000)),
            ("Small".to_string(), 2)
        ]
    );
}

/// PostgreSQL: a load of resources that at least doubles them (a first synchronization) drops
/// their primary key and key index and builds them after the rows in its transaction (a
/// rollback keeps the old ones; the commit never goes without them), but only when it can lock
/// the resources at once; a smaller load keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_of_resources_on_postgres_builds_their_indexes_after_the_rows() {
    let target = crate::support::postgres();
    let store = Store::open(&target.location).await.expect("open");
    let oids = || resource_index_oids(&store);
    let keys: Vec<String> = (0..5_000).map(key).collect();
    let before = oids().await;

    // Another transaction reads the resources meanwhile: the load neither waits for it nor
    // drops them.
    let mut reader = reading(&target, "resources").await;
    let tx = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        load_resources(&store, &keys, "Person", 2_000),
    )
    .await
    .expect("the load does not wait for the reader");
    tx.rollback().await.expect("rollback");
    sqlx::query("COMMIT")
        .execute(&mut reader)
        .await
        .expect("commit");
    assert_eq!(oids().await, before, "kept while the resources were read");

    // Alone, the load builds them again; a rollback keeps the old ones.
    let tx = load_resources(&store, &keys, "Person", 2_000).await;
    tx.rollback().await.expect("rollback");
    assert_eq!(oids().await, before, "a rollback keeps the indexes");
    // The commit builds them when the caller did not.
    let mut tx = store.begin_sync("HR").await.expect("begin");
    insert_resources(&mut tx, &keys, "Person", 2_000).await;
    tx.commit().await.expect("commit");
    let built = oids().await;
    assert!(
        built.iter().zip(&before).all(|(a, b)| a != b),
        "built again: {built:?} against {before:?}"
    );
    // They hold: a key already there is refused.
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let first = tx.allocate_ids(1).await.expect("ids");
    let twice = [NewResource {
        id: first,
        key: &keys[3],
        data: "{}",
        digest: Digest {
            value: [0; 16],
            raw: 0,
        },
    }];
    assert!(
        tx.insert_resources("HR", "Person", &twice).await.is_err(),
        "a key stored is refused by the key index"
    );
    tx.rollback().await.expect("rollback");
    // A load smaller than the store keeps them.
    let tx = load_resources(&store, &keys, "Other", 1_500).await;
    tx.commit().await.expect("commit");
    assert_eq!(oids().await, built, "kept by a load smaller than the store");
    let person = store
        .resource_by_key("Person", &keys[1_999])
        .await
        .expect("read");
    assert!(person.is_some(), "found by its key");
    for (entity_type, n) in [("Person", 2_000), ("Other", 1_500)] {
        assert_eq!(store.count_resources(entity_type).await.expect("count"), n);
    }
}

/// Regression (PostgreSQL): in a first synchronization, the 1,000 organizations after a million
/// people dropped the resources' indexes again and built them over all the rows (1.6 s of the
/// bench): a table smaller than the resources there and those the run added keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_small_table_after_a_bulk_load_does_not_build_the_indexes_again() {
    use sqlx::Connection as _;
    let target = crate::support::postgres();
    let store = Store::open(&target.location).await.expect("open");
    let keys: Vec<String> = (0..5_000).map(key).collect();
    let oids = || resource_index_oids(&store);
    let before = oids().await;
    // A load that more than doubles the store builds them again; a table loaded after it in
    // the same transaction, smaller than what is there, does not (it would index them all).
    let mut tx = store.begin_sync("HR").await.expect("begin");
    insert_resources(&mut tx, &keys, "Big", 5_000).await;
    tx.index_resources().await.expect("indexes");
    // An object id taken now, by another connection: indexes built after it have larger ones
    // (object ids grow; the transaction's catalog is not visible before its commit).
    let mut other = sqlx::PgConnection::connect(&target.given)
        .await
        .expect("connect");
    sqlx::query("CREATE TEMP TABLE marker (x INT)")
        .execute(&mut other)
        .await
        .expect("a marker");
    let marker: i64 = sqlx::query_scalar("SELECT 'marker'::regclass::oid::BIGINT")
        .fetch_one(&mut other)
        .await
        .expect("its object id");
    insert_resources(&mut tx, &keys, "Small", 1_000).await;
    tx.index_resources().await.expect("indexes");
    tx.commit().await.expect("commit");
    let big = oids().await;
    assert!(
        big.iter().zip(&before).all(|(a, b)| a != b),
        "built again: {big:?} against {before:?}"
    );
    assert!(
        big.iter().all(|oid| *oid < marker),
        "built with the large load, not again with the smaller table: {big:?}, marker {marker}"
    );
    for (entity_type, n) in [("Big", 5_000), ("Small", 1_000)] {
        assert_eq!(store.count_resources(entity_type).await.expect("count"), n);
    }
}

/// The object ids of the resources' primary key and key index, as migration 2 defines them: a
/// new one means built again.
async fn resource_index_oids(store: &Store) -> Vec<i64> {
    let sql = "SELECT conindid::BIGINT FROM pg_constraint
               WHERE conrelid = 'resources'::regclass AND pg_get_constraintdef(oid) = $1";
    let mut oids = Vec::new();
    for def in ["PRIMARY KEY (id)", "UNIQUE (entity_type, key)"] {
        let oid =
            on_pool!(store, p => sqlx::query_scalar::<_, i64>(sql).bind(def).fetch_one(p).await)
                .unwrap_or_else(|e| panic!("{def} is there, as migration 2 made it: {e}"));
        oids.push(oid);
    }
    oids
}

/// A PostgreSQL session of its own in a transaction that read `table` (and so holds it).
async fn reading(target: &Target, table: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    let mut reader = sqlx::PgConnection::connect(&target.given)
        .await
        .expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut reader)
        .await
        .expect("begin");
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .execute(&mut reader)
        .await
        .expect("read");
    reader
}

/// Inserts `n` resources of `entity_type` (keys from `keys`) in `tx`; reads one by its key (the
/// indexes may not be built yet).
async fn insert_resources(tx: &mut SyncTx<'_>, keys: &[String], entity_type: &str, n: usize) {
    let first = tx.allocate_ids(n).await.expect("ids");
    let rows: Vec<NewResource> = (0..n)
        .map(|i| NewResource {
            id: first + i as i64,
            key: &keys[i],
            data: "{}",
            digest: Digest {
                value: [0; 16],
                raw: i as u64,
            },
        })
        .collect();
    tx.insert_resources("HR", entity_type, &rows)
        .await
        .expect("insert");
    let ids = tx
        .ids_of_keys(entity_type, &[keys[7].as_str()])
        .await
        .expect("ids of keys");
    assert_eq!(ids, [first + 7], "found by its key");
}

/// A transaction that inserted `n` resources of `entity_type` and built the indexes.
async fn load_resources<'s>(
    store: &'s Store,
    keys: &[String],
    entity_type: &str,
    n: usize,
) -> SyncTx<'s> {
    let mut tx = store.begin_sync("HR").await.expect("begin");
    insert_resources(&mut tx, keys, entity_type, n).await;
    tx.index_resources().await.expect("indexes");
    tx
}

/// Values stored as arrays in layouts (what synchronizations write) and as JSON objects (what
/// stores before format 9 hold) read alike, through the resources and through a property's
/// ids; a layout asked for twice is one, a property list changed is another, and rows keep
/// the layout they were written in.
async fn values_in_layouts_and_as_objects_read_alike(target: Target, _name: &str) {
    use idlink_store::Packer;
    let store = Store::open(&target.location).await.expect("open");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let wide = tx
        .data_layout("Person", &["Grade", "Mail", "Name"])
        .await
        .expect("layout");
    assert_eq!(
        tx.data_layout("Person", &["Grade", "Mail", "Name"])
            .await
            .expect("layout"),
        wide
    );
    let narrow = tx
        .data_layout("Person", &["Mail", "Name"])
        .await
        .expect("layout");
    assert_ne!(narrow, wide);
    let packed = |layout: i64, values: &[Option<&str>]| {
        let mut p = Packer::new(layout);
        p.start();
        for v in values {
            match v {
                Some(v) => p.value(v.as_bytes()),
                None => p.absent(),
            }
        }
        p.finish().expect("text").to_string()
    };
    let first = tx.allocate_ids(4).await.expect("ids");
    let rows = [
        ("A", r#"{"Grade":1,"Mail":"a@x","Name":"Ann"}"#.to_string()),
        (
            "B",
            packed(wide, &[Some("2"), Some("\"b@x\""), Some("\"Bob\"")]),
        ),
        ("C", packed(wide, &[None, Some("\"c@x\""), None])),
        ("D", packed(narrow, &[Some("\"d@x\""), Some("\"Dee\"")])),
    ];
    let rows: Vec<NewResource> = rows
        .iter()
        .enumerate()
        .map(|(i, (key, data))| NewResource {
            id: first + i as i64,
            key,
            data,
            digest: Digest::default(),
        })
        .collect();
    tx.insert_resources("HR", "Person", &rows)
        .await
        .expect("insert");
    let by_mail = tx.resource_ids("Person", Some("Mail")).await.expect("ids");
    tx.commit().await.expect("commit");
    let mut by_mail: Vec<(String, i64)> = by_mail.into_iter().map(|(k, v)| (k.into(), v)).collect();
    by_mail.sort();
    assert_eq!(
        by_mail,
        [("a@x", 0), ("b@x", 1), ("c@x", 2), ("d@x", 3)].map(|(m, i)| (m.to_string(), first + i))
    );
    let got: Vec<(String, serde_json::Value)> = store
        .resources("Person", &[])
        .await
        .expect("read")
        .into_iter()
        .map(|r| (r.key, serde_json::Value::Object(r.data)))
        .collect();
    assert_eq!(
        got,
        [
            (
                "A",
                serde_json::json!({"Grade": 1, "Mail": "a@x", "Name": "Ann"})
            ),
            (
                "B",
                serde_json::json!({"Grade": 2, "Mail": "b@x", "Name": "Bob"})
            ),
            ("C", serde_json::json!({"Mail": "c@x"})),
            ("D", serde_json::json!({"Mail": "d@x", "Name": "Dee"})),
        ]
        .map(|(k, v)| (k.to_string(), v))
    );
    let graded = store
        .resources("Person", &[("Grade".into(), "2".into())])
        .await
        .expect("read");
    assert_eq!(
        graded.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["B"]
    );
    // Another entity type's layouts are not this one's: a row pointing at one is damaged.
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let other = tx.data_layout("Org", &["Code"]).await.expect("layout");
    let id = tx.allocate_ids(1).await.expect("ids");
    tx.insert_resources(
        "HR",
        "Person",
        &[NewResource {
            id,
            key: "E",
            data: &packed(other, &[Some("\"x\"")]),
            digest: Digest::default(),
        }],
    )
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    let e = store
        .resources("Person", &[])
        .await
        .expect_err("a damaged row");
    let text = e.to_string();
    assert!(
        text.contains("resource Person 'E'") && text.contains(&format!("layout {other}")),
        "{text}"
    );
}

both!(
    values_in_layouts,
    values_in_layouts_and_as_objects_read_alike
);

/// The counts the store keeps, against its rows counted.
async fn assert_counts_are_the_rows(store: &Store, entity_types: &[&str], associations: &[&str]) {
    for et in entity_types {
        let rows: i64 = on_pool!(store, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM resources WHERE entity_type = $1"
        ).bind(*et).fetch_one(p).await)
        .expect("count rows");
        let kept = store.count_resources(et).await.expect("kept count");
        assert_eq!(kept, rows as u64, "resources of {et}");
    }
    for a in associations {
        let rows: i64 = on_pool!(store, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM links WHERE association = $1"
        ).bind(*a).fetch_one(p).await)
        .expect("count rows");
        let kept = store.count_links(a).await.expect("kept count");
        assert_eq!(kept, rows as u64, "links of {a}");
    }
}

/// Resources and links are counted as they are written (a run reads what it starts from
/// without counting a million rows): inserts, deletes of links (some not there), deletes of
/// resources on either side of several associations, counts inside the transaction, a
/// rollback; and a store written before the counts gets them when it is opened.
async fn kept_counts_are_the_rows_after_every_kind_of_write(target: Target, _name: &str) {
    let ets = ["Person", "Group"];
    let assocs = ["Member", "Owner"];
    let store = Store::open(&target.location).await.expect("open");
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let first = tx.allocate_ids(300).await.expect("ids");
    let keys: Vec<String> = (0..300).map(key).collect();
    let rows = |range: std::ops::Range<usize>| -> Vec<NewResource<'_>> {
        range
            .map(|i| NewResource {
                id: first + i as i64,
                key: &keys[i],
                data: "{}",
                digest: Digest::default(),
            })
            .collect()
    };
    tx.insert_resources("HR", "Person", &rows(0..200))
        .await
        .expect("insert");
    tx.insert_resources("HR", "Group", &rows(200..300))
        .await
        .expect("insert");
    assert_eq!(tx.count_resources("Person").await.expect("count"), 200);
    let id = |i: usize| first + i as i64;
    let members: Vec<(i64, i64)> = (0..200).map(|i| (id(i), id(200 + i % 100))).collect();
    let owners: Vec<(i64, i64)> = (0..100).map(|i| (id(200 + i), id(i))).collect();
    tx.insert_links("Member", members).await.expect("links");
    tx.insert_links("Owner", owners).await.expect("links");
    assert_eq!(tx.count_links("Member").await.expect("count"), 200);
    tx.commit().await.expect("commit");
    assert_counts_are_the_rows(&store, &ets, &assocs).await;

    // Deletes: links, one of them not there; resources on both sides of both associations.
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.delete_links("Member", &[(id(0), id(200)), (id(0), id(201))])
        .await
        .expect("delete links");
    tx.delete_resources("Person", &[id(1), id(2), id(150)])
        .await
        .expect("delete");
    tx.delete_resources("Group", &[id(250)])
        .await
        .expect("delete");
    assert_eq!(tx.count_resources("Person").await.expect("count"), 197);
    tx.commit().await.expect("commit");
    assert_counts_are_the_rows(&store, &ets, &assocs).await;
    assert_eq!(store.count_links("Member").await.expect("count"), 195);

    // A rollback keeps the counts.
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.delete_resources("Group", &[id(201), id(202)])
        .await
        .expect("delete");
    tx.insert_resources("HR", "Person", &rows(1..3))
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    assert_counts_are_the_rows(&store, &ets, &assocs).await;

    // A store written before the counts were kept gets them when it is opened.
    for sql in [
        "DROP TABLE resource_counts",
        "DROP TABLE link_counts",
        "DELETE FROM idlink_migrations WHERE version = 10",
        "UPDATE idlink_meta SET value = '9' WHERE key = 'format_version'",
    ] {
        on_pool!(store, p => sqlx::query(sql).execute(p).await.map(|_| ())).expect(sql);
    }
    store.close().await;
    let store = Store::open(&target.location).await.expect("reopen");
    assert_eq!(store.format_version().await.expect("version"), 10);
    assert_counts_are_the_rows(&store, &ets, &assocs).await;
    assert_eq!(store.count_resources("Group").await.expect("count"), 99);
}

both!(
    kept_counts,
    kept_counts_are_the_rows_after_every_kind_of_write
);

/// A listing by pages read from one [`Store::read_snapshot`] sees the store as it was when the
/// snapshot was taken, while a synchronization commits between its pages (updates, deletes,
/// inserts, links removed); reads outside it see the new state. Before the snapshot, `idlink
/// resources` and the server's search read each page as the store was then: a list half old
/// and half new.
async fn regression_pages_of_one_snapshot_do_not_mix_the_store_before_and_after_a_sync(
    target: Target,
    _name: &str,
) {
    use idlink_store::{Resource, ResourceUpdate};
    let store = Store::open(&target.location).await.expect("open");
    let keys = ["a", "b", "c", "d", "e", "f"];
    let mut tx = store.begin_sync("HR").await.expect("begin");
    let first = tx.allocate_ids(keys.len() + 1).await.expect("ids");
    let id = |k: &str| first + keys.iter().position(|x| *x == k).expect("a key") as i64;
    let org = first + keys.len() as i64;
    let person = |k: &'static str| NewResource {
        id: id(k),
        key: k,
        data: r#"{"v":"old"}"#,
        digest: Digest::default(),
    };
    let people: Vec<NewResource> = keys.iter().map(|k| person(k)).collect();
    tx.insert_resources("HR", "Person", &people)
        .await
        .expect("people");
    let o1 = NewResource {
        id: org,
        key: "o1",
        data: "{}",
        digest: Digest::default(),
    };
    tx.insert_resources("HR", "Org", &[o1]).await.expect("org");
    tx.insert_links("Person_Org", keys.iter().map(|k| (id(k), org)).collect())
        .await
        .expect("links");
    tx.commit().await.expect("commit");

    let show = |rs: &[Resource]| -> Vec<String> {
        rs.iter()
            .map(|r| format!("{}={}", r.key, r.data["v"].as_str().unwrap_or("?")))
            .collect()
    };
    let mut snapshot = store.read_snapshot().await.expect("snapshot");
    let page = snapshot
        .resources_page("Person", None, 3)
        .await
        .expect("page 1");
    assert_eq!(show(&page), ["a=old", "b=old", "c=old"]);

    // A synchronization commits between the pages.
    let mut tx = store.begin_sync("HR").await.expect("begin");
    tx.update_resources(
        "Person",
        &[ResourceUpdate {
            id: id("d"),
            data: Some(r#"{"v":"new"}"#.into()),
            digest: Digest::default(),
        }],
    )
    .await
    .expect("update");
    tx.delete_resources("Person", &[id("e")])
        .await
        .expect("delete");
    tx.delete_links("Person_Org", &[(id("f"), org)])
        .await
        .expect("unlink");
    let g = tx.allocate_ids(1).await.expect("id");
    let new = NewResource {
        id: g,
        key: "g",
        data: r#"{"v":"new"}"#,
        digest: Digest::default(),
    };
    tx.insert_resources("HR", "Person", &[new])
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    let page = snapshot
        .resources_page("Person", Some("c"), 3)
        .await
        .expect("page 2");
    assert_eq!(show(&page), ["d=old", "e=old", "f=old"]);
    let ids: Vec<i64> = page.iter().map(|r| r.id).collect();
    let linked = snapshot
        .linked_keys_of_ids("Person_Org", 1, &ids)
        .await
        .expect("links");
    assert_eq!(linked.len(), 3, "{linked:?}");
    assert!(linked.values().all(|k| k == &["o1"]), "{linked:?}");
    let last = snapshot
        .resources_page("Person", Some("f"), 3)
        .await
        .expect("page 3");
    assert!(last.is_empty(), "{:?}", show(&last));
    drop(snapshot);

    // Read now, the store is as the synchronization left it.
    let page = store
        .resources_page("Person", Some("c"), 10)
        .await
        .expect("page now");
    assert_eq!(show(&page), ["d=new", "f=old", "g=new"]);
    let ids: Vec<i64> = page.iter().map(|r| r.id).collect();
    let linked = store
        .linked_keys_of_ids("Person_Org", 1, &ids)
        .await
        .expect("links now");
    assert_eq!(
        linked.get(&id("d")).map(Vec::as_slice),
        Some(&["o1".to_string()][..])
    );
    assert_eq!(linked.get(&id("f")), None, "{linked:?}");
}

both!(
    pages_of_one_snapshot,
    regression_pages_of_one_snapshot_do_not_mix_the_store_before_and_after_a_sync
);
