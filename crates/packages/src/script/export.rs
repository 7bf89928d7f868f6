//! Export: the script writes CSV files under `OutputPath`; each becomes a staged table.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::run::{self, Exit, Invocation};
use super::{Runner, Script, work_dir};
use crate::api::{Export, ExportOutcome, ExportRequest, PackageError};
use crate::output::ExportOutput;

/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 10_000;

/// A PowerShell single-quoted string.
fn ps_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Script {
    fn export_invocation(&self, runner: &Runner, prefix: &Path, incremental: bool) -> Invocation {
        let flag = if incremental { "true" } else { "false" };
        let script = self.settings.script.clone().into_os_string();
        match runner {
            Runner::Pwsh(pwsh) => Invocation {
                program: pwsh.clone(),
                args: vec![
                    "-NoProfile".into(),
                    "-NonInteractive".into(),
                    "-Command".into(),
                    format!(
                        "$OutputPath = {}; $IsIncremental = ${flag}; & {}",
                        ps_quote(&prefix.to_string_lossy()),
                        ps_quote(&self.settings.script.to_string_lossy())
                    )
                    .into(),
                ],
            },
            Runner::Robot(robot) => {
                let mut o = OsString::from("OutputPath:");
                o.push(prefix);
                let outdir = prefix
                    .parent()
                    .and_then(Path::parent)
                    .unwrap_or(prefix)
                    .join("robot");
                Invocation {
                    program: robot.clone(),
                    args: vec![
                        "--outputdir".into(),
                        outdir.into_os_string(),
                        "--variable".into(),
                        o,
                        "--variable".into(),
                        format!("IsIncremental:{flag}").into(),
                        script,
                    ],
                }
            }
            Runner::Direct => Invocation {
                program: self.settings.script.clone(),
                args: vec![prefix.as_os_str().to_owned(), flag.into()],
            },
        }
    }

    fn export_error(&self, message: String, retryable: bool) -> PackageError {
        PackageError::System {
            connection: self.env.connection.clone(),
            system: self.settings.script.display().to_string(),
            operation: "export",
            message,
            retryable,
        }
    }

    /// The tables the script wrote: `(suffix, file)`, sorted by file name.
    fn written_tables(
        &self,
        folder: &Path,
        request: &ExportRequest<'_>,
    ) -> Result<Vec<(Option<String>, PathBuf)>, PackageError> {
        let connection = &self.env.connection;
        let mut tables = Vec::new();
        let entries = std::fs::read_dir(folder).map_err(|e| PackageError::io("list", folder, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| PackageError::io("list", folder, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let stem = match name.len().checked_sub(4) {
                Some(i)
                    if is_file
                        && name.is_char_boundary(i)
                        && name[i..].eq_ignore_ascii_case(".csv") =>
                {
                    &name[..i]
                }
                _ => {
                    request.progress.phase(&format!(
                        "script {connection}: ignoring '{name}' in the output folder: not a .csv file"
                    ));
                    continue;
                }
            };
            let suffix = if stem.eq_ignore_ascii_case(connection) {
                None
            } else {
                match stem.get(..connection.len() + 1) {
                    Some(p)
                        if p[..connection.len()].eq_ignore_ascii_case(connection)
                            && p.ends_with('_')
                            && stem.len() > p.len() =>
                    {
                        Some(stem[p.len()..].to_string())
                    }
                    _ => {
                        return Err(PackageError::Data {
                            location: path.display().to_string(),
                            message: format!(
                                "the script wrote '{name}', which is not a table of connection '{connection}': write tables as $OutputPath<table>.csv ({connection}_<table>.csv)"
                            ),
                        });
                    }
                }
            };
            tables.push((suffix, path));
        }
        tables.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(tables)
    }
}

#[async_trait]
impl Export for Script {
    async fn export(
        &self,
        request: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError> {
        let runner = self.runner()?;
        let incremental = request.incremental && request.cookie.is_some();
        let started = chrono::Utc::now();
        let dir = work_dir(&self.env.connection)?;
        let folder = dir.path().join("ExportOutput");
        std::fs::create_dir(&folder).map_err(|e| PackageError::io("create", &folder, e))?;
        let prefix = folder.join(format!("{}_", self.env.connection));
        let invocation = self.export_invocation(&runner, &prefix, incremental);
        request.progress.phase(&format!("running {invocation}"));
        let outcome = run::run(self.run_spec(&invocation, request.progress)).await?;
        if !outcome.exit.success() {
            return Err(self.export_error(
                format!("the script {}; no table was kept", outcome.describe()),
                matches!(outcome.exit, Exit::TimedOut(_)),
            ));
        }
        let tables = self.written_tables(&folder, request)?;
        if tables.is_empty() {
            return Err(self.export_error(
                format!(
                    "the script exited with status 0 but wrote no table: write each table as $OutputPath<table>.csv ({}_<table>.csv in the folder OutputPath names)",
                    self.env.connection
                ),
                false,
            ));
        }
        for (suffix, path) in &tables {
            request
                .progress
                .phase(&format!("reading {}", path.display()));
            copy_table(out, suffix.as_deref(), path, request)?;
        }
        Ok(ExportOutcome {
            notes: Vec::new(),
            cookie: Some(format!(
                "script export ({}) started {}",
                if incremental {
                    "incremental"
                } else {
                    "complete"
                },
                started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            incremental,
        })
    }
}

/// Checks one CSV file the script wrote and copies it into the staged table.
fn copy_table(
    out: &mut ExportOutput,
    suffix: Option<&str>,
    path: &Path,
    request: &ExportRequest<'_>,
) -> Result<(), PackageError> {
    let data_error = |line: Option<u64>, message: String| PackageError::Data {
        location: match line {
            Some(l) => format!("{}:{l}", path.display()),
            None => path.display().to_string(),
        },
        message,
    };
    let csv_error = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(io) => PackageError::io("read", path, io),
        csv::ErrorKind::Utf8 { pos, err } => data_error(
            pos.map(|p| p.line()),
            format!(
                "field {} is not valid UTF-8 (byte {} of the field): write the file in UTF-8",
                err.field() + 1,
                err.valid_up_to()
            ),
        ),
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => data_error(
            pos.map(|p| p.line()),
            format!("{len} fields where the header has {expected_len}"),
        ),
        other => data_error(None, format!("{other:?}")),
    };
    let file = std::fs::File::open(path).map_err(|e| PackageError::io("open", path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(std::io::BufReader::with_capacity(256 * 1024, file));
    let mut record = csv::StringRecord::new();
    if !reader.read_record(&mut record).map_err(csv_error)? {
        return Err(data_error(
            None,
            "empty file: no header row; the first line must name the columns".into(),
        ));
    }
    let header: Vec<String> = record
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                h.trim_start_matches('\u{feff}').to_string()
            } else {
                h.to_string()
            }
        })
        .collect();
    if let Some(i) = header.iter().position(|h| h.trim().is_empty()) {
        return Err(data_error(
            Some(1),
            format!(
                "column {} has no name in the header row; the first line must name every column",
                i + 1
            ),
        ));
    }
    let table = out.create(suffix, &header)?;
    let name = out.name(table).to_string();
    let mut pending = 0;
    while reader.read_record(&mut record).map_err(csv_error)? {
        out.write_byte_record(table, record.as_byte_record())?;
        pending += 1;
        if pending == PROGRESS_EVERY {
            request.progress.rows(&name, pending);
            pending = 0;
        }
    }
    if pending > 0 {
        request.progress.rows(&name, pending);
    }
    Ok(())
}
