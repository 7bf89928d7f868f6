//! Exports the result of one SQL query to a CSV file, as `idlink export` would: for benchmarks
//! and manual checks.
//!
//! ```text
//! cargo run --release -p idlink-packages --example export_sql -- \
//!     CONNECTION_STRING 'SELECT ...' OUTPUT_DIR [PACKAGE_ID]
//! ```
//! The connection is named `bench`; the table is written to `OUTPUT_DIR/bench.csv`. The package
//! defaults to `Usercube.SQL@0000001` (the kind of database comes from the URL's scheme).

use std::process::ExitCode;
use std::time::Instant;

use idlink_model::package::PackageCatalog;
use idlink_packages::api::{Environment, ExportRequest, NoProgress};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;
use idlink_packages::{Registry, instantiate};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args.len() > 4 {
        eprintln!("usage: export_sql CONNECTION_STRING SQL OUTPUT_DIR [PACKAGE_ID]");
        return ExitCode::from(2);
    }
    let (url, sql, dir) = (&args[0], &args[1], std::path::Path::new(&args[2]));
    let package_id = args.get(3).map_or("Usercube.SQL@0000001", String::as_str);
    let registry = Registry::new();
    let Some(package) = registry.get(package_id) else {
        eprintln!("unknown package {package_id}");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let env = Environment {
        connection: "bench".to_string(),
        base_dir: cwd.clone(),
        roots: SourceRoots::new(&cwd, &["."]),
        mapped_tables: Vec::new(),
    };
    let settings = serde_json::json!({ "ConnectionString": url, "SqlCommand": sql, "Timeout": 0 });
    let start = Instant::now();
    let result = runtime.block_on(async {
        let instance = instantiate(package, settings, env)?;
        let export =
            instance
                .export()
                .ok_or_else(|| idlink_packages::PackageError::Unsupported {
                    package: package_id.to_string(),
                    capability: "export",
                })?;
        let mut out = ExportOutput::new("bench", dir);
        let request = ExportRequest {
            incremental: false,
            cookie: None,
            progress: &NoProgress,
        };
        export.export(&request, &mut out).await?;
        let exported = start.elapsed();
        let tables = out.finish()?;
        Ok::<_, idlink_packages::PackageError>((tables, exported))
    });
    match result {
        Ok((tables, exported)) => {
            for t in tables {
                println!(
                    "{}: {} rows, {} bytes; exported in {:.3} s, durable (fsync) at {:.3} s",
                    t.path.display(),
                    t.rows,
                    t.bytes,
                    exported.as_secs_f64(),
                    start.elapsed().as_secs_f64()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("export failed: {e}");
            ExitCode::FAILURE
        }
    }
}
