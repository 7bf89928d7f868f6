//! csv package tests: real files in temporary folders, driven through the registry.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use idlink_model::package::PackageCatalog;
use idlink_packages::api::{ExportOutcome, ExportRequest, Progress};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Instance, PackageError, Registry};
use serde_json::{Value, json};

const CSV: &str = "Usercube.CSV@0000001";
const COMPLETE: &str = "Usercube.CSV.Complete@0000001";
const CONNECTION: &str = "HRPeople";
static REGISTRY: Registry = Registry::new();

/// A settings folder with a `data` folder, the only source root.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("data")).expect("mkdir data");
        Fixture { dir }
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to `rel` (relative to the settings folder); returns the path.
    fn file(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.base().join(rel);
        std::fs::write(&path, bytes).expect("write fixture");
        path
    }

    fn env(&self) -> Environment {
        Environment {
            connection: CONNECTION.to_string(),
            base_dir: self.base().to_path_buf(),
            roots: SourceRoots::new(self.base(), &["data"]),
            mapped_tables: Vec::new(),
        }
    }

    fn instance(&self, package: &str, settings: Value) -> Result<Box<dyn Instance>, PackageError> {
        let info = REGISTRY.get(package).expect("registered package");
        idlink_packages::instantiate(info, settings, self.env())
    }

    /// Instantiates and exports; returns the table's text and the outcome.
    fn export_with(
        &self,
        package: &str,
        settings: Value,
        incremental: bool,
        cookie: Option<&str>,
    ) -> Result<(String, ExportOutcome), PackageError> {
        let instance = self.instance(package, settings)?;
        let export = instance.export().expect("CSV exports");
        let staging = tempfile::tempdir().expect("staging");
        let mut out = ExportOutput::new(CONNECTION, staging.path());
        let progress = Recorded::default();
        let request = ExportRequest {
            incremental,
            cookie,
            progress: &progress,
        };
        let outcome = block_on(export.export(&request, &mut out))?;
        let tables = out.finish()?;
        assert_eq!(tables.len(), 1, "one table");
        assert_eq!(tables[0].name, CONNECTION);
        let text = String::from_utf8(std::fs::read(&tables[0].path).expect("read table"))
            .expect("tables are UTF-8");
        let written: u64 = progress
            .rows
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.1)
            .sum();
        assert_eq!(written, tables[0].rows, "progress counts every row");
        Ok((text, outcome))
    }

    /// A complete export with `Usercube.CSV`; returns the table's text.
    fn export(&self, settings: Value) -> Result<String, PackageError> {
        self.export_with(CSV, settings, false, None).map(|(t, _)| t)
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[derive(Default)]
struct Recorded {
    rows: Mutex<Vec<(String, u64)>>,
    phases: Mutex<Vec<String>>,
}

impl Progress for Recorded {
    fn rows(&self, table: &str, rows: u64) {
        self.rows
            .lock()
            .expect("lock")
            .push((table.to_string(), rows));
    }
    fn phase(&self, message: &str) {
        self.phases.lock().expect("lock").push(message.to_string());
    }
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/csv")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}

/// The message of a data error, with its location: `people.csv:12: ...`.
fn err_text(e: &PackageError) -> String {
    e.to_string()
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open for mtime");
    file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .expect("set mtime");
}

// ---------------------------------------------------------------------------------------------
// Output bytes

#[test]
fn quotes_newlines_and_dropped_columns_give_exact_bytes() {
    let f = Fixture::new();
    f.file(
        "data/people.csv",
        "id,name,,note,empty\r\n\
         1,\"Ng, Andrew\",x,\"said \"\"hi\"\"\",\r\n\
         2,\"two\nlines\",y,plain,\r\n\
         \r\n\
         3,\"\",z,\"a\r\nb\",\r\n",
    );
    let text = f
        .export(json!({"Path": "data/people.csv"}))
        .expect("export");
    assert_eq!(
        text,
        "id,name,note,empty\n\
         1,\"Ng, Andrew\",\"said \"\"hi\"\"\",\n\
         2,\"two\nlines\",plain,\n\
         3,,\"a\r\nb\",\n"
    );
}

#[test]
fn windows_1252_fixture_is_reencoded_with_skipped_lines() {
    let f = Fixture::new();
    f.file("data/hr.csv", fixture_bytes("people_windows1252.csv"));
    let text = f
        .export(json!({
            "Path": "data/hr.csv",
            "Encoding": "Windows-1252",
            "Separator": ";",
            "NumberOfLinesToSkip": 1,
        }))
        .expect("export");
    assert_eq!(
        text,
        "matricule,nom,prénom,service\n\
         0001,Lefèvre,Hélène,Comptabilité\n\
         0002,Müller,Jürgen,R&D; Lab\n\
         0003,O'Neil,\"Zoë \"\"Z\"\"\",\"Ventes\r\nExport\"\n"
    );
}

#[test]
fn single_byte_e9_decodes_as_windows_1252_and_latin1() {
    let f = Fixture::new();
    f.file("data/p.csv", b"name\nRen\xE9\n\x80uro\n");
    for encoding in ["Windows-1252", "cp1252", "ISO-8859-1", "latin1"] {
        let text = f
            .export(json!({"Path": "data/p.csv", "Encoding": encoding}))
            .expect(encoding);
        assert_eq!(text, "name\nRené\n€uro\n", "{encoding}");
    }
}

#[test]
fn utf16le_with_bom_fixture_and_tab_separator() {
    let f = Fixture::new();
    f.file("data/people.csv", fixture_bytes("people_utf16le.csv"));
    let expected = "id,name,mail\n1,Zoë Ångström,zoe@example.com\n2,€uro Ñandú,\n";
    for encoding in ["UTF-16", "UTF-16LE", "Unicode"] {
        let text = f
            .export(json!({"Path": "data/people.csv", "Encoding": encoding, "Separator": "tab"}))
            .expect(encoding);
        assert_eq!(text, expected, "{encoding}");
    }
    // The BOM wins over a wrong declaration, as with .NET's StreamReader.
    let text = f
        .export(json!({"Path": "data/people.csv", "Encoding": "UTF-8", "Separator": "\t"}))
        .expect("BOM overrides");
    assert_eq!(text, expected);
}

#[test]
fn utf16be_and_utf8_boms() {
    let f = Fixture::new();
    let mut be = vec![0xFE, 0xFF];
    be.extend("a|b\r\n1|é\r\n".encode_utf16().flat_map(u16::to_be_bytes));
    f.file("data/be.csv", be);
    let text = f
        .export(json!({"Path": "data/be.csv", "Encoding": "UTF-16BE", "Separator": "|"}))
        .expect("utf-16be");
    assert_eq!(text, "a,b\n1,é\n");
    f.file("data/bom.csv", b"\xEF\xBB\xBFid,name\n1,Zo\xC3\xAB\n");
    let text = f
        .export(json!({"Path": "data/bom.csv"}))
        .expect("utf-8 bom");
    assert_eq!(
        text, "id,name\n1,Zoë\n",
        "the BOM is not part of the first column's name"
    );
}

#[test]
fn separators() {
    let f = Fixture::new();
    for (sep, file) in [
        (";", "a;b\n1;x,y\n"),
        ("|", "a|b\n1|x,y\n"),
        ("tab", "a\tb\n1\tx,y\n"),
        ("TAB", "a\tb\n1\tx,y\n"),
        ("\\t", "a\tb\n1\tx,y\n"),
        ("\t", "a\tb\n1\tx,y\n"),
    ] {
        f.file("data/s.csv", file);
        let text = f
            .export(json!({"Path": "data/s.csv", "Separator": sep}))
            .expect(sep);
        assert_eq!(text, "a,b\n1,\"x,y\"\n", "{sep:?}");
    }
    f.file("data/s.csv", "a,b\n1,2\n");
    assert_eq!(
        f.export(json!({"Path": "data/s.csv"})).expect("default ,"),
        "a,b\n1,2\n"
    );
}

#[test]
fn values_are_trimmed_in_order_headers_too() {
    let f = Fixture::new();
    f.file(
        "data/t.csv",
        " 'id' ; 'name' ;note\n 1 ;' O''Neil ' ;  \n'2'; ''; x \n",
    );
    let text = f
        .export(json!({
            "Path": "data/t.csv",
            "Separator": ";",
            "ValuesToTrim": [" ", "'"],
        }))
        .expect("export");
    // Spaces first, then quotes: the space inside ' O''Neil ' stays, being inside the quotes.
    assert_eq!(text, "id,name,note\n1, O''Neil ,\n2,,x\n");
    // One string is a list of one.
    f.file("data/u.csv", "a,b\n**x**,*\n");
    let text = f
        .export(json!({"Path": "data/u.csv", "ValuesToTrim": "*"}))
        .expect("one value");
    assert_eq!(text, "a,b\nx,\n");
}

#[test]
fn header_only_gives_an_empty_table() {
    let f = Fixture::new();
    f.file("data/h.csv", "id,name\r\n");
    assert_eq!(
        f.export(json!({"Path": "data/h.csv"})).expect("export"),
        "id,name\n"
    );
    f.file("data/h2.csv", "id,name");
    assert_eq!(
        f.export(json!({"Path": "data/h2.csv"})).expect("export"),
        "id,name\n"
    );
}

#[test]
fn rows_stream_across_buffers_and_report_progress() {
    let f = Fixture::new();
    // ~1.2 MB of Windows-1252: characters, quotes and line breaks cut across every buffer.
    let mut src = b"id,name,city\r\n".to_vec();
    let mut expected = String::from("id,name,city\n");
    for i in 0..25_000 {
        src.extend_from_slice(format!("{i},\"René \"\"{i}\"\"\",München\r\n").as_bytes());
        expected.push_str(&format!("{i},\"René \"\"{i}\"\"\",München\n"));
        if i % 7 == 0 {
            src.extend_from_slice(format!("x{i},\"line\r\nbreak\",é\r\n").as_bytes());
            expected.push_str(&format!("x{i},\"line\r\nbreak\",é\n"));
        }
    }
    // 'é' and 'ü' become single Windows-1252 bytes (0xE9, 0xFC).
    let src = String::from_utf8(src)
        .expect("utf-8")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("latin-1 range"))
        .collect::<Vec<u8>>();
    f.file("data/big.csv", &src);
    let instance = f
        .instance(
            CSV,
            json!({"Path": "data/big.csv", "Encoding": "Windows-1252"}),
        )
        .expect("instance");
    let staging = tempfile::tempdir().expect("staging");
    let mut out = ExportOutput::new(CONNECTION, staging.path());
    let progress = Recorded::default();
    let request = ExportRequest {
        incremental: false,
        cookie: None,
        progress: &progress,
    };
    block_on(
        instance
            .export()
            .expect("export")
            .export(&request, &mut out),
    )
    .expect("export");
    let tables = out.finish().expect("finish");
    assert_eq!(
        std::fs::read_to_string(&tables[0].path).expect("read"),
        expected
    );
    let rows = progress.rows.lock().expect("lock").clone();
    let total: u64 = rows.iter().map(|r| r.1).sum();
    assert_eq!(total, tables[0].rows);
    assert_eq!(tables[0].rows, 25_000 + 25_000_u64.div_ceil(7));
    assert!(rows.iter().all(|(t, n)| t == CONNECTION && *n <= 10_000));
    assert_eq!(rows[0].1, 10_000);
    let phases = progress.phases.lock().expect("lock").clone();
    assert!(phases.iter().any(|p| p.contains("big.csv")), "{phases:?}");
}

// ---------------------------------------------------------------------------------------------
// Which file: regex, incremental

#[test]
fn newest_regex_match_wins() {
    let f = Fixture::new();
    let old = f.file("data/people_20240101.csv", "id\nold\n");
    let new = f.file("data/people_20240102.csv", "id\nnew\n");
    let other = f.file("data/other_20240103.csv", "id\nother\n");
    let longer = f.file("data/people_20240104.csv.bak", "id\nbackup\n");
    set_mtime(&old, 300);
    set_mtime(&new, 200);
    set_mtime(&other, 0);
    set_mtime(&longer, 0);
    let settings = json!({"Path": "data/people_\\d{8}\\.csv", "IsFileNameRegex": true});
    assert_eq!(f.export(settings.clone()).expect("export"), "id\nnew\n");
    // The older name, made newer, wins: modification time first.
    set_mtime(&old, 100);
    assert_eq!(f.export(settings.clone()).expect("export"), "id\nold\n");
    // Same time: the greatest name.
    let t = SystemTime::now() - Duration::from_secs(50);
    for p in [&old, &new] {
        std::fs::File::options()
            .write(true)
            .open(p)
            .and_then(|file| file.set_modified(t))
            .expect("mtime");
    }
    assert_eq!(f.export(settings).expect("export"), "id\nnew\n");
    // A bare pattern searches the settings folder, which is not a root.
    let e = f
        .export(json!({"Path": "people_.*", "IsFileNameRegex": true}))
        .expect_err("folder outside");
    assert!(err_text(&e).contains("outside SourcesRootPaths"));
}

#[test]
fn no_regex_match_names_folder_and_pattern() {
    let f = Fixture::new();
    f.file("data/people.txt", "id\n1\n");
    let e = f
        .export(json!({"Path": "data/people_.*\\.csv", "IsFileNameRegex": true}))
        .expect_err("no match");
    let text = err_text(&e);
    let folder = f.base().join("data").canonicalize().expect("canonical");
    assert!(text.contains(&folder.display().to_string()), "{text}");
    assert!(text.contains("people_.*\\.csv"), "{text}");
    assert!(text.contains("no file"), "{text}");
    let check = block_on(
        f.instance(
            CSV,
            json!({"Path": "data/people_.*\\.csv", "IsFileNameRegex": true}),
        )
        .expect("instance")
        .check_connection()
        .expect("check")
        .check_connection(),
    );
    assert!(err_text(&check.expect_err("no match")).contains("no file"));
}

#[test]
fn incremental_reads_path_incremental_only_after_a_first_export() {
    let f = Fixture::new();
    f.file("data/full.csv", "id,Command\n1,\n2,\n");
    f.file("data/delta.csv", "id,Command\n3,Insert\n");
    let both = json!({"Path": "data/full.csv", "PathIncremental": "data/delta.csv"});
    let full = "id,Command\n1,\n2,\n";
    let delta = "id,Command\n3,Insert\n";

    // First run: incremental asked, but no cookie yet: complete.
    let (text, outcome) = f
        .export_with(CSV, both.clone(), true, None)
        .expect("first run");
    assert_eq!((text.as_str(), outcome.incremental), (full, false));
    let cookie = outcome.cookie.expect("a cookie for the next run");
    assert!(
        cookie.contains("\"complete\"") && cookie.contains("full.csv"),
        "{cookie}"
    );

    let (text, outcome) = f
        .export_with(CSV, both.clone(), true, Some(&cookie))
        .expect("incremental");
    assert_eq!((text.as_str(), outcome.incremental), (delta, true));
    assert!(
        outcome
            .cookie
            .is_some_and(|c| c.contains("\"incremental\""))
    );

    let (text, outcome) = f
        .export_with(CSV, both.clone(), false, Some(&cookie))
        .expect("complete");
    assert_eq!((text.as_str(), outcome.incremental), (full, false));

    // Usercube.CSV.Complete has no incremental mode.
    let (text, outcome) = f
        .export_with(
            COMPLETE,
            json!({"Path": "data/full.csv"}),
            true,
            Some(&cookie),
        )
        .expect("complete package");
    assert_eq!((text.as_str(), outcome.incremental), (full, false));

    // Only an incremental file: incremental runs read it; complete runs cannot.
    let only = json!({"PathIncremental": "data/delta.csv"});
    let (text, outcome) = f
        .export_with(CSV, only.clone(), true, None)
        .expect("incremental only");
    assert_eq!((text.as_str(), outcome.incremental), (delta, true));
    let e = f.export_with(CSV, only, false, None).expect_err("no Path");
    assert!(err_text(&e).contains("needs Path"));
    // No incremental file: incremental requests fall back to complete.
    let (text, outcome) = f
        .export_with(CSV, json!({"Path": "data/full.csv"}), true, Some(&cookie))
        .expect("fallback");
    assert_eq!((text.as_str(), outcome.incremental), (full, false));
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn ragged_rows_are_refused_with_their_line() {
    let f = Fixture::new();
    f.file(
        "data/people.csv",
        "preamble \"unbalanced\nid,name\n1,\"a\nb\"\n2,b,extra\n",
    );
    let settings = json!({"Path": "data/people.csv", "NumberOfLinesToSkip": 1});
    let e = f.export(settings).expect_err("ragged");
    let text = err_text(&e);
    assert!(text.starts_with("people.csv:5: "), "{text}");
    assert!(text.contains("3 field(s) but the header has 2"), "{text}");

    // CRLF line ends, blank lines and a multi-line value before the bad row.
    f.file(
        "data/crlf.csv",
        "a,b\r\n1,\"x\r\ny\"\r\n\r\n\r\n3,\"multi\r\nline\",z\r\n",
    );
    let text = err_text(
        &f.export(json!({"Path": "data/crlf.csv"}))
            .expect_err("ragged"),
    );
    assert!(text.starts_with("crlf.csv:6: "), "{text}");
    // The last row, with no line end.
    f.file("data/last.csv", "a,b\n1,2\n3");
    let text = err_text(
        &f.export(json!({"Path": "data/last.csv"}))
            .expect_err("ragged"),
    );
    assert!(text.starts_with("last.csv:3: "), "{text}");
    // Far from the start: the rows before it were read and written by then.
    let mut long = String::from("a,b\n");
    for i in 0..5000 {
        long.push_str(&format!("{i},x\n"));
    }
    long.push_str("bad\n6000,y\n");
    f.file("data/long.csv", long);
    let text = err_text(
        &f.export(json!({"Path": "data/long.csv"}))
            .expect_err("ragged"),
    );
    assert!(
        text.starts_with("long.csv:5002: this row has 1 field(s)"),
        "{text}"
    );
    f.file("data/short.csv", "a,b,c\n1,2,3\n4,5\n");
    let text = err_text(
        &f.export(json!({"Path": "data/short.csv"}))
            .expect_err("short"),
    );
    assert!(text.starts_with("short.csv:3: "), "{text}");
    assert!(text.contains("2 field(s) but the header has 3"), "{text}");
}

#[test]
fn an_unclosed_quote_is_refused_with_its_line() {
    let f = Fixture::new();
    // Left open in the last column, it would take in every row after it, field count intact.
    f.file("data/open.csv", "id,name\n1,\"Ann\n2,Bob\n3,\"\"Cy\"\"\n");
    let text = err_text(
        &f.export(json!({"Path": "data/open.csv"}))
            .expect_err("unclosed"),
    );
    assert!(
        text.starts_with("open.csv:2: a quoted value opens here and is never closed"),
        "{text}"
    );
    // A closed multi-line value at the end is fine, whatever its quotes and separators.
    f.file(
        "data/closed.csv",
        "id,note\r\n1,x\r\n2,\"say \"\"a,b\"\"\r\nthen \"\"c\r\nd\"\"\"\r\n",
    );
    let text = f
        .export(json!({"Path": "data/closed.csv"}))
        .expect("closed");
    assert_eq!(
        text,
        "id,note\n1,x\n2,\"say \"\"a,b\"\"\r\nthen \"\"c\r\nd\"\"\"\n"
    );
}

/// A quote left open in a column before the last took every line after it into one short row,
/// which was refused as ragged ("this row has 2 field(s) but the header has 6"), pointing at
/// the separators: the message now names the quote and the line it opens on.
#[test]
fn regression_an_unclosed_quote_that_leaves_its_row_short_is_named() {
    let f = Fixture::new();
    f.file(
        "data/short.csv",
        "id,name,mail\n1,Ann,ann@x\n2,\"Bob,bob@x\n3,Cy,cy@x\n",
    );
    let text = err_text(
        &f.export(json!({"Path": "data/short.csv"}))
            .expect_err("unclosed"),
    );
    assert!(
        text.starts_with("short.csv:3: a quoted value opens here and is never closed"),
        "{text}"
    );
    // A short row whose last value holds a closed line break is still ragged.
    f.file(
        "data/ragged.csv",
        "id,name,mail\n1,\"Ann\nB\"\n2,Bob,bob@x\n",
    );
    let text = err_text(
        &f.export(json!({"Path": "data/ragged.csv"}))
            .expect_err("ragged"),
    );
    assert!(
        text.starts_with("ragged.csv:2: this row has 2 field(s)"),
        "{text}"
    );
}

/// A quoted value left open near the top of a large file was read as one row up to the quote
/// that closed it, or to the end of the file: the export's memory grew to the file's size
/// (a 440 MB file: 539 MB peak RSS) before it failed. Rows are read up to `MaxRowSize` bytes:
/// the export stops at the row that passes it, at the line where the quote opens.
#[test]
fn regression_a_quote_left_open_in_a_large_file_stops_at_max_row_size() {
    let f = Fixture::new();
    let mut text = String::from("id,name,mail\n1,Ann,ann@x\n2,\"Bob,bob@x\n");
    for i in 3..500 {
        text += &format!("{i},Cy,cy{i}@x\n");
    }
    // A second stray quote closes the first far below: the file does not end inside a quote.
    text += "500,\"Dee,dee@x\n501,Eve,eve@x\n";
    f.file("data/open.csv", &text);
    let settings = json!({"Path": "data/open.csv", "MaxRowSize": 1024});
    let message = err_text(&f.export(settings).expect_err("a row over MaxRowSize"));
    assert!(
        message.starts_with(
            "open.csv:3: a quoted value opens here and is still open 1024 bytes further (MaxRowSize)"
        ),
        "{message}"
    );

    // A long row without quotes: told as long, at its line.
    let photo = "A".repeat(3000);
    f.file(
        "data/wide.csv",
        format!("id,photo\n1,small\n2,{photo}\n3,small\n"),
    );
    let message = err_text(
        &f.export(json!({"Path": "data/wide.csv", "MaxRowSize": 1024}))
            .expect_err("a row over MaxRowSize"),
    );
    assert!(
        message.starts_with("wide.csv:3: this row is longer than MaxRowSize (1024 bytes)"),
        "{message}"
    );
    // A file without a line break: its header passes the bound, told the same way.
    f.file("data/flat.csv", "id".repeat(2000));
    let message = err_text(
        &f.export(json!({"Path": "data/flat.csv", "MaxRowSize": 1024}))
            .expect_err("a header over MaxRowSize"),
    );
    assert!(
        message.starts_with("flat.csv:1: this row is longer than MaxRowSize (1024 bytes)"),
        "{message}"
    );
    // Rows up to MaxRowSize, with either line break, are read whole; so is a longer header
    // bound raised.
    let row = "B".repeat(1020);
    f.file("data/fits.csv", format!("id,photo\r\n1,{row}\r\n2,{row}\n"));
    let table = f
        .export(json!({"Path": "data/fits.csv", "MaxRowSize": 1024}))
        .expect("rows within MaxRowSize");
    assert_eq!(table.lines().count(), 3, "{}", &table[..80]);
    let table = f
        .export(json!({"Path": "data/wide.csv", "MaxRowSize": 4096}))
        .expect("rows within a raised MaxRowSize");
    assert!(table.contains(&photo));
}

/// Rows of a few dozen kilobytes (photos) in a CSV file were handed from the reading thread to
/// the writing one 1,024 at a time, four batches in flight: the export of such a file took
/// memory by the hundreds of megabytes. This one only checks that wide rows, narrow ones and
/// their mix come out whole and in order (batches end on bytes as well as rows); the memory
/// bound is checked with peak RSS by `bench/export_csv.sh`.
#[test]
fn wide_and_narrow_rows_mixed_are_exported_whole_and_in_order() {
    let f = Fixture::new();
    let mut text = String::from("id,photo\n");
    let mut expected = String::from("id,photo\n");
    for i in 0..3000u32 {
        let photo = if i.is_multiple_of(7) {
            format!("{i:x}").repeat(5000)
        } else {
            format!("p{i}")
        };
        text += &format!("{i},{photo}\n");
        expected += &format!("{i},{photo}\n");
    }
    f.file("data/mixed.csv", &text);
    let table = f
        .export(json!({"Path": "data/mixed.csv"}))
        .expect("exported");
    assert_eq!(table.replace("\r\n", "\n"), expected);
}

/// Defect 5 of issue #8: a CSV that ends inside an open quote was accepted (`2,"Bob` exported
/// as `2,Bob`). It is refused with its line, like every other malformed row.
#[test]
fn regression_csv_ending_inside_an_open_quote_is_refused_with_its_line() {
    let f = Fixture::new();
    let refused = |name: &str, text: &str, settings: Value| {
        f.file(&format!("data/{name}"), text);
        err_text(&f.export(settings).expect_err(name))
    };
    let path = |name: &str| json!({ "Path": format!("data/{name}") });
    for (name, text, line) in [
        ("bob.csv", "id,name\n1,Ann\n2,\"Bob", 3),
        ("crlf.csv", "id,name\r\n1,Ann\r\n\r\n2,\"Bob", 4),
        // `""` inside a quoted value is a quote: the value is still open.
        ("doubled.csv", "id,name\n1,\"Bo\"\"b\"\"", 2),
        ("header.csv", "id,\"name", 1),
    ] {
        let text = refused(name, text, path(name));
        assert!(
            text.starts_with(&format!("{name}:{line}: a quoted value opens"))
                && text.contains("never closed"),
            "{name}: {text}"
        );
    }
    // Open in another column, the row is short: refused as ragged, with its line.
    let text = refused("first.csv", "id,name,x\n1,\"Ann,x", path("first.csv"));
    assert!(
        text.starts_with("first.csv:2: this row has 2 field(s)"),
        "{text}"
    );
    // A separator other than the comma, and lines skipped before the header.
    let text = refused(
        "semi.csv",
        "junk\nid;name\n1;\"Ann",
        json!({"Path": "data/semi.csv", "Separator": ";", "NumberOfLinesToSkip": 1}),
    );
    assert!(
        text.starts_with("semi.csv:3: a quoted value opens"),
        "{text}"
    );
    // A last line longer than what is kept, and a last row that starts on an earlier line:
    // the file is read again, and the line where the quote opens is named.
    let long = format!("id,name\n1,\"{}", "x".repeat(100_000));
    let text = refused("long.csv", &long, path("long.csv"));
    assert!(
        text.starts_with("long.csv:2: a quoted value opens"),
        "{text}"
    );
    let text = refused(
        "multi.csv",
        "id,a,b\n1,\"two\nlines\",\"open",
        path("multi.csv"),
    );
    assert!(
        text.starts_with("multi.csv:3: a quoted value opens"),
        "{text}"
    );
    // Closed values at the very end are fine.
    for (name, text, table) in [
        ("closed_end.csv", "id,name\n1,\"Ann\"", "id,name\n1,Ann\n"),
        (
            "quotes_end.csv",
            "id,name\n1,\"A \"\"B\"\"\"",
            "id,name\n1,\"A \"\"B\"\"\"\n",
        ),
        ("plain_end.csv", "id,name\n1,Ann", "id,name\n1,Ann\n"),
        ("inner.csv", "id,name\n1,An\"n", "id,name\n1,\"An\"\"n\"\n"),
    ] {
        f.file(&format!("data/{name}"), text);
        assert_eq!(f.export(path(name)).expect(name), table, "{name}");
    }
}

#[test]
fn empty_file_has_no_header() {
    let f = Fixture::new();
    f.file("data/empty.csv", "");
    let text = err_text(
        &f.export(json!({"Path": "data/empty.csv"}))
            .expect_err("empty"),
    );
    assert_eq!(text, "empty.csv: empty file: no header");
    f.file("data/blank.csv", "\r\n\r\n");
    let text = err_text(
        &f.export(json!({"Path": "data/blank.csv"}))
            .expect_err("blank"),
    );
    assert!(text.contains("empty file: no header"), "{text}");
    f.file("data/empty.csv", "");
    let settings = json!({"Path": "data/empty.csv", "NumberOfLinesToSkip": 2});
    let text = err_text(&f.export(settings).expect_err("empty, with lines to skip"));
    assert_eq!(text, "empty.csv: empty file: no header");
    f.file("data/short.csv", "one line\n");
    let settings = json!({"Path": "data/short.csv", "NumberOfLinesToSkip": 3});
    let text = err_text(&f.export(settings).expect_err("skipped everything"));
    assert!(
        text.contains("no header") && text.contains("has 1 line"),
        "{text}"
    );
    f.file("data/noname.csv", ",,\n1,2,3\n");
    let text = err_text(
        &f.export(json!({"Path": "data/noname.csv"}))
            .expect_err("no names"),
    );
    assert!(text.contains("no column has a header"), "{text}");
}

#[test]
fn duplicate_header_names_are_refused_naming_both() {
    let f = Fixture::new();
    f.file("data/dup.csv", "\n\nid,mail,name,mail\n1,a,b,c\n");
    let text = err_text(
        &f.export(json!({"Path": "data/dup.csv"}))
            .expect_err("duplicate"),
    );
    assert_eq!(
        text,
        "dup.csv:3: column 'mail' appears twice in the header: columns 2 and 4"
    );
    // Names are compared exactly, as the configuration compares column identifiers.
    f.file("data/case.csv", "Mail,mail\n1,2\n");
    assert!(f.export(json!({"Path": "data/case.csv"})).is_ok());
    // Trimming can make two names equal.
    f.file("data/trim.csv", "id, id\n1,2\n");
    let settings = json!({"Path": "data/trim.csv", "ValuesToTrim": [" "]});
    assert!(err_text(&f.export(settings).expect_err("dup")).contains("columns 1 and 2"));
}

#[test]
fn wrong_encoding_names_the_byte_offset_and_line() {
    let f = Fixture::new();
    // A Windows-1252 file read as UTF-8: 'é' (0xE9) is at byte 19, on line 3.
    f.file("data/people.csv", b"id,name\n1,Ann\n2,Ren\xE9\n");
    let text = err_text(
        &f.export(json!({"Path": "data/people.csv"}))
            .expect_err("not UTF-8"),
    );
    assert!(
        text.starts_with("people.csv:3: invalid UTF-8 at byte offset 19 (bytes E9)"),
        "{text}"
    );
    assert!(text.contains("set Encoding"), "{text}");
    // In the header too, and with a BOM (counted in the offset).
    f.file("data/h.csv", b"\xEF\xBB\xBFn\xE9,x\n");
    let text = err_text(&f.export(json!({"Path": "data/h.csv"})).expect_err("header"));
    assert!(
        text.starts_with("h.csv:1: invalid UTF-8 at byte offset 4"),
        "{text}"
    );
    // Far into the file, past the first buffers.
    let mut big = b"id,name\n".to_vec();
    for i in 0..20_000 {
        big.extend_from_slice(format!("{i},name{i}\n").as_bytes());
    }
    let offset = big.len();
    big.extend_from_slice(b"x,\xFF\n");
    f.file("data/big.csv", &big);
    let text = err_text(&f.export(json!({"Path": "data/big.csv"})).expect_err("big"));
    assert!(
        text.starts_with(&format!(
            "big.csv:20002: invalid UTF-8 at byte offset {}",
            offset + 2
        )),
        "{text}"
    );
    // ASCII does not take Windows-1252 bytes either.
    f.file("data/a.csv", b"id\nRen\xE9\n");
    let text = err_text(
        &f.export(json!({"Path": "data/a.csv", "Encoding": "US-ASCII"}))
            .expect_err("ascii"),
    );
    assert!(text.contains("invalid US-ASCII at byte offset 6"), "{text}");
    // UTF-16 with an unpaired surrogate.
    let mut u16 = utf16le_with_bom("id\n");
    u16.extend_from_slice(&[0x00, 0xDC, b'\n', 0]);
    f.file("data/u16.csv", &u16);
    let text = err_text(
        &f.export(json!({"Path": "data/u16.csv", "Encoding": "UTF-16LE"}))
            .expect_err("surrogate"),
    );
    assert!(
        text.starts_with("u16.csv:2: invalid UTF-16LE at byte offset 8"),
        "{text}"
    );
    // UTF-16 without a BOM, read as UTF-8: NULs in the header.
    let bare: Vec<u8> = "id,name\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    f.file("data/bare.csv", &bare);
    let text = err_text(&f.export(json!({"Path": "data/bare.csv"})).expect_err("NUL"));
    assert!(text.contains("probably UTF-16"), "{text}");
}

#[test]
fn paths_outside_the_source_roots_are_refused() {
    let f = Fixture::new();
    f.file("secret.csv", "id\n1\n");
    f.file("data/ok.csv", "id\n1\n");
    std::os::unix::fs::symlink(f.base().join("secret.csv"), f.base().join("data/link.csv"))
        .expect("symlink");
    std::fs::create_dir(f.base().join("elsewhere")).expect("mkdir");
    f.file("elsewhere/people_1.csv", "id\n1\n");
    std::os::unix::fs::symlink(f.base().join("elsewhere"), f.base().join("data/dir"))
        .expect("symlink");
    let absolute = f.base().join("secret.csv").display().to_string();
    for (settings, what) in [
        (json!({"Path": "secret.csv"}), "beside the root"),
        (json!({"Path": "data/../secret.csv"}), "through .."),
        (json!({"Path": "data/link.csv"}), "through a symlink"),
        (json!({"Path": absolute}), "absolute"),
        (
            json!({"Path": "data/../elsewhere/people_.*", "IsFileNameRegex": true}),
            "regex folder through ..",
        ),
        (
            json!({"Path": "data/dir/people_.*", "IsFileNameRegex": true}),
            "regex folder through a symlink",
        ),
        (
            json!({"Path": "data/link\\.csv", "IsFileNameRegex": true}),
            "regex match through a symlink",
        ),
    ] {
        let instance = f.instance(CSV, settings.clone()).expect(what);
        let e = f.export(settings).expect_err(what);
        assert!(
            matches!(e, PackageError::OutsideRoots { .. }),
            "{what}: {e}"
        );
        let check = block_on(
            instance
                .check_connection()
                .expect("check")
                .check_connection(),
        );
        assert!(
            matches!(check, Err(PackageError::OutsideRoots { .. })),
            "{what}: {check:?}"
        );
        let schema = block_on(instance.schema().expect("schema").schema());
        assert!(
            matches!(schema, Err(PackageError::OutsideRoots { .. })),
            "{what}: {schema:?}"
        );
    }
    assert!(f.export(json!({"Path": "data/ok.csv"})).is_ok());
}

#[test]
fn settings_are_checked_without_io() {
    let f = Fixture::new();
    // Nothing exists: instantiating still works (no I/O), and checks what it can.
    assert!(f.instance(CSV, json!({"Path": "data/missing.csv"})).is_ok());
    let cases = [
        (CSV, json!({}), "Path"),
        (COMPLETE, json!({}), "Path is required"),
        // Usercube.CSV.Complete's parser knows only its schema (PathIncremental, which the CSV
        // page documents, is in it without effect: see the csv settings unit tests).
        (
            COMPLETE,
            json!({"Path": "data/x.csv", "Pathincremental2": "data/x.csv"}),
            "unknown field `Pathincremental2`",
        ),
        (CSV, json!({"Path": "  "}), "empty"),
        (
            CSV,
            json!({"Path": "data/(.csv", "IsFileNameRegex": true}),
            "regular expression",
        ),
        (
            CSV,
            json!({"Path": "data/", "IsFileNameRegex": true}),
            "file-name pattern",
        ),
        (
            CSV,
            json!({"Path": "x", "Separator": ";;"}),
            "one character",
        ),
        (CSV, json!({"Path": "x", "Separator": "é"}), "ASCII"),
        (
            CSV,
            json!({"Path": "x", "Encoding": "EBCDIC"}),
            "not a known encoding",
        ),
        (
            CSV,
            json!({"Path": "x", "ValuesToTrim": ["'", ""]}),
            "ValuesToTrim[1]",
        ),
        (
            CSV,
            json!({"Path": "x", "ValuesToTrim": 3}),
            "ValuesToTrim: a list of strings, or one string",
        ),
        (
            CSV,
            json!({"Path": "x", "NumberOfLinesToSkip": -1}),
            "NumberOfLinesToSkip",
        ),
        (
            CSV,
            json!({"Path": "x", "IsFileNameRegex": "yes"}),
            "IsFileNameRegex",
        ),
    ];
    for (package, settings, expected) in cases {
        let e = f
            .instance(package, settings.clone())
            .err()
            .unwrap_or_else(|| panic!("{settings} should be refused"));
        assert!(matches!(e, PackageError::Settings { .. }), "{e}");
        let text = err_text(&e);
        assert!(text.contains(expected), "{settings}: {text}");
        assert!(text.contains(CONNECTION), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Schema and check connection

#[test]
fn schema_is_the_header() {
    let f = Fixture::new();
    f.file("data/hr.csv", fixture_bytes("people_windows1252.csv"));
    let instance = f
        .instance(
            COMPLETE,
            json!({
                "Path": "data/hr.csv",
                "Encoding": "Windows-1252",
                "Separator": ";",
                "NumberOfLinesToSkip": 1,
            }),
        )
        .expect("instance");
    let schema = block_on(instance.schema().expect("schema").schema()).expect("schema");
    assert_eq!(schema.tables.len(), 1);
    assert_eq!(schema.tables[0].name, CONNECTION);
    let columns: Vec<_> = schema.tables[0]
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["matricule", "nom", "prénom", "service"]);
    assert!(
        schema.tables[0]
            .columns
            .iter()
            .all(|c| c.value_type == idlink_model::config::ValueType::String && !c.multivalued)
    );
    // Only the header is read: a ragged or badly encoded body does not matter.
    f.file("data/h.csv", b"a,b\n1\n\xFF\n");
    let instance = f
        .instance(CSV, json!({"Path": "data/h.csv"}))
        .expect("instance");
    let schema = block_on(instance.schema().expect("schema").schema()).expect("schema");
    assert_eq!(schema.tables[0].columns.len(), 2);
    // An incremental-only connection reads its incremental file's header.
    f.file("data/delta.csv", "id,Command\n");
    let instance = f
        .instance(CSV, json!({"PathIncremental": "data/delta.csv"}))
        .expect("instance");
    let schema = block_on(instance.schema().expect("schema").schema()).expect("schema");
    assert_eq!(schema.tables[0].columns[1].name, "Command");
    // Empty file.
    f.file("data/e.csv", "");
    let instance = f
        .instance(CSV, json!({"Path": "data/e.csv"}))
        .expect("instance");
    let e = block_on(instance.schema().expect("schema").schema()).expect_err("empty");
    assert!(err_text(&e).contains("empty file: no header"));
}

#[test]
fn check_connection_says_what_is_readable() {
    let f = Fixture::new();
    let path = f.file("data/people.csv", "id,name\n1,a\n");
    f.file("data/delta.csv", "id\n");
    let instance = f
        .instance(
            CSV,
            json!({"Path": "data/people.csv", "PathIncremental": "data/delta.csv"}),
        )
        .expect("instance");
    let reached = block_on(
        instance
            .check_connection()
            .expect("check")
            .check_connection(),
    )
    .expect("readable");
    let canonical = path.canonicalize().expect("canonical");
    let delta = f
        .base()
        .join("data/delta.csv")
        .canonicalize()
        .expect("canonical");
    assert_eq!(
        reached,
        format!(
            "readable: {} (12 bytes); readable: {} (3 bytes)",
            canonical.display(),
            delta.display()
        )
    );
    let instance = f
        .instance(CSV, json!({"Path": "data/missing.csv"}))
        .expect("instance");
    let e = block_on(
        instance
            .check_connection()
            .expect("check")
            .check_connection(),
    )
    .expect_err("missing");
    assert!(matches!(e, PackageError::Io { .. }), "{e}");
    assert!(err_text(&e).contains("missing.csv"));
    std::fs::create_dir(f.base().join("data/folder.csv")).expect("mkdir");
    let instance = f
        .instance(CSV, json!({"Path": "data/folder.csv"}))
        .expect("instance");
    let e = block_on(
        instance
            .check_connection()
            .expect("check")
            .check_connection(),
    )
    .expect_err("a folder");
    assert!(err_text(&e).contains("not a regular file"), "{e}");
}

#[tokio::test]
async fn runs_inside_a_tokio_runtime() {
    let f = Fixture::new();
    f.file("data/p.csv", "id\n1\n");
    let instance = f
        .instance(CSV, json!({"Path": "data/p.csv"}))
        .expect("instance");
    let staging = tempfile::tempdir().expect("staging");
    let mut out = ExportOutput::new(CONNECTION, staging.path());
    let request = ExportRequest {
        incremental: false,
        cookie: None,
        progress: &idlink_packages::api::NoProgress,
    };
    let outcome = instance
        .export()
        .expect("export")
        .export(&request, &mut out)
        .await
        .expect("export");
    assert!(!outcome.incremental);
    assert_eq!(out.finish().expect("finish")[0].rows, 1);
}

/// A stray quote closed by another further down takes the rows between into one value, as the
/// CSV rules read it: the export succeeds and says so in its notes, with the line; values
/// with line breaks of their own (an address) are not told.
#[test]
fn regression_values_that_swallow_rows_are_noted_with_their_lines() {
    let f = Fixture::new();
    let mut text = String::from("id,name,mail\n1,Ann,ann@x\n2,\"Bob,bob@x\n");
    for i in 3..40 {
        text += &format!("{i},Cy,cy{i}@x\n");
    }
    text += "40,Dee\",dee@x\n41,\"Eve\n42,Fay,fay@x\n43,Gus\",gus@x\n44,Hal,hal@x\n";
    f.file("data/stray.csv", &text);
    let (table, outcome) = f
        .export_with(CSV, json!({"Path": "data/stray.csv"}), false, None)
        .expect("read as the CSV rules say");
    assert_eq!(table.lines().count(), 1 + 1 + 39 + 3 + 1, "{table}");
    assert_eq!(
        outcome.notes,
        [
            "2 quoted values hold 38 lines that look like rows of their own (stray.csv:3, stray.csv:42) (as many separators as the header): a quote left open and closed further down takes the rows between into one value, so they are not exported as rows; check the quotes (a quote inside a quoted value is written twice: \"\")"
        ]
    );

    // Their lines are the file's, with lines skipped, blank lines and CRLF line ends.
    f.file(
        "data/crlf.csv",
        "junk line\r\nid,name,mail\r\n\r\n1,\"Ann\r\n2,Bob,bob@x\r\n3,Cy\",cy@x\r\n\r\n\r\n4,\"Dee\r\n5,Eve,eve@x\r\n6,Fay\",fay@x\r\n",
    );
    let (_, outcome) = f
        .export_with(
            CSV,
            json!({"Path": "data/crlf.csv", "NumberOfLinesToSkip": 1}),
            false,
            None,
        )
        .expect("exports");
    assert!(
        outcome.notes[0].starts_with(
            "2 quoted values hold 2 lines that look like rows of their own (crlf.csv:4, crlf.csv:9)"
        ),
        "{:?}",
        outcome.notes
    );

    // Line breaks in values, and separators in them, but no line like a row: nothing told.
    f.file(
        "data/addresses.csv",
        "id,name,address\n1,Ann,\"12 Main St\nSpringfield, IL\"\n2,Bob,\"a, b\nc\"\n",
    );
    let (_, outcome) = f
        .export_with(CSV, json!({"Path": "data/addresses.csv"}), false, None)
        .expect("exports");
    assert!(outcome.notes.is_empty(), "{:?}", outcome.notes);
}
