//! Exports one CSV file with the `Usercube.CSV` package, as the export runner would, and
//! prints what it did. Used by `bench/export_csv.sh`.
//!
//! ```text
//! cargo run --release -p idlink-packages --example export_csv -- FILE OUTPUT_DIR [ENCODING [SEPARATOR]]
//! ```
//!
//! The file's folder is the only source root; the table is staged in `OUTPUT_DIR` (flushed and
//! synced, as `ExportOutput::finish` does for the runner). Prints one line:
//! `rows=N input_bytes=N output_bytes=N seconds=S`.

use std::path::PathBuf;
use std::time::Instant;

use idlink_model::package::PackageCatalog;
use idlink_packages::api::{ExportRequest, NoProgress};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Environment, Registry};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("export_csv: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(file), Some(output)) = (args.first(), args.get(1)) else {
        return Err("usage: export_csv FILE OUTPUT_DIR [ENCODING [SEPARATOR]]".into());
    };
    let file = PathBuf::from(file).canonicalize()?;
    let folder = file.parent().ok_or("the file has no folder")?.to_path_buf();
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the file name is not UTF-8")?;
    let settings = serde_json::json!({
        "Path": name,
        "Encoding": args.get(2).map_or("UTF-8", String::as_str),
        "Separator": args.get(3).map_or(",", String::as_str),
    });
    let env = Environment {
        connection: "Bench".to_string(),
        roots: SourceRoots::new(&folder, &["."]),
        base_dir: folder,
        mapped_tables: Vec::new(),
    };
    let registry = Registry::new();
    let info = registry
        .get("Usercube.CSV@0000001")
        .ok_or("Usercube.CSV is not registered")?;
    let instance = idlink_packages::instantiate(info, settings, env)?;
    let export = instance.export().ok_or("the CSV package cannot export")?;

    let started = Instant::now();
    let mut out = ExportOutput::new("Bench", std::path::Path::new(output));
    let request = ExportRequest {
        incremental: false,
        cookie: None,
        progress: &NoProgress,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(export.export(&request, &mut out))?;
    let tables = out.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let table = tables.first().ok_or("no table written")?;
    println!(
        "rows={} input_bytes={} output_bytes={} seconds={seconds:.3}",
        table.rows,
        std::fs::metadata(&file)?.len(),
        table.bytes
    );
    Ok(())
}
