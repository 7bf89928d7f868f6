//! Running the server: open the store, create the first administrator, load the
//! configuration, watch it, run the scheduled jobs, listen (HTTP or HTTPS), and shut down gracefully: on stop, no new
//! connection is accepted and requests under way finish; work still running after the grace
//! period is cancelled (an export then ends as interrupted, nothing committed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use idlink_engine::CancellationToken;
use idlink_store::{Location, Store};
use tokio::net::TcpListener;

use crate::error::ServerError;
use crate::running::Paths;
use crate::state::AppState;

/// What `idlink serve` was given.
#[derive(Debug, Clone)]
pub struct Options {
    pub paths: Paths,
    pub database: Location,
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: HTTPS when given.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How often the configuration folder is looked at.
    pub watch_every: Duration,
    /// The first administrator's password (IDLINK_ADMIN_PASSWORD); generated when absent.
    pub admin_password: Option<String>,
    /// How long requests under way may run on after a stop before their work is cancelled.
    pub grace: Duration,
    /// The embedded agent's identifier and how remote agents are served.
    pub agents: crate::agents::AgentOptions,
    /// The scheduler's time zone, missed-run policy and tick.
    pub schedule: crate::scheduler::ScheduleOptions,
}

/// A server ready to run: bound, with its state.
#[derive(Debug)]
pub struct Server {
    pub state: AppState,
    /// The address bound (the port chosen when `--listen` said 0).
    pub addr: SocketAddr,
    /// The generated password of `admin`, created at this first start: print it once.
    pub admin_password: Option<String>,
    pub https: bool,
    listener: TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    options: Options,
}

/// Prepares everything that can fail before the server answers.
pub async fn start(options: Options) -> Result<Server, ServerError> {
    let tls = match &options.tls {
        Some((cert, key)) => Some(crate::tls::config(cert, key)?),
        None => None,
    };
    let store = Store::open(&options.database).await?;
    let admin_password = crate::auth::ensure_admin(&store, options.admin_password.as_deref())
        .await
        .map_err(|e| ServerError::Admin(e.to_string()))?;
    let listener =
        TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: options.listen,
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: options.listen,
            source,
        })?;
    let state = AppState::with_options(
        store,
        options.paths.clone(),
        tls.is_some(),
        options.agents.clone(),
        options.schedule,
    )
    .await;
    crate::jobs::interrupt_stale_runs(&state).await;
    Ok(Server {
        state,
        addr,
        admin_password,
        https: tls.is_some(),
        listener,
        tls,
        options,
    })
}

impl Server {
    /// The URL to open.
    pub fn url(&self) -> String {
        format!(
            "{}://{}/",
            if self.https { "https" } else { "http" },
            self.addr
        )
    }

    /// Serves until `stop` is cancelled, then shuts down gracefully.
    pub async fn run(self, stop: CancellationToken) -> Result<(), ServerError> {
        let Server {
            state,
            listener,
            tls,
            options,
            ..
        } = self;
        let paths = options.paths.clone();
        let first = tokio::task::spawn_blocking(move || crate::running::fingerprint(&paths))
            .await
            .unwrap_or_default();
        let watcher = tokio::spawn(crate::running::watch(
            state.clone(),
            options.watch_every,
            first,
            stop.clone(),
        ));
        let worker = tokio::spawn(crate::agents::worker::run(state.clone(), stop.clone()));
        let scheduler = tokio::spawn(
            crate::scheduler::Scheduler::new(state.clone(), options.schedule).run(stop.clone()),
        );
        // Work still running `grace` after the stop is cancelled.
        let work = state.shutdown();
        let grace = options.grace;
        let stopping = stop.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            tokio::time::sleep(grace).await;
            work.cancel();
        });
        let app = crate::app(state.clone());
        let limits = crate::http::ConnectionLimits::of_this_process();
        let shutdown = stop.clone();
        match tls {
            Some(config) => {
                let listener = crate::tls::TlsListener::new(listener, config)
                    .map_err(|e| ServerError::Serve(e.to_string()))?;
                crate::http::serve(listener, app, limits, shutdown).await;
            }
            None => crate::http::serve(listener, app, limits, shutdown).await,
        }
        stop.cancel();
        let _ = watcher.await;
        let _ = worker.await;
        let _ = scheduler.await;
        // Job runs end at their next step once `work` is cancelled (after the grace period).
        if tokio::time::timeout(grace + crate::jobs::STOP_WAIT, state.background_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                "a job run did not end in time: it is marked Interrupted at the next start"
            );
        }
        state.store().close().await;
        Ok(())
    }
}

/// [`start`] then [`Server::run`].
pub async fn serve(options: Options, stop: CancellationToken) -> Result<(), ServerError> {
    start(options).await?.run(stop).await
}
