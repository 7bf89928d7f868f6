//! Exports a directory subtree with the LDAP package, as `idlink export` would: for benchmarks
//! and manual checks.
//!
//! ```text
//! IDLINK_LDAP_PASSWORD=... cargo run --release -p idlink-packages --example export_ldap -- \
//!     HOST:PORT BIND_DN BASE_DN FILTER OUTPUT_DIR [ATTRIBUTES] [LINKS]
//! ```
//! The connection is named `bench`, uses PagedResult (1000 per page), and writes
//! `OUTPUT_DIR/bench_entries.csv` plus one link table per link attribute. `ATTRIBUTES` (comma
//! separated) plays the mapping's columns of `bench_entries`, `LINKS` the mapped link tables;
//! without them every attribute is exported (after a first, types-only pass).

mod bench;

use std::process::ExitCode;

use idlink_packages::api::MappedTable;

fn list(arg: Option<&String>) -> Vec<String> {
    arg.map(|a| {
        a.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 || args.len() > 7 {
        eprintln!(
            "usage: IDLINK_LDAP_PASSWORD=... export_ldap HOST:PORT BIND_DN BASE_DN FILTER OUTPUT_DIR [ATTRIBUTES] [LINKS]"
        );
        return ExitCode::from(2);
    }
    let password = std::env::var("IDLINK_LDAP_PASSWORD").unwrap_or_default();
    let dir = std::path::Path::new(&args[4]);
    let attributes = list(args.get(5));
    let links = list(args.get(6));
    let mut mapped = Vec::new();
    if !attributes.is_empty() {
        let mut columns = vec!["dn".to_string()];
        columns.extend(attributes);
        mapped.push(MappedTable {
            name: "bench_entries".into(),
            suffix: Some("entries".into()),
            columns,
        });
        for l in links {
            mapped.push(MappedTable {
                name: format!("bench_{l}"),
                suffix: Some(l.clone()),
                columns: vec!["dn".into(), l],
            });
        }
    }
    let settings = serde_json::json!({
        "Servers": [{
            "Server": args[0],
            "AuthType": "Basic",
            "Login": args[1],
            "Password": password,
            "Controls": ["PagedResult"],
        }],
        "Tables": [{"Table": "entries", "BaseDN": args[2], "Filter": args[3], "Scope": "Subtree"}],
        "TimeOut": 0,
    });
    bench::export("Usercube.LDAP@0000001", settings, mapped, dir)
}
