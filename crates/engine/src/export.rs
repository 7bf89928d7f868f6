//! The export runner: runs a package's export into a private staging folder, applies the
//! connection's transformations, then moves each table into `ExportOutput` with an atomic
//! rename, and only then advances the incremental cookie. A failed export leaves the previous
//! tables and cookie as they were.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use idlink_packages::api::{ExportRequest, Progress};
use idlink_packages::output::{ExportOutput, StagedTable, sync_dir, write_atomic};
use serde::Serialize;

use crate::connection::OpenConnection;
use crate::{EngineError, transform};

/// Where and how to export.
pub struct ExportOptions<'a> {
    /// The working folder: `ExportOutput`, `ExportCookies` and `Reports` live below it.
    pub work_dir: &'a Path,
    /// Write tables here instead of `<work>/ExportOutput`.
    pub output_dir: Option<&'a Path>,
    /// Force a complete export even when a cookie exists.
    pub ignore_cookies: bool,
    pub progress: &'a dyn Progress,
}

impl std::fmt::Debug for ExportOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportOptions")
            .field("work_dir", &self.work_dir)
            .field("output_dir", &self.output_dir)
            .field("ignore_cookies", &self.ignore_cookies)
            .finish()
    }
}

/// What one export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub connection: String,
    pub package: String,
    pub incremental: bool,
    pub tables: Vec<TableReport>,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// The cookie file written, if the package returned a cookie.
    pub cookie: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub name: String,
    pub file: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
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
    work_dir
        .join("ExportCookies")
        .join(format!("{connection}.cookie"))
}

/// Runs the export of an opened connection.
pub async fn run_export(
    open: &OpenConnection<'_>,
    opts: &ExportOptions<'_>,
) -> Result<ExportReport, EngineError> {
    let started = Instant::now();
    let id = open.connection.id.value.as_str();
    let export = open
        .instance
        .export()
        .ok_or_else(|| EngineError::Unsupported {
            connection: id.to_string(),
            package: open.package.id.to_string(),
            capability: "export",
        })?;
    if !open.connection.export_enabled() {
        return Err(EngineError::Deactivated {
            connection: id.to_string(),
        });
    }
    let output_dir = opts
        .output_dir
        .map_or_else(|| opts.work_dir.join("ExportOutput"), Path::to_path_buf);
    std::fs::create_dir_all(&output_dir).map_err(|e| EngineError::io("create", &output_dir, e))?;
    let cookie_file = cookie_path(opts.work_dir, id);
    let cookie = if open.package.capabilities.incremental && !opts.ignore_cookies {
        match std::fs::read_to_string(&cookie_file) {
            Ok(c) => Some(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(EngineError::io("read", &cookie_file, e)),
        }
    } else {
        None
    };
    // Staged beside the output so the final renames stay on one file system.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".staging-{id}-"))
        .tempdir_in(&output_dir)
        .map_err(|e| EngineError::io("create a staging folder in", &output_dir, e))?;
    let mut out = ExportOutput::new(id, staging.path());
    let request = ExportRequest {
        // Incremental only after a complete export left a cookie.
        incremental: cookie.is_some(),
        cookie: cookie.as_deref(),
        progress: opts.progress,
    };
    opts.progress
        .phase(&format!("exporting {id} ({})", open.package.id));
    tracing::info!(
        connection = id,
        package = open.package.id,
        incremental = request.incremental,
        "export starts"
    );
    let outcome = export.export(&request, &mut out).await?;
    let mut staged = out.finish()?;
    transform::apply_all(
        &open.connection.transformations,
        &mut staged,
        staging.path(),
    )?;
    let tables = commit(&staged, &output_dir)?;
    let cookie_written = match &outcome.cookie {
        Some(c) => {
            let dir = cookie_file.parent().unwrap_or(opts.work_dir);
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io("create", dir, e))?;
            write_atomic(&cookie_file, c.as_bytes())
                .map_err(|e| EngineError::io("write", &cookie_file, e))?;
            Some(cookie_file)
        }
        None => None,
    };
    let report = ExportReport {
        connection: id.to_string(),
        package: open.package.id.to_string(),
        incremental: outcome.incremental,
        tables,
        duration: started.elapsed(),
        cookie: cookie_written,
    };
    tracing::info!(
        connection = id,
        rows = report.rows(),
        bytes = report.bytes(),
        "export done"
    );
    Ok(report)
}

/// Moves each staged table into the output folder (atomic per table), then makes the renames
/// durable.
fn commit(staged: &[StagedTable], output_dir: &Path) -> Result<Vec<TableReport>, EngineError> {
    let mut reports = Vec::with_capacity(staged.len());
    for t in staged {
        let target = output_dir.join(format!("{}.csv", t.name));
        std::fs::rename(&t.path, &target)
            .map_err(|e| EngineError::io("move a table into", &target, e))?;
        reports.push(TableReport {
            name: t.name.clone(),
            file: target,
            rows: t.rows,
            bytes: t.bytes,
        });
    }
    sync_dir(output_dir).map_err(|e| EngineError::io("sync", output_dir, e))?;
    Ok(reports)
}
