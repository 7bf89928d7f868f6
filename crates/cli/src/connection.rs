//! `idlink export`, `refresh-schema`, `check-connection` and `fulfill`: the commands that talk to
//! a managed system through one connection. They parse arguments, call the engine and print.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use idlink_engine::snapshots::{NO_SCHEMA, Refresh, show_time};
use idlink_engine::{CancellationToken, Engine, EngineError, ErrorKind, ExportOptions, Opened};
use idlink_packages::Registry;
use idlink_packages::api::{OrderState, Progress};
use tokio::runtime::Runtime;

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
    #[command(flatten)]
    which: SchemaWhich,
    /// Output format (with --connection); `xml` prints <ConnectionTable> elements to paste
    /// into the configuration.
    #[arg(long, value_enum, default_value_t = SchemaFormat::Text)]
    format: SchemaFormat,
}

/// One connection, or every connection of a connector.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct SchemaWhich {
    /// The connection whose schema to read.
    #[arg(long, value_name = "ID")]
    connection: Option<String>,
    /// Every connection of this connector ("Refresh all schemas"): one line per connection,
    /// continuing past failures.
    #[arg(long, value_name = "ID")]
    connector: Option<String>,
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

#[derive(Debug, clap::Args)]
pub struct FulfillArgs {
    /// The connection that applies the orders.
    #[arg(long, value_name = "ID")]
    connection: String,
    /// The orders, as SPEC §6's JSON: {"ProvisioningOrdersList": [...]}. Without it, the
    /// connection's Pending orders in the identity store are sent and their results recorded.
    #[arg(long, value_name = "FILE")]
    orders: Option<std::path::PathBuf>,
    /// Print the exact operations that would be sent, and touch nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write one result per order here (JSON) instead of standard output.
    #[arg(long, value_name = "FILE")]
    results: Option<std::path::PathBuf>,
}

/// Loads the configuration into an engine; refuses to run one with errors (they are printed).
pub(crate) fn engine(g: &Global) -> anyhow::Result<Result<Engine, ExitCode>> {
    let checked = crate::check::load(g)?;
    if !checked.is_valid() {
        let mut err = std::io::stderr().lock();
        for d in checked.diagnostics.iter().filter(|d| d.is_error()) {
            writeln!(err, "{d}")?;
        }
        writeln!(
            err,
            "error: the configuration has {} errors; fix them (see `idlink check`) before running it",
            checked.diagnostics.errors()
        )?;
        return Ok(Err(ExitCode::from(1)));
    }
    Ok(Ok(Engine::new(
        checked,
        Registry::new(),
        &g.config,
        &g.work,
    )))
}

/// Opens the connection (settings checked and decrypted); prints why not.
fn open(engine: &Engine, id: &str) -> Result<Opened, EngineError> {
    engine.open(id).inspect_err(|e| eprintln!("error: {e}"))
}

/// Exit code of a failed run: 130 when interrupted, else 1.
pub(crate) fn failure(e: &EngineError) -> ExitCode {
    if e.kind() == ErrorKind::Cancelled {
        ExitCode::from(130)
    } else {
        ExitCode::from(1)
    }
}

/// Prints why `what` (e.g. "export of") failed for the opened connection, secrets hidden.
fn report_failure(opened: &Opened, what: &str, e: &EngineError) {
    eprintln!(
        "error: {what} '{}' failed: {}",
        opened.id(),
        opened.redact(&e.to_string())
    );
}

/// Cancels `cancel` on SIGINT or SIGTERM (the run then cleans up and ends); a second signal
/// ends the process at once.
pub(crate) fn cancel_on_signals(rt: &Runtime, cancel: &CancellationToken) {
    let cancel = cancel.clone();
    crate::on_signals(rt, move || {
        crate::say(
            "interrupted: stopping and removing the staging folder (a second signal stops at once)",
        );
        cancel.cancel();
    });
}

pub fn export(rt: &Runtime, g: &Global, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let engine = match engine(g)? {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let opened = match open(&engine, &args.connection) {
        Ok(o) => o,
        Err(e) => {
            engine.record_failed_export(&args.connection, &e, &e.to_string());
            return Ok(failure(&e));
        }
    };
    let progress = Arc::new(CliProgress::new(g.quiet));
    let cancel = CancellationToken::new();
    cancel_on_signals(rt, &cancel);
    let opts = ExportOptions {
        output_dir: args.output.clone(),
        ignore_cookies: args.ignore_cookies,
        volatile: false,
    };
    let result = rt.block_on(opened.export(&opts, progress.clone(), &cancel));
    progress.finish();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            report_failure(&opened, "export of", &e);
            if e.nothing_committed() && !matches!(e, EngineError::Commit { .. }) {
                eprintln!(
                    "    nothing was committed: the tables and cookie are those of the previous export"
                );
            }
            return Ok(failure(&e));
        }
    };
    let (report_file, _) = idlink_engine::export::report_paths(engine.work_dir(), opened.id());
    let mut out = std::io::stdout().lock();
    for note in &report.notes {
        eprintln!("note: {note}");
    }
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
    if !g.quiet {
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
        let report_file = std::path::absolute(&report_file).unwrap_or(report_file);
        writeln!(out, "  report: {}", report_file.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `idlink refresh-schema`: reads the schema of one connection (`--connection`) or of every
/// connection of a connector (`--connector`) and records each outcome in the store. Exit 1 when
/// a refresh failed.
pub fn refresh_schema(rt: &Runtime, g: &Global, args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    let engine = match engine(g)? {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let store = crate::store::open(rt, g)?;
    if let Some(connector) = &args.which.connector {
        return refresh_connector(rt, &engine, &store, connector, g.quiet);
    }
    let Some(id) = &args.which.connection else {
        anyhow::bail!("give --connection ID or --connector ID");
    };
    let refresh = match rt.block_on(engine.refresh_schema_into(&store, id)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(failure(&e));
        }
    };
    let (id, package) = (refresh.connection.as_str(), refresh.package.as_str());
    match &refresh.outcome {
        Refresh::Refreshed { schema, .. } => {
            use idlink_engine::schema::{render_json, render_text, render_xml};
            let text = match args.format {
                SchemaFormat::Text => render_text(id, package, schema),
                SchemaFormat::Json => render_json(id, package, schema),
                SchemaFormat::Xml => render_xml(id, schema),
            };
            std::io::stdout()
                .lock()
                .write_all(refresh.redactor.redact(&text).as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Refresh::NoSchema => {
            println!("{id}: {NO_SCHEMA} (package {package} does not describe one)");
            Ok(ExitCode::SUCCESS)
        }
        Refresh::Failed { message, kind, .. } => {
            eprintln!("error: schema refresh of '{id}' failed: {message}");
            eprintln!(
                "    the failure is recorded in the store; the last good snapshot, if any, is kept"
            );
            Ok(if *kind == ErrorKind::Cancelled {
                ExitCode::from(130)
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// "Refresh all schemas": one line per connection; exit 1 if any failed.
fn refresh_connector(
    rt: &Runtime,
    engine: &Engine,
    store: &idlink_store::Store,
    connector: &str,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let results = match rt.block_on(engine.refresh_connector_schemas(store, connector, None)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(failure(&e));
        }
    };
    let mut out = std::io::stdout().lock();
    if results.is_empty() {
        writeln!(out, "connector '{connector}' has no connection")?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = results
        .iter()
        .map(|r| r.connection.len())
        .max()
        .unwrap_or(0);
    let (mut refreshed, mut failed, mut none) = (0, 0, 0);
    for r in &results {
        let what = match &r.outcome {
            Refresh::Refreshed { schema, at } => {
                refreshed += 1;
                let columns: usize = schema.tables.iter().map(|t| t.columns.len()).sum();
                let n = schema.tables.len();
                format!(
                    "refreshed: {n} table{}, {columns} column{} ({}, {})",
                    if n == 1 { "" } else { "s" },
                    if columns == 1 { "" } else { "s" },
                    r.package,
                    show_time(at)
                )
            }
            Refresh::NoSchema => {
                none += 1;
                NO_SCHEMA.to_string()
            }
            Refresh::Failed { message, .. } => {
                failed += 1;
                format!("failed: {message}")
            }
        };
        // One line per connection, whatever the message holds.
        let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
        writeln!(
            out,
            "{:<width$}  {}",
            r.connection,
            r.redactor.redact(&what)
        )?;
    }
    if !quiet {
        eprintln!(
            "connector '{connector}': {} connection{}: {refreshed} refreshed, {failed} failed, {none} without schema",
            results.len(),
            if results.len() == 1 { "" } else { "s" }
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn check_connection(
    rt: &Runtime,
    g: &Global,
    args: &CheckConnectionArgs,
) -> anyhow::Result<ExitCode> {
    let engine = match engine(g)? {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let opened = match open(&engine, &args.connection) {
        Ok(o) => o,
        Err(e) => {
            println!(
                "{}: not reachable: the connection cannot be opened (see above)",
                args.connection
            );
            return Ok(failure(&e));
        }
    };
    match rt.block_on(opened.check_connection()) {
        Ok(what) => {
            println!("{}: reachable: {}", opened.id(), opened.redact(&what));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!(
                "{}: not reachable: {}",
                opened.id(),
                opened.redact(&e.to_string())
            );
            Ok(failure(&e))
        }
    }
}

/// `idlink fulfill`: exit 0 when every order was executed (or, in a dry run, would be), 1 when
/// any errored or the batch failed.
pub fn fulfill(rt: &Runtime, g: &Global, args: &FulfillArgs) -> anyhow::Result<ExitCode> {
    let Some(orders_file) = &args.orders else {
        if args.results.is_some() {
            eprintln!(
                "error: --results goes with --orders; the store records the results of its orders (see `idlink orders`)"
            );
            return Ok(ExitCode::from(2));
        }
        return crate::provision::fulfill_store(rt, g, &args.connection, args.dry_run);
    };
    let engine = match engine(g)? {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let orders = match idlink_engine::orders::load(orders_file) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let opened = match open(&engine, &args.connection) {
        Ok(o) => o,
        Err(e) => return Ok(failure(&e)),
    };
    let progress = Arc::new(CliProgress::new(g.quiet));
    let result = rt.block_on(opened.fulfill(orders, args.dry_run, progress.clone()));
    progress.finish();
    let results = match result {
        Ok(r) => r,
        Err(e) => {
            report_failure(&opened, "fulfill through", &e);
            return Ok(failure(&e));
        }
    };
    let json = serde_json::to_string_pretty(
        &serde_json::json!({ "dryRun": args.dry_run, "results": results }),
    )?;
    let json = opened.redact(&json).into_bytes();
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
            let id = r.id.clone().unwrap_or_else(|| format!("#{}", r.index + 1));
            match r.state {
                OrderState::Executed => writeln!(out, "order {id}:")?,
                OrderState::Errored => {
                    writeln!(out, "order {id}: would fail: {}", opened.redact(&r.message))?
                }
                OrderState::Transmitted => writeln!(
                    out,
                    "order {id}: would be handed over: {}",
                    opened.redact(&r.message)
                )?,
            }
            for op in &r.operations {
                writeln!(out, "  {}", opened.redact(op))?;
            }
        }
    }
    let errored = results
        .iter()
        .filter(|r| r.state == OrderState::Errored)
        .count();
    let summary = if args.dry_run {
        format!(
            "{} orders: {} would be executed, {errored} would fail (dry run: nothing sent)",
            results.len(),
            results.len() - errored
        )
    } else {
        format!(
            "{} orders: {} executed, {errored} errored",
            results.len(),
            results.len() - errored
        )
    };
    eprintln!("{summary}");
    Ok(if errored == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A progress bar on a terminal; plain lines every 100,000 rows otherwise.
pub(crate) struct CliProgress {
    bar: Option<indicatif::ProgressBar>,
    total: AtomicU64,
    logged: AtomicU64,
    table: Mutex<String>,
    quiet: bool,
}

const LOG_EVERY: u64 = 100_000;

impl CliProgress {
    pub(crate) fn new(quiet: bool) -> Self {
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

    /// Prints a line above the bar (or on its own without one).
    pub(crate) fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
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
