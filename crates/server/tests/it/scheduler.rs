//! The scheduler: runs missed while no server ran (once, with --run-missed-jobs; skipped
//! without), one run of a scheduled time for two servers on one PostgreSQL store, a time that
//! comes while the job runs skipped and audited, and the next run time in the API and the
//! pages, in the configured time zone.
//!
//! The crontabs here name times a few minutes in the past (and none in the next fifty
//! minutes), so what runs is decided by the missed-times path, or by a tick the test runs
//! over a chosen moment ([`Scheduler::tick`]), and no regular tick of the test's minute can
//! add a run. Which times a tick finds due is covered by the unit tests of `fires_between`.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, TimeZone, Timelike, Utc};
use idlink_server::scheduler::Scheduler;
use idlink_server::{Paths, ScheduleOptions};
use idlink_store::{Location, Store};

use crate::jobs::{AGENT, APP, HR, JOBS, PEOPLE, SETTINGS};
use crate::support::{ADMIN_PASSWORD, Fixture, PG};

/// The configuration of the jobs tests, its job `Cycle` scheduled by `crontab`.
fn write_conf(root: &Path, crontab: &str) -> std::path::PathBuf {
    let conf = root.join("conf");
    std::fs::create_dir_all(conf.join("data")).expect("mkdir");
    let original = "CrontabExpression=\"0 5 * * *\"";
    assert!(
        JOBS.contains(original),
        "the job's crontab is where it is replaced"
    );
    let jobs = JOBS.replace(original, &format!("CrontabExpression=\"{crontab}\""));
    for (name, text) in [
        ("agent.xml", AGENT),
        ("hr.xml", HR),
        ("app.xml", APP),
        ("jobs.xml", jobs.as_str()),
        ("appsettings.agent.json", SETTINGS),
        ("data/hr.csv", PEOPLE),
        ("data/app.csv", "login,name\n"),
    ] {
        std::fs::write(conf.join(name), text).expect("write");
    }
    conf
}

/// Whole minutes before now.
fn minutes_ago(now: DateTime<Utc>, n: i64) -> DateTime<Utc> {
    (now - chrono::Duration::minutes(n))
        .trunc_subsecs(0)
        .with_second(0)
        .expect("second 0")
}

/// A daily crontab (UTC) whose times include `times` and otherwise fall at least fifty
/// minutes away from them: the minutes of `times` in the hours of `times`.
fn crontab_at(times: &[DateTime<Utc>]) -> String {
    let list = |mut v: Vec<u32>| {
        v.sort();
        v.dedup();
        v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    };
    let minutes = list(times.iter().map(|t| t.minute()).collect());
    let hours = list(times.iter().map(|t| t.hour()).collect());
    format!("{minutes} {hours} * * *")
}

fn options(
    conf: &Path,
    work: &Path,
    database: Location,
    run_missed: bool,
) -> idlink_server::Options {
    idlink_server::Options {
        paths: Paths {
            config_dir: conf.to_path_buf(),
            settings: None,
            work_dir: work.to_path_buf(),
        },
        database,
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: None,
        watch_every: Duration::from_secs(5),
        admin_password: Some(ADMIN_PASSWORD.into()),
        grace: Duration::from_secs(5),
        agents: Default::default(),
        schedule: ScheduleOptions {
            run_missed,
            tick: Duration::from_millis(200),
            ..ScheduleOptions::default()
        },
    }
}

/// The audit entries of the scheduler for `job`, oldest first.
async fn scheduled_audit(store: &Store) -> Vec<String> {
    let mut out: Vec<String> = store
        .audit_log(200)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.action == "scheduled-run")
        .map(|e| {
            assert_eq!(e.actor, "system", "{e:?}");
            e.detail
        })
        .collect();
    out.reverse();
    out
}

/// Waits until `store` holds `n` runs of `job` that ended.
async fn wait_for_runs(store: &Store, job: &str, n: usize) -> Vec<idlink_store::JobRun> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = store.job_runs(Some(job), 100).await.expect("runs");
        if runs.len() >= n && runs.iter().all(|r| r.state != "Running") {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{n} finished runs of {job} never appeared: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_missed_while_no_server_ran_run_the_job_once_at_start_with_run_missed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now();
    let (t6, t4, t3, t2) = (
        minutes_ago(now, 6),
        minutes_ago(now, 4),
        minutes_ago(now, 3),
        minutes_ago(now, 2),
    );
    let conf = write_conf(dir.path(), &crontab_at(&[t6, t4, t3, t2]));
    let work = dir.path().join("work");
    let db = Location::Sqlite(work.join("idlink.db"));
    // The job was first seen ten minutes ago and last ran at the 6-minutes-ago time: three of
    // its times passed since, while no server ran.
    let store = Store::open(&db).await.expect("store");
    store
        .scheduled_job_first_seen("Cycle", minutes_ago(now, 10))
        .await
        .expect("first seen");
    assert!(
        store
            .claim_fire("Cycle", t6, "an earlier server")
            .await
            .expect("claim")
    );
    store.close().await;

    let server = idlink_server::start(options(&conf, &work, db.clone(), true))
        .await
        .expect("server");
    let store = server.state.store().clone();
    let stop = idlink_engine::CancellationToken::new();
    let serving = tokio::spawn(server.run(stop.clone()));
    let runs = wait_for_runs(&store, "Cycle", 1).await;
    // Give a second run (one per missed time) the time to show up: there is none.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs_after = store.job_runs(Some("Cycle"), 100).await.expect("runs");
    assert_eq!(
        runs_after.len(),
        1,
        "one run for three missed times: {runs_after:?}"
    );
    assert_eq!(runs[0].state, "Succeeded", "{}", runs[0].log);
    // The latest missed time is claimed; the audit says which run it started.
    let last = store
        .last_fire("Cycle")
        .await
        .expect("fires")
        .expect("a fire");
    assert_eq!(last.fire_at, t2);
    assert_ne!(last.claimed_by, "an earlier server");
    let audit = scheduled_audit(&store).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let stamp = t2.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        audit[0].starts_with(&format!("scheduled run of job Cycle at {stamp}"))
            && audit[0].contains("missed while no server ran")
            && audit[0].ends_with(&format!("run {}", runs[0].id)),
        "{audit:?}"
    );
    stop.cancel();
    serving.await.expect("join").expect("served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_missed_while_no_server_ran_are_skipped_without_run_missed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now();
    let t2 = minutes_ago(now, 2);
    let conf = write_conf(dir.path(), &crontab_at(&[t2]));
    let work = dir.path().join("work");
    let db = Location::Sqlite(work.join("idlink.db"));
    let store = Store::open(&db).await.expect("store");
    store
        .scheduled_job_first_seen("Cycle", minutes_ago(now, 5))
        .await
        .expect("first seen");
    store.close().await;

    let server = idlink_server::start(options(&conf, &work, db.clone(), false))
        .await
        .expect("server");
    let store = server.state.store().clone();
    let stop = idlink_engine::CancellationToken::new();
    let serving = tokio::spawn(server.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        store.job_runs(Some("Cycle"), 10).await.expect("runs"),
        vec![]
    );
    assert_eq!(store.last_fire("Cycle").await.expect("fires"), None);
    stop.cancel();
    serving.await.expect("join").expect("served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_that_comes_while_the_job_runs_is_skipped_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now();
    let t2 = minutes_ago(now, 2);
    let conf = write_conf(dir.path(), &crontab_at(&[t2]));
    let work = dir.path().join("work");
    let db = Location::Sqlite(work.join("idlink.db"));
    let store = Store::open(&db).await.expect("store");
    store
        .scheduled_job_first_seen("Cycle", minutes_ago(now, 5))
        .await
        .expect("first seen");
    // A run of the job under way (its lock held, as a run holds it).
    let lock = store
        .lock_connector("job:Cycle", "run-job")
        .await
        .expect("lock");

    let server = idlink_server::start(options(&conf, &work, db.clone(), true))
        .await
        .expect("server");
    let server_store = server.state.store().clone();
    let stop = idlink_engine::CancellationToken::new();
    let serving = tokio::spawn(server.run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let audit = loop {
        let audit = scheduled_audit(&server_store).await;
        if !audit.is_empty() {
            break audit;
        }
        assert!(
            Instant::now() < deadline,
            "no audit entry for the skipped time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        scheduled_audit(&server_store).await.len(),
        1,
        "one entry, no storm"
    );
    assert!(
        audit[0].contains("scheduled run of job Cycle at")
            && audit[0].contains("skipped: the job still runs (run-job holds it"),
        "{audit:?}"
    );
    assert_eq!(
        server_store
            .job_runs(Some("Cycle"), 10)
            .await
            .expect("runs"),
        vec![],
        "no second run while the first one runs"
    );
    lock.release().await.expect("release");
    stop.cancel();
    serving.await.expect("join").expect("served");
    store.close().await;
}

/// Two servers on one PostgreSQL store reach the same due time at once (their schedulers'
/// ticks over the same moment, run concurrently): exactly one of them runs it; the other one
/// neither runs it nor reports it skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgresql_store_run_a_due_time_once() {
    let name = format!("sched_{}", std::process::id());
    PG.create_database(&name).expect("create database");
    let db = Location::parse(&PG.url(&name)).expect("url");
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now();
    let t2 = minutes_ago(now, 2);
    let conf = write_conf(dir.path(), &crontab_at(&[t2]));

    // Two servers (each its own work folder, as on two machines) on one store.
    let a = idlink_server::start(options(
        &conf,
        &dir.path().join("work-a"),
        db.clone(),
        false,
    ))
    .await
    .expect("server a");
    let b = idlink_server::start(options(
        &conf,
        &dir.path().join("work-b"),
        db.clone(),
        false,
    ))
    .await
    .expect("server b");
    let schedule = ScheduleOptions::default();
    let (sa, sb) = (
        Scheduler::new(a.state.clone(), schedule),
        Scheduler::new(b.state.clone(), schedule),
    );
    assert_ne!(sa.instance(), sb.instance());
    // Both tick over the minute around the due time, at the same moment.
    let (from, to) = (
        t2 - chrono::Duration::seconds(30),
        t2 + chrono::Duration::seconds(30),
    );
    let (fa, fb) = tokio::join!(sa.tick(from, to), sb.tick(from, to));
    assert_eq!((fa.len(), fb.len()), (1, 1), "both see the time due");
    for f in fa.into_iter().chain(fb) {
        f.await.expect("fire");
    }
    let store = a.state.store().clone();
    let runs = wait_for_runs(&store, "Cycle", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs_after = store.job_runs(Some("Cycle"), 100).await.expect("runs");
    assert_eq!(runs_after.len(), 1, "exactly one run: {runs_after:?}");
    assert_eq!(runs[0].state, "Succeeded", "{}", runs[0].log);
    let fires = store.fires("Cycle", 10).await.expect("fires");
    assert_eq!(fires.len(), 1, "{fires:?}");
    assert_eq!(fires[0].fire_at, t2);
    assert!(
        [sa.instance(), sb.instance()].contains(&fires[0].claimed_by.as_str()),
        "{fires:?}"
    );
    let audit = scheduled_audit(&store).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(
        audit[0].ends_with(&format!("run {}", runs[0].id)),
        "{audit:?}"
    );
    a.state.background_idle().await;
    b.state.background_idle().await;
}

/// The next 05:00 in Paris after `now`, computed here from the calendar.
fn next_five_in_paris(now: DateTime<Utc>) -> DateTime<Utc> {
    let tz = chrono_tz::Europe::Paris;
    let local = now.with_timezone(&tz);
    let mut day = local.date_naive();
    loop {
        let at = tz
            .with_ymd_and_hms(
                chrono::Datelike::year(&day),
                chrono::Datelike::month(&day),
                chrono::Datelike::day(&day),
                5,
                0,
                0,
            )
            .single()
            .expect("05:00 exists in Paris")
            .with_timezone(&Utc);
        if at > now {
            return at;
        }
        day = day.succ_opt().expect("next day");
    }
}

#[tokio::test]
async fn the_api_and_the_pages_show_the_next_run_in_the_time_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_conf(dir.path(), "0 5 * * *");
    let schedule = ScheduleOptions {
        time_zone: idlink_server::scheduler::parse_time_zone("Europe/Paris").expect("zone"),
        ..ScheduleOptions::default()
    };
    let f = Fixture::over(dir, conf, schedule, false).await;
    let mut admin = f.admin().await;

    let before = Utc::now();
    let jobs = admin.get("/api/jobs").await.json();
    let job = &jobs[0];
    let expected = next_five_in_paris(before);
    let next: DateTime<Utc> = job["nextRun"]
        .as_str()
        .unwrap_or_else(|| panic!("nextRun: {job}"))
        .parse()
        .expect("RFC 3339");
    assert_eq!(next, expected, "{job}");
    assert!(
        job["nextRun"].as_str().expect("text").ends_with('Z'),
        "UTC: {job}"
    );
    assert_eq!(job["schedule"]["crontab"], "0 5 * * *");
    assert_eq!(job["schedule"]["timeZone"], "Europe/Paris");
    let local = job["schedule"]["nextRunLocal"].as_str().expect("local");
    assert!(
        local.ends_with(" 05:00 CET") || local.ends_with(" 05:00 CEST"),
        "{local}"
    );

    // The zone's '/' is escaped as the templates escape every value.
    for page in ["/jobs", "/jobs/Cycle"] {
        let html = admin.get(page).await.body;
        assert!(
            html.contains(&format!(
                "Next run: <time datetime=\"{}\">{local}</time> (<code>0 5 * * *</code>, Europe&#x2f;Paris)",
                job["nextRun"].as_str().expect("text")
            )),
            "{page}: {html}"
        );
    }
}

/// A job without a crontab has no schedule and no next run.
#[tokio::test]
async fn a_job_without_a_crontab_has_no_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_conf(dir.path(), "0 5 * * *");
    let jobs = std::fs::read_to_string(conf.join("jobs.xml")).expect("read");
    std::fs::write(
        conf.join("jobs.xml"),
        jobs.replace(" CrontabExpression=\"0 5 * * *\"", ""),
    )
    .expect("write");
    let f = Fixture::over(dir, conf, ScheduleOptions::default(), false).await;
    let mut admin = f.admin().await;
    let jobs = admin.get("/api/jobs").await.json();
    let job = &jobs[0];
    assert_eq!(job["id"], "Cycle");
    assert!(
        job["crontab"].is_null() && job["nextRun"].is_null() && job["schedule"].is_null(),
        "{job}"
    );
    let html = admin.get("/jobs/Cycle").await.body;
    assert!(
        html.contains("Not scheduled") && !html.contains("Next run"),
        "{html}"
    );
}

/// Each tick reads the running configuration: a crontab changed in the folder takes effect
/// at the next tick, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_crontab_takes_effect_at_the_next_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now();
    let t2 = minutes_ago(now, 2);
    let far = t2 + chrono::Duration::hours(6);
    let conf = write_conf(dir.path(), &crontab_at(&[far]));
    let work = dir.path().join("work");
    let server = idlink_server::start(options(
        &conf,
        &work,
        Location::Sqlite(work.join("idlink.db")),
        false,
    ))
    .await
    .expect("server");
    let state = server.state.clone();
    let scheduler = Scheduler::new(state.clone(), ScheduleOptions::default());
    let (from, to) = (
        t2 - chrono::Duration::seconds(30),
        t2 + chrono::Duration::seconds(30),
    );
    assert!(scheduler.tick(from, to).await.is_empty(), "not due yet");

    let jobs = std::fs::read_to_string(conf.join("jobs.xml")).expect("read");
    std::fs::write(
        conf.join("jobs.xml"),
        jobs.replace(&crontab_at(&[far]), &crontab_at(&[t2])),
    )
    .expect("write");
    let paths = state.paths().clone();
    let loaded = tokio::task::spawn_blocking(move || idlink_server::running::load(&paths))
        .await
        .expect("load");
    state.replace_running(loaded).await;
    assert!(state.running().rejected.is_none());
    let fires = scheduler.tick(from, to).await;
    assert_eq!(fires.len(), 1, "due under the new crontab");
    for f in fires {
        f.await.expect("fire");
    }
    let runs = wait_for_runs(state.store(), "Cycle", 1).await;
    assert_eq!(runs.len(), 1);
    let audit = scheduled_audit(state.store()).await;
    assert!(
        audit.len() == 1 && audit[0].ends_with(&format!("run {}", runs[0].id)),
        "{audit:?}"
    );
    state.background_idle().await;
}
