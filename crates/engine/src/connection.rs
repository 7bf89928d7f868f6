//! From a checked configuration to a package instance for one connection: the package, its
//! typed settings, its source roots and the tables the configuration maps.

use std::path::{Path, PathBuf};

use idlink_model::Checked;
use idlink_model::config::Connection;
use idlink_model::diag::did_you_mean;
use idlink_model::package::{Availability, PackageCatalog, PackageInfo};
use idlink_model::settings::typed_json;
use idlink_model::validate::table_belongs_to;
use idlink_packages::api::{Environment, Instance, MappedTable};
use idlink_packages::paths::SourceRoots;
use idlink_packages::{PackageError, Registry};

use crate::EngineError;

/// A connection ready to run.
pub struct OpenConnection<'c> {
    pub connection: &'c Connection,
    pub package: &'static PackageInfo,
    pub instance: Box<dyn Instance>,
    pub env: Environment,
    /// The values of the connection's secured settings: redact them from anything shown.
    pub secrets: Vec<idlink_secrets::Secret>,
}

impl std::fmt::Debug for OpenConnection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenConnection")
            .field("connection", &self.connection.id.value)
            .field("package", &self.package.id)
            .finish()
    }
}

/// Finds connection `id` (case-insensitively), checks its settings against its package and
/// instantiates the package. `config_dir` anchors relative paths when there is no settings file.
pub fn open_connection<'c>(
    checked: &'c Checked,
    id: &str,
    config_dir: &Path,
) -> Result<OpenConnection<'c>, EngineError> {
    let config = &checked.config;
    let connection = config
        .connection(id)
        .ok_or_else(|| EngineError::UnknownConnection {
            id: id.to_string(),
            suggestion: did_you_mean(id, config.connections.iter().map(|c| c.id.value.as_str()))
                .map(str::to_string),
        })?;
    static REGISTRY: Registry = Registry::new();
    let package: &'static PackageInfo =
        REGISTRY
            .get(&connection.package.value)
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
        None if package.settings.fields.is_empty() => serde_json::Value::Object(Default::default()),
        None => {
            return Err(EngineError::MissingSettings {
                connection: connection.id.value.clone(),
                file: settings_file,
            });
        }
    };
    let base_dir: PathBuf = checked
        .settings
        .file
        .as_deref()
        .and_then(|f| Path::new(f).parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| config_dir.to_path_buf());
    let secrets = crate::secured::decrypt_settings(
        &connection.id.value,
        &mut settings,
        package.settings,
        || crate::secured::agent_identity(checked, &base_dir),
    )?;
    let roots: Vec<&str> = checked
        .settings
        .sources_root_paths
        .iter()
        .map(|r| r.value.as_str())
        .collect();
    let env = Environment {
        connection: connection.id.value.clone(),
        base_dir: base_dir.clone(),
        roots: SourceRoots::new(&base_dir, &roots),
        mapped_tables: mapped_tables(checked, &connection.id.value),
    };
    let instance = idlink_packages::instantiate(package, settings, env.clone())?;
    Ok(OpenConnection {
        connection,
        package,
        instance,
        env,
        secrets,
    })
}

/// The connection's tables that entity type and association mappings read, with the columns
/// they use, in configuration order.
pub fn mapped_tables(checked: &Checked, connection: &str) -> Vec<MappedTable> {
    let config = &checked.config;
    let mut tables: Vec<MappedTable> = Vec::new();
    let mut add = |table: &str, columns: &mut dyn Iterator<Item = &str>| {
        if !table_belongs_to(table, connection) {
            return;
        }
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
    tables
}
