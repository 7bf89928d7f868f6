//! What `check` adds to the configuration rules: each connection's settings go through its
//! package's own validation (the same [`idlink_packages::instantiate`] an export runs before it
//! connects), so what a package finds wrong (a bad connection string, `EnableSSL` with
//! `StartTls`, `Tables` without `entries`, a bad `Path` regex, a `Server` holding credentials, a
//! port that is not a number) is reported by `check`, for every connection at once, at the
//! setting's line and column in appsettings.agent.json. Paths the schema marks as
//! [`under_roots`](idlink_model::package::Field::under_roots) are checked against
//! `SourcesRootPaths` too.
//!
//! Nothing here touches a managed system: packages validate without I/O, and the roots check
//! only resolves local folders. Encrypted values (`age:...`) are not decrypted: they count as
//! present, and a package's complaint about one is not reported (its clear text is unknown).

use std::path::{Path, PathBuf};

use idlink_model::package::{Availability, Kind, PackageCatalog, PackageInfo, SettingsSchema};
use idlink_model::settings::{ConnectionSettings, ENCRYPTED_PREFIX, SettingValue, typed_json};
use idlink_model::{Checked, Diagnostic, Loc, Rule, Sp};
use idlink_packages::api::Environment;
use idlink_packages::paths::SourceRoots;
use idlink_packages::{PackageError, Registry};

/// The package-level problems of every connection's settings, located in the settings file.
///
/// Connections whose settings already break a schema rule (`setting-value`,
/// `setting-required`, ...) are left out: the package would only repeat it. `config_dir`
/// anchors relative paths when there is no settings file.
pub fn check_packages(checked: &Checked, config_dir: &Path) -> Vec<Diagnostic> {
    static REGISTRY: Registry = Registry::new();
    let mut out = Vec::new();
    for connection in &checked.config.connections {
        let id = &connection.id.value;
        if id.is_empty() {
            continue;
        }
        let Some(package) = REGISTRY
            .get(&connection.package.value)
            .filter(|p| p.availability == Availability::Supported)
        else {
            continue;
        };
        let Some(settings) = checked.settings.connection(id) else {
            continue;
        };
        if already_reported(checked, settings) {
            continue;
        }
        check_connection(checked, config_dir, package, settings, &mut out);
    }
    out
}

fn check_connection(
    checked: &Checked,
    config_dir: &Path,
    package: &'static PackageInfo,
    settings: &ConnectionSettings,
    out: &mut Vec<Diagnostic>,
) {
    let id = &settings.id.value;
    let base_dir: PathBuf = checked
        .settings
        .file
        .as_deref()
        .and_then(|f| Path::new(f).parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| config_dir.to_path_buf());
    let roots: Vec<&str> = checked
        .settings
        .sources_root_paths
        .iter()
        .map(|r| r.value.as_str())
        .collect();
    let env = Environment {
        connection: id.clone(),
        base_dir: base_dir.clone(),
        roots: SourceRoots::new(&base_dir, &roots),
        mapped_tables: crate::connection::mapped_tables(checked, id),
    };
    let file = checked
        .settings
        .file
        .as_deref()
        .unwrap_or("appsettings.agent.json");
    // Paths that must lie under SourcesRootPaths.
    for field in package.settings.fields.iter().filter(|f| f.under_roots) {
        let Some(value) = settings.get(field.name) else {
            continue;
        };
        let SettingValue::String(path) = &value.value else {
            continue;
        };
        if path.trim().is_empty() || path.starts_with(ENCRYPTED_PREFIX) {
            continue;
        }
        if let Some(why) = outside_roots(&env.roots, &base_dir, &roots, path) {
            out.push(
                Diagnostic::new(
                    Rule::SettingValue,
                    value.at.clone(),
                    format!("Connections.{id}.{}: {why}", field.name),
                )
                .hint(format!(
                    "{} reads and writes only under SourcesRootPaths: move the file there, or add its folder to SourcesRootPaths in {file}",
                    package.id
                )),
            );
        }
    }
    let typed = typed_json(settings, package.settings);
    let secrets = secured_values(&typed, package.settings);
    let error = match idlink_packages::instantiate(package, typed, env) {
        Ok(_) | Err(PackageError::NotAvailable { .. }) => return,
        Err(e) => e,
    };
    let (path, message, at) = match &error {
        PackageError::Settings { path, message, .. } => {
            let steps = parse_path(path);
            let (value, whole) = locate(settings, &steps);
            if whole && value.is_some_and(is_encrypted_value) {
                // About a value whose clear text check cannot see.
                return;
            }
            let at = value.map_or_else(|| settings.id.at.clone(), |v| v.at.clone());
            let shown = if path.is_empty() || path == "." {
                format!("Connections.{id}")
            } else {
                format!("Connections.{id}.{path}")
            };
            (shown, message.clone(), at)
        }
        other => (
            format!("Connections.{id}"),
            other.to_string(),
            settings.id.at.clone(),
        ),
    };
    // One line, whatever the package's message holds; no secured value in it.
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = crate::secured::redact(&format!("{path}: {message}"), &secrets);
    out.push(
        Diagnostic::new(Rule::SettingValue, at, message).hint(format!(
            "{} checks this before it connects (an export would fail on it): fix the setting in {file}",
            package.id
        )),
    );
}

/// Why `path` (relative to `base_dir`) is not under the roots, if it is not. Without touching
/// the file: `..` is resolved as written, then, when the root exists here, links are followed
/// as the package does (the path itself may not exist on this machine yet).
fn outside_roots(
    canonical: &SourceRoots,
    base_dir: &Path,
    roots: &[&str],
    path: &str,
) -> Option<String> {
    if roots.is_empty() {
        return Some(format!(
            "'{path}' cannot be read: SourcesRootPaths is empty, and file packages read only under it"
        ));
    }
    let target = lexical(&base_dir.join(path));
    let within: Vec<PathBuf> = roots
        .iter()
        .map(|r| lexical(&base_dir.join(r)))
        .filter(|r| target.starts_with(r))
        .collect();
    if within.is_empty() {
        return Some(format!(
            "'{path}' is outside SourcesRootPaths ({})",
            roots.join(", ")
        ));
    }
    if within.iter().any(|r| r.is_dir()) {
        if let Err(e @ PackageError::OutsideRoots { .. }) =
            canonical.check_for_write(&base_dir.join(path))
        {
            return Some(e.to_string());
        }
    }
    None
}

/// `path` with `.` and `..` resolved as written (no link followed).
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether a schema check already found an error in these settings.
fn already_reported(checked: &Checked, settings: &ConnectionSettings) -> bool {
    let mut places = vec![settings.id.at.clone()];
    for (key, value) in &settings.entries {
        places.push(key.at.clone());
        collect_locs(value, &mut places);
    }
    checked
        .diagnostics
        .iter()
        .any(|d| d.is_error() && places.contains(&d.at))
}

fn collect_locs(value: &Sp<SettingValue>, out: &mut Vec<Loc>) {
    out.push(value.at.clone());
    match &value.value {
        SettingValue::Array(items) => items.iter().for_each(|i| collect_locs(i, out)),
        SettingValue::Object(entries) => {
            for (k, v) in entries {
                out.push(k.at.clone());
                collect_locs(v, out);
            }
        }
        _ => {}
    }
}

fn is_encrypted_value(value: &Sp<SettingValue>) -> bool {
    matches!(&value.value, SettingValue::String(s) if s.starts_with(ENCRYPTED_PREFIX))
}

/// One step of a package's setting path (`Servers[0].Server`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `Servers[0].Server` -> `Servers`, `0`, `Server`.
fn parse_path(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                steps.push(Step::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(body) = rest.strip_prefix('[') {
                let Some(end) = body.find(']') else { break };
                if let Ok(n) = body[..end].parse() {
                    steps.push(Step::Index(n));
                }
                rest = &body[end + 1..];
            }
        } else {
            steps.push(Step::Key(rest.to_string()));
        }
    }
    steps
}

/// The value at `steps` (keys compare case-insensitively), or the deepest one that exists;
/// `true` when the whole path was found.
fn locate<'a>(
    settings: &'a ConnectionSettings,
    steps: &[Step],
) -> (Option<&'a Sp<SettingValue>>, bool) {
    let Some((Step::Key(first), rest)) = steps.split_first() else {
        return (None, false);
    };
    let Some(mut here) = settings.get(first) else {
        return (None, false);
    };
    for step in rest {
        let next = match (step, &here.value) {
            (Step::Key(k), SettingValue::Object(entries)) => entries
                .iter()
                .rev()
                .find(|(x, _)| x.value.eq_ignore_ascii_case(k))
                .map(|(_, v)| v),
            (Step::Index(i), SettingValue::Array(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => here = n,
            None => return (Some(here), false),
        }
    }
    (Some(here), true)
}

/// The plain values of secured settings (and their `key=value` parts), to keep them out of
/// messages.
fn secured_values(v: &serde_json::Value, schema: &SettingsSchema) -> Vec<idlink_secrets::Secret> {
    let mut out = Vec::new();
    collect_secured(v, schema, &mut out);
    out
}

fn collect_secured(
    v: &serde_json::Value,
    schema: &SettingsSchema,
    out: &mut Vec<idlink_secrets::Secret>,
) {
    let serde_json::Value::Object(map) = v else {
        return;
    };
    for (k, item) in map {
        let Some(field) = schema.field(k) else {
            continue;
        };
        match (item, field.kind) {
            (serde_json::Value::Array(items), Kind::ObjectList(inner)) => {
                items.iter().for_each(|i| collect_secured(i, inner, out));
            }
            (serde_json::Value::Object(m), Kind::Map) if field.secured => {
                out.extend(
                    m.values()
                        .filter_map(|x| x.as_str())
                        .map(idlink_secrets::Secret::new),
                );
            }
            (serde_json::Value::String(s), _) if field.secured => {
                out.push(idlink_secrets::Secret::new(s.clone()));
                for part in s.split(';') {
                    if let Some((_, value)) = part.split_once('=') {
                        out.push(idlink_secrets::Secret::new(
                            value.trim().trim_matches(['"', '\'']),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_paths_parse_into_steps() {
        assert_eq!(
            parse_path("Servers[0].Server"),
            vec![
                Step::Key("Servers".into()),
                Step::Index(0),
                Step::Key("Server".into())
            ]
        );
        assert_eq!(
            parse_path("ValuesToTrim[2]"),
            vec![Step::Key("ValuesToTrim".into()), Step::Index(2)]
        );
        assert_eq!(parse_path("Path"), vec![Step::Key("Path".into())]);
        assert!(parse_path("").is_empty());
    }
}
