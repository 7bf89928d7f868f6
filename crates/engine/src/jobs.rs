//! Jobs (SPEC §2.1): a job's tasks run in order on the embedded agent: Export,
//! PrepareSynchronization + Synchronize, GenerateProvisioningOrders, Fulfill. The first failure
//! stops the job unless the task says `ContinueOnError`. Each run is recorded in the store with
//! its log (appended as it goes, so the server shows it live) and its report; two runs of one
//! job never overlap (the job's lock, as connectors have theirs).
//!
//! A dry run changes nothing: exports and synchronizations are listed, not run; provisioning
//! computes the orders the store's current state gives without storing them; fulfill lists what
//! each package would send for the pending orders.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idlink_model::config::{SynchronizationMode, Task};
use idlink_packages::api::Progress;
use idlink_store::Store;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::dispatch::DispatchOptions;
use crate::export::ExportOptions;
use crate::provision::ProvisionOptions;
use crate::sync::{SyncMode, SyncOptions};
use crate::{Engine, EngineError};

/// How a job runs.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    pub dry_run: bool,
    /// Carries the work of connections on other agents (the server's queue); without it,
    /// every connection's work runs in this process.
    pub agents: Option<Arc<dyn crate::agents::RemoteAgents>>,
}

/// One task's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    /// `ExportTask`, `SynchronizeTask`, ...
    pub kind: &'static str,
    /// The task's display name (or identifier, or kind).
    pub name: String,
    /// `Succeeded`, `Failed`, `Skipped` (after a failure) or `Planned` (dry run).
    pub status: &'static str,
    /// What it did, in one line.
    pub summary: String,
    pub error: Option<String>,
    #[serde(serialize_with = "crate::secs")]
    pub duration: Duration,
    /// The task's own report (export, sync, provisioning, fulfill), as JSON.
    pub details: Option<serde_json::Value>,
}

/// Totals over a run's tasks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobTotals {
    pub exported_rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub orders_generated: u64,
    pub orders_executed: u64,
    pub orders_errored: u64,
    pub orders_transmitted: u64,
    pub orders_verified: u64,
}

/// A job run's report, saved in the store.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub run: i64,
    pub dry_run: bool,
    /// `Succeeded`, `Failed`, or `Interrupted` (cancelled before its last task).
    pub state: &'static str,
    pub tasks: Vec<TaskReport>,
    pub totals: JobTotals,
    #[serde(serialize_with = "crate::secs")]
    pub duration: Duration,
}

/// Receives a job's log lines as they come (the CLI prints them).
pub trait JobLog: Send + Sync {
    fn line(&self, text: &str);
}

impl<F: Fn(&str) + Send + Sync> JobLog for F {
    fn line(&self, text: &str) {
        self(text)
    }
}

struct Log<'a> {
    store: &'a Store,
    run: i64,
    sink: &'a dyn JobLog,
}

impl Log<'_> {
    async fn line(&self, text: &str) {
        self.sink.line(text);
        let stamped = format!("{} {text}\n", chrono::Utc::now().format("%H:%M:%S"));
        if let Err(e) = self.store.append_job_log(self.run, &stamped).await {
            tracing::warn!("cannot write the job log: {e}");
        }
    }
}

/// An export's outcome in one line, with its notes (a stray quote that swallowed rows): a
/// job's report is where a scheduled export's user looks.
fn export_summary(r: &crate::ExportReport, agent: Option<&str>) -> String {
    let mut line = format!(
        "exported {}: {} rows in {} table{}{}",
        r.connection,
        r.rows(),
        r.tables.len(),
        if r.tables.len() == 1 { "" } else { "s" },
        agent
            .map(|a| format!(" on agent '{a}'"))
            .unwrap_or_default()
    );
    for note in &r.notes {
        line.push_str("; note: ");
        line.push_str(note);
    }
    line
}

/// A task's display name (`DisplayName_L1`…), else its identifier, else its element name: how
/// reports and the server name it.
pub fn task_name(t: &Task) -> String {
    let c = t.common();
    c.display_names
        .0
        .iter()
        .flatten()
        .next()
        .cloned()
        .or_else(|| c.id.as_ref().map(|i| i.value.clone()))
        .unwrap_or_else(|| t.element_name().to_string())
}

impl Engine {
    /// Runs job `job` to its end (or its first failure) and returns its report, also saved in
    /// the store. `Err` when the job cannot start (unknown, already running, the store).
    pub async fn run_job(
        &self,
        store: &Store,
        job: &str,
        options: &JobOptions,
        progress: Arc<dyn Progress>,
        log: &dyn JobLog,
        cancel: &CancellationToken,
    ) -> Result<JobReport, EngineError> {
        let config = &self.checked().config;
        let Some(j) = config.jobs.iter().find(|j| j.id.value == job) else {
            let names = config.jobs.iter().map(|j| j.id.value.as_str());
            let hint = idlink_model::diag::did_you_mean(job, names)
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            return Err(EngineError::Data(format!(
                "job '{job}' is not declared in the configuration{hint}"
            )));
        };
        let tasks = config
            .ordered_job_tasks(j)
            .map_err(|e| EngineError::Data(e.to_string()))?;
        let lock = store
            .lock_connector(&format!("job:{job}"), "run-job")
            .await
            .map_err(|e| match e {
                idlink_store::StoreError::Locked { .. } => EngineError::Data(format!(
                    "job '{job}' is already running; two runs of one job never overlap: wait for it to end ({e})"
                )),
                other => other.into(),
            })?;
        let result = self
            .run_job_locked(
                store,
                j.id.value.as_str(),
                &tasks,
                options,
                progress,
                log,
                cancel,
            )
            .await;
        let _ = lock.release().await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_job_locked(
        &self,
        store: &Store,
        job: &str,
        tasks: &[&Task],
        options: &JobOptions,
        progress: Arc<dyn Progress>,
        log: &dyn JobLog,
        cancel: &CancellationToken,
    ) -> Result<JobReport, EngineError> {
        let started = Instant::now();
        store.interrupt_stale_job_runs(job).await?;
        let run = store.start_job_run(job, options.dry_run).await?;
        let log = Log {
            store,
            run,
            sink: log,
        };
        log.line(&format!(
            "job '{job}': {} task{}{}",
            tasks.len(),
            if tasks.len() == 1 { "" } else { "s" },
            if options.dry_run {
                " (dry run: nothing changes)"
            } else {
                ""
            }
        ))
        .await;
        let mut reports = Vec::with_capacity(tasks.len());
        let mut totals = JobTotals::default();
        let mut modes: HashMap<String, SynchronizationMode> = HashMap::new();
        let mut failed = false;
        for (i, task) in tasks.iter().enumerate() {
            let name = task_name(task);
            if failed || cancel.is_cancelled() {
                reports.push(TaskReport {
                    kind: task.element_name(),
                    name,
                    status: "Skipped",
                    summary: if cancel.is_cancelled() {
                        "not run: the job was interrupted".into()
                    } else {
                        "not run: an earlier task failed".into()
                    },
                    error: None,
                    duration: Duration::ZERO,
                    details: None,
                });
                continue;
            }
            log.line(&format!(
                "[{}/{}] {name} ({})",
                i + 1,
                tasks.len(),
                task.element_name()
            ))
            .await;
            let t0 = Instant::now();
            let outcome = self
                .run_task(
                    store,
                    task,
                    options,
                    &progress,
                    cancel,
                    &mut modes,
                    &mut totals,
                )
                .await;
            let (status, summary, error, details) = match outcome {
                Ok(done) => (
                    if options.dry_run && done.planned {
                        "Planned"
                    } else if done.failed {
                        "Failed"
                    } else {
                        "Succeeded"
                    },
                    done.summary,
                    done.error,
                    done.details,
                ),
                Err(e) => ("Failed", String::new(), Some(e.to_string()), None),
            };
            match &error {
                Some(e) => log.line(&format!("  failed: {e}")).await,
                None => log.line(&format!("  {summary}")).await,
            }
            if status == "Failed" {
                if continue_on_error(task) {
                    log.line("  ContinueOnError: the job goes on").await;
                } else {
                    failed = true;
                }
            }
            reports.push(TaskReport {
                kind: task.element_name(),
                name,
                status,
                summary,
                error,
                duration: t0.elapsed(),
                details,
            });
        }
        let any_failed = reports.iter().any(|r| r.status == "Failed");
        let interrupted = reports
            .iter()
            .any(|r| r.status == "Skipped" && r.summary.contains("interrupted"));
        let report = JobReport {
            job: job.to_string(),
            run,
            dry_run: options.dry_run,
            state: if any_failed {
                "Failed"
            } else if interrupted {
                "Interrupted"
            } else {
                "Succeeded"
            },
            tasks: reports,
            totals,
            duration: started.elapsed(),
        };
        log.line(&format!(
            "job '{job}' {} in {:.2} s",
            report.state.to_lowercase(),
            report.duration.as_secs_f64()
        ))
        .await;
        let json =
            serde_json::to_string(&report).map_err(|e| EngineError::Contract(e.to_string()))?;
        store.finish_job_run(run, report.state, &json).await?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_task(
        &self,
        store: &Store,
        task: &Task,
        options: &JobOptions,
        progress: &Arc<dyn Progress>,
        cancel: &CancellationToken,
        modes: &mut HashMap<String, SynchronizationMode>,
        totals: &mut JobTotals,
    ) -> Result<Done, EngineError> {
        let config = &self.checked().config;
        let dry = options.dry_run;
        match task {
            Task::Export(t) => {
                let Some(connection) = &t.connection else {
                    return Err(EngineError::Data(
                        "the export task names no Connection".into(),
                    ));
                };
                let remote = options.agents.as_ref().and_then(|a| {
                    let task_agent = task.common().agent.as_ref().map(|x| x.value.as_str());
                    self.remote_agent_of(&connection.value, task_agent, a.local_agent())
                        .map(|agent| (a, agent))
                });
                if dry {
                    return Ok(Done::planned(format!(
                        "would export connection '{}'{}",
                        connection.value,
                        remote
                            .as_ref()
                            .map(|(_, a)| format!(" on agent '{a}'"))
                            .unwrap_or_default()
                    )));
                }
                let opts = ExportOptions {
                    ignore_cookies: t.ignore_cookie_file,
                    ..ExportOptions::default()
                };
                if let Some((agents, agent)) = remote {
                    return match agents
                        .export(&agent, &connection.value, &opts, cancel)
                        .await
                    {
                        Ok(r) => {
                            totals.exported_rows += r.rows();
                            Ok(Done::ok(
                                export_summary(&r, Some(&agent)),
                                serde_json::to_value(&r).ok(),
                            ))
                        }
                        Err(e) => Ok(Done::failed(e.to_string())),
                    };
                }
                let opened = self.open(&connection.value)?;
                match opened.export(&opts, progress.clone(), cancel).await {
                    Ok(r) => {
                        totals.exported_rows += r.rows();
                        Ok(Done::ok(
                            export_summary(&r, None),
                            serde_json::to_value(&r).ok(),
                        ))
                    }
                    Err(e) => {
                        self.record_failed_export(opened.id(), &e, &e.to_string());
                        Ok(Done::failed(opened.redact(&e.to_string())))
                    }
                }
            }
            Task::PrepareSynchronization(t) => {
                modes.insert(t.connector.value.clone(), t.mode);
                Ok(Done::ok(
                    format!(
                        "connector '{}' prepared for a {:?} synchronization",
                        t.connector.value, t.mode
                    ),
                    None,
                ))
            }
            Task::Synchronize(t) => {
                let connector = t.connector.value.as_str();
                let written = modes
                    .get(connector)
                    .copied()
                    .unwrap_or(SynchronizationMode::Complete);
                let mut mode = match written {
                    SynchronizationMode::Initial => SyncMode::Initial,
                    SynchronizationMode::Complete => SyncMode::Complete,
                    SynchronizationMode::Incremental => SyncMode::Incremental,
                };
                let mut note = String::new();
                if mode == SyncMode::Complete && self.connector_is_empty(store, connector).await? {
                    // A first load: nothing to compare with, so thresholds would block it.
                    mode = SyncMode::Initial;
                    note = " (the store held nothing for it: first load as Initial)".into();
                }
                if dry {
                    return Ok(Done::planned(format!(
                        "would synchronize connector '{connector}' ({mode:?}){note}"
                    )));
                }
                let sync_options = SyncOptions {
                    mode,
                    force: t.force_synchronization,
                };
                match self
                    .sync(store, connector, &sync_options, &**progress, cancel)
                    .await
                {
                    Ok(r) => {
                        let (ins, upd, del) = r.mappings.iter().fold((0, 0, 0), |(i, u, d), m| {
                            (
                                i + m.counts.inserted,
                                u + m.counts.updated,
                                d + m.counts.deleted,
                            )
                        });
                        totals.inserted += ins;
                        totals.updated += upd;
                        totals.deleted += del;
                        let verified = r.verification.as_ref().map_or(0, |v| v.verified);
                        totals.orders_verified += verified;
                        let mut summary = format!(
                            "synchronized {connector} ({mode:?}){note}: {ins} inserted, {upd} updated, {del} deleted"
                        );
                        if let Some(v) = &r.verification {
                            summary.push_str(&format!(
                                "; {} order{} verified, {} waiting",
                                v.verified,
                                if v.verified == 1 { "" } else { "s" },
                                v.waiting
                            ));
                        }
                        Ok(Done::ok(summary, serde_json::to_value(&r).ok()))
                    }
                    Err(e) => Ok(Done::failed(e.to_string())),
                }
            }
            Task::GenerateProvisioningOrders(t) => {
                let mut resource_types: Vec<String> =
                    t.resource_types.iter().map(|r| r.value.clone()).collect();
                if resource_types.is_empty()
                    && let Some(connector) = &t.connector
                {
                    // The resource types whose targets the connector's mappings hold.
                    resource_types =
                        crate::provision::resource_types_of_connector(config, &connector.value)
                            .map(|rt| rt.id.value.clone())
                            .collect();
                    if resource_types.is_empty() {
                        return Ok(Done::ok(
                            format!("connector '{}' has no resource type", connector.value),
                            None,
                        ));
                    }
                }
                let popts = ProvisionOptions {
                    resource_types,
                    dry_run: dry,
                    force: false,
                };
                match self.provision(store, &popts, &**progress).await {
                    Ok(r) => {
                        let n = r.orders.len() as u64;
                        if !dry {
                            totals.orders_generated += n;
                        }
                        let (a, m, d) = r.resource_types.iter().fold((0, 0, 0), |(a, m, d), x| {
                            (a + x.added, m + x.modified, d + x.deleted)
                        });
                        let mut summary = format!(
                            "{} {n} order{}: {a} added, {m} modified, {d} deleted",
                            if dry { "would generate" } else { "generated" },
                            if n == 1 { "" } else { "s" }
                        );
                        let errors = r.errors();
                        let waiting: u64 = r.resource_types.iter().map(|x| x.waiting).sum();
                        if waiting > 0 {
                            summary.push_str(&format!("; {waiting} owners wait for an open order"));
                        }
                        let details = serde_json::to_value(&r).ok();
                        if errors > 0 {
                            let first = r
                                .resource_types
                                .iter()
                                .flat_map(|x| x.errors.iter())
                                .next()
                                .cloned()
                                .unwrap_or_default();
                            let mut done = Done::failed(format!(
                                "{errors} rule error{}: {first}",
                                if errors == 1 { "" } else { "s" }
                            ));
                            done.summary = summary;
                            done.details = details;
                            return Ok(done);
                        }
                        Ok(Done::ok(summary, details))
                    }
                    Err(e) => Ok(Done::failed(e.to_string())),
                }
            }
            Task::Fulfill(t) => {
                let mut runs: Vec<DispatchOptions> = Vec::new();
                let base = DispatchOptions {
                    batch_size: t.batch_size,
                    dry_run: dry,
                    agents: options.agents.clone(),
                    ..DispatchOptions::default()
                };
                if !t.resource_types.is_empty() {
                    runs.push(DispatchOptions {
                        resource_types: t.resource_types.iter().map(|r| r.value.clone()).collect(),
                        ..base.clone()
                    });
                } else if let Some(c) = &t.connection {
                    runs.push(DispatchOptions {
                        connection: Some(c.value.clone()),
                        ..base.clone()
                    });
                } else if let Some(connector) = &t.connector {
                    for c in config
                        .connections
                        .iter()
                        .filter(|c| c.connector.value == connector.value)
                    {
                        let fulfills = self
                            .registry()
                            .get_static(&c.package.value)
                            .is_some_and(|p| p.capabilities.fulfill);
                        if fulfills {
                            runs.push(DispatchOptions {
                                connection: Some(c.id.value.clone()),
                                ..base.clone()
                            });
                        }
                    }
                } else {
                    runs.push(base.clone());
                }
                let (mut executed, mut errored, mut transmitted, mut orders) = (0, 0, 0, 0);
                let mut failures = Vec::new();
                let mut details = Vec::new();
                for opts in runs {
                    let r = self.fulfill_pending(store, &opts, progress.clone()).await?;
                    for c in &r.connections {
                        orders += c.orders;
                        executed += c.executed;
                        errored += c.errored + c.not_sent;
                        transmitted += c.transmitted;
                        if let Some(f) = &c.failure {
                            failures.push(format!("{}: {f}", c.connection));
                        }
                        for o in c.outcomes.iter().filter(|o| o.state == "Errored") {
                            failures.push(format!("order {}: {}", o.id, o.message));
                        }
                    }
                    errored += r.unroutable;
                    details.push(serde_json::to_value(&r).unwrap_or_default());
                }
                if !dry {
                    totals.orders_executed += executed;
                    totals.orders_errored += errored;
                    totals.orders_transmitted += transmitted;
                }
                let summary = if dry {
                    format!(
                        "would send {orders} pending order{}",
                        if orders == 1 { "" } else { "s" }
                    )
                } else {
                    format!(
                        "{orders} order{}: {executed} executed, {transmitted} handed over (tickets), {errored} errored",
                        if orders == 1 { "" } else { "s" }
                    )
                };
                let mut done = Done::ok(summary, Some(serde_json::Value::Array(details)));
                done.planned = dry;
                if errored > 0 && !dry {
                    done.failed = true;
                    done.error = Some(failures.into_iter().take(3).collect::<Vec<_>>().join("; "));
                }
                Ok(done)
            }
        }
    }

    /// Whether the store holds no resource of any entity type `connector` maps.
    async fn connector_is_empty(
        &self,
        store: &Store,
        connector: &str,
    ) -> Result<bool, EngineError> {
        for m in self
            .checked()
            .config
            .entity_type_mappings
            .iter()
            .filter(|m| m.connector.value == connector)
        {
            if store.count_resources(&m.id.value).await? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn continue_on_error(task: &Task) -> bool {
    match task {
        Task::Export(t) => t.continue_on_error,
        Task::Fulfill(t) => t.continue_on_error,
        _ => false,
    }
}

/// What a task did.
struct Done {
    summary: String,
    failed: bool,
    planned: bool,
    error: Option<String>,
    details: Option<serde_json::Value>,
}

impl Done {
    fn ok(summary: String, details: Option<serde_json::Value>) -> Done {
        Done {
            summary,
            failed: false,
            planned: false,
            error: None,
            details,
        }
    }

    fn planned(summary: String) -> Done {
        Done {
            planned: true,
            ..Done::ok(summary, None)
        }
    }

    fn failed(error: String) -> Done {
        Done {
            failed: true,
            error: Some(error),
            ..Done::ok(String::new(), None)
        }
    }
}
