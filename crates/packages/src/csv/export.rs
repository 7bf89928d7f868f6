//! Export (file -> one connection table) and check connection (the file is readable).

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use async_trait::async_trait;
use csv::ByteRecord;

use super::Csv;
use super::settings::FileSpec;
use super::source::{Source, Table, locate, trim};
use crate::api::{CheckConnection, Export, ExportOutcome, ExportRequest, PackageError};
use crate::output::ExportOutput;

/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 10_000;

impl Csv {
    /// The file this run reads, and whether the run is incremental (see the module docs).
    fn pick(&self, request: &ExportRequest<'_>) -> Result<(&FileSpec, bool), PackageError> {
        let settings = &self.settings;
        match (&settings.path, &settings.path_incremental) {
            (_, Some(inc)) if request.incremental && request.cookie.is_some() => Ok((inc, true)),
            (Some(path), _) => Ok((path, false)),
            // Only an incremental file: every export reads it.
            (None, Some(inc)) if request.incremental => Ok((inc, true)),
            (None, _) => Err(PackageError::Settings {
                connection: self.env.connection.clone(),
                path: "Path".into(),
                message: "a complete export needs Path: only PathIncremental is set".into(),
            }),
        }
    }
}

#[async_trait]
impl Export for Csv {
    async fn export(
        &self,
        request: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError> {
        let (spec, incremental) = self.pick(request)?;
        let source = locate(&self.env, spec)?;
        request
            .progress
            .phase(&format!("reading {}", source.path.display()));
        let table = Table::open(&source, &self.settings)?;
        let id = out.create(None, &table.header)?;
        let name = out.name(id).to_string();
        let keep = table.keep.clone();
        let verbatim = table.verbatim();
        let trims = &self.settings.trim;
        let mut pending = 0;
        let note = pipeline(table, &source, |batch| {
            for record in batch {
                if verbatim {
                    out.write_byte_record(id, record)?;
                } else {
                    out.write(
                        id,
                        keep.iter()
                            .map(|&i| trim(record.get(i).unwrap_or_default(), trims)),
                    )?;
                }
                pending += 1;
                if pending == PROGRESS_EVERY {
                    request.progress.rows(&name, pending);
                    pending = 0;
                }
            }
            Ok(())
        })?;
        if pending > 0 {
            request.progress.rows(&name, pending);
        }
        let notes = note.into_iter().collect();
        Ok(ExportOutcome {
            cookie: Some(cookie(&source, incremental)),
            incremental,
            notes,
        })
    }
}

/// Rows handed over from the reading thread to the writing one at a time, at most.
const BATCH_ROWS: usize = 1024;
/// Bytes of rows handed over at a time, about: a batch of wide rows (photos) holds fewer.
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight; with [`BATCH_ROWS`] and [`BATCH_BYTES`], this bounds the memory rows
/// take: about `BATCHES` x (`BATCH_BYTES` + the longest row), whatever the rows' width.
const BATCHES: usize = 4;
/// A record that held a row longer than this is let go once written, not reused: the
/// records kept for reuse hold at most this much each.
const KEPT_RECORD_BYTES: usize = 8 * 1024;

/// Quoted values holding lines that look like rows of their own: a quote left open, then
/// closed by another one further down, takes the rows between into one value, as the CSV
/// rules read it. They are told (the export's notes), not refused: a value may hold line
/// breaks and separators.
#[derive(Debug, Default)]
struct Swallowed {
    /// Values with such lines.
    values: u64,
    /// Such lines, in all.
    lines: u64,
    /// Where the first few values' rows start (bytes of the parsed text).
    starts: Vec<u64>,
}

/// Places [`Swallowed`] names.
const SWALLOWED_SHOWN: usize = 3;

impl Swallowed {
    /// Looks at `record` when it runs over several lines (the reader's line count, free).
    fn check(&mut self, table: &Table<'_>, record: &ByteRecord, next_line: u64) {
        let Some(start) = record.position() else {
            return;
        };
        if next_line <= start.line() + 1 {
            return;
        }
        let lines = table.rowlike_lines(record);
        if lines == 0 {
            return;
        }
        self.values += 1;
        self.lines += lines;
        if self.starts.len() < SWALLOWED_SHOWN {
            self.starts.push(start.byte());
        }
    }

    /// The export's note, if any value swallowed rows: their lines are found in one more
    /// reading of the file, only then.
    fn note(&self, table: &Table<'_>) -> Option<String> {
        if self.starts.is_empty() {
            return None;
        }
        let shown = table.locations(&self.starts);
        let plural = |n: u64, one: &str, many: &str| {
            if n == 1 {
                format!("{n} {one}")
            } else {
                format!("{n} {many}")
            }
        };
        let lines = plural(
            self.lines,
            "line that looks like a row of its own",
            "lines that look like rows of their own",
        );
        let what = if self.values == 1 {
            format!("{}: a quoted value holds {lines}", shown[0])
        } else {
            let more = if self.values > shown.len() as u64 {
                ", ..."
            } else {
                ""
            };
            format!(
                "{} hold {lines} ({}{more})",
                plural(self.values, "quoted value", "quoted values"),
                shown.join(", ")
            )
        };
        Some(format!(
            "{what} (as many separators as the header): a quote left open and closed further down takes the rows between into one value, so they are not exported as rows; check the quotes (a quote inside a quoted value is written twice: \"\")"
        ))
    }
}

/// Rows read, ready to write. The records are reused from batch to batch, so rows cost no
/// allocation once the first batches have grown to the rows' size (short rows: see
/// [`KEPT_RECORD_BYTES`]).
struct Batch {
    rows: Vec<ByteRecord>,
    len: usize,
}

/// Reads the table's rows on a second thread (decoding and parsing) while `write` consumes
/// them on this one, in order. The first error, on either side, stops both; rows before a bad
/// row have been written (the runner then discards the staged table). Returns the note on
/// values that seem to have swallowed rows, if any.
fn pipeline<F>(
    table: Table<'_>,
    source: &Source,
    mut write: F,
) -> Result<Option<String>, PackageError>
where
    F: FnMut(&[ByteRecord]) -> Result<(), PackageError>,
{
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = sync_channel::<Result<Batch, PackageError>>(BATCHES);
        let (empty_tx, empty_rx) = sync_channel::<Batch>(BATCHES);
        for _ in 0..BATCHES {
            let batch = Batch {
                rows: vec![ByteRecord::new(); BATCH_ROWS],
                len: 0,
            };
            // The channel has room for every batch: this cannot block nor fail.
            let _ = empty_tx.send(batch);
        }
        let reader = std::thread::Builder::new()
            .name("csv-read".into())
            .spawn_scoped(scope, move || read_rows(table, &full_tx, &empty_rx))
            .map_err(|e| PackageError::io("start a reading thread for", &source.path, e))?;
        // Ends when the reader is done and has dropped its sender; returning early drops the
        // channels, which stops the reader.
        for batch in &full_rx {
            let mut batch = batch?;
            write(&batch.rows[..batch.len])?;
            for record in &mut batch.rows[..batch.len] {
                if record.as_slice().len() > KEPT_RECORD_BYTES {
                    *record = ByteRecord::new();
                }
            }
            let _ = empty_tx.send(batch);
        }
        // A reader that panicked has sent no error: the rows may be incomplete.
        reader.join().map_err(|_| {
            PackageError::io(
                "read",
                &source.path,
                std::io::Error::other("the reading thread stopped unexpectedly"),
            )
        })
    })
}

/// The reading side of [`pipeline`]: fills the empty batches it is given and sends them back,
/// then an error if one stops it. Returns the note on values that swallowed rows.
fn read_rows(
    mut table: Table<'_>,
    full: &SyncSender<Result<Batch, PackageError>>,
    empty: &Receiver<Batch>,
) -> Option<String> {
    let mut swallowed = Swallowed::default();
    // Whether the last row read may hold an unclosed quote (see `Table::may_be_unclosed`).
    let mut suspicious = false;
    // Where the last row read starts (see `Table::open_quote_at_end`).
    let mut last_start = table.header_start;
    while let Ok(mut batch) = empty.recv() {
        batch.len = 0;
        let mut bytes = 0;
        let mut stop = None;
        let mut end = false;
        while let Some(record) = batch.rows.get_mut(batch.len) {
            if bytes >= BATCH_BYTES {
                break;
            }
            table.bound_next_row();
            match table.reader.read_byte_record(record) {
                Ok(true) if record.len() == table.width => {
                    swallowed.check(&table, record, table.reader.position().line());
                    batch.len += 1;
                    bytes += record.as_slice().len();
                }
                Ok(true) => {
                    // A quote left open takes every line after it into one short row: say
                    // so, not that the row is ragged.
                    let unclosed = table
                        .may_be_unclosed(record)
                        .then(|| table.unclosed_quote())
                        .flatten();
                    stop = Some(unclosed.unwrap_or_else(|| table.ragged(record)));
                    break;
                }
                Ok(false) => {
                    end = true;
                    break;
                }
                Err(e) => {
                    stop = Some(table.error(e));
                    break;
                }
            }
        }
        if let Some(last) = batch.len.checked_sub(1).and_then(|i| batch.rows.get(i)) {
            suspicious = table.may_be_unclosed(last);
            last_start = last.position().map(csv::Position::byte);
        }
        if end && stop.is_none() {
            stop = if suspicious {
                table.unclosed_quote()
            } else {
                table.open_quote_at_end(last_start)
            };
        }
        if batch.len > 0 && full.send(Ok(batch)).is_err() {
            break;
        }
        if let Some(e) = stop {
            let _ = full.send(Err(e));
            break;
        }
        if end {
            break;
        }
    }
    swallowed.note(&table)
}

/// The cookie left by an export: its mode, the file read and when. Its presence tells the next
/// run that a complete export has been done, so an incremental one may follow; its content is
/// informative only.
fn cookie(source: &Source, incremental: bool) -> String {
    let time = |t: std::time::SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    serde_json::json!({
        "mode": if incremental { "incremental" } else { "complete" },
        "file": source.path.display().to_string(),
        "modified": source.modified.map(time),
        "exported": time(std::time::SystemTime::now()),
    })
    .to_string()
}

#[async_trait]
impl CheckConnection for Csv {
    /// Every configured file (`Path`, `PathIncremental`) is found under the source roots and
    /// can be read.
    async fn check_connection(&self) -> Result<String, PackageError> {
        let mut reached = Vec::new();
        for spec in [&self.settings.path, &self.settings.path_incremental]
            .into_iter()
            .flatten()
        {
            let source = locate(&self.env, spec)?;
            let mut file = std::fs::File::open(&source.path)
                .map_err(|e| PackageError::io("open", &source.path, e))?;
            file.read(&mut [0u8; 1])
                .map_err(|e| PackageError::io("read", &source.path, e))?;
            reached.push(format!(
                "readable: {} ({} bytes)",
                source.path.display(),
                source.len
            ));
        }
        Ok(reached.join("; "))
    }
}
