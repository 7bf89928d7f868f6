//! From a checked configuration to a package instance for one connection: the package, its
//! typed settings (secured values decrypted), its source roots and the tables the configuration
//! maps. An [`Opened`] connection is owned and `'static`: it can be moved into a spawned task.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use idlink_model::Checked;
use idlink_model::config::Connection;
use idlink_model::diag::did_you_mean;
use idlink_model::package::{Availability, PackageInfo};
use idlink_model::settings::typed_json;
use idlink_packages::PackageError;
use idlink_packages::api::{Environment, Instance, MappedTable};
use idlink_packages::paths::SourceRoots;
use idlink_secrets::Redactor;

use crate::{Engine, EngineError};

/// A connection ready to run.
#[derive(Clone)]
pub struct Opened {
    engine: Engine,
    index: usize,
    pub package: &'static PackageInfo,
    pub instance: Arc<dyn Instance>,
    pub env: Environment,
    redactor: Redactor,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("connection", &self.id())
            .field("package", &self.package.id)
            .finish()
    }
}

impl Opened {
    /// The connection as the configuration declares it.
    pub fn connection(&self) -> &Connection {
        &self.engine.checked().config.connections[self.index]
    }

    /// The connection's identifier as declared (whatever case it was asked for in).
    pub fn id(&self) -> &str {
        &self.connection().id.value
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The values to hide from anything shown (the connection's secured settings).
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// `text` with the connection's secret values replaced by `**REDACTED**`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    pub(crate) fn unsupported(&self, capability: &'static str) -> EngineError {
        EngineError::Unsupported {
            connection: self.id().to_string(),
            package: self.package.id.to_string(),
            capability,
        }
    }
}

fn find(checked: &Checked, id: &str) -> Result<usize, EngineError> {
    let config = &checked.config;
    config
        .connections
        .iter()
        .position(|c| c.id.value.eq_ignore_ascii_case(id))
        .ok_or_else(|| EngineError::UnknownConnection {
            id: id.to_string(),
            suggestion: did_you_mean(id, config.connections.iter().map(|c| c.id.value.as_str()))
                .map(str::to_string),
        })
}

impl Engine {
    /// Finds connection `id` (case-insensitively), checks its settings against its package,
    /// decrypts its secured settings and instantiates the package. No I/O with the system.
    pub fn open(&self, id: &str) -> Result<Opened, EngineError> {
        let checked = self.checked();
        let index = find(checked, id)?;
        let connection = &checked.config.connections[index];
        let package: &'static PackageInfo = self
            .registry()
            .get_static(&connection.package.value)
            .ok_or_else(|| EngineError::UnknownPackage {
            connection: connection.id.value.clone(),
            package: connection.package.value.clone(),
        })?;
        if package.availability == Availability::DocumentedOnly {
            return Err(PackageError::NotAvailable {
                package: package.id.to_string(),
            }
            .into());
        }
        let settings_file = checked
            .settings
            .file
            .clone()
            .unwrap_or_else(|| "appsettings.agent.json".into());
        let mut settings = match checked.settings.connection(&connection.id.value) {
            Some(s) => typed_json(s, package.settings),
            // A package none of whose settings is required runs without any (FulfillToFile).
            None if package.settings.optional_as_a_whole() => {
                serde_json::Value::Object(Default::default())
            }
            None => {
                return Err(EngineError::MissingSettings {
                    connection: connection.id.value.clone(),
                    file: settings_file,
                });
            }
        };
        let mut site = Site::of(checked, self.config_dir());
        if self.inner.confinement.programs {
            site.roots = site.roots.confining_programs();
        }
        let redactor = crate::secured::decrypt_settings(
            &connection.id.value,
            &mut settings,
            (package.settings, self.inner.confinement.secrets),
            || crate::secured::agent_identity(checked, &site.base_dir),
        )?;
        let env = site.environment(
            &connection.id.value,
            mapped_tables(checked, &connection.id.value),
        );
        let instance = self
            .registry()
            .instantiate(package, settings, env.clone())
            .map_err(|e| match e {
                // A package's settings message may quote a value: hide the secret ones.
                PackageError::Settings {
                    connection,
                    path,
                    message,
                } => PackageError::Settings {
                    connection,
                    path,
                    message: redactor.redact(&message),
                },
                other => other,
            })?;
        Ok(Opened {
            engine: self.clone(),
            index,
            package,
            instance: Arc::from(instance),
            env,
            redactor,
        })
    }
}

/// Where a configuration's packages run: the folder relative settings paths start from and
/// the resolved `SourcesRootPaths`, the same for every connection (resolved once).
#[derive(Debug, Clone)]
pub struct Site {
    pub base_dir: PathBuf,
    /// `SourcesRootPaths` as written.
    pub root_names: Vec<String>,
    pub roots: SourceRoots,
}

impl Site {
    pub fn of(checked: &Checked, config_dir: &Path) -> Site {
        let base_dir = settings_base_dir(checked, config_dir);
        let root_names: Vec<String> = checked
            .settings
            .sources_root_paths
            .iter()
            .map(|r| r.value.clone())
            .collect();
        let names: Vec<&str> = root_names.iter().map(String::as_str).collect();
        Site {
            roots: SourceRoots::new(&base_dir, &names),
            base_dir,
            root_names,
        }
    }

    /// What a package instance of connection `id` is given, with the tables mapped from it.
    pub fn environment(&self, id: &str, mapped_tables: Vec<MappedTable>) -> Environment {
        Environment {
            connection: id.to_string(),
            base_dir: self.base_dir.clone(),
            roots: self.roots.clone(),
            mapped_tables,
        }
    }
}

/// Relative paths in settings are relative to the settings file's folder (else the
/// configuration folder).
pub fn settings_base_dir(checked: &Checked, config_dir: &Path) -> PathBuf {
    checked
        .settings
        .file
        .as_deref()
        .and_then(|f| Path::new(f).parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| config_dir.to_path_buf())
}

/// The connection's tables that entity type and association mappings read, with the columns
/// they use, in configuration order.
pub fn mapped_tables(checked: &Checked, connection: &str) -> Vec<MappedTable> {
    mapped_tables_by_connection(checked)
        .remove(&connection.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Every connection's mapped tables (see [`mapped_tables`]) by lower-cased connection
/// identifier, in one pass over the mappings: a table `<connection>` or
/// `<connection>_<suffix>` belongs to the connection before its first `_` (connection
/// identifiers have none).
pub fn mapped_tables_by_connection(
    checked: &Checked,
) -> std::collections::HashMap<String, Vec<MappedTable>> {
    let config = &checked.config;
    let mut by: std::collections::HashMap<String, Vec<MappedTable>> =
        std::collections::HashMap::new();
    let mut add = |table: &str, columns: &mut dyn Iterator<Item = &str>| {
        let connection = table.split('_').next().unwrap_or(table);
        if connection.is_empty() {
            return;
        }
        let tables = by.entry(connection.to_ascii_lowercase()).or_default();
        let i = match tables
            .iter()
            .position(|t| t.name.eq_ignore_ascii_case(table))
        {
            Some(i) => i,
            None => {
                let suffix = table
                    .get(connection.len() + 1..)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                tables.push(MappedTable {
                    name: table.to_string(),
                    suffix,
                    columns: Vec::new(),
                });
                tables.len() - 1
            }
        };
        for c in columns {
            if !c.is_empty() && !tables[i].columns.iter().any(|x| x == c) {
                tables[i].columns.push(c.to_string());
            }
        }
    };
    for m in &config.entity_type_mappings {
        add(
            &m.connection_table.value,
            &mut m
                .properties
                .iter()
                .map(|p| p.connection_column.value.as_str()),
        );
    }
    for m in &config.entity_association_mappings {
        if let Some(t) = &m.connection_table {
            add(
                &t.value,
                &mut [m.column1.value.as_str(), m.column2.value.as_str()].into_iter(),
            );
        }
    }
    by
}
