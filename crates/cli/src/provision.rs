//! `idlink provision`, `idlink orders`, `idlink tickets`, `idlink run-job` and `idlink fulfill`
//! from the store: they parse arguments, call the engine or the store and print.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use idlink_engine::dispatch::{DispatchOptions, DispatchReport};
use idlink_engine::jobs::{JobOptions, JobReport};
use idlink_engine::provision::{ProvisionOptions, ProvisionReport};
use idlink_engine::{CancellationToken, Engine, EngineError};
use idlink_store::{OrderFilter, OrderState, Store};
use tokio::runtime::Runtime;

use crate::Global;
use crate::connection::{CliProgress, cancel_on_signals, engine, failure};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    /// Only this resource type (repeat for several) [default: all of them].
    #[arg(long = "resource-type", value_name = "ID")]
    resource_types: Vec<String>,
    /// Compute and print the orders; store nothing.
    #[arg(long)]
    dry_run: bool,
    /// Store the orders even when a provisioning threshold is exceeded.
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct OrdersArgs {
    /// Only orders in this state: Pending, Transmitted, Executed, Errored, Verified.
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Only orders of this resource type.
    #[arg(long = "resource-type", value_name = "ID")]
    resource_type: Option<String>,
    /// At most this many (the newest).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct TicketsArgs {
    #[command(subcommand)]
    command: TicketsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TicketsCommand {
    /// The open tickets (orders handed to a Usercube.Manual connection), oldest first.
    List {
        /// Closed tickets too.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Close a ticket: done (Executed), or failed with --error (Errored).
    Complete {
        /// The ticket's number (its order's id).
        id: i64,
        /// It could not be done: why.
        #[arg(long, value_name = "MESSAGE")]
        error: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunJobArgs {
    /// The job's identifier.
    job: String,
    /// Change nothing: list the exports and synchronizations, compute the orders without
    /// storing them, list what fulfill would send.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn open_store(rt: &Runtime, g: &Global) -> anyhow::Result<Result<Store, ExitCode>> {
    let location = crate::store::location(g)?;
    match rt.block_on(Store::open(&location)) {
        Ok(s) => Ok(Ok(s)),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Err(ExitCode::from(1)))
        }
    }
}

macro_rules! ready {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(code) => return Ok(code),
        }
    };
}

pub fn provision(rt: &Runtime, g: &Global, args: &ProvisionArgs) -> anyhow::Result<ExitCode> {
    let engine = ready!(engine(g));
    let store = ready!(open_store(rt, g));
    let progress = CliProgress::new(g.quiet);
    let options = ProvisionOptions {
        resource_types: args.resource_types.clone(),
        dry_run: args.dry_run,
        force: args.force,
    };
    let result = rt.block_on(engine.provision(&store, &options, &progress));
    progress.finish();
    rt.block_on(store.close());
    let mut out = std::io::stdout().lock();
    match result {
        Ok(r) => {
            match args.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?,
                Format::Text => print_provision(&mut out, &r, g)?,
            }
            Ok(if r.errors() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(EngineError::ProvisioningBlocked(r)) => {
            if let Format::Json = args.format {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            }
            eprintln!("error: {}", EngineError::ProvisioningBlocked(r));
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("error: provisioning failed: {e}");
            Ok(failure(&e))
        }
    }
}

fn print_provision(out: &mut impl Write, r: &ProvisionReport, g: &Global) -> std::io::Result<()> {
    if !g.quiet {
        writeln!(
            out,
            "{:<28} {:>8} {:>8} {:>7} {:>8} {:>7} {:>9} {:>7} {:>7}",
            "resource type",
            "owners",
            "targets",
            "added",
            "modified",
            "deleted",
            "unchanged",
            "waiting",
            "adopted"
        )?;
        for t in &r.resource_types {
            writeln!(
                out,
                "{:<28} {:>8} {:>8} {:>7} {:>8} {:>7} {:>9} {:>7} {:>7}",
                t.resource_type,
                t.owners,
                t.targets,
                t.added,
                t.modified,
                t.deleted,
                t.unchanged,
                t.waiting,
                t.adopted
            )?;
        }
        if r.dry_run {
            for o in &r.orders {
                writeln!(out, "{}", order_line(o))?;
            }
        }
    }
    for t in &r.resource_types {
        for e in &t.errors {
            eprintln!("error: resource type '{}': {e}", t.resource_type);
        }
        for b in &t.exceeded {
            eprintln!("warning: forced past a threshold: {b}");
        }
    }
    if r.dry_run {
        writeln!(
            out,
            "dry run: {} orders computed, none stored ({:.2} s)",
            r.orders.len(),
            r.duration.as_secs_f64()
        )
    } else {
        writeln!(
            out,
            "{} orders stored as Pending ({:.2} s); send them with `idlink fulfill --connection ID` or a job's FulfillTask",
            r.stored,
            r.duration.as_secs_f64()
        )
    }
}

/// One order in one line: change, resource type, owner, changed properties.
fn order_line(o: &idlink_packages::api::ProvisioningOrder) -> String {
    let owner = o
        .owner
        .as_ref()
        .and_then(|m| m.get("Identifier"))
        .and_then(|v| v.as_str())
        .unwrap_or("-");
    let change = idlink_engine::provision::change_label(o.change_type);
    let props: Vec<String> = o
        .changes
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    format!(
        "  {change:<8} {} owner={owner} {}",
        o.resource_type.identifier,
        props.join(" ")
    )
}

pub fn orders(rt: &Runtime, g: &Global, args: &OrdersArgs) -> anyhow::Result<ExitCode> {
    let mut filter = OrderFilter {
        limit: args.limit,
        ..OrderFilter::default()
    };
    if let Some(s) = &args.state {
        match s.parse::<OrderState>() {
            Ok(s) => filter.states.push(s),
            Err(e) => {
                eprintln!("error: --state: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    if let Some(rt_id) = &args.resource_type {
        filter.resource_types.push(rt_id.clone());
    }
    let store = ready!(open_store(rt, g));
    let orders = rt.block_on(store.orders(&filter))?;
    rt.block_on(store.close());
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let list: Vec<serde_json::Value> = orders
                .iter()
                .map(idlink_engine::orders::stored_json)
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        Format::Text => {
            writeln!(
                out,
                "{:>6}  {:<11} {:<8} {:<24} {:<16} {:<24} message",
                "id", "state", "change", "resource type", "owner", "target"
            )?;
            for o in &orders {
                writeln!(
                    out,
                    "{:>6}  {:<11} {:<8} {:<24} {:<16} {:<24} {}",
                    o.id,
                    o.state.as_str(),
                    o.change_type,
                    o.resource_type,
                    o.owner_key.as_deref().unwrap_or("-"),
                    o.target_key.as_deref().unwrap_or("-"),
                    o.message
                )?;
            }
            if !g.quiet {
                eprintln!("{} orders", orders.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tickets(rt: &Runtime, g: &Global, args: &TicketsArgs) -> anyhow::Result<ExitCode> {
    let engine = ready!(engine(g));
    let store = ready!(open_store(rt, g));
    let result = match &args.command {
        TicketsCommand::List { all, format } => {
            let tickets = rt.block_on(idlink_engine::tickets::list(&engine, &store, *all))?;
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => {
                    let list: Vec<serde_json::Value> = tickets
                        .iter()
                        .map(idlink_engine::orders::stored_json)
                        .collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
                }
                Format::Text => {
                    for t in &tickets {
                        writeln!(
                            out,
                            "#{:<5} {:<11} {:<16} {}",
                            t.id,
                            t.state.as_str(),
                            t.connection.as_deref().unwrap_or("-"),
                            t.message
                        )?;
                    }
                    if !g.quiet {
                        eprintln!(
                            "{} {}ticket{}",
                            tickets.len(),
                            if *all { "" } else { "open " },
                            if tickets.len() == 1 { "" } else { "s" }
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TicketsCommand::Complete { id, error } => {
            match rt.block_on(idlink_engine::tickets::complete(
                &engine,
                &store,
                *id,
                error.as_deref(),
            )) {
                Ok(state) => {
                    println!("ticket #{id} closed: {state}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    };
    rt.block_on(store.close());
    result
}

/// `idlink fulfill --connection ID` without `--orders`: the connection's pending orders.
pub fn fulfill_store(
    rt: &Runtime,
    g: &Global,
    connection: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let engine = ready!(engine(g));
    let store = ready!(open_store(rt, g));
    let progress = Arc::new(CliProgress::new(g.quiet));
    let options = DispatchOptions {
        connection: Some(connection.to_string()),
        dry_run,
        ..DispatchOptions::default()
    };
    let result = rt.block_on(engine.fulfill_pending(&store, &options, progress.clone()));
    progress.finish();
    rt.block_on(store.close());
    match result {
        Ok(r) => {
            print_dispatch(&r)?;
            Ok(if r.errored() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) => {
            eprintln!("error: fulfill through '{connection}' failed: {e}");
            Ok(failure(&e))
        }
    }
}

fn print_dispatch(r: &DispatchReport) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for c in &r.connections {
        for o in &c.outcomes {
            writeln!(
                out,
                "order {} ({} {}, owner {}): {}{}",
                o.id,
                o.change_type,
                o.resource_type,
                o.owner.as_deref().unwrap_or("-"),
                if r.dry_run { "would be " } else { "" },
                o.state
            )?;
            if (r.dry_run || o.state != "Executed") && !o.message.is_empty() {
                writeln!(out, "  {}", o.message)?;
            }
            if r.dry_run {
                for op in &o.operations {
                    writeln!(out, "  {op}")?;
                }
            }
        }
        if let Some(f) = &c.failure {
            eprintln!("error: {}: {f}", c.connection);
        }
        eprintln!(
            "{}: {} orders: {} executed, {} handed over, {} errored, {} not sent{}",
            c.connection,
            c.orders,
            c.executed,
            c.transmitted,
            c.errored,
            c.not_sent,
            if r.dry_run {
                " (dry run: nothing sent)"
            } else {
                ""
            }
        );
    }
    if r.connections.is_empty() {
        eprintln!("no pending order");
    }
    Ok(())
}

pub fn run_job(rt: &Runtime, g: &Global, args: &RunJobArgs) -> anyhow::Result<ExitCode> {
    let engine: Engine = ready!(engine(g));
    let store = ready!(open_store(rt, g));
    let cancel = CancellationToken::new();
    cancel_on_signals(rt, &cancel);
    let progress = Arc::new(CliProgress::new(g.quiet));
    let quiet = g.quiet;
    let bar = progress.clone();
    // Live: each task as it starts (the report below gives what each did).
    let log = move |line: &str| {
        if !quiet && line.starts_with('[') {
            bar.println(line);
        }
    };
    // The CLI is the embedded agent: every connection's work runs here.
    let options = JobOptions {
        dry_run: args.dry_run,
        agents: None,
    };
    let result =
        rt.block_on(engine.run_job(&store, &args.job, &options, progress.clone(), &log, &cancel));
    progress.finish();
    rt.block_on(store.close());
    match result {
        Ok(r) => {
            let mut out = std::io::stdout().lock();
            match args.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?,
                Format::Text => print_job(&mut out, &r, quiet)?,
            }
            Ok(if r.state == "Succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => {
            eprintln!("error: job '{}' did not run: {e}", args.job);
            Ok(failure(&e))
        }
    }
}

/// The report: a line per task, then the summary (`-q`: the summary, and the failed tasks).
fn print_job(out: &mut impl Write, r: &JobReport, quiet: bool) -> std::io::Result<()> {
    if !quiet {
        writeln!(out, "{:<4} {:<10} {:>8}  task", "#", "status", "seconds")?;
    }
    for (i, t) in r.tasks.iter().enumerate() {
        if quiet {
            if let Some(e) = &t.error {
                eprintln!("error: task {} ({}): {e}", i + 1, t.name);
            }
            continue;
        }
        writeln!(
            out,
            "{:<4} {:<10} {:>8.2}  {} ({})",
            i + 1,
            t.status,
            t.duration.as_secs_f64(),
            t.name,
            t.kind
        )?;
        if !t.summary.is_empty() {
            writeln!(out, "{:<24}{}", "", t.summary)?;
        }
        if let Some(e) = &t.error {
            writeln!(out, "{:<24}error: {e}", "")?;
        }
    }
    let x = &r.totals;
    writeln!(
        out,
        "job '{}' {}{} in {:.2} s (run #{}): {} rows exported; resources {} inserted, {} updated, {} deleted; orders {} generated, {} executed, {} tickets, {} errored, {} verified",
        r.job,
        r.state.to_lowercase(),
        if r.dry_run { " (dry run)" } else { "" },
        r.duration.as_secs_f64(),
        r.run,
        x.exported_rows,
        x.inserted,
        x.updated,
        x.deleted,
        x.orders_generated,
        x.orders_executed,
        x.orders_transmitted,
        x.orders_errored,
        x.orders_verified
    )
}
