//! The embedded agent: runs, in this process, the tasks queued for this server's own agent
//! (by the API, or by another server on the same store). Every server sharing a PostgreSQL
//! store runs one; the store's claim (`FOR UPDATE SKIP LOCKED`) hands each task to one of them.
//! A server stopped mid-task loses its lease like any agent: another server takes the task up
//! when the lease expires.

use std::sync::Arc;
use std::time::Duration;

use idlink_engine::{CancellationToken, ExportOptions};
use serde_json::{Value, json};

use super::protocol::{ExportPayload, kind};
use super::{MAX_ATTEMPTS, POLL};
use crate::auth::random_token;
use crate::state::AppState;

/// Tasks run at once by one server's embedded agent.
pub const CONCURRENCY: usize = 4;

/// Pulls and runs the embedded agent's tasks until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    let local = state.agent_options().local_agent.clone();
    let notify = state.hub().work_for(&local);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let lease_ms = i64::try_from(state.agent_options().lease.as_millis()).unwrap_or(30_000);
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let lease = random_token();
        let holder = state.hub().instance.clone();
        let claimed = state
            .store()
            .claim_agent_task(
                &local,
                &lease,
                &holder,
                lease_ms,
                MAX_ATTEMPTS,
                idlink_store::agents::now_ms(),
            )
            .await;
        match claimed {
            Ok(Some(task)) => {
                let state = state.clone();
                let guard = state.background_guard().await;
                tokio::spawn(async move {
                    let _permit = permit;
                    let _running = guard;
                    run_one(&state, task, lease, lease_ms).await;
                });
                continue;
            }
            Ok(None) => drop(permit),
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "the embedded agent cannot read its queue");
            }
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(POLL) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Runs one task, renewing its lease meanwhile, and records its answer.
async fn run_one(state: &AppState, task: idlink_store::AgentTask, lease: String, lease_ms: i64) {
    let renew_every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(10_000).max(50));
    let done = CancellationToken::new();
    let renewer = {
        let (store, done, lease, id) =
            (state.store().clone(), done.clone(), lease.clone(), task.id);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = done.cancelled() => return,
                    () = tokio::time::sleep(renew_every) => {
                        if !matches!(store.renew_agent_lease(id, &lease, lease_ms).await, Ok(true)) {
                            return;
                        }
                    }
                }
            }
        })
    };
    let outcome = execute(state, &task).await;
    done.cancel();
    let _ = renewer.await;
    let stored = match &outcome {
        Ok(v) => {
            state
                .store()
                .finish_agent_task(task.id, &lease, Ok(&v.to_string()))
                .await
        }
        Err(e) => {
            state
                .store()
                .finish_agent_task(task.id, &lease, Err(e))
                .await
        }
    };
    match stored {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            task = task.id,
            "the task's lease was lost before its end: its result was not recorded"
        ),
        Err(e) => tracing::warn!(task = task.id, error = %e, "cannot record a task's result"),
    }
    state.hub().done.notify_waiters();
}

/// Does the work of `task` here.
async fn execute(state: &AppState, task: &idlink_store::AgentTask) -> Result<Value, String> {
    let engine = state.engine().map_err(|e| e.to_string())?;
    let cancel = state.shutdown();
    match task.kind.as_str() {
        kind::EXPORT => {
            let payload: ExportPayload = serde_json::from_str(&task.payload).unwrap_or_default();
            let opened = engine.open(&task.connection).map_err(|e| e.to_string())?;
            let options = ExportOptions {
                ignore_cookies: payload.ignore_cookies,
                ..ExportOptions::default()
            };
            match super::export_when_free(&opened, &options, &cancel).await {
                Ok(r) => {
                    let _ = state
                        .store()
                        .audit(
                            &state.hub().instance,
                            "export",
                            opened.id(),
                            &format!("{} rows (task {})", r.rows(), task.id),
                        )
                        .await;
                    serde_json::to_value(&r).map_err(|e| e.to_string())
                }
                Err(e) => {
                    engine.record_failed_export(opened.id(), &e, &e.to_string());
                    Err(opened.redact(&e.to_string()))
                }
            }
        }
        kind::SCHEMA => {
            let r = engine
                .refresh_schema_into(state.store(), &task.connection)
                .await
                .map_err(|e| e.to_string())?;
            state.schemas().clear();
            match r.outcome {
                idlink_engine::snapshots::Refresh::Failed { message, .. } => Err(message),
                _ => Ok(json!({ "connection": r.connection, "refreshed": true })),
            }
        }
        kind::CHECK => {
            let opened = engine.open(&task.connection).map_err(|e| e.to_string())?;
            Ok(super::check_answer(&opened).await)
        }
        kind::FULFILL => {
            let payload = serde_json::from_str(&task.payload)
                .map_err(|e| format!("the orders cannot be read: {e}"))?;
            let opened = engine.open(&task.connection).map_err(|e| e.to_string())?;
            super::fulfill_answer(&opened, payload).await
        }
        other => Err(format!("'{other}' is not a kind of agent work")),
    }
}
