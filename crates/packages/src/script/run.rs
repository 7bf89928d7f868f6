//! Running a script: one child process in its own process group, fed one line on stdin,
//! bounded in time, with its whole group killed when it is done or too slow.
//!
//! The leader is waited for without being reaped (`waitid` with `WNOWAIT`), so its process id,
//! which is also the group's id, cannot be reused while idlink signals the group: the group is
//! killed once the leader exits (children it left behind die with it), and only then is the
//! leader reaped.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use idlink_secrets::Redactor;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use zeroize::Zeroizing;

use crate::api::{PackageError, Progress};

/// Bytes of stderr kept for messages (the end of it).
const STDERR_TAIL: usize = 16 * 1024;
/// Characters of stderr put in one order's message.
const MESSAGE_TAIL: usize = 2000;
/// Longest stdout line passed on to progress; the rest of the line is dropped.
const LINE_MAX: usize = 4096;
/// How long a group asked to stop (SIGTERM) has before it is killed (SIGKILL).
const GRACE: Duration = Duration::from_secs(2);
/// How long the pipes may stay open once the group is dead (a process that left the group
/// may hold them).
const DRAIN: Duration = Duration::from_secs(2);

/// What runs: a program and its arguments. Arguments are never secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl std::fmt::Display for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", quote(self.program.as_os_str()))?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        Ok(())
    }
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// How the script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Success,
    Code(i32),
    Signal(i32),
    /// Ran past the time limit: its group was killed.
    TimedOut(Duration),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Success
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Success => f.write_str("exited with status 0"),
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => {
                let name = Signal::try_from(*s).map_or_else(|_| s.to_string(), |s| s.to_string());
                write!(f, "was killed by signal {name}")
            }
            Exit::TimedOut(t) => write!(
                f,
                "ran longer than TimeOut ({}s): its process group was killed",
                t.as_secs()
            ),
        }
    }
}

/// The end of a run.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub exit: Exit,
    /// The end of stderr, secrets redacted, cut at line starts (empty if it wrote nothing).
    pub stderr_tail: String,
}

impl Outcome {
    /// "exited with status 3; stderr: ..." for messages.
    pub fn describe(&self) -> String {
        if self.stderr_tail.trim().is_empty() {
            format!("{} (no stderr)", self.exit)
        } else {
            format!(
                "{}; end of stderr:\n{}",
                self.exit,
                self.stderr_tail.trim_end()
            )
        }
    }
}

/// One run to do.
pub(crate) struct Run<'a> {
    pub invocation: &'a Invocation,
    pub cwd: &'a Path,
    /// Written to stdin, then stdin is closed. Holds the secured options.
    pub stdin: Zeroizing<Vec<u8>>,
    pub timeout: Duration,
    pub redactor: &'a Redactor,
    /// The longest secret, in bytes: text cut from a stream loses this much more at the cut.
    pub longest_secret: usize,
    pub progress: &'a dyn Progress,
    /// The environment the script starts from (idlink's own); [`withheld_variable`]s are
    /// removed from it.
    pub environment: Vec<(OsString, OsString)>,
    /// How the script is named in messages.
    pub connection: &'a str,
}

/// Kills the group if the run is abandoned (the future dropped) before the leader was reaped.
struct Group {
    child: Option<Child>,
    pgid: Pid,
}

impl Group {
    fn signal(&self, signal: Signal) {
        // ESRCH: the group is already empty. Nothing else can fail for our own group.
        let _ = killpg(self.pgid, signal);
    }

    /// Kills what is left of the group and reaps the leader (which has exited).
    fn finish(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.signal(Signal::SIGKILL);
        let mut child = self
            .child
            .take()
            .ok_or_else(|| std::io::Error::other("reaped twice"))?;
        child.wait()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(Signal::SIGKILL);
            // Reap off the caller's thread: the leader dies at once, but `wait` blocks.
            std::thread::spawn(move || child.wait());
        }
    }
}

/// Variables never passed to scripts: idlink's own, among them the `IDLINK__...` settings
/// overrides, which may hold secured values.
pub(crate) fn withheld_variable(name: &OsStr) -> bool {
    name.as_encoded_bytes()
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"IDLINK"))
}

/// Runs the script to its end (or its time limit). `Err` only when it could not be started.
pub(crate) async fn run(mut run: Run<'_>) -> Result<Outcome, PackageError> {
    let mut command = Command::new(&run.invocation.program);
    command
        .args(&run.invocation.args)
        .current_dir(run.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .env_clear()
        .envs(
            std::mem::take(&mut run.environment)
                .into_iter()
                .filter(|(name, _)| !withheld_variable(name)),
        );
    let mut child = command.spawn().map_err(|e| PackageError::System {
        connection: run.connection.to_string(),
        system: run.invocation.program.display().to_string(),
        operation: "start the script",
        message: format!("{e} (command: {})", run.invocation),
        retryable: false,
    })?;
    let pid = i32::try_from(child.id()).map_err(|_| PackageError::System {
        connection: run.connection.to_string(),
        system: run.invocation.program.display().to_string(),
        operation: "start the script",
        message: "the process id does not fit a pid_t".into(),
        retryable: false,
    })?;
    let pgid = Pid::from_raw(pid);
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let group = Group {
        child: Some(child),
        pgid,
    };

    // stdin: one line, then closed. A script that never reads it gets EPIPE on our side only.
    if let Some(mut pipe) = stdin {
        let line = std::mem::take(&mut run.stdin);
        std::thread::spawn(move || {
            let _ = pipe.write_all(&line);
        });
    }
    // stderr: the last STDERR_TAIL bytes.
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    if let Some(pipe) = stderr {
        std::thread::spawn(move || {
            let _ = err_tx.send(tail(pipe, STDERR_TAIL));
        });
    }
    // stdout: lines, passed on as progress.
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<(Vec<u8>, bool)>(64);
    if let Some(pipe) = stdout {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            while let Ok(Some(line)) = read_line(&mut reader, LINE_MAX) {
                if line_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    }
    // The leader's exit, without reaping it.
    let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        let r = loop {
            match waitid(Id::Pid(pgid), flags) {
                Err(Errno::EINTR) => continue,
                other => break other.map(|_| ()),
            }
        };
        let _ = exit_tx.send(r);
    });

    let deadline = tokio::time::Instant::now() + run.timeout;
    let mut timed_out = false;
    let mut lines_open = true;
    loop {
        tokio::select! {
            _ = &mut exit_rx => break,
            line = line_rx.recv(), if lines_open => match line {
                Some((line, cut)) => report_line(&run, &line, cut),
                None => lines_open = false,
            },
            () = tokio::time::sleep_until(deadline), if !timed_out => {
                timed_out = true;
                group.signal(Signal::SIGTERM);
                if tokio::time::timeout(GRACE, &mut exit_rx).await.is_err() {
                    group.signal(Signal::SIGKILL);
                    let _ = (&mut exit_rx).await;
                }
                break;
            }
        }
    }
    let status = tokio::task::spawn_blocking(move || group.finish())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| PackageError::io("wait for", &run.invocation.program, e))?;
    // The group is dead: the pipes close unless a process that left the group holds them.
    let drain_until = tokio::time::Instant::now() + DRAIN;
    while lines_open {
        match tokio::time::timeout_at(drain_until, line_rx.recv()).await {
            Ok(Some((line, cut))) => report_line(&run, &line, cut),
            _ => lines_open = false,
        }
    }
    let err = tokio::task::spawn_blocking(move || err_rx.recv_timeout(DRAIN).ok())
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let exit = if timed_out {
        Exit::TimedOut(run.timeout)
    } else if let Some(code) = status.code() {
        if code == 0 {
            Exit::Success
        } else {
            Exit::Code(code)
        }
    } else {
        Exit::Signal(status.signal().unwrap_or(0))
    };
    Ok(Outcome {
        exit,
        stderr_tail: safe_tail(&err, run.redactor, run.longest_secret),
    })
}

fn report_line(run: &Run<'_>, line: &[u8], cut: bool) {
    let text = String::from_utf8_lossy(line);
    let mut text = run.redactor.redact(text.trim_end_matches(['\r', '\n']));
    if cut {
        // The cut may have split a secret: drop what could be its start.
        let keep = text.len().saturating_sub(run.longest_secret);
        let keep = (0..=keep)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(keep);
        text.push_str(" [line cut]");
    }
    if !text.trim().is_empty() {
        run.progress
            .phase(&format!("script {}: {text}", run.connection));
    }
}

/// Reads one line of at most `max` bytes; the rest of a longer line is skipped. `None` at end.
fn read_line(reader: &mut impl BufRead, max: usize) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut line = Vec::new();
    let mut cut = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some((line, cut)));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        if done {
            return Ok(Some((line, cut)));
        }
    }
}

/// The last `max` bytes of a stream, and whether anything before them was dropped.
fn tail(mut r: impl Read, max: usize) -> (Vec<u8>, bool) {
    let mut ring: std::collections::VecDeque<u8> = std::collections::VecDeque::with_capacity(max);
    let mut buf = [0u8; 8192];
    let mut dropped = false;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                ring.extend(&buf[..n]);
                if ring.len() > max {
                    dropped = true;
                    ring.drain(..ring.len() - max);
                }
            }
        }
    }
    (ring.into_iter().collect(), dropped)
}

/// The end of a stream fit for a message: when the stream was cut, its first (partial) line is
/// dropped (or, with no line break, as many bytes as the longest secret), so no part of a
/// secret survives the cut; secrets redacted; then the last lines within [`MESSAGE_TAIL`].
fn safe_tail((bytes, dropped): &(Vec<u8>, bool), redactor: &Redactor, longest: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut text: &str = &text;
    if *dropped {
        text = match text.find('\n') {
            Some(i) => &text[i + 1..],
            None => {
                let from = longest.min(text.len());
                let from = (from..=text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                &text[from..]
            }
        };
    }
    let clean = redactor.redact(text);
    if clean.len() <= MESSAGE_TAIL {
        return clean;
    }
    let mut from = clean.len() - MESSAGE_TAIL;
    while !clean.is_char_boundary(from) {
        from += 1;
    }
    let cut = &clean[from..];
    match cut.find('\n') {
        Some(i) if i + 1 < cut.len() => cut[i + 1..].to_string(),
        _ => cut.to_string(),
    }
}

/// Finds `name` in the folders of `path` (a `PATH` value): the first executable file.
pub(crate) fn find_in_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idlink_variables_are_withheld() {
        for name in [
            "IDLINK__Connections__HR__Options__Password",
            "idlink_key",
            "IDLINK",
        ] {
            assert!(withheld_variable(OsStr::new(name)), "{name}");
        }
        for name in ["PATH", "HOME", "ID", "XIDLINK"] {
            assert!(!withheld_variable(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn a_cut_tail_loses_its_partial_first_line() {
        let mut r = Redactor::new();
        r.add("hunter2-secret");
        // The stream kept only "2-secret ...": the start of the secret went with the cut.
        let t = safe_tail(
            &(b"2-secret x\nline two hunter2-secret\n".to_vec(), true),
            &r,
            14,
        );
        assert_eq!(t, "line two **REDACTED**\n");
        let t = safe_tail(&(b"2-secret and more text".to_vec(), true), &r, 14);
        assert!(!t.contains("secret"), "{t}");
        let t = safe_tail(&(b"whole\n".to_vec(), false), &r, 14);
        assert_eq!(t, "whole\n");
    }

    #[test]
    fn long_tails_keep_whole_last_lines() {
        let r = Redactor::new();
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let t = safe_tail(&(text.into_bytes(), false), &r, 0);
        assert!(
            t.len() <= MESSAGE_TAIL && t.starts_with("line ") && t.ends_with("line 999\n"),
            "{t}"
        );
    }

    #[test]
    fn lines_are_bounded() {
        let data = format!("{}\nshort\nlast", "x".repeat(10_000));
        let mut r = BufReader::with_capacity(64, data.as_bytes());
        let (first, cut) = read_line(&mut r, 100).expect("read").expect("line");
        assert_eq!((first.len(), cut), (100, true));
        assert_eq!(
            read_line(&mut r, 100).expect("read"),
            Some((b"short\n".to_vec(), false))
        );
        assert_eq!(
            read_line(&mut r, 100).expect("read"),
            Some((b"last".to_vec(), false))
        );
        assert_eq!(read_line(&mut r, 100).expect("read"), None);
    }

    #[test]
    fn invocations_print_as_shell_words() {
        let i = Invocation {
            program: PathBuf::from("/usr/bin/pwsh"),
            args: vec!["-File".into(), "/a b/it's.ps1".into()],
        };
        assert_eq!(i.to_string(), r"/usr/bin/pwsh -File '/a b/it'\''s.ps1'");
    }
}
