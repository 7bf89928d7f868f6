//! `idlink export`, `idlink refresh-schema` and `idlink check-connection`: the commands that
//! talk to a managed system through one connection.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use idlink_engine::{EngineError, ExportOptions, OpenConnection, open_connection, run_export};
use idlink_model::Checked;
use idlink_packages::api::{ConnectionSchema, Progress, value_type_name};

use crate::Global;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The connection to export.
    #[arg(long, value_name = "ID")]
    connection: String,
    /// Force a complete export even when an incremental cookie exists.
    #[arg(long)]
    ignore_cookies: bool,
    /// Write the tables here instead of <work>/ExportOutput.
    #[arg(long, value_name = "DIR")]
    output: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// The connection whose schema to read.
    #[arg(long, value_name = "ID")]
    connection: String,
    /// Output format; `xml` prints <ConnectionTable> elements to paste into the configuration.
    #[arg(long, value_enum, default_value_t = SchemaFormat::Text)]
    format: SchemaFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchemaFormat {
    Text,
    Json,
    Xml,
}

#[derive(Debug, clap::Args)]
pub struct CheckConnectionArgs {
    /// The connection to test.
    #[arg(long, value_name = "ID")]
    connection: String,
}

/// Loads the configuration; refuses to run on one with errors (they are printed).
fn load_valid(g: &Global) -> anyhow::Result<Result<Checked, ExitCode>> {
    let checked = crate::check::load(g)?;
    if checked.is_valid() {
        return Ok(Ok(checked));
    }
    let mut err = std::io::stderr().lock();
    for d in checked.diagnostics.iter().filter(|d| d.is_error()) {
        writeln!(err, "{d}")?;
    }
    writeln!(
        err,
        "error: the configuration has {} errors; fix them (see `idlink check`) before running it",
        checked.diagnostics.errors()
    )?;
    Ok(Err(ExitCode::from(1)))
}

/// Opens the connection (settings checked and decrypted); prints why not and returns exit 1.
fn open<'c>(checked: &'c Checked, id: &str, g: &Global) -> Result<OpenConnection<'c>, ExitCode> {
    open_connection(checked, id, &g.config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })
}

/// A message with the connection's secret values replaced by `**REDACTED**`.
fn shown(open: &OpenConnection<'_>, text: &str) -> String {
    idlink_engine::secured::redact(text, &open.secrets)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn export(g: &Global, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let checked = match load_valid(g)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let open = match open(&checked, &args.connection, g) {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let progress = CliProgress::new(g.quiet);
    let result = runtime()?.block_on(async {
        let opts = ExportOptions {
            work_dir: &g.work,
            output_dir: args.output.as_deref(),
            ignore_cookies: args.ignore_cookies,
            progress: &progress,
        };
        run_export(&open, &opts).await
    });
    progress.finish();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: export of '{}' failed: {}",
                args.connection,
                shown(&open, &e.to_string())
            );
            if matches!(
                e,
                EngineError::Package(_) | EngineError::Transform(_) | EngineError::Io { .. }
            ) {
                eprintln!("    the previous tables and cookie are unchanged");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let reports = g.work.join("Reports");
    std::fs::create_dir_all(&reports)
        .with_context(|| format!("cannot create '{}'", reports.display()))?;
    let file = reports.join(format!("export-{}.json", report.connection));
    let json = serde_json::to_vec_pretty(&report)?;
    idlink_packages::output::write_atomic(&file, &json)
        .with_context(|| format!("cannot write '{}'", file.display()))?;
    if !g.quiet {
        let mut out = std::io::stdout().lock();
        let mode = if report.incremental {
            "incremental"
        } else {
            "complete"
        };
        writeln!(
            out,
            "exported {} ({}, {mode}): {} rows, {} bytes in {:.2} s",
            report.connection,
            report.package,
            report.rows(),
            report.bytes(),
            report.duration.as_secs_f64()
        )?;
        for t in &report.tables {
            writeln!(
                out,
                "  {:<32} {:>10} rows {:>12} bytes  {}",
                t.name,
                t.rows,
                t.bytes,
                t.file.display()
            )?;
        }
        if let Some(c) = &report.cookie {
            writeln!(out, "  cookie: {}", c.display())?;
        }
        writeln!(out, "  report: {}", file.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn refresh_schema(g: &Global, args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    let checked = match load_valid(g)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let open = match open(&checked, &args.connection, g) {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let result = runtime()?.block_on(async {
        let Some(schema) = open.instance.schema() else {
            return Err(EngineError::Unsupported {
                connection: open.connection.id.value.clone(),
                package: open.package.id.to_string(),
                capability: "describe its schema: there is no schema for this connection",
            });
        };
        Ok((
            open.connection.id.value.clone(),
            open.package.id,
            schema.schema().await?,
        ))
    });
    let (id, package, schema) = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: schema refresh of '{}' failed: {}",
                args.connection,
                shown(&open, &e.to_string())
            );
            return Ok(ExitCode::from(1));
        }
    };
    let text = match args.format {
        SchemaFormat::Text => schema_text(&id, package, &schema),
        SchemaFormat::Json => {
            let mut s = serde_json::to_string_pretty(
                &serde_json::json!({"connection": id, "package": package, "tables": schema.tables}),
            )?;
            s.push('\n');
            s
        }
        SchemaFormat::Xml => schema_xml(&id, &schema),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn schema_text(id: &str, package: &str, schema: &ConnectionSchema) -> String {
    let mut s = String::new();
    let n = schema.tables.len();
    let _ = writeln!(
        s,
        "{id} ({package}): {n} table{}",
        if n == 1 { "" } else { "s" }
    );
    for t in &schema.tables {
        let _ = writeln!(s, "  {}", t.name);
        for c in &t.columns {
            let mut notes = Vec::new();
            if let Some(st) = &c.source_type {
                notes.push(st.clone());
            }
            if c.multivalued {
                notes.push("multivalued".into());
            }
            match c.key {
                idlink_model::config::KeyType::Primary => notes.push("primary key".into()),
                idlink_model::config::KeyType::Unique => notes.push("unique key".into()),
                idlink_model::config::KeyType::None => {}
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            let _ = writeln!(
                s,
                "    {:<32} {}{notes}",
                c.name,
                value_type_name(c.value_type)
            );
        }
    }
    s
}

fn xml_escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn schema_xml(id: &str, schema: &ConnectionSchema) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ConfigurationFile xmlns=\"urn:schemas-usercube-com:configuration\">\n",
    );
    for t in &schema.tables {
        let _ = writeln!(
            s,
            "  <ConnectionTable Connection=\"{}\" Identifier=\"{}\">",
            xml_escape(id),
            xml_escape(&t.name)
        );
        for c in &t.columns {
            let _ = write!(s, "    <Column Identifier=\"{}\"", xml_escape(&c.name));
            if c.value_type != idlink_model::config::ValueType::String {
                let _ = write!(s, " ValueType=\"{}\"", value_type_name(c.value_type));
            }
            if c.multivalued {
                s.push_str(" IsMultivalued=\"true\"");
            }
            match c.key {
                idlink_model::config::KeyType::Primary => s.push_str(" KeyType=\"1\""),
                idlink_model::config::KeyType::Unique => s.push_str(" KeyType=\"2\""),
                idlink_model::config::KeyType::None => {}
            }
            s.push_str(" />\n");
        }
        s.push_str("  </ConnectionTable>\n");
    }
    s.push_str("</ConfigurationFile>\n");
    s
}

pub fn check_connection(g: &Global, args: &CheckConnectionArgs) -> anyhow::Result<ExitCode> {
    let checked = match load_valid(g)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let open = match open(&checked, &args.connection, g) {
        Ok(o) => o,
        Err(code) => {
            println!(
                "{}: not reachable: the connection cannot be opened (see above)",
                args.connection
            );
            return Ok(code);
        }
    };
    let result = runtime()?.block_on(async {
        let Some(check) = open.instance.check_connection() else {
            return Err(EngineError::Unsupported {
                connection: open.connection.id.value.clone(),
                package: open.package.id.to_string(),
                capability: "check its connection",
            });
        };
        Ok(check.check_connection().await?)
    });
    match result {
        Ok(what) => {
            println!("{}: reachable: {}", args.connection, shown(&open, &what));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!(
                "{}: not reachable: {}",
                args.connection,
                shown(&open, &e.to_string())
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// A progress bar on a terminal; plain lines every 100,000 rows otherwise.
struct CliProgress {
    bar: Option<indicatif::ProgressBar>,
    total: AtomicU64,
    logged: AtomicU64,
    table: Mutex<String>,
    quiet: bool,
}

const LOG_EVERY: u64 = 100_000;

impl CliProgress {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {msg} {human_pos} rows ({per_sec}, {elapsed})",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        CliProgress {
            bar,
            total: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            table: Mutex::new(String::new()),
            quiet,
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for CliProgress {
    fn rows(&self, table: &str, rows: u64) {
        let total = self.total.fetch_add(rows, Ordering::Relaxed) + rows;
        if let Some(bar) = &self.bar {
            if let Ok(mut t) = self.table.lock()
                && *t != table
            {
                table.clone_into(&mut t);
                bar.set_message(table.to_string());
            }
            bar.set_position(total);
        } else if !self.quiet && total / LOG_EVERY > self.logged.load(Ordering::Relaxed) {
            self.logged.store(total / LOG_EVERY, Ordering::Relaxed);
            eprintln!("{table}: {total} rows");
        }
    }

    fn phase(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => tracing::info!("{message}"),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct FulfillArgs {
    /// The connection that applies the orders.
    #[arg(long, value_name = "ID")]
    connection: String,
    /// The orders, as SPEC §6's JSON: {"ProvisioningOrdersList": [...]}.
    #[arg(long, value_name = "FILE")]
    orders: std::path::PathBuf,
    /// Print the exact operations that would be sent, and touch nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write one result per order here (JSON) instead of standard output.
    #[arg(long, value_name = "FILE")]
    results: Option<std::path::PathBuf>,
}

/// `idlink fulfill`: exit 0 when every order was executed, 1 when any errored or the batch failed.
pub fn fulfill(g: &Global, args: &FulfillArgs) -> anyhow::Result<ExitCode> {
    let checked = match load_valid(g)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let bytes = std::fs::read(&args.orders)
        .with_context(|| format!("cannot read orders file '{}'", args.orders.display()))?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let mut orders: idlink_packages::api::OrdersFile =
        match serde_path_to_error::deserialize(&mut de) {
            Ok(o) => o,
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                eprintln!(
                    "error: {}:{}:{}: the orders file is not valid at {path}: {inner}",
                    args.orders.display(),
                    inner.line(),
                    inner.column()
                );
                return Ok(ExitCode::from(2));
            }
        };
    idlink_engine::with_mapping_defaults(&checked.config, &mut orders.orders);
    let open = match open(&checked, &args.connection, g) {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let progress = CliProgress::new(g.quiet);
    let result = runtime()?.block_on(idlink_engine::run_fulfill(
        &open,
        &orders.orders,
        args.dry_run,
        &progress,
    ));
    progress.finish();
    let results = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: fulfill through '{}' failed: {}",
                args.connection,
                shown(&open, &e.to_string())
            );
            return Ok(ExitCode::from(1));
        }
    };
    let json = serde_json::to_string_pretty(
        &serde_json::json!({ "dryRun": args.dry_run, "results": results }),
    )?;
    let json = shown(&open, &json).into_bytes();
    match &args.results {
        Some(file) => idlink_packages::output::write_atomic(file, &json)
            .with_context(|| format!("cannot write '{}'", file.display()))?,
        None if !args.dry_run => {
            let mut out = std::io::stdout().lock();
            out.write_all(&json)?;
            writeln!(out)?;
        }
        None => {}
    }
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        for r in &results {
            let id = r.id.clone().unwrap_or_else(|| format!("#{}", r.index));
            writeln!(out, "order {id}:")?;
            for op in &r.operations {
                writeln!(out, "  {}", shown(&open, op))?;
            }
        }
    }
    let errored = results
        .iter()
        .filter(|r| r.state == idlink_packages::api::OrderState::Errored)
        .count();
    if !g.quiet {
        eprintln!(
            "{} orders: {} executed, {errored} errored{}",
            results.len(),
            results.len() - errored,
            if args.dry_run {
                " (dry run: nothing sent)"
            } else {
                ""
            }
        );
    }
    Ok(if errored == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
