//! The identity store from the command line: where it is (`--database`), opening it, and
//! `idlink connections`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use idlink_engine::snapshots::{
    ConnectionView, NO_SCHEMA, SchemaStatus, connection_views, show_time,
};
use idlink_packages::Registry;
use idlink_store::{Location, Store};
use tokio::runtime::Runtime;

use crate::Global;

/// Where the store is: `--database`, IDLINK_DATABASE, or `<work>/idlink.db`.
pub fn location(g: &Global) -> anyhow::Result<Location> {
    match &g.database {
        Some(d) => Ok(Location::parse(d)?),
        None => Ok(Location::default_in(&g.work)),
    }
}

/// Opens (or creates) the store.
pub fn open(rt: &Runtime, g: &Global) -> anyhow::Result<Store> {
    let location = location(g)?;
    let store = rt.block_on(Store::open(&location))?;
    tracing::info!(store = %location, "store opened");
    Ok(store)
}

/// Opens the store if there is one; creates nothing.
pub fn open_existing(rt: &Runtime, g: &Global) -> anyhow::Result<Option<Store>> {
    let location = location(g)?;
    Ok(rt.block_on(Store::open_existing(&location))?)
}

#[derive(Debug, clap::Args)]
pub struct ConnectionsArgs {
    /// Only the connections of this connector.
    #[arg(long, value_name = "ID")]
    connector: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// `idlink connections`: each connection with its connector, package, capabilities and schema
/// state. Reads the store if there is one (creates none).
pub fn connections(rt: &Runtime, g: &Global, args: &ConnectionsArgs) -> anyhow::Result<ExitCode> {
    let checked = crate::check::load(g)?;
    if !checked.is_valid() {
        eprintln!(
            "warning: the configuration has {} errors (see `idlink check`); listing what it declares",
            checked.diagnostics.errors()
        );
    }
    let states = match open_existing(rt, g)? {
        Some(store) => rt.block_on(store.schema_states())?,
        None => Vec::new(),
    };
    let views = match connection_views(
        &checked,
        &Registry::new(),
        &states,
        args.connector.as_deref(),
    ) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let out = std::io::stdout().lock();
    match args.format {
        Format::Text => print_text(out, &views),
        Format::Json => print_json(out, &views),
    }
    .context("cannot write the list")?;
    Ok(ExitCode::SUCCESS)
}

fn capabilities(v: &ConnectionView) -> String {
    let c = v.capabilities;
    let list: Vec<&str> = [
        (c.export, "export"),
        (c.incremental, "incremental"),
        (c.fulfill, "fulfill"),
        (c.schema, "schema"),
    ]
    .into_iter()
    .filter_map(|(yes, name)| yes.then_some(name))
    .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The schema state of `connection` in words.
fn schema_text(connection: &str, s: &SchemaStatus) -> String {
    match s {
        SchemaStatus::NoSchema => NO_SCHEMA.to_string(),
        SchemaStatus::NeverRefreshed => {
            format!("never refreshed (run `idlink refresh-schema --connection {connection}`)")
        }
        SchemaStatus::Refreshed {
            at,
            tables,
            columns,
        } => format!(
            "refreshed {} ({}, {})",
            show_time(at),
            plural(*tables, "table", "tables"),
            plural(*columns, "column", "columns")
        ),
        SchemaStatus::Failed {
            at,
            message,
            last_success,
        } => format!(
            "refresh failed {}: {message}{}",
            show_time(at),
            match last_success {
                Some(t) => format!(" (last good snapshot {} kept)", show_time(t)),
                None => " (no good snapshot yet)".into(),
            }
        ),
    }
}

fn print_text(mut out: impl Write, views: &[ConnectionView]) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = views
        .iter()
        .map(|v| {
            [
                v.connection.clone(),
                v.connector.clone(),
                if v.available {
                    v.package.clone()
                } else {
                    format!("{} (not available in this build)", v.package)
                },
                capabilities(v),
                schema_text(&v.connection, &v.schema),
            ]
        })
        .collect();
    let header = [
        "connection",
        "connector",
        "package",
        "capabilities",
        "schema",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(out, "{}", line(r.each_ref().map(String::as_str)))?;
    }
    Ok(())
}

fn print_json(mut out: impl Write, views: &[ConnectionView]) -> std::io::Result<()> {
    use serde_json::json;
    let list: Vec<serde_json::Value> = views
        .iter()
        .map(|v| {
            let schema = match &v.schema {
                SchemaStatus::NoSchema => json!({"state": "none", "message": NO_SCHEMA}),
                SchemaStatus::NeverRefreshed => json!({"state": "never-refreshed"}),
                SchemaStatus::Refreshed {
                    at,
                    tables,
                    columns,
                } => json!({
                    "state": "refreshed",
                    "refreshedAt": show_time(at),
                    "tables": tables,
                    "columns": columns,
                }),
                SchemaStatus::Failed {
                    at,
                    message,
                    last_success,
                } => json!({
                    "state": "failed",
                    "failedAt": show_time(at),
                    "message": message,
                    "refreshedAt": last_success.as_ref().map(show_time),
                }),
            };
            let c = v.capabilities;
            json!({
                "connection": v.connection,
                "connector": v.connector,
                "package": v.package,
                "available": v.available,
                "capabilities": {
                    "export": c.export,
                    "incremental": c.incremental,
                    "fulfill": c.fulfill,
                    "schema": c.schema,
                },
                "schema": schema,
            })
        })
        .collect();
    serde_json::to_writer_pretty(&mut out, &list)?;
    writeln!(out)
}
