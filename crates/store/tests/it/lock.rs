//! Connector locks: the second taker is told who holds it since when, within one process and
//! across two real processes (this test binary re-executing itself), and a lock dies with its
//! holder, even one killed with `kill -9`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use idlink_store::{ErrorKind, Location, Store, StoreError};

use crate::both;
use crate::support::Target;

/// Set in the re-executed test process: the store it locks in.
const CHILD_STORE: &str = "IDLINK_STORE_TEST_HOLD_LOCK";

async fn a_second_taker_is_refused_until_the_first_releases(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    let lock = store.lock_connector("HR", "sync").await.expect("locks");
    assert_eq!(lock.holder().pid, std::process::id());
    let e = store
        .lock_connector("HR", "refresh-schema")
        .await
        .expect_err("held");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    let StoreError::Locked { connector, holder } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(connector, "HR");
    assert_eq!(holder.as_ref(), Some(lock.holder()));
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "connector 'HR' is busy: sync holds it (process {} on ",
            std::process::id()
        )),
        "{text}"
    );
    // Another connector is free.
    let other = store
        .lock_connector("AD", "sync")
        .await
        .expect("another connector");
    lock.release().await.expect("releases");
    let again = store
        .lock_connector("HR", "sync")
        .await
        .expect("free again");
    drop(again);
    drop(other);
    // Dropping releases too.
    let last = store
        .lock_connector("HR", "sync")
        .await
        .expect("free after drop");
    drop(last);
}
both!(
    refused_then_released,
    a_second_taker_is_refused_until_the_first_releases
);

/// The child's side: take the lock, say so, wait to be killed.
async fn hold_until_killed(location: &str) {
    let store = Store::open(&Location::parse(location).expect("location"))
        .await
        .expect("child opens");
    let lock = store
        .lock_connector("HR", "sync (child)")
        .await
        .expect("child locks");
    println!("HOLDING {}", lock.holder().pid);
    tokio::time::sleep(Duration::from_secs(120)).await;
    drop(lock);
}

async fn a_lock_held_by_another_process_is_refused_and_dies_with_it(t: Target, test: &str) {
    // The test's own name, without the binary's module prefix, to run only it in the child.
    let name = test.split_once("::").map_or(test, |(_, rest)| rest);
    let store = Store::open(&t.location).await.expect("opens");
    for round in 0..2 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_STORE, &t.given)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("re-executes itself");
        let stdout = child.stdout.take().expect("stdout");
        let pid = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest may have written "test <name> ... " on the same line first.
            .find_map(|l| {
                l.split_once("HOLDING ")
                    .map(|(_, pid)| pid.trim().to_string())
            })
            .unwrap_or_else(|| panic!("round {round}: the child never held the lock"));
        assert_eq!(pid, child.id().to_string());
        let e = store
            .lock_connector("HR", "sync")
            .await
            .expect_err("held by the child");
        let StoreError::Locked {
            holder: Some(h), ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!((h.pid, h.purpose.as_str()), (child.id(), "sync (child)"));
        assert!(
            e.to_string().contains(&format!(
                "sync (child) holds it (process {} on ",
                child.id()
            )),
            "{e}"
        );
        // kill -9: no chance to clean up.
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let started = Instant::now();
        let lock = loop {
            match store.lock_connector("HR", "sync").await {
                Ok(l) => break l,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("round {round}: still locked after the holder was killed: {e}"),
            }
        };
        assert_eq!(lock.holder().pid, std::process::id());
        lock.release().await.expect("releases");
    }
}
/// Like `both!`, but the re-executed child only holds the lock (and starts no server).
mod across_processes {
    use super::*;

    async fn run(target: fn() -> Target, test: &str) {
        match std::env::var(CHILD_STORE) {
            Ok(location) => hold_until_killed(&location).await,
            Err(_) => {
                a_lock_held_by_another_process_is_refused_and_dies_with_it(target(), test).await
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(crate::support::sqlite, concat!(module_path!(), "::sqlite")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(
            crate::support::postgres,
            concat!(module_path!(), "::postgres"),
        )
        .await;
    }
}

/// The connector lock dropped (not released) is free for the next taker at once, many times
/// over: on PostgreSQL the server ends the dropped session a moment later, and a taker in that
/// moment was refused (seen in CI as "free after drop: Locked").
async fn dropped_locks_are_free_for_the_next_taker(target: Target, _name: &str) {
    let store = Store::open(&target.location).await.expect("open");
    for i in 0..20 {
        let lock = store
            .lock_connector("HR", "sync")
            .await
            .unwrap_or_else(|e| panic!("take {i}: {e}"));
        drop(lock);
    }
}
both!(
    regression_a_dropped_lock_is_free_for_the_next_taker,
    dropped_locks_are_free_for_the_next_taker
);
