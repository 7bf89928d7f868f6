//! Shared by the benchmark examples: a package instantiated the way the engine does it (a
//! connection named `bench`, the current folder as settings folder and source root), on a
//! current-thread runtime.

#![allow(dead_code)] // each example uses the part it needs

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use idlink_model::package::{PackageCatalog, PackageInfo};
use idlink_packages::api::{Environment, ExportRequest, Instance, MappedTable, NoProgress};
use idlink_packages::output::ExportOutput;
use idlink_packages::paths::SourceRoots;
use idlink_packages::{PackageError, Registry, instantiate};

/// The connection name of every benchmark; tables are `bench.csv` or `bench_<suffix>.csv`.
pub const CONNECTION: &str = "bench";

/// A package and a runtime to run it on; prints why not.
pub fn setup(
    package_id: &str,
) -> Result<(&'static PackageInfo, tokio::runtime::Runtime), ExitCode> {
    static REGISTRY: Registry = Registry::new();
    let Some(package) = REGISTRY.get(package_id) else {
        eprintln!("unknown package {package_id}");
        return Err(ExitCode::from(2));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        })?;
    Ok((package, runtime))
}

/// The package with `settings`, as `open_connection` builds it.
pub fn open(
    package: &PackageInfo,
    settings: serde_json::Value,
    mapped_tables: Vec<MappedTable>,
) -> Result<Box<dyn Instance>, PackageError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let env = Environment {
        connection: CONNECTION.to_string(),
        base_dir: cwd.clone(),
        roots: SourceRoots::new(&cwd, &["."]),
        mapped_tables,
    };
    instantiate(package, settings, env)
}

/// Exports into `dir`, then prints each table with the time to export and to make it durable.
pub fn export(
    package_id: &str,
    settings: serde_json::Value,
    mapped_tables: Vec<MappedTable>,
    dir: &Path,
) -> ExitCode {
    let (package, runtime) = match setup(package_id) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let start = Instant::now();
    let result = runtime.block_on(async {
        let instance = open(package, settings, mapped_tables)?;
        let export = instance.export().ok_or_else(|| PackageError::Unsupported {
            package: package_id.to_string(),
            capability: "export",
        })?;
        let mut out = ExportOutput::new(CONNECTION, dir);
        let request = ExportRequest {
            incremental: false,
            cookie: None,
            progress: &NoProgress,
        };
        export.export(&request, &mut out).await?;
        let exported = start.elapsed();
        Ok::<_, PackageError>((out.finish()?, exported))
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
