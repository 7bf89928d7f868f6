//! Agents, enrolment tokens, agent sessions and the agent work queue, on both backends.

use std::collections::HashSet;

use idlink_store::agents::{now_ms, task_state};
use idlink_store::{AgentState, Enrolment, Store};

use crate::both;
use crate::support::Target;

async fn enrolment_approval_and_revocation(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    // Without a token: Pending, and no session is valid for it.
    let e = store
        .enrol_agent("Paris", "age1paris", None)
        .await
        .expect("enrols");
    let Enrolment::Created(a) = e else {
        panic!("created: {e:?}")
    };
    assert_eq!(a.state, AgentState::Pending);
    store
        .create_agent_session("s1", "Paris", now_ms() + 60_000)
        .await
        .expect("session");
    assert_eq!(store.agent_session("s1").await.expect("reads"), None);
    // The same identifier with another key is refused, whatever the case.
    assert!(matches!(
        store
            .enrol_agent("PARIS", "age1other", None)
            .await
            .expect("runs"),
        Enrolment::OtherKey(_)
    ));
    // Approved: the session works.
    assert!(
        store
            .decide_agent("paris", AgentState::Approved, "admin")
            .await
            .expect("approves")
    );
    assert_eq!(
        store.agent_session("s1").await.expect("reads").as_deref(),
        Some("Paris")
    );
    // An expired session does not.
    store
        .create_agent_session("old", "Paris", now_ms() - 1)
        .await
        .expect("session");
    assert_eq!(store.agent_session("old").await.expect("reads"), None);
    // Revoked: sessions dropped, never approved again.
    assert!(
        store
            .decide_agent("Paris", AgentState::Revoked, "admin")
            .await
            .expect("revokes")
    );
    assert_eq!(store.agent_session("s1").await.expect("reads"), None);
    assert!(
        !store
            .decide_agent("Paris", AgentState::Approved, "admin")
            .await
            .expect("runs")
    );
    assert_eq!(
        store
            .agent("paris")
            .await
            .expect("reads")
            .expect("found")
            .state,
        AgentState::Revoked
    );

    // One-time tokens: bound to an agent, or to any; spent once; expired ones refused.
    store
        .create_enrolment_token("t-lyon", Some("Lyon"), "admin", now_ms() + 60_000)
        .await
        .expect("token");
    store
        .create_enrolment_token("t-any", None, "admin", now_ms() + 60_000)
        .await
        .expect("token");
    store
        .create_enrolment_token("t-old", None, "admin", now_ms() - 1)
        .await
        .expect("token");
    assert_eq!(
        store
            .use_enrolment_token("t-lyon", "Nice")
            .await
            .expect("runs"),
        None,
        "a token bound to Lyon does not enrol Nice"
    );
    assert_eq!(
        store
            .use_enrolment_token("t-old", "Nice")
            .await
            .expect("runs"),
        None,
        "expired"
    );
    assert_eq!(
        store
            .use_enrolment_token("t-lyon", "lyon")
            .await
            .expect("runs")
            .as_deref(),
        Some("admin")
    );
    assert_eq!(
        store
            .use_enrolment_token("t-lyon", "lyon")
            .await
            .expect("runs"),
        None,
        "spent"
    );
    let e = store
        .enrol_agent("Lyon", "age1lyon", Some("admin"))
        .await
        .expect("enrols");
    assert!(matches!(e, Enrolment::Created(ref a) if a.state == AgentState::Approved));
    let names: Vec<String> = store
        .agents()
        .await
        .expect("lists")
        .into_iter()
        .map(|a| a.agent)
        .collect();
    assert_eq!(names, ["Lyon", "Paris"]);
}

both!(agents_enrolment, enrolment_approval_and_revocation);

async fn leases_retries_and_results_accepted_once(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    let a = store
        .queue_agent_task("Paris", "export", "HR", "{}")
        .await
        .expect("queues");
    let b = store
        .queue_agent_task("Paris", "schema", "HR", "{}")
        .await
        .expect("queues");
    store
        .queue_agent_task("Lyon", "export", "AD", "{}")
        .await
        .expect("queues");
    // Oldest first, only the agent's own.
    // The claimer asked a minute before the task was queued: the server's dispatch time runs
    // from the task's creation, not from the question.
    let t1 = store
        .claim_agent_task("paris", "L1", "agent Paris", 60_000, 2, now_ms() - 60_000)
        .await
        .expect("claims")
        .expect("one");
    assert_eq!(
        (t1.id, t1.attempts, t1.state.as_str()),
        (a, 1, task_state::LEASED)
    );
    assert!(t1.claimed_ms >= Some(t1.created_ms), "{t1:?}");
    assert!((0..10_000).contains(&t1.server_ms), "{t1:?}");
    let t2 = store
        .claim_agent_task("Paris", "L2", "agent Paris", 60_000, 2, now_ms())
        .await
        .expect("claims")
        .expect("one");
    assert_eq!(t2.id, b);
    assert!(
        store
            .claim_agent_task("Paris", "L3", "agent Paris", 60_000, 2, now_ms())
            .await
            .expect("claims")
            .is_none()
    );
    // A result is accepted once, from the lease that holds the task.
    assert!(
        !store
            .finish_agent_task(a, "L2", Ok("{}"))
            .await
            .expect("runs")
    );
    assert!(
        store
            .finish_agent_task(a, "L1", Ok("{\"rows\":1}"))
            .await
            .expect("runs")
    );
    assert!(
        !store
            .finish_agent_task(a, "L1", Ok("{}"))
            .await
            .expect("runs")
    );
    let done = store.agent_task(a).await.expect("reads").expect("found");
    assert_eq!(done.state, task_state::DONE);
    assert_eq!(done.result.as_deref(), Some("{\"rows\":1}"));

    // An agent that dies: its lease expires, the task is retried once, then Errored.
    assert!(store.renew_agent_lease(b, "L2", -1).await.expect("renews"));
    let retry = store
        .claim_agent_task("Paris", "L4", "agent Paris", -1, 2, now_ms())
        .await
        .expect("claims")
        .expect("the expired one again");
    assert_eq!((retry.id, retry.attempts), (b, 2));
    assert!(!store.agent_lease_holds(b, "L4").await.expect("reads"));
    assert!(
        store
            .claim_agent_task("Paris", "L5", "agent Paris", 60_000, 2, now_ms())
            .await
            .expect("claims")
            .is_none()
    );
    let errored = store.agent_task(b).await.expect("reads").expect("found");
    assert_eq!(errored.state, task_state::ERRORED);
    assert!(
        errored
            .error
            .as_deref()
            .unwrap_or("")
            .contains("lease expired"),
        "{errored:?}"
    );
    // The late answer of the dead lease is refused.
    assert!(
        !store
            .finish_agent_task(b, "L4", Ok("{}"))
            .await
            .expect("runs")
    );
}

both!(agents_queue, leases_retries_and_results_accepted_once);

/// An agent's error holding a NUL character (what a managed system said) made PostgreSQL
/// refuse the answer; it is kept with U+FFFD instead, on both stores.
async fn regression_an_agent_error_holding_a_nul_is_kept(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    let id = store
        .queue_agent_task("Paris", "export", "HR", "{}")
        .await
        .expect("queues");
    store
        .claim_agent_task("Paris", "L1", "agent Paris", 60_000, 2, now_ms())
        .await
        .expect("claims")
        .expect("one");
    assert!(
        store
            .finish_agent_task(id, "L1", Err("the server said: bad\0name"))
            .await
            .expect("the answer is kept")
    );
    let errored = store.agent_task(id).await.expect("reads").expect("found");
    assert_eq!(errored.state, task_state::ERRORED);
    assert_eq!(
        errored.error.as_deref(),
        Some("the server said: bad\u{FFFD}name")
    );
}

both!(
    agents_error_with_nul,
    regression_an_agent_error_holding_a_nul_is_kept
);

/// Many claimers at once on one store (as two servers would): every task is handed out once.
async fn concurrent_claims_hand_each_task_out_once(t: Target, _: &str) {
    let store = Store::open(&t.location).await.expect("opens");
    let mut queued = HashSet::new();
    for i in 0..100 {
        queued.insert(
            store
                .queue_agent_task("Local", "check", &format!("C{i}"), "{}")
                .await
                .expect("queues"),
        );
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut n = 0;
            while let Some(t) = store
                .claim_agent_task("Local", &format!("w{w}-{n}"), "test", 60_000, 2, now_ms())
                .await
                .expect("claims")
            {
                assert!(
                    store
                        .finish_agent_task(t.id, &format!("w{w}-{n}"), Ok("{}"))
                        .await
                        .expect("finishes")
                );
                got.push(t.id);
                n += 1;
            }
            got
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    assert_eq!(all.len(), 100, "each task once");
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), queued);
}

both!(
    agents_concurrent_claims,
    concurrent_claims_hand_each_task_out_once
);
