//! Prepare (SPEC §5.1): reads one mapped connection table, keeps only the mapped columns,
//! checks every value against its property's type, sets aside rows without a primary key
//! (`<table>.nullpk.csv`), with duplicate keys (`<table>.duplicates.csv`) or with a bad value
//! (`<table>.invalid.csv`, with the line, column and reason), and compares each row with what
//! the store holds (by a digest of its values) to find what to insert, update and delete.
//!
//! The pass streams the table: memory holds the store's index of the entity type (key, id,
//! digest) and the keys seen, never the rows. Changes are spilled to a temporary file and
//! applied afterwards, so the rows of a key found twice are all kept out of the store.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use idlink_model::config::PropertyType;
use idlink_model::values::{ValueFormat, read_value};
use idlink_store::IndexEntry;
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

/// What to read for one entity type mapping.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub entity_type: String,
    pub table: String,
    pub path: PathBuf,
    /// The primary key column first.
    pub columns: Vec<MappedColumn>,
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
    /// Keys to insert / ids to update, spilled: (kind, key, data, digest hex).
    pub changes: tempfile::NamedTempFile,
    pub deletes: Vec<i64>,
    pub bad_values: Vec<BadValue>,
    /// Files written beside the prepared tables (only those with rows).
    pub set_aside_files: Vec<PathBuf>,
    dup_keys: HashSet<Box<str>>,
    /// Keys whose row had a bad value or command.
    invalid_keys: HashSet<Box<str>>,
    /// Store rows whose table rows were set aside: neither updated nor deleted.
    dup_ids: HashSet<i64>,
}

/// One change read back from the spill.
#[derive(Debug)]
pub enum Change {
    Insert {
        key: String,
        data: String,
        digest: [u8; 16],
    },
    Update {
        id: i64,
        data: String,
        digest: [u8; 16],
    },
}

const MAX_BAD_VALUES_REPORTED: usize = 50;

fn digest(data: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(data.as_bytes()).to_le_bytes()
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> EngineError + 'p {
    move |e| EngineError::io(op, path, e)
}

/// A CSV error of a table, located at its line.
pub(super) fn csv_err(path: &Path, e: csv::Error) -> EngineError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    EngineError::Data(format!("{}:{line}: {e}", path.display()))
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

/// Finds the mapped columns (and `Command`) in the header, exactly or else ignoring case.
fn locate(
    plan: &TablePlan,
    header: &csv::StringRecord,
) -> Result<(Vec<usize>, Option<usize>), EngineError> {
    let find = |name: &str| find_column(header, name);
    let mut idx = Vec::with_capacity(plan.columns.len());
    for c in &plan.columns {
        match find(&c.column) {
            Some(i) => idx.push(i),
            None => {
                let have: Vec<&str> = header.iter().collect();
                return Err(EngineError::Data(format!(
                    "table '{}' ({}) has no column '{}', which mapping '{}' reads for property '{}'; its columns are: {}",
                    plan.table,
                    plan.path.display(),
                    c.column,
                    plan.entity_type,
                    c.property,
                    have.join(", ")
                )));
            }
        }
    }
    Ok((idx, find("Command")))
}

/// Reads the table, sets aside what cannot be synchronized, and diffs the rest against
/// `index` (the store's rows of the entity type). `set_aside_dir` receives the set-aside files.
pub fn prepare(
    plan: &TablePlan,
    index: &mut HashMap<Box<str>, IndexEntry>,
    apply: Apply,
    set_aside_dir: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<Prepared, EngineError> {
    let path = &plan.path;
    let file = open_table(
        path,
        &format!("table '{}' of mapping '{}'", plan.table, plan.entity_type),
    )?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 16, file));
    let header = reader.headers().map_err(|e| csv_err(path, e))?.clone();
    let (idx, command_col) = locate(plan, &header)?;
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

    let spill = tempfile::NamedTempFile::new_in(set_aside_dir)
        .map_err(io("create a temporary file in", set_aside_dir))?;
    let mut changes = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(BufWriter::new(
            spill.reopen().map_err(io("open", spill.path()))?,
        ));

    let mut counts = Counts::default();
    let mut bad_values = Vec::new();
    // Line of the first occurrence of every key seen: in the index's `mark` for store keys.
    let mut seen_new: HashMap<Box<str>, u64> = HashMap::new();
    let mut dup_keys: HashSet<Box<str>> = HashSet::new();
    // Keys whose rows were set aside: never deleted because of it.
    let mut protected: HashSet<i64> = HashSet::new();
    let mut deletes_by_command: Vec<i64> = Vec::new();

    let mut record = csv::StringRecord::new();
    // Values are written as one JSON object, keys in byte order (a canonical text, so equal
    // values give equal digests), straight into a reused buffer.
    let mut json_order: Vec<usize> = (0..plan.columns.len()).collect();
    json_order.sort_by(|&a, &b| plan.columns[a].property.cmp(&plan.columns[b].property));
    let json_keys: Vec<String> = plan
        .columns
        .iter()
        .map(|c| format!("{}:", serde_json::Value::from(c.property.as_str())))
        .collect();
    let mut json: Vec<u8> = Vec::with_capacity(512);
    let mut id_text = String::new();
    // Ids of store rows whose first row was spilled as an update (to uncount duplicates).
    let mut spilled_updates: HashSet<i64> = HashSet::new();
    // Keys whose first row was set aside or a Delete: nothing of theirs was counted as applied.
    let mut odd_first: HashSet<Box<str>> = HashSet::new();
    let mut invalid_keys: HashSet<Box<str>> = HashSet::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(path, e)),
        }
        counts.rows += 1;
        let line = record.position().map_or(counts.rows + 1, |p| p.line());
        if counts.rows.is_multiple_of(4096) && cancelled() {
            return Err(EngineError::Cancelled {
                what: "the synchronization",
                connection: plan.table.clone(),
            });
        }
        let key = record.get(idx[0]).unwrap_or("");
        if key.trim().is_empty() {
            counts.nullpk += 1;
            nullpk.write(line, &[], &record)?;
            continue;
        }
        // Duplicates: all rows of the key are set aside (which one is right is not ours to say).
        let (existing, first) = match index.get_mut(key) {
            Some(e) => {
                let first = (e.mark != 0).then_some(e.mark);
                if e.mark == 0 {
                    e.mark = line;
                }
                (Some(*e), first)
            }
            None => (None, seen_new.insert(key.into(), line)),
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
            Some(c) if c.eq_ignore_ascii_case("Insert") || c.eq_ignore_ascii_case("Update") => {
                Command::Upsert
            }
            Some(c) if c.eq_ignore_ascii_case("Delete") => Command::Delete,
            Some(c) => {
                odd_first.insert(key.into());
                invalid_keys.insert(key.into());
                counts.invalid += 1;
                let msg = format!("Command '{c}' is not Insert, Update or Delete");
                invalid.write(line, &["Command", &msg], &record)?;
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
        json.clear();
        json.push(b'{');
        let mut bad = None;
        for &k in &json_order {
            let c = &plan.columns[k];
            match read_value(c.ty, &c.format, record.get(idx[k]).unwrap_or("")) {
                Ok(Some(v)) => {
                    if json.len() > 1 {
                        json.push(b',');
                    }
                    json.extend_from_slice(json_keys[k].as_bytes());
                    serde_json::to_writer(&mut json, &v)
                        .map_err(|e| EngineError::Contract(e.to_string()))?;
                }
                Ok(None) => {}
                Err(msg) => {
                    bad = Some((c.column.clone(), msg));
                    break;
                }
            }
        }
        json.push(b'}');
        if let Some((column, msg)) = bad {
            odd_first.insert(key.into());
            invalid_keys.insert(key.into());
            counts.invalid += 1;
            invalid.write(line, &[&column, &msg], &record)?;
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
        let text = std::str::from_utf8(&json)
            .map_err(|e| EngineError::Contract(format!("a value is not UTF-8: {e}")))?;
        let d = digest(text);
        match existing {
            Some(e) if e.digest == d => counts.unchanged += 1,
            Some(e) => {
                counts.updated += 1;
                spilled_updates.insert(e.id);
                id_text.clear();
                let _ = write!(id_text, "{}", e.id);
                changes
                    .write_record(["U", id_text.as_str(), text, hex(&d).as_str()])
                    .map_err(|e| csv_err(spill.path(), e))?;
            }
            None => {
                counts.inserted += 1;
                changes
                    .write_record(["I", key, text, hex(&d).as_str()])
                    .map_err(|e| csv_err(spill.path(), e))?;
            }
        }
    }
    changes.flush().map_err(io("write", spill.path()))?;
    drop(changes);

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
        changes: spill,
        deletes,
        bad_values,
        set_aside_files,
        dup_keys,
        invalid_keys,
        dup_ids: protected,
    };
    Ok(prepared)
}

impl Prepared {
    /// The keys whose rows were set aside (duplicated, or with a bad value or command): the
    /// links those rows carry are set aside with them.
    pub fn set_aside_keys(&self) -> HashSet<Box<str>> {
        self.dup_keys.union(&self.invalid_keys).cloned().collect()
    }

    /// Reads the spilled changes back, without those of duplicated or set-aside keys.
    pub fn for_each_change(
        &self,
        mut f: impl FnMut(Change) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let path = self.changes.path();
        let file = File::open(path).map_err(io("open", path))?;
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(BufReader::with_capacity(1 << 16, file));
        let mut rec = csv::StringRecord::new();
        let bad = || EngineError::Contract(format!("the spill file {} is damaged", path.display()));
        while r.read_record(&mut rec).map_err(|e| csv_err(path, e))? {
            let (Some(kind), Some(k), Some(data), Some(d)) =
                (rec.get(0), rec.get(1), rec.get(2), rec.get(3))
            else {
                return Err(bad());
            };
            let digest = unhex(d).ok_or_else(bad)?;
            match kind {
                "I" if !self.dup_keys.contains(k) => f(Change::Insert {
                    key: k.to_string(),
                    data: data.to_string(),
                    digest,
                })?,
                "U" => {
                    let id: i64 = k.parse().map_err(|_| bad())?;
                    if !self.dup_ids.contains(&id) {
                        f(Change::Update {
                            id,
                            data: data.to_string(),
                            digest,
                        })?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
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
    let mut n = 0;
    while reader.read_record(&mut rec).map_err(|e| csv_err(path, e))? {
        if rec.get(key_col).is_some_and(|k| dup_keys.contains(k)) {
            let line = rec.position().map_or(0, |p| p.line());
            w.write(line, &[], &rec)?;
            n += 1;
        }
    }
    w.finish()?;
    Ok(n)
}

fn hex(d: &[u8; 16]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in d {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn unhex(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if s.len() != 32 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}
