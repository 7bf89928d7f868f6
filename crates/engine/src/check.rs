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

use idlink_model::config::Text;
use idlink_model::package::{Availability, PackageInfo};
use idlink_model::settings::{ConnectionSettings, ENCRYPTED_PREFIX, SettingValue, typed_json};
use idlink_model::{Checked, Diagnostic, Loc, Rule, Sp};
use idlink_packages::api::Environment;
use idlink_packages::paths::SourceRoots;
use idlink_secrets::{PathSegment, parse_path};
use idlink_store::SchemaState;

use crate::connection::Site;
use idlink_packages::{PackageError, Registry};

/// The package-level problems of every connection's settings, located in the settings file.
///
/// Connections whose settings already break a schema rule (`setting-value`,
/// `setting-required`, ...) are left out: the package would only repeat it. `config_dir`
/// anchors relative paths when there is no settings file.
pub fn check_packages(
    checked: &Checked,
    registry: &Registry,
    config_dir: &Path,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut tables = crate::connection::mapped_tables_by_connection(checked);
    let site = Site::of(checked, config_dir);
    for connection in &checked.config.connections {
        let id = &connection.id.value;
        if id.is_empty() {
            continue;
        }
        let Some(package) = registry
            .get_static(&connection.package.value)
            .filter(|p| p.availability == Availability::Supported)
        else {
            continue;
        };
        let Some(settings) = checked.settings.connection(id) else {
            // No settings entry (allowed when the package requires nothing): the package's
            // own defaults must still work, e.g. a default folder under SourcesRootPaths.
            if package.settings.optional_as_a_whole()
                && let Err(e) = registry.instantiate(
                    package,
                    serde_json::Value::Object(Default::default()),
                    site.environment(
                        id,
                        tables.remove(&id.to_ascii_lowercase()).unwrap_or_default(),
                    ),
                )
                && !matches!(e, PackageError::NotAvailable { .. })
            {
                out.push(
                    Diagnostic::new(
                        Rule::SettingValue,
                        connection.id.at.clone(),
                        format!("connection '{id}' has no settings, and its package's defaults do not work here: {e}"),
                    )
                    .hint(format!(
                        "add \"Connections\": {{ \"{id}\": {{ ... }} }} to {} with the settings {} needs",
                        checked.settings.file.as_deref().unwrap_or("appsettings.agent.json"),
                        package.id
                    )),
                );
            }
            continue;
        };
        if already_reported(checked, settings) {
            continue;
        }
        let mapped = tables.remove(&id.to_ascii_lowercase()).unwrap_or_default();
        let env = site.environment(id, mapped);
        check_connection(checked, registry, &site, package, settings, env, &mut out);
    }
    out
}

fn check_connection(
    checked: &Checked,
    registry: &Registry,
    site: &Site,
    package: &'static PackageInfo,
    settings: &ConnectionSettings,
    env: Environment,
    out: &mut Vec<Diagnostic>,
) {
    let id = &settings.id.value;
    let base_dir = &site.base_dir;
    let roots: Vec<&str> = site.root_names.iter().map(String::as_str).collect();
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
        if let Some(why) = outside_roots(&env.roots, base_dir, &roots, path) {
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
    let redactor = crate::secured::redactor_for(&typed, package.settings);
    let error = match registry.instantiate(package, typed, env) {
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
    let message = redactor.redact(&format!("{path}: {message}"));
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
    if within.iter().any(|r| r.is_dir())
        && let Err(e @ PackageError::OutsideRoots { .. }) =
            canonical.check_for_write(&base_dir.join(path))
    {
        return Some(e.to_string());
    }
    None
}

/// What the stored schema snapshots (SPEC §7) say about the mappings, applied to `checked`'s
/// diagnostics. A mapped table whose connection has a snapshot is checked against it (so no
/// `ConnectionTable` XML is needed, and its `schema-not-refreshed` warning goes); a table or a
/// column a mapping reads that the latest snapshot lacks is a `schema-drift` warning naming
/// the mapping, the column and the snapshot's time. Connections without a snapshot are left to
/// the configuration rules.
pub fn check_snapshots(checked: &mut Checked, states: &[SchemaState]) {
    let mut covered: Vec<Loc> = Vec::new();
    let mut found: Vec<Diagnostic> = Vec::new();
    let config = &checked.config;
    let mut uses: Vec<(String, &Text, Vec<&Text>)> = Vec::new();
    for m in &config.entity_type_mappings {
        uses.push((
            format!("entity type mapping '{}'", m.id),
            &m.connection_table,
            m.properties.iter().map(|p| &p.connection_column).collect(),
        ));
    }
    for m in &config.entity_association_mappings {
        if let Some(t) = &m.connection_table {
            uses.push((
                format!("entity association mapping '{}'", m.id),
                t,
                vec![&m.column1, &m.column2],
            ));
        }
    }
    for (from, table, columns) in uses {
        if table.value.is_empty() {
            continue;
        }
        let prefix = table.value.split('_').next().unwrap_or_default();
        let Some(connection) = config.connection(prefix) else {
            continue; // reported by the mapping-table rule
        };
        let Some((state, snapshot)) = states
            .iter()
            .filter(|s| s.connection.eq_ignore_ascii_case(&connection.id.value))
            .find_map(|s| s.snapshot.as_ref().map(|snap| (s, snap)))
        else {
            continue;
        };
        covered.push(table.at.clone());
        let when = crate::snapshots::show_time(&snapshot.refreshed_at);
        let id = &connection.id.value;
        let refresh = format!("`idlink refresh-schema --connection {id}`");
        let stale = if state.failure.is_some() {
            "; the last refresh failed, so this is the last good snapshot"
        } else {
            ""
        };
        let Some(schema) = snapshot.schema.table(&table.value) else {
            found.push(
                Diagnostic::new(
                    Rule::SchemaDrift,
                    table.at.clone(),
                    format!(
                        "{from} reads table '{}', which is not in the latest schema snapshot of connection '{id}' (refreshed {when}){stale}",
                        table.value
                    ),
                )
                .hint(format!(
                    "the source no longer exports it, or the mapping names it wrongly: correct the mapping, or run {refresh} again once the source has it"
                ))
                .did_you_mean(
                    &table.value,
                    snapshot.schema.tables.iter().map(|t| t.name.as_str()),
                ),
            );
            continue;
        };
        for column in columns {
            if column.value.is_empty() || schema.column(&column.value).is_some() {
                continue;
            }
            found.push(
                Diagnostic::new(
                    Rule::SchemaDrift,
                    column.at.clone(),
                    format!(
                        "{from} reads column '{}', which table '{}' does not have in the latest schema snapshot of connection '{id}' (refreshed {when}){stale}",
                        column.value, schema.name
                    ),
                )
                .hint(format!(
                    "the source dropped or renamed it: map another column, or run {refresh} again once the source has it"
                ))
                .did_you_mean(&column.value, schema.columns.iter().map(|c| c.name.as_str())),
            );
        }
    }
    checked
        .diagnostics
        .retain(|d| !(d.rule == Rule::SchemaNotRefreshed && covered.contains(&d.at)));
    for d in found {
        checked.diagnostics.push(d);
    }
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

/// The value at `steps` (keys compare case-insensitively), or the deepest one that exists;
/// `true` when the whole path was found.
fn locate<'a>(
    settings: &'a ConnectionSettings,
    steps: &[PathSegment],
) -> (Option<&'a Sp<SettingValue>>, bool) {
    let Some((PathSegment::Key(first), rest)) = steps.split_first() else {
        return (None, false);
    };
    let Some(mut here) = settings.get(first) else {
        return (None, false);
    };
    for step in rest {
        let next = match (step, &here.value) {
            (PathSegment::Key(k), SettingValue::Object(entries)) => entries
                .iter()
                .rev()
                .find(|(x, _)| x.value.eq_ignore_ascii_case(k))
                .map(|(_, v)| v),
            (PathSegment::Index(i), SettingValue::Array(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => here = n,
            None => return (Some(here), false),
        }
    }
    (Some(here), true)
}

#[cfg(test)]
mod tests {
    use idlink_model::package::{Kind, PackageCatalog, SettingsSchema};
    use idlink_packages::api::Environment;

    use super::*;

    #[test]
    fn package_paths_parse_into_steps() {
        assert_eq!(
            parse_path("Servers[0].Server"),
            vec![
                PathSegment::Key("Servers".into()),
                PathSegment::Index(0),
                PathSegment::Key("Server".into())
            ]
        );
        assert_eq!(
            parse_path("ValuesToTrim[2]"),
            vec![
                PathSegment::Key("ValuesToTrim".into()),
                PathSegment::Index(2)
            ]
        );
        assert_eq!(parse_path("Path"), vec![PathSegment::Key("Path".into())]);
        assert!(parse_path("").is_empty());
    }

    use idlink_model::package::Constraint;
    use serde_json::{Value, json};

    /// Values for settings whose package checks more than their kind.
    fn sample_override(package: &str, path: &str) -> Option<Value> {
        if package.starts_with("Usercube.SCIM") {
            match path {
                "Server" => return Some(json!("https://scim.example.org/scim")),
                "OAuth2Url" => return Some(json!("https://login.example.org/oauth2/token")),
                "Filter" => return Some(json!("Users|?filter=active eq \"true\"*Groups")),
                _ => {}
            }
        }
        let sql_cs = || match package {
            p if p.contains("MySQL") => "Server=localhost;Database=x;Uid=u",
            p if p.contains("SQLite") => "Data Source=x.db",
            p if p.contains("PostgreSQL") => "Host=localhost;Database=x;Username=u",
            _ => "postgres://u@localhost/x",
        };
        Some(match path {
            "ConnectionString" => json!(sql_cs()),
            "IsolationLevel" => json!("ReadCommitted"),
            "Servers.Server" => json!("localhost:389"),
            "Servers.Controls" => json!(["PagedResult"]),
            "Tables.Table" => json!("entries"),
            "Tables.Filter" => json!("(objectClass=*)"),
            "Tables.BaseDN" => json!("dc=example,dc=org"),
            // The OpenLDAP page's flat shape.
            "Filter" => json!("(objectClass=*)"),
            "Path" | "PathIncremental" => json!("data/x.csv"),
            "LDIFFile" => json!("data/x.ldif"),
            "FilterAttribute" => json!("objectClass"),
            "OutputPath" => json!("data/out"),
            "SecuredOptions" => json!({"Password": "x"}),
            _ => return None,
        })
    }

    /// A value of `kind` that its own check accepts.
    fn sample(package: &str, path: &str, kind: Kind) -> Value {
        if let Some(v) = sample_override(package, path) {
            return v;
        }
        match kind {
            Kind::String => json!("x"),
            Kind::CheckedString(check) => [",", "UTF-8", "x", "1"]
                .into_iter()
                .find(|c| check(c).is_ok())
                .map_or(json!("x"), |c| json!(c)),
            Kind::Bool => json!(false),
            Kind::Int { min, max } => json!(1.clamp(min, max)),
            Kind::Enum(values) => json!(values.first().copied().unwrap_or("x")),
            Kind::StringList => json!(["x"]),
            Kind::ObjectList(inner) => json!([document(package, path, inner, &[])]),
            Kind::Map => json!({"Key": "value"}),
        }
    }

    /// Every field of `schema`, but for those `skip` names (one side of an AtMostOne).
    fn document(package: &str, prefix: &str, schema: &SettingsSchema, skip: &[&str]) -> Value {
        let mut map = serde_json::Map::new();
        for f in schema
            .fields
            .iter()
            .filter(|f| !skip.contains(&f.name) && !UNUSABLE.contains(&(package, f.name)))
        {
            let path = if prefix.is_empty() {
                f.name.to_string()
            } else {
                format!("{prefix}.{}", f.name)
            };
            map.insert(f.name.to_string(), sample(package, &path, f.kind));
        }
        // Settings that mean something only together: both or neither.
        for (prefix_of, a, b) in PAIRS {
            if package.starts_with(prefix_of) && map.contains_key(*a) != map.contains_key(*b) {
                map.remove(*a);
                map.remove(*b);
            }
        }
        Value::Object(map)
    }

    /// Documents that together hold every field: for each documented shape of the settings
    /// (`OneShapeOf`), the documents of that shape alone.
    fn documents(package: &PackageInfo) -> Vec<Value> {
        let shapes: Vec<&[&[&str]]> = package
            .settings
            .constraints
            .iter()
            .filter_map(|c| match c {
                Constraint::OneShapeOf(shapes) => Some(*shapes),
                _ => None,
            })
            .collect();
        let Some(shapes) = shapes.first() else {
            return documents_of_shape(package, &[]);
        };
        let mut out = Vec::new();
        for (i, _) in shapes.iter().enumerate() {
            let others: Vec<&str> = shapes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, s)| s.iter().copied())
                .collect();
            out.extend(documents_of_shape(package, &others));
        }
        out
    }

    /// For each AtMostOne group, one document per member (the others left out), without the
    /// fields `shape_skip` names.
    fn documents_of_shape(package: &PackageInfo, shape_skip: &[&str]) -> Vec<Value> {
        let groups: Vec<&[&str]> = package
            .settings
            .constraints
            .iter()
            .filter_map(|c| match c {
                Constraint::AtMostOne(names) => Some(*names),
                _ => None,
            })
            .collect();
        if groups.is_empty() {
            return vec![document(package.id, "", package.settings, shape_skip)];
        }
        let mut out = Vec::new();
        for group in &groups {
            for keep in group.iter() {
                let skip: Vec<&str> = groups
                    .iter()
                    .flat_map(|g| g.iter().copied())
                    .filter(|n| n != keep && (group.contains(n) || !g_first(&groups, n)))
                    .chain(shape_skip.iter().copied())
                    .collect();
                out.push(document(package.id, "", package.settings, &skip));
            }
        }
        out
    }

    /// Whether `name` is the first member of its AtMostOne group (kept when another group varies).
    fn g_first(groups: &[&[&str]], name: &str) -> bool {
        groups.iter().any(|g| g.first() == Some(&name))
    }

    fn env() -> Environment {
        let base = std::env::temp_dir();
        Environment {
            connection: "Sample".into(),
            roots: SourceRoots::new(&base, &["data"]),
            base_dir: base,
            mapped_tables: Vec::new(),
        }
    }

    /// Fields a schema declares that its package refuses whatever their value (findings for
    /// the package's owner): generic SQL takes only URL connection strings, into which
    /// SecuredOptions cannot merge.
    const UNUSABLE: &[(&str, &str)] = &[("Usercube.SQL@0000001", "SecuredOptions")];

    /// Settings of a package (by identifier prefix) that only mean something together.
    const PAIRS: &[(&str, &str, &str)] = &[("Usercube.SCIM", "Login", "Password")];

    /// Supported in the registry, but no code runs them yet: `instantiate` says so.
    const NOT_IMPLEMENTED: &[&str] = &["Usercube.Manual@0000001", "Usercube.Custom@0000001"];

    /// Parsers that ignore fields they do not know, so only one direction can be checked here:
    /// adding `#[serde(deny_unknown_fields)]` to their raw settings (as CSV, LDIF and
    /// FulfillToFile have) lets this test check the other one; it fails when one does, so
    /// the list stays true.
    const LENIENT: &[&str] = &[
        "Idlink.SQL.SQLite@0000001",
        "Usercube.SQL@0000001",
        "Usercube.SQL.PostgreSQL@0000001",
        "Usercube.SQL.MySQL@0000001",
        "Usercube.LDAP@0000001",
        "Usercube.OpenLDAP@0000001",
    ];

    /// "Describe each package's settings once" (issue #8): the settings schema (what `check`,
    /// `protect` and the docs read) and each package's parser (what runs) must agree. For
    /// every supported package: a document holding every field the schema declares is
    /// accepted by the parser, and a field the schema lacks is refused by it, whose list of
    /// the fields it knows is exactly the schema's.
    #[test]
    fn every_package_parser_accepts_exactly_the_fields_its_schema_declares() {
        static REGISTRY: Registry = Registry::new();
        let mut failures = Vec::new();
        let mut checked = 0;
        for package in REGISTRY
            .all()
            .filter(|p| p.availability == Availability::Supported)
        {
            for doc in documents(package) {
                match idlink_packages::instantiate(package, doc.clone(), env()) {
                    Ok(_) => {}
                    Err(PackageError::NotAvailable { .. })
                        if NOT_IMPLEMENTED.contains(&package.id) => {}
                    Err(e) => failures.push(format!("{}: {doc} refused: {e}", package.id)),
                }
            }
            if NOT_IMPLEMENTED.contains(&package.id) {
                continue;
            }
            checked += 1;
            let mut doc = documents(package).remove(0);
            if let Value::Object(map) = &mut doc {
                map.insert("ZzNotInTheSchema".into(), json!("x"));
            }
            let known: Option<Vec<String>> = match idlink_packages::instantiate(package, doc, env())
            {
                Err(PackageError::Settings { message, .. })
                    if message.contains("unknown field `ZzNotInTheSchema`") =>
                {
                    let expected = message.split("expected").nth(1).unwrap_or_default();
                    Some(
                        expected
                            .split('`')
                            .skip(1)
                            .step_by(2)
                            .map(str::to_string)
                            .collect(),
                    )
                }
                _ => None,
            };
            match (known, LENIENT.contains(&package.id)) {
                (Some(mut parser), false) => {
                    let mut schema: Vec<String> =
                        package.settings.fields.iter().map(|f| f.name.to_string()).collect();
                    parser.sort();
                    schema.sort();
                    if parser != schema {
                        failures.push(format!(
                            "{}: the parser knows {parser:?}, the schema declares {schema:?}",
                            package.id
                        ));
                    }
                }
                (None, true) => {}
                (Some(_), true) => failures.push(format!(
                    "{}: its parser now refuses unknown fields: remove it from LENIENT",
                    package.id
                )),
                (None, false) => failures.push(format!(
                    "{}: its parser accepts a field its schema lacks (add #[serde(deny_unknown_fields)])",
                    package.id
                )),
            }
        }
        assert!(checked >= 8, "only {checked} packages checked");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
