//! Prepare (SPEC §5.1): reads one mapped connection table, keeps only the mapped columns,
//! checks every value against its property's type, sets aside rows without a primary key
//! (`<table>.nullpk.csv`), with duplicate keys (`<table>.duplicates.csv`) or with a bad value
//! (`<table>.invalid.csv`, with the line, column and reason), and compares each row with what
//! the store holds to find what to insert, update and delete.
//!
//! The comparison is in two steps (see [`Digest`]). First by a digest of the row's raw cells
//! (the mapped columns, and the link columns the row carries, see [`Carried`]), seeded with a
//! fingerprint of the plan: a row whose cells did not change since the last run is neither
//! typed nor written, so a run costs reading the table plus the work of the rows that
//! changed. Then, for a row whose cells changed, by a digest of its typed values, read from
//! the store for those rows only ([`Prepared::settle`]): equal values (`01` read as the Int32
//! `1` again, a new mapped column left empty, a changed link cell) are not an update; the
//! row's raw digest is refreshed and its carried links recomputed.
//!
//! The pass streams the table: memory holds the store's index of the entity type (key, id,
//! digest) and the keys seen, never the rows. Changes are spilled to a temporary file and
//! applied afterwards, so the rows of a key found twice are all kept out of the store.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use idlink_model::config::PropertyType;
use idlink_model::values::{ValueFormat, read_value};
use idlink_store::{Digest, IndexEntry};

use super::keys::{KeyHasher, KeySet, Keyed};
use super::lines::Digested;
use serde::Serialize;

use crate::EngineError;

/// One mapped column: the property it fills and how its cells are read.
#[derive(Debug, Clone)]
pub struct MappedColumn {
    pub property: String,
    pub column: String,
    pub ty: PropertyType,
    pub format: ValueFormat,
}

/// A link column the entity table carries: an association mapping whose table is this one and
/// whose first column is this table's primary key, so each row holds its own links (the
/// foreign key shape: `Person.OrgCode`). The cell goes into the row's digest, and a row
/// whose digest did not change keeps its links without their being read.
#[derive(Debug, Clone)]
pub struct Carried {
    pub association: String,
    /// The association mapping's `Column2`.
    pub column: String,
}

/// What to read for one entity type mapping.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub entity_type: String,
    pub table: String,
    pub path: PathBuf,
    /// The primary key column first.
    pub columns: Vec<MappedColumn>,
    pub carried: Vec<Carried>,
}

/// Changes when the digests of the same cells must differ: a new digest scheme.
const DIGEST_SCHEME: &str = "idlink raw cells v1";

impl TablePlan {
    /// The columns in the order of their properties (byte order): the order of the values'
    /// layout, [`TablePlan::layout`].
    pub(super) fn value_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.columns.len()).collect();
        order.sort_by(|&a, &b| self.columns[a].property.cmp(&self.columns[b].property));
        order
    }

    /// The properties the values are stored in, in order (see `idlink_store::Packer`).
    pub(super) fn layout(&self) -> Vec<&str> {
        self.value_order()
            .into_iter()
            .map(|k| self.columns[k].property.as_str())
            .collect()
    }

    /// The digest seed: everything about the plan that changes what a row's cells mean.
    pub(super) fn fingerprint(&self) -> u64 {
        let mut text = format!("{DIGEST_SCHEME}\u{1f}{}\u{1f}", self.entity_type);
        for c in &self.columns {
            text.push_str(&format!(
                "{}\u{1e}{}\u{1e}{:?}\u{1e}{:?}\u{1f}",
                c.property, c.column, c.ty, c.format
            ));
        }
        for c in &self.carried {
            text.push_str(&format!("{}\u{1e}{}\u{1f}", c.association, c.column));
        }
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    }
}

/// Records of a table to prepare instead of the whole file: the header and the records that
/// differ from the table last synchronized (see `super::lines`), with the line each starts on
/// in the file.
#[derive(Debug)]
pub struct Subset {
    pub text: Vec<u8>,
    pub lines: Vec<u64>,
}

/// What `prepare` reads: the table's file (with the digest of its bytes), or a subset of it.
enum Source {
    File(Digested<File>),
    Subset(std::io::Cursor<Vec<u8>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::File(f) => f.read(buf),
            Source::Subset(c) => c.read(buf),
        }
    }
}

/// A row's command in an incremental table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Upsert,
    Delete,
}

/// How the table is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// Rows absent from the table are deleted (Initial and Complete).
    Whole,
    /// Only the rows present change (Incremental); a `Command` column says how.
    Delta,
}

/// Counts of one table's preparation and diff.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub nullpk: u64,
    pub duplicates: u64,
    pub invalid: u64,
}

impl Counts {
    pub fn set_aside(&self) -> u64 {
        self.nullpk + self.duplicates + self.invalid
    }
}

/// Why a value that is not UTF-8 text is set aside.
const NOT_UTF8: &str = "the value is not UTF-8 text (the row is kept in this file with U+FFFD in place of the bytes that are not)";

/// Reads the next record of `reader` into `record`, like `read_record`; a record with cells
/// that are not UTF-8 is read with U+FFFD in place of their bad bytes, and those cells'
/// indexes are put in `not_utf8` (else left empty), for the row to be set aside rather than
/// the whole run to fail.
pub(super) fn read_record_lossy<R: std::io::Read>(
    reader: &mut csv::Reader<R>,
    record: &mut csv::StringRecord,
    not_utf8: &mut Vec<usize>,
) -> csv::Result<bool> {
    not_utf8.clear();
    let mut bytes = std::mem::take(record).into_byte_record();
    if !reader.read_byte_record(&mut bytes)? {
        return Ok(false);
    }
    match csv::StringRecord::from_byte_record(bytes) {
        Ok(r) => *record = r,
        Err(e) => {
            let bytes = e.into_byte_record();
            not_utf8.extend(
                bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, cell)| std::str::from_utf8(cell).is_err())
                    .map(|(i, _)| i),
            );
            let mut r = csv::StringRecord::with_capacity(bytes.as_slice().len(), bytes.len());
            for cell in &bytes {
                r.push_field(&String::from_utf8_lossy(cell));
            }
            r.set_position(bytes.position().cloned());
            *record = r;
        }
    }
    Ok(true)
}

/// Why a value holding U+0000 is set aside.
const NUL_VALUE: &str = "the value holds a NUL character (U+0000), which the store does not keep";

/// The longest key a store keeps, in bytes: PostgreSQL indexes keys with their entity type
/// in index rows of at most 2,704 bytes (compressed when they can be), and refuses a longer
/// one with the whole run; every store keeps the same keys.
pub const MAX_KEY_BYTES: usize = 2_000;

/// The longest value a store keeps, in bytes: far above what identity data holds (a photo,
/// a certificate, the members of a large group) and the largest message the network packages
/// accept by default (LDAP and SCIM 16 MiB, SQL 64 MiB), low enough that a table with a cell
/// of hundreds of megabytes cannot make a run hold several copies of it in memory (a 300 MB
/// cell made one hold 1.7 GB).
pub const MAX_VALUE_BYTES: usize = 64 << 20;

/// The first mapped cell of `record` too long to keep, with why.
#[cold]
fn too_long_cell(
    plan: &TablePlan,
    order: &[usize],
    idx: &[usize],
    record: &csv::StringRecord,
) -> Option<(String, String)> {
    // The key is the first column.
    order.iter().find_map(|&k| {
        let len = record.get(idx[k]).map_or(0, str::len);
        too_long(len, k == 0).map(|m| (plan.columns[k].column.clone(), m))
    })
}

/// Why a key or a value of `len` bytes is set aside, if it is.
fn too_long(len: usize, key: bool) -> Option<String> {
    let (what, max, why) = if key {
        (
            "key",
            MAX_KEY_BYTES,
            "bytes at most (PostgreSQL cannot index longer ones)",
        )
    } else {
        ("value", MAX_VALUE_BYTES, "bytes at most")
    };
    (len > max)
        .then(|| format!("the {what} is {len} bytes long; the store keeps {what}s of {max} {why}"))
}

/// A located bad value (the first ones are kept for the report).
#[derive(Debug, Clone, Serialize)]
pub struct BadValue {
    pub table: String,
    pub line: u64,
    pub column: String,
    pub message: String,
}

/// The outcome of the pass: counts, the changes to apply and what was set aside.
#[derive(Debug)]
pub struct Prepared {
    pub counts: Counts,
    pub had_command_column: bool,
    /// Rows to insert and to update, spilled (see [`Spill`]).
    pub changes: tempfile::NamedTempFile,
    pub deletes: Vec<i64>,
    pub bad_values: Vec<BadValue>,
    /// Files written beside the prepared tables (only those with rows).
    pub set_aside_files: Vec<PathBuf>,
    /// The digest of the table's bytes (seeded with the key seed) and their count, when the
    /// whole file was read.
    pub table_digest: Option<(u128, u64)>,
    dup_keys: HashSet<Box<str>>,
    /// Keys whose row had a bad value or command.
    invalid_keys: HashSet<Box<str>>,
    /// Store rows whose table rows were set aside: neither updated nor deleted.
    dup_ids: HashSet<i64>,
    /// Store rows whose cells changed, with the digest of their new values: counted as updates
    /// until [`Prepared::settle`] compares the values with the store's.
    candidates: Vec<(i64, [u8; 16])>,
    /// Store rows whose cells changed but whose values did not: their digest is refreshed.
    refresh: HashSet<i64>,
}

/// A row to insert, handed over as soon as it is read (see [`prepare`]): its key, its data
/// text and the cells of the plan's [`Carried`] link columns, in order, end to end in one
/// text (a million rows are a million allocations, not four million).
#[derive(Debug)]
pub struct NewRow {
    text: String,
    /// Where the key, the data and each carried cell end in `text`.
    ends: smallvec::SmallVec<[usize; 4]>,
    /// The key's hash, as the run's [`KeyHasher`] gives it.
    pub key_hash: u128,
    pub digest: Digest,
}

impl NewRow {
    fn new(key: &str, data: &str, carried: &[&str], key_hash: u128, digest: Digest) -> NewRow {
        let len = key.len() + data.len() + carried.iter().map(|c| c.len()).sum::<usize>();
        let mut text = String::with_capacity(len);
        let mut ends = smallvec::SmallVec::new();
        for part in [key, data].iter().chain(carried) {
            text.push_str(part);
            ends.push(text.len());
        }
        NewRow {
            text,
            ends,
            key_hash,
            digest,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    pub fn key(&self) -> &str {
        self.part(0)
    }

    pub fn data(&self) -> &str {
        self.part(1)
    }

    /// The carried cells, in the plan's order.
    pub fn carried(&self) -> impl Iterator<Item = &str> {
        (2..self.ends.len()).map(|i| self.part(i))
    }
}

/// A change to a stored resource, read back from the spill after the pass.
#[derive(Debug)]
pub enum Change {
    Update {
        id: i64,
        data: String,
        digest: Digest,
        carried: Vec<String>,
    },
    /// The cells changed, the values did not: a new raw digest (and maybe new links).
    Refresh {
        id: i64,
        digest: Digest,
        carried: Vec<String>,
    },
}

impl super::Weight for NewRow {
    fn weight(&self) -> usize {
        self.text.len()
    }
}

impl super::Weight for Change {
    fn weight(&self) -> usize {
        let (data, carried) = match self {
            Change::Update { data, carried, .. } => (data.len(), carried),
            Change::Refresh { carried, .. } => (0, carried),
        };
        data + carried.iter().map(String::len).sum::<usize>()
    }
}

const MAX_BAD_VALUES_REPORTED: usize = 50;

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> EngineError + 'p {
    move |e| EngineError::io(op, path, e)
}

/// A CSV error of a table, located at its line. A short row that is the table's last and ends
/// without a line break is most likely a table cut short (a full disk, a copy stopped
/// half-way): said so, with what to do.
pub(super) fn csv_err(path: &Path, e: csv::Error) -> EngineError {
    let at = e.position();
    let line = at.map_or(0, |p| p.line());
    let hint = if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. })
        && at.is_some_and(|p| last_and_unterminated(path, p.byte()))
    {
        "; this row is the table's last and ends without a line break: the table looks cut short (export the connection again)"
    } else {
        ""
    };
    EngineError::Data(format!("{}:{line}: {e}{hint}", path.display()))
}

/// Whether the row starting at byte `start` of a file runs to its end with no line break.
fn last_and_unterminated(path: &Path, start: u64) -> bool {
    use std::io::{Seek, SeekFrom};
    const MAX_ROW: u64 = 1 << 20;
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut rest = Vec::new();
    f.seek(SeekFrom::Start(start)).is_ok()
        && f.take(MAX_ROW + 1).read_to_end(&mut rest).is_ok()
        && !rest.is_empty()
        && (rest.len() as u64) <= MAX_ROW
        && !rest.contains(&b'\n')
}

/// Writes set-aside rows, created on the first row.
struct SetAside {
    path: PathBuf,
    header: Vec<String>,
    writer: Option<csv::Writer<BufWriter<File>>>,
}

impl SetAside {
    fn new(
        dir: &Path,
        table: &str,
        kind: &str,
        header: &csv::StringRecord,
        extra: &[&str],
    ) -> Self {
        let path = dir.join(format!("{table}.{kind}.csv"));
        let _ = std::fs::remove_file(&path);
        let mut h: Vec<String> = vec!["line".into()];
        h.extend(extra.iter().map(|s| s.to_string()));
        h.extend(header.iter().map(str::to_string));
        SetAside {
            path,
            header: h,
            writer: None,
        }
    }

    fn write(
        &mut self,
        line: u64,
        extra: &[&str],
        record: &csv::StringRecord,
    ) -> Result<(), EngineError> {
        if self.writer.is_none() {
            let f = File::create(&self.path).map_err(io("create", &self.path))?;
            let mut w = csv::Writer::from_writer(BufWriter::new(f));
            w.write_record(&self.header)
                .map_err(|e| csv_err(&self.path, e))?;
            self.writer = Some(w);
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let line = line.to_string();
        let fields = std::iter::once(line.as_str())
            .chain(extra.iter().copied())
            .chain(record.iter());
        w.write_record(fields).map_err(|e| csv_err(&self.path, e))
    }

    fn finish(self) -> Result<Option<PathBuf>, EngineError> {
        match self.writer {
            Some(mut w) => {
                w.flush().map_err(io("write", &self.path))?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

/// The spill: one record per stored row whose cells changed: its id (8 bytes), its data, its
/// digest (24 bytes) and its carried cells, each text as a little-endian u32 length and its
/// bytes. It is written and read by this module only, in the same run.
struct Spill {
    w: BufWriter<File>,
}

impl Spill {
    fn text(&mut self, s: &str) -> std::io::Result<()> {
        let n = u32::try_from(s.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "a cell exceeds 4 GiB")
        })?;
        self.w.write_all(&n.to_le_bytes())?;
        self.w.write_all(s.as_bytes())
    }

    fn record(
        &mut self,
        id: i64,
        data: &str,
        digest: &Digest,
        carried: &[&str],
    ) -> std::io::Result<()> {
        self.w.write_all(&id.to_le_bytes())?;
        self.text(data)?;
        self.w.write_all(&digest.to_bytes())?;
        for c in carried {
            self.text(c)?;
        }
        Ok(())
    }
}

/// Reads a spilled text; `None` at the end of the file (only before a record's kind).
fn read_text(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<String> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    buf.clear();
    buf.resize(u32::from_le_bytes(n) as usize, 0);
    r.read_exact(buf)?;
    String::from_utf8(std::mem::take(buf))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The column called `name` in `header`: exactly, or else ignoring case.
pub(super) fn find_column(header: &csv::StringRecord, name: &str) -> Option<usize> {
    header
        .iter()
        .position(|h| h == name)
        .or_else(|| header.iter().position(|h| h.eq_ignore_ascii_case(name)))
}

/// Opens a table to synchronize; `what` names it ("table 'X' of mapping 'Y'"). A missing
/// file says to export its connection first.
pub(super) fn open_table(path: &Path, what: &str) -> Result<File, EngineError> {
    File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            EngineError::Data(format!(
                "{what} was not found at {}: export its connection first (idlink export --connection ...)",
                path.display()
            ))
        } else {
            EngineError::io("open", path, e)
        }
    })
}

/// Where a table's columns are: the mapped ones (in plan order), the carried link columns,
/// and `Command`.
struct Located {
    mapped: Vec<usize>,
    carried: Vec<usize>,
    command: Option<usize>,
}

/// Finds the mapped columns, the carried link columns and `Command` in the header, exactly
/// or else ignoring case.
fn locate(plan: &TablePlan, header: &csv::StringRecord) -> Result<Located, EngineError> {
    let column =
        |name: &str, reader: &str| column_of(header, name, &plan.table, &plan.path, reader);
    let mut idx = Vec::with_capacity(plan.columns.len());
    for c in &plan.columns {
        let reader = format!(
            "mapping '{}' for property '{}'",
            plan.entity_type, c.property
        );
        idx.push(column(&c.column, &reader)?);
    }
    let mut carried = Vec::with_capacity(plan.carried.len());
    for c in &plan.carried {
        carried.push(column(
            &c.column,
            &format!("association mapping '{}'", c.association),
        )?);
    }
    Ok(Located {
        mapped: idx,
        carried,
        command: find_column(header, "Command"),
    })
}

/// Where the column `name` that `reader` (a mapping) reads is in `header` ([`find_column`]),
/// or why it cannot be read: it is missing, or the header names it twice (as a query joining
/// two tables may), and which one is meant is not ours to guess.
pub(super) fn column_of(
    header: &csv::StringRecord,
    name: &str,
    table: &str,
    path: &Path,
    reader: &str,
) -> Result<usize, EngineError> {
    let Some(at) = find_column(header, name) else {
        let have: Vec<&str> = header.iter().collect();
        let have = if have.iter().all(|c| c.is_empty()) {
            "it has none: the file holds no header line (an exported table starts with one)"
                .to_string()
        } else {
            format!("its columns are: {}", have.join(", "))
        };
        return Err(EngineError::Data(format!(
            "table '{table}' ({}) has no column '{name}', which {reader} reads; {have}",
            path.display(),
        )));
    };
    let exact = header.get(at) == Some(name);
    let same = |h: &str| {
        if exact {
            h == name
        } else {
            h.eq_ignore_ascii_case(name)
        }
    };
    match header.iter().enumerate().find(|&(i, h)| i != at && same(h)) {
        Some((other, h)) => Err(EngineError::Data(format!(
            "table '{table}' ({}) has column '{name}' twice (columns {} and {}, '{}' and '{h}'), \
             which {reader} reads: rename one where the table is exported",
            path.display(),
            at.min(other) + 1,
            at.max(other) + 1,
            header.get(at).unwrap_or(""),
        ))),
        None => Ok(at),
    }
}

/// The digest of a row's raw cells, seeded with the plan's fingerprint: each cell as its
/// length and bytes, so no two rows of different cells share their text.
fn raw_digest(
    buf: &mut Vec<u8>,
    seed: u64,
    record: &csv::StringRecord,
    idx: &[usize],
    carried: &[usize],
) -> u64 {
    buf.clear();
    for &i in idx.iter().chain(carried) {
        let cell = record.get(i).unwrap_or("");
        buf.extend_from_slice(&(cell.len() as u64).to_le_bytes());
        buf.extend_from_slice(cell.as_bytes());
    }
    xxhash_rust::xxh3::xxh3_64_with_seed(buf, seed)
}

/// Reads the table, sets aside what cannot be synchronized, and diffs the rest against
/// `index` (the store's rows of the entity type, by key hash). `set_aside_dir` receives the
/// set-aside files.
///
/// Rows to insert go to `insert` as they are read, so the store writes them while the table
/// is still being read; a key found twice later has all its rows set aside, and the caller
/// takes back what it inserted for it ([`Prepared::duplicated_keys`]). Changes to stored rows
/// are spilled and applied after the pass ([`Prepared::for_each_change`]): a stored row is
/// never changed for a key that turns out duplicated.
///
/// With a `subset`, only its records are read (the others are as the last run left them), at
/// the lines it gives.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    plan: &TablePlan,
    keys: &KeyHasher,
    index: &mut Keyed<IndexEntry>,
    layout: i64,
    apply: Apply,
    subset: Option<Subset>,
    set_aside_dir: &Path,
    cancelled: &dyn Fn() -> bool,
    insert: &mut dyn FnMut(NewRow) -> Result<(), EngineError>,
) -> Result<Prepared, EngineError> {
    let path = &plan.path;
    let (source, lines) = match subset {
        Some(s) => (Source::Subset(std::io::Cursor::new(s.text)), Some(s.lines)),
        None => {
            let file = open_table(
                path,
                &format!("table '{}' of mapping '{}'", plan.table, plan.entity_type),
            )?;
            (Source::File(Digested::new(file, keys.seed())), None)
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 16, source));
    let header = reader.headers().map_err(|e| csv_err(path, e))?.clone();
    let Located {
        mapped: idx,
        carried: carried_idx,
        command: command_col,
    } = locate(plan, &header)?;
    if command_col.is_some() && apply == Apply::Whole {
        return Err(EngineError::Data(format!(
            "table '{}' ({}) is an incremental export (it has a Command column): synchronize it with --mode incremental, or export the connection again with --ignore-cookies for a complete table",
            plan.table,
            path.display()
        )));
    }
    std::fs::create_dir_all(set_aside_dir).map_err(io("create", set_aside_dir))?;
    let mut nullpk = SetAside::new(set_aside_dir, &plan.table, "nullpk", &header, &[]);
    let mut invalid = SetAside::new(
        set_aside_dir,
        &plan.table,
        "invalid",
        &header,
        &["column", "error"],
    );
    let duplicates_path = set_aside_dir.join(format!("{}.duplicates.csv", plan.table));
    let _ = std::fs::remove_file(&duplicates_path);

    let spill_file = tempfile::NamedTempFile::new_in(set_aside_dir)
        .map_err(io("create a temporary file in", set_aside_dir))?;
    let mut spill = Spill {
        w: BufWriter::with_capacity(
            1 << 16,
            spill_file.reopen().map_err(io("open", spill_file.path()))?,
        ),
    };
    let spill_err = |e: std::io::Error| EngineError::io("write", spill_file.path(), e);

    let mut counts = Counts::default();
    let mut bad_values = Vec::new();
    // Line of the first occurrence of every key seen: in the index's `mark` for store keys.
    // Hashes of the keys seen that the store does not hold (a duplicate among new rows).
    let mut seen_new = KeySet::default();
    let mut dup_keys: HashSet<Box<str>> = HashSet::new();
    // Keys whose rows were set aside: never deleted because of it.
    let mut protected: HashSet<i64> = HashSet::new();
    let mut deletes_by_command: Vec<i64> = Vec::new();

    // Rows are parsed on a thread of their own, LOOKAHEAD at a time, while this one compares
    // them; their keys are looked up in a tight loop first: the lookups of a large index
    // miss the cache, and in a row of their own the processor overlaps those misses; the
    // row-by-row pass then finds the entries cached.
    const LOOKAHEAD: usize = 64;
    let mut hashes = [0u128; LOOKAHEAD];
    // Values are digested as one JSON object, keys in byte order (a canonical text, the same
    // whatever the stored form), and stored in the layout of those keys (`packer`); both are
    // written straight into reused buffers.
    let json_order = plan.value_order();
    let json_keys: Vec<String> = plan
        .columns
        .iter()
        .map(|c| format!("{}:", serde_json::Value::from(c.property.as_str())))
        .collect();
    let mut json: Vec<u8> = Vec::with_capacity(512);
    let mut packer = idlink_store::Packer::new(layout);
    // Columns whose value is the cell's text, as `read_value` reads it.
    let text: Vec<bool> = plan
        .columns
        .iter()
        .map(|c| {
            matches!(c.ty, PropertyType::String | PropertyType::ForeignKey)
                && c.format == ValueFormat::Default
        })
        .collect();
    let mut digest_buf: Vec<u8> = Vec::with_capacity(512);
    let seed = plan.fingerprint();
    // Ids of store rows whose first row was spilled as an update (to uncount duplicates).
    let mut spilled_updates: HashSet<i64> = HashSet::new();
    // Keys whose first row was set aside or a Delete: nothing of theirs was counted as applied.
    let mut odd_first: HashSet<Box<str>> = HashSet::new();
    let mut invalid_keys: HashSet<Box<str>> = HashSet::new();
    let mut candidates: Vec<(i64, [u8; 16])> = Vec::new();
    // Batches parsed, and batches handed back to be filled again.
    // Each batch with its records holding cells that are not UTF-8: (index, the cells).
    type Batch = (Vec<csv::StringRecord>, Vec<(usize, Vec<usize>)>);
    let (parsed, batches) = std::sync::mpsc::sync_channel::<Result<Batch, csv::Error>>(8);
    let (returned, reusable) = std::sync::mpsc::channel::<Vec<csv::StringRecord>>();
    let table_digest = std::thread::scope(|scope| -> Result<Option<(u128, u64)>, EngineError> {
        // Gives the digest of the file once it read it to its end.
        let reading = scope.spawn(move || -> Option<(u128, u64)> {
            let mut reader = reader;
            loop {
                let mut batch = reusable.try_recv().unwrap_or_default();
                batch.resize_with(LOOKAHEAD, csv::StringRecord::new);
                let mut not_utf8 = Vec::new();
                let mut cells = Vec::new();
                let mut n = 0;
                while n < LOOKAHEAD {
                    match read_record_lossy(&mut reader, &mut batch[n], &mut cells) {
                        Ok(true) => {
                            if !cells.is_empty() {
                                not_utf8.push((n, std::mem::take(&mut cells)));
                            }
                            n += 1;
                        }
                        Ok(false) => break,
                        Err(e) => {
                            let _ = parsed.send(Err(e));
                            return None;
                        }
                    }
                }
                batch.truncate(n);
                // Stops when the table ends, or when the comparing side stopped (its receiver
                // is gone).
                if n > 0 && parsed.send(Ok((batch, not_utf8))).is_err() {
                    return None;
                }
                if n < LOOKAHEAD {
                    return match reader.into_inner().into_inner() {
                        Source::File(f) => Some(f.digest()),
                        Source::Subset(_) => None,
                    };
                }
            }
        });
        // Owned here: should this side stop early, the reading side's next send fails.
        let batches = batches;
        while let Ok(batch) = batches.recv() {
            let (batch, not_utf8) = batch.map_err(|e| csv_err(path, e))?;
            let n = batch.len();
            for (h, record) in hashes.iter_mut().zip(&batch) {
                *h = keys.of(record.get(idx[0]).unwrap_or(""));
            }
            let mut touched = 0i64;
            for h in &hashes[..n] {
                if let Some(e) = index.get(h) {
                    touched ^= e.id;
                }
            }
            std::hint::black_box(touched);
            for (at, (record, &hash)) in batch.iter().zip(&hashes[..n]).enumerate() {
                counts.rows += 1;
                let line = match &lines {
                    Some(l) => l.get(counts.rows as usize - 1).copied().unwrap_or(0),
                    None => record.position().map_or(counts.rows + 1, |p| p.line()),
                };
                if counts.rows.is_multiple_of(4096) && cancelled() {
                    return Err(EngineError::Cancelled {
                        what: "the synchronization",
                        connection: plan.table.clone(),
                    });
                }
                let key = record.get(idx[0]).unwrap_or("");
                if key.trim().is_empty() {
                    counts.nullpk += 1;
                    nullpk.write(line, &[], record)?;
                    continue;
                }
                // Duplicates: all rows of the key are set aside (which one is right is not ours to say).
                let (existing, first) = match index.get_mut(&hash) {
                    Some(e) => {
                        let first = (e.mark != 0).then_some(e.mark);
                        if e.mark == 0 {
                            e.mark = line;
                        }
                        (Some(*e), first)
                    }
                    None => (None, (!seen_new.insert(hash)).then_some(line)),
                };
                let existing = existing.as_ref();
                if first.is_some() {
                    // The first row of the key was counted (and maybe spilled): it is set aside too.
                    if dup_keys.insert(key.into()) {
                        match existing {
                            _ if odd_first.contains(key) => {}
                            Some(e) if spilled_updates.contains(&e.id) => counts.updated -= 1,
                            Some(_) => counts.unchanged -= 1,
                            None => counts.inserted -= 1,
                        }
                    }
                    if let Some(e) = existing {
                        protected.insert(e.id);
                    }
                    continue;
                }
                let command = match command_col.map(|c| record.get(c).unwrap_or("").trim()) {
                    None => Command::Upsert,
                    Some(c)
                        if c.eq_ignore_ascii_case("Insert") || c.eq_ignore_ascii_case("Update") =>
                    {
                        Command::Upsert
                    }
                    Some(c) if c.eq_ignore_ascii_case("Delete") => Command::Delete,
                    Some(c) => {
                        odd_first.insert(key.into());
                        invalid_keys.insert(key.into());
                        counts.invalid += 1;
                        let msg = format!("Command '{c}' is not Insert, Update or Delete");
                        invalid.write(line, &["Command", &msg], record)?;
                        if bad_values.len() < MAX_BAD_VALUES_REPORTED {
                            bad_values.push(BadValue {
                                table: plan.table.clone(),
                                line,
                                column: "Command".into(),
                                message: msg,
                            });
                        }
                        if let Some(e) = existing {
                            protected.insert(e.id);
                        }
                        continue;
                    }
                };
                if command == Command::Delete {
                    odd_first.insert(key.into());
                    if let Some(e) = existing {
                        deletes_by_command.push(e.id);
                    }
                    continue;
                }
                let raw = raw_digest(&mut digest_buf, seed, record, &idx, &carried_idx);
                if existing.is_some_and(|e| e.raw == raw) {
                    counts.unchanged += 1;
                    continue;
                }
                json.clear();
                json.push(b'{');
                packer.start();
                // A NUL character is no value a store keeps (PostgreSQL refuses it in text,
                // and with it the whole run): the row is set aside on every store alike.
                // So is a mapped cell that is not UTF-8.
                let mut bad = not_utf8
                    .iter()
                    .find(|(i, _)| *i == at)
                    .and_then(|(_, cells)| json_order.iter().find(|&&k| cells.contains(&idx[k])))
                    .map(|&k| (plan.columns[k].column.clone(), NOT_UTF8.to_string()))
                    .or_else(|| {
                        memchr::memchr(0, record.as_slice().as_bytes())
                            .and_then(|_| {
                                json_order.iter().find(|&&k| {
                                    record.get(idx[k]).is_some_and(|c| c.contains('\0'))
                                })
                            })
                            .map(|&k| (plan.columns[k].column.clone(), NUL_VALUE.to_string()))
                    });
                // No cell is longer than its record (most records: nothing to look at).
                if bad.is_none() && record.as_slice().len() > MAX_KEY_BYTES.min(MAX_VALUE_BYTES) {
                    bad = too_long_cell(plan, &json_order, &idx, record);
                }
                for &k in &json_order {
                    if bad.is_some() {
                        break;
                    }
                    let c = &plan.columns[k];
                    let cell = record.get(idx[k]).unwrap_or("");
                    // No value (None), the cell's own text (Some(None): most cells, written
                    // as they are), or a value read from the cell.
                    let value = if text[k] {
                        (!cell.is_empty()).then_some(None)
                    } else {
                        match read_value(c.ty, &c.format, cell) {
                            Ok(v) => v.map(Some),
                            Err(msg) => {
                                bad = Some((c.column.clone(), msg));
                                break;
                            }
                        }
                    };
                    let Some(value) = value else {
                        packer.absent();
                        continue;
                    };
                    if json.len() > 1 {
                        json.push(b',');
                    }
                    json.extend_from_slice(json_keys[k].as_bytes());
                    let at = json.len();
                    match value {
                        Some(v) => serde_json::to_writer(&mut json, &v),
                        None => serde_json::to_writer(&mut json, cell),
                    }
                    .map_err(|e| EngineError::Contract(e.to_string()))?;
                    packer.value(&json[at..]);
                }
                json.push(b'}');
                if let Some((column, msg)) = bad {
                    odd_first.insert(key.into());
                    invalid_keys.insert(key.into());
                    counts.invalid += 1;
                    invalid.write(line, &[&column, &msg], record)?;
                    if bad_values.len() < MAX_BAD_VALUES_REPORTED {
                        bad_values.push(BadValue {
                            table: plan.table.clone(),
                            line,
                            column,
                            message: msg,
                        });
                    }
                    if let Some(e) = existing {
                        protected.insert(e.id);
                    }
                    continue;
                }
                let carried: Vec<&str> = carried_idx
                    .iter()
                    .map(|&i| record.get(i).unwrap_or(""))
                    .collect();
                let d = Digest {
                    value: xxhash_rust::xxh3::xxh3_128(&json).to_le_bytes(),
                    raw,
                };
                let text = packer
                    .finish()
                    .map_err(|e| EngineError::Contract(format!("a value is not UTF-8: {e}")))?;
                match existing {
                    Some(e) => {
                        counts.updated += 1;
                        spilled_updates.insert(e.id);
                        candidates.push((e.id, d.value));
                        spill.record(e.id, text, &d, &carried).map_err(spill_err)?;
                    }
                    None => {
                        counts.inserted += 1;
                        insert(NewRow::new(key, text, &carried, hash, d))?;
                    }
                }
            }
            let _ = returned.send(batch);
        }
        Ok(reading.join().ok().flatten())
    })?;
    spill.w.flush().map_err(spill_err)?;
    drop(spill);

    let mut set_aside_files = Vec::new();
    set_aside_files.extend(nullpk.finish()?);
    set_aside_files.extend(invalid.finish()?);
    if !dup_keys.is_empty() {
        counts.duplicates = write_duplicates(plan, idx[0], &dup_keys, &duplicates_path)?;
        set_aside_files.push(duplicates_path);
    }

    let deletes: Vec<i64> = match apply {
        Apply::Whole => index
            .values()
            .filter(|e| e.mark == 0 && !protected.contains(&e.id))
            .map(|e| e.id)
            .collect(),
        Apply::Delta => deletes_by_command
            .into_iter()
            .filter(|id| !protected.contains(id))
            .collect(),
    };
    counts.deleted = deletes.len() as u64;
    let prepared = Prepared {
        counts,
        had_command_column: command_col.is_some(),
        changes: spill_file,
        deletes,
        bad_values,
        set_aside_files,
        table_digest,
        dup_keys,
        invalid_keys,
        dup_ids: protected,
        candidates,
        refresh: HashSet::new(),
    };
    Ok(prepared)
}

impl Prepared {
    /// The keys whose rows were set aside (duplicated, or with a bad value or command): the
    /// links those rows carry are set aside with them.
    /// The digest and size of the table when a run that read it whole keeps it for the next
    /// run to compare with: it was read whole and nothing of it was set aside.
    pub fn table_to_keep(&self) -> Option<(u128, u64)> {
        self.table_digest.filter(|_| self.counts.set_aside() == 0)
    }

    pub fn set_aside_keys(&self) -> HashSet<Box<str>> {
        self.dup_keys.union(&self.invalid_keys).cloned().collect()
    }

    /// The stored rows whose cells changed (set-aside ones excepted), with the digest of their
    /// new values: [`Prepared::settle`] takes the store's value digests of the same rows.
    pub fn candidates(&self) -> impl Iterator<Item = (i64, [u8; 16])> + '_ {
        self.candidates
            .iter()
            .copied()
            .filter(|(id, _)| !self.dup_ids.contains(id))
    }

    /// Given the store's value digests of the [`Prepared::candidates`], the rows whose values
    /// did not change are no updates: their digest is refreshed, and they count as unchanged.
    pub fn settle(&mut self, stored: &[(i64, [u8; 16])]) {
        let new: std::collections::HashMap<i64, [u8; 16]> = self.candidates().collect();
        for (id, value) in stored {
            if new.get(id) == Some(value) && self.refresh.insert(*id) {
                self.counts.updated -= 1;
                self.counts.unchanged += 1;
            }
        }
        self.candidates = Vec::new();
    }

    /// The keys found on more than one row: their rows were all set aside, and what was
    /// inserted for them must be taken back.
    pub fn duplicated_keys(&self) -> &HashSet<Box<str>> {
        &self.dup_keys
    }

    /// Reads the spilled changes back, without those of duplicated or set-aside keys.
    /// `carried` is the number of carried link columns of the plan.
    pub fn for_each_change(
        &self,
        carried: usize,
        f: &mut dyn FnMut(Change) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let path = self.changes.path();
        let file = File::open(path).map_err(io("open", path))?;
        let mut r = BufReader::with_capacity(1 << 16, file);
        let bad = || EngineError::Contract(format!("the spill file {} is damaged", path.display()));
        let damaged = |_: std::io::Error| bad();
        let mut buf = Vec::new();
        loop {
            if r.fill_buf().map_err(io("read", path))?.is_empty() {
                return Ok(());
            }
            let mut id = [0u8; 8];
            r.read_exact(&mut id).map_err(damaged)?;
            let id = i64::from_le_bytes(id);
            let data = read_text(&mut r, &mut buf).map_err(damaged)?;
            let mut digest = [0u8; 24];
            r.read_exact(&mut digest).map_err(damaged)?;
            let digest = Digest::from_bytes(&digest);
            let cells = (0..carried)
                .map(|_| read_text(&mut r, &mut buf))
                .collect::<Result<Vec<_>, _>>()
                .map_err(damaged)?;
            if self.dup_ids.contains(&id) {
                continue;
            }
            f(if self.refresh.contains(&id) {
                Change::Refresh {
                    id,
                    digest,
                    carried: cells,
                }
            } else {
                Change::Update {
                    id,
                    data,
                    digest,
                    carried: cells,
                }
            })?;
        }
    }
}

/// Copies every row of a duplicated key into `<table>.duplicates.csv` (a second read of the
/// table, only when duplicates were found); returns how many rows.
fn write_duplicates(
    plan: &TablePlan,
    key_col: usize,
    dup_keys: &HashSet<Box<str>>,
    out: &Path,
) -> Result<u64, EngineError> {
    let path = &plan.path;
    let file = File::open(path).map_err(io("open", path))?;
    let mut reader = csv::Reader::from_reader(BufReader::new(file));
    let header = reader.headers().map_err(|e| csv_err(path, e))?.clone();
    let mut w = SetAside::new(
        out.parent().unwrap_or(Path::new(".")),
        &plan.table,
        "duplicates",
        &header,
        &[],
    );
    let mut rec = csv::StringRecord::new();
    let mut not_utf8 = Vec::new();
    let mut n = 0;
    while read_record_lossy(&mut reader, &mut rec, &mut not_utf8).map_err(|e| csv_err(path, e))? {
        if rec.get(key_col).is_some_and(|k| dup_keys.contains(k)) {
            let line = rec.position().map_or(0, |p| p.line());
            w.write(line, &[], &rec)?;
            n += 1;
        }
    }
    w.finish()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_kept_up_to_their_limits() {
        assert_eq!(too_long(MAX_KEY_BYTES, true), None);
        assert_eq!(too_long(MAX_VALUE_BYTES, false), None);
        let key = too_long(MAX_KEY_BYTES + 1, true).expect("a key too long");
        assert!(key.starts_with("the key is 2001 bytes long"), "{key}");
        let value = too_long(MAX_VALUE_BYTES + 1, false).expect("a value too long");
        assert!(
            value.starts_with("the value is 67108865 bytes long"),
            "{value}"
        );
        // A value may be longer than a key.
        assert_eq!(too_long(MAX_KEY_BYTES + 1, false), None);
    }
}
