//! The scheduler's claimed fires, on both backends: a scheduled time is claimed once, however
//! many servers (stores opened on one database) ask at once; the last fire is the latest one.

use chrono::{Duration, TimeZone, Utc};
use idlink_store::Store;

use crate::both;
use crate::support::Target;

async fn a_fire_is_claimed_once_and_the_last_fire_is_the_latest(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    assert!(store.last_fire("Nightly").await.expect("reads").is_none());
    let t1 = Utc
        .with_ymd_and_hms(2025, 3, 30, 0, 0, 0)
        .single()
        .expect("time");
    let t2 = t1 + Duration::days(1);
    assert!(
        store
            .claim_fire("Nightly", t1, "server A")
            .await
            .expect("claims")
    );
    // The same time again, by another server or by the job's name in other case: refused.
    assert!(
        !store
            .claim_fire("Nightly", t1, "server B")
            .await
            .expect("runs")
    );
    assert!(
        !store
            .claim_fire("NIGHTLY", t1, "server B")
            .await
            .expect("runs")
    );
    // Another job's same time is its own.
    assert!(
        store
            .claim_fire("Hourly", t1, "server B")
            .await
            .expect("claims")
    );
    assert!(
        store
            .claim_fire("Nightly", t2, "server B")
            .await
            .expect("claims")
    );
    let last = store
        .last_fire("nightly")
        .await
        .expect("reads")
        .expect("a fire");
    assert_eq!((last.fire_at, last.claimed_by.as_str()), (t2, "server B"));
    let all = store.fires("Nightly", 10).await.expect("reads");
    assert_eq!(
        all.iter()
            .map(|f| (f.fire_at, f.claimed_by.as_str()))
            .collect::<Vec<_>>(),
        vec![(t2, "server B"), (t1, "server A")]
    );
    store.close().await;
}
both!(
    fires,
    a_fire_is_claimed_once_and_the_last_fire_is_the_latest
);

/// Two stores on one database (two servers) claim the same times concurrently: each time is
/// won by exactly one of them.
async fn concurrent_claims_of_one_time_have_one_winner(t: Target, _: &str) {
    let a = Store::open(&t.location).await.expect("opens");
    let b = Store::open(&t.location).await.expect("opens");
    let base = Utc
        .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let mut tasks = Vec::new();
    for (store, name) in [(a.clone(), "A"), (b.clone(), "B")] {
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for i in 0..40 {
                let at = base + Duration::minutes(i);
                if store.claim_fire("Every", at, name).await.expect("claims") {
                    won.push(i);
                }
            }
            won
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    all.sort();
    assert_eq!(
        all,
        (0..40).collect::<Vec<_>>(),
        "each time won exactly once"
    );
    a.close().await;
    b.close().await;
}
both!(
    concurrent_claims,
    concurrent_claims_of_one_time_have_one_winner
);

async fn a_scheduled_job_is_first_seen_once(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    let t1 = Utc
        .with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .expect("time");
    let first = store
        .scheduled_job_first_seen("Nightly", t1)
        .await
        .expect("records");
    assert_eq!(first, t1);
    let again = store
        .scheduled_job_first_seen("nightly", t1 + Duration::hours(5))
        .await
        .expect("reads");
    assert_eq!(again, t1, "the first sighting stays");
    store.close().await;
}
both!(first_seen, a_scheduled_job_is_first_seen_once);
