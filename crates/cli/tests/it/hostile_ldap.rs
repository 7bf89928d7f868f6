//! Defect 1 of issue #8, end to end: `idlink export` and `idlink check-connection` against
//! fake LDAP servers on 127.0.0.1 that announce a 2 GiB message (in the bind response, or in
//! a search result after a valid bind) or trickle a byte a second. Each command exits 1
//! within TimeOut + 2 s, its peak RSS (VmHWM) stays under 64 MiB, and its message names
//! the server.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use idlink_test_support::hostile::ldap::{BIND_OK, HUGE_HEADER};
use idlink_test_support::hostile::{HostileServer, Step};

const TIMEOUT_SECS: u64 = 3;
const MAX_RSS_KIB: u64 = 64 * 1024;

/// A configuration folder (`conf/`) with one LDAP connection `Hostile` to `address`.
fn configuration(dir: &Path, address: &str) {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("hostile.xml"),
        r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Agent Identifier="Local" DisplayName_L1="Local agent" />
  <Connector Identifier="Directory" DisplayName_L1="Directory" Agent="Local" />
  <Connection Identifier="Hostile" DisplayName_L1="Hostile directory" Connector="Directory"
              Package="Usercube.LDAP@0000001" />
</ConfigurationFile>
"#,
    )
    .expect("write xml");
    let settings = serde_json::json!({
        "Connections": {
            "Hostile": {
                "Servers": [{"Server": address, "AuthType": "Basic",
                             "Login": "cn=admin,dc=example,dc=org", "Password": "hostile-pw-2"}],
                "Tables": [{"Table": "entries", "BaseDN": "dc=example,dc=org"}],
                "TimeOut": TIMEOUT_SECS,
            }
        }
    });
    std::fs::write(
        conf.join("appsettings.agent.json"),
        serde_json::to_string_pretty(&settings).expect("json"),
    )
    .expect("write settings");
}

/// VmHWM of a running process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Run {
    code: i32,
    output: String,
    elapsed: Duration,
    peak_kib: u64,
}

/// Runs `idlink <args>` in `dir`, polling its peak RSS until it exits (killed after 30 s).
fn run(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idlink"));
    for (k, _) in std::env::vars() {
        if k.starts_with("IDLINK") {
            cmd.env_remove(k);
        }
    }
    let start = Instant::now();
    let mut child = cmd
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("idlink starts");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("idlink {args:?} still running after 30 s (peak RSS {peak} KiB)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let output = format!(
        "{}{}",
        out_reader.join().expect("stdout"),
        err_reader.join().expect("stderr")
    );
    Run {
        code: status.code().unwrap_or(-1),
        output,
        elapsed,
        peak_kib: peak,
    }
}

/// Both commands fail as defect 1 asks; `expect` is in each message.
fn both_commands_fail_bounded(server: &HostileServer, expect: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    configuration(dir.path(), &server.address());
    for args in [
        &["check-connection", "--connection", "Hostile"][..],
        &["export", "--connection", "Hostile"][..],
    ] {
        let r = run(dir.path(), args);
        eprintln!(
            "idlink {}: exit {} after {:?}, peak RSS {} KiB",
            args[0], r.code, r.elapsed, r.peak_kib
        );
        assert_eq!(r.code, 1, "{args:?}: {}", r.output);
        assert!(
            r.elapsed <= Duration::from_secs(TIMEOUT_SECS + 2),
            "{args:?} took {:?}: {}",
            r.elapsed,
            r.output
        );
        assert!(r.peak_kib > 0, "{args:?}: the peak RSS was never read");
        assert!(
            r.peak_kib < MAX_RSS_KIB,
            "{args:?}: peak RSS {} KiB: {}",
            r.peak_kib,
            r.output
        );
        assert!(
            r.output.contains(&format!("ldap://{}", server.address())),
            "{args:?}: the server is not named: {}",
            r.output
        );
        assert!(r.output.contains(expect), "{args:?}: {}", r.output);
        assert!(!r.output.contains("hostile-pw-2"), "{}", r.output);
    }
}

#[test]
fn regression_ldap_huge_ber_length_in_bind_response_exits_1_with_flat_memory() {
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::Write(HUGE_HEADER.to_vec()),
        Step::Endless(vec![0x41; 64 * 1024]),
    ]);
    both_commands_fail_bounded(
        &server,
        "the server announced a 2147483647-byte message, above MaxMessageSize (16777216)",
    );
}

#[test]
fn regression_ldap_trickled_bind_response_exits_1_within_timeout() {
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::TrickleForever {
            byte: 0x30,
            every: Duration::from_secs(1),
        },
    ]);
    both_commands_fail_bounded(&server, "no complete response within TimeOut (3 s");
}

#[test]
fn regression_ldap_huge_length_in_search_result_after_bind_exits_1_with_flat_memory() {
    let server = HostileServer::start(vec![
        Step::ReadSome,
        Step::Write(BIND_OK.to_vec()),
        Step::ReadSome,
        Step::Write(HUGE_HEADER.to_vec()),
        Step::Endless(vec![0x41; 64 * 1024]),
    ]);
    both_commands_fail_bounded(
        &server,
        "the server announced a 2147483647-byte message, above MaxMessageSize (16777216)",
    );
}
