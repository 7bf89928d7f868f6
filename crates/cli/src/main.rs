//! `idlink`: the command line. Glue only: the libraries carry the logic.

mod agent;
mod check;
mod connection;
mod provision;
mod secrets;
mod serve;
mod store;
mod sync;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// idlink: the connection layer for identity governance.
#[derive(Debug, Parser)]
#[command(name = "idlink", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    output: OutputArgs,
    /// `--config`, `--settings` and `--work` written before the command (`idlink --config X
    /// export ...`): still accepted, not shown.
    #[command(flatten)]
    before: HiddenPathArgs,
    #[command(subcommand)]
    command: Command,
}

/// How much to print; every command takes these.
#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// More output (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Less output: errors and the one-line summary only.
    #[arg(short, long, global = true)]
    quiet: bool,
}

/// Where the configuration and the working files are, for the commands that read them.
#[derive(Debug, Clone, clap::Args)]
pub struct PathArgs {
    /// Folder of the XML configuration files [env: IDLINK_CONFIG] [default: ./conf, or the
    /// current folder when it holds the configuration and ./conf does not exist].
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// The agent settings file [env: IDLINK_SETTINGS] [default: <config>/appsettings.agent.json].
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Working folder: export output, cookies, reports [env: IDLINK_WORK] [default: ./work].
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
}

/// Where the identity store is, for the commands that read or write it.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The identity store: a SQLite file, or a PostgreSQL database as
    /// postgres://user:password@host:port/database [env: IDLINK_DATABASE] [default:
    /// <work>/idlink.db].
    #[arg(long, value_name = "PATH|URL")]
    database: Option<String>,
}

/// The same options before the command name, as earlier versions took them.
#[derive(Debug, Clone, clap::Args)]
struct HiddenPathArgs {
    #[arg(long = "config", value_name = "DIR", hide = true)]
    config: Option<PathBuf>,
    #[arg(long = "settings", value_name = "FILE", hide = true)]
    settings: Option<PathBuf>,
    #[arg(long = "work", value_name = "DIR", hide = true)]
    work: Option<PathBuf>,
    #[arg(long = "database", value_name = "PATH|URL", hide = true)]
    database: Option<String>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The options a command runs with, resolved.
#[derive(Debug, Clone)]
pub struct Global {
    pub config: PathBuf,
    /// Whether `--config` (or IDLINK_CONFIG) was given.
    pub config_given: bool,
    pub settings: Option<PathBuf>,
    pub work: PathBuf,
    /// `--database` (or IDLINK_DATABASE), when given; else the store is `<work>/idlink.db`.
    pub database: Option<String>,
    pub verbose: u8,
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the configuration and agent settings against every rule; exit 0 when valid,
    /// 1 when not, 2 on usage or I/O errors.
    Check {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: check::Args,
    },
    /// Export a connection's data into connection tables (<work>/ExportOutput).
    Export {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        args: connection::ExportArgs,
    },
    /// Read a connection's tables and columns from its system (or every connection of a
    /// connector's) and keep them in the store; exit 1 if any refresh failed.
    RefreshSchema {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: connection::SchemaArgs,
    },
    /// List the connections with their connector, package, capabilities and schema state.
    Connections {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: store::ConnectionsArgs,
    },
    /// Prepare and synchronize a connector's exported tables into the identity store.
    Sync {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: sync::SyncArgs,
    },
    /// List the resources of an entity type from the identity store.
    Resources {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: sync::ResourcesArgs,
    },
    /// Test that a connection's system is reachable with its settings (exit 0 yes, 1 no).
    CheckConnection {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        args: connection::CheckConnectionArgs,
    },
    /// Apply provisioning orders through a connection: an orders file, or the connection's
    /// pending orders in the store (or preview them with --dry-run).
    Fulfill {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: connection::FulfillArgs,
    },
    /// Compute provisioning orders from the resource types' rules and the store; store them
    /// as Pending (or print them with --dry-run).
    Provision {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: provision::ProvisionArgs,
    },
    /// List provisioning orders with their state and the system's last word.
    Orders {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: provision::OrdersArgs,
    },
    /// List and close the tickets of manual provisioning (Usercube.Manual connections).
    Tickets {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: provision::TicketsArgs,
    },
    /// Run a job's tasks in order (export, synchronize, provision, fulfill) and print its
    /// report; exit 1 when a task failed.
    RunJob {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: provision::RunJobArgs,
    },
    /// Create the agent's key pair: writes the private identity, prints the public key.
    Keygen(secrets::KeygenArgs),
    /// Encrypt values, or every secured setting of an appsettings file, to the agent's key.
    Protect {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        args: secrets::ProtectArgs,
    },
    /// List the packages this build knows, with their capabilities.
    Packages,
    /// Run a remote agent: enrol with the server, then pull and do its connections' work
    /// (export, schema refresh, check connection, fulfill); exit 3 when the server refuses the
    /// agent. Its configuration comes from the server.
    Agent(agent::AgentArgs),
    /// Serve the HTTP API and the web UI over the store and the configuration folder, which
    /// is watched: a change that passes check runs, one that does not is shown with its errors.
    Serve {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: serve::ServeArgs,
    },
}

/// A line on standard error that never fails: a long-running command (serve, agent) whose
/// standard error was closed must go on, and still stop on a signal (`eprintln!` panics).
pub(crate) fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Watches SIGINT and SIGTERM: the first one calls `first`, a second one ends the process at
/// once (exit 130). The handlers are installed before this returns, so a signal sent right
/// after the caller announces itself (a supervisor that reads "idlink serving" and stops it)
/// meets them, never the default action that kills the process without its cleanup.
pub(crate) fn on_signals(rt: &tokio::runtime::Runtime, first: impl FnOnce() + Send + 'static) {
    use tokio::signal::unix::{SignalKind, signal};
    let _in_runtime = rt.enter();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        say(
            "warning: SIGINT and SIGTERM cannot be watched: a signal stops at once, without cleanup",
        );
        return;
    };
    rt.spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        first();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
}

/// Whether `dir` holds configuration files: an appsettings.agent.json or an XML file.
fn holds_configuration(dir: &Path) -> bool {
    if dir.join("appsettings.agent.json").is_file() {
        return true;
    }
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.filter_map(Result::ok).any(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("xml"))
        })
    })
}

impl Global {
    fn resolve(
        paths: &PathArgs,
        store: Option<&StoreArgs>,
        before: &HiddenPathArgs,
        output: &OutputArgs,
    ) -> Global {
        // A flag after the command, else one before it, else the environment.
        let config = paths
            .config
            .clone()
            .or_else(|| before.config.clone())
            .or_else(|| env_path("IDLINK_CONFIG"));
        let (config, given) = match config {
            Some(c) => (c, true),
            None => {
                let default = PathBuf::from("./conf");
                if !default.exists() && holds_configuration(Path::new(".")) {
                    eprintln!(
                        "note: ./conf does not exist; using the configuration in the current folder \
                         (pass --config DIR or set IDLINK_CONFIG to choose another)"
                    );
                    (PathBuf::from("."), false)
                } else {
                    (default, false)
                }
            }
        };
        Global {
            config,
            config_given: given,
            settings: paths
                .settings
                .clone()
                .or_else(|| before.settings.clone())
                .or_else(|| env_path("IDLINK_SETTINGS")),
            work: paths
                .work
                .clone()
                .or_else(|| before.work.clone())
                .or_else(|| env_path("IDLINK_WORK"))
                .unwrap_or_else(|| PathBuf::from("./work")),
            database: store
                .and_then(|s| s.database.clone())
                .or_else(|| before.database.clone())
                .or_else(|| std::env::var("IDLINK_DATABASE").ok())
                .filter(|d| !d.is_empty()),
            verbose: output.verbose,
            quiet: output.quiet,
        }
    }
}

/// `g`, once its working folder exists: the commands that write there create it, private to
/// its owner (0700), when it does not exist yet. It holds the exported tables (every identity
/// of an HR file), reports and, by default, the store; the umask would make it readable by
/// every local user. A folder that exists keeps its mode: it is the user's.
fn with_work(g: Global) -> anyhow::Result<Global> {
    use anyhow::Context as _;
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = &g.work;
    if !dir.exists() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            // Created meanwhile by another process: it is that one's to set.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create the working folder {}", dir.display())
                });
            }
        }
    } else if !g.quiet {
        // One that exists keeps the mode its owner gave it; other users' access is told.
        use std::os::unix::fs::PermissionsExt as _;
        if let Some(mode) = std::fs::metadata(dir)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
            .filter(|mode| mode & 0o007 != 0)
        {
            eprintln!(
                "warning: other users can open the working folder {} (mode {mode:o}), which holds the exported tables and reports of every identity: restrict it with chmod o-rwx {}",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(g)
}

fn init_logging(output: &OutputArgs) {
    use tracing_subscriber::EnvFilter;
    let level = match (output.quiet, output.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("IDLINK_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    // Colours on a terminal only: a log piped to a file or a journal stays plain text.
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.output);
    let g = |paths: &PathArgs| Global::resolve(paths, None, &cli.before, &cli.output);
    let gs = |paths: &PathArgs, store: &StoreArgs| {
        Global::resolve(paths, Some(store), &cli.before, &cli.output)
    };
    // One runtime for the whole command: work is spawned on it, signals are watched on its
    // worker while the command runs.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Check { paths, store, args } => check::run(&runtime, &gs(paths, store), args),
        Command::Export { paths, args } => {
            with_work(g(paths)).and_then(|g| connection::export(&runtime, &g, args))
        }
        Command::RefreshSchema { paths, store, args } => {
            with_work(gs(paths, store)).and_then(|g| connection::refresh_schema(&runtime, &g, args))
        }
        Command::Connections { paths, store, args } => {
            store::connections(&runtime, &gs(paths, store), args)
        }
        Command::Sync { paths, store, args } => {
            with_work(gs(paths, store)).and_then(|g| sync::sync(&runtime, &g, args))
        }
        Command::Resources { paths, store, args } => {
            sync::resources(&runtime, &gs(paths, store), args)
        }
        Command::CheckConnection { paths, args } => {
            connection::check_connection(&runtime, &g(paths), args)
        }
        Command::Fulfill { paths, store, args } => {
            with_work(gs(paths, store)).and_then(|g| connection::fulfill(&runtime, &g, args))
        }
        Command::Provision { paths, store, args } => {
            with_work(gs(paths, store)).and_then(|g| provision::provision(&runtime, &g, args))
        }
        Command::Orders { paths, store, args } => {
            provision::orders(&runtime, &gs(paths, store), args)
        }
        Command::Tickets { paths, store, args } => {
            provision::tickets(&runtime, &gs(paths, store), args)
        }
        Command::RunJob { paths, store, args } => {
            with_work(gs(paths, store)).and_then(|g| provision::run_job(&runtime, &g, args))
        }
        Command::Keygen(args) => secrets::keygen(args),
        Command::Protect { paths, args } => secrets::protect(&g(paths), args),
        Command::Packages => check::packages(),
        Command::Serve { paths, store, args } => {
            with_work(gs(paths, store)).and_then(|g| serve::serve(&runtime, &g, args))
        }
        Command::Agent(args) => {
            // The agent's configuration comes from the server: only its working folder is its own.
            let paths = PathArgs {
                config: None,
                settings: None,
                work: args.work.clone(),
            };
            with_work(g(&paths)).and_then(|g| agent::agent(&runtime, &g, args))
        }
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
