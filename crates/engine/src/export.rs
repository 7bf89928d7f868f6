//! The export runner: runs a package's export into a private staging folder, applies the
//! connection's transformations, then commits the tables and the incremental cookie as one set
//! (see [`crate::commit`]). A failed or interrupted export leaves the previous tables and cookie
//! as they were; an export killed at any instant is finished or undone by the next one, which
//! also removes the staging folders that interrupted exports left behind.

use std::fs;
use std::io::{ErrorKind as IoKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idlink_packages::api::{ExportRequest, Progress};
use idlink_packages::output::{ExportOutput, StagedTable, write_atomic, write_synced};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::commit::{self, Move, Recovery, Stop};
use crate::connection::Opened;
use crate::{Engine, EngineError, ErrorKind, blocking, transform};

/// Where and how to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Write tables here instead of `<work>/ExportOutput`.
    pub output_dir: Option<PathBuf>,
    /// Force a complete export even when a cookie exists.
    pub ignore_cookies: bool,
    /// Sync nothing to disk: the tables and cookie are a copy another process keeps durably
    /// (an agent's temporary export, which the server commits). Still all or nothing for
    /// readers.
    pub volatile: bool,
}

/// What one export did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReport {
    pub connection: String,
    pub package: String,
    pub incremental: bool,
    pub tables: Vec<TableReport>,
    #[serde(serialize_with = "ser_secs", deserialize_with = "de_secs")]
    pub duration: Duration,
    /// The cookie file written, if the package returned a cookie.
    pub cookie: Option<PathBuf>,
    /// What the run found and repaired before exporting (an interrupted commit finished or
    /// undone, staging folders of interrupted exports removed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableReport {
    pub name: String,
    pub file: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn de_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = <f64 as serde::Deserialize>::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
}

impl ExportReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum()
    }
}

/// The cookie file of a connection.
pub fn cookie_path(work_dir: &Path, connection: &str) -> PathBuf {
    cookies_dir(work_dir).join(format!("{connection}.cookie"))
}

/// Where cookies, commit journals and export locks live.
pub fn cookies_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("ExportCookies")
}

/// The run reports of a connection: the last success, and the last attempt.
pub fn report_paths(work_dir: &Path, connection: &str) -> (PathBuf, PathBuf) {
    let dir = work_dir.join("Reports");
    (
        dir.join(format!("export-{connection}.json")),
        dir.join(format!("export-{connection}.last-attempt.json")),
    )
}

/// The last attempt to export a connection, saved whatever its outcome.
#[derive(Debug, Clone, Serialize)]
struct Attempt<'a> {
    connection: &'a str,
    /// `succeeded`, `failed` or `interrupted`.
    outcome: &'static str,
    finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<AttemptError>,
    /// Whether the previous tables and cookie are unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_set_unchanged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a ExportReport>,
}

#[derive(Debug, Clone, Serialize)]
struct AttemptError {
    kind: ErrorKind,
    retryable: bool,
    message: String,
}

impl Engine {
    /// Records a failed attempt to export `connection` (e.g. its settings could not be opened)
    /// in `Reports/export-<id>.last-attempt.json`. `message` must already be redacted.
    pub fn record_failed_export(&self, connection: &str, error: &EngineError, message: &str) {
        let (_, attempt_file) = report_paths(self.work_dir(), connection);
        let attempt = Attempt {
            connection,
            outcome: if error.kind() == ErrorKind::Cancelled {
                "interrupted"
            } else {
                "failed"
            },
            finished_at: now(),
            error: Some(AttemptError {
                kind: error.kind(),
                retryable: error.kind().retryable(),
                message: message.to_string(),
            }),
            previous_set_unchanged: Some(error.nothing_committed()),
            report: None,
        };
        if let Err(e) = save_json(&attempt_file, &attempt) {
            tracing::warn!(connection, error = %e, "cannot record the export attempt");
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn save_json<T: Serialize>(file: &Path, value: &T) -> Result<(), EngineError> {
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir).map_err(|e| EngineError::io("create", dir, e))?;
    }
    let json = serde_json::to_vec_pretty(value)
        .map_err(|e| EngineError::Contract(format!("cannot encode a report: {e}")))?;
    write_atomic(file, &json).map_err(|e| EngineError::io("write", file, e))
}

/// A held export lock; released when dropped (or when the process dies).
#[derive(Debug)]
struct Lock {
    _file: fs::File,
}

fn lock(cookies: &Path, connection: &str) -> Result<Lock, EngineError> {
    let path = cookies.join(format!("{connection}.lock"));
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| EngineError::io("open the export lock", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            return Err(EngineError::Busy {
                what: "an export",
                connection: connection.to_string(),
                holder: if holder.trim().is_empty() {
                    "by another process".to_string()
                } else {
                    holder.trim().to_string()
                },
            });
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(EngineError::io("lock", &path, e));
        }
    }
    let holder = format!("process {} since {}", std::process::id(), now());
    let _ = file.set_len(0);
    let _ = file.write_all(holder.as_bytes());
    Ok(Lock { _file: file })
}

/// Finishes or undoes an interrupted commit of `connection`; says which, when there was one.
fn recover_journal(connection: &str, cookies: &Path) -> Result<Option<String>, EngineError> {
    let journal = commit::journal_path(cookies, connection);
    let recovered = commit::recover(&journal).map_err(|e| match e {
        e @ EngineError::Commit { .. } => e,
        other => EngineError::Commit {
            connection: connection.to_string(),
            message: format!("an interrupted commit could not be finished or undone: {other}"),
            outcome: "until it is, the tables and cookie may mix two exports; fix the cause and run the export again".to_string(),
            restored: false,
        },
    })?;
    Ok(match recovered {
        Recovery::Nothing => None,
        Recovery::RolledBack => Some(format!(
            "an interrupted commit of '{connection}' was undone: the tables and cookie are those of the export before it"
        )),
        Recovery::RolledForward => Some(format!(
            "an interrupted commit of '{connection}' was completed: the tables and cookie are those of the export it committed"
        )),
    })
}

/// Commits tables a remote agent exported, received into `dir` (a staging folder of the
/// connection beside `ExportOutput`), with the agent's cookie, as one set: what a local
/// export's commit does, under the same lock. `dir` is removed afterwards (kept only when a
/// failed commit could not be rolled back: the journal needs it).
pub(crate) fn commit_received(
    connection: &str,
    work: &Path,
    dir: &Path,
    tables: &[StagedTable],
    cookie: Option<&str>,
) -> Result<(Vec<TableReport>, Option<PathBuf>), EngineError> {
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| EngineError::io("resolve", p, e));
    let output_dir = absolute(&work.join("ExportOutput"))?;
    let cookies = absolute(&cookies_dir(work))?;
    let dir = absolute(dir)?;
    for d in [&output_dir, &cookies] {
        fs::create_dir_all(d).map_err(|e| EngineError::io("create", d, e))?;
    }
    let _lock = lock(&cookies, connection)?;
    if let Some(note) = recover_journal(connection, &cookies)? {
        tracing::warn!(connection, "{note}");
    }
    let result = commit_set(
        connection,
        tables,
        &output_dir,
        &cookies,
        &dir,
        cookie,
        true,
    );
    if !matches!(
        result,
        Err(EngineError::Commit {
            restored: false,
            ..
        })
    ) {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

/// Whether `name` is a staging folder of `connection`: `.staging-<id>_XXXXXX` (connection
/// identifiers have no `_`), or the older `.staging-<id>-XXXXXX` (six random characters).
fn is_staging_of(name: &str, connection: &str) -> bool {
    let Some(rest) = name.strip_prefix(".staging-") else {
        return false;
    };
    let Some(rest) = rest.get(connection.len()..).filter(|_| {
        rest.get(..connection.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(connection))
    }) else {
        return false;
    };
    if let Some(random) = rest.strip_prefix('_') {
        return !random.is_empty() && !random.contains('_');
    }
    rest.strip_prefix('-')
        .is_some_and(|r| r.len() == 6 && r.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn size_of(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|rd| rd.filter_map(Result::ok).map(|e| size_of(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Finishes or undoes an interrupted commit, then removes what interrupted exports left (staging
/// folders, new or old cookies without a journal). Returns what it did, in words.
fn repair(connection: &str, output_dir: &Path, cookies: &Path) -> Result<Vec<String>, EngineError> {
    let mut notes: Vec<String> = recover_journal(connection, cookies)?.into_iter().collect();
    let mut removed = 0usize;
    let mut bytes = 0u64;
    match fs::read_dir(output_dir) {
        Ok(entries) => {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name();
                if !is_staging_of(&name.to_string_lossy(), connection) {
                    continue;
                }
                let path = entry.path();
                bytes += size_of(&path);
                fs::remove_dir_all(&path).map_err(|e| EngineError::io("remove", &path, e))?;
                removed += 1;
            }
        }
        Err(e) if e.kind() == IoKind::NotFound => {}
        Err(e) => return Err(EngineError::io("list", output_dir, e)),
    }
    for leftover in [
        cookies.join(format!("{connection}.cookie.new")),
        cookies.join(format!("{connection}.cookie.old")),
    ] {
        match fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(EngineError::io("remove", &leftover, e)),
        }
    }
    if removed > 0 {
        notes.push(format!(
            "removed {removed} staging folder{} left by interrupted exports of '{connection}' ({})",
            if removed == 1 { "" } else { "s" },
            human(bytes)
        ));
    }
    Ok(notes)
}

/// Prepared folders and lock for one export run.
struct Prepared {
    _lock: Lock,
    output_dir: PathBuf,
    cookies: PathBuf,
    cookie: Option<String>,
    notes: Vec<String>,
    staging: tempfile::TempDir,
}

impl Opened {
    /// Exports the connection: stages its tables, applies its transformations, commits tables
    /// and cookie as one set, and saves the run report (`Reports/export-<id>.json`, and the
    /// last attempt, failed or not, in `Reports/export-<id>.last-attempt.json`).
    ///
    /// `cancel` interrupts the run before its commit: the staging folder is removed and nothing
    /// changes. Once the commit has started it runs to its end.
    pub async fn export(
        &self,
        opts: &ExportOptions,
        progress: Arc<dyn Progress>,
        cancel: &CancellationToken,
    ) -> Result<ExportReport, EngineError> {
        let result = self.export_inner(opts, progress, cancel).await;
        let work = self.engine().work_dir().to_path_buf();
        let (report_file, attempt_file) = report_paths(&work, self.id());
        match &result {
            Ok(report) => {
                save_json(&report_file, report)?;
                save_json(
                    &attempt_file,
                    &Attempt {
                        connection: self.id(),
                        outcome: "succeeded",
                        finished_at: now(),
                        error: None,
                        previous_set_unchanged: None,
                        report: Some(report),
                    },
                )?;
            }
            Err(e) => {
                let message = self.redact(&e.to_string());
                self.engine().record_failed_export(self.id(), e, &message);
            }
        }
        result
    }

    async fn export_inner(
        &self,
        opts: &ExportOptions,
        progress: Arc<dyn Progress>,
        cancel: &CancellationToken,
    ) -> Result<ExportReport, EngineError> {
        let started = Instant::now();
        let id = self.id().to_string();
        if self.instance.export().is_none() {
            return Err(self.unsupported("export"));
        }
        if !self.connection().export_enabled() {
            return Err(EngineError::Deactivated { connection: id });
        }
        let work = self.engine().work_dir().to_path_buf();
        let output_dir = opts
            .output_dir
            .clone()
            .unwrap_or_else(|| work.join("ExportOutput"));
        let incremental_package = self.package.capabilities.incremental;
        let ignore_cookies = opts.ignore_cookies;
        let prepared = {
            let id = id.clone();
            blocking(move || {
                // Absolute, so the journal still points at the right files when the next run
                // starts from another folder.
                let absolute =
                    |p: &Path| std::path::absolute(p).map_err(|e| EngineError::io("resolve", p, e));
                let output_dir = absolute(&output_dir)?;
                let cookies = absolute(&cookies_dir(&work))?;
                for dir in [&output_dir, &cookies] {
                    fs::create_dir_all(dir).map_err(|e| EngineError::io("create", dir, e))?;
                }
                let lock = lock(&cookies, &id)?;
                let notes = repair(&id, &output_dir, &cookies)?;
                let cookie_file = cookies.join(format!("{id}.cookie"));
                let cookie = if incremental_package && !ignore_cookies {
                    match fs::read_to_string(&cookie_file) {
                        Ok(c) => Some(c),
                        Err(e) if e.kind() == IoKind::NotFound => None,
                        Err(e) => return Err(EngineError::io("read", &cookie_file, e)),
                    }
                } else {
                    None
                };
                // Staged beside the output so the final renames stay on one file system.
                let staging = tempfile::Builder::new()
                    .prefix(&format!(".staging-{id}_"))
                    .tempdir_in(&output_dir)
                    .map_err(|e| EngineError::io("create a staging folder in", &output_dir, e))?;
                Ok(Prepared {
                    _lock: lock,
                    output_dir,
                    cookies,
                    cookie,
                    notes,
                    staging,
                })
            })
            .await?
        };
        for note in &prepared.notes {
            tracing::warn!(connection = %id, "{note}");
        }
        let token = cancel.clone();
        let mut out = ExportOutput::new(&id, prepared.staging.path())
            .with_cancel(Box::new(move || token.is_cancelled()));
        if opts.volatile {
            out = out.volatile();
        }
        let durable = !opts.volatile;
        let incremental = prepared.cookie.is_some();
        progress.phase(&format!("exporting {id} ({})", self.package.id));
        tracing::info!(
            connection = %id,
            package = self.package.id,
            incremental,
            "export starts"
        );
        let cancelled = || EngineError::Cancelled {
            what: "the export",
            connection: id.clone(),
        };
        // The package runs on a blocking-pool thread that drives its future: packages read
        // files and write rows synchronously between awaits, and that must not stall the
        // runtime's workers (a server runs other work on them). Network I/O still goes
        // through the runtime's reactor.
        let runtime = tokio::runtime::Handle::current();
        let package = self.package.id;
        let (instance, cookie, run_cancel, run_progress) = (
            self.instance.clone(),
            prepared.cookie.clone(),
            cancel.clone(),
            progress.clone(),
        );
        let run = tokio::task::spawn_blocking(move || {
            let outcome = runtime.block_on(async {
                let Some(export) = instance.export() else {
                    return Some(Err(idlink_packages::PackageError::Unsupported {
                        package: package.to_string(),
                        capability: "export",
                    }));
                };
                let request = ExportRequest {
                    // Incremental only after a complete export left a cookie.
                    incremental,
                    cookie: cookie.as_deref(),
                    progress: &*run_progress,
                };
                tokio::select! {
                    r = export.export(&request, &mut out) => Some(r),
                    () = run_cancel.cancelled() => None,
                }
            });
            (outcome, out)
        })
        .await;
        let (outcome, out) = match run {
            Ok(r) => r,
            Err(e) => {
                let e = EngineError::Contract(format!("the package's export task failed: {e}"));
                return Err(discard(prepared, e).await);
            }
        };
        let outcome = match outcome {
            Some(Ok(o)) => o,
            Some(Err(idlink_packages::PackageError::Cancelled { .. })) | None => {
                return Err(discard(prepared, cancelled()).await);
            }
            Some(Err(e)) => return Err(discard(prepared, e.into()).await),
        };
        let this = self.clone();
        let staging_path = prepared.staging.path().to_path_buf();
        let staged = blocking(move || {
            let mut staged = out.finish()?;
            transform::apply_all(
                &this.connection().transformations,
                &mut staged,
                &staging_path,
            )?;
            Ok(staged)
        });
        let staged = tokio::select! {
            r = staged => Some(r),
            () = cancel.cancelled() => None,
        };
        let staged = match staged {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(discard(prepared, e).await),
            None => return Err(discard(prepared, cancelled()).await),
        };
        if cancel.is_cancelled() {
            return Err(discard(prepared, cancelled()).await);
        }
        progress.phase(&format!("committing {id}"));
        let new_cookie = outcome.cookie.clone();
        let package_notes = outcome.notes.clone();
        let commit_id = id.clone();
        let (tables, cookie_written, notes) = blocking(move || {
            let Prepared {
                _lock,
                output_dir,
                cookies,
                notes,
                staging,
                ..
            } = prepared;
            let result = commit_set(
                &commit_id,
                &staged,
                &output_dir,
                &cookies,
                staging.path(),
                new_cookie.as_deref(),
                durable,
            );
            match &result {
                // The roll-back did not finish: the staging folder holds the previous tables
                // the journal needs to finish it on the next run. Keep it.
                Err(EngineError::Commit {
                    restored: false, ..
                }) => {
                    let _ = staging.keep();
                }
                // After a commit the folder is gone; after a finished roll-back it holds
                // nothing the previous set needs.
                _ => drop(staging),
            }
            result.map(|(t, c)| (t, c, notes))
        })
        .await?;
        let report = ExportReport {
            connection: id.clone(),
            package: self.package.id.to_string(),
            incremental: outcome.incremental,
            tables,
            duration: started.elapsed(),
            cookie: cookie_written,
            notes: notes.into_iter().chain(package_notes).collect(),
        };
        tracing::info!(
            connection = %id,
            rows = report.rows(),
            bytes = report.bytes(),
            "export done"
        );
        Ok(report)
    }
}

/// Removes a run's staging folder off the executor, then returns `e`.
async fn discard(prepared: Prepared, e: EngineError) -> EngineError {
    let _ = blocking(move || {
        drop(prepared);
        Ok(())
    })
    .await;
    e
}

/// Moves the staged tables and the new cookie into place as one set.
fn commit_set(
    connection: &str,
    staged: &[StagedTable],
    output_dir: &Path,
    cookies: &Path,
    staging: &Path,
    cookie: Option<&str>,
    durable: bool,
) -> Result<(Vec<TableReport>, Option<PathBuf>), EngineError> {
    let mut moves = Vec::with_capacity(staged.len() + 1);
    let mut reports = Vec::with_capacity(staged.len());
    for t in staged {
        let file = format!("{}.csv", t.name);
        let target = output_dir.join(&file);
        moves.push(Move {
            from: t.path.clone(),
            had_old: exists(&target)?,
            to: target.clone(),
            // Beside the staged tables (all `.csv`): a folder of its own would be one more
            // created and deleted per export.
            backup: staging.join(format!("{file}.old")),
        });
        reports.push(TableReport {
            name: t.name.clone(),
            file: target,
            rows: t.rows,
            bytes: t.bytes,
        });
    }
    let mut cookie_written = None;
    if let Some(c) = cookie {
        let target = cookies.join(format!("{connection}.cookie"));
        let new = cookies.join(format!("{connection}.cookie.new"));
        if durable {
            // Its folder is synced with the commit's moves (the cookie's own move is there).
            write_synced(&new, c.as_bytes()).map_err(|e| EngineError::io("write", &new, e))?;
        } else {
            fs::write(&new, c.as_bytes()).map_err(|e| EngineError::io("write", &new, e))?;
        }
        moves.push(Move {
            from: new,
            had_old: exists(&target)?,
            to: target.clone(),
            backup: cookies.join(format!("{connection}.cookie.old")),
        });
        cookie_written = Some(target);
    }
    let journal = commit::journal_path(cookies, connection);
    let result = commit::commit_with(&journal, connection, staging, moves, Stop::Never, durable);
    if result.is_err() && cookie.is_some() {
        let _ = fs::remove_file(cookies.join(format!("{connection}.cookie.new")));
    }
    result?;
    Ok((reports, cookie_written))
}

fn exists(path: &Path) -> Result<bool, EngineError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == IoKind::NotFound => Ok(false),
        Err(e) => Err(EngineError::io("inspect", path, e)),
    }
}

/// Finishes or undoes an interrupted commit of `connection` and removes what interrupted
/// exports left; what the next export does first. For tools and tests that inspect the tables
/// without exporting.
pub fn recover_connection(
    work_dir: &Path,
    output_dir: Option<&Path>,
    connection: &str,
) -> Result<Vec<String>, EngineError> {
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| EngineError::io("resolve", p, e));
    let cookies = absolute(&cookies_dir(work_dir))?;
    let output =
        absolute(&output_dir.map_or_else(|| work_dir.join("ExportOutput"), Path::to_path_buf))?;
    fs::create_dir_all(&cookies).map_err(|e| EngineError::io("create", &cookies, e))?;
    let _lock = lock(&cookies, connection)?;
    repair(connection, &output, &cookies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_folders_are_told_apart_by_connection() {
        assert!(is_staging_of(".staging-HR_a1B2c3", "HR"));
        assert!(is_staging_of(".staging-hr_a1B2c3", "HR"));
        assert!(is_staging_of(".staging-HR-a1B2c3", "HR"));
        assert!(!is_staging_of(".staging-HR-2_a1B2c3", "HR"));
        assert!(!is_staging_of(".staging-HR-2-a1B2c3", "HR"));
        assert!(is_staging_of(".staging-HR-2-a1B2c3", "HR-2"));
        assert!(!is_staging_of(".staging-HRX_a1B2c3", "HR"));
        assert!(!is_staging_of("HR.csv", "HR"));
    }
}
