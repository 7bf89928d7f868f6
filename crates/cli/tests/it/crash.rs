//! `idlink export` of a two-table connection with a cookie (the quickstart's DirectoryLDAP against
//! slapd: `_entries`, `_member` and the syncrepl cookie), killed with SIGKILL at random instants,
//! including inside the commit. After each kill, the recovery every export starts with must
//! leave the whole old set or the whole new set, and no staging folder.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use idlink_test_support::slapd::ADMIN_DN;
use idlink_test_support::{SlapdOptions, SlapdServer};

use crate::support::{copy_dir, idlink, repo_root};

const BASE: &str = "dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: cn=staff,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: staff
member: uid=gen0,ou=people,dc=example,dc=org
";

/// Entries enough that an export takes a while in a debug build.
fn fixture() -> String {
    let mut ldif = String::from(BASE);
    for i in 0..1500 {
        ldif.push_str(&format!(
            "\ndn: uid=P{i:05},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: P{i:05}\ncn: Person {i}\nsn: P{i}\nmail: p{i}@example.org\n"
        ));
    }
    ldif.push_str(
        "\ndn: uid=gen0,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: gen0\ncn: gen0\nsn: gen0\n",
    );
    ldif
}

struct Setup {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// A private slapd holding [`fixture`].
fn slapd() -> SlapdServer {
    SlapdServer::start(&SlapdOptions {
        ldif: fixture(),
        tls: false,
        ..SlapdOptions::default()
    })
}

impl Setup {
    /// Runs `n` complete exports (each must succeed) and returns the fastest one's time.
    fn fastest_of(&self, n: usize) -> Duration {
        let mut fastest = Duration::MAX;
        for _ in 0..n {
            let started = Instant::now();
            let out = self.command().output().expect("runs");
            fastest = fastest.min(started.elapsed());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fastest
    }

    /// The quickstart pointed at `slapd`, its credentials given by the environment.
    fn new(slapd: &SlapdServer) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("conf");
        copy_dir(&repo_root().join("examples/quickstart"), &conf);
        std::fs::remove_file(conf.join("appsettings.encrypted.agent.json")).expect("rm");
        let prefix = "IDLINK__Connections__DirectoryLDAP__Servers__0__";
        Setup {
            dir,
            env: vec![
                (format!("{prefix}Server"), slapd.url()),
                (format!("{prefix}Login"), ADMIN_DN.to_string()),
                (
                    format!("{prefix}Password"),
                    slapd.admin_password().to_string(),
                ),
            ],
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("idlink"));
        for (k, _) in std::env::vars() {
            if k.starts_with("IDLINK") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(self.dir.path())
            .args([
                "export",
                "--config",
                "conf",
                "--connection",
                "DirectoryLDAP",
                "--ignore-cookies",
            ])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }
}

/// The newest generation in a table (the highest `genN` it names), or None when it is absent.
fn generation(file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    Some(
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .filter_map(|w| w.strip_prefix("gen")?.parse::<u32>().ok())
            .max()
            .unwrap_or(0),
    )
}

fn staging_folders(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".staging"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn regression_export_killed_at_any_instant_leaves_the_old_or_the_new_set() {
    let slapd = slapd();
    let setup = Setup::new(&slapd);
    let out_dir = setup.work().join("ExportOutput");
    let entries = out_dir.join("DirectoryLDAP_entries.csv");
    let members = out_dir.join("DirectoryLDAP_member.csv");
    let cookie = setup.work().join("ExportCookies/DirectoryLDAP.cookie");

    // Complete runs: the old set of generation 0, and how long a run takes (the fastest of
    // three: the first one warms the caches).
    let full = setup.fastest_of(3);
    assert_eq!(generation(&entries), Some(0));
    assert_eq!(generation(&members), Some(0));
    let mut old_cookie = std::fs::read_to_string(&cookie).expect("cookie");
    let mut current = 0u32;
    let mut added = 0u32;

    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut kills, mut in_commit, mut old_sets, mut new_sets) = (0, 0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(240);
    // At least 20 kills, and go on (up to a limit) until some landed inside the commit.
    while kills < 20 || (in_commit < 2 && kills < 200 && Instant::now() < deadline) {
        added += 1;
        let g = added;
        slapd
            .ldapadd(&format!(
                "dn: uid=gen{g},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: gen{g}\ncn: gen{g}\nsn: gen{g}\n"
            ))
            .expect("add");
        slapd
            .ldapmodify(&format!(
                "dn: cn=staff,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: member\nmember: uid=gen{g},ou=people,dc=example,dc=org\n"
            ))
            .expect("modify");
        // Half the kills anywhere in the run, half near its end where the commit is.
        let span = full.as_micros() as u64;
        let at = if kills % 2 == 0 {
            next() % (span + 1)
        } else {
            span / 2 + next() % (span / 2 + 1)
        };
        let journal = ["journal", "committed"].map(|ext| {
            setup
                .work()
                .join(format!("ExportCookies/DirectoryLDAP.{ext}"))
        });
        let mut child = setup.command().spawn().expect("spawn");
        let started = Instant::now();
        let at = if kills % 3 == 2 {
            // A third of the kills the moment the commit's journal appears (on a fast disk the
            // commit is too short for random instants to land in it often).
            while !journal.iter().any(|j| j.exists())
                && child.try_wait().expect("try_wait").is_none()
                && started.elapsed() < Duration::from_secs(10)
            {
                std::hint::spin_loop();
            }
            started.elapsed().as_micros() as u64
        } else {
            std::thread::sleep(Duration::from_micros(at));
            at
        };
        let _ = child.kill();
        let status = child.wait().expect("wait");
        kills += 1;
        // The journal, or the journal renamed at the commit point.
        if journal.iter().any(|j| j.exists()) {
            in_commit += 1;
        }
        // What every export does first.
        let notes = idlink_engine::export::recover_connection(&setup.work(), None, "DirectoryLDAP")
            .expect("recovery");
        let (ge, gm) = (generation(&entries), generation(&members));
        let now_cookie = std::fs::read_to_string(&cookie).expect("cookie");
        assert_eq!(
            ge, gm,
            "kill {kills} at {at} µs ({status}): tables of two runs; {notes:?}"
        );
        match ge {
            Some(x) if x == current => {
                assert_eq!(
                    now_cookie, old_cookie,
                    "kill {kills}: old tables with a new cookie"
                );
                old_sets += 1;
            }
            Some(x) if x == g => {
                assert_ne!(
                    now_cookie, old_cookie,
                    "kill {kills}: new tables with the old cookie"
                );
                new_sets += 1;
                old_cookie = now_cookie;
                current = g;
            }
            other => {
                panic!("kill {kills}: tables of generation {other:?}, expected {current} or {g}")
            }
        }
        assert!(
            staging_folders(&out_dir).is_empty(),
            "kill {kills}: {:?}",
            staging_folders(&out_dir)
        );
    }
    eprintln!(
        "{kills} kills: {in_commit} inside the commit, {old_sets} left the old set, {new_sets} the new set"
    );
    assert!(
        in_commit >= 1,
        "no kill landed inside the commit in {kills} tries (a run takes {full:?})"
    );
    // The next run after all that: a clean new set, nothing left over.
    let out = idlink()
        .current_dir(setup.dir.path())
        .args([
            "export",
            "--config",
            "conf",
            "--connection",
            "DirectoryLDAP",
        ])
        .envs(setup.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(staging_folders(&out_dir).is_empty());
    for ext in ["journal", "committed"] {
        let journal = setup
            .work()
            .join(format!("ExportCookies/DirectoryLDAP.{ext}"));
        assert!(!journal.exists(), "{}", journal.display());
    }
}

#[test]
fn regression_sigterm_and_sigint_remove_the_staging_folder_before_exiting() {
    let slapd = slapd();
    let setup = Setup::new(&slapd);
    let out_dir = setup.work().join("ExportOutput");
    let entries = out_dir.join("DirectoryLDAP_entries.csv");
    let full = setup.fastest_of(1);
    let before = std::fs::read(&entries).expect("entries");
    let mut interrupted = [0, 0];
    for attempt in 0..40 {
        if interrupted.iter().all(|&n| n > 0) {
            break;
        }
        let signal = if attempt % 2 == 0 { "TERM" } else { "INT" };
        let child = setup.command().spawn().expect("spawn");
        std::thread::sleep(full * (2 + attempt % 5) / 10);
        let killed = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(130) => {
                interrupted[(attempt % 2) as usize] += 1;
                assert!(stderr.contains("interrupted"), "{stderr}");
                assert!(stderr.contains("nothing was committed"), "{stderr}");
                assert!(
                    staging_folders(&out_dir).is_empty(),
                    "SIG{signal}: {:?}",
                    staging_folders(&out_dir)
                );
                assert_eq!(std::fs::read(&entries).expect("entries"), before);
            }
            // The run ended before the signal arrived.
            Some(0) => {}
            // The signal came before the handlers were installed (the process was still
            // starting or reading its configuration): it ended at once, and must not have
            // staged anything yet.
            None if out.status.signal() == Some(if signal == "TERM" { 15 } else { 2 }) => {
                assert!(
                    staging_folders(&out_dir).is_empty(),
                    "SIG{signal} before the handlers: {:?}",
                    staging_folders(&out_dir)
                );
                assert_eq!(std::fs::read(&entries).expect("entries"), before);
            }
            other => panic!("SIG{signal}: exit {other:?}: {stderr}"),
        }
    }
    assert!(
        interrupted.iter().all(|&n| n > 0),
        "no run was interrupted by both signals: {interrupted:?} (a run takes {full:?})"
    );
}

/// The private temporary folder of a script run (`idlink-script-…`, holding the exported rows
/// or the orders and results) stayed in the temporary folder for good when idlink was killed
/// with SIGKILL during the run: the next script run removes the folders of runs whose idlink
/// process is gone, and leaves the others.
#[test]
fn regression_the_folder_of_a_script_run_killed_with_sigkill_is_removed_by_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conf, tmp) = (dir.path().join("conf"), dir.path().join("tmp"));
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    std::fs::write(
        conf.join("scripts.xml"),
        r#"<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="Scripts" DisplayName_L1="Scripts" />
  <Connection Identifier="Slow" DisplayName_L1="Slow" Connector="Scripts" Package="Usercube.PowershellSync@0000001" />
</ConfigurationFile>
"#,
    )
    .expect("writes");
    std::fs::write(
        conf.join("appsettings.agent.json"),
        r#"{ "SourcesRootPaths": ["."], "Connections": { "Slow": { "PowerShellScriptPath": "slow.sh" } } }"#,
    )
    .expect("writes");
    // Writes its process number (its group's: the run makes it a group leader), then sleeps as
    // long as `sleep-secs` says before writing its table.
    let script = conf.join("slow.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\necho $$ > '{c}/pid'\nsleep \"$(cat '{c}/sleep-secs')\"\nprintf 'id,name\\n1,one\\n' > \"${{1}}data.csv\"\n",
            c = conf.display()
        ),
    )
    .expect("writes");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let runs = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&tmp)
            .expect("reads")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("idlink-script-"))
            .collect();
        names.sort();
        names
    };
    let export = |work: &str| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("idlink"));
        cmd.args(["-q", "export", "--config"])
            .arg(&conf)
            .args(["--work"])
            .arg(dir.path().join(work))
            .args(["--connection", "Slow"])
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    // A folder of another process still running (this test's), and one named as idlink named
    // them before: both left alone.
    let alive = tmp.join(format!("idlink-script-{}-Slow-keep01", std::process::id()));
    let older = tmp.join("idlink-script-Slow-old001");
    for d in [&alive, &older] {
        std::fs::create_dir(d).expect("mkdir");
    }
    std::fs::write(conf.join("sleep-secs"), "30").expect("writes");
    let mut child = export("w1").spawn().expect("starts idlink");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !conf.join("pid").exists() {
        assert!(Instant::now() < deadline, "the script never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = runs();
    assert_eq!(left.len(), 3, "{left:?}");
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("waits");
    assert_eq!(status.signal(), Some(9));
    // The script outlives idlink: its group is stopped here (nothing else would).
    let pid = std::fs::read_to_string(conf.join("pid")).expect("pid");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pid.trim())])
        .status();
    assert_eq!(
        runs(),
        left,
        "the killed run's folder stays until a next run"
    );
    std::fs::write(conf.join("sleep-secs"), "0").expect("writes");
    let out = export("w2").output().expect("runs");
    assert!(out.status.success(), "{out:?}");
    assert!(
        dir.path().join("w2/ExportOutput/Slow_data.csv").is_file(),
        "{:?}",
        std::fs::read_dir(dir.path().join("w2/ExportOutput"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let names = |ds: &[&PathBuf]| -> Vec<String> {
        let mut v: Vec<String> = ds
            .iter()
            .map(|d| d.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(runs(), names(&[&older, &alive]));
}
