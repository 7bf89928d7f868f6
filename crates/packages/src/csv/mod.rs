//! CSV files: `Usercube.CSV` (complete and incremental) and `Usercube.CSV.Complete`.
//!
//! One file becomes one connection table, `<connection>`, UTF-8 with a header row.
//!
//! # Reading
//! - **Which file.** `Path` (relative to the settings folder) must resolve, symbolic links and
//!   `..` followed, under `SourcesRootPaths`. With `IsFileNameRegex`, the part after the last
//!   `/` is a regular expression that must match a whole file name in that folder (the folder
//!   is checked against the roots, and so is the file picked); the newest match wins (latest
//!   modification time, then the greatest name).
//! - **Complete or incremental.** `Usercube.CSV` reads `PathIncremental` when the run is
//!   incremental and a cookie shows that an export was done before; otherwise it reads `Path`,
//!   and says the run was complete. With only `PathIncremental` set, incremental runs always
//!   read it and complete runs fail. Every successful export leaves a cookie (mode, file and
//!   time; its content is informative only). `Usercube.CSV.Complete` always reads `Path`.
//! - **Encoding.** See [`decode::SourceEncoding::from_name`]. A byte-order mark overrides
//!   `Encoding`. Bytes that are not valid in the encoding stop the export with their byte
//!   offset and line: nothing is replaced silently. The file is decoded as it streams: memory
//!   stays flat whatever its size.
//! - **Layout.** `NumberOfLinesToSkip` physical lines are skipped, then the first record is
//!   the header. `Separator` is one ASCII character (`,` by default; `tab` or `\t` for a tab);
//!   values may be quoted with `"` (doubled inside), and quoted values keep their separators,
//!   quotes and line breaks. Blank lines are ignored. `ValuesToTrim` lists strings removed
//!   from both ends of every value and header name, each entry in turn and as many times as it
//!   repeats (`[" ", "'"]` turns ` 'x' ` into `x`); one string instead of a list is one value.
//!
//! # Bad input
//! - An empty file (or no line left after the skipped ones): "empty file: no header".
//! - A header only: a table with no rows.
//! - Columns whose header is empty (or blank) are dropped; columns with a header are kept even
//!   when every value is empty. Two columns with the same name: an error naming both positions.
//! - **Ragged rows are refused**: a row with more or fewer fields than the header fails the
//!   export with its line (`people.csv:12`). Padding or cutting would shift values into the
//!   wrong column without anyone noticing; the usual cause is an unquoted separator in a value.
//!   A trailing separator on every data row but not on the header is ragged too.
//! - A quoted value never closed would take in every line after it: when the last row's last
//!   value holds a line break, the file is read again to tell, and an open quote is an error
//!   with the line where it opens. A file that ends inside a quote opened on its last line
//!   (`2,"Bob`, no line break after it) is refused too, with that line: the reader keeps the
//!   last line it passed on, so telling costs nothing on the happy path. (Open in another
//!   column, it leaves its row short: ragged.)
//!
//! # Work
//! Export, schema and check do blocking file I/O on the calling thread (the
//! [`ExportOutput`](crate::output::ExportOutput) they write to is synchronous). The export also
//! reads on a second thread: one thread decodes and parses while the calling one writes, with a
//! few batches of reused rows between them, so memory stays flat and rows cost no allocation.

pub mod decode;
mod export;
mod schema;
pub mod settings;
mod source;

use idlink_model::package::{Availability, Capabilities, PackageInfo};

use crate::api::{CheckConnection, Environment, Export, Instance, PackageError, Schema};
use settings::CsvSettings;

/// `Usercube.CSV@0000001`: exports a CSV file, incrementally from `PathIncremental`.
pub static CSV: PackageInfo = PackageInfo {
    id: "Usercube.CSV@0000001",
    display_name: "File/CSV",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: true,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// `Usercube.CSV.Complete@0000001`: the CSV package without incremental mode.
pub static CSV_COMPLETE: PackageInfo = PackageInfo {
    id: "Usercube.CSV.Complete@0000001",
    display_name: "File/CSV (complete only)",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: false,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::COMPLETE_SETTINGS,
};

/// Checks settings (without I/O) and returns the package ready to run.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    let incremental = package.id == CSV.id;
    let settings = CsvSettings::parse(&env.connection, settings, incremental)?;
    Ok(Box::new(Csv { settings, env }))
}

/// A CSV connection with checked settings.
#[derive(Debug)]
struct Csv {
    settings: CsvSettings,
    env: Environment,
}

impl Instance for Csv {
    fn export(&self) -> Option<&dyn Export> {
        Some(self)
    }
    fn schema(&self) -> Option<&dyn Schema> {
        Some(self)
    }
    fn check_connection(&self) -> Option<&dyn CheckConnection> {
        Some(self)
    }
}
