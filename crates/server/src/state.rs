//! What every handler shares: the store, the running configuration, metrics, the login
//! limiter and the templates. Cheap to clone.

use std::sync::{Arc, RwLock};

use idlink_engine::Engine;
use idlink_store::Store;

use crate::auth::LoginLimiter;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::running::{Loaded, Paths, Running, apply, load};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Store,
    paths: Paths,
    running: RwLock<Arc<Running>>,
    metrics: Metrics,
    limiter: LoginLimiter,
    secure_cookies: bool,
    templates: minijinja::Environment<'static>,
    /// Cancelled when work still running after a stop's grace period must end.
    shutdown: idlink_engine::CancellationToken,
    /// Serializes edits of the configuration folder.
    edits: tokio::sync::Mutex<()>,
    /// Sessions recently read from the store, by token hash.
    sessions: crate::cache::Recent<idlink_store::Session>,
    /// Schema states recently read from the store, by lower-case connection identifier.
    schemas: crate::cache::Recent<idlink_engine::snapshots::SchemaStatus>,
    /// Work running in the background (job runs) holds a read guard; a stop waits for the
    /// write side, that is for all of them to end, before it closes the store.
    background: Arc<tokio::sync::RwLock<()>>,
    /// How agents are served, and what their endpoints share.
    agent_options: crate::agents::AgentOptions,
    hub: crate::agents::Hub,
    /// The scheduler's time zone and settings (the pages show next runs in that zone).
    schedule: crate::scheduler::ScheduleOptions,
    /// Resource searches running: each reads its entity type from one snapshot, holding one
    /// of the store's connections while it does, so they take turns ([`SEARCHES`]).
    searches: tokio::sync::Semaphore,
}

/// Resource searches that run at once; the store's pool (4 or 5 connections) keeps the rest
/// for everything else.
pub const SEARCHES: usize = 2;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.0.store)
            .field("paths", &self.0.paths)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Loads the configuration once (off the executor) and shares it with the store.
    /// `secure_cookies`: the server runs under TLS (cookies get `Secure`).
    pub async fn new(store: Store, paths: Paths, secure_cookies: bool) -> AppState {
        Self::with_options(
            store,
            paths,
            secure_cookies,
            crate::agents::AgentOptions::default(),
            Default::default(),
        )
        .await
    }

    /// [`AppState::new`] with the scheduler's settings (its time zone).
    pub async fn with_schedule(
        store: Store,
        paths: Paths,
        secure_cookies: bool,
        schedule: crate::scheduler::ScheduleOptions,
    ) -> AppState {
        Self::with_options(
            store,
            paths,
            secure_cookies,
            crate::agents::AgentOptions::default(),
            schedule,
        )
        .await
    }

    /// [`AppState::new`] with how agents are served and the scheduler's settings.
    pub async fn with_options(
        store: Store,
        paths: Paths,
        secure_cookies: bool,
        agent_options: crate::agents::AgentOptions,
        schedule: crate::scheduler::ScheduleOptions,
    ) -> AppState {
        let for_load = paths.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&for_load))
            .await
            .unwrap_or_else(|e| Loaded::Invalid {
                errors: vec![crate::running::Problem {
                    rule: "load",
                    severity: "error".into(),
                    location: String::new(),
                    message: format!("loading failed: {e}"),
                    hint: None,
                }],
            });
        let running = apply(&Running::default(), loaded, &paths);
        if let Some(r) = &running.rejected {
            tracing::warn!(
                errors = r.errors.len(),
                "the configuration does not pass check: nothing runs until it is fixed"
            );
        }
        AppState(Arc::new(Inner {
            store,
            paths,
            running: RwLock::new(Arc::new(running)),
            metrics: Metrics::default(),
            limiter: LoginLimiter::default(),
            secure_cookies,
            templates: crate::ui::templates(),
            shutdown: idlink_engine::CancellationToken::new(),
            edits: tokio::sync::Mutex::new(()),
            sessions: crate::cache::Recent::default(),
            schemas: crate::cache::Recent::default(),
            background: Arc::new(tokio::sync::RwLock::new(())),
            agent_options,
            hub: crate::agents::Hub::new(),
            schedule,
            searches: tokio::sync::Semaphore::new(SEARCHES),
        }))
    }

    pub fn agent_options(&self) -> &crate::agents::AgentOptions {
        &self.0.agent_options
    }

    pub fn hub(&self) -> &crate::agents::Hub {
        &self.0.hub
    }

    /// A turn to run a resource search ([`SEARCHES`] at once).
    pub async fn search_turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        // Never closed, so never an error.
        self.0
            .searches
            .acquire()
            .await
            .expect("the search semaphore is never closed")
    }

    /// The scheduler's settings.
    pub fn schedule(&self) -> &crate::scheduler::ScheduleOptions {
        &self.0.schedule
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn paths(&self) -> &Paths {
        &self.0.paths
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn limiter(&self) -> &LoginLimiter {
        &self.0.limiter
    }

    pub fn secure_cookies(&self) -> bool {
        self.0.secure_cookies
    }

    pub fn templates(&self) -> &minijinja::Environment<'static> {
        &self.0.templates
    }

    /// The token long work (exports) runs under: cancelled at the end of a stop's grace period.
    pub fn shutdown(&self) -> idlink_engine::CancellationToken {
        self.0.shutdown.clone()
    }

    /// Held by work running in the background (a job run) until it ends.
    pub async fn background_guard(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        Arc::clone(&self.0.background).read_owned().await
    }

    /// Waits until no background work runs.
    pub async fn background_idle(&self) {
        let _all_ended = self.0.background.write().await;
    }

    /// Held while an edit of the configuration folder reads, checks and writes its files.
    pub async fn edit_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.edits.lock().await
    }

    /// What runs now.
    pub fn running(&self) -> Arc<Running> {
        match self.0.running.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The engine of the running configuration, or why there is none.
    pub fn engine(&self) -> Result<Engine, AppError> {
        self.running()
            .engine
            .clone()
            .ok_or(AppError::NoConfiguration)
    }

    /// Sessions recently read from the store (see [`crate::cache`]).
    pub fn sessions(&self) -> &crate::cache::Recent<idlink_store::Session> {
        &self.0.sessions
    }

    /// Connections' schema states recently read from the store (see [`crate::cache`]).
    pub fn schemas(&self) -> &crate::cache::Recent<idlink_engine::snapshots::SchemaStatus> {
        &self.0.schemas
    }

    /// The engine of the running configuration with its cached page parts (built on first
    /// use after each configuration change).
    pub fn pages(&self) -> Result<(Engine, Arc<crate::pages::Pages>), AppError> {
        let running = self.running();
        let engine = running.engine.clone().ok_or(AppError::NoConfiguration)?;
        if let Some(p) = running.pages.get() {
            return Ok((engine, Arc::clone(p)));
        }
        let built = Arc::new(crate::pages::Pages::build(&engine, self.templates())?);
        // Two requests may build at once: both results are the same, the first one stays.
        let kept = running.pages.get_or_init(|| built);
        Ok((engine, Arc::clone(kept)))
    }

    /// Applies a load of the folder: a valid configuration replaces the running one; an
    /// invalid one is kept aside with its errors. Logged and audited.
    pub async fn replace_running(&self, loaded: Loaded) {
        let valid = matches!(loaded, Loaded::Valid { .. });
        let next = {
            let current = self.running();
            Arc::new(apply(&current, loaded, &self.0.paths))
        };
        let detail = if valid {
            tracing::info!("configuration changed: the new one passes check and runs now");
            "the change passes check and runs now".to_string()
        } else {
            let n = next.rejected.as_ref().map_or(0, |r| r.errors.len());
            tracing::warn!(
                errors = n,
                "configuration changed but does not pass check: the last valid one keeps running"
            );
            format!(
                "the change does not pass check ({n} error{}); the last valid configuration keeps running",
                if n == 1 { "" } else { "s" }
            )
        };
        match self.0.running.write() {
            Ok(mut w) => *w = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.0.schemas.clear();
        let target = self.0.paths.config_dir.display().to_string();
        if let Err(e) = self
            .0
            .store
            .audit("system", "configuration", &target, &detail)
            .await
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}
