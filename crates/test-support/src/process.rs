//! What both launchers share: finding binaries, running setup commands as the service user,
//! and the watchdog that stops a server when its owner goes away.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LaunchError;

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The user a server runs as: its ids, or `None` to stay the current user (when not root).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs(Option<(u32, u32)>);

impl RunAs {
    /// `name` when this process is root, else the current user.
    pub(crate) fn service_user(name: &str) -> Result<RunAs, LaunchError> {
        if !is_root() {
            return Ok(RunAs(None));
        }
        let passwd = std::fs::read_to_string("/etc/passwd")
            .map_err(|e| LaunchError(format!("cannot read /etc/passwd: {e}")))?;
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3 && fields[0] == name {
                let uid = fields[2].parse().ok();
                let gid = fields[3].parse().ok();
                if let (Some(uid), Some(gid)) = (uid, gid) {
                    return Ok(RunAs(Some((uid, gid))));
                }
            }
        }
        Err(LaunchError(format!(
            "user '{name}' does not exist; the server's Debian package creates it"
        )))
    }

    /// The current user (for servers that run as anyone).
    pub(crate) fn current() -> RunAs {
        RunAs(None)
    }

    /// Makes `path` belong to the service user.
    pub(crate) fn own(&self, path: &Path) -> Result<(), LaunchError> {
        if let Some((uid, gid)) = self.0 {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| LaunchError(format!("cannot chown {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Makes `command` run as the service user.
    pub(crate) fn apply<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        if let Some((uid, gid)) = self.0 {
            command.uid(uid).gid(gid);
        }
        command
    }
}

/// Finds the first of `names` in `dirs`, then on `PATH` (and the sbin folders).
pub(crate) fn find_binary(
    names: &[&str],
    dirs: &[PathBuf],
    install: &str,
) -> Result<PathBuf, LaunchError> {
    let mut search: Vec<PathBuf> = dirs.to_vec();
    if let Some(path) = std::env::var_os("PATH") {
        search.extend(std::env::split_paths(&path));
    }
    search.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for name in names {
        for dir in &search {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(LaunchError(format!(
        "{} is not installed (looked for {} in {}); install it with: {install}",
        names.first().copied().unwrap_or("the server"),
        names.join(", "),
        search
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    )))
}

/// Runs a setup command to completion; its output on success, both streams in the error.
pub(crate) fn run(command: &mut Command, what: &str) -> Result<String, LaunchError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LaunchError(format!("{what}: cannot run {command:?}: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    Err(LaunchError(format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    )))
}

/// Runs a command with `input` on its standard input; like [`run`].
pub(crate) fn run_with_input(
    command: &mut Command,
    input: &str,
    what: &str,
) -> Result<String, LaunchError> {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LaunchError(format!("{what}: cannot run {command:?}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A client that fails early closes its input: its exit status tells why.
        let _ = stdin.write_all(input.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| LaunchError(format!("{what}: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    Err(LaunchError(format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    )))
}

/// The watchdog: runs the server in the background with its output in `log`, writes its pid
/// to `pidfile`, and when its own standard input closes, signals it, waits, removes `dir`.
const WATCHDOG: &str = r#"log="$1"; pidfile="$2"; sig="$3"; dir="$4"; shift 4
"$@" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
read -r _ || :
kill -"$sig" "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
"#;

/// A server process under its watchdog. Dropping it stops the server and removes its folder.
#[derive(Debug)]
pub(crate) struct Watched {
    dir: Option<tempfile::TempDir>,
    watchdog: Child,
    /// Held open: the watchdog stops the server when it closes.
    lifeline: Option<ChildStdin>,
    pidfile: PathBuf,
    log: PathBuf,
}

impl Watched {
    /// Starts `server` (binary and arguments) under the watchdog, as `run_as`, in `dir`.
    /// `signal` stops it (`QUIT`, `TERM`, `KILL`, ...).
    pub(crate) fn spawn(
        dir: tempfile::TempDir,
        run_as: RunAs,
        signal: &str,
        server: &[String],
    ) -> Result<Watched, LaunchError> {
        let log = dir.path().join("server.log");
        let pidfile = dir.path().join("server.pid");
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(&log)
            .arg(&pidfile)
            .arg(signal)
            .arg(dir.path())
            .args(server)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        run_as.apply(&mut command);
        let mut watchdog = command
            .spawn()
            .map_err(|e| LaunchError(format!("cannot start /bin/sh for {}: {e}", server[0])))?;
        let lifeline = watchdog.stdin.take();
        Ok(Watched {
            dir: Some(dir),
            watchdog,
            lifeline,
            pidfile,
            log,
        })
    }

    /// The server's process id, once the watchdog wrote it.
    fn server_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Whether the server has exited (or not started yet: `None`).
    pub(crate) fn server_exited(&self) -> Option<bool> {
        let pid = self.server_pid()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "pid (comm) S ...": a missing process or a zombie has exited.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next());
        Some(matches!(state, None | Some('Z' | 'X')))
    }

    /// The end of the server's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    /// Polls `ready` every 50 ms until it succeeds, the server exits, or `timeout` passes.
    /// Errors carry the server's log.
    pub(crate) fn wait_ready(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<(), String>,
    ) -> Result<(), LaunchError> {
        let start = Instant::now();
        loop {
            if self.server_exited() == Some(true) {
                return Err(LaunchError(format!(
                    "{what} exited during startup; its log:\n{}",
                    self.log_tail()
                )));
            }
            let last = match ready() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if start.elapsed() > timeout {
                return Err(LaunchError(format!(
                    "{what} not ready after {timeout:?} (last check: {last}); its log:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The private folder the server runs in.
    pub(crate) fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("/nonexistent"), |d| d.path())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Closing the lifeline makes the watchdog stop the server and remove the folder.
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.watchdog.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    if let Some(pid) = self.server_pid() {
                        let _ = Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                    }
                    let _ = self.watchdog.kill();
                    let _ = self.watchdog.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // Normally gone already; this removes what a killed watchdog left.
        drop(self.dir.take());
    }
}

/// TCP connect to `127.0.0.1:port`, as a first readiness check.
pub(crate) fn tcp_open(port: u16) -> Result<(), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        .map(drop)
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))
}

/// A password made of letters and digits only (safe in URLs and connection strings), unique
/// to this process and call.
pub(crate) fn password(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{}x{nanos:x}n{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Checks an SQL identifier used in setup helpers (database and user names).
pub(crate) fn check_identifier(name: &str) -> Result<(), LaunchError> {
    let ok = !name.is_empty()
        && name.len() <= 60
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LaunchError(format!(
            "'{name}' is not a plain identifier (letters, digits, '_')"
        )))
    }
}

/// Checks a password used in setup helpers (no quote can break the statement).
pub(crate) fn check_password(password: &str) -> Result<(), LaunchError> {
    if password.contains(['\'', '\\', '\0']) {
        Err(LaunchError(
            "setup passwords cannot contain quotes or backslashes".to_string(),
        ))
    } else {
        Ok(())
    }
}
