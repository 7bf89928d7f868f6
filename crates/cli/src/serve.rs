//! `idlink serve`: the HTTP API and web UI over the store and the running configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use idlink_engine::CancellationToken;
use idlink_server::{Options, Paths, ScheduleOptions};
use tokio::runtime::Runtime;

use crate::Global;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The embedded agent's identifier: connections whose connector (or task) names it run in
    /// this process; others go to their remote agents.
    #[arg(
        long = "agent",
        value_name = "ID",
        env = "IDLINK_LOCAL_AGENT",
        default_value = "Local"
    )]
    local_agent: String,
    /// How long an agent's lease on a task lasts without renewal, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, hide = true)]
    agent_lease_ms: u64,
    /// How long work waits for its remote agent to take it before it fails, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    agent_timeout: u64,
    /// How often the configuration folder is looked at for changes, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    watch_ms: u64,
    /// The IANA time zone the jobs' crontab times are read in (e.g. Europe/Paris).
    #[arg(
        long,
        value_name = "ZONE",
        env = "IDLINK_TIME_ZONE",
        default_value = "UTC"
    )]
    time_zone: String,
    /// At start, run once each job whose scheduled times passed while no server ran
    /// (without it, those times are logged and skipped).
    #[arg(long, env = "IDLINK_RUN_MISSED_JOBS", value_parser = clap::builder::BoolishValueParser::new())]
    run_missed_jobs: bool,
}

/// How long requests under way may run on after a stop before their work is cancelled.
const GRACE: Duration = Duration::from_secs(30);

pub fn serve(rt: &Runtime, g: &Global, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let time_zone = match idlink_server::scheduler::parse_time_zone(&args.time_zone) {
        Ok(tz) => tz,
        Err(e) => {
            eprintln!("error: --time-zone (IDLINK_TIME_ZONE): {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let options = Options {
        paths: Paths {
            config_dir: g.config.clone(),
            settings: g.settings.clone(),
            work_dir: g.work.clone(),
        },
        database: crate::store::location(g)?,
        listen: args.listen,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        watch_every: Duration::from_millis(args.watch_ms.max(50)),
        admin_password: std::env::var("IDLINK_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
        grace: GRACE,
        agents: idlink_server::agents::AgentOptions {
            local_agent: args.local_agent.clone(),
            lease: Duration::from_millis(args.agent_lease_ms.max(200)),
            claim_timeout: Duration::from_secs(args.agent_timeout.max(1)),
            ..Default::default()
        },
        schedule: ScheduleOptions {
            time_zone,
            run_missed: args.run_missed_jobs,
            ..ScheduleOptions::default()
        },
    };
    let server = match rt.block_on(idlink_server::start(options)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(password) = &server.admin_password {
        println!("created the administrator 'admin' with the password: {password}");
        println!(
            "  it is shown this once: keep it somewhere safe (set IDLINK_ADMIN_PASSWORD before the first start to choose it)"
        );
    }
    // Watched before the line below: whoever reads it may stop the server at once.
    let stop = CancellationToken::new();
    stop_on_signals(rt, &stop);
    println!(
        "idlink serving {} (configuration {}; Ctrl-C stops)",
        server.url(),
        g.config.display()
    );
    match rt.block_on(server.run(stop)) {
        Ok(()) => {
            crate::say("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            crate::say(&format!("error: {e}"));
            Ok(ExitCode::from(1))
        }
    }
}

/// The first SIGINT or SIGTERM stops gracefully (requests under way finish); a second one ends
/// the process at once.
fn stop_on_signals(rt: &Runtime, stop: &CancellationToken) {
    let stop = stop.clone();
    crate::on_signals(rt, move || {
        // Cancel first: a message that cannot be written (stderr closed) must not keep the
        // server from stopping.
        stop.cancel();
        crate::say(&format!(
            "stopping: requests under way finish (work still running after {} s is interrupted); a second signal stops at once",
            GRACE.as_secs()
        ));
    });
}
