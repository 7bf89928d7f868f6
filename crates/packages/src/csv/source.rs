//! Finding the file to read under `SourcesRootPaths`, and opening it as a table: decoded,
//! its leading lines skipped, its header read and checked.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use csv::ByteRecord;

use super::decode::{Decoded, Malformed, SourceEncoding, line_at, skip_line};
use super::settings::{CsvSettings, FileSpec};
use crate::api::{Environment, PackageError};

/// A file found under the source roots.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The canonical path (checked against the roots).
    pub path: PathBuf,
    /// The file name, for error locations (`people.csv:12`).
    pub name: String,
    pub len: u64,
    pub modified: Option<SystemTime>,
}

/// Finds the file a [`FileSpec`] names: the path itself, or the newest matching file.
pub(crate) fn locate(env: &Environment, spec: &FileSpec) -> Result<Source, PackageError> {
    let path = match spec {
        FileSpec::Plain(p) => env.source_path(p)?,
        FileSpec::Regex {
            folder,
            shown,
            pattern,
        } => {
            let folder = env.source_path(if folder.is_empty() { "." } else { folder })?;
            let newest = newest_match(&folder, pattern)?.ok_or_else(|| PackageError::Data {
                location: folder.display().to_string(),
                message: format!(
                    "no file in this folder matches '{shown}' (IsFileNameRegex: the whole file name must match)"
                ),
            })?;
            // The match may be a symbolic link that leaves the roots: check it too.
            env.roots.resolve(&newest)?
        }
    };
    let meta = std::fs::metadata(&path).map_err(|e| PackageError::io("open", &path, e))?;
    if !meta.is_file() {
        return Err(PackageError::io(
            "read",
            &path,
            std::io::Error::other("it is not a regular file"),
        ));
    }
    Ok(Source {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
        len: meta.len(),
        modified: meta.modified().ok(),
        path,
    })
}

/// The newest regular file of `folder` whose name matches: latest modification time, then
/// the greatest name (so `people_20240102.csv` beats `people_20240101.csv` written in the
/// same second).
fn newest_match(folder: &Path, pattern: &regex::Regex) -> Result<Option<PathBuf>, PackageError> {
    let entries = std::fs::read_dir(folder).map_err(|e| PackageError::io("list", folder, e))?;
    let mut best: Option<(SystemTime, String, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| PackageError::io("list", folder, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !pattern.is_match(name) {
            continue;
        }
        let path = entry.path();
        // Follows symbolic links; broken links and folders are not candidates.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let newer = best
            .as_ref()
            .is_none_or(|(m, n, _)| (modified, name) > (*m, n.as_str()));
        if newer {
            best = Some((modified, name.to_string(), path));
        }
    }
    Ok(best.map(|(_, _, p)| p))
}

/// Buffer of the CSV parser.
const PARSE_BUFFER: usize = 128 * 1024;

/// An open CSV file, positioned after its header.
pub(crate) struct Table<'s> {
    pub source: &'s Source,
    pub reader: csv::Reader<LastLine<Decoded<File>>>,
    /// Names of the kept columns (those with a header).
    pub header: Vec<String>,
    /// Indexes of the kept columns among all fields.
    pub keep: Vec<usize>,
    /// Fields in the header, dropped ones included: every row must have as many.
    pub width: usize,
    /// Where the header record starts (its byte in the parsed text).
    pub header_start: Option<u64>,
    /// Where the row being read starts (its byte in the parsed text): see
    /// [`Table::bound_next_row`].
    row_start: u64,
    settings: &'s CsvSettings,
}

impl std::fmt::Debug for Table<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("source", &self.source.path)
            .field("header", &self.header)
            .field("width", &self.width)
            .finish()
    }
}

impl<'s> Table<'s> {
    /// Opens `source`: decodes it, skips `NumberOfLinesToSkip` lines, reads the header.
    pub fn open(source: &'s Source, settings: &'s CsvSettings) -> Result<Self, PackageError> {
        let file =
            File::open(&source.path).map_err(|e| PackageError::io("open", &source.path, e))?;
        let mut decoded = Decoded::new(file, settings.encoding);
        for skipped in 0..settings.skip {
            let more = skip_line(&mut decoded)
                .map_err(|e| read_error(source, settings, 0, csv::Error::from(e)))?;
            if !more {
                return Err(PackageError::Data {
                    location: source.name.clone(),
                    message: if skipped == 0 {
                        "empty file: no header".to_string()
                    } else {
                        format!(
                            "no header: the file has {skipped} line(s) and NumberOfLinesToSkip is {}",
                            settings.skip
                        )
                    },
                });
            }
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(settings.separator)
            .buffer_capacity(PARSE_BUFFER)
            .from_reader(LastLine::new(decoded, row_room(settings)));
        let mut record = ByteRecord::new();
        let found = reader
            .read_byte_record(&mut record)
            .map_err(|e| read_error(source, settings, 0, e))?;
        if !found {
            return Err(PackageError::Data {
                location: source.name.clone(),
                message: if settings.skip == 0 {
                    "empty file: no header".to_string()
                } else {
                    format!(
                        "empty file: no header after the {} skipped line(s)",
                        settings.skip
                    )
                },
            });
        }
        let mut table = Table {
            source,
            reader,
            header: Vec::new(),
            keep: Vec::new(),
            width: 0,
            header_start: record.position().map(csv::Position::byte),
            row_start: 0,
            settings,
        };
        table.read_header(&record)?;
        Ok(table)
    }

    /// Keeps the named columns; refuses duplicate names.
    fn read_header(&mut self, record: &ByteRecord) -> Result<(), PackageError> {
        // Found only for an error: finding the line reads the file again.
        let bad = |message: String| PackageError::Data {
            location: self.location(record),
            message,
        };
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let (mut header, mut keep) = (Vec::new(), Vec::new());
        for (i, field) in record.iter().enumerate() {
            let field = trim(field, &self.settings.trim);
            let name = std::str::from_utf8(field)
                .map_err(|e| bad(format!("column {} of the header is not UTF-8: {e}", i + 1)))?;
            if name.contains('\0') && !self.settings.encoding.name.starts_with("UTF-16") {
                return Err(bad("the header holds NUL characters: the file is probably UTF-16 without a byte-order mark; set Encoding to UTF-16LE or UTF-16BE".into()));
            }
            if name.trim().is_empty() {
                continue;
            }
            if let Some(first) = seen.insert(name, i) {
                return Err(bad(format!(
                    "column '{name}' appears twice in the header: columns {} and {}",
                    first + 1,
                    i + 1
                )));
            }
            header.push(name.to_string());
            keep.push(i);
        }
        if header.is_empty() {
            return Err(bad("no column has a header: the header row is empty".into()));
        }
        self.header = header;
        self.keep = keep;
        self.width = record.len();
        Ok(())
    }

    /// `people.csv:12` for each record starting at `starts` (bytes of the parsed text,
    /// ascending), found in one reading of the file; bare file names when it cannot be read.
    pub fn locations(&self, starts: &[u64]) -> Vec<String> {
        match record_lines(self.source, self.settings, starts) {
            Ok(lines) => lines
                .iter()
                .map(|line| format!("{}:{line}", self.source.name))
                .collect(),
            Err(_) => vec![self.source.name.clone(); starts.len()],
        }
    }

    /// `people.csv:12`: the file name and the line where `record` starts.
    pub fn location(&self, record: &ByteRecord) -> String {
        location(
            self.source,
            self.settings,
            record.position().map(|p| p.byte()),
        )
    }

    /// Whether every column is kept and no value is trimmed: rows are copied as they are.
    pub fn verbatim(&self) -> bool {
        self.keep.len() == self.width && self.settings.trim.is_empty()
    }

    /// Lets the CSV reader read the next row, and no more than `MaxRowSize` bytes of it: a
    /// longer one (a quoted value left open takes in every line after it) fails with
    /// [`Table::error`] instead of growing the record to the file's size. Cheap: called per row.
    pub fn bound_next_row(&mut self) {
        self.row_start = self.reader.position().byte();
        self.reader.get_mut().limit = self.row_start.saturating_add(row_room(self.settings));
    }

    /// An error of the CSV reader, with its place in the file.
    pub fn error(&self, e: csv::Error) -> PackageError {
        read_error(self.source, self.settings, self.row_start, e)
    }

    /// A row whose field count differs from the header's.
    pub fn ragged(&self, record: &ByteRecord) -> PackageError {
        PackageError::Data {
            location: self.location(record),
            message: format!(
                "this row has {} field(s) but the header has {}: ragged rows are refused, not padded nor cut (a value that holds the separator '{}' must be quoted)",
                record.len(),
                self.width,
                char::from(self.settings.separator).escape_default(),
            ),
        }
    }
}

impl Table<'_> {
    /// Whether `record`, the last of the file, may hold a quote that was never closed: a
    /// quoted value left open runs to the end of the file, taking the rows after it into its
    /// last field. Cheap: looks at that field only.
    pub fn may_be_unclosed(&self, record: &ByteRecord) -> bool {
        record
            .iter()
            .next_back()
            .is_some_and(|last| last.iter().any(|&b| b == b'\n' || b == b'\r'))
    }

    /// Lines of `record`'s values, after a line break inside a value, that hold at least as
    /// many separators as the header has between its fields: rows a quote left open took in.
    /// None in a table of fewer than three columns, where one separator is as likely a part of
    /// a value (an address's `Springfield, IL`). Costs a pass over the record: called only for
    /// records that run over several lines.
    pub fn rowlike_lines(&self, record: &ByteRecord) -> u64 {
        let Some(separators) = self.width.checked_sub(1).filter(|&n| n >= 2) else {
            return 0;
        };
        let sep = self.settings.separator;
        record
            .iter()
            .flat_map(|value| value.split(|&b| b == b'\n').skip(1))
            .filter(|line| line.iter().filter(|&&b| b == sep).count() >= separators)
            .count() as u64
    }

    /// The error for a quoted value left open, if there is one: reads the file again (only
    /// when [`Table::may_be_unclosed`] says so), following quotes as the CSV reader does.
    pub fn unclosed_quote(&self) -> Option<PackageError> {
        let line = unclosed_quote_line(self.source, self.settings).ok()??;
        Some(PackageError::Data {
            location: format!("{}:{line}", self.source.name),
            message: "a quoted value opens here and is never closed, so it takes in every line after it; close it (a quote inside a quoted value is written twice: \"\")".into(),
        })
    }
}

/// The longest last line [`LastLine`] keeps; past it, telling an open quote on the last line
/// reads the file again.
const LAST_LINE_MAX: usize = 64 * 1024;

/// Passes the decoded text to the CSV reader and keeps its last line (the bytes after the last
/// line break, up to [`LAST_LINE_MAX`]): when the file does not end with a line break, that is
/// where a quote left open at the end of the file may hide, since the value it opens holds no
/// line break (the CSV reader accepts it as the rest of the line). Cheap: one backward search
/// per read, never a pass over every byte.
pub(crate) struct LastLine<R> {
    inner: R,
    /// Bytes passed so far.
    pos: u64,
    /// Bytes that may be passed in all (see [`Table::bound_next_row`]): reading past them
    /// fails with [`RowTooLong`].
    limit: u64,
    /// Where the last line starts, in bytes of the text.
    start: u64,
    line: Vec<u8>,
    /// The last line is longer than [`LAST_LINE_MAX`]: `line` holds only its start.
    cut: bool,
}

impl<R> LastLine<R> {
    fn new(inner: R, limit: u64) -> Self {
        LastLine {
            inner,
            pos: 0,
            limit,
            start: 0,
            line: Vec::new(),
            cut: false,
        }
    }
}

impl<R: Read> Read for LastLine<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.pos);
        if room == 0 && !buf.is_empty() {
            return Err(std::io::Error::other(RowTooLong));
        }
        let len = usize::try_from(room).map_or(buf.len(), |r| r.min(buf.len()));
        let buf = &mut buf[..len];
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        match chunk.iter().rposition(|&b| b == b'\n' || b == b'\r') {
            Some(i) => {
                self.line.clear();
                self.cut = false;
                self.start = self.pos + i as u64 + 1;
                self.keep(&chunk[i + 1..]);
            }
            None => self.keep(chunk),
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// What the CSV reader may read of a row: `MaxRowSize`, and its line break.
fn row_room(settings: &CsvSettings) -> u64 {
    settings.max_row.saturating_add(2)
}

/// The error [`LastLine`] stops the CSV reader with at a row longer than `MaxRowSize`.
#[derive(Debug)]
struct RowTooLong;

impl std::fmt::Display for RowTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a row is longer than MaxRowSize")
    }
}

impl std::error::Error for RowTooLong {}

impl<R> LastLine<R> {
    fn keep(&mut self, bytes: &[u8]) {
        let room = LAST_LINE_MAX.saturating_sub(self.line.len());
        if bytes.len() > room {
            self.cut = true;
        }
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl Table<'_> {
    /// The error for a quote opened in the last record and left open by the end of a file that
    /// does not end with a line break (`2,"Bob` at the very end): the CSV reader takes the rest
    /// of the line as the value. `record_start` is where the last record starts (its byte in
    /// the parsed text). Only the last line is looked at, unless the record starts before it
    /// or the line is very long: then the file is read again.
    pub fn open_quote_at_end(&self, record_start: Option<u64>) -> Option<PackageError> {
        let tail = self.reader.get_ref();
        if tail.line.is_empty() && !tail.cut {
            // The file ends with a line break: an open quote would have taken it in, which
            // `may_be_unclosed` sees.
            return None;
        }
        let start = record_start?;
        let open = match start.checked_sub(tail.start) {
            Some(offset) if !tail.cut => {
                let from = usize::try_from(offset).ok()?;
                ends_in_open_quote(tail.line.get(from..)?, self.settings.separator)
            }
            _ => return self.unclosed_quote(),
        };
        open.then(|| PackageError::Data {
            location: location(self.source, self.settings, Some(start)),
            message: "a quoted value opens on this last line and is never closed: the file ends inside it; close it (a quote inside a quoted value is written twice: \"\")".into(),
        })
    }
}

/// Whether a record (from its first byte) ends inside a quoted value.
fn ends_in_open_quote(record: &[u8], sep: u8) -> bool {
    let mut state = QuoteState::FieldStart;
    for &b in record {
        state = state.next(b, sep);
    }
    state == QuoteState::Quoted
}

/// Where a byte stands with respect to quotes, following them as the CSV reader does.
#[derive(Clone, Copy, PartialEq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

impl QuoteState {
    fn next(self, b: u8, sep: u8) -> QuoteState {
        match self {
            QuoteState::Quoted if b == b'"' => QuoteState::QuoteInQuoted,
            QuoteState::Quoted => QuoteState::Quoted,
            QuoteState::QuoteInQuoted if b == b'"' => QuoteState::Quoted,
            QuoteState::FieldStart if b == b'"' => QuoteState::Quoted,
            _ if b == sep || b == b'\r' || b == b'\n' => QuoteState::FieldStart,
            _ => QuoteState::Unquoted,
        }
    }
}

/// The line where a quoted value opens that the end of the file leaves open.
fn unclosed_quote_line(source: &Source, settings: &CsvSettings) -> std::io::Result<Option<u64>> {
    quote_open_after(source, settings, 0, u64::MAX)
}

/// The line where a quoted value opens that is still open `len` bytes after the record
/// starting at byte `start` of the parsed text (or at the end of the file, if sooner),
/// following quotes from that record's start as the CSV reader does.
fn quote_open_after(
    source: &Source,
    settings: &CsvSettings,
    start: u64,
    len: u64,
) -> std::io::Result<Option<u64>> {
    let mut text = Decoded::new(File::open(&source.path)?, settings.encoding);
    for _ in 0..settings.skip {
        skip_line(&mut text)?;
    }
    let sep = settings.separator;
    let end = start.saturating_add(len);
    let mut state = QuoteState::FieldStart;
    let mut line = 1 + settings.skip;
    let mut opened = line;
    let mut pos = 0u64;
    while pos < end {
        let buf = text.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let take = usize::try_from(end - pos).map_or(buf.len(), |n| n.min(buf.len()));
        for &b in &buf[..take] {
            if pos >= start {
                let next = state.next(b, sep);
                if state == QuoteState::FieldStart && next == QuoteState::Quoted {
                    opened = line;
                }
                state = next;
            }
            line += u64::from(b == b'\n');
            pos += 1;
        }
        text.consume(take);
    }
    Ok((state == QuoteState::Quoted).then_some(opened))
}

/// Removes each of `values` from both ends of `value`, repeatedly, one after the other.
pub(crate) fn trim<'v>(mut value: &'v [u8], values: &[Box<[u8]>]) -> &'v [u8] {
    for t in values {
        while let Some(rest) = value.strip_prefix(&**t) {
            value = rest;
        }
        while let Some(rest) = value.strip_suffix(&**t) {
            value = rest;
        }
    }
    value
}

/// Maps an error met while reading `source`, in the record that starts at byte `row_start`
/// of the parsed text: a record longer than `MaxRowSize` is told as such (see
/// [`row_too_long`]); bad bytes for the encoding get their byte offset and line; other I/O
/// errors say what could not be read.
fn read_error(
    source: &Source,
    settings: &CsvSettings,
    row_start: u64,
    e: csv::Error,
) -> PackageError {
    if let csv::ErrorKind::Io(io) = e.kind()
        && io.get_ref().is_some_and(|inner| inner.is::<RowTooLong>())
    {
        return row_too_long(source, settings, row_start);
    }
    let at = e.position().map(|p| p.byte());
    if !e.is_io_error() {
        return PackageError::Data {
            location: location(source, settings, at),
            message: e.to_string(),
        };
    }
    let csv::ErrorKind::Io(io) = e.into_kind() else {
        return PackageError::Data {
            location: source.name.clone(),
            message: "unexpected CSV reader error".into(),
        };
    };
    match Malformed::find(&io) {
        Some(m) => {
            let line = line_of(&source.path, m.offset, settings.encoding);
            PackageError::Data {
                location: match line {
                    Some(l) => format!("{}:{l}", source.name),
                    None => source.name.clone(),
                },
                message: format!(
                    "{m}: the file is not {}; set Encoding to the file's encoding (UTF-8, UTF-16LE, UTF-16BE or Windows-1252)",
                    m.encoding
                ),
            }
        }
        None => PackageError::io("read", &source.path, io),
    }
}

/// The record that starts at byte `row_start` of the parsed text is longer than `MaxRowSize`:
/// says where, and whether a quoted value opened in it is still open there (the likely cause).
fn row_too_long(source: &Source, settings: &CsvSettings, row_start: u64) -> PackageError {
    let max = settings.max_row;
    match quote_open_after(source, settings, row_start, row_room(settings)) {
        Ok(Some(line)) => PackageError::Data {
            location: format!("{}:{line}", source.name),
            message: format!(
                "a quoted value opens here and is still open {max} bytes further (MaxRowSize), so it takes in every line after it; close it (a quote inside a quoted value is written twice: \"\"), or raise MaxRowSize if the value is really that long"
            ),
        },
        _ => PackageError::Data {
            location: location(source, settings, Some(row_start)),
            message: format!(
                "this row is longer than MaxRowSize ({max} bytes): the file is damaged, or raise MaxRowSize if its rows are really that long"
            ),
        },
    }
}

/// `people.csv:12` for the record that starts at byte `at` of the parsed text (after the
/// skipped lines), or the bare file name when the line cannot be found.
fn location(source: &Source, settings: &CsvSettings, at: Option<u64>) -> String {
    match at.and_then(|at| record_line(source, settings, at).ok()) {
        Some(line) => format!("{}:{line}", source.name),
        None => source.name.clone(),
    }
}

/// The file line where the record starting at byte `at` of the parsed text begins.
///
/// The CSV reader's own line numbers count from the end of the previous record, so they are
/// off after blank lines and CRLF line ends; this reads the file again instead, only when an
/// error needs a line: the happy path never counts lines.
fn record_line(source: &Source, settings: &CsvSettings, at: u64) -> std::io::Result<u64> {
    Ok(record_lines(source, settings, &[at])?[0])
}

/// [`record_line`] for the records starting at each of `starts` (ascending), in one reading of
/// the file.
fn record_lines(
    source: &Source,
    settings: &CsvSettings,
    starts: &[u64],
) -> std::io::Result<Vec<u64>> {
    let mut text = Decoded::new(File::open(&source.path)?, settings.encoding);
    for _ in 0..settings.skip {
        skip_line(&mut text)?;
    }
    let mut lines = Vec::with_capacity(starts.len());
    let mut line = 1 + settings.skip;
    let mut pos = 0u64;
    loop {
        let buf = text.fill_buf()?;
        if buf.is_empty() {
            lines.resize(starts.len(), line);
            return Ok(lines);
        }
        for &b in buf {
            // A record's first byte: past its start, and past the blank lines the reader
            // skips.
            while starts
                .get(lines.len())
                .is_some_and(|&at| pos >= at && b != b'\r' && b != b'\n')
            {
                lines.push(line);
            }
            if lines.len() == starts.len() {
                return Ok(lines);
            }
            line += u64::from(b == b'\n');
            pos += 1;
        }
        let n = buf.len();
        text.consume(n);
    }
}

/// The line of byte `offset`, found by reading the file again up to it.
fn line_of(path: &Path, offset: u64, encoding: SourceEncoding) -> Option<u64> {
    let file = File::open(path).ok()?;
    line_at(file.take(offset), encoding).ok()
}
