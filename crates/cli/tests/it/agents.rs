//! Remote agents end to end: `idlink serve` and `idlink agent` as two processes on loopback.
//! An export on the agent whose tables reach the server and synchronize (the quickstart job with
//! its HR connector on agent Paris); a secured value typed through the API encrypted to the
//! agent's key and seen in clear by the agent only; the agent killed mid-export (its lease
//! expires, the task is retried once); the server killed and restarted mid-task (no leased work
//! lost); a revoked agent refused; an agent asking for another agent's work refused; two servers
//! on one PostgreSQL store sharing 100 queued tasks, each done once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Served, start, start_on, stop};
use crate::support::{copy_dir, repo_root};

const ADMIN_PASSWORD: &str = "a-long-enough-password";
const SECRET: &str = "Agent-only-S3cret-value-4711";

/// The quickstart with its HR connector on agent `Paris` (absolute paths, so the agent reads
/// the same files), agents `Lyon` and `Nice` declared, and connection `Slow` on HR: a script
/// export that records the options it receives on stdin and sleeps as `sleep-secs` says.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    copy_dir(&repo_root().join("examples/quickstart"), &conf);
    let data = conf.join("data");
    let hr = std::fs::read_to_string(conf.join("hr.xml")).expect("hr.xml");
    let hr = hr
        .replace(
            r#"<Connector Identifier="HR" DisplayName_L1="Human resources" Agent="Local""#,
            r#"<Connector Identifier="HR" DisplayName_L1="Human resources" Agent="Paris""#,
        )
        .replace(
            "  <!-- Schemas, as Refresh Schema writes them. -->",
            "  <Connection Identifier=\"Slow\" DisplayName_L1=\"Slow script\" Connector=\"HR\" Package=\"Usercube.PowershellSync@0000001\" />\n  <!-- Schemas, as Refresh Schema writes them. -->",
        );
    assert!(
        hr.contains("Agent=\"Paris\"") && hr.contains("Slow"),
        "{hr}"
    );
    std::fs::write(conf.join("hr.xml"), hr).expect("writes");
    // The applications database is on Paris too: the job's fulfill goes through the agent.
    let apps = std::fs::read_to_string(conf.join("apps.xml")).expect("apps.xml");
    let apps = apps.replace(
        r#"<Connector Identifier="Apps" DisplayName_L1="Applications" Agent="Local""#,
        r#"<Connector Identifier="Apps" DisplayName_L1="Applications" Agent="Paris""#,
    );
    assert!(apps.contains("Agent=\"Paris\""), "{apps}");
    std::fs::write(conf.join("apps.xml"), apps).expect("writes");
    let agents = std::fs::read_to_string(conf.join("agent.xml")).expect("agent.xml");
    let agents = agents.replace(
        "</ConfigurationFile>",
        "  <Agent Identifier=\"Paris\" DisplayName_L1=\"Paris\" />\n  <Agent Identifier=\"Lyon\" DisplayName_L1=\"Lyon\" />\n</ConfigurationFile>",
    );
    std::fs::write(conf.join("agent.xml"), agents).expect("writes");
    let script = dir.path().join("slow.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\ncat > '{d}/stdin-seen.txt'\nsleep \"$(cat '{d}/sleep-secs' 2>/dev/null || echo 0)\"\nprintf 'id,name\\n1,one\\n2,two\\n' > \"${{1}}data.csv\"\n",
            d = dir.path().display()
        ),
    )
    .expect("writes");
    Command::new("chmod")
        .args(["+x", &script.display().to_string()])
        .status()
        .expect("chmod");
    let settings = std::fs::read_to_string(conf.join("appsettings.agent.json")).expect("settings");
    let settings = settings
        .replace(
            r#""SourcesRootPaths": ["data"]"#,
            &format!(
                r#""SourcesRootPaths": ["{}", "{}"]"#,
                data.display(),
                dir.path().display()
            ),
        )
        .replace(
            r#""Path": "data/hr_people.csv""#,
            &format!(r#""Path": "{}/hr_people.csv""#, data.display()),
        )
        .replace(
            r#""Path": "data/hr_organizations.csv""#,
            &format!(r#""Path": "{}/hr_organizations.csv""#, data.display()),
        )
        .replace(
            "sqlite:data/apps.db",
            &format!("sqlite:{}/apps.db", dir.path().display()),
        )
        .replacen(
            r#""Connections": {"#,
            &format!(
                r#""Connections": {{
    "Slow": {{ "PowerShellScriptPath": "{}" }},"#,
                script.display()
            ),
            1,
        );
    std::fs::write(conf.join("appsettings.agent.json"), settings).expect("writes");
    dir
}

/// An API token of `admin`, written into the store as `idlink` would.
fn admin_token(database: &str) -> String {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let location = idlink_store::Location::parse(database).expect("location");
        let store = idlink_store::Store::open(&location).await.expect("store");
        let admin = store
            .user_by_name("admin")
            .await
            .expect("reads")
            .expect("admin exists");
        let token = format!("test-token-{}", std::process::id());
        store
            .create_api_token(&idlink_server::auth::token_hash(&token), admin.id, "tests")
            .await
            .expect("token");
        store.close().await;
        token
    })
}

/// Calls the API with curl: the status and the JSON body (Null when there is none).
fn api(url: &str, method: &str, path: &str, bearer: &str, body: Option<&Value>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        // The test's own administration channel; the agents verify the certificate.
        .args(if url.starts_with("https") {
            &["-k"][..]
        } else {
            &[][..]
        })
        .args(["-H", &format!("Authorization: Bearer {bearer}")]);
    if let Some(b) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &b.to_string(),
        ]);
    }
    cmd.arg(format!("{}{}", url.trim_end_matches('/'), path));
    let out = cmd
        .output()
        .expect("curl is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

struct AgentProcess {
    child: Child,
    stderr: PathBuf,
}

/// A test that fails does not leave its agent running.
impl Drop for AgentProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl AgentProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn kill(self) {
        drop(self);
    }
}

/// Starts `idlink agent` in `dir` (its key `<agent>.key`, its folder `work-<agent>`), over
/// plain HTTP to loopback.
fn start_agent(dir: &Path, url: &str, agent: &str, token: Option<&str>) -> AgentProcess {
    start_agent_with(dir, url, agent, token, &["--insecure-loopback"])
}

fn start_agent_with(
    dir: &Path,
    url: &str,
    agent: &str,
    token: Option<&str>,
    extra: &[&str],
) -> AgentProcess {
    let stderr = dir.join(format!(
        "agent-{agent}-{}.log",
        Instant::now().elapsed().as_nanos()
    ));
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("idlink"));
    cmd.current_dir(dir)
        .args(["agent", "--server", url, "--agent", agent])
        .args([
            "--key",
            &format!("{agent}.key"),
            "--work",
            &format!("work-{agent}"),
        ])
        .args(extra)
        .args(["--wait", "1"])
        .env_remove("IDLINK_ENROL_TOKEN")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("log file"));
    if let Some(t) = token {
        cmd.args(["--enrol-token", t]);
    }
    AgentProcess {
        child: cmd.spawn().expect("agent starts"),
        stderr,
    }
}

/// Polls `f` every 100 ms until it gives `Some`, or panics after `secs` with `what`.
fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn task(url: &str, token: &str, id: i64) -> Value {
    api(url, "GET", &format!("/api/agent-tasks/{id}"), token, None).1
}

fn queue(url: &str, token: &str, connection: &str, kind: &str) -> i64 {
    let (status, t) = api(
        url,
        "POST",
        "/api/agent-tasks",
        token,
        Some(&json!({ "connection": connection, "kind": kind })),
    );
    assert_eq!(status, 202, "{t}");
    t["id"].as_i64().expect("an id")
}

fn wait_done(url: &str, token: &str, id: i64, secs: u64) -> Value {
    until(secs, &format!("task {id} to end"), || {
        let t = task(url, token, id);
        matches!(t["state"].as_str(), Some("Done" | "Errored")).then_some(t)
    })
}

fn enrolment_token(url: &str, token: &str, agent: &str) -> String {
    let (status, t) = api(
        url,
        "POST",
        "/api/agent-tokens",
        token,
        Some(&json!({ "agent": agent })),
    );
    assert_eq!(status, 201, "{t}");
    t["token"].as_str().expect("token").to_string()
}

fn approved(url: &str, token: &str, agent: &str) -> bool {
    let (_, list) = api(url, "GET", "/api/agents", token, None);
    list["agents"].as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x["agent"] == agent && x["state"] == "Approved")
    })
}

fn server_stderr(s: Served) -> String {
    stop(s).1
}

fn read_all(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

#[test]
fn an_export_on_a_remote_agent_reaches_the_server_synchronizes_and_its_secret_stays_with_the_agent()
{
    let dir = setup();
    let s = start(
        dir.path(),
        &[],
        &[("IDLINK_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let token = admin_token(&dir.path().join("work/idlink.db").display().to_string());
    let mut responses = String::new();

    // Enrolment with a one-time token: approved at once.
    let t = enrolment_token(&s.url, &token, "Paris");
    let agent = start_agent(dir.path(), &s.url, "Paris", Some(&t));
    until(30, "Paris to be approved", || {
        approved(&s.url, &token, "Paris").then_some(())
    });

    // A secured value typed for a connection of the remote agent: encrypted to its key.
    let (status, r) = api(
        &s.url,
        "PATCH",
        "/api/connections/Slow/settings",
        &token,
        Some(&json!({ "Options": { "Password": SECRET } })),
    );
    responses.push_str(&r.to_string());
    assert_eq!(status, 200, "{r}");
    let enc = std::fs::read_to_string(dir.path().join("conf/appsettings.encrypted.agent.json"))
        .expect("encrypted settings");
    assert!(enc.contains("Slow") && !enc.contains(SECRET), "{enc}");

    // The whole quickstart job: HR exported on Paris, synchronized here, provisioned,
    // fulfilled and verified locally.
    let (status, run) = api(&s.url, "POST", "/api/jobs/Quickstart/runs", &token, None);
    responses.push_str(&run.to_string());
    assert!(status == 202 || status == 200, "{status} {run}");
    let run_id = run["run"]
        .as_i64()
        .or_else(|| run["id"].as_i64())
        .expect("run id");
    let report = until(120, "the job run to end", || {
        let (_, r) = api(
            &s.url,
            "GET",
            &format!("/api/job-runs/{run_id}"),
            &token,
            None,
        );
        (r["state"] != "Running" && !r["state"].is_null()).then_some(r)
    });
    responses.push_str(&report.to_string());
    assert_eq!(
        report["state"],
        "Succeeded",
        "{report:#}\nagent: {}",
        agent.log()
    );
    let text = report.to_string();
    assert!(text.contains("on agent 'Paris'"), "{report:#}");
    assert!(dir.path().join("work/ExportOutput/HRPeople.csv").is_file());
    // The accounts were written on the agent's side, into its database, and verified here.
    assert!(dir.path().join("apps.db").is_file());
    assert_eq!(report["totals"]["orders_verified"], 8, "{report:#}");
    assert!(!dir.path().join("conf/data/apps.db").exists());
    let (_, tasks) = api(&s.url, "GET", "/api/agent-tasks", &token, None);
    let kinds: Vec<(String, String, String)> = tasks
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap_or_default().to_string(),
                t["connection"].as_str().unwrap_or_default().to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (kind, connection) in [
        ("export", "HRPeople"),
        ("fulfill", "AppsDB"),
        ("export", "AppsExport"),
    ] {
        assert!(
            kinds.contains(&(kind.to_string(), connection.to_string(), "Done".to_string())),
            "{kind} of {connection} done by the agent: {kinds:?}"
        );
    }

    // The script export on the agent: the options (with the secret) reach it on stdin.
    let id = queue(&s.url, &token, "Slow", "export");
    let done = wait_done(&s.url, &token, id, 60);
    responses.push_str(&done.to_string());
    assert_eq!(done["state"], "Done", "{done:#}\nagent: {}", agent.log());
    // The server's own time on it is recorded: claimed after it was queued, some time spent
    // receiving its table and committing it.
    assert!(
        done["claimedMs"].as_i64() >= done["createdMs"].as_i64(),
        "{done:#}"
    );
    assert!(
        done["serverMs"].as_i64().is_some_and(|ms| ms >= 0),
        "{done:#}"
    );
    let seen = std::fs::read_to_string(dir.path().join("stdin-seen.txt")).expect("stdin seen");
    assert!(
        seen.contains(SECRET),
        "the agent decrypted the option: {seen}"
    );
    let table =
        std::fs::read_to_string(dir.path().join("work/ExportOutput/Slow_data.csv")).expect("table");
    assert_eq!(table.lines().count(), 3, "{table}");

    // The connection page's actions go to the agent too: Refresh schema (recorded here),
    // Check connection, Export now.
    let (status, r) = api(
        &s.url,
        "POST",
        "/api/connections/HRPeople/refresh-schema",
        &token,
        None,
    );
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("refreshed")),
        "{r}"
    );
    let (_, schema) = api(
        &s.url,
        "GET",
        "/api/connections/HRPeople/schema",
        &token,
        None,
    );
    assert!(schema.to_string().contains("EmployeeId"), "{schema}");
    let (status, r) = api(
        &s.url,
        "POST",
        "/api/connections/HRPeople/check",
        &token,
        None,
    );
    assert_eq!((status, r["reachable"].as_bool()), (200, Some(true)), "{r}");
    let (status, r) = api(
        &s.url,
        "POST",
        "/api/connections/HROrganizations/export",
        &token,
        None,
    );
    assert_eq!(status, 200, "{r}");
    responses.push_str(&r.to_string());
    let (_, tasks) = api(&s.url, "GET", "/api/agent-tasks", &token, None);
    let by_agent = |kind: &str, connection: &str| {
        tasks.as_array().is_some_and(|l| {
            l.iter().any(|t| {
                t["kind"] == kind
                    && t["connection"] == connection
                    && t["agent"] == "paris"
                    && t["state"] == "Done"
            })
        })
    };
    assert!(
        by_agent("schema", "HRPeople") && by_agent("check", "HRPeople"),
        "{tasks:#}"
    );

    // The plaintext is nowhere on the server's side: store, settings, responses, logs.
    agent.kill();
    let log = server_stderr(s);
    assert!(!log.contains(SECRET), "{log}");
    assert!(!responses.contains(SECRET));
    for (path, bytes) in read_all(&dir.path().join("work"))
        .into_iter()
        .chain(read_all(&dir.path().join("conf")))
    {
        let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(!found, "the secret is in {}", path.display());
    }
}

#[test]
fn revoked_agents_and_other_agents_work_are_refused() {
    use idlink_secrets::{AgentIdentity, decrypt_value};
    let dir = setup();
    let s = start(
        dir.path(),
        &["--agent-timeout", "2"],
        &[("IDLINK_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let token = admin_token(&dir.path().join("work/idlink.db").display().to_string());

    // No agent takes Paris's work yet: Check connection answers within the timeout, and says
    // why; the task is withdrawn.
    let t0 = Instant::now();
    let (status, r) = api(
        &s.url,
        "POST",
        "/api/connections/HRPeople/check",
        &token,
        None,
    );
    assert_eq!(
        (status, r["reachable"].as_bool()),
        (200, Some(false)),
        "{r}"
    );
    let message = r["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("did not take the work") && message.contains("not enrolled"),
        "{r}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());

    // Lyon by hand, without a token: Pending, no session until an administrator approves.
    let lyon = AgentIdentity::generate();
    let enrol = json!({ "agent": "Lyon", "publicKey": lyon.recipient().to_string() });
    let (status, r) = api(&s.url, "POST", "/api/agent/enrol", "", Some(&enrol));
    assert_eq!((status, r["state"].as_str()), (200, Some("Pending")), "{r}");
    let (status, r) = api(
        &s.url,
        "POST",
        "/api/agent/session",
        "",
        Some(&json!({ "agent": "Lyon" })),
    );
    assert_eq!(status, 403, "{r}");
    // The same identifier with another key is refused.
    let other = AgentIdentity::generate();
    let (status, _) = api(
        &s.url,
        "POST",
        "/api/agent/enrol",
        "",
        Some(&json!({ "agent": "Lyon", "publicKey": other.recipient().to_string() })),
    );
    assert_eq!(status, 409);
    // An undeclared agent is refused.
    let (status, _) = api(
        &s.url,
        "POST",
        "/api/agent/enrol",
        "",
        Some(&json!({ "agent": "Nowhere", "publicKey": other.recipient().to_string() })),
    );
    assert_eq!(status, 404);
    let (status, r) = api(&s.url, "POST", "/api/agents/Lyon/approve", &token, None);
    assert_eq!(status, 200, "{r}");
    let (status, r) = api(
        &s.url,
        "POST",
        "/api/agent/session",
        "",
        Some(&json!({ "agent": "Lyon" })),
    );
    assert_eq!(status, 200, "{r}");
    let lyon_token = decrypt_value(&lyon, r["sealedToken"].as_str().expect("sealed"))
        .expect("decrypts with Lyon's key")
        .expose_secret()
        .to_string();

    // Lyon runs no connection: its configuration holds no connection's settings (Paris's
    // are Paris's alone), and no key path of the server.
    let (status, c) = api(&s.url, "GET", "/api/agent/configuration", &lyon_token, None);
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["settings"]["Connections"], json!({}), "{c:#}");
    assert!(c["settings"].get("EncryptionIdentity").is_none(), "{c:#}");
    assert!(!c["files"].as_array().expect("files").is_empty());

    // Work for Paris (not running yet) is not Lyon's: not handed out, and refused by id.
    let id = queue(&s.url, &token, "HRPeople", "export");
    let (status, _) = api(&s.url, "GET", "/api/agent/work?wait=1", &lyon_token, None);
    assert_eq!(status, 204, "Lyon gets nothing");
    for (method, path, body) in [
        (
            "POST",
            format!("/api/agent/tasks/{id}/renew"),
            json!({ "lease": "x" }),
        ),
        (
            "POST",
            format!("/api/agent/tasks/{id}/result"),
            json!({ "lease": "x", "ok": {} }),
        ),
    ] {
        let (status, r) = api(&s.url, method, &path, &lyon_token, Some(&body));
        assert_eq!(status, 403, "{path}: {r}");
    }
    let (status, _) = api(
        &s.url,
        "GET",
        "/api/agent/work?wait=1",
        "not-a-session",
        None,
    );
    assert_eq!(status, 401);

    // Someone enrolled "Paris" first with a key of theirs: Pending, never approved; the real
    // agent's enrolment with a one-time token replaces it.
    let squatter = AgentIdentity::generate();
    let (status, r) = api(
        &s.url,
        "POST",
        "/api/agent/enrol",
        "",
        Some(&json!({ "agent": "Paris", "publicKey": squatter.recipient().to_string() })),
    );
    assert_eq!((status, r["state"].as_str()), (200, Some("Pending")), "{r}");
    // Paris does it.
    let t = enrolment_token(&s.url, &token, "Paris");
    let paris = start_agent(dir.path(), &s.url, "Paris", Some(&t));
    let done = wait_done(&s.url, &token, id, 60);
    assert_eq!(done["state"], "Done", "{done:#}\n{}", paris.log());
    assert_eq!(done["attempts"], 1);

    // Revoked: the running agent is refused at its next call and stops (exit 3); its key
    // opens no session any more.
    let (status, r) = api(&s.url, "POST", "/api/agents/Paris/revoke", &token, None);
    assert_eq!(status, 200, "{r}");
    let mut paris = paris;
    let code = until(30, "the revoked agent to stop", || {
        paris.child.try_wait().expect("waits")
    });
    assert_eq!(code.code(), Some(3), "{}", paris.log());
    assert!(paris.log().contains("revoked"), "{}", paris.log());
    let (status, _) = api(&s.url, "POST", "/api/agents/Paris/approve", &token, None);
    assert_eq!(status, 409, "a revoked agent is never approved again");
    let (_, audit) = api(&s.url, "GET", "/api/audit", &token, None);
    let audit = audit.to_string();
    for action in [
        "agent-enrol",
        "agent-approve",
        "agent-revoke",
        "agent-token",
        "agent-refused",
    ] {
        assert!(audit.contains(action), "{action} audited: {audit}");
    }
    stop(s);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binds")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn an_agent_killed_mid_export_loses_its_lease_and_the_task_is_retried_once() {
    let dir = setup();
    let s = start(
        dir.path(),
        &["--agent-lease-ms", "1500"],
        &[("IDLINK_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let token = admin_token(&dir.path().join("work/idlink.db").display().to_string());
    let t = enrolment_token(&s.url, &token, "Paris");
    std::fs::write(dir.path().join("sleep-secs"), "30").expect("writes");
    let agent = start_agent(dir.path(), &s.url, "Paris", Some(&t));
    let id = queue(&s.url, &token, "Slow", "export");
    until(30, "the task to be leased", || {
        (task(&s.url, &token, id)["state"] == "Leased").then_some(())
    });
    // Killed mid-export (the script sleeps); the script goes with it (its process group).
    agent.kill();
    let script = dir.path().join("slow.sh").display().to_string();
    let _ = Command::new("pkill").args(["-f", &script]).status();
    std::fs::write(dir.path().join("sleep-secs"), "0").expect("writes");
    let again = start_agent(dir.path(), &s.url, "Paris", None);
    let done = wait_done(&s.url, &token, id, 60);
    assert_eq!(done["state"], "Done", "{done:#}\n{}", again.log());
    assert_eq!(done["attempts"], 2, "{done:#}");
    assert!(dir.path().join("work/ExportOutput/Slow_data.csv").is_file());
    again.kill();
    stop(s);
}

#[test]
fn a_server_killed_and_restarted_mid_task_loses_no_leased_work() {
    let dir = setup();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("IDLINK_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    let mut s = start_on(dir.path(), &listen, &[], &env);
    let token = admin_token(&dir.path().join("work/idlink.db").display().to_string());
    let t = enrolment_token(&s.url, &token, "Paris");
    std::fs::write(dir.path().join("sleep-secs"), "4").expect("writes");
    let agent = start_agent(dir.path(), &s.url, "Paris", Some(&t));
    let id = queue(&s.url, &token, "Slow", "export");
    until(30, "the task to be leased", || {
        (task(&s.url, &token, id)["state"] == "Leased").then_some(())
    });
    s.child.kill().expect("kill -9");
    let _ = s.child.wait();
    std::thread::sleep(Duration::from_secs(1));
    let s = start_on(dir.path(), &listen, &[], &env);
    let done = wait_done(&s.url, &token, id, 60);
    assert_eq!(done["state"], "Done", "{done:#}\n{}", agent.log());
    assert_eq!(
        done["attempts"], 1,
        "the lease held across the restart: {done:#}"
    );
    assert!(dir.path().join("work/ExportOutput/Slow_data.csv").is_file());
    agent.kill();
    stop(s);
}

#[test]
fn two_servers_on_one_postgresql_store_do_each_queued_task_once() {
    let pg = idlink_test_support::PostgresServer::start();
    pg.create_database("agents_two_servers").expect("database");
    let url = pg.url("agents_two_servers");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &repo_root().join("examples/quickstart"),
        &dir.path().join("conf"),
    );
    let env = [("IDLINK_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    let a = start(dir.path(), &["--database", &url], &env);
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).expect("mkdir");
    copy_dir(&dir.path().join("conf"), &b_dir.join("conf"));
    let b = start(&b_dir, &["--database", &url], &env);
    let token = admin_token(&url);
    let ids: Vec<i64> = (0..100)
        .map(|_| queue(&a.url, &token, "HROrganizations", "export"))
        .collect();
    // Server B stops gracefully while the work goes on: what it holds ends first.
    until(60, "some tasks to be done", || {
        let (_, list) = api(&a.url, "GET", "/api/agent-tasks?limit=1000", &token, None);
        let done = list
            .as_array()
            .map_or(0, |l| l.iter().filter(|t| t["state"] == "Done").count());
        (done >= 10).then_some(())
    });
    let (code, err) = stop(b);
    assert_eq!(code, 0, "{err}");
    let tasks: Vec<Value> = ids
        .iter()
        .map(|id| wait_done(&a.url, &token, *id, 120))
        .collect();
    for t in &tasks {
        assert_eq!(t["state"], "Done", "{t:#}");
        assert_eq!(t["attempts"], 1, "each task handed out once: {t:#}");
    }
    let holders: std::collections::BTreeSet<String> = tasks
        .iter()
        .filter_map(|t| t["leasedBy"].as_str().map(str::to_string))
        .collect();
    // Each task's export is recorded once in the audit log, whichever server did it.
    let (_, audit) = api(&a.url, "GET", "/api/audit?limit=1000", &token, None);
    let entries: Vec<String> = audit
        .as_array()
        .or_else(|| audit["entries"].as_array())
        .map(|a| {
            a.iter()
                .filter(|e| e["action"] == "export")
                .map(|e| e.to_string())
                .collect()
        })
        .unwrap_or_default();
    for id in &ids {
        let n = entries
            .iter()
            .filter(|e| e.contains(&format!("(task {id})")))
            .count();
        assert_eq!(n, 1, "task {id} exported once; holders {holders:?}");
    }
    stop(a);
}

#[test]
fn agents_connect_over_tls_and_refuse_plain_http() {
    let dir = setup();
    // A private CA and a server certificate it signed (as a deployment would have).
    std::fs::write(
        dir.path().join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("writes");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=idlink test CA",
    ];
    let csr = [
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ];
    let sign = [
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ];
    for args in [
        [&["req", "-x509"][..], &ec[..], &ca[..]].concat(),
        [&["req"][..], &ec[..], &csr[..]].concat(),
        sign.to_vec(),
    ] {
        let made = Command::new("openssl")
            .current_dir(dir.path())
            .args(&args)
            .output()
            .expect("openssl is installed (scripts/test.sh installs it)");
        assert!(
            made.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let s = start(
        dir.path(),
        &["--tls-cert", "cert.pem", "--tls-key", "key.pem"],
        &[("IDLINK_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let token = admin_token(&dir.path().join("work/idlink.db").display().to_string());
    let t = enrolment_token(&s.url, &token, "Paris");

    // Plain http is refused by the agent itself (exit 2), before anything is sent.
    let plain = s.url.replace("https://", "http://");
    let mut refused = start_agent_with(dir.path(), &plain, "Paris", Some(&t), &[]);
    let code = until(30, "the agent to refuse plain http", || {
        refused.child.try_wait().expect("waits")
    });
    assert_eq!(code.code(), Some(2), "{}", refused.log());
    assert!(refused.log().contains("HTTPS"), "{}", refused.log());
    // A certificate the agent does not trust: no enrolment (it keeps trying, says why).
    let untrusting = start_agent_with(dir.path(), &s.url, "Paris", Some(&t), &[]);
    until(30, "the agent to say why", || {
        let log = untrusting.log();
        (log.contains("cannot reach the server")).then_some(())
    });
    untrusting.kill();
    assert!(
        !approved(&s.url, &token, "Paris"),
        "nothing enrolled without trust"
    );

    let agent = start_agent_with(
        dir.path(),
        &s.url,
        "Paris",
        Some(&t),
        &["--ca-cert", "ca.pem"],
    );
    let id = queue(&s.url, &token, "HRPeople", "check");
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let t = task(&s.url, &token, id);
        if matches!(t["state"].as_str(), Some("Done" | "Errored")) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the check over TLS: {t:#}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["state"], "Done", "{done:#}\n{}", agent.log());
    assert_eq!(done["result"]["reachable"], true, "{done:#}");
    agent.kill();
    stop(s);
}

/// A token from before, or from elsewhere, that starts with '-' is still read as the value of
/// `--enrol-token` (the agent then stops on its plain-http server, exit 2, not on the option).
#[test]
fn regression_an_enrolment_token_starting_with_a_hyphen_is_a_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(assert_cmd::cargo::cargo_bin("idlink"))
        .current_dir(dir.path())
        .args([
            "agent",
            "--server",
            "http://10.0.0.1:5000/",
            "--agent",
            "Paris",
        ])
        .args(["--key", "paris.key", "--enrol-token", "-8abcdef"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("HTTPS") && !err.contains("unexpected argument"),
        "{err}"
    );
}

/// A server that answers the agent with an endless body: the agent read whole answers into
/// memory, without a bound. It now stops at 64 MiB, says so, and tries again.
#[test]
fn regression_an_agent_reads_a_bounded_answer_from_a_server_that_never_ends() {
    use idlink_test_support::hostile::{HostileServer, Step};
    let mut chunk = format!("{:x}\r\n", 1 << 20).into_bytes();
    chunk.extend(std::iter::repeat_n(b'a', 1 << 20));
    chunk.extend_from_slice(b"\r\n");
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
        ),
        Step::Endless(chunk),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}/", server.port());
    let agent = start_agent(dir.path(), &url, "Paris", None);
    until(60, "the agent to refuse the endless answer", || {
        agent.log().contains("larger than").then_some(())
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id()))
        .expect("the agent runs on");
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(
        peak_kib < 200 * 1024,
        "peak RSS {peak_kib} KiB\n{}",
        agent.log()
    );
    agent.kill();
}

/// A server on `dir` and agent Paris enrolled with a one-time token, started with `extra`
/// options (over loopback HTTP) and approved; returns them and the administrator's token.
fn server_and_paris(dir: &Path, extra: &[&str]) -> (Served, String, AgentProcess) {
    let s = start(dir, &[], &[("IDLINK_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let token = admin_token(&dir.join("work/idlink.db").display().to_string());
    let t = enrolment_token(&s.url, &token, "Paris");
    let mut options = vec!["--insecure-loopback"];
    options.extend_from_slice(extra);
    let agent = start_agent_with(dir, &s.url, "Paris", Some(&t), &options);
    until(30, "Paris to be approved", || {
        approved(&s.url, &token, "Paris").then_some(())
    });
    (s, token, agent)
}

/// An agent started with its own `--sources-root` reads files and runs scripts only under it,
/// whatever the roots the server's configuration sends: here the server's include the test's
/// whole folder, where a copy of the organizations file and the `Slow` script are, but Paris
/// keeps to `conf/data`.
#[test]
fn regression_an_agent_with_its_own_sources_root_refuses_files_and_scripts_the_server_puts_elsewhere()
 {
    let dir = setup();
    let conf = dir.path().join("conf");
    std::fs::copy(
        conf.join("data/hr_organizations.csv"),
        dir.path().join("hr_organizations.csv"),
    )
    .expect("copies");
    let settings = std::fs::read_to_string(conf.join("appsettings.agent.json")).expect("reads");
    let moved = settings.replace(
        &format!(
            r#""Path": "{}/hr_organizations.csv""#,
            conf.join("data").display()
        ),
        &format!(r#""Path": "{}/hr_organizations.csv""#, dir.path().display()),
    );
    assert_ne!(moved, settings, "the organizations path is rewritten");
    std::fs::write(conf.join("appsettings.agent.json"), moved).expect("writes");

    let (s, token, agent) = server_and_paris(dir.path(), &["--sources-root", "conf/data"]);

    // Under the agent's root: exported.
    let id = queue(&s.url, &token, "HRPeople", "export");
    let done = wait_done(&s.url, &token, id, 60);
    assert_eq!(done["state"], "Done", "{done:#}\n{}", agent.log());

    // Under the server's roots but not the agent's: refused, saying why.
    let id = queue(&s.url, &token, "HROrganizations", "export");
    let refused = wait_done(&s.url, &token, id, 60);
    assert_eq!(refused["state"], "Errored", "{refused:#}\n{}", agent.log());
    let text = refused.to_string();
    assert!(
        text.contains("outside SourcesRootPaths") && text.contains("hr_organizations.csv"),
        "{refused:#}"
    );
    let id = queue(&s.url, &token, "Slow", "export");
    let refused = wait_done(&s.url, &token, id, 60);
    assert_eq!(refused["state"], "Errored", "{refused:#}\n{}", agent.log());
    let text = refused.to_string();
    assert!(
        text.contains("slow.sh") && text.contains("--sources-root"),
        "{refused:#}"
    );
    assert!(
        !dir.path().join("stdin-seen.txt").exists(),
        "the script did not run"
    );
    assert!(
        !dir.path()
            .join("work/ExportOutput/HROrganizations.csv")
            .exists()
    );

    // The option names a folder that exists.
    let out = Command::new(assert_cmd::cargo::cargo_bin("idlink"))
        .current_dir(dir.path())
        .args([
            "agent",
            "--server",
            &s.url,
            "--agent",
            "Paris",
            "--key",
            "Paris.key",
        ])
        .args(["--insecure-loopback", "--sources-root", "no/such/folder"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sources-root no/such/folder"),
        "{out:?}"
    );
    drop(agent);
    stop(s);
}

/// `idlink agent --bound-secrets-only`: a value encrypted to the agent's key but bound to no
/// setting (as `protect --values` and older idlink versions write them, or as whoever holds the
/// configuration can write for a secret they copied) is refused before the script runs; the
/// same secret entered through the server's API (bound to `Options.Password` and the script
/// path) reaches the script.
#[test]
fn an_agent_taking_bound_secrets_only_refuses_an_unbound_value_and_runs_with_a_bound_one() {
    let dir = setup();
    // Paris's key, made beforehand so that a value can be encrypted to it unbound.
    let out = Command::new(assert_cmd::cargo::cargo_bin("idlink"))
        .current_dir(dir.path())
        .args(["keygen", "--out", "Paris.key"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let key = idlink_secrets::load_identity(&dir.path().join("Paris.key")).expect("key");
    let unbound = idlink_secrets::encrypt_value(&key.recipient(), SECRET).expect("encrypts");
    let encrypted = dir.path().join("conf/appsettings.encrypted.agent.json");
    let text = std::fs::read_to_string(&encrypted).expect("the quickstart's");
    let slow =
        format!(r#""Connections": {{ "Slow": {{ "Options": {{ "Password": "{unbound}" }} }},"#);
    let with_slow = text.replacen(r#""Connections": {"#, &slow, 1);
    assert_ne!(with_slow, text);
    std::fs::write(&encrypted, with_slow).expect("writes");
    let (s, token, agent) = server_and_paris(dir.path(), &["--bound-secrets-only"]);
    let id = queue(&s.url, &token, "Slow", "export");
    let refused = wait_done(&s.url, &token, id, 60);
    assert_eq!(refused["state"], "Errored", "{refused:#}\n{}", agent.log());
    let text = refused.to_string();
    assert!(
        text.contains("setting Options.Password: the value is encrypted bound to no setting")
            && text.contains("--bound-secrets-only"),
        "{refused:#}"
    );
    assert!(!text.contains(SECRET), "{refused:#}");
    assert!(
        !dir.path().join("stdin-seen.txt").exists(),
        "the script did not run"
    );
    // Entered through the server: bound, taken.
    let (status, r) = api(
        &s.url,
        "PATCH",
        "/api/connections/Slow/settings",
        &token,
        Some(&json!({ "Options": { "Password": SECRET } })),
    );
    assert_eq!(status, 200, "{r}");
    let id = queue(&s.url, &token, "Slow", "export");
    let done = wait_done(&s.url, &token, id, 60);
    assert_eq!(done["state"], "Done", "{done:#}\n{}", agent.log());
    let seen = std::fs::read_to_string(dir.path().join("stdin-seen.txt")).expect("stdin seen");
    assert!(
        seen.contains(SECRET),
        "the agent decrypted the option: {seen}"
    );
    assert!(!agent.log().contains(SECRET));
    drop(agent);
    stop(s);
}
