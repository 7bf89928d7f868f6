//! The rules of SPEC §2.2, run over a loaded configuration and its agent settings. Every rule
//! runs; every problem is collected.

use std::collections::HashMap;
use std::str::FromStr;

use crate::config::*;
use crate::diag::{Diagnostic, Diagnostics, Loc, Rule, Sp};
use crate::expr::Expr;
use crate::package::{Availability, PackageCatalog, PackageInfo};
use crate::settings::{self, AgentSettings};

/// Longest connection identifier: a letter then up to 441 more characters.
pub const MAX_CONNECTION_ID_LEN: usize = 442;

/// Runs every rule and returns what it found (loader diagnostics are not included).
pub fn validate(
    config: &Configuration,
    settings: &AgentSettings,
    catalog: &dyn PackageCatalog,
) -> Diagnostics {
    let mut v = Validator {
        config,
        settings,
        catalog,
        ix: Index::build(config),
        diags: Diagnostics::default(),
    };
    v.identifiers();
    v.connectors();
    v.connections();
    v.connection_tables();
    v.entity_types();
    v.entity_type_mappings();
    v.entity_association_mappings();
    v.resource_types();
    v.resource_type_mappings();
    v.jobs();
    v.agent_settings();
    v.diags
}

/// Rule 2: `reference` names an element of `kind` in `map`. Empty references were already
/// reported by the loader (missing attribute) and are skipped here.
fn resolve<T>(
    diags: &mut Diagnostics,
    map: &HashMap<&str, T>,
    reference: &Text,
    kind: &str,
    from: &str,
) -> bool {
    if reference.value.is_empty() {
        return false;
    }
    if map.contains_key(reference.value.as_str()) {
        return true;
    }
    diags.push(
        Diagnostic::new(
            Rule::UnresolvedReference,
            reference.at.clone(),
            format!(
                "{from} refers to {kind} '{}', which is not declared",
                reference.value
            ),
        )
        .hint(format!(
            "declare <{kind} Identifier=\"{}\" .../> or correct the name",
            reference.value
        ))
        .did_you_mean(&reference.value, map.keys().copied()),
    );
    false
}

/// The 1-based character position of byte `offset` in `text`, and `text` with that place
/// marked (at most 40 characters on each side).
fn mark_offset(text: &str, offset: usize) -> (usize, String) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let (before, after) = text.split_at(offset);
    let n = before.chars().count() + 1;
    let head: Vec<char> = before.chars().rev().take(41).collect();
    let head: String = if head.len() > 40 {
        std::iter::once('…')
            .chain(head[..40].iter().rev().copied())
            .collect()
    } else {
        head.iter().rev().collect()
    };
    let mut tail: String = after.chars().take(40).collect();
    if after.chars().nth(40).is_some() {
        tail.push('…');
    }
    (n, format!("{head}⟪here⟫{tail}"))
}

/// Lookups by identifier. Connections and connection tables are keyed case-insensitively.
struct Index<'c> {
    agents: HashMap<&'c str, &'c Agent>,
    connectors: HashMap<&'c str, &'c Connector>,
    connections: HashMap<String, &'c Connection>,
    tables: HashMap<String, &'c ConnectionTable>,
    entity_types: HashMap<&'c str, &'c EntityType>,
    associations: HashMap<&'c str, &'c EntityAssociation>,
    /// `EntityType:Property` of each association end -> the entity type at the other end.
    navigations: HashMap<(&'c str, &'c str), &'c str>,
    entity_type_mappings: HashMap<&'c str, Vec<&'c EntityTypeMapping>>,
    resource_types: HashMap<&'c str, &'c ResourceType>,
    resource_type_mappings: HashMap<&'c str, &'c ResourceTypeMapping>,
}

fn by_id<T>(items: &[T], id: impl Fn(&T) -> &Text) -> HashMap<&str, &T> {
    let mut map = HashMap::with_capacity(items.len());
    for item in items {
        map.entry(id(item).value.as_str()).or_insert(item);
    }
    map
}

impl<'c> Index<'c> {
    fn build(c: &'c Configuration) -> Self {
        let mut connections = HashMap::with_capacity(c.connections.len());
        for conn in &c.connections {
            connections
                .entry(conn.id.value.to_lowercase())
                .or_insert(conn);
        }
        let mut tables = HashMap::with_capacity(c.connection_tables.len());
        for t in &c.connection_tables {
            tables.entry(t.id.value.to_lowercase()).or_insert(t);
        }
        let mut navigations = HashMap::new();
        for a in &c.entity_associations {
            let (p1, p2) = (&a.property1.value, &a.property2.value);
            navigations.insert(
                (p1.entity_type.as_str(), p1.property.as_str()),
                p2.entity_type.as_str(),
            );
            navigations.insert(
                (p2.entity_type.as_str(), p2.property.as_str()),
                p1.entity_type.as_str(),
            );
        }
        let mut entity_type_mappings: HashMap<&str, Vec<&EntityTypeMapping>> = HashMap::new();
        for m in &c.entity_type_mappings {
            entity_type_mappings
                .entry(m.id.value.as_str())
                .or_default()
                .push(m);
        }
        Index {
            agents: by_id(&c.agents, |a| &a.id),
            connectors: by_id(&c.connectors, |a| &a.id),
            connections,
            tables,
            entity_types: by_id(&c.entity_types, |a| &a.id),
            associations: by_id(&c.entity_associations, |a| &a.id),
            navigations,
            entity_type_mappings,
            resource_types: by_id(&c.resource_types, |a| &a.id),
            resource_type_mappings: by_id(&c.resource_type_mappings, |a| &a.id),
        }
    }

    fn connection(&self, id: &str) -> Option<&'c Connection> {
        self.connections.get(&id.to_lowercase()).copied()
    }
}

struct Validator<'c> {
    config: &'c Configuration,
    settings: &'c AgentSettings,
    catalog: &'c dyn PackageCatalog,
    ix: Index<'c>,
    diags: Diagnostics,
}

impl<'c> Validator<'c> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn resolve_connection(&mut self, reference: &Text, from: &str) -> Option<&'c Connection> {
        if reference.value.is_empty() {
            return None;
        }
        let found = self.ix.connection(&reference.value);
        if found.is_none() {
            let names: Vec<&str> = self
                .config
                .connections
                .iter()
                .map(|c| c.id.value.as_str())
                .collect();
            self.push(
                Diagnostic::new(
                    Rule::UnresolvedReference,
                    reference.at.clone(),
                    format!(
                        "{from} refers to connection '{}', which is not declared",
                        reference.value
                    ),
                )
                .hint(format!(
                    "declare <Connection Identifier=\"{}\" .../> or correct the name",
                    reference.value
                ))
                .did_you_mean(&reference.value, names),
            );
        }
        found
    }

    /// Rule 2: `EntityType:Property` resolves to a declared property.
    fn resolve_property_ref(&mut self, r: &Sp<PropertyRef>, from: &str) -> bool {
        let p = &r.value;
        if p.entity_type.is_empty() {
            return false;
        }
        let Some(et) = self.ix.entity_types.get(p.entity_type.as_str()).copied() else {
            let names: Vec<&str> = self.ix.entity_types.keys().copied().collect();
            self.push(
                Diagnostic::new(
                    Rule::UnresolvedReference,
                    r.at.clone(),
                    format!(
                        "{from} refers to entity type '{}', which is not declared",
                        p.entity_type
                    ),
                )
                .hint("declare the entity type or correct the name")
                .did_you_mean(&p.entity_type, names),
            );
            return false;
        };
        if et.property(&p.property).is_some() {
            return true;
        }
        self.push(
            Diagnostic::new(
                Rule::UnresolvedReference,
                r.at.clone(),
                format!("{from} refers to property '{}' of entity type '{}', which has no such property", p.property, p.entity_type),
            )
            .hint(format!("add <Property Identifier=\"{}\" .../> to entity type '{}' or correct the name", p.property, p.entity_type))
            .did_you_mean(&p.property, et.properties.iter().map(|q| q.id.value.as_str())),
        );
        false
    }

    /// A property path (`manager.department.name`) starting at `et`: every segment but the last
    /// must be a navigation property (an association end).
    ///
    /// A binding may start with an entity type and a colon (`Directory_UserRecord:Mail`): the
    /// path is then resolved from that entity type when it is declared, else from `et_id`.
    fn resolve_path(&mut self, et_id: &str, path: &Text, from: &str) {
        let (prefix, rest) = binding_parts(&path.value);
        let mut current = match prefix {
            Some(p) => match self.ix.entity_types.get_key_value(p) {
                Some((k, _)) => *k,
                None => et_id,
            },
            None => et_id,
        };
        for seg in rest.split('.') {
            let Some(et) = self.ix.entity_types.get(current).copied() else {
                return;
            };
            if et.property(seg).is_none() {
                self.push(
                    Diagnostic::new(
                        Rule::UnresolvedReference,
                        path.at.clone(),
                        format!("{from}: '{}' names property '{seg}', which entity type '{current}' does not have", path.value),
                    )
                    .hint(format!("use a property of '{current}'"))
                    .did_you_mean(seg, et.properties.iter().map(|q| q.id.value.as_str())),
                );
                return;
            }
            match self.ix.navigations.get(&(current, seg)) {
                Some(next) => current = next,
                None => current = "",
            }
        }
    }

    fn package_of(&self, conn: &Connection) -> Option<&'c PackageInfo> {
        self.catalog.get(&conn.package.value)
    }

    /// Rule 1: identifiers are unique per kind; connections also keep to their form.
    fn identifiers(&mut self) {
        let c = self.config;
        self.unique("agent", c.agents.iter().map(|x| &x.id), false);
        self.unique("connector", c.connectors.iter().map(|x| &x.id), false);
        self.unique("connection", c.connections.iter().map(|x| &x.id), true);
        self.unique(
            "connection table",
            c.connection_tables.iter().map(|x| &x.id),
            true,
        );
        self.unique("entity type", c.entity_types.iter().map(|x| &x.id), false);
        self.unique(
            "entity association",
            c.entity_associations.iter().map(|x| &x.id),
            false,
        );
        self.unique(
            "entity type mapping",
            c.entity_type_mappings.iter().map(|x| &x.id),
            false,
        );
        self.unique(
            "entity association mapping",
            c.entity_association_mappings.iter().map(|x| &x.id),
            false,
        );
        self.unique(
            "resource type",
            c.resource_types.iter().map(|x| &x.id),
            false,
        );
        self.unique(
            "resource type mapping",
            c.resource_type_mappings.iter().map(|x| &x.id),
            false,
        );
        self.unique("job", c.jobs.iter().map(|x| &x.id), false);
        self.unique(
            "stand-alone task",
            c.tasks.iter().filter_map(Task::id),
            false,
        );
        for job in &c.jobs {
            self.unique(
                &format!("task of job '{}'", job.id),
                job.inline_tasks().filter_map(Task::id),
                false,
            );
        }
        for et in &c.entity_types {
            self.unique(
                &format!("property of entity type '{}'", et.id),
                et.properties.iter().map(|p| &p.id),
                false,
            );
        }
        for t in &c.connection_tables {
            self.unique(
                &format!("column of table '{}'", t.id),
                t.columns.iter().map(|p| &p.id),
                false,
            );
        }
        for m in &c.entity_type_mappings {
            self.unique(
                &format!("property of mapping '{}'", m.id),
                m.properties.iter().map(|p| &p.id),
                false,
            );
        }
        for conn in &c.connections {
            if let Err(why) = check_connection_id(&conn.id.value) {
                self.push(
                    Diagnostic::new(
                        Rule::ConnectionIdentifier,
                        conn.id.at.clone(),
                        format!(
                            "connection identifier '{}' is not valid: {why}",
                            conn.id.value
                        ),
                    )
                    .hint(connection_id_hint(&conn.id.value)),
                );
            }
        }
    }

    fn unique<'t>(
        &mut self,
        kind: &str,
        ids: impl Iterator<Item = &'t Text>,
        case_insensitive: bool,
    ) {
        let mut seen: HashMap<String, &Loc> = HashMap::new();
        for id in ids {
            if id.value.is_empty() {
                continue;
            }
            let key = if case_insensitive {
                id.value.to_lowercase()
            } else {
                id.value.clone()
            };
            if let Some(first) = seen.get(&key) {
                let how = if case_insensitive {
                    " (compared case-insensitively)"
                } else {
                    ""
                };
                let d = Diagnostic::new(
                    Rule::DuplicateIdentifier,
                    id.at.clone(),
                    format!("{kind} '{}' is declared more than once{how}; first at {first}", id.value),
                )
                .hint("rename one of them or remove the duplicate; identifiers of each kind must be unique");
                self.push(d);
            } else {
                seen.insert(key, &id.at);
            }
        }
    }

    fn connectors(&mut self) {
        for c in &self.config.connectors {
            let from = format!("connector '{}'", c.id);
            if let Some(a) = &c.agent {
                resolve(&mut self.diags, &self.ix.agents, a, "Agent", &from);
            }
        }
    }

    /// Rules 2 and 3 on connections.
    fn connections(&mut self) {
        for conn in &self.config.connections {
            let from = format!("connection '{}'", conn.id);
            resolve(
                &mut self.diags,
                &self.ix.connectors,
                &conn.connector,
                "Connector",
                &from,
            );
            if conn.package.value.is_empty() {
                continue;
            }
            match self.catalog.get(&conn.package.value) {
                Some(p) if p.availability == Availability::DocumentedOnly => self.push(
                    Diagnostic::new(
                        Rule::PackageNotAvailable,
                        conn.package.at.clone(),
                        format!("package {} ({}) is known but this build cannot run it; its settings are not checked", p.id, p.display_name),
                    )
                    .hint("export and fulfill through this connection will fail until the package is implemented"),
                ),
                Some(_) => {}
                None => {
                    let names: Vec<&str> = self.catalog.all().map(|p| p.id).collect();
                    self.push(
                        Diagnostic::new(Rule::UnknownPackage, conn.package.at.clone(), format!("{from} uses unknown package '{}'", conn.package))
                            .hint("use a package identifier such as Usercube.CSV@0000001 (run `idlink packages` for the list)")
                            .did_you_mean(&conn.package.value, names),
                    );
                }
            }
        }
    }

    fn connection_tables(&mut self) {
        for t in &self.config.connection_tables {
            let Some(conn) =
                self.resolve_connection(&t.connection, &format!("connection table '{}'", t.id))
            else {
                continue;
            };
            if !t.id.value.is_empty() && !table_belongs_to(&t.id.value, &conn.id.value) {
                self.push(
                    Diagnostic::new(
                        Rule::AttributeValue,
                        t.id.at.clone(),
                        format!(
                            "connection table '{}' does not belong to connection '{}'",
                            t.id, conn.id
                        ),
                    )
                    .hint(format!("name it '{0}' or '{0}_<suffix>'", conn.id)),
                );
            }
        }
    }

    fn entity_types(&mut self) {
        for a in &self.config.entity_associations {
            let from = format!("entity association '{}'", a.id);
            self.resolve_property_ref(&a.property1, &from);
            self.resolve_property_ref(&a.property2, &from);
        }
    }

    /// Rules 2, 6 and 7 on entity type mappings.
    fn entity_type_mappings(&mut self) {
        for m in &self.config.entity_type_mappings {
            let from = format!("entity type mapping '{}'", m.id);
            let et = resolve(
                &mut self.diags,
                &self.ix.entity_types,
                &m.id,
                "EntityType",
                &from,
            )
            .then(|| self.ix.entity_types[m.id.value.as_str()]);
            let connector_ok = resolve(
                &mut self.diags,
                &self.ix.connectors,
                &m.connector,
                "Connector",
                &from,
            );
            if let Some(et) = et {
                for p in &m.properties {
                    if !p.id.value.is_empty() && et.property(&p.id.value).is_none() {
                        self.push(
                            Diagnostic::new(
                                Rule::UnresolvedReference,
                                p.id.at.clone(),
                                format!("{from} maps property '{}', which entity type '{}' does not have", p.id, et.id),
                            )
                            .hint(format!("add the property to entity type '{}' or correct the name", et.id))
                            .did_you_mean(&p.id.value, et.properties.iter().map(|q| q.id.value.as_str())),
                        );
                    }
                }
            }
            let primaries: Vec<_> = m.properties.iter().filter(|p| p.is_primary_key).collect();
            let uniques = m.properties.iter().filter(|p| p.is_unique_key).count();
            if primaries.len() != 1 {
                let at = primaries.get(1).map_or(&m.at, |p| &p.at).clone();
                self.push(
                    Diagnostic::new(
                        Rule::MappingKeys,
                        at,
                        format!("{from} has {} IsPrimaryKey properties; it needs exactly one", primaries.len()),
                    )
                    .hint("mark the one property that identifies a resource with IsPrimaryKey=\"true\""),
                );
            }
            if uniques > 3 {
                self.push(
                    Diagnostic::new(
                        Rule::MappingKeys,
                        m.at.clone(),
                        format!(
                            "{from} has {uniques} IsUniqueKey properties; at most three are allowed"
                        ),
                    )
                    .hint("keep IsUniqueKey on the three properties that best identify a resource"),
                );
            }
            if connector_ok {
                let columns: Vec<&Text> =
                    m.properties.iter().map(|p| &p.connection_column).collect();
                self.check_table(&from, &m.connector, &m.connection_table, &columns);
            }
        }
    }

    /// Rule 7: `table` is `<connection>` or `<connection>_<suffix>` of one of the connector's
    /// connections, and the columns exist in its refreshed schema.
    fn check_table(&mut self, from: &str, connector: &Text, table: &Text, columns: &[&Text]) {
        if table.value.is_empty() {
            return;
        }
        let prefix = table.value.split('_').next().unwrap_or_default();
        let owner = self.table_owner(&table.value);
        if owner.is_some_and(|c| !self.ix.connectors.contains_key(c.connector.value.as_str())) {
            return; // the connection's own connector is unresolved, and reported there
        }
        let conn = owner.filter(|c| c.connector.value == connector.value);
        let Some(conn) = conn else {
            let own: Vec<&str> = self
                .config
                .connections
                .iter()
                .filter(|c| c.connector.value == connector.value)
                .map(|c| c.id.value.as_str())
                .collect();
            let why = match owner {
                Some(other) => format!(
                    "connection '{}' belongs to connector '{}', not '{}'",
                    other.id, other.connector, connector
                ),
                None => format!("no connection is named '{prefix}'"),
            };
            let hint = if own.is_empty() {
                format!(
                    "connector '{connector}' has no connection; declare one and name the table after it"
                )
            } else {
                format!(
                    "name a table of one of connector '{connector}''s connections: {}",
                    own.join(", ")
                )
            };
            self.push(
                Diagnostic::new(
                    Rule::MappingTable,
                    table.at.clone(),
                    format!("{from} reads table '{}': {why}", table.value),
                )
                .hint(hint)
                .did_you_mean(prefix, own.iter().copied()),
            );
            return;
        };
        match self.ix.tables.get(&table.value.to_lowercase()).copied() {
            Some(schema) => {
                for col in columns {
                    if col.value.is_empty() || schema.columns.iter().any(|c| c.id.value == col.value) {
                        continue;
                    }
                    self.push(
                        Diagnostic::new(
                            Rule::UnknownColumn,
                            col.at.clone(),
                            format!("{from} reads column '{}', which table '{}' does not have (schema at {})", col.value, schema.id, schema.at),
                        )
                        .hint("use a column of the refreshed schema, or refresh the schema if the source changed")
                        .did_you_mean(&col.value, schema.columns.iter().map(|c| c.id.value.as_str())),
                    );
                }
            }
            None => self.push(
                Diagnostic::new(
                    Rule::SchemaNotRefreshed,
                    table.at.clone(),
                    format!("{from} reads table '{}', whose schema has not been refreshed: its columns cannot be checked", table.value),
                )
                .hint(format!("run `idlink refresh-schema --connection {}` or declare the <ConnectionTable>", conn.id)),
            ),
        }
    }

    /// The connection a table is named after: `<connection>` or `<connection>_<suffix>`.
    /// Identifiers cannot hold `_`, so the prefix before the first `_` is looked up; invalid
    /// identifiers (already reported) are matched by a scan so they do not cascade.
    fn table_owner(&self, table: &str) -> Option<&'c Connection> {
        let prefix = table.split('_').next().unwrap_or_default();
        self.ix.connection(prefix).or_else(|| {
            self.config
                .connections
                .iter()
                .filter(|c| !c.id.value.is_empty() && table_belongs_to(table, &c.id.value))
                .max_by_key(|c| c.id.value.len())
        })
    }

    /// Rules 2, 6 and 7 on association mappings.
    fn entity_association_mappings(&mut self) {
        for m in &self.config.entity_association_mappings {
            let from = format!("entity association mapping '{}'", m.id);
            resolve(
                &mut self.diags,
                &self.ix.associations,
                &m.id,
                "EntityAssociation",
                &from,
            );
            let connector_ok = resolve(
                &mut self.diags,
                &self.ix.connectors,
                &m.connector,
                "Connector",
                &from,
            );
            for r in [&m.entity_property_mapping1, &m.entity_property_mapping2] {
                if self.resolve_property_ref(r, &from) {
                    self.association_key(&from, r);
                }
            }
            if connector_ok && let Some(t) = &m.connection_table {
                self.check_table(&from, &m.connector, t, &[&m.column1, &m.column2]);
            }
        }
    }

    /// Rule 6: an association mapping end is a primary or unique key of its entity type's mapping.
    fn association_key(&mut self, from: &str, r: &Sp<PropertyRef>) {
        let p = &r.value;
        let mappings = self.ix.entity_type_mappings.get(p.entity_type.as_str());
        let is_key = mappings.is_some_and(|ms| {
            ms.iter().any(|m| {
                m.properties
                    .iter()
                    .any(|q| q.id.value == p.property && (q.is_primary_key || q.is_unique_key))
            })
        });
        if !is_key {
            let mapped = mappings.is_some_and(|ms| {
                ms.iter()
                    .any(|m| m.properties.iter().any(|q| q.id.value == p.property))
            });
            let why = match (mappings.is_some(), mapped) {
                (false, _) => format!("entity type '{}' has no mapping", p.entity_type),
                (true, false) => format!(
                    "the mapping of '{}' does not map '{}' at all",
                    p.entity_type, p.property
                ),
                (true, true) => "it is mapped without IsPrimaryKey or IsUniqueKey".to_string(),
            };
            self.push(
                Diagnostic::new(Rule::AssociationKey, r.at.clone(), format!("{from} matches on '{p}', which is not a primary or unique key: {why}"))
                    .hint(format!("match on a key of '{}', or mark '{}' IsUniqueKey=\"true\" in its entity type mapping", p.entity_type, p.property)),
            );
        }
    }

    fn rule_source(&mut self, source: &Option<RuleSource>, et: &str, from: &str) {
        match source {
            Some(RuleSource::Binding(b)) => self.resolve_path(et, b, from),
            Some(s @ RuleSource::Expression(e)) if s.is_csharp() => self.csharp(e, from),
            Some(RuleSource::Expression(e)) => self.expression(e, et, from),
            None => {}
        }
    }

    fn csharp(&mut self, e: &Text, from: &str) {
        self.push(
            Diagnostic::new(Rule::CsharpExpression, e.at.clone(), format!("{from} uses a C# expression, which idlink cannot run"))
                .hint("rewrite it as a Binding or in idlink's expression language (docs/expressions.md) before this resource type can generate orders"),
        );
    }

    /// An expression of idlink's language: it parses, and every property path it reads
    /// resolves from `et` like a Binding.
    fn expression(&mut self, e: &Text, et: &str, from: &str) {
        match Expr::parse(&e.value) {
            Ok(x) => {
                let mut seen = Vec::new();
                for (offset, path) in x.paths_at() {
                    if !seen.contains(&path) {
                        seen.push(path);
                        let at = self.at_offset(e, offset);
                        self.resolve_path(et, &Sp::new(path.to_string(), at), from);
                    }
                }
            }
            Err(err) => {
                let (n, marked) = mark_offset(&e.value, err.offset);
                self.push(
                    Diagnostic::new(
                        Rule::Expression,
                        self.at_offset(e, err.offset),
                        format!("{from}: the expression is not valid at character {n}: {}", err.message),
                    )
                    .hint(format!("the problem is marked with ⟪here⟫: {marked}; the language is described in docs/expressions.md")),
                );
            }
        }
    }

    /// Where byte `offset` of expression `e` is in its file: exact when the loader saw the value
    /// written verbatim, else the attribute.
    fn at_offset(&self, e: &Text, offset: usize) -> Loc {
        match self.config.expression_value_starts.get(&e.at) {
            Some(start) => {
                let mut offset = offset.min(e.value.len());
                while !e.value.is_char_boundary(offset) {
                    offset -= 1;
                }
                let before = &e.value[..offset];
                let chars = u32::try_from(before.chars().count()).unwrap_or(u32::MAX);
                Loc {
                    column: start.column.saturating_add(chars),
                    ..start.clone()
                }
            }
            None => e.at.clone(),
        }
    }

    /// A correlation rule's `SourceExpression` or `TargetExpression` written beside a binding:
    /// the name of a function applied to the bound value.
    fn named_function(&mut self, e: &Text, which: &str) {
        if e.value.trim_start().starts_with("C#:") {
            self.csharp(e, &format!("resource correlation rule ({which})"));
        } else if !crate::expr::is_named_function(&e.value) {
            self.push(
                Diagnostic::new(
                    Rule::Expression,
                    self.at_offset(e, 0),
                    format!("resource correlation rule: {which} '{}' is not a function idlink can apply to the bound value", e.value),
                )
                .hint(format!("write one of {}", crate::expr::NAMED_FUNCTIONS.join(", ")))
                .did_you_mean(&e.value, crate::expr::NAMED_FUNCTIONS.iter().copied()),
            );
        }
    }

    fn resource_types(&mut self) {
        for rt in &self.config.resource_types {
            let from = format!("resource type '{}'", rt.id);
            let source_ok = resolve(
                &mut self.diags,
                &self.ix.entity_types,
                &rt.source_entity_type,
                "EntityType",
                &from,
            );
            let target = resolve(
                &mut self.diags,
                &self.ix.entity_types,
                &rt.target_entity_type,
                "EntityType",
                &from,
            )
            .then(|| self.ix.entity_types[rt.target_entity_type.value.as_str()]);
            for r in &rt.scalar_rules {
                let from = format!("scalar rule on '{}' of {from}", r.property);
                if let Some(t) = target {
                    self.target_property(t, &r.property, &from);
                }
                if source_ok {
                    self.rule_source(&r.source, &rt.source_entity_type.value, &from);
                }
            }
            for r in &rt.navigation_rules {
                let from = format!("navigation rule on '{}' of {from}", r.property);
                if let Some(t) = target {
                    self.target_property(t, &r.property, &from);
                }
                if source_ok {
                    self.rule_source(&r.source, &rt.source_entity_type.value, &from);
                }
            }
        }
        for r in &self.config.resource_correlation_rules {
            let from = "resource correlation rule".to_string();
            if !resolve(
                &mut self.diags,
                &self.ix.resource_types,
                &r.resource_type,
                "ResourceType",
                &from,
            ) {
                continue;
            }
            let rt = self.ix.resource_types[r.resource_type.value.as_str()];
            self.resolve_path(&rt.target_entity_type.value, &r.target_binding, &from);
            match &r.source {
                // `SourceExpression="ToLower"` alone: a function with nothing to apply it to.
                Some(RuleSource::Expression(e))
                    if crate::expr::is_named_function(&e.value)
                        && self
                            .ix
                            .entity_types
                            .get(rt.source_entity_type.value.as_str())
                            .is_some_and(|et| et.property(e.value.trim()).is_none()) =>
                {
                    self.push(
                        Diagnostic::new(
                            Rule::Expression,
                            self.at_offset(e, 0),
                            format!("{from}: SourceExpression '{}' names a function, but no SourceBinding gives the value it applies to", e.value),
                        )
                        .hint(format!("add SourceBinding=\"<property of '{}'>\", or write the whole expression, such as {}(Name)", rt.source_entity_type, e.value.trim())),
                    );
                }
                _ => self.rule_source(&r.source, &rt.source_entity_type.value, &from),
            }
            if let Some(e) = &r.target_expression {
                self.named_function(e, "TargetExpression");
            }
            if let Some(e) = &r.source_expression {
                self.named_function(e, "SourceExpression");
            }
        }
    }

    fn target_property(&mut self, et: &EntityType, property: &Text, from: &str) {
        if !property.value.is_empty() && et.property(&property.value).is_none() {
            self.push(
                Diagnostic::new(
                    Rule::UnresolvedReference,
                    property.at.clone(),
                    format!(
                        "{from}: target entity type '{}' has no property '{}'",
                        et.id, property
                    ),
                )
                .hint(format!("use a property of '{}'", et.id))
                .did_you_mean(
                    &property.value,
                    et.properties.iter().map(|q| q.id.value.as_str()),
                ),
            );
        }
    }

    /// Rules 2, 3 and 5 on resource type mappings.
    fn resource_type_mappings(&mut self) {
        for m in &self.config.resource_type_mappings {
            let from = format!("resource type mapping '{}'", m.id);
            let rt = resolve(
                &mut self.diags,
                &self.ix.resource_types,
                &m.id,
                "ResourceType",
                &from,
            )
            .then(|| self.ix.resource_types[m.id.value.as_str()]);
            let Some(conn_ref) = &m.connection else {
                self.push(
                    Diagnostic::new(
                        Rule::TaskConnection,
                        m.at.clone(),
                        format!("{from} has no Connection"),
                    )
                    .hint(
                        "add Connection=\"...\": the connection that provisions this resource type",
                    ),
                );
                continue;
            };
            if let Some(conn) = self.resolve_connection(conn_ref, &from) {
                self.needs_side(conn, conn_ref, &from, Side::Fulfill);
            }
            if let Some(rt) = rt
                && let Some(et) = self
                    .ix
                    .entity_types
                    .get(rt.target_entity_type.value.as_str())
                    .copied()
            {
                for p in &m.properties {
                    self.target_property(et, &p.id, &from);
                }
            }
        }
    }

    /// Rule 3: a connection used for export or fulfill must have a package that can, and
    /// that side must not be deactivated (then a warning: the work waits).
    fn needs_side(&mut self, conn: &Connection, reference: &Text, from: &str, side: Side) {
        let (verb, can, enabled) = match side {
            Side::Export => ("exports", "export", conn.export_enabled()),
            Side::Fulfill => ("fulfills through", "fulfill", conn.fulfill_enabled()),
        };
        match self.package_of(conn) {
            Some(p) if !(if side == Side::Export { p.capabilities.export } else { p.capabilities.fulfill }) => self.push(
                Diagnostic::new(
                    Rule::PackageCapability,
                    reference.at.clone(),
                    format!("{from} {verb} connection '{}', whose package {} cannot {can}", conn.id, p.id),
                )
                .hint(match side {
                    Side::Export => "remove the task, or export through a connection whose package can export",
                    Side::Fulfill => "use a connection whose package can fulfill (e.g. LDAP, SCIM, FulfillToFile, Powershell)",
                }),
            ),
            Some(_) if !enabled => self.push(
                Diagnostic::new(
                    Rule::DeactivatedSide,
                    reference.at.clone(),
                    format!("{from} {verb} connection '{}', whose {can} is deactivated (DeactivationExportFulfill): the work waits", conn.id),
                )
                .hint(format!("set DeactivationExportFulfill=\"None\" on the connection to {can} again")),
            ),
            _ => {}
        }
    }

    fn jobs(&mut self) {
        for task in &self.config.tasks {
            let from = match task.label() {
                Some(name) => format!("{} '{name}'", task.element_name()),
                None => task.element_name().to_string(),
            };
            self.task(task, &from);
        }
        for job in &self.config.jobs {
            let from = format!("job '{}'", job.id);
            if let Some(a) = &job.agent {
                resolve(&mut self.diags, &self.ix.agents, a, "Agent", &from);
            }
            if let Some(cron) = &job.crontab
                && let Err(why) = check_crontab(&cron.value)
            {
                self.push(
                    Diagnostic::new(Rule::Crontab, cron.at.clone(), format!("{from}: CrontabExpression \"{}\" is not valid: {why}", cron.value))
                        .hint("write five fields: minute hour day-of-month month day-of-week, e.g. \"0 5 * * 1-5\""),
                );
            }
            let count = job.steps.len();
            for (i, step) in job.steps.iter().enumerate() {
                match step {
                    JobStep::Inline(task) => {
                        // Named, so that one of twenty tasks can be found without counting lines.
                        let from = match task.label() {
                            Some(name) => format!("{} '{name}' in {from}", task.element_name()),
                            None => format!(
                                "{} (task {} of {count}) in {from}",
                                task.element_name(),
                                i + 1
                            ),
                        };
                        self.task(task, &from);
                    }
                    JobStep::Step(r) => self.step(r, &from),
                }
            }
            self.task_dependencies(job, &from);
        }
    }

    /// A `<Step>` names a stand-alone task; one that is not declared may come from the
    /// product's job scaffoldings, which idlink does not expand.
    fn step(&mut self, r: &StepRef, from: &str) {
        let id = r.id.value.as_str();
        if id.is_empty()
            || self.config.task(id).is_some()
            || self.config.out_of_scope_tasks.iter().any(|(t, _)| t == id)
        {
            return;
        }
        let names = self
            .config
            .tasks
            .iter()
            .filter_map(|t| t.id().map(|i| i.value.as_str()));
        self.push(
            Diagnostic::new(
                Rule::UndeclaredStep,
                r.id.at.clone(),
                format!("{from} has a step '{id}' that names no declared task; it may come from a job scaffolding, which idlink does not expand, so the job runs without it"),
            )
            .hint(format!("declare the task outside the job, e.g. <ExportTask Identifier=\"{id}\" .../>, or remove the step"))
            .did_you_mean(id, names),
        );
    }

    /// `TaskDependsOnTask`: each parent is a task of the same job, and no cycle.
    fn task_dependencies(&mut self, job: &Job, from: &str) {
        let tasks = self.config.job_tasks(job);
        let ids: Vec<&str> = tasks
            .iter()
            .filter_map(|t| t.id().map(|i| i.value.as_str()))
            .collect();
        for task in &tasks {
            for parent in &task.common().depends_on {
                if parent.value.is_empty() || ids.contains(&parent.value.as_str()) {
                    continue;
                }
                let who = task.label().map_or_else(
                    || task.element_name().to_string(),
                    |l| format!("{} '{l}'", task.element_name()),
                );
                self.push(
                    Diagnostic::new(
                        Rule::UnresolvedReference,
                        parent.at.clone(),
                        format!("{who} in {from} depends on ParentTask '{}', which is not a task of this job", parent.value),
                    )
                    .hint("name the Identifier of a task written in the job or listed by its <Step>, or add that task to the job")
                    .did_you_mean(&parent.value, ids.iter().copied()),
                );
            }
        }
        if let Err(e) = self.config.ordered_job_tasks(job) {
            self.push(
                Diagnostic::new(Rule::TaskCycle, job.at.clone(), e.to_string()).hint(
                    "remove one TaskDependsOnTask of the cycle so that some task can run first",
                ),
            );
        }
    }

    fn task(&mut self, task: &Task, from: &str) {
        let from = from.to_string();
        if let Some(a) = &task.common().agent {
            resolve(&mut self.diags, &self.ix.agents, a, "Agent", &from);
        }
        match task {
            Task::Export(t) => {
                let Some(c) = &t.connection else {
                    self.push(
                        Diagnostic::new(
                            Rule::TaskConnection,
                            t.at.clone(),
                            format!("{from} has no Connection"),
                        )
                        .hint("add Connection=\"...\": the connection to export"),
                    );
                    return;
                };
                if let Some(conn) = self.resolve_connection(c, &from) {
                    self.needs_side(conn, c, &from, Side::Export);
                }
            }
            Task::PrepareSynchronization(t) => {
                resolve(
                    &mut self.diags,
                    &self.ix.connectors,
                    &t.connector,
                    "Connector",
                    &from,
                );
            }
            Task::Synchronize(t) => {
                resolve(
                    &mut self.diags,
                    &self.ix.connectors,
                    &t.connector,
                    "Connector",
                    &from,
                );
            }
            Task::GenerateProvisioningOrders(t) => {
                for r in &t.resource_types {
                    resolve(
                        &mut self.diags,
                        &self.ix.resource_types,
                        r,
                        "ResourceType",
                        &from,
                    );
                }
                if let Some(c) = &t.connector {
                    resolve(&mut self.diags, &self.ix.connectors, c, "Connector", &from);
                }
                if t.resource_types.is_empty() && t.connector.is_none() {
                    self.push(
                        Diagnostic::new(
                            Rule::MissingAttribute,
                            t.at.clone(),
                            format!("{from} names neither resource types nor Connector"),
                        )
                        .hint("add <TaskResourceType ResourceType=\"...\"/> children (or ResourceTypes=\"...\"), or Connector=\"...\""),
                    );
                }
            }
            Task::Fulfill(t) => {
                if let Some(c) = &t.connector {
                    resolve(&mut self.diags, &self.ix.connectors, c, "Connector", &from);
                }
                for r in &t.resource_types {
                    if resolve(
                        &mut self.diags,
                        &self.ix.resource_types,
                        r,
                        "ResourceType",
                        &from,
                    ) && !self
                        .ix
                        .resource_type_mappings
                        .contains_key(r.value.as_str())
                    {
                        self.push(
                            Diagnostic::new(
                                Rule::TaskConnection,
                                r.at.clone(),
                                format!("{from} fulfills resource type '{}', which has no resource type mapping to give it a connection", r),
                            )
                            .hint("add a <ResourceTypeMapping Identifier=\"...\" Connection=\"...\"/> for it"),
                        );
                    }
                }
                match (&t.connection, t.resource_types.is_empty()) {
                    (Some(c), false) => self.push(
                        Diagnostic::new(
                            Rule::TaskConnection,
                            c.at.clone(),
                            format!("{from} names Connection '{c}' and TaskResourceType children; each resource type's mapping supplies the connection"),
                        )
                        .hint("remove Connection from the FulfillTask, or remove its TaskResourceType children"),
                    ),
                    (Some(c), true) => {
                        if let Some(conn) = self.resolve_connection(c, &from) {
                            self.needs_side(conn, c, &from, Side::Fulfill);
                        }
                    }
                    (None, true) if t.connector.is_none() => self.push(
                        Diagnostic::new(Rule::TaskConnection, t.at.clone(), format!("{from} names no Connection, Connector nor TaskResourceType"))
                            .hint("add Connection=\"...\", Connector=\"...\" or <TaskResourceType ResourceType=\"...\"/> children"),
                    ),
                    _ => {}
                }
            }
        }
    }

    /// Documented settings and sections idlink accepts without effect: one information line
    /// per kind (shown by `check -v`), never an "unknown" warning.
    fn settings_without_effect(&mut self) {
        let mut items = self.settings.without_effect.clone();
        for conn in &self.config.connections {
            let (Some(p), Some(s)) = (
                self.package_of(conn),
                self.settings.connection(&conn.id.value),
            ) else {
                continue;
            };
            if p.availability == Availability::Supported {
                items.extend(settings::settings_without_effect(s, p.id, p.settings));
            }
        }
        for item in settings::once_per_kind(items) {
            self.diags.push(
                Diagnostic::new(
                    Rule::AcceptedWithoutEffect,
                    item.at.clone(),
                    format!(
                        "{} is accepted without effect in idlink: {}",
                        item.kind, item.why
                    ),
                )
                .hint("nothing to change"),
            );
        }
    }

    /// Rule 4: every connection has settings that match its package's schema; settings for
    /// unknown connections are reported.
    fn agent_settings(&mut self) {
        self.settings_without_effect();
        let where_ = self
            .settings
            .file
            .as_deref()
            .unwrap_or("appsettings.agent.json");
        for conn in &self.config.connections {
            if conn.id.value.is_empty() {
                continue;
            }
            let Some(p) = self.package_of(conn) else {
                continue;
            };
            if p.availability == Availability::DocumentedOnly {
                continue;
            }
            match self.settings.connection(&conn.id.value) {
                Some(s) => {
                    settings::check_against(s, p.id, p.settings, &mut self.diags);
                    for (path, at) in settings::plaintext_secrets(s, p.settings, where_) {
                        self.diags.push(
                            Diagnostic::new(
                                Rule::PlaintextSecret,
                                at,
                                format!("{path} is a secured setting stored in plain text"),
                            )
                            .hint(format!(
                                "encrypt it to the agent's key: `idlink protect --recipient <agent public key> --file {where_}` \
                                 writes {}; then remove the plain value",
                                settings::ENCRYPTED_SETTINGS_FILE
                            )),
                        );
                    }
                }
                None if p.settings.optional_as_a_whole() || self.settings.unreadable => {}
                None => {
                    let required: Vec<&str> = p
                        .settings
                        .fields
                        .iter()
                        .filter(|f| f.required)
                        .map(|f| f.name)
                        .collect();
                    self.push(
                        Diagnostic::new(
                            Rule::MissingSettings,
                            conn.id.at.clone(),
                            format!("connection '{}' has no settings in {where_}", conn.id),
                        )
                        .hint(format!(
                            "add \"Connections\": {{ \"{}\": {{ ... }} }} to {where_}{}",
                            conn.id,
                            if required.is_empty() {
                                String::new()
                            } else {
                                format!(" with {}", required.join(", "))
                            }
                        )),
                    );
                }
            }
        }
        for s in &self.settings.connections {
            if self.ix.connection(&s.id.value).is_none() {
                let names: Vec<&str> = self
                    .config
                    .connections
                    .iter()
                    .map(|c| c.id.value.as_str())
                    .collect();
                self.push(
                    Diagnostic::new(
                        Rule::UnknownConnectionSettings,
                        s.id.at.clone(),
                        format!("settings for connection '{}', which the configuration does not declare", s.id),
                    )
                    .hint("remove them, or declare the <Connection>")
                    .did_you_mean(&s.id.value, names),
                );
            }
        }
    }
}

/// The two sides of a connection (`DeactivationExportFulfill` turns one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Export,
    Fulfill,
}

/// SPEC §2.2 rule 1: a letter, then up to 441 letters, digits, `.` or `-`.
pub fn check_connection_id(id: &str) -> Result<(), String> {
    let mut chars = id.chars();
    match chars.next() {
        None => return Err("it is empty".into()),
        Some(c) if !c.is_alphabetic() => return Err(format!("it starts with '{c}', not a letter")),
        _ => {}
    }
    if let Some(bad) = chars.find(|c| !(c.is_alphanumeric() || *c == '.' || *c == '-')) {
        let what = match bad {
            '_' => "'_' (it separates the connection from its table suffix)".to_string(),
            ' ' => "a space".to_string(),
            c => format!("'{c}'"),
        };
        return Err(format!("it contains {what}"));
    }
    let len = id.chars().count();
    if len > MAX_CONNECTION_ID_LEN {
        return Err(format!(
            "it is {len} characters long; at most {MAX_CONNECTION_ID_LEN} are allowed"
        ));
    }
    Ok(())
}

/// How to fix a connection identifier. Some how-tos of the documentation write identifiers with
/// '_'; the Connection reference page forbids it, and idlink follows the reference.
fn connection_id_hint(id: &str) -> String {
    let rule = "the Connection reference page (toolkit/xml-configuration/connectors/connection) requires a letter, \
                then up to 441 letters, digits, '.' or '-'; '_' separates the connection from its table suffix";
    if id.contains('_') {
        let fixed: String = id.chars().filter(|c| *c != '_').collect();
        format!(
            "{rule}, and the connector pages forbid it too (some how-tos write '_' anyway; idlink follows the reference): \
             rename it, e.g. '{fixed}', in the XML, in appsettings.agent.json and in the table names"
        )
    } else {
        rule.to_string()
    }
}

/// `table` is named `<connection>` or `<connection>_<suffix>` (case-insensitively).
pub fn table_belongs_to(table: &str, connection: &str) -> bool {
    let n = connection.len();
    table.len() >= n
        && table.is_char_boundary(n)
        && table[..n].eq_ignore_ascii_case(connection)
        && (table.len() == n || table[n..].starts_with('_'))
}

/// A five-field crontab expression (minute hour day-of-month month day-of-week), checked with
/// the `cron` crate, which wants seconds first and numbers its weekdays from 1 = Sunday.
pub fn check_crontab(expr: &str) -> Result<(), String> {
    crontab_schedule(expr).map(drop)
}

/// A five-field crontab expression as a `cron` schedule: the seconds field (0) put first and
/// the weekday numbers (0 or 7 = Sunday) written as names, since the crate numbers them from
/// 1 = Sunday. The error says what is wrong in one line. The scheduler and `check` both read
/// crontab expressions through this one function.
pub fn crontab_schedule(expr: &str) -> Result<cron::Schedule, String> {
    const FIELDS: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("it has {} fields, not 5", fields.len()));
    }
    // Numbers out of range get a clear message here; the cron crate checks the syntax.
    for (field, (name, min, max)) in fields.iter().zip(FIELDS) {
        for part in field.split([',', '-', '/']) {
            if let Ok(n) = part.parse::<u32>()
                && !(min..=max).contains(&n)
                && !field.contains(&format!("/{part}"))
            {
                return Err(format!("{name} {n} is outside {min}-{max}"));
            }
        }
    }
    let dow = weekday_names(fields[4]);
    let six = format!(
        "0 {} {} {} {} {dow}",
        fields[0], fields[1], fields[2], fields[3]
    );
    cron::Schedule::from_str(&six).map_err(|e| {
        // The crate's message quotes the six-field form over several lines; keep its last line.
        let text = e.to_string();
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty() && l.trim() != "^")
            .unwrap_or("invalid expression")
            .trim()
            .to_string()
    })
}

/// Crontab weekday numbers (0 or 7 = Sunday) to names, leaving step values alone.
fn weekday_names(field: &str) -> String {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut out = String::new();
    let mut after_slash = false;
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String, after_slash: bool| {
        if digits.is_empty() {
            return;
        }
        match digits.parse::<usize>() {
            Ok(n) if n < 8 && !after_slash => out.push_str(NAMES[n]),
            _ => out.push_str(digits),
        }
        digits.clear();
    };
    for c in field.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out, after_slash);
            after_slash = c == '/';
            out.push(c);
        }
    }
    flush(&mut digits, &mut out, after_slash);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_identifiers() {
        assert!(check_connection_id("HRPeople").is_ok());
        assert!(check_connection_id("AD-Export.2").is_ok());
        assert!(check_connection_id("HR_People").is_err_and(|e| e.contains("separates")));
        assert!(check_connection_id("1HR").is_err());
        assert!(check_connection_id("HR People").is_err_and(|e| e.contains("space")));
        assert!(check_connection_id(&format!("A{}", "b".repeat(441))).is_ok());
        assert!(check_connection_id(&format!("A{}", "b".repeat(442))).is_err());
    }

    #[test]
    fn crontab_expressions() {
        assert!(check_crontab("0 5 * * *").is_ok());
        assert!(check_crontab("*/15 8-18 * * 1-5").is_ok());
        assert!(check_crontab("0 0 * * 0").is_ok());
        assert!(check_crontab("0 0 * * 7").is_ok());
        assert_eq!(
            check_crontab("0 25 * * *"),
            Err("hour 25 is outside 0-23".into())
        );
        assert!(check_crontab("0 23 * * *").is_ok());
        assert!(check_crontab("61 0 * * *").is_err());
        assert!(check_crontab("0 0 * * Foo").is_err_and(|e| !e.contains('\n')));
        assert!(check_crontab("0 5 * *").is_err());
    }

    #[test]
    fn tables_belong_to_connections() {
        assert!(table_belongs_to("HRPeople", "hrpeople"));
        assert!(table_belongs_to("Dir_entries", "Dir"));
        assert!(!table_belongs_to("Directory_entries", "Dir"));
    }
}
