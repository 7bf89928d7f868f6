//! Exports the result of one SQL query to a CSV file, as `idlink export` would: for benchmarks
//! and manual checks.
//!
//! ```text
//! cargo run --release -p idlink-packages --example export_sql -- \
//!     CONNECTION_STRING 'SELECT ...' OUTPUT_DIR [PACKAGE_ID]
//! ```
//! The connection is named `bench`; the table is written to `OUTPUT_DIR/bench.csv`. The package
//! defaults to `Usercube.SQL@0000001` (the kind of database comes from the URL's scheme).

mod bench;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args.len() > 4 {
        eprintln!("usage: export_sql CONNECTION_STRING SQL OUTPUT_DIR [PACKAGE_ID]");
        return ExitCode::from(2);
    }
    let (url, sql, dir) = (&args[0], &args[1], std::path::Path::new(&args[2]));
    let package_id = args.get(3).map_or("Usercube.SQL@0000001", String::as_str);
    let settings = serde_json::json!({ "ConnectionString": url, "SqlCommand": sql, "Timeout": 0 });
    bench::export(package_id, settings, Vec::new(), dir)
}
