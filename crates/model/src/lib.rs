//! The idlink configuration model.
//!
//! Loading goes parse -> validate -> model: the XML files of a configuration folder and
//! `appsettings.agent.json` are read into typed values that keep their file, line and column;
//! then every rule of SPEC §2.2 runs, and all problems come back together as [`Diagnostics`].

pub mod config;
pub mod diag;
pub mod expr;
pub mod package;
pub mod schema;
pub mod settings;
pub mod text;
pub mod validate;
pub mod values;
pub mod xml;

use std::path::Path;

use serde::Serialize;

pub use config::Configuration;
pub use diag::{Diagnostic, Diagnostics, Loc, Rule, Severity, Sp};
pub use settings::AgentSettings;
pub use xml::LoadError;

/// Where the agent settings come from.
#[derive(Debug, Clone, Copy)]
pub struct SettingsSource<'a> {
    pub path: &'a Path,
    /// Named by the user (`--settings`): a missing file is an error. Otherwise a missing file
    /// means "no settings yet", and each connection is reported as lacking its settings.
    pub explicit: bool,
}

/// A loaded and validated configuration.
#[derive(Debug)]
pub struct Checked {
    pub config: Configuration,
    pub settings: AgentSettings,
    /// Loader and rule diagnostics, sorted by location.
    pub diagnostics: Diagnostics,
}

impl Checked {
    pub fn is_valid(&self) -> bool {
        !self.diagnostics.has_errors()
    }

    pub fn summary(&self) -> Summary {
        let c = &self.config;
        Summary {
            files: c.files.len(),
            connectors: c.connectors.len(),
            connections: c.connections.len(),
            entity_types: c.entity_types.len(),
            mappings: c.entity_type_mappings.len() + c.entity_association_mappings.len(),
            resource_types: c.resource_types.len(),
            resource_type_mappings: c.resource_type_mappings.len(),
            jobs: c.jobs.len(),
            errors: self.diagnostics.errors(),
            warnings: self.diagnostics.warnings(),
        }
    }
}

/// Element counts for the one-line summary of `idlink check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub files: usize,
    pub connectors: usize,
    pub connections: usize,
    pub entity_types: usize,
    /// Entity type mappings and entity association mappings.
    pub mappings: usize,
    pub resource_types: usize,
    pub resource_type_mappings: usize,
    pub jobs: usize,
    pub errors: usize,
    pub warnings: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn n(count: usize, one: &str, many: &str) -> String {
            format!("{count} {}", if count == 1 { one } else { many })
        }
        write!(
            f,
            "{}, {}, {}, {}, {}, {} ({}, {}, {})",
            n(self.connectors, "connector", "connectors"),
            n(self.connections, "connection", "connections"),
            n(self.entity_types, "entity type", "entity types"),
            n(self.mappings, "mapping", "mappings"),
            n(self.resource_types, "resource type", "resource types"),
            n(self.jobs, "job", "jobs"),
            n(self.files, "file", "files"),
            n(self.errors, "error", "errors"),
            n(self.warnings, "warning", "warnings"),
        )
    }
}

/// Loads a configuration folder and its agent settings (with `IDLINK__` overrides from `env`)
/// and runs every rule. I/O problems that leave nothing to check are errors; everything else
/// is a diagnostic in the result.
pub fn load_and_check<I, K, V>(
    config_dir: &Path,
    settings: SettingsSource<'_>,
    env: I,
    catalog: &dyn package::PackageCatalog,
) -> Result<Checked, LoadError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    load_and_check_with(config_dir, settings, env, catalog, &|p: &Path| {
        std::fs::read(p)
    })
}

/// [`load_and_check`], reading every file (XML, settings, encrypted settings) through `read`:
/// the server checks an edit this way, with the edited texts under their real names, before it
/// writes them.
pub fn load_and_check_with<I, K, V>(
    config_dir: &Path,
    settings: SettingsSource<'_>,
    env: I,
    catalog: &dyn package::PackageCatalog,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Checked, LoadError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let (config, mut diagnostics) = xml::load_dir_with(config_dir, read)?;
    let mut agent = match read(settings.path) {
        Ok(bytes) => settings::parse(
            &settings.path.display().to_string(),
            &bytes,
            &mut diagnostics,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !settings.explicit => {
            AgentSettings::empty(Some(settings.path.display().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::MissingSettingsFile(settings.path.to_path_buf()));
        }
        Err(e) => {
            return Err(LoadError::Io {
                path: settings.path.to_path_buf(),
                source: e,
            });
        }
    };
    settings::apply_env(&mut agent, env, &mut diagnostics);
    let schema_of = |id: &str| {
        let connection = config.connection(id)?;
        catalog
            .get(&connection.package.value)
            .filter(|p| p.availability == package::Availability::Supported)
            .map(|p| p.settings)
    };
    settings::check_encrypted_in_plain(&agent, schema_of, &mut diagnostics);
    // The encrypted companion file overrides both (SPEC §2.3).
    let encrypted = settings
        .path
        .with_file_name(settings::ENCRYPTED_SETTINGS_FILE);
    match read(&encrypted) {
        Ok(bytes) => {
            let top = settings::parse(&encrypted.display().to_string(), &bytes, &mut diagnostics);
            settings::check_encrypted(&agent, &top, schema_of, &mut diagnostics);
            settings::overlay(&mut agent, top);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(LoadError::Io {
                path: encrypted,
                source: e,
            });
        }
    }
    diagnostics.extend(validate::validate(&config, &agent, catalog));
    diagnostics.sort();
    Ok(Checked {
        config,
        settings: agent,
        diagnostics,
    })
}
