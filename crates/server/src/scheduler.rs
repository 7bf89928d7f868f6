//! The scheduler: every job of the running configuration with a `CrontabExpression` runs at
//! its times, through the path "Run now" takes ([`crate::jobs::launch`]).
//!
//! - Crontab times are wall-clock times in one time zone (`--time-zone`, UTC by default).
//!   Across daylight-saving changes each instant runs once: a time the clocks skip runs just
//!   after the change (02:30 when 02:00 jumps to 03:00 runs at 03:30, and not again at 03:30
//!   if the expression names that too); a time the clocks repeat runs at its first occurrence
//!   only. See [`fires_between`].
//! - Each tick re-reads the running configuration, so a new job or a changed crontab takes
//!   effect without a restart. Times that passed since the previous tick are due; several at
//!   once (the process was suspended) run once.
//! - A due time is claimed in the store first ([`idlink_store::Store::claim_fire`]): of two
//!   servers on one PostgreSQL store, exactly one runs it.
//! - A time that comes while the job still runs is skipped (the job's lock is held), with one
//!   log line and one audit entry: two runs of one job never overlap.
//! - At start, times that passed while no server ran (since the job's last claimed time, or
//!   since the scheduler first saw the job) are missed: with `--run-missed-jobs` the job runs
//!   once for all of them; without it they are logged and skipped.
//!
//! Audit entries are written as `system`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Offset, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use idlink_engine::CancellationToken;
use idlink_store::StoreError;

use crate::error::AppError;
use crate::state::AppState;

/// How the scheduler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// The zone crontab times are read in.
    pub time_zone: Tz,
    /// Run a job once at start when some of its times passed while no server ran.
    pub run_missed: bool,
    /// How often due times are looked for.
    pub tick: Duration,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            time_zone: Tz::UTC,
            run_missed: false,
            tick: DEFAULT_TICK,
        }
    }
}

/// How often the scheduler looks for due times by default.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);

/// Parses an IANA time zone name (`Europe/Paris`, `UTC`), or says what is wrong and what
/// would be right.
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    if let Some(tz) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
    {
        return Ok(*tz);
    }
    let hint = idlink_model::diag::did_you_mean(
        name,
        chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()),
    )
    .map(|s| format!("; did you mean '{s}'?"))
    .unwrap_or_else(|| {
        "; use a name of the IANA time zone database such as UTC, Europe/Paris or America/New_York"
            .into()
    });
    Err(format!(
        "time zone '{name}' is not a name of the IANA time zone database{hint}"
    ))
}

/// How far before a search's start wall-clock times are enumerated, so that the
/// daylight-saving mapping of times just before it is known (offset changes are under 3 h).
const LOOK_BEHIND_HOURS: i64 = 3;

/// The instant a wall-clock time of `tz` stands for: the first of a repeated time; for a time
/// the clocks skip, the same time read with the offset before the change (just after it).
fn instant_of(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        chrono::LocalResult::None => {
            let before = tz
                .from_local_datetime(&(wall - chrono::Duration::hours(24)))
                .earliest()?;
            let offset = i64::from(before.offset().fix().local_minus_utc());
            Some(Utc.from_utc_datetime(&(wall - chrono::Duration::seconds(offset))))
        }
    }
}

/// The instants of `schedule` in zone `tz` after `after`, in order, each once.
pub fn fires_after<'s>(
    schedule: &'s cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> + 's {
    // Wall-clock times are enumerated as if they were UTC (which skips and repeats nothing),
    // then placed in the zone.
    let wall_start =
        after.with_timezone(&tz).naive_local() - chrono::Duration::hours(LOOK_BEHIND_HOURS);
    let mut last: Option<DateTime<Utc>> = None;
    schedule
        .after(&Utc.from_utc_datetime(&wall_start))
        .filter_map(move |wall| {
            let at = instant_of(tz, wall.naive_utc())?;
            if last.is_some_and(|l| at <= l) {
                return None;
            }
            last = Some(at);
            Some(at)
        })
        .filter(move |at| *at > after)
}

/// The instants of `schedule` in zone `tz` in `(after, until]`, in order, each once.
pub fn fires_between(
    schedule: &cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    fires_after(schedule, tz, after)
        .take_while(|at| *at <= until)
        .collect()
}

/// The next instant of `schedule` in zone `tz` after `now`.
pub fn next_fire(schedule: &cron::Schedule, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    fires_after(schedule, tz, now).next()
}

/// An instant as the zone's wall clock shows it: `2025-03-30 03:00 CEST`.
pub fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// The RFC 3339 UTC form the API uses.
pub fn utc_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A job of the running configuration with a crontab.
#[derive(Debug, Clone)]
struct Scheduled {
    job: String,
    crontab: String,
    schedule: cron::Schedule,
}

/// The scheduled jobs of the running configuration (none without a valid one).
fn scheduled_jobs(state: &AppState) -> Vec<Scheduled> {
    let Some(engine) = state.running().engine.clone() else {
        return Vec::new();
    };
    engine
        .checked()
        .config
        .jobs
        .iter()
        .filter_map(|j| {
            let crontab = j.crontab.as_ref()?.value.clone();
            match idlink_model::validate::crontab_schedule(&crontab) {
                Ok(schedule) => Some(Scheduled {
                    job: j.id.value.clone(),
                    crontab,
                    schedule,
                }),
                Err(why) => {
                    // `check` refuses it, so a running configuration does not hold one.
                    tracing::warn!(job = %j.id.value, crontab = %crontab, error = %why, "the job's crontab is not valid: it is not scheduled");
                    None
                }
            }
        })
        .collect()
}

/// Why a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Scheduled,
    /// Once at start, for the times missed while no server ran.
    Missed,
}

/// The scheduler of one server.
#[derive(Debug, Clone)]
pub struct Scheduler {
    state: AppState,
    options: ScheduleOptions,
    /// Who claims fires in the store: this process and this server.
    instance: String,
    /// The jobs whose first sighting is recorded, by lower-case identifier.
    seen: Arc<Mutex<HashSet<String>>>,
}

impl Scheduler {
    pub fn new(state: AppState, options: ScheduleOptions) -> Scheduler {
        use rand::RngCore;
        let instance = format!(
            "server {:08x} (process {})",
            rand::rng().next_u32(),
            std::process::id()
        );
        Scheduler {
            state,
            options,
            instance,
            seen: Arc::default(),
        }
    }

    /// Who this server is in the store's claims.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Runs until `stop`: the missed times first, then a tick every `options.tick`.
    pub async fn run(self, stop: CancellationToken) {
        let start = Utc::now().trunc_subsecs(0);
        self.start_missed(start).await;
        let mut cursor = start;
        let mut ticks = tokio::time::interval(self.options.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let now = Utc::now();
            self.tick(cursor, now).await;
            cursor = now;
        }
    }

    /// Records when the scheduler first saw `job` (once per process; the store keeps the
    /// first sighting of all).
    async fn note(&self, job: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.state.store().scheduled_job_first_seen(job, now).await {
            Ok(first) => {
                self.seen_set().insert(job.to_ascii_lowercase());
                Some(first)
            }
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "cannot record the scheduled job");
                None
            }
        }
    }

    /// At start: the times of each job that passed while no server ran.
    async fn start_missed(&self, start: DateTime<Utc>) {
        let tz = self.options.time_zone;
        for s in scheduled_jobs(&self.state) {
            let Some(first_seen) = self.note(&s.job, start).await else {
                continue;
            };
            let last = match self.state.store().last_fire(&s.job).await {
                Ok(l) => l.map(|f| f.fire_at),
                Err(e) => {
                    tracing::warn!(job = %s.job, error = %e, "cannot read the job's last scheduled run");
                    continue;
                }
            };
            let since = last.map_or(first_seen, |l| l.max(first_seen));
            let missed = fires_between(&s.schedule, tz, since, start);
            let Some(latest) = missed.last().copied() else {
                continue;
            };
            let n = missed.len();
            if self.options.run_missed {
                tracing::info!(job = %s.job, missed = n, last = %utc_time(latest), "scheduled times passed while no server ran: the job runs once now (--run-missed-jobs)");
                self.fire(&s.job, latest, Reason::Missed).await;
            } else {
                tracing::info!(job = %s.job, missed = n, last = %utc_time(latest), crontab = %s.crontab, "scheduled times passed while no server ran: skipped (--run-missed-jobs runs the job once at start)");
            }
        }
    }

    fn seen_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// One tick: the times in `(after, now]` of every scheduled job of the running
    /// configuration are due; each job runs once for its latest due time. Gives back the
    /// tasks that claim and start the runs (the loop leaves them running; tests await them).
    pub async fn tick(
        &self,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let tz = self.options.time_zone;
        let mut started = Vec::new();
        for s in scheduled_jobs(&self.state) {
            let known = self.seen_set().contains(&s.job.to_ascii_lowercase());
            if !known {
                self.note(&s.job, now).await;
            }
            let due = fires_between(&s.schedule, tz, after, now);
            let Some(latest) = due.last().copied() else {
                continue;
            };
            if due.len() > 1 {
                tracing::info!(job = %s.job, times = due.len(), "several scheduled times passed at once: the job runs once");
            }
            let me = self.clone();
            // Each fire on its own task: waiting for one run to be recorded delays no other job.
            started.push(tokio::spawn(async move {
                me.fire(&s.job, latest, Reason::Scheduled).await
            }));
        }
        started
    }

    /// Claims `at` for `job` and runs the job, unless another server claimed it or the job
    /// still runs.
    async fn fire(&self, job: &str, at: DateTime<Utc>, reason: Reason) {
        let store = self.state.store();
        match store.claim_fire(job, at, &self.instance).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(job = %job, at = %utc_time(at), "scheduled time claimed by another server");
                return;
            }
            Err(e) => {
                tracing::warn!(job = %job, at = %utc_time(at), error = %e, "cannot claim the scheduled run: it does not run");
                return;
            }
        }
        let when = format!(
            "{} ({})",
            utc_time(at),
            local_time(at, self.options.time_zone)
        );
        let what = match reason {
            Reason::Scheduled => format!("scheduled run of job {job} at {when}"),
            Reason::Missed => format!(
                "scheduled run of job {job} at {when} (missed while no server ran; run once at start)"
            ),
        };
        // The job's lock says whether a run is under way, here or on another server.
        match store
            .lock_connector(&format!("job:{job}"), "scheduler: is the job running?")
            .await
        {
            Ok(lock) => {
                let _ = lock.release().await;
            }
            Err(StoreError::Locked { holder, .. }) => {
                let by = holder.map(|h| format!(" ({h})")).unwrap_or_default();
                self.skipped(job, &what, &format!("the job still runs{by}"))
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "cannot look at the job's lock: the scheduled run does not start");
                self.audit(
                    job,
                    &format!("{what}: not started: the job's lock cannot be read"),
                )
                .await;
                return;
            }
        }
        let engine = match self.state.engine() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "no running configuration: the scheduled run does not start");
                return;
            }
        };
        match crate::jobs::launch(&self.state, engine, job, false).await {
            Ok(run) => {
                tracing::info!(job = %job, run = run.id, at = %utc_time(at), "scheduled run started");
                self.audit(job, &format!("{what}: run {}", run.id)).await;
            }
            // Started elsewhere between the look at the lock and the run.
            Err(AppError::Engine { .. })
                if store
                    .job_runs(Some(job), 1)
                    .await
                    .is_ok_and(|r| r.first().is_some_and(|r| r.state == "Running")) =>
            {
                self.skipped(job, &what, "the job still runs").await;
            }
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "the scheduled run did not start");
                self.audit(
                    job,
                    &format!("{what}: did not start: {}", e.public_message()),
                )
                .await;
            }
        }
    }

    async fn skipped(&self, job: &str, what: &str, why: &str) {
        tracing::info!(job = %job, "{what} skipped: {why}; two runs of one job never overlap");
        self.audit(job, &format!("{what} skipped: {why}")).await;
    }

    async fn audit(&self, job: &str, detail: &str) {
        if let Err(e) = self
            .state
            .store()
            .audit("system", "scheduled-run", job, detail)
            .await
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

/// The schedule of a job as the API and the pages show it: its crontab, the zone, the next
/// run (`nextRun`, RFC 3339 UTC) and that time on the zone's clock.
pub fn schedule_view(
    crontab: Option<&str>,
    options: &ScheduleOptions,
    now: DateTime<Utc>,
) -> (serde_json::Value, serde_json::Value) {
    let Some(crontab) = crontab else {
        return (serde_json::Value::Null, serde_json::Value::Null);
    };
    let tz = options.time_zone;
    let next = idlink_model::validate::crontab_schedule(crontab)
        .ok()
        .and_then(|s| next_fire(&s, tz, now));
    let schedule = serde_json::json!({
        "crontab": crontab,
        "timeZone": tz.name(),
        "nextRunLocal": next.map(|n| local_time(n, tz)),
    });
    (schedule, serde_json::json!(next.map(utc_time)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn schedule(expr: &str) -> cron::Schedule {
        idlink_model::validate::crontab_schedule(expr).expect("valid")
    }

    #[test]
    fn utc_by_default_and_zones_by_name() {
        assert_eq!(ScheduleOptions::default().time_zone, Tz::UTC);
        assert_eq!(parse_time_zone("Europe/Paris"), Ok(Tz::Europe__Paris));
        assert_eq!(parse_time_zone("europe/paris"), Ok(Tz::Europe__Paris));
        let e = parse_time_zone("Mars/Olympus").expect_err("refused");
        assert!(e.contains("'Mars/Olympus'") && e.contains("IANA"), "{e}");
        let e = parse_time_zone("Europe/Pari").expect_err("refused");
        assert!(e.contains("did you mean 'Europe/Paris'"), "{e}");
    }

    #[test]
    fn nightly_in_paris_across_both_daylight_saving_changes() {
        let s = schedule("0 2 * * *");
        let tz = Tz::Europe__Paris;
        // Winter: 02:00 CET is 01:00 UTC.
        assert_eq!(
            next_fire(&s, tz, utc("2025-03-28T12:00:00Z")),
            Some(utc("2025-03-29T01:00:00Z"))
        );
        // 30 March 2025: 02:00 does not exist (02:00 CET -> 03:00 CEST); the run is just
        // after the change, once, then summer time.
        assert_eq!(
            fires_between(
                &s,
                tz,
                utc("2025-03-29T12:00:00Z"),
                utc("2025-03-31T12:00:00Z")
            ),
            vec![utc("2025-03-30T01:00:00Z"), utc("2025-03-31T00:00:00Z"),]
        );
        // 26 October 2025: 02:00 happens twice (03:00 CEST -> 02:00 CET); it runs at the
        // first one only.
        assert_eq!(
            fires_between(
                &s,
                tz,
                utc("2025-10-25T12:00:00Z"),
                utc("2025-10-27T12:00:00Z")
            ),
            vec![utc("2025-10-26T00:00:00Z"), utc("2025-10-27T01:00:00Z")]
        );
        assert_eq!(
            local_time(utc("2025-10-26T00:00:00Z"), tz),
            "2025-10-26 02:00 CEST"
        );
    }

    #[test]
    fn every_half_hour_through_the_repeated_and_the_skipped_hour_runs_each_instant_once() {
        let s = schedule("*/30 * * * *");
        let tz = Tz::Europe__Paris;
        // Autumn: 02:00 and 02:30 CEST, then 03:00 CET: the repeated 02:00 and 02:30 CET are
        // not run again.
        let autumn = fires_between(
            &s,
            tz,
            utc("2025-10-25T23:00:00Z"),
            utc("2025-10-26T03:00:00Z"),
        );
        assert_eq!(
            autumn,
            vec![
                utc("2025-10-25T23:30:00Z"),
                utc("2025-10-26T00:00:00Z"),
                utc("2025-10-26T00:30:00Z"),
                utc("2025-10-26T02:00:00Z"),
                utc("2025-10-26T02:30:00Z"),
                utc("2025-10-26T03:00:00Z"),
            ]
        );
        // Spring: 01:30 CET, then 02:00 and 02:30 (skipped wall times) run at 03:00 and
        // 03:30 CEST, which are not run twice.
        let spring = fires_between(
            &s,
            tz,
            utc("2025-03-30T00:00:00Z"),
            utc("2025-03-30T02:00:00Z"),
        );
        assert_eq!(
            spring,
            vec![
                utc("2025-03-30T00:30:00Z"),
                utc("2025-03-30T01:00:00Z"),
                utc("2025-03-30T01:30:00Z"),
                utc("2025-03-30T02:00:00Z"),
            ]
        );
    }

    #[test]
    fn weekday_names_and_numbers() {
        let tz = Tz::America__New_York;
        // Saturday 1 March 2025, noon in New York (EST, UTC-5).
        let now = utc("2025-03-01T17:00:00Z");
        // Weekdays 1-5: the next is Monday 3 March 08:00 EST.
        assert_eq!(
            next_fire(&schedule("0 8 * * 1-5"), tz, now),
            Some(utc("2025-03-03T13:00:00Z"))
        );
        assert_eq!(
            next_fire(&schedule("0 8 * * Mon-Fri"), tz, now),
            Some(utc("2025-03-03T13:00:00Z"))
        );
        // 0 and 7 are both Sunday: 2 March 2025 08:00 EST.
        for sunday in ["0 8 * * 0", "0 8 * * 7", "0 8 * * Sun"] {
            assert_eq!(
                next_fire(&schedule(sunday), tz, now),
                Some(utc("2025-03-02T13:00:00Z")),
                "{sunday}"
            );
        }
    }

    #[test]
    fn due_times_are_after_the_start_and_up_to_the_end() {
        let s = schedule("* * * * *");
        let t0 = utc("2025-01-01T10:00:00Z");
        assert_eq!(
            fires_between(&s, Tz::UTC, t0, t0),
            Vec::<DateTime<Utc>>::new()
        );
        assert_eq!(
            fires_between(&s, Tz::UTC, t0, utc("2025-01-01T10:02:30Z")),
            vec![utc("2025-01-01T10:01:00Z"), utc("2025-01-01T10:02:00Z")]
        );
        // A tick ending exactly on a time includes it; the next tick starts after it.
        assert_eq!(
            fires_between(
                &s,
                Tz::UTC,
                utc("2025-01-01T10:00:30Z"),
                utc("2025-01-01T10:01:00Z")
            ),
            vec![utc("2025-01-01T10:01:00Z")]
        );
        assert_eq!(
            fires_between(
                &s,
                Tz::UTC,
                utc("2025-01-01T10:01:00Z"),
                utc("2025-01-01T10:01:30Z")
            ),
            Vec::<DateTime<Utc>>::new()
        );
    }

    #[test]
    fn the_view_of_a_schedule() {
        let options = ScheduleOptions {
            time_zone: Tz::Europe__Paris,
            ..ScheduleOptions::default()
        };
        let (schedule, next) =
            schedule_view(Some("0 2 * * *"), &options, utc("2025-03-29T12:00:00Z"));
        assert_eq!(next, "2025-03-30T01:00:00Z");
        assert_eq!(schedule["crontab"], "0 2 * * *");
        assert_eq!(schedule["timeZone"], "Europe/Paris");
        assert_eq!(schedule["nextRunLocal"], "2025-03-30 03:00 CEST");
        let (none, no_next) = schedule_view(None, &options, utc("2025-03-29T12:00:00Z"));
        assert!(none.is_null() && no_next.is_null());
    }
}
