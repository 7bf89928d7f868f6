//! Where exports write: connection tables as UTF-8 CSV files with a header row, staged in a
//! private folder until the whole export has succeeded. The export runner then moves them into
//! `ExportOutput` (see `idlink-engine`), so a failed export never leaves a partial table.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::api::PackageError;

/// Index of a table opened with [`ExportOutput::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableId(usize);

/// A finished (flushed and synced) staged table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedTable {
    /// The connection table's name: `<connection>` or `<connection>_<suffix>`.
    pub name: String,
    /// The staged file.
    pub path: PathBuf,
    pub columns: Vec<String>,
    /// Data rows (the header not counted).
    pub rows: u64,
    pub bytes: u64,
}

struct OpenTable {
    name: String,
    path: PathBuf,
    columns: Vec<String>,
    writer: csv::Writer<BufWriter<File>>,
    rows: u64,
}

/// Tells whether the run was asked to stop (a signal, a cancelled job).
pub type CancelCheck = Box<dyn Fn() -> bool + Send + Sync>;

/// The tables of one export, being written.
pub struct ExportOutput {
    connection: String,
    staging: PathBuf,
    tables: Vec<OpenTable>,
    cancelled: Option<CancelCheck>,
    /// Rows written since the last look at `cancelled`.
    since_check: u32,
    /// Whether `finish` syncs the tables to disk.
    durable: bool,
}

impl std::fmt::Debug for ExportOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportOutput")
            .field("connection", &self.connection)
            .field("staging", &self.staging)
            .field(
                "tables",
                &self.tables.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Buffer size of each table file: large writes keep the syscall count low.
const BUFFER: usize = 256 * 1024;

impl ExportOutput {
    /// Tables of `connection` are staged in `staging` (an existing, private folder).
    pub fn new(connection: &str, staging: &Path) -> Self {
        ExportOutput {
            connection: connection.to_string(),
            staging: staging.to_path_buf(),
            tables: Vec::new(),
            cancelled: None,
            since_check: 0,
            durable: true,
        }
    }

    /// Tables that need not survive a crash (a copy another process keeps durably): `finish`
    /// does not sync them.
    #[must_use]
    pub fn volatile(mut self) -> Self {
        self.durable = false;
        self
    }

    /// Makes writes fail with [`PackageError::Cancelled`] once `check` says the run was asked to
    /// stop, so every package stops at its next row even where it never yields to the runtime.
    #[must_use]
    pub fn with_cancel(mut self, check: CancelCheck) -> Self {
        self.cancelled = Some(check);
        self
    }

    fn check_cancel(&mut self) -> Result<(), PackageError> {
        self.since_check += 1;
        if self.since_check < 1024 {
            return Ok(());
        }
        self.since_check = 0;
        match &self.cancelled {
            Some(check) if check() => Err(PackageError::Cancelled {
                connection: self.connection.clone(),
            }),
            _ => Ok(()),
        }
    }

    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// The table name for a suffix: `<connection>` or `<connection>_<suffix>`.
    pub fn table_name(&self, suffix: Option<&str>) -> String {
        match suffix {
            Some(s) => format!("{}_{s}", self.connection),
            None => self.connection.clone(),
        }
    }

    /// Opens a table and writes its header.
    pub fn create<S: AsRef<str>>(
        &mut self,
        suffix: Option<&str>,
        header: &[S],
    ) -> Result<TableId, PackageError> {
        let name = self.table_name(suffix);
        if let Some(s) = suffix
            && (s.is_empty() || s.contains(['/', '\\', '\0']) || s == "." || s == "..")
        {
            return Err(PackageError::Data {
                location: format!("connection '{}'", self.connection),
                message: format!("'{s}' cannot be a table suffix: it must be a plain file name"),
            });
        }
        if self
            .tables
            .iter()
            .any(|t| t.name.eq_ignore_ascii_case(&name))
        {
            return Err(PackageError::Data {
                location: format!("connection '{}'", self.connection),
                message: format!("table '{name}' is written twice in one export"),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for h in header {
            if !seen.insert(h.as_ref()) {
                return Err(PackageError::Data {
                    location: format!("table '{name}'"),
                    message: format!("column '{}' appears twice in the header", h.as_ref()),
                });
            }
        }
        let path = self.staging.join(format!("{name}.csv"));
        let file = File::create(&path).map_err(|e| PackageError::io("create", &path, e))?;
        let mut writer = csv::WriterBuilder::new()
            .buffer_capacity(8 * 1024)
            .from_writer(BufWriter::with_capacity(BUFFER, file));
        writer
            .write_record(header.iter().map(AsRef::as_ref))
            .map_err(|e| csv_error(&path, e))?;
        self.tables.push(OpenTable {
            name,
            path,
            columns: header.iter().map(|h| h.as_ref().to_string()).collect(),
            writer,
            rows: 0,
        });
        Ok(TableId(self.tables.len() - 1))
    }

    /// Writes one row. Its length must match the header's.
    pub fn write<I, T>(&mut self, table: TableId, record: I) -> Result<(), PackageError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.check_cancel()?;
        let t = &mut self.tables[table.0];
        t.writer
            .write_record(record)
            .map_err(|e| csv_error(&t.path, e))?;
        t.rows += 1;
        Ok(())
    }

    /// Writes one row given as a csv record (the fastest path: no per-field conversion).
    pub fn write_byte_record(
        &mut self,
        table: TableId,
        record: &csv::ByteRecord,
    ) -> Result<(), PackageError> {
        self.check_cancel()?;
        let t = &mut self.tables[table.0];
        t.writer
            .write_byte_record(record)
            .map_err(|e| csv_error(&t.path, e))?;
        t.rows += 1;
        Ok(())
    }

    /// Rows written so far to `table`.
    pub fn rows(&self, table: TableId) -> u64 {
        self.tables[table.0].rows
    }

    pub fn name(&self, table: TableId) -> &str {
        &self.tables[table.0].name
    }

    /// Flushes and syncs every table; called by the runner once the package returned.
    pub fn finish(self) -> Result<Vec<StagedTable>, PackageError> {
        let durable = self.durable;
        let mut done = Vec::with_capacity(self.tables.len());
        for t in self.tables {
            let OpenTable {
                name,
                path,
                columns,
                writer,
                rows,
            } = t;
            let buf = writer.into_inner().map_err(|e| {
                PackageError::io("write", &path, std::io::Error::other(e.to_string()))
            })?;
            let file = buf
                .into_inner()
                .map_err(|e| PackageError::io("write", &path, e.into_error()))?;
            if durable {
                file.sync_all()
                    .map_err(|e| PackageError::io("sync", &path, e))?;
            }
            let bytes = file
                .metadata()
                .map_err(|e| PackageError::io("stat", &path, e))?
                .len();
            done.push(StagedTable {
                name,
                path,
                columns,
                rows,
                bytes,
            });
        }
        Ok(done)
    }
}

fn csv_error(path: &Path, e: csv::Error) -> PackageError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => PackageError::io("write", path, io),
        other => PackageError::Data {
            location: path.display().to_string(),
            message: format!("{other:?}"),
        },
    }
}

/// A multi-valued cell (SPEC §3 `MultivaluedText`): values sorted case-insensitively (then
/// byte-wise, so the order is total) and joined by newlines, so exports are byte-stable.
pub fn multivalued_cell<S: AsRef<str>>(values: &mut [S]) -> String {
    values.sort_by(|a, b| {
        let (a, b) = (a.as_ref(), b.as_ref());
        a.to_lowercase()
            .cmp(&b.to_lowercase())
            .then_with(|| a.cmp(b))
    });
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(v.as_ref());
    }
    out
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_synced(path, bytes)?;
    sync_dir(folder_of(path))
}

/// [`write_atomic`] without making the rename durable: for a file whose folder the caller
/// syncs later anyway (a commit syncs the folders of the files it moves before its commit
/// point), which saves a folder sync, a journal commit of the file system.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(folder_of(path))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The folder `path` is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_csv_with_header_and_quoting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut out = ExportOutput::new("HR", dir.path());
        let t = out.create(Some("people"), &["id", "name"]).expect("create");
        out.write(t, ["1", "Ng, Andrew"]).expect("write");
        out.write(t, ["2", "two\nlines"]).expect("write");
        let done = out.finish().expect("finish");
        assert_eq!(done[0].name, "HR_people");
        assert_eq!(done[0].rows, 2);
        let text = std::fs::read_to_string(&done[0].path).expect("read");
        assert_eq!(text, "id,name\n1,\"Ng, Andrew\"\n2,\"two\nlines\"\n");
        assert_eq!(done[0].bytes, text.len() as u64);
    }

    #[test]
    fn bad_suffixes_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut out = ExportOutput::new("HR", dir.path());
        assert!(out.create(Some("../x"), &["a"]).is_err());
        assert!(out.create(None, &["a", "a"]).is_err());
        out.create(None, &["a"]).expect("create");
        assert!(out.create(None, &["a"]).is_err());
    }

    #[test]
    fn multivalued_cells_are_sorted_case_insensitively() {
        let mut v = vec!["b", "A", "a", "C"];
        assert_eq!(multivalued_cell(&mut v), "A\na\nb\nC");
    }
}
