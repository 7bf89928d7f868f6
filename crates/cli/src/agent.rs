//! `idlink agent`: a remote agent next to the managed systems (see `idlink_server::agents::client`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use idlink_engine::CancellationToken;
use idlink_server::agents::client::{ClientError, ClientOptions, run};
use tokio::runtime::Runtime;

use crate::Global;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The server's URL (https://…; http:// to 127.0.0.1 only with --insecure-loopback).
    #[arg(long, value_name = "URL", env = "IDLINK_SERVER")]
    server: String,
    /// This agent's identifier, as an <Agent Identifier="…"/> of the configuration names it.
    #[arg(long, value_name = "ID", env = "IDLINK_AGENT")]
    agent: String,
    /// The agent's private key (age identity), created on the first start when missing; its
    /// public key is what the server registers.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// A one-time enrolment token from an administrator (else an administrator approves the
    /// agent on the Agents page).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "IDLINK_ENROL_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    enrol_token: Option<String>,
    /// A PEM certificate to trust (a private CA or a self-signed server certificate).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Allow plain http:// to a loopback address (tests on one machine only).
    #[arg(long)]
    insecure_loopback: bool,
    /// Tasks run at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    concurrency: usize,
    /// The agent's own folder: the configuration it receives, its key path if relative, its
    /// work in progress [env: IDLINK_WORK] [default: ./work].
    #[arg(long, value_name = "DIR")]
    pub(crate) work: Option<PathBuf>,
    /// A folder this agent's connections may read and write under (repeat for several). When
    /// given, these replace the SourcesRootPaths the server sends, and the scripts of script
    /// connections must lie under them too: the server cannot make the agent read a file or
    /// run a program elsewhere.
    #[arg(long = "sources-root", value_name = "DIR")]
    sources_roots: Vec<PathBuf>,
    /// Take only encrypted values bound to their setting and to where their connection sends
    /// them (as `idlink protect --file` and the server's UI encrypt them): values encrypted
    /// unbound (`protect --values`, older idlink) or bound to their setting alone are refused,
    /// so that the server cannot have a secret sent to a host of its choice.
    #[arg(long)]
    bound_secrets_only: bool,
    /// Seconds one long poll for work waits.
    #[arg(long, value_name = "SECONDS", default_value_t = 25, hide = true)]
    wait: u64,
}

pub fn agent(rt: &Runtime, g: &Global, args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let options = ClientOptions {
        server: args.server.clone(),
        agent: args.agent.clone(),
        key_file: args.key.clone(),
        work_dir: g.work.clone(),
        enrol_token: args.enrol_token.clone(),
        insecure_loopback: args.insecure_loopback,
        ca_cert: args.ca_cert.clone(),
        concurrency: args.concurrency,
        wait: Duration::from_secs(args.wait.clamp(1, 60)),
        sources_roots: args.sources_roots.clone(),
        bound_secrets_only: args.bound_secrets_only,
    };
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        crate::on_signals(rt, move || {
            stop.cancel();
            crate::say("stopping: the agent takes no new work (a second signal stops at once)");
        });
    }
    let quiet = g.quiet;
    let log: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |line: &str| {
        if !quiet {
            crate::say(line);
        }
    });
    match rt.block_on(run(options, stop, log)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ ClientError::Refused { .. }) => {
            crate::say(&format!("error: {e}"));
            Ok(ExitCode::from(3))
        }
        Err(e) => {
            crate::say(&format!("error: {e}"));
            Ok(ExitCode::from(2))
        }
    }
}
