//! Provisioning (issue #12) against real stores (SQLite, PostgreSQL): orders from the rules,
//! adoption by correlation, no duplicate while an order is open, fulfill from the store,
//! verification by the next synchronization, Modified with only the changed property, Deleted
//! when the owner goes, navigation rules as `_add` / `_remove`, thresholds, dry runs, tickets.

use std::sync::Arc;

use idlink_engine::dispatch::DispatchOptions;
use idlink_engine::provision::{ProvisionOptions, ProvisionReport};
use idlink_engine::sync::{SyncMode, SyncOptions, SyncReport};
use idlink_engine::{CancellationToken, Engine, EngineError};
use idlink_model::SettingsSource;
use idlink_packages::Registry;
use idlink_packages::api::{ChangeType, NoProgress};
use idlink_store::{Location, OrderFilter, OrderState, Store};

const CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="HR" DisplayName_L1="HR" />
  <Connection Identifier="HRP" DisplayName_L1="People" Connector="HR" Package="Usercube.CSV@0000001" />
  <Connection Identifier="HRO" DisplayName_L1="Orgs" Connector="HR" Package="Usercube.CSV@0000001" />
  <EntityType Identifier="Person" DisplayName_L1="Person">
    <Property Identifier="Id" DisplayName_L1="Id" IsKey="true" />
    <Property Identifier="First" DisplayName_L1="First" />
    <Property Identifier="Mail" DisplayName_L1="Mail" />
    <Property Identifier="Org" DisplayName_L1="Org" Type="ForeignKey" />
  </EntityType>
  <EntityType Identifier="Org" DisplayName_L1="Org">
    <Property Identifier="Code" DisplayName_L1="Code" IsKey="true" />
    <Property Identifier="Name" DisplayName_L1="Name" />
    <Property Identifier="Members" DisplayName_L1="Members" Type="ForeignKey" />
  </EntityType>
  <EntityAssociation Identifier="Person_Org" DisplayName_L1="Org of a person"
                     Property1="Person:Org" Property2="Org:Members" IsProperty2Collection="true" />
  <EntityTypeMapping Identifier="Person" Connector="HR" ConnectionTable="HRP">
    <Property Identifier="Id" ConnectionColumn="id" IsPrimaryKey="true" />
    <Property Identifier="First" ConnectionColumn="first" />
    <Property Identifier="Mail" ConnectionColumn="mail" />
  </EntityTypeMapping>
  <EntityTypeMapping Identifier="Org" Connector="HR" ConnectionTable="HRO">
    <Property Identifier="Code" ConnectionColumn="code" IsPrimaryKey="true" />
    <Property Identifier="Name" ConnectionColumn="name" />
  </EntityTypeMapping>
  <EntityAssociationMapping Identifier="Person_Org" Connector="HR" ConnectionTable="HRP"
                            Column1="id" EntityPropertyMapping1="Person:Id"
                            Column2="org" EntityPropertyMapping2="Org:Code" />

  <Connector Identifier="App" DisplayName_L1="App" />
  <Connection Identifier="APPX" DisplayName_L1="App accounts" Connector="App" Package="Usercube.CSV@0000001" />
  <Connection Identifier="APPG" DisplayName_L1="App groups" Connector="App" Package="Usercube.CSV@0000001" />
  <Connection Identifier="APPM" DisplayName_L1="App members" Connector="App" Package="Usercube.CSV@0000001" />
  <Connection Identifier="APPF" DisplayName_L1="App fulfill" Connector="App" Package="Usercube.FulfillToFile@0000001" />
  <Connection Identifier="APPT" DisplayName_L1="App tickets" Connector="App" Package="Usercube.Manual@0000001" />
  <EntityType Identifier="Account" DisplayName_L1="Account">
    <Property Identifier="login" DisplayName_L1="login" IsKey="true" />
    <Property Identifier="name" DisplayName_L1="name" />
    <Property Identifier="mail" DisplayName_L1="mail" />
    <Property Identifier="dept" DisplayName_L1="dept" />
    <Property Identifier="groups" DisplayName_L1="groups" Type="ForeignKey" />
  </EntityType>
  <EntityType Identifier="Group" DisplayName_L1="Group">
    <Property Identifier="code" DisplayName_L1="code" IsKey="true" />
    <Property Identifier="members" DisplayName_L1="members" Type="ForeignKey" />
  </EntityType>
  <EntityAssociation Identifier="Account_Groups" DisplayName_L1="Groups of an account"
                     Property1="Account:groups" Property2="Group:members"
                     IsProperty1Collection="true" IsProperty2Collection="true" />
  <EntityTypeMapping Identifier="Account" Connector="App" ConnectionTable="APPX">
    <Property Identifier="login" ConnectionColumn="login" IsPrimaryKey="true" />
    <Property Identifier="name" ConnectionColumn="name" />
    <Property Identifier="mail" ConnectionColumn="mail" />
    <Property Identifier="dept" ConnectionColumn="dept" />
  </EntityTypeMapping>
  <EntityTypeMapping Identifier="Group" Connector="App" ConnectionTable="APPG">
    <Property Identifier="code" ConnectionColumn="code" IsPrimaryKey="true" />
  </EntityTypeMapping>
  <EntityAssociationMapping Identifier="Account_Groups" Connector="App" ConnectionTable="APPM"
                            Column1="login" EntityPropertyMapping1="Account:login"
                            Column2="group" EntityPropertyMapping2="Group:code" />

  <ResourceType Identifier="Acc" DisplayName_L1="App account" SourceEntityType="Person"
                TargetEntityType="Account" AllowAdd="true" AllowRemove="true" RT_THRESHOLDS>
    <ScalarRule Property="login" Binding="Id" />
    <ScalarRule Property="name" Binding="First" />
    <ScalarRule Property="mail" Binding="Mail" />
    <ScalarRule Property="dept" Binding="Org.Name" />
    <NavigationRule Property="groups" Binding="Org.Code" />
  </ResourceType>
  <ResourceCorrelationRule ResourceType="Acc" TargetBinding="mail" SourceBinding="Mail" />
  <ResourceTypeMapping Identifier="Acc" Connection="RT_CONNECTION" />

  <Job Identifier="Loop" DisplayName_L1="Loop">
    <ExportTask DisplayName_L1="Export people" Connection="HRP" />
    <ExportTask DisplayName_L1="Export organizations" Connection="HRO" />
    <PrepareSynchronizationTask DisplayName_L1="Prepare HR" Connector="HR" SynchronizationMode="Complete" />
    <SynchronizeTask DisplayName_L1="Synchronize HR" Connector="HR" />
    <GenerateProvisioningOrdersTask DisplayName_L1="Compute orders" ResourceTypes="Acc" />
    <FulfillTask DisplayName_L1="Fulfill"><TaskResourceType ResourceType="Acc" /></FulfillTask>
  </Job>
</ConfigurationFile>
"#;

const SETTINGS: &str = r#"{
  "SourcesRootPaths": ["data"],
  "Connections": {
    "HRP": { "Path": "data/p.csv" },
    "HRO": { "Path": "data/o.csv" },
    "APPX": { "Path": "data/x.csv" },
    "APPG": { "Path": "data/g.csv" },
    "APPM": { "Path": "data/m.csv" },
    "APPF": { "OutputPath": "data/orders" }
  }
}"#;

struct Site {
    dir: tempfile::TempDir,
    store: Store,
    thresholds: String,
    connection: &'static str,
}

impl Site {
    async fn new(pg: Option<(&idlink_test_support::PostgresServer, &str)>) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = match pg {
            None => Location::default_in(&dir.path().join("work")),
            Some((pg, db)) => {
                pg.execute("postgres", &format!("CREATE DATABASE {db}"))
                    .expect("create db");
                Location::parse(&pg.url(db)).expect("url")
            }
        };
        std::fs::create_dir_all(dir.path().join("work")).expect("work");
        let store = Store::open(&location).await.expect("store");
        Site {
            dir,
            store,
            thresholds: String::new(),
            connection: "APPF",
        }
    }

    fn engine(&self) -> Engine {
        let conf = self.dir.path().join("conf");
        std::fs::create_dir_all(conf.join("data")).expect("conf");
        let xml = CONFIG
            .replace("RT_THRESHOLDS", &self.thresholds)
            .replace("RT_CONNECTION", self.connection);
        std::fs::write(conf.join("c.xml"), xml).expect("xml");
        std::fs::write(conf.join("appsettings.agent.json"), SETTINGS).expect("json");
        let registry = Registry::new();
        let checked = idlink_model::load_and_check(
            &conf,
            SettingsSource {
                path: &conf.join("appsettings.agent.json"),
                explicit: true,
            },
            std::iter::empty::<(String, String)>(),
            &registry,
        )
        .expect("load");
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        Engine::new(checked, registry, &conf, &self.dir.path().join("work"))
    }

    fn table(&self, name: &str, text: &str) {
        let dir = self.dir.path().join("work/ExportOutput");
        std::fs::create_dir_all(&dir).expect("out");
        std::fs::write(dir.join(format!("{name}.csv")), text).expect("table");
    }

    /// The HR system: people (id, first, mail, org) and the organizations.
    fn hr(&self, people: &str) {
        self.table("HRO", "code,name\nENG,Engineering\nOPS,Operations\n");
        self.table("HRP", &format!("id,first,mail,org\n{people}"));
    }

    /// The application as its export shows it.
    fn app(&self, accounts: &str, members: &str) {
        self.table("APPX", &format!("login,name,mail,dept\n{accounts}"));
        self.table("APPG", "code\nENG\nOPS\n");
        self.table("APPM", &format!("login,group\n{members}"));
    }

    async fn sync(&self, connector: &str) {
        let mode = if self
            .store
            .count_resources(if connector == "HR" { "Person" } else { "Group" })
            .await
            .expect("count")
            == 0
        {
            SyncMode::Initial
        } else {
            SyncMode::Complete
        };
        self.sync_in(connector, mode).await.expect("sync");
    }

    /// A forced run of `connector` in `mode`, with its report.
    async fn sync_in(&self, connector: &str, mode: SyncMode) -> Result<SyncReport, EngineError> {
        self.engine()
            .sync(
                &self.store,
                connector,
                &SyncOptions { mode, force: true },
                &NoProgress,
                &CancellationToken::new(),
            )
            .await
    }

    async fn provision(&self, dry_run: bool, force: bool) -> Result<ProvisionReport, EngineError> {
        self.engine()
            .provision(
                &self.store,
                &ProvisionOptions {
                    resource_types: Vec::new(),
                    dry_run,
                    force,
                },
                &NoProgress,
            )
            .await
    }

    async fn states(&self) -> Vec<String> {
        self.store
            .orders(&OrderFilter::default())
            .await
            .expect("orders")
            .into_iter()
            .map(|o| {
                format!(
                    "{} {} {}",
                    o.owner_key.unwrap_or_default(),
                    o.change_type,
                    o.state
                )
            })
            .collect()
    }

    async fn fulfill(&self) -> idlink_engine::dispatch::DispatchReport {
        self.engine()
            .fulfill_pending(
                &self.store,
                &DispatchOptions {
                    connection: Some(self.connection.into()),
                    ..DispatchOptions::default()
                },
                Arc::new(NoProgress),
            )
            .await
            .expect("fulfill")
    }
}

fn pg() -> &'static idlink_test_support::PostgresServer {
    crate::sync::pg()
}

async fn the_whole_loop(site: Site) {
    // HR: three people; the application already has an account for p3 (same mail): adopted.
    site.hr("p1,Ada,ada@x,ENG\np2,Alan,alan@x,ENG\np3,Grace,grace@x,OPS\n");
    site.app("g.hopper,Grace,grace@x,Operations\n", "g.hopper,OPS\n");
    site.sync("HR").await;
    site.sync("App").await;

    let dry = site.provision(true, false).await.expect("dry run");
    assert_eq!(dry.stored, 0);
    assert!(site.states().await.is_empty(), "a dry run stores nothing");

    let r = site.provision(false, false).await.expect("provision");
    let acc = &r.resource_types[0];
    assert_eq!(
        (acc.added, acc.modified, acc.deleted, acc.adopted),
        (2, 1, 0, 1),
        "{acc:?}"
    );
    let added: Vec<_> = r
        .orders
        .iter()
        .filter(|o| o.change_type == ChangeType::Added)
        .collect();
    let p1 = &added[0].changes;
    assert_eq!(p1["login"], "p1");
    assert_eq!(
        p1["dept"], "Engineering",
        "a binding through an association"
    );
    assert_eq!(p1["groups_add"], serde_json::json!([{"code": "ENG"}]));
    // The adopted account: only what differs (the login), never a second account.
    let modified = r
        .orders
        .iter()
        .find(|o| o.change_type == ChangeType::Modified)
        .expect("modified");
    let keys: Vec<&String> = modified.changes.keys().collect();
    assert_eq!(keys, ["login"], "{:?}", modified.changes);
    assert_eq!(
        modified.resource.as_ref().expect("resource")["login"],
        "g.hopper"
    );

    // While the orders are open, a second run generates nothing.
    let again = site.provision(false, false).await.expect("again");
    assert_eq!(again.stored, 0, "{:?}", again.resource_types);
    assert_eq!(again.resource_types[0].waiting, 3);

    // Fulfill from the store: each order is written and recorded Executed.
    let f = site.fulfill().await;
    assert_eq!(f.connections[0].executed, 3, "{f:?}");
    let files = std::fs::read_dir(site.dir.path().join("conf/data/orders"))
        .expect("orders folder")
        .count();
    assert_eq!(files, 3);
    assert!(site.states().await.iter().all(|s| s.ends_with("Executed")));

    // The system applied two of them: the next synchronization verifies those.
    site.app(
        "p1,Ada,ada@x,Engineering\np2,Alan,alan@x,Engineering\ng.hopper,Grace,grace@x,Operations\n",
        "p1,ENG\ng.hopper,OPS\n",
    );
    site.sync("App").await;
    let states = site.states().await;
    assert!(
        states.contains(&"p1 Added Verified".to_string()),
        "{states:?}"
    );
    assert!(
        states.contains(&"p2 Added Executed".to_string()),
        "p2 lacks its group: {states:?}"
    );
    assert!(
        states.contains(&"p3 Modified Executed".to_string()),
        "{states:?}"
    );
    let waiting = site
        .store
        .orders(&OrderFilter {
            states: vec![OrderState::Executed],
            ..OrderFilter::default()
        })
        .await
        .expect("orders");
    assert!(
        waiting
            .iter()
            .any(|o| o.message.contains("does not link 'ENG'")),
        "{waiting:?}"
    );
    site.app(
        "p1,Ada,ada@x,Engineering\np2,Alan,alan@x,Engineering\np3,Grace,grace@x,Operations\n",
        "p1,ENG\np2,ENG\np3,OPS\n",
    );
    site.sync("App").await;
    assert!(
        site.states().await.iter().all(|s| s.ends_with("Verified")),
        "{:?}",
        site.states().await
    );

    // A rerun with no change: no order.
    let r = site.provision(false, false).await.expect("rerun");
    assert_eq!(r.stored, 0, "{:?}", r.resource_types);
    assert_eq!(r.resource_types[0].unchanged, 3);

    // One HR value changed: exactly one Modified order, carrying only that property.
    site.hr("p1,Ada,ada@x,ENG\np2,Alan,alan.turing@x,ENG\np3,Grace,grace@x,OPS\n");
    site.sync("HR").await;
    let r = site.provision(false, false).await.expect("one change");
    assert_eq!(r.orders.len(), 1, "{:?}", r.orders);
    assert_eq!(r.orders[0].change_type, ChangeType::Modified);
    assert_eq!(
        r.orders[0].changes,
        serde_json::json!({"mail": "alan.turing@x"})
            .as_object()
            .cloned()
            .expect("map")
    );
    site.fulfill().await;
    site.app(
        "p1,Ada,ada@x,Engineering\np2,Alan,alan.turing@x,Engineering\np3,Grace,grace@x,Operations\n",
        "p1,ENG\np2,ENG\np3,OPS\n",
    );
    site.sync("App").await;

    // A move to another organization: the group link is added and the old one removed.
    site.hr("p1,Ada,ada@x,OPS\np2,Alan,alan.turing@x,ENG\np3,Grace,grace@x,OPS\n");
    site.sync("HR").await;
    let r = site.provision(false, false).await.expect("move");
    assert_eq!(r.orders.len(), 1, "{:?}", r.orders);
    assert_eq!(
        r.orders[0].changes,
        serde_json::json!({"dept": "Operations", "groups_add": [{"code": "OPS"}], "groups_remove": [{"code": "ENG"}]})
            .as_object()
            .cloned()
            .expect("map")
    );
    site.fulfill().await;
    site.app(
        "p1,Ada,ada@x,Operations\np2,Alan,alan.turing@x,Engineering\np3,Grace,grace@x,Operations\n",
        "p1,OPS\np2,ENG\np3,OPS\n",
    );
    site.sync("App").await;

    // A person removed: one Deleted order for the account the store knows is theirs.
    site.hr("p1,Ada,ada@x,OPS\np3,Grace,grace@x,OPS\n");
    site.sync("HR").await;
    let r = site.provision(false, false).await.expect("leaver");
    assert_eq!(r.orders.len(), 1, "{:?}", r.orders);
    assert_eq!(r.orders[0].change_type, ChangeType::Deleted);
    assert_eq!(
        r.orders[0].resource.as_ref().expect("resource")["login"],
        "p2"
    );
    site.fulfill().await;
    site.app(
        "p1,Ada,ada@x,Operations\np3,Grace,grace@x,Operations\n",
        "p1,OPS\np3,OPS\n",
    );
    site.sync("App").await;
    let states = site.states().await;
    assert!(states.iter().all(|s| s.ends_with("Verified")), "{states:?}");
    // Gone with its owner: no order comes back for it.
    let r = site.provision(false, false).await.expect("after");
    assert_eq!(r.stored, 0, "{:?}", r.orders);
}

#[tokio::test]
async fn provisioning_loop_on_sqlite() {
    the_whole_loop(Site::new(None).await).await;
}

#[tokio::test]
async fn provisioning_loop_on_postgres() {
    the_whole_loop(Site::new(Some((pg(), "provision_loop"))).await).await;
}

#[tokio::test]
async fn a_provisioning_threshold_blocks_the_run_and_force_stores_it() {
    let mut site = Site::new(None).await;
    site.thresholds = r#"MaximumInsert="1""#.into();
    site.hr("p1,Ada,ada@x,ENG\np2,Alan,alan@x,ENG\n");
    site.app("", "");
    site.sync("HR").await;
    site.sync("App").await;
    let e = site.provision(false, false).await.expect_err("blocked");
    let message = e.to_string();
    assert!(
        message.contains("MaximumInsert = 1") && message.contains("no order was stored"),
        "{message}"
    );
    assert!(site.states().await.is_empty());
    let r = site.provision(false, true).await.expect("forced");
    assert_eq!(r.stored, 2);
    assert_eq!(r.resource_types[0].exceeded.len(), 1);
}

#[tokio::test]
async fn manual_orders_become_tickets_closed_by_a_person() {
    let mut site = Site::new(None).await;
    site.connection = "APPT";
    site.hr("p1,Ada,ada@x,ENG\np2,Alan,alan@x,ENG\n");
    site.app("", "");
    site.sync("HR").await;
    site.sync("App").await;
    site.provision(false, false).await.expect("provision");
    let f = site.fulfill().await;
    assert_eq!(f.connections[0].transmitted, 2, "{f:?}");
    let engine = site.engine();
    let open = idlink_engine::tickets::list(&engine, &site.store, false)
        .await
        .expect("tickets");
    assert_eq!(open.len(), 2);
    assert!(
        open[0]
            .message
            .contains("create a Acc resource for owner 'p1'"),
        "{}",
        open[0].message
    );
    let done = idlink_engine::tickets::complete(&engine, &site.store, open[0].id, None)
        .await
        .expect("done");
    assert_eq!(done, OrderState::Executed);
    let failed =
        idlink_engine::tickets::complete(&engine, &site.store, open[1].id, Some("no licence left"))
            .await
            .expect("failed");
    assert_eq!(failed, OrderState::Errored);
    let again = idlink_engine::tickets::complete(&engine, &site.store, open[1].id, None).await;
    assert!(again.expect_err("closed").to_string().contains("not open"));
    let o = site
        .store
        .order(open[1].id)
        .await
        .expect("order")
        .expect("there");
    assert!(o.message.contains("no licence left"), "{}", o.message);
    assert!(
        idlink_engine::tickets::list(&engine, &site.store, false)
            .await
            .expect("tickets")
            .is_empty()
    );
}

impl Site {
    async fn run_job(
        &self,
        dry_run: bool,
        cancel: &CancellationToken,
    ) -> Result<idlink_engine::jobs::JobReport, EngineError> {
        let data = self.dir.path().join("conf/data");
        std::fs::create_dir_all(&data).expect("data");
        std::fs::write(
            data.join("p.csv"),
            "id,first,mail,org\np1,Ada,ada@x,ENG\np2,Alan,alan@x,OPS\n",
        )
        .expect("people");
        std::fs::write(
            data.join("o.csv"),
            "code,name\nENG,Engineering\nOPS,Operations\n",
        )
        .expect("orgs");
        let lines = std::sync::Mutex::new(Vec::<String>::new());
        let log = |l: &str| lines.lock().expect("lock").push(l.to_string());
        self.engine()
            .run_job(
                &self.store,
                "Loop",
                &idlink_engine::jobs::JobOptions {
                    dry_run,
                    ..Default::default()
                },
                Arc::new(NoProgress),
                &log,
                cancel,
            )
            .await
    }
}

#[tokio::test]
async fn regression_an_association_table_with_bytes_that_are_not_utf8_still_links_and_one_naming_a_column_twice_is_refused()
 {
    let site = Site::new(None).await;
    site.app(
        "ada,Ada,ada@x,ENG\nbob,Bob,bob@x,OPS\n",
        "ada,ENG\nbob,OPS\n",
    );
    site.sync("App").await;
    // A Latin-1 byte in a column no mapping reads, and in a login: the run failed ("CSV parse
    // error: ... invalid utf-8"), leaving every link as it was.
    let dir = site.dir.path().join("work/ExportOutput");
    std::fs::write(
        dir.join("APPM.csv"),
        b"login,group,note\nada,ENG,caf\xe9\nbob,OPS,\n\xe9ve,ENG,\nada,OPS,\n",
    )
    .expect("members");
    let r = site.sync_in("App", SyncMode::Complete).await.expect("sync");
    let c = &r.associations[0].counts;
    // ada's new group is linked; the login that is not UTF-8 names no account.
    assert_eq!(
        (c.before, c.added, c.removed, c.unresolved),
        (2, 1, 0, 1),
        "{c:?}"
    );
    // A column the association reads, named twice (the first was read, whichever was meant).
    std::fs::write(dir.join("APPM.csv"), "login,group,login\nada,ENG,bob\n").expect("members");
    let e = site
        .sync_in("App", SyncMode::Complete)
        .await
        .expect_err("login twice")
        .to_string();
    assert!(
        e.contains("has column 'login' twice (columns 1 and 3")
            && e.contains("association mapping 'Account_Groups'"),
        "{e}"
    );
}

#[tokio::test]
async fn a_job_runs_its_tasks_in_order_and_records_the_run() {
    let site = Site::new(None).await;
    site.app("", "");
    site.sync("App").await;
    // A dry run changes nothing: no resource, no order.
    let r = site
        .run_job(true, &CancellationToken::new())
        .await
        .expect("dry run");
    assert_eq!(r.state, "Succeeded");
    assert!(
        r.tasks.iter().any(|t| t.status == "Planned"),
        "{:?}",
        r.tasks
    );
    assert_eq!(
        site.store.count_resources("Person").await.expect("count"),
        0
    );
    assert!(site.states().await.is_empty());

    let r = site
        .run_job(false, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(r.state, "Succeeded", "{:#?}", r.tasks);
    let statuses: Vec<&str> = r.tasks.iter().map(|t| t.status).collect();
    assert_eq!(statuses, ["Succeeded"; 6]);
    assert_eq!(
        (
            r.totals.exported_rows,
            r.totals.inserted,
            r.totals.orders_generated,
            r.totals.orders_executed
        ),
        (4, 4, 2, 2)
    );
    let runs = site.store.job_runs(Some("Loop"), 10).await.expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].state, "Succeeded");
    assert!(
        runs[0].log.contains("[5/6] Compute orders"),
        "{}",
        runs[0].log
    );
    assert!(
        runs[0]
            .report
            .as_deref()
            .is_some_and(|j| j.contains("\"orders_executed\":2"))
    );

    // Two runs of one job never overlap.
    let held = site
        .store
        .lock_connector("job:Loop", "test")
        .await
        .expect("lock");
    let e = site
        .run_job(false, &CancellationToken::new())
        .await
        .expect_err("busy");
    assert!(e.to_string().contains("already running"), "{e}");
    held.release().await.expect("release");

    // Cancelled: the run stops before its tasks and says it was interrupted.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = site.run_job(false, &cancel).await.expect("cancelled run");
    assert_eq!(r.state, "Interrupted", "{:#?}", r.tasks);
    assert!(r.tasks.iter().all(|t| t.status == "Skipped"));
}

/// A fulfill killed after it claimed its orders (Pending -> Transmitted) but before it recorded
/// their results left them Transmitted for ever: never sent again, and blocking new orders of
/// their owners. The next fulfill sends them again (fulfill is idempotent); tickets stay.
#[tokio::test]
async fn regression_orders_a_killed_fulfill_left_transmitted_are_sent_again() {
    let site = Site::new(None).await;
    site.hr("p1,Ada,ada@x,ENG\np2,Alan,alan@x,ENG\n");
    site.app("", "");
    site.sync("HR").await;
    site.sync("App").await;
    site.provision(false, false).await.expect("provision");
    let ids: Vec<i64> = site
        .store
        .orders(&OrderFilter::default())
        .await
        .expect("orders")
        .iter()
        .map(|o| o.id)
        .collect();
    // What the killed fulfill did before it died.
    site.store
        .claim_orders(&ids, OrderState::Pending, OrderState::Transmitted)
        .await
        .expect("claim");
    let f = site.fulfill().await;
    assert_eq!(f.connections[0].executed, 2, "{f:?}");
    assert!(
        site.states().await.iter().all(|s| s.ends_with("Executed")),
        "{:?}",
        site.states().await
    );
}
