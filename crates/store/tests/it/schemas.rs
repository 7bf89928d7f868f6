//! Schema snapshots: success, failure keeping the last good one, success clearing a failure.

use chrono::{DateTime, Duration, Utc};
use idlink_model::config::{KeyType, ValueType};
use idlink_model::schema::{ColumnSchema, ConnectionSchema, TableSchema};
use idlink_store::{SchemaFailure, Store};

use crate::both;
use crate::support::Target;

fn schema(columns: &[&str]) -> ConnectionSchema {
    ConnectionSchema {
        tables: vec![TableSchema {
            name: "HRPeople".into(),
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, c)| ColumnSchema {
                    name: c.to_string(),
                    value_type: if i == 0 {
                        ValueType::Int64
                    } else {
                        ValueType::String
                    },
                    source_type: (i == 0).then(|| "bigint".to_string()),
                    multivalued: i == 2,
                    key: if i == 0 {
                        KeyType::Primary
                    } else {
                        KeyType::None
                    },
                })
                .collect(),
        }],
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

async fn snapshots_keep_the_last_good_schema_through_failures(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    assert_eq!(store.schema_state("HRPeople").await.expect("reads"), None);
    let t1 = at("2025-03-01T10:00:00.123456Z");
    let first = schema(&["EmployeeId", "FirstName", "Groups"]);
    store
        .record_schema("HRPeople", "Usercube.CSV@0000001", &first, t1)
        .await
        .expect("records");
    let state = store
        .schema_state("hrpeople")
        .await
        .expect("reads")
        .expect("recorded");
    assert_eq!(state.connection, "HRPeople");
    let snap = state.snapshot.expect("snapshot");
    assert_eq!(
        snap.schema, first,
        "the schema reads back as it was written"
    );
    assert_eq!(snap.package, "Usercube.CSV@0000001");
    assert_eq!(snap.refreshed_at, t1);
    assert_eq!(state.failure, None);

    // A failure: recorded, the good snapshot stays.
    let t2 = t1 + Duration::minutes(5);
    store
        .record_schema_failure("HRPEOPLE", t2, "cannot open 'data/hr.csv': No such file")
        .await
        .expect("records");
    let state = store
        .schema_state("HRPeople")
        .await
        .expect("reads")
        .expect("recorded");
    assert_eq!(state.connection, "HRPEOPLE");
    assert_eq!(
        state.failure,
        Some(SchemaFailure {
            at: t2,
            message: "cannot open 'data/hr.csv': No such file".into()
        })
    );
    let snap = state.snapshot.expect("the last good snapshot is kept");
    assert_eq!((snap.schema, snap.refreshed_at), (first.clone(), t1));

    // A later success replaces the snapshot and clears the failure.
    let t3 = t2 + Duration::minutes(5);
    let second = schema(&["EmployeeId", "LastName"]);
    store
        .record_schema("HRPeople", "Usercube.CSV@0000001", &second, t3)
        .await
        .expect("records");
    let state = store
        .schema_state("HRPeople")
        .await
        .expect("reads")
        .expect("recorded");
    assert_eq!(state.failure, None);
    assert_eq!(state.snapshot.expect("snapshot").schema, second);
}
both!(
    last_good_snapshot,
    snapshots_keep_the_last_good_schema_through_failures
);

async fn a_failure_without_any_success_has_no_snapshot(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    let t1 = at("2025-03-01T10:00:00Z");
    store
        .record_schema_failure("Directory", t1, "connection refused")
        .await
        .expect("records");
    store
        .record_schema(
            "HROrganizations",
            "Usercube.CSV@0000001",
            &schema(&["Code"]),
            t1,
        )
        .await
        .expect("records");
    let states = store.schema_states().await.expect("reads");
    let names: Vec<&str> = states.iter().map(|s| s.connection.as_str()).collect();
    assert_eq!(names, ["Directory", "HROrganizations"]);
    assert_eq!(states[0].snapshot, None);
    assert_eq!(states[0].failure.as_ref().map(|f| f.at), Some(t1));
    assert!(states[1].snapshot.is_some() && states[1].failure.is_none());
}
both!(failure_only, a_failure_without_any_success_has_no_snapshot);

async fn snapshots_survive_reopening(t: Target, _: &str) {
    let t1 = at("2025-03-01T10:00:00Z");
    {
        let store = Store::open(&t.location).await.expect("opens");
        store
            .record_schema("HRPeople", "Usercube.CSV@0000001", &schema(&["A", "B"]), t1)
            .await
            .expect("records");
        store.close().await;
    }
    let store = Store::open_existing(&t.location)
        .await
        .expect("opens")
        .expect("exists");
    let state = store
        .schema_state("HRPeople")
        .await
        .expect("reads")
        .expect("kept");
    assert_eq!(state.snapshot.expect("snapshot").refreshed_at, t1);
}
both!(survive_reopening, snapshots_survive_reopening);
