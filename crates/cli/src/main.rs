//! `idlink`: the command line. Glue only: the libraries carry the logic.

mod check;
mod connection;
mod secrets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// idlink: the connection layer for identity governance.
#[derive(Debug, Parser)]
#[command(name = "idlink", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, clap::Args)]
struct Global {
    /// Folder of the XML configuration files.
    #[arg(long, global = true, value_name = "DIR", default_value = "./conf")]
    config: PathBuf,
    /// The agent settings file [default: <config>/appsettings.agent.json].
    #[arg(long, global = true, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Working folder: export output, cookies, reports.
    #[arg(long, global = true, value_name = "DIR", default_value = "./work")]
    work: PathBuf,
    /// More output (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Less output: errors and the summary only.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the configuration and agent settings against every rule; exit 0 when valid,
    /// 1 when not, 2 on usage or I/O errors.
    Check(check::Args),
    /// Export a connection's data into connection tables (<work>/ExportOutput).
    Export(connection::ExportArgs),
    /// Read a connection's tables and columns from its system.
    RefreshSchema(connection::SchemaArgs),
    /// Test that a connection's system is reachable with its settings (exit 0 yes, 1 no).
    CheckConnection(connection::CheckConnectionArgs),
    /// Apply provisioning orders through a connection (or preview them with --dry-run).
    Fulfill(connection::FulfillArgs),
    /// Create the agent's key pair: writes the private identity, prints the public key.
    Keygen(secrets::KeygenArgs),
    /// Encrypt values, or every secured setting of an appsettings file, to the agent's key.
    Protect(secrets::ProtectArgs),
    /// List the packages this build knows, with their capabilities.
    Packages,
}

fn init_logging(g: &Global) {
    use tracing_subscriber::EnvFilter;
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("IDLINK_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    tracing::debug!(work = %cli.global.work.display(), "starting");
    let result = match &cli.command {
        Command::Check(args) => check::run(&cli.global, args),
        Command::Export(args) => connection::export(&cli.global, args),
        Command::RefreshSchema(args) => connection::refresh_schema(&cli.global, args),
        Command::CheckConnection(args) => connection::check_connection(&cli.global, args),
        Command::Fulfill(args) => connection::fulfill(&cli.global, args),
        Command::Keygen(args) => secrets::keygen(args),
        Command::Protect(args) => secrets::protect(&cli.global, args),
        Command::Packages => check::packages(),
    };
    match result {
        Ok(code) => code,
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
