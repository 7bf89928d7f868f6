//! Jobs, orders and tickets through the API and the pages, on a small configuration of CSV
//! files only: an HR CSV is exported and synchronized, a resource type whose mapping names a
//! `Usercube.Manual` connection generates orders, and fulfill turns them into tickets.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use idlink_server::Paths;
use idlink_store::{Location, Store};
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, Client, Fixture};

pub const AGENT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Agent Identifier="Local" DisplayName_L1="Local agent" />
</ConfigurationFile>"#;

pub const HR: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="HR" DisplayName_L1="Human resources" Agent="Local" />
  <Connection Identifier="HRPeople" DisplayName_L1="HR people" Connector="HR" Package="Usercube.CSV@0000001" />
  <ConnectionTable Connection="HRPeople" Identifier="HRPeople">
    <Column Identifier="EmployeeId" KeyType="1" />
    <Column Identifier="LastName" />
  </ConnectionTable>
  <EntityType Identifier="HR_Person" DisplayName_L1="Person">
    <Property Identifier="EmployeeId" IsKey="true" />
    <Property Identifier="LastName" />
  </EntityType>
  <EntityTypeMapping Identifier="HR_Person" Connector="HR" ConnectionTable="HRPeople">
    <Property Identifier="EmployeeId" ConnectionColumn="EmployeeId" IsPrimaryKey="true" />
    <Property Identifier="LastName" ConnectionColumn="LastName" />
  </EntityTypeMapping>
</ConfigurationFile>"#;

pub const APP: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="App" DisplayName_L1="Business application" Agent="Local" />
  <Connection Identifier="AppAccounts" DisplayName_L1="App accounts" Connector="App" Package="Usercube.CSV@0000001" />
  <Connection Identifier="AppTickets" DisplayName_L1="App tickets" Connector="App" Package="Usercube.Manual@0000001" />
  <ConnectionTable Connection="AppAccounts" Identifier="AppAccounts">
    <Column Identifier="login" KeyType="1" />
    <Column Identifier="name" />
  </ConnectionTable>
  <EntityType Identifier="App_Account" DisplayName_L1="App account">
    <Property Identifier="login" IsKey="true" />
    <Property Identifier="name" />
  </EntityType>
  <EntityTypeMapping Identifier="App_Account" Connector="App" ConnectionTable="AppAccounts">
    <Property Identifier="login" ConnectionColumn="login" IsPrimaryKey="true" />
    <Property Identifier="name" ConnectionColumn="name" />
  </EntityTypeMapping>
  <ResourceType Identifier="App_Person" DisplayName_L1="App account of a person"
                SourceEntityType="HR_Person" TargetEntityType="App_Account">
    <ScalarRule Property="login" Binding="EmployeeId" />
    <ScalarRule Property="name" Binding="LastName" />
  </ResourceType>
  <ManualProvisioningResourceTypeMapping Identifier="App_Person" Connection="AppTickets" />
</ConfigurationFile>"#;

pub const JOBS: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Job Identifier="Cycle" DisplayName_L1="HR to app tickets" Agent="Local" CrontabExpression="0 5 * * *">
    <ExportTask DisplayName_L1="Export HR people" Connection="HRPeople" />
    <PrepareSynchronizationTask DisplayName_L1="Prepare HR" Connector="HR" SynchronizationMode="Complete" />
    <SynchronizeTask DisplayName_L1="Synchronize HR" Connector="HR" />
    <GenerateProvisioningOrdersTask DisplayName_L1="Compute app orders" ResourceTypes="App_Person" />
    <FulfillTask DisplayName_L1="Open app tickets">
      <TaskResourceType ResourceType="App_Person" />
    </FulfillTask>
  </Job>
</ConfigurationFile>"#;

pub const SETTINGS: &str = r#"{
  "SourcesRootPaths": ["data"],
  "Connections": {
    "HRPeople": { "Path": "data/hr.csv" },
    "AppAccounts": { "Path": "data/app.csv" },
    "AppTickets": {}
  }
}"#;

pub const PEOPLE: &str = "EmployeeId,LastName\nE001,Lovelace\nE002,Turing\nE003,Hopper\n";

/// A server over the configuration above, with `admin`.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("data")).expect("mkdir");
    for (name, text) in [
        ("agent.xml", AGENT),
        ("hr.xml", HR),
        ("app.xml", APP),
        ("jobs.xml", JOBS),
        ("appsettings.agent.json", SETTINGS),
        ("data/hr.csv", PEOPLE),
        ("data/app.csv", "login,name\n"),
    ] {
        std::fs::write(conf.join(name), text).expect("write");
    }
    let f = Fixture::over(dir, conf, Default::default(), false).await;
    assert!(
        f.state.running().engine.is_some(),
        "the configuration passes check: {:?}",
        f.state.running().rejected
    );
    f
}

/// Adds a user with `role` and signs them in.
async fn user(f: &Fixture, name: &str, role: &str) -> Client {
    let password = "a-long-enough-password";
    let hash = idlink_server::auth::hash_password(password).expect("hash");
    f.state
        .store()
        .create_user(name, &hash, role)
        .await
        .expect("store")
        .expect("new user");
    f.login(name, password).await
}

/// Polls a run until it is no longer Running.
async fn wait_for(c: &mut Client, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.get(url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let run = r.json();
        if run["state"] != "Running" {
            return run;
        }
        assert!(Instant::now() < deadline, "the run never ended: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(c: &mut Client, job: &str, dry_run: bool) -> Value {
    let r = c
        .api(
            Method::POST,
            &format!("/api/jobs/{job}/runs"),
            Some(json!({ "dryRun": dry_run })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let started = r.json();
    assert_eq!(r.header("location"), started["url"].as_str().expect("url"));
    started
}

#[tokio::test]
async fn a_job_runs_through_the_api_and_its_orders_become_tickets_closed_through_the_api() {
    let f = fixture().await;
    let mut admin = f.admin().await;

    // The job, its tasks in order, its crontab; no run yet.
    let jobs = admin.get("/api/jobs").await.json();
    let jobs = jobs.as_array().expect("list");
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["id"], "Cycle");
    assert_eq!(job["name"], "HR to app tickets");
    assert_eq!(job["crontab"], "0 5 * * *");
    assert_eq!(job["lastRun"], Value::Null);
    let kinds: Vec<&str> = job["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "ExportTask",
            "PrepareSynchronizationTask",
            "SynchronizeTask",
            "GenerateProvisioningOrdersTask",
            "FulfillTask"
        ]
    );
    assert_eq!(job["tasks"][0]["target"], "connection HRPeople");

    // Run now: 202 with the run's id and URL, then the run ends on its own.
    let started = start(&mut admin, "Cycle", false).await;
    let id = started["run"].as_i64().expect("run id");
    assert_eq!(started["url"], format!("/api/job-runs/{id}"));
    assert_eq!(started["dryRun"], false);
    let run = wait_for(&mut admin, &format!("/api/job-runs/{id}")).await;
    assert_eq!(run["state"], "Succeeded", "{run}");
    assert_eq!(run["job"], "Cycle");
    let report = &run["report"];
    let statuses: Vec<&str> = report["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["Succeeded"; 5], "{report}");
    assert_eq!(report["totals"]["exported_rows"], 3);
    assert_eq!(report["totals"]["inserted"], 3);
    assert_eq!(report["totals"]["orders_generated"], 3);
    assert_eq!(report["totals"]["orders_transmitted"], 3);
    assert_eq!(report["totals"]["orders_executed"], 0);
    let log = run["log"].as_str().expect("log");
    assert!(log.contains("[1/5] Export HR people (ExportTask)"), "{log}");
    assert!(
        log.contains("[5/5] Open app tickets (FulfillTask)"),
        "{log}"
    );
    assert!(log.contains("job 'Cycle' succeeded"), "{log}");

    // The history and the last run.
    let runs = admin.get("/api/jobs/Cycle/runs").await.json();
    assert_eq!(runs.as_array().expect("runs").len(), 1);
    assert_eq!(runs[0]["id"], id);
    assert_eq!(runs[0]["state"], "Succeeded");
    assert_eq!(runs[0]["totals"]["orders_generated"], 3);
    let jobs = admin.get("/api/jobs").await.json();
    assert_eq!(jobs[0]["lastRun"]["id"], id);

    // The orders, filtered by state and resource type.
    let transmitted = admin.get("/api/orders?state=Transmitted").await.json();
    let transmitted = transmitted.as_array().expect("orders").clone();
    assert_eq!(transmitted.len(), 3);
    for o in &transmitted {
        assert_eq!(o["state"], "Transmitted");
        assert_eq!(o["changeType"], "Added");
        assert_eq!(o["resourceType"], "App_Person");
        assert_eq!(o["connection"], "AppTickets");
        assert_eq!(o["order"]["ChangeType"], "Added");
    }
    let owners: Vec<&str> = transmitted
        .iter()
        .map(|o| o["owner"].as_str().expect("owner"))
        .collect();
    assert_eq!(owners, ["E003", "E002", "E001"], "newest first");
    assert_eq!(
        admin.get("/api/orders?state=pending").await.json(),
        json!([])
    );
    assert_eq!(
        admin
            .get("/api/orders?resourceType=App_Person&limit=2")
            .await
            .json()
            .as_array()
            .expect("orders")
            .len(),
        2
    );
    assert_eq!(
        admin.get("/api/orders?resourceType=Nothing").await.json(),
        json!([])
    );
    let bad = admin.get("/api/orders?state=Lost").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not an order state"), "{}", bad.body);
    assert_eq!(
        admin.get("/api/orders?limit=0").await.status,
        StatusCode::BAD_REQUEST
    );

    // The tickets: the same orders, open, with what to do.
    let tickets = admin.get("/api/tickets").await.json();
    let tickets = tickets.as_array().expect("tickets").clone();
    assert_eq!(tickets.len(), 3);
    assert!(
        tickets
            .iter()
            .all(|t| t["todo"].as_str().is_some_and(|s| !s.is_empty()))
    );
    let first = tickets[0]["id"].as_i64().expect("id");
    let second = tickets[1]["id"].as_i64().expect("id");
    assert_eq!(tickets[0]["owner"], "E001", "oldest first");
    assert!(
        tickets[0]["todo"].as_str().expect("todo").contains("E001"),
        "{}",
        tickets[0]
    );

    // A viewer reads but neither closes a ticket nor runs a job.
    let mut viewer = user(&f, "vera", "viewer").await;
    assert_eq!(
        viewer
            .get("/api/tickets")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let refused = viewer
        .api(
            Method::POST,
            &format!("/api/tickets/{first}/complete"),
            Some(json!({})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("viewer"), "{}", refused.body);
    let refused = viewer
        .api(Method::POST, "/api/jobs/Cycle/runs", Some(json!({})))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(
        admin.get(&format!("/api/orders/{first}")).await.json()["state"],
        "Transmitted",
        "the viewer changed nothing"
    );

    // An operator closes one as done, one as failed with the reason.
    let mut operator = user(&f, "otto", "operator").await;
    let done = operator
        .api(
            Method::POST,
            &format!("/api/tickets/{first}/complete"),
            None,
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.json()["state"], "Executed");
    let failed = operator
        .api(
            Method::POST,
            &format!("/api/tickets/{second}/complete"),
            Some(json!({ "error": "no licence left" })),
        )
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.body);
    assert_eq!(failed.json()["state"], "Errored");
    let order = admin.get(&format!("/api/orders/{first}")).await.json();
    assert_eq!(order["state"], "Executed");
    let order = admin.get(&format!("/api/orders/{second}")).await.json();
    assert_eq!(order["state"], "Errored");
    assert!(
        order["message"]
            .as_str()
            .expect("message")
            .contains("no licence left"),
        "{order}"
    );
    // Closed once only; a failure needs its reason; unknown tickets are 404.
    let again = operator
        .api(
            Method::POST,
            &format!("/api/tickets/{first}/complete"),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    let third = tickets[2]["id"].as_i64().expect("id");
    let empty = operator
        .api(
            Method::POST,
            &format!("/api/tickets/{third}/complete"),
            Some(json!({ "error": "  " })),
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
    assert_eq!(
        operator
            .api(Method::POST, "/api/tickets/999999/complete", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin
            .get("/api/tickets")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        admin
            .get("/api/tickets?all=true")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(
        admin
            .get("/api/orders?state=Errored")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Audited: the run started, the tickets closed.
    let audit = admin.get("/api/audit").await.json();
    let entries = audit.as_array().expect("audit");
    assert!(
        entries.iter().any(|e| e["action"] == "run-job"
            && e["actor"] == "admin"
            && e["target"] == "Cycle"
            && e["detail"] == format!("started run {id}")),
        "{audit}"
    );
    assert!(
        entries.iter().any(|e| e["action"] == "close-ticket"
            && e["actor"] == "otto"
            && e["target"] == format!("#{second}")
            && e["detail"] == "Errored: no licence left"),
        "{audit}"
    );
    assert!(
        !entries
            .iter()
            .any(|e| e["actor"] == "vera" && e["action"] != "login"),
        "refusals change nothing: {audit}"
    );
}

#[tokio::test]
async fn a_second_run_of_a_running_job_is_refused_and_a_dry_run_changes_nothing() {
    let f = fixture().await;
    let mut admin = f.admin().await;

    // The job's lock held (a run under way): 409, and no run is recorded.
    let lock = f
        .state
        .store()
        .lock_connector("job:Cycle", "a run under way")
        .await
        .expect("lock");
    let r = admin
        .api(Method::POST, "/api/jobs/Cycle/runs", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("already running"), "{}", r.body);
    // The same through the page's button: the jobs page says why.
    admin.get("/jobs").await;
    let csrf = admin.csrf.clone();
    let page = admin
        .post_form("/jobs/Cycle/run", &[], csrf.as_deref())
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.body.contains("already running"), "{}", page.body);
    lock.release().await.expect("release");
    assert_eq!(
        admin.get("/api/jobs/Cycle/runs").await.json(),
        json!([]),
        "a refused run is not recorded"
    );
    assert_eq!(
        admin
            .api(Method::POST, "/api/jobs/Nope/runs", Some(json!({})))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Two runs asked at once: the second is refused while the first runs, or starts after it
    // ended; never an error, and every run accepted is recorded.
    let (a, b) = {
        let mut c1 = admin.clone();
        let mut c2 = admin.clone();
        tokio::join!(
            c1.api(
                Method::POST,
                "/api/jobs/Cycle/runs",
                Some(json!({ "dryRun": true }))
            ),
            c2.api(
                Method::POST,
                "/api/jobs/Cycle/runs",
                Some(json!({ "dryRun": true }))
            )
        )
    };
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert!(
        statuses == [StatusCode::ACCEPTED, StatusCode::CONFLICT]
            || statuses == [StatusCode::ACCEPTED, StatusCode::ACCEPTED],
        "{a:?} {b:?}"
    );
    for r in [&a, &b] {
        if r.status == StatusCode::ACCEPTED {
            let url = r.json()["url"].as_str().expect("url").to_string();
            wait_for(&mut admin, &url).await;
        }
    }
    let runs = admin.get("/api/jobs/Cycle/runs").await.json();
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(runs.as_array().map(Vec::len), Some(accepted));

    // A dry run: every task planned, nothing stored.
    let started = start(&mut admin, "Cycle", true).await;
    assert_eq!(started["dryRun"], true);
    let run = wait_for(&mut admin, started["url"].as_str().expect("url")).await;
    assert_eq!(run["state"], "Succeeded", "{run}");
    assert_eq!(run["dryRun"], true);
    assert_eq!(run["report"]["dry_run"], true);
    assert_eq!(run["report"]["tasks"][0]["status"], "Planned");
    assert_eq!(run["report"]["tasks"][2]["status"], "Planned");
    assert!(
        run["log"]
            .as_str()
            .expect("log")
            .contains("dry run: nothing changes")
    );
    assert_eq!(admin.get("/api/orders").await.json(), json!([]));
    assert_eq!(
        f.state.store().count_resources("HR_Person").await.ok(),
        Some(0)
    );
}

#[tokio::test]
async fn the_pages_show_jobs_runs_orders_and_tickets_and_their_buttons_by_role() {
    let f = fixture().await;
    let mut admin = f.admin().await;

    // The nav bar links the three pages.
    let home = admin.get("/").await;
    for link in ["href=\"/jobs\"", "href=\"/orders\"", "href=\"/tickets\""] {
        assert!(home.body.contains(link), "{link}");
    }

    // /jobs: the job, its tasks, no run yet, the buttons.
    let jobs = admin.get("/jobs").await;
    assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.body);
    for text in [
        "HR to app tickets",
        "0 5 * * *",
        "Export HR people",
        "Open app tickets",
        "class=\"run-now\"",
        "class=\"dry-run\"",
    ] {
        assert!(jobs.body.contains(text), "{text}: {}", jobs.body);
    }
    assert!(jobs.body.contains("never"));

    // Run now through the form: to the run's page.
    let csrf = admin.csrf.clone();
    let r = admin
        .post_form("/jobs/Cycle/run", &[], csrf.as_deref())
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location = r.header("location");
    let id: i64 = location
        .strip_prefix("/job-runs/")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{location}"));
    // Without the CSRF token: refused, nothing runs.
    let r = admin.post_form("/jobs/Cycle/run", &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    wait_for(&mut admin, &format!("/api/job-runs/{id}")).await;

    // The run's page: the report as a table, the totals, the log; no polling once ended.
    let page = admin.get(&location).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for text in [
        "Run #",
        "id=\"report\"",
        "Compute app orders",
        "generated 3 orders",
        "Orders handed over (tickets)",
        "job &#x27;Cycle&#x27; succeeded",
        "state-succeeded",
    ] {
        assert!(page.body.contains(text), "{text}: {}", page.body);
    }
    assert!(!page.body.contains("data-poll"));
    assert!(!page.body.contains("http-equiv=\"refresh\""));

    // A run still under way polls (script) and refreshes (without script).
    let running = f
        .state
        .store()
        .start_job_run("Cycle", false)
        .await
        .expect("run");
    f.state
        .store()
        .append_job_log(
            running,
            "12:00:00 [2/5] Prepare HR (PrepareSynchronizationTask)\n",
        )
        .await
        .expect("log");
    let page = admin.get(&format!("/job-runs/{running}")).await;
    assert!(
        page.body
            .contains(&format!("data-poll=\"/api/job-runs/{running}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains("http-equiv=\"refresh\""));
    assert!(
        page.body.contains("task 2 of 5: Prepare HR"),
        "{}",
        page.body
    );
    let api = admin.get(&format!("/api/job-runs/{running}")).await.json();
    assert_eq!(api["progress"]["task"], 2);
    assert_eq!(api["report"], Value::Null);
    assert_eq!(
        admin.get("/job-runs/999999").await.status,
        StatusCode::NOT_FOUND
    );

    // The job's history.
    let history = admin.get("/jobs/Cycle").await;
    assert_eq!(history.status, StatusCode::OK);
    assert!(history.body.contains(&format!("href=\"/job-runs/{id}\"")));
    assert!(
        history
            .body
            .contains(&format!("href=\"/job-runs/{running}\""))
    );
    assert!(history.body.contains("3 generated"), "{}", history.body);

    // /tickets: what to do, and the Done / Failed form.
    let tickets = admin.get("/tickets").await;
    assert_eq!(tickets.status, StatusCode::OK);
    assert_eq!(tickets.body.matches("class=\"ticket\"").count(), 3);
    assert!(tickets.body.contains("class=\"done\""));
    assert!(tickets.body.contains("name=\"reason\""));
    let open = admin.get("/api/tickets").await.json();
    let first = open[0]["id"].as_i64().expect("id");
    let csrf = admin.csrf.clone();
    let closed = admin
        .post_form(
            &format!("/tickets/{first}/complete"),
            &[("outcome", "failed"), ("reason", "the manager said no")],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    assert!(closed.body.contains("closed: Errored"), "{}", closed.body);
    assert_eq!(closed.body.matches("class=\"ticket\"").count(), 2);
    // Failed without a reason: refused, the ticket stays open.
    let csrf = admin.csrf.clone();
    let refused = admin
        .post_form(
            &format!("/tickets/{}/complete", open[1]["id"]),
            &[("outcome", "failed"), ("reason", " ")],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("needs a reason"), "{}", refused.body);
    assert_eq!(refused.body.matches("class=\"ticket\"").count(), 2);

    // /orders: badges, the filter, the message of an errored order, the JSON link.
    let orders = admin.get("/orders").await;
    assert_eq!(orders.status, StatusCode::OK);
    assert_eq!(orders.body.matches("class=\"order\"").count(), 3);
    assert!(orders.body.contains("state-transmitted"));
    assert!(
        orders
            .body
            .contains(&format!("href=\"/api/orders/{first}\""))
    );
    let errored = admin
        .get("/orders?state=Errored&resourceType=App_Person")
        .await;
    assert_eq!(errored.body.matches("class=\"order\"").count(), 1);
    assert!(
        errored.body.contains("the manager said no"),
        "{}",
        errored.body
    );
    assert!(errored.body.contains("<option value=\"Errored\" selected>"));
    let bad = admin.get("/orders?state=Lost").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not an order state"));

    // A viewer sees the pages without any button.
    let mut viewer = user(&f, "vera", "viewer").await;
    let jobs = viewer.get("/jobs").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert!(jobs.body.contains("HR to app tickets"));
    assert!(!jobs.body.contains("run-now"));
    let tickets = viewer.get("/tickets").await;
    assert_eq!(tickets.body.matches("class=\"ticket\"").count(), 2);
    assert!(!tickets.body.contains("class=\"done\""));
    let csrf = viewer.csrf.clone();
    let refused = viewer
        .post_form(
            &format!("/tickets/{}/complete", open[1]["id"]),
            &[("outcome", "done")],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = viewer
        .post_form("/jobs/Cycle/run", &[], csrf.as_deref())
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        admin
            .get("/api/tickets")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn a_failed_run_shows_where_it_stopped_and_never_a_secret() {
    use crate::support::{SECRET, SECRET_LOGIN};
    // The quickstart: its directory export fails (nothing listens on port 9) with a secured
    // login and password in the settings.
    let f = Fixture::new().await;
    let mut admin = f.admin().await;
    let started = start(&mut admin, "Directory", false).await;
    let url = started["url"].as_str().expect("url").to_string();
    let run = wait_for(&mut admin, &url).await;
    assert_eq!(run["state"], "Failed", "{run}");
    let tasks = run["report"]["tasks"].as_array().expect("tasks");
    let failed = tasks
        .iter()
        .position(|t| t["name"] == "Export the directory")
        .expect("the directory's export");
    assert!(failed > 0);
    assert!(
        tasks[..failed].iter().all(|t| t["status"] == "Succeeded"),
        "{run}"
    );
    assert_eq!(tasks[failed]["status"], "Failed", "{run}");
    assert!(
        tasks[failed]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{run}"
    );
    assert!(
        tasks[failed + 1..].iter().all(|t| t["status"] == "Skipped"),
        "{run}"
    );
    let page = admin.get(&format!("/job-runs/{}", started["run"])).await;
    assert!(page.body.contains("status-failed"), "{}", page.body);
    assert!(
        page.body.contains("an earlier task failed"),
        "{}",
        page.body
    );
    for body in [
        run.to_string(),
        page.body,
        admin.get(&url).await.body,
        admin.get("/api/jobs").await.body,
        admin.get("/api/audit").await.body,
    ] {
        assert!(!body.contains(SECRET), "{body}");
        assert!(!body.contains(SECRET_LOGIN), "{body}");
    }

    // The viewer role is read-only for the older operations too.
    let mut viewer = user(&f, "vera", "viewer").await;
    for path in [
        "/api/connections/HRPeople/export",
        "/api/connections/HRPeople/refresh-schema",
        "/api/connections/HRPeople/check",
        "/api/connectors/HR/refresh-schemas",
    ] {
        let r = viewer.api(Method::POST, path, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    let connector = viewer.get("/connectors/HR").await;
    assert_eq!(connector.status, StatusCode::OK);
    assert!(!connector.body.contains("export-now"));
    assert!(connector.body.contains("Read only"));
    let connector = admin.get("/connectors/HR").await;
    assert!(connector.body.contains("export-now"));
    let me = viewer.get("/api/me").await.json();
    assert_eq!(me["role"], "viewer");
}

/// In Chromium, against a real server: a running run's page follows its log through the API
/// (the script, under the Content-Security-Policy) and shows the report once it ended; Run now
/// from the jobs page lands on the run's page, which ends on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_page_follows_the_run_in_chromium() {
    use crate::browser::{browser, click, driver, sign_in, wait_text};
    let d = driver();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = crate::support::prepare_conf(dir.path());
    let server = idlink_server::start(idlink_server::Options {
        agents: Default::default(),
        paths: Paths {
            config_dir: conf,
            settings: None,
            work_dir: dir.path().join("work"),
        },
        database: Location::Sqlite(dir.path().join("work/idlink.db")),
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: None,
        watch_every: Duration::from_millis(500),
        admin_password: Some(ADMIN_PASSWORD.into()),
        grace: Duration::from_secs(1),
        schedule: Default::default(),
    })
    .await
    .expect("server");
    let base = server.url();
    let store = server.state.store().clone();
    let stop = idlink_engine::CancellationToken::new();
    let serving = tokio::spawn(server.run(stop.clone()));
    let c = browser(&d).await;
    sign_in(&c, &base, "admin", ADMIN_PASSWORD).await;

    // A run under way (its row and first line, as the engine writes them).
    let run = store.start_job_run("Directory", false).await.expect("run");
    store
        .append_job_log(run, "12:00:00 [1/9] Export HR people (ExportTask)\n")
        .await
        .expect("log");
    c.goto(&format!("{base}job-runs/{run}"))
        .await
        .expect("run page");
    wait_text(&c, "task 1 of 9: Export HR people").await;
    // The log grows: the page shows it without a reload.
    store
        .append_job_log(run, "12:00:01 [2/9] Export HR organizations (ExportTask)\n")
        .await
        .expect("log");
    wait_text(&c, "task 2 of 9: Export HR organizations").await;
    // It ends: the page shows the report.
    let report = json!({
        "job": "Directory", "run": run, "dry_run": false, "state": "Succeeded", "duration": 1.5,
        "totals": { "exported_rows": 7, "inserted": 0, "updated": 0, "deleted": 0, "orders_generated": 0,
            "orders_executed": 0, "orders_errored": 0, "orders_transmitted": 0, "orders_verified": 0 },
        "tasks": [ { "kind": "ExportTask", "name": "Export HR people", "status": "Succeeded",
            "summary": "exported HRPeople: 4 rows in 1 table", "error": null, "duration": 0.5, "details": null } ],
    });
    store
        .finish_job_run(run, "Succeeded", &report.to_string())
        .await
        .expect("finish");
    let page = wait_text(&c, "id=\"report\"").await;
    assert!(
        page.contains("exported HRPeople: 4 rows in 1 table"),
        "{page}"
    );
    assert!(!page.contains("data-poll"), "{page}");

    // Run now from the jobs page: the run's page, then its end (the directory is unreachable).
    c.goto(&format!("{base}jobs")).await.expect("jobs");
    wait_text(&c, "Directory cycle").await;
    click(&c, "#job-Directory .run-now").await;
    let page = wait_text(&c, "id=\"report\"").await;
    assert!(page.contains("Export the directory"), "{page}");
    assert!(page.contains("state-failed"), "{page}");
    let url = c.current_url().await.expect("url");
    assert!(url.path().starts_with("/job-runs/"), "{url}");

    c.close().await.expect("close");
    stop.cancel();
    let _ = serving.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_a_run_and_a_start_marks_runs_left_running_interrupted() {
    let f = fixture().await;
    let conf = f.conf();
    let work = f.dir.path().join("work");
    let db = Location::Sqlite(work.join("idlink.db"));
    // A run left Running by a process that ended.
    let stale = f
        .state
        .store()
        .start_job_run("Cycle", false)
        .await
        .expect("run");
    f.state.store().close().await;
    let options = || idlink_server::Options {
        agents: Default::default(),
        paths: Paths {
            config_dir: conf.clone(),
            settings: None,
            work_dir: work.clone(),
        },
        database: db.clone(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: None,
        watch_every: Duration::from_secs(5),
        admin_password: None,
        grace: Duration::from_secs(5),
        schedule: Default::default(),
    };
    let server = idlink_server::start(options()).await.expect("server");
    let state = server.state.clone();
    let run = state
        .store()
        .job_run(stale)
        .await
        .expect("store")
        .expect("run");
    assert_eq!(run.state, "Interrupted");

    // A run started, then the server stopped at once: the stop waits for the run to end.
    let stop = idlink_engine::CancellationToken::new();
    let serving = tokio::spawn(server.run(stop.clone()));
    let admin = idlink_server::auth::Principal {
        id: 1,
        name: "admin".into(),
        role: idlink_server::auth::Role::Administrator,
        csrf: None,
    };
    let started = idlink_server::jobs::start_run(&state, &admin, "Cycle", false)
        .await
        .expect("started");
    stop.cancel();
    serving.await.expect("join").expect("served");
    let store = Store::open(&db).await.expect("store");
    let run = store
        .job_run(started["run"].as_i64().expect("id"))
        .await
        .expect("store")
        .expect("run");
    assert_eq!(run.state, "Succeeded", "{}", run.log);
    store.close().await;
}
