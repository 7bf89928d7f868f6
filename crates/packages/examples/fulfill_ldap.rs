//! Applies an orders file (SPEC §6 JSON) to a directory with the LDAP package, as
//! `idlink fulfill` would: for benchmarks and manual checks.
//!
//! ```text
//! IDLINK_LDAP_PASSWORD=... cargo run --release -p idlink-packages --example fulfill_ldap -- \
//!     HOST:PORT BIND_DN ORDERS_FILE [--dry-run] [--results FILE]
//! ```
//! Added orders without an objectClass get `inetOrgPerson`. Prints how many orders were
//! Executed and Errored (and the first errors), and writes the results as JSON with
//! `--results`.

mod bench;

use std::process::ExitCode;
use std::time::Instant;

use idlink_packages::api::{FulfillRequest, NoProgress, OrderState, OrdersFile};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!(
            "usage: IDLINK_LDAP_PASSWORD=... fulfill_ldap HOST:PORT BIND_DN ORDERS_FILE [--dry-run] [--results FILE]"
        );
        return ExitCode::from(2);
    }
    let dry_run = args.iter().any(|a| a == "--dry-run");
    let results_file = args
        .iter()
        .position(|a| a == "--results")
        .and_then(|i| args.get(i + 1));
    let password = std::env::var("IDLINK_LDAP_PASSWORD").unwrap_or_default();
    let orders: OrdersFile = match std::fs::read(&args[2])
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args[2]);
            return ExitCode::from(2);
        }
    };
    let package_id = "Usercube.LDAP@0000001";
    let (package, runtime) = match bench::setup(package_id) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let settings = serde_json::json!({
        "Servers": [{"Server": args[0], "AuthType": "Basic", "Login": args[1], "Password": password}],
        "Tables": [{"Table": "entries", "BaseDN": "", "Scope": "Base"}],
        "DefaultObjectClass": ["inetOrgPerson"],
        "TimeOut": 0,
    });
    let start = Instant::now();
    let result = runtime.block_on(async {
        let instance = bench::open(package, settings, Vec::new())?;
        let fulfill =
            instance
                .fulfill()
                .ok_or_else(|| idlink_packages::PackageError::Unsupported {
                    package: package_id.to_string(),
                    capability: "fulfill",
                })?;
        let request = FulfillRequest {
            orders: &orders.orders,
            dry_run,
            progress: &NoProgress,
        };
        fulfill.fulfill(&request).await
    });
    let results = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fulfill failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let errored: Vec<_> = results
        .iter()
        .filter(|r| r.state == OrderState::Errored)
        .collect();
    println!(
        "{} orders: {} executed, {} errored in {:.3} s{}",
        results.len(),
        results.len() - errored.len(),
        errored.len(),
        start.elapsed().as_secs_f64(),
        if dry_run { " (dry run)" } else { "" }
    );
    for r in errored.iter().take(5) {
        println!("order {}: {}", r.index, r.message);
    }
    if let Some(path) = results_file {
        let text = serde_json::to_string_pretty(&results).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if errored.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
