//! The running configuration and its watcher.
//!
//! The configuration folder is the source of truth. The watcher polls it (every second by
//! default: the file names, sizes and modification times of the XML files and the settings
//! files); on a change it loads and checks the folder off the async executor, and replaces the
//! running configuration only when it is valid. An invalid change leaves the last valid one
//! running and is kept, with its errors (file:line:col), for the UI and the API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use idlink_engine::Engine;
use idlink_model::{Checked, Diagnostic, SettingsSource};
use idlink_packages::Registry;
use serde::Serialize;

use crate::state::AppState;

/// Where the configuration, the settings and the working files are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The folder of the XML files.
    pub config_dir: PathBuf,
    /// The agent settings file, when given; else `<config>/appsettings.agent.json`.
    pub settings: Option<PathBuf>,
    /// `ExportOutput`, cookies and reports live below it.
    pub work_dir: PathBuf,
}

impl Paths {
    /// The settings file read.
    pub fn settings_file(&self) -> PathBuf {
        self.settings
            .clone()
            .unwrap_or_else(|| self.config_dir.join("appsettings.agent.json"))
    }
}

/// One problem of a configuration, as the UI and the API show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub rule: &'static str,
    pub severity: String,
    /// `file:line:col` (or the file alone).
    pub location: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl From<&Diagnostic> for Problem {
    fn from(d: &Diagnostic) -> Self {
        Problem {
            rule: d.rule.id(),
            severity: d.severity.to_string(),
            location: d.at.to_string(),
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }
}

/// A change of the folder that did not pass `check`: it is not running.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub at: DateTime<Utc>,
    /// The errors (warnings left out).
    pub errors: Vec<Problem>,
}

/// What runs now.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// The last valid configuration (none when the folder never held one since the start).
    pub engine: Option<Engine>,
    /// When it was loaded.
    pub loaded_at: Option<DateTime<Utc>>,
    /// Its warnings.
    pub warnings: Vec<Problem>,
    /// The latest change that did not pass, when it came after the running one.
    pub rejected: Option<Rejected>,
    /// The busy pages' parts computed from `engine`, once (see [`crate::pages`]).
    pub pages: std::sync::OnceLock<Arc<crate::pages::Pages>>,
}

/// The result of loading the folder once.
#[derive(Debug)]
pub enum Loaded {
    Valid { checked: Box<Checked> },
    Invalid { errors: Vec<Problem> },
}

/// Loads and checks the folder as `idlink check` does (without touching any system).
pub fn load(paths: &Paths) -> Loaded {
    load_with(paths, &std::collections::HashMap::new())
}

/// [`load`], with some files' texts replaced by `overrides` (full path to bytes): an edit is
/// checked this way, under the files' real names, before it is written.
pub fn load_with(paths: &Paths, overrides: &std::collections::HashMap<PathBuf, Vec<u8>>) -> Loaded {
    let read = |p: &std::path::Path| match overrides.get(p) {
        Some(bytes) => Ok(bytes.clone()),
        None => std::fs::read(p),
    };
    let settings = paths.settings_file();
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let registry = Registry::new();
    let mut checked = match idlink_model::load_and_check_with(
        &paths.config_dir,
        SettingsSource {
            path: &settings,
            explicit: paths.settings.is_some(),
        },
        env,
        &registry,
        &read,
    ) {
        Ok(c) => c,
        Err(e) => {
            return Loaded::Invalid {
                errors: vec![Problem {
                    rule: "load",
                    severity: "error".into(),
                    location: paths.config_dir.display().to_string(),
                    message: e.to_string(),
                    hint: None,
                }],
            };
        }
    };
    for d in idlink_engine::check::check_packages(&checked, &registry, &paths.config_dir) {
        checked.diagnostics.push(d);
    }
    checked.diagnostics.sort();
    if checked.is_valid() {
        Loaded::Valid {
            checked: Box::new(checked),
        }
    } else {
        Loaded::Invalid {
            errors: checked
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(Problem::from)
                .collect(),
        }
    }
}

/// What the watcher compares: every configuration file with its size and modification time.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The folder's XML files and the settings files, with size and modification time.
pub fn fingerprint(paths: &Paths) -> Fingerprint {
    let mut files = idlink_model::xml::config_files(&paths.config_dir).unwrap_or_default();
    let settings = paths.settings_file();
    let encrypted = settings.with_file_name(idlink_model::settings::ENCRYPTED_SETTINGS_FILE);
    files.push(settings);
    files.push(encrypted);
    let mut out: Fingerprint = files
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(u64::MAX, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect();
    out.sort();
    out
}

/// Applies one load to what runs: a valid configuration replaces it, an invalid one is kept
/// aside with its errors.
pub fn apply(current: &Running, loaded: Loaded, paths: &Paths) -> Running {
    match loaded {
        Loaded::Valid { checked } => {
            let warnings = checked
                .diagnostics
                .iter()
                .filter(|d| d.severity == idlink_model::Severity::Warning)
                .map(Problem::from)
                .collect();
            Running {
                engine: Some(Engine::new(
                    *checked,
                    Registry::new(),
                    &paths.config_dir,
                    &paths.work_dir,
                )),
                loaded_at: Some(idlink_store::now()),
                warnings,
                rejected: None,
                pages: std::sync::OnceLock::new(),
            }
        }
        Loaded::Invalid { errors } => Running {
            rejected: Some(Rejected {
                at: idlink_store::now(),
                errors,
            }),
            ..current.clone()
        },
    }
}

/// Watches the folder until `stop` ends; every `every`, a changed fingerprint is loaded and
/// applied.
pub async fn watch(
    state: AppState,
    every: Duration,
    mut last: Fingerprint,
    stop: idlink_engine::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let paths = state.paths().clone();
        let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&paths)).await else {
            continue;
        };
        if now == last {
            continue;
        }
        // Let a writer finish: read again once the files have not moved for a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let paths = state.paths().clone();
        let Ok((settled, loaded)) = tokio::task::spawn_blocking(move || {
            let settled = fingerprint(&paths);
            let loaded = load(&paths);
            (settled, loaded)
        })
        .await
        else {
            continue;
        };
        last = settled;
        state.replace_running(loaded).await;
    }
}

/// Shared, swappable: readers take an `Arc` of what runs now.
pub type Shared = std::sync::RwLock<Arc<Running>>;
