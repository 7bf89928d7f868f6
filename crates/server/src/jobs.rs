//! Jobs, provisioning orders and tickets: the API routes and the pages over
//! [`idlink_engine::jobs`], the store's orders and [`idlink_engine::tickets`].
//!
//! "Run now" starts [`Engine::run_job`] on the shared runtime, under the server's shutdown
//! token, and answers as soon as the run is recorded: the engine creates the run's row itself,
//! then writes the run's first log line; the handler waits (bounded) for that first line, or
//! for the run to be refused (already running: 409), and reads the run's id back from the store
//! (the job's lock is held by then, so the newest run of the job is this one). The run goes on
//! in the background; its log grows in the store and its report is saved when it ends.
//!
//! Operators and administrators may run jobs and close tickets; viewers only read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use idlink_engine::jobs::JobOptions;
// An order as the API shows it: the field names of `idlink orders --format json`.
use idlink_engine::orders::stored_json as order_json;
use idlink_engine::snapshots::show_time;
use idlink_engine::{Engine, EngineError};
use idlink_model::config::{Job, Task};
use idlink_packages::api::NoProgress;
use idlink_store::{JobRun, OrderFilter, OrderState, StoredOrder};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::ApiRouter;
use crate::auth::{Principal, User};
use crate::error::AppError;
use crate::state::AppState;
use crate::ui::{UiError, Viewer, page, render};

/// How long "Run now" waits for the run to be recorded before it gives up answering.
pub const START_WAIT: Duration = Duration::from_secs(10);
/// How long a stop waits, after its grace period, for job runs to end.
pub const STOP_WAIT: Duration = Duration::from_secs(30);
/// Orders listed when no `limit` is given.
pub const DEFAULT_ORDER_LIMIT: u32 = 200;
/// Runs listed in a job's history.
pub const HISTORY: u32 = 50;

/// The API routes of this module.
pub fn api_routes(r: ApiRouter) -> ApiRouter {
    r.add(Method::GET, "/api/jobs", get(list_jobs))
        .add(Method::GET, "/api/jobs/{job}/runs", get(job_history))
        .add(Method::POST, "/api/jobs/{job}/runs", post(start_job))
        .add(Method::GET, "/api/job-runs/{run}", get(get_run))
        .add(Method::GET, "/api/orders", get(list_orders))
        .add(Method::GET, "/api/orders/{order}", get(get_order))
        .add(Method::GET, "/api/tickets", get(list_tickets))
        .add(
            Method::POST,
            "/api/tickets/{ticket}/complete",
            post(complete_ticket),
        )
}

/// The pages of this module.
pub fn ui_routes() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(jobs_page))
        .route("/jobs/{job}", get(job_page))
        .route("/jobs/{job}/run", post(run_form))
        .route("/job-runs/{run}", get(run_page))
        .route("/orders", get(orders_page))
        .route("/tickets", get(tickets_page))
        .route("/tickets/{ticket}/complete", post(complete_form))
}

// ---------------------------------------------------------------------------------------------
// Views

/// What a task works on, in a few words.
fn task_target(t: &Task) -> String {
    let list = |v: &[idlink_model::config::Text]| {
        v.iter()
            .map(|x| x.value.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match t {
        Task::Export(x) => x
            .connection
            .as_ref()
            .map(|c| format!("connection {}", c.value))
            .unwrap_or_default(),
        Task::PrepareSynchronization(x) => {
            format!("connector {} ({:?})", x.connector.value, x.mode)
        }
        Task::Synchronize(x) => format!("connector {}", x.connector.value),
        Task::GenerateProvisioningOrders(x) => {
            if x.resource_types.is_empty() {
                x.connector
                    .as_ref()
                    .map(|c| format!("connector {}", c.value))
                    .unwrap_or_default()
            } else {
                format!("resource types {}", list(&x.resource_types))
            }
        }
        Task::Fulfill(x) => {
            if !x.resource_types.is_empty() {
                format!("resource types {}", list(&x.resource_types))
            } else if let Some(c) = &x.connection {
                format!("connection {}", c.value)
            } else if let Some(c) = &x.connector {
                format!("connector {}", c.value)
            } else {
                "every pending order".into()
            }
        }
    }
}

/// The job named `id` (exactly, else ignoring case), or 404.
fn find_job<'e>(engine: &'e Engine, id: &str) -> Result<&'e Job, AppError> {
    let jobs = &engine.checked().config.jobs;
    jobs.iter()
        .find(|j| j.id.value == id)
        .or_else(|| jobs.iter().find(|j| j.id.value.eq_ignore_ascii_case(id)))
        .ok_or_else(|| {
            let hint =
                idlink_model::diag::did_you_mean(id, jobs.iter().map(|j| j.id.value.as_str()))
                    .map(|s| format!("; did you mean '{s}'?"))
                    .unwrap_or_default();
            AppError::NotFound(format!(
                "job '{id}' is not declared in the configuration{hint}"
            ))
        })
}

/// Where the run is: `[i/n]` of its last task line.
fn progress_of(log: &str) -> Option<Value> {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split_once(" [").map(|(_, rest)| rest))?;
    let (pos, rest) = line.split_once(']')?;
    let (i, n) = pos.split_once('/')?;
    Some(json!({
        "task": i.parse::<u64>().ok()?,
        "of": n.parse::<u64>().ok()?,
        "name": rest.trim(),
    }))
}

/// A run without its log (lists), or with it and its report (one run).
fn run_json(r: &JobRun, full: bool) -> Value {
    let report: Option<Value> = r
        .report
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok());
    let mut out = json!({
        "id": r.id,
        "job": r.job,
        "state": r.state,
        "dryRun": r.dry_run,
        "startedAt": show_time(&r.started_at),
        "finishedAt": r.finished_at.as_ref().map(show_time),
        "url": format!("/api/job-runs/{}", r.id),
        "page": format!("/job-runs/{}", r.id),
    });
    if let Some(rep) = &report {
        out["duration"] = rep["duration"].clone();
        out["totals"] = rep["totals"].clone();
    }
    if full {
        out["log"] = json!(r.log);
        out["report"] = report.unwrap_or(Value::Null);
        if r.state == "Running" {
            out["progress"] = progress_of(&r.log).unwrap_or(Value::Null);
        }
    }
    out
}

/// One job of the configuration with its tasks and its last run.
async fn job_json(state: &AppState, engine: &Engine, j: &Job) -> Result<Value, AppError> {
    let config = &engine.checked().config;
    let tasks: Vec<Value> = match config.ordered_job_tasks(j) {
        Ok(tasks) => tasks
            .iter()
            .map(|t| {
                json!({
                    "kind": t.element_name(),
                    "name": idlink_engine::jobs::task_name(t),
                    "target": task_target(t),
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let last = state.store().job_runs(Some(&j.id.value), 1).await?;
    let (schedule, next_run) = crate::scheduler::schedule_view(
        j.crontab.as_ref().map(|c| c.value.as_str()),
        state.schedule(),
        chrono::Utc::now(),
    );
    Ok(json!({
        "id": j.id.value,
        "name": j.display_names.l1().unwrap_or(&j.id.value),
        "crontab": j.crontab.as_ref().map(|c| c.value.clone()),
        "schedule": schedule,
        "nextRun": next_run,
        "agent": j.agent.as_ref().map(|a| a.value.clone()),
        "tasks": tasks,
        "lastRun": last.first().map(|r| run_json(r, false)),
    }))
}

/// Every job of the running configuration.
pub async fn jobs_view(state: &AppState) -> Result<Vec<Value>, AppError> {
    let engine = state.engine()?;
    let mut out = Vec::new();
    for j in &engine.checked().config.jobs {
        out.push(job_json(state, &engine, j).await?);
    }
    Ok(out)
}

/// One job and its runs, newest first.
pub async fn history_view(state: &AppState, job: &str) -> Result<Value, AppError> {
    let engine = state.engine()?;
    let j = find_job(&engine, job)?;
    let mut out = job_json(state, &engine, j).await?;
    let runs = state.store().job_runs(Some(&j.id.value), HISTORY).await?;
    out["runs"] = json!(runs.iter().map(|r| run_json(r, false)).collect::<Vec<_>>());
    Ok(out)
}

/// One run with its log so far and, once it ended, its report.
pub async fn run_view(state: &AppState, run: &str) -> Result<Value, AppError> {
    let not_found = || AppError::NotFound(format!("there is no job run '{run}'"));
    let id: i64 = run.trim().parse().map_err(|_| not_found())?;
    let r = state.store().job_run(id).await?.ok_or_else(not_found)?;
    Ok(run_json(&r, true))
}

/// A ticket: its order, and what the person has to do.
fn ticket_json(o: &StoredOrder) -> Value {
    let mut out = order_json(o);
    out["todo"] = json!(
        serde_json::from_str::<idlink_packages::api::ProvisioningOrder>(&o.body)
            .map(|p| idlink_packages::manual::ticket_text(&p))
            .unwrap_or_else(|_| o.message.clone())
    );
    out
}

/// Which orders: the API's and the page's query.
#[derive(Debug, Default, Deserialize)]
pub struct OrdersQuery {
    #[serde(default)]
    pub state: String,
    #[serde(default, rename = "resourceType")]
    pub resource_type: String,
    #[serde(default)]
    pub limit: Option<String>,
}

/// The orders the query selects, newest first.
pub async fn orders_view(state: &AppState, q: &OrdersQuery) -> Result<Vec<Value>, AppError> {
    let mut filter = OrderFilter {
        limit: Some(DEFAULT_ORDER_LIMIT),
        ..OrderFilter::default()
    };
    if !q.state.trim().is_empty() {
        let s: OrderState = q.state.parse().map_err(AppError::BadRequest)?;
        filter.states.push(s);
    }
    if !q.resource_type.trim().is_empty() {
        filter
            .resource_types
            .push(q.resource_type.trim().to_string());
    }
    if let Some(l) = q.limit.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        let n: u32 = l.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            AppError::BadRequest(format!("limit '{l}' is not a positive whole number"))
        })?;
        filter.limit = Some(n);
    }
    let mut orders = state.store().orders(&filter).await?;
    orders.sort_by_key(|o| std::cmp::Reverse(o.id));
    Ok(orders.iter().map(order_json).collect())
}

async fn order_view(state: &AppState, id: &str) -> Result<Value, AppError> {
    let not_found = || AppError::NotFound(format!("there is no order '{id}'"));
    let n: i64 = id.trim().parse().map_err(|_| not_found())?;
    let o = state.store().order(n).await?.ok_or_else(not_found)?;
    Ok(order_json(&o))
}

/// The open tickets, or every ticket with `all`; oldest first.
pub async fn tickets_view(state: &AppState, all: bool) -> Result<Vec<Value>, AppError> {
    let engine = state.engine()?;
    let list = idlink_engine::tickets::list(&engine, state.store(), all).await?;
    Ok(list.iter().map(ticket_json).collect())
}

// ---------------------------------------------------------------------------------------------
// Operations

/// "Run now": starts a run of `job` in the background and returns its id once it is recorded.
/// Refused (409) while the job runs already. Audited.
pub async fn start_run(
    state: &AppState,
    p: &Principal,
    job: &str,
    dry_run: bool,
) -> Result<Value, AppError> {
    p.require_operator("running a job")?;
    let engine = state.engine()?;
    let job = find_job(&engine, job)?.id.value.clone();
    let run = launch(state, engine, &job, dry_run).await?;
    state
        .store()
        .audit(
            &p.name,
            "run-job",
            &job,
            &format!(
                "started run {}{}",
                run.id,
                if dry_run { " (dry run)" } else { "" }
            ),
        )
        .await?;
    Ok(json!({
        "run": run.id,
        "job": job,
        "dryRun": dry_run,
        "state": run.state,
        "url": format!("/api/job-runs/{}", run.id),
        "page": format!("/job-runs/{}", run.id),
    }))
}

/// Starts a run of `job` (its exact identifier in `engine`'s configuration) on the shared
/// runtime, under the server's shutdown token and background guard, and gives back its row
/// once the run is recorded; or the engine's refusal (the job runs already, ...). The run
/// goes on in the background. "Run now" and the scheduler both start runs through this.
pub async fn launch(
    state: &AppState,
    engine: Engine,
    job: &str,
    dry_run: bool,
) -> Result<JobRun, AppError> {
    type Started = tokio::sync::oneshot::Sender<Result<(), EngineError>>;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started: Arc<Mutex<Option<Started>>> = Arc::new(Mutex::new(Some(tx)));
    let signal = move |s: &Arc<Mutex<Option<Started>>>, r: Result<(), EngineError>| {
        let sender = match s.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(tx) = sender {
            let _ = tx.send(r);
        }
    };
    let store = state.store().clone();
    let cancel = state.shutdown();
    let running = state.background_guard().await;
    // Connections on remote agents are reached through the queue.
    let agents: Arc<dyn idlink_engine::agents::RemoteAgents> =
        Arc::new(crate::agents::Remote::new(state.clone()));
    let for_task = Arc::clone(&started);
    let name = job.to_string();
    tokio::spawn(async move {
        let _running = running;
        let on_line = Arc::clone(&for_task);
        // The engine writes the run's row, then its first line: from then on the run exists.
        let log = move |_: &str| signal(&on_line, Ok(()));
        let options = JobOptions {
            dry_run,
            agents: Some(agents),
        };
        let result = engine
            .run_job(&store, &name, &options, Arc::new(NoProgress), &log, &cancel)
            .await;
        match result {
            Ok(report) => {
                tracing::info!(job = %name, run = report.run, state = report.state, "job run ended");
            }
            Err(e) => {
                tracing::warn!(job = %name, error = %e, "job run did not complete");
                signal(&for_task, Err(e));
            }
        }
    });
    let outcome = tokio::time::timeout(START_WAIT, rx).await;
    match outcome {
        Ok(Ok(Ok(()))) => state
            .store()
            .job_runs(Some(job), 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AppError::Internal(format!("the run of job '{job}' is not recorded"))),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(_)) => Err(AppError::Internal(format!(
            "the run of job '{job}' ended before it was recorded"
        ))),
        Err(_) => Err(AppError::Internal(format!(
            "the run of job '{job}' was not recorded within {} s",
            START_WAIT.as_secs()
        ))),
    }
}

/// At start: runs left `Running` by a process that ended (killed, or stopped before they
/// did) become `Interrupted`, unless their job's lock shows a run under way elsewhere.
pub async fn interrupt_stale_runs(state: &AppState) {
    let runs = match state.store().job_runs(None, 1000).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the job runs");
            return;
        }
    };
    let mut jobs: Vec<String> = runs
        .into_iter()
        .filter(|r| r.state == "Running")
        .map(|r| r.job)
        .collect();
    jobs.sort();
    jobs.dedup();
    for job in jobs {
        let Ok(lock) = state
            .store()
            .lock_connector(&format!("job:{job}"), "mark interrupted runs")
            .await
        else {
            continue;
        };
        match state.store().interrupt_stale_job_runs(&job).await {
            Ok(n) if n > 0 => {
                tracing::warn!(job = %job, runs = n, "job runs left running by an earlier process are marked Interrupted");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job = %job, error = %e, "cannot mark interrupted job runs"),
        }
        let _ = lock.release().await;
    }
}

/// Closes ticket `id`: done, or failed with `error`. Audited (the reason is the operator's
/// words, never a setting).
pub async fn close_ticket(
    state: &AppState,
    p: &Principal,
    id: &str,
    error: Option<&str>,
) -> Result<Value, AppError> {
    p.require_operator("closing a ticket")?;
    let engine = state.engine()?;
    let not_found = || AppError::NotFound(format!("there is no ticket '{id}'"));
    let n: i64 = id.trim().parse().map_err(|_| not_found())?;
    if state.store().order(n).await?.is_none() {
        return Err(not_found());
    }
    if error.is_some_and(|e| e.trim().is_empty()) {
        return Err(AppError::BadRequest(
            "a failed ticket needs a reason: say why it could not be done (\"error\")".into(),
        ));
    }
    let new_state = idlink_engine::tickets::complete(&engine, state.store(), n, error).await?;
    state
        .store()
        .audit(
            &p.name,
            "close-ticket",
            &format!("#{n}"),
            &match error {
                Some(e) => format!("{new_state}: {}", e.trim()),
                None => new_state.to_string(),
            },
        )
        .await?;
    let o = state
        .store()
        .order(n)
        .await?
        .ok_or_else(|| AppError::Internal(format!("ticket #{n} vanished")))?;
    Ok(ticket_json(&o))
}

// ---------------------------------------------------------------------------------------------
// API handlers

async fn list_jobs(State(state): State<AppState>, _: User) -> Result<Json<Value>, AppError> {
    Ok(Json(json!(jobs_view(&state).await?)))
}

async fn job_history(
    State(state): State<AppState>,
    _: User,
    Path(job): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(history_view(&state, &job).await?["runs"].take()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewRun {
    #[serde(default)]
    pub dry_run: bool,
}

async fn start_job(
    State(state): State<AppState>,
    User(p): User,
    Path(job): Path<String>,
    body: Option<Json<NewRun>>,
) -> Result<Response, AppError> {
    let dry_run = body.is_some_and(|Json(b)| b.dry_run);
    let out = start_run(&state, &p, &job, dry_run).await?;
    let location = out["url"].as_str().unwrap_or_default().to_string();
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        Json(out),
    )
        .into_response())
}

async fn get_run(
    State(state): State<AppState>,
    _: User,
    Path(run): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(run_view(&state, &run).await?))
}

async fn list_orders(
    State(state): State<AppState>,
    _: User,
    Query(q): Query<OrdersQuery>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(json!(orders_view(&state, &q).await?)))
}

async fn get_order(
    State(state): State<AppState>,
    _: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(order_view(&state, &id).await?))
}

#[derive(Debug, Default, Deserialize)]
pub struct TicketsQuery {
    #[serde(default)]
    pub all: Option<String>,
}

impl TicketsQuery {
    fn all(&self) -> bool {
        self.all
            .as_deref()
            .is_some_and(|a| matches!(a.trim(), "true" | "1" | "yes" | "on"))
    }
}

async fn list_tickets(
    State(state): State<AppState>,
    _: User,
    Query(q): Query<TicketsQuery>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(json!(tickets_view(&state, q.all()).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseTicket {
    #[serde(default)]
    pub error: Option<String>,
}

async fn complete_ticket(
    State(state): State<AppState>,
    User(p): User,
    Path(id): Path<String>,
    body: Option<Json<CloseTicket>>,
) -> Result<Json<Value>, AppError> {
    let error = body.and_then(|Json(b)| b.error);
    Ok(Json(close_ticket(&state, &p, &id, error.as_deref()).await?))
}

// ---------------------------------------------------------------------------------------------
// Pages

async fn jobs_page_with(
    state: &AppState,
    p: &Principal,
    notice: Option<Value>,
) -> Result<Html<String>, UiError> {
    let jobs = jobs_view(state).await?;
    render(
        state,
        "jobs.html",
        page(state, p, "Jobs", json!({ "jobs": jobs, "notice": notice })),
    )
}

async fn jobs_page(
    State(state): State<AppState>,
    Viewer(p): Viewer,
) -> Result<Html<String>, UiError> {
    jobs_page_with(&state, &p, None).await
}

async fn job_page(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(job): Path<String>,
) -> Result<Html<String>, UiError> {
    let detail = history_view(&state, &job).await?;
    let title = format!("Job {}", detail["name"].as_str().unwrap_or(&job));
    render(
        &state,
        "job.html",
        page(&state, &p, &title, json!({ "job": detail })),
    )
}

#[derive(Debug, Default, Deserialize)]
struct RunForm {
    #[serde(default)]
    dry_run: Option<String>,
}

/// The Run now / Dry run buttons: to the run's page once it started, else the jobs page with
/// why not.
async fn run_form(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(job): Path<String>,
    Form(form): Form<RunForm>,
) -> Result<Response, UiError> {
    let dry_run = form.dry_run.as_deref().is_some_and(|v| !v.is_empty());
    match start_run(&state, &p, &job, dry_run).await {
        Ok(out) => Ok(Redirect::to(out["page"].as_str().unwrap_or("/jobs")).into_response()),
        Err(e @ AppError::Engine { .. }) => {
            let notice = json!({ "ok": false, "text": format!("{job}: {}", e.public_message()) });
            let html = jobs_page_with(&state, &p, Some(notice)).await?;
            Ok((e.status(), html).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn run_page(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(run): Path<String>,
) -> Result<Html<String>, UiError> {
    let r = run_view(&state, &run).await?;
    let title = format!(
        "Run {} of {}",
        r["id"],
        r["job"].as_str().unwrap_or_default()
    );
    render(
        &state,
        "job_run.html",
        page(&state, &p, &title, json!({ "run": r })),
    )
}

async fn orders_page(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Query(q): Query<OrdersQuery>,
) -> Result<Response, UiError> {
    let resource_types: Vec<String> = state
        .engine()
        .map(|e| {
            e.checked()
                .config
                .resource_types
                .iter()
                .map(|r| r.id.value.clone())
                .collect()
        })
        .unwrap_or_default();
    let (orders, notice, status) = match orders_view(&state, &q).await {
        Ok(o) => (o, None, StatusCode::OK),
        Err(e @ AppError::BadRequest(_)) => (
            Vec::new(),
            Some(json!({ "ok": false, "text": e.public_message() })),
            StatusCode::BAD_REQUEST,
        ),
        Err(e) => return Err(e.into()),
    };
    let html = render(
        &state,
        "orders.html",
        page(
            &state,
            &p,
            "Orders",
            json!({
                "orders": orders,
                "states": OrderState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "resourceTypes": resource_types,
                "state": q.state.trim(),
                "resourceType": q.resource_type.trim(),
                "limit": q.limit.as_deref().unwrap_or_default().trim(),
                "notice": notice,
            }),
        ),
    )?;
    Ok((status, html).into_response())
}

async fn tickets_page_with(
    state: &AppState,
    p: &Principal,
    all: bool,
    notice: Option<Value>,
) -> Result<Html<String>, UiError> {
    let tickets = tickets_view(state, all).await?;
    render(
        state,
        "tickets.html",
        page(
            state,
            p,
            "Tickets",
            json!({ "tickets": tickets, "all": all, "notice": notice }),
        ),
    )
}

async fn tickets_page(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Query(q): Query<TicketsQuery>,
) -> Result<Html<String>, UiError> {
    tickets_page_with(&state, &p, q.all(), None).await
}

#[derive(Debug, Default, Deserialize)]
struct CloseForm {
    /// `done` or `failed`.
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    reason: String,
}

async fn complete_form(
    State(state): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
    Form(form): Form<CloseForm>,
) -> Result<Response, UiError> {
    let error = (form.outcome == "failed").then_some(form.reason.as_str());
    match close_ticket(&state, &p, &id, error).await {
        Ok(t) => {
            let notice = json!({ "ok": true, "text": format!("Ticket #{} closed: {}.", t["id"], t["state"].as_str().unwrap_or_default()) });
            Ok(tickets_page_with(&state, &p, false, Some(notice))
                .await?
                .into_response())
        }
        Err(e @ (AppError::Engine { .. } | AppError::BadRequest(_) | AppError::NotFound(_))) => {
            let notice =
                json!({ "ok": false, "text": format!("Ticket #{id}: {}", e.public_message()) });
            let html = tickets_page_with(&state, &p, false, Some(notice)).await?;
            Ok((e.status(), html).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_reads_the_last_task_line() {
        let log = "10:00:00 job 'J': 3 tasks\n10:00:00 [1/3] Export HR (ExportTask)\n10:00:01   exported\n10:00:01 [2/3] Sync HR (SynchronizeTask)\n";
        let p = super::progress_of(log).expect("progress");
        assert_eq!(p["task"], 2);
        assert_eq!(p["of"], 3);
        assert_eq!(p["name"], "Sync HR (SynchronizeTask)");
        assert!(super::progress_of("10:00:00 job 'J': 3 tasks\n").is_none());
    }
}
