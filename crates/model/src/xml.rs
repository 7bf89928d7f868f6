//! Reads a folder of XML configuration files into a [`Configuration`].
//!
//! Elements may sit in any file and any order, with or without the
//! `urn:schemas-usercube-com:configuration` namespace. Every problem becomes a located
//! [`Diagnostic`]; reading goes on after each one so a single run reports them all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roxmltree::{Document, Node};

use crate::config::*;
use crate::diag::{Diagnostic, Diagnostics, Loc, Rule, Sp, did_you_mean};
use crate::text::{LineIndex, bom_len, decode_utf8};

/// The namespace Netwrix Identity Manager configuration files declare.
pub const NAMESPACE: &str = "urn:schemas-usercube-com:configuration";

/// An I/O problem that stops loading before any rule can run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("configuration folder '{}' does not exist; pass the folder of your XML files with --config", .0.display())]
    MissingFolder(PathBuf),
    #[error("'{}' is not a folder; --config takes the folder that holds the XML files", .0.display())]
    NotAFolder(PathBuf),
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file '{}' does not exist; pass the agent's appsettings.agent.json with --settings", .0.display())]
    MissingSettingsFile(PathBuf),
    #[error("no *.xml file in '{}'; a configuration is a folder of XML files with a <ConfigurationFile> root", .0.display())]
    NoFiles(PathBuf),
}

/// The XML files of a configuration folder, searched recursively, in a stable order.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::MissingFolder(dir.to_path_buf()),
        _ => LoadError::Io {
            path: dir.to_path_buf(),
            source: e,
        },
    })?;
    if !meta.is_dir() {
        return Err(LoadError::NotAFolder(dir.to_path_buf()));
    }
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| LoadError::Io {
            path: d.clone(),
            source: e,
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| LoadError::Io {
                path: d.clone(),
                source: e,
            })?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| LoadError::Io {
                path: path.clone(),
                source: e,
            })?;
            if ft.is_dir() || (ft.is_symlink() && path.is_dir()) {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(LoadError::NoFiles(dir.to_path_buf()));
    }
    Ok(files)
}

/// Loads every XML file of `dir` into one configuration.
pub fn load_dir(dir: &Path) -> Result<(Configuration, Diagnostics), LoadError> {
    load_dir_with(dir, &|p: &Path| std::fs::read(p))
}

/// [`load_dir`], reading each file through `read` (e.g. to check edited texts before they are
/// written: the server checks an edit under the files' real names).
pub fn load_dir_with(
    dir: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<(Configuration, Diagnostics), LoadError> {
    let mut loader = Loader::default();
    for path in config_files(dir)? {
        let bytes = read(&path).map_err(|e| LoadError::Io {
            path: path.clone(),
            source: e,
        })?;
        loader.add_file(&path.display().to_string(), &bytes);
    }
    Ok(loader.finish())
}

/// Accumulates files into one configuration. Use [`Loader::add_file`] for each file, then
/// [`Loader::finish`].
#[derive(Debug, Default)]
pub struct Loader {
    config: Configuration,
    diags: Diagnostics,
    /// Skipped element kinds: first location, count and why (when the kind is documented as a
    /// child idlink does not read), reported once each at the end.
    skipped: BTreeMap<String, (Loc, usize, Option<&'static str>)>,
}

impl Loader {
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) {
        let file: Arc<str> = Arc::from(name);
        self.config.files.push(name.to_string());
        let text = match decode_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let prefix = String::from_utf8_lossy(&bytes[..e.offset]);
                let (line, col) = LineIndex::new(&prefix).line_col(prefix.len());
                let col = if bom_len(bytes) > 0 && line == 1 {
                    col.saturating_sub(1).max(1)
                } else {
                    col
                };
                self.diags.push(
                    Diagnostic::new(Rule::XmlSyntax, Loc::new(&file, line, col), e.message)
                        .hint("configuration files are UTF-8, with or without a byte order mark"),
                );
                return;
            }
        };
        let lines = LineIndex::new(text);
        let doc = match Document::parse(text) {
            Ok(d) => d,
            Err(e) => {
                let pos = e.pos();
                let hint = match e {
                    roxmltree::Error::DtdDetected => {
                        "remove the <!DOCTYPE ...> declaration: configuration files have none, and idlink expands no entities"
                    }
                    _ => {
                        "fix the XML syntax at this position; every element must be closed and attribute values quoted"
                    }
                };
                self.diags.push(
                    Diagnostic::new(
                        Rule::XmlSyntax,
                        Loc::new(&file, pos.row, pos.col),
                        format!("malformed XML: {e}"),
                    )
                    .hint(hint),
                );
                return;
            }
        };
        let cx = FileCx { file, lines };
        let root = doc.root_element();
        if root.tag_name().name() != "ConfigurationFile" {
            self.diags.push(
                Diagnostic::new(
                    Rule::XmlSyntax,
                    cx.at(root),
                    format!(
                        "the root element is <{}>, not <ConfigurationFile>",
                        root.tag_name().name()
                    ),
                )
                .hint(format!(
                    "wrap the elements in <ConfigurationFile xmlns=\"{NAMESPACE}\">"
                )),
            );
            return;
        }
        for node in root.children().filter(Node::is_element) {
            self.top_level(&cx, node);
        }
    }

    /// The configuration and every diagnostic found while reading.
    pub fn finish(mut self) -> (Configuration, Diagnostics) {
        for (kind, (at, count, why)) in std::mem::take(&mut self.skipped) {
            let what = if count == 1 {
                "1 element".to_string()
            } else {
                format!("{count} elements")
            };
            let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
            self.diags.push(
                Diagnostic::new(
                    Rule::OutOfScopeElement,
                    at,
                    format!("<{kind}> is outside idlink's scope{why}: {what} of this kind skipped"),
                )
                .hint("nothing to do unless you expected idlink to use it; attributes that point at it are not resolved"),
            );
        }
        self.diags.fold_without_effect();
        (self.config, self.diags)
    }

    fn skip(&mut self, cx: &FileCx, node: Node) {
        let name = node.tag_name().name().to_string();
        self.skipped
            .entry(name)
            .or_insert_with(|| (cx.at(node), 0, None))
            .1 += 1;
    }

    /// Skips an element documented where it stands that idlink does not read, saying why.
    fn skip_because(&mut self, cx: &FileCx, node: Node, why: &'static str) {
        let name = node.tag_name().name().to_string();
        let entry = self
            .skipped
            .entry(name)
            .or_insert_with(|| (cx.at(node), 0, Some(why)));
        entry.1 += 1;
        entry.2.get_or_insert(why);
    }

    /// Decides what to do with an element idlink does not read: a likely typo of one it does
    /// read is an error (the element would be silently lost), anything else is skipped.
    fn unexpected(&mut self, cx: &FileCx, node: Node, expected: &[&'static str], place: &str) {
        let name = node.tag_name().name();
        if !KNOWN_OUT_OF_SCOPE.contains(&name)
            && !KNOWN_OUT_OF_SCOPE_TASKS.contains(&name)
            && let Some(s) = did_you_mean(name, expected.iter().copied())
        {
            self.diags.push(
                Diagnostic::new(
                    Rule::UnknownElement,
                    cx.at(node),
                    format!("unknown element <{name}> {place}"),
                )
                .hint(format!(
                    "did you mean <{s}>? As written, this element would be ignored"
                )),
            );
        } else {
            self.skip(cx, node);
        }
    }

    fn top_level(&mut self, cx: &FileCx, node: Node) {
        let name = node.tag_name().name();
        match name {
            "Agent" => {
                let el = self.agent(cx, node);
                self.config.agents.push(el);
            }
            "Connector" => {
                let el = self.connector(cx, node);
                self.config.connectors.push(el);
            }
            "Connection" => {
                let el = self.connection(cx, node);
                self.config.connections.push(el);
            }
            "ConnectionTable" => {
                let el = self.connection_table(cx, node);
                self.config.connection_tables.push(el);
            }
            "EntityType" => {
                let el = self.entity_type(cx, node);
                self.config.entity_types.push(el);
            }
            "EntityAssociation" => {
                let el = self.entity_association(cx, node);
                self.config.entity_associations.push(el);
            }
            "EntityTypeMapping" => {
                let el = self.entity_type_mapping(cx, node);
                self.config.entity_type_mappings.push(el);
            }
            "EntityAssociationMapping" => {
                let el = self.entity_association_mapping(cx, node);
                self.config.entity_association_mappings.push(el);
            }
            "ResourceType" => {
                let el = self.resource_type(cx, node);
                self.config.resource_types.push(el);
            }
            "ResourceCorrelationRule" => {
                let el = self.correlation_rule(cx, node);
                self.config.resource_correlation_rules.push(el);
            }
            "Job" => {
                let el = self.job(cx, node);
                self.config.jobs.push(el);
            }
            _ if TASKS.contains(&name) => {
                if let Some(t) = self.task(cx, node) {
                    self.config.tasks.push(t);
                }
            }
            _ if name.ends_with("Task") && KNOWN_OUT_OF_SCOPE_TASKS.contains(&name) => {
                if let Some(id) = node.attribute("Identifier") {
                    self.config
                        .out_of_scope_tasks
                        .push((id.to_string(), name.to_string()));
                }
                self.skip(cx, node);
            }
            _ if name.ends_with("ResourceTypeMapping") => {
                let el = self.resource_type_mapping(cx, node);
                self.config.resource_type_mappings.push(el);
            }
            _ => self.unexpected(cx, node, TOP_LEVEL, "in <ConfigurationFile>"),
        }
    }

    fn agent(&mut self, cx: &FileCx, node: Node) -> Agent {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let el = Agent {
            at: a.at.clone(),
            id: a.required("Identifier"),
            display_names: a.display_names(),
            uri: a.text("URI"),
        };
        a.without_effect(AGENT_WITHOUT_EFFECT, &[]);
        a.finish(&[]);
        self.no_children(cx, node);
        el
    }

    fn connector(&mut self, cx: &FileCx, node: Node) -> Connector {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let el = Connector {
            at: a.at.clone(),
            id: a.required("Identifier"),
            display_names: a.display_names_required(),
            agent: a.text("Agent"),
            is_deactivated: a.bool("IsDeactivated", false),
            complete_job: a.choice("CompleteJob", JOB_INTEGRATION).unwrap_or_default(),
            incremental_job: a
                .choice("IncrementalJob", JOB_INTEGRATION)
                .unwrap_or_default(),
            thresholds: a.sync_thresholds(),
        };
        a.finish(&[]);
        self.no_children(cx, node);
        el
    }

    fn connection(&mut self, cx: &FileCx, node: Node) -> Connection {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let mut el = Connection {
            at: a.at.clone(),
            id: a.required("Identifier"),
            display_names: a.display_names_required(),
            connector: a.required("Connector"),
            package: a.required("Package"),
            deactivation: a
                .choice(
                    "DeactivationExportFulfill",
                    &[
                        ("None", Deactivation::None),
                        ("Export", Deactivation::Export),
                        ("Fulfill", Deactivation::Fulfill),
                        ("0", Deactivation::None),
                        ("1", Deactivation::Export),
                        ("2", Deactivation::Fulfill),
                    ],
                )
                .unwrap_or_default(),
            transformations: Vec::new(),
        };
        a.finish(&[]);
        record_children("Connection", &["Transformation"], &[]);
        for child in node.children().filter(Node::is_element) {
            match child.tag_name().name() {
                "Transformation" => {
                    let t = self.transformation(cx, child);
                    el.transformations.push(t);
                }
                _ => self.unexpected(cx, child, &["Transformation"], "in <Connection>"),
            }
        }
        el
    }

    fn transformation(&mut self, cx: &FileCx, node: Node) -> Transformation {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let kind = a.choice_required(
            "Type",
            &[
                ("ConcatColumns", TransformationType::ConcatColumns),
                ("TransformDate", TransformationType::TransformDate),
                ("WhereValue", TransformationType::WhereValue),
            ],
        );
        let el = Transformation {
            at: a.at.clone(),
            kind: kind.unwrap_or(TransformationType::ConcatColumns),
            table: a.text("Table"),
            column: a.text("Column"),
            input_columns: [
                "InputColumn",
                "InputColumn1",
                "InputColumn2",
                "InputColumn3",
                "InputColumn4",
                "InputColumn5",
            ]
            .into_iter()
            .filter_map(|n| a.text(n))
            .collect(),
            concat_separator: a.raw("ConcatSeparator"),
            remove_empty: a.bool("RemoveEmpty", false),
            remove_duplicates: a.bool("RemoveDuplicates", false),
            sort_values: a.bool("SortValues", false),
            added_days: a.days("AddedDays"),
            min_year: a.int("MinYear"),
            max_year: a.int("MaxYear"),
            date_pattern: a.raw("DatePattern"),
            where_operator: a.choice(
                "WhereOperator",
                &[
                    ("Equals", WhereOperator::Equals),
                    ("NotEquals", WhereOperator::NotEquals),
                    ("Contains", WhereOperator::Contains),
                    ("NotContains", WhereOperator::NotContains),
                    ("StartsWith", WhereOperator::StartsWith),
                    ("EndsWith", WhereOperator::EndsWith),
                    ("Regex", WhereOperator::Regex),
                ],
            ),
            where_value: a.raw("WhereValue"),
        };
        a.finish(&[]);
        self.no_children(cx, node);
        el
    }

    fn connection_table(&mut self, cx: &FileCx, node: Node) -> ConnectionTable {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let mut el = ConnectionTable {
            at: a.at.clone(),
            connection: a.required("Connection"),
            id: a.required("Identifier"),
            display_name: a.display_name(),
            columns: Vec::new(),
        };
        a.without_effect(CONNECTION_TABLE_WITHOUT_EFFECT, &[]);
        a.finish(&[]);
        record_children("ConnectionTable", &["Column"], &[]);
        for child in node.children().filter(Node::is_element) {
            if child.tag_name().name() == "Column" {
                let mut a = Attrs::new(cx, child, &mut self.diags);
                let col = Column {
                    at: a.at.clone(),
                    id: a.required("Identifier"),
                    display_name: a.display_name(),
                    is_multivalued: a.bool("IsMultivalued", false),
                    key_type: a
                        .choice(
                            "KeyType",
                            &[
                                ("0", KeyType::None),
                                ("1", KeyType::Primary),
                                ("2", KeyType::Unique),
                                ("None", KeyType::None),
                                ("Primary", KeyType::Primary),
                                ("Unique", KeyType::Unique),
                            ],
                        )
                        .unwrap_or_default(),
                    value_type: a.choice("ValueType", VALUE_TYPES).unwrap_or_default(),
                };
                a.without_effect(COLUMN_WITHOUT_EFFECT, &[]);
                a.finish(&[]);
                el.columns.push(col);
            } else {
                self.unexpected(cx, child, &["Column"], "in <ConnectionTable>");
            }
        }
        el
    }

    fn entity_type(&mut self, cx: &FileCx, node: Node) -> EntityType {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let mut el = EntityType {
            at: a.at.clone(),
            id: a.required("Identifier"),
            display_names: a.display_names(),
            properties: Vec::new(),
        };
        a.without_effect(ENTITY_TYPE_WITHOUT_EFFECT, &[]);
        a.finish(ENTITY_TYPE_IGNORED);
        record_children("EntityType", &["Property"], &[]);
        for child in node.children().filter(Node::is_element) {
            if child.tag_name().name() == "Property" {
                let mut a = Attrs::new(cx, child, &mut self.diags);
                let p = EntityProperty {
                    at: a.at.clone(),
                    id: a.required("Identifier"),
                    display_names: a.display_names(),
                    ty: a.choice("Type", PROPERTY_TYPES).unwrap_or_default(),
                    is_key: a.bool("IsKey", false),
                    target_column_index: a.int("TargetColumnIndex"),
                };
                a.without_effect(ENTITY_PROPERTY_WITHOUT_EFFECT, &[]);
                a.finish(PROPERTY_IGNORED);
                el.properties.push(p);
            } else {
                self.unexpected(cx, child, &["Property"], "in <EntityType>");
            }
        }
        el
    }

    fn entity_association(&mut self, cx: &FileCx, node: Node) -> EntityAssociation {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let el = EntityAssociation {
            at: a.at.clone(),
            id: a.required("Identifier"),
            display_names: a.display_names(),
            property1: a.property_ref("Property1"),
            property2: a.property_ref("Property2"),
            is_property1_collection: a.bool("IsProperty1Collection", false),
            is_property2_collection: a.bool("IsProperty2Collection", false),
        };
        a.finish(&["IsDeactivated"]);
        self.no_children(cx, node);
        el
    }

    fn entity_type_mapping(&mut self, cx: &FileCx, node: Node) -> EntityTypeMapping {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let mut el = EntityTypeMapping {
            at: a.at.clone(),
            id: a.required("Identifier"),
            connector: a.required("Connector"),
            connection_table: a.required("ConnectionTable"),
            thresholds: a.sync_thresholds(),
            properties: Vec::new(),
        };
        a.without_effect(GENERIC_COLUMN_WITHOUT_EFFECT, &[]);
        a.finish(&[]);
        record_children("EntityTypeMapping", &["Property"], &[]);
        for child in node.children().filter(Node::is_element) {
            if child.tag_name().name() == "Property" {
                let mut a = Attrs::new(cx, child, &mut self.diags);
                let p = PropertyMapping {
                    at: a.at.clone(),
                    id: a.required("Identifier"),
                    connection_column: a.required("ConnectionColumn"),
                    is_primary_key: a.bool("IsPrimaryKey", false),
                    is_unique_key: a.bool("IsUniqueKey", false),
                    format: a.raw("Format"),
                };
                a.finish(&[]);
                el.properties.push(p);
            } else {
                self.unexpected(cx, child, &["Property"], "in <EntityTypeMapping>");
            }
        }
        el
    }

    fn entity_association_mapping(&mut self, cx: &FileCx, node: Node) -> EntityAssociationMapping {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let el = EntityAssociationMapping {
            at: a.at.clone(),
            id: a.required("Identifier"),
            connector: a.required("Connector"),
            connection_table: a.text("ConnectionTable"),
            column1: a.required("Column1"),
            column2: a.required("Column2"),
            entity_property_mapping1: a.property_ref("EntityPropertyMapping1"),
            entity_property_mapping2: a.property_ref("EntityPropertyMapping2"),
            thresholds: a.association_thresholds(),
        };
        a.without_effect(GENERIC_COLUMN_WITHOUT_EFFECT, &[]);
        a.finish(&[]);
        self.no_children(cx, node);
        el
    }

    fn resource_type(&mut self, cx: &FileCx, node: Node) -> ResourceType {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let mut el = ResourceType {
            at: a.at.clone(),
            id: a.required("Identifier"),
            display_names: a.display_names(),
            source_entity_type: a.required("SourceEntityType"),
            target_entity_type: a.required("TargetEntityType"),
            allow_add: a.bool("AllowAdd", true),
            allow_remove: a.bool("AllowRemove", true),
            remove_orphans: a.bool("RemoveOrphans", false),
            thresholds: {
                let mut t = ProvisioningThresholds::default();
                for (slot, name) in t
                    .slots_mut()
                    .into_iter()
                    .zip(ProvisioningThresholds::ATTRIBUTES)
                {
                    *slot = a.uint(name);
                }
                // The resource type page names the percentages MaximumInsertPercent, ...
                for (slot, name) in [
                    (&mut t.max_percentage_added, "MaximumInsertPercent"),
                    (&mut t.max_percentage_modified, "MaximumUpdatePercent"),
                    (&mut t.max_percentage_deleted, "MaximumDeletePercent"),
                ] {
                    if let Some(v) = a.uint(name) {
                        slot.get_or_insert(v);
                    }
                }
                t
            },
            scalar_rules: Vec::new(),
            navigation_rules: Vec::new(),
        };
        a.without_effect(
            RESOURCE_TYPE_WITHOUT_EFFECT,
            &[(
                "P0 … P3V, R0 … R3V",
                is_dimension_flag,
                "dimension parameters (P0.., R0..) belong to the product's role model",
            )],
        );
        a.finish(RESOURCE_TYPE_IGNORED);
        record_children(
            "ResourceType",
            &["ScalarRule", "NavigationRule"],
            RESOURCE_TYPE_SKIPPED_CHILDREN,
        );
        for child in node.children().filter(Node::is_element) {
            let name = child.tag_name().name();
            match name {
                "ScalarRule" => {
                    let mut a = Attrs::new(cx, child, &mut self.diags);
                    let r = ScalarRule {
                        at: a.at.clone(),
                        property: a.required("Property"),
                        source: a.rule_source(true),
                    };
                    self.config
                        .expression_value_starts
                        .extend(std::mem::take(&mut a.expression_starts));
                    a.without_effect(RULE_WITHOUT_EFFECT, &[]);
                    a.finish(RULE_IGNORED);
                    el.scalar_rules.push(r);
                }
                "NavigationRule" => {
                    let mut a = Attrs::new(cx, child, &mut self.diags);
                    let r = NavigationRule {
                        at: a.at.clone(),
                        property: a.required("Property"),
                        resource: a.text("Resource"),
                        source: a.rule_source(false),
                    };
                    self.config
                        .expression_value_starts
                        .extend(std::mem::take(&mut a.expression_starts));
                    a.refuse_true("IsDenied", DENY_RULES_REFUSED);
                    a.without_effect(RULE_WITHOUT_EFFECT, RULE_CRITERIA_WITHOUT_EFFECT);
                    a.finish(RULE_IGNORED);
                    el.navigation_rules.push(r);
                }
                _ if let Some((_, why)) = RESOURCE_TYPE_SKIPPED_CHILDREN
                    .iter()
                    .find(|(n, _)| *n == name) =>
                {
                    self.skip_because(cx, child, why);
                }
                _ => self.unexpected(
                    cx,
                    child,
                    &["ScalarRule", "NavigationRule"],
                    "in <ResourceType>",
                ),
            }
        }
        el
    }

    fn correlation_rule(&mut self, cx: &FileCx, node: Node) -> ResourceCorrelationRule {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let at = a.at.clone();
        let resource_type = a.required("ResourceType");
        let target_binding = a.required("TargetBinding");
        let target_expression = a.expression("TargetExpression");
        let mut source_expression = None;
        let source = match (a.text("SourceBinding"), a.expression("SourceExpression")) {
            (Some(b), e) => {
                // Both: the expression (e.g. ToLower) applies to the bound value.
                source_expression = e;
                Some(RuleSource::Binding(b))
            }
            (None, Some(e)) => Some(RuleSource::Expression(e)),
            (None, None) => {
                a.missing(
                    "SourceBinding",
                    "give SourceBinding (a property path of the owner) or SourceExpression",
                );
                None
            }
        };
        a.without_effect(CORRELATION_WITHOUT_EFFECT, &[]);
        self.config
            .expression_value_starts
            .extend(std::mem::take(&mut a.expression_starts));
        a.finish(RULE_IGNORED);
        self.no_children(cx, node);
        ResourceCorrelationRule {
            at,
            resource_type,
            target_binding,
            target_expression,
            source,
            source_expression,
        }
    }

    fn resource_type_mapping(&mut self, cx: &FileCx, node: Node) -> ResourceTypeMapping {
        let name = node.tag_name().name();
        let kind = match name.strip_suffix("ResourceTypeMapping") {
            Some("") | None => ResourceTypeMappingKind::Generic,
            Some(prefix) => ResourceTypeMappingKind::Typed(prefix.to_string()),
        };
        // The mappings of implemented packages read their documented attributes; the others
        // keep every attribute for a package this build does not run.
        let known = MAPPING_KINDS.iter().find(|k| k.element == name);
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let at = a.at.clone();
        let id = a.required("Identifier");
        let connection = a.text("Connection");
        let attributes = match known {
            Some(k) => a.kept(k.attributes),
            None => a.rest(),
        };
        a.finish(&[]);
        record_children(name, &["Property"], &[]);
        let mut properties = Vec::new();
        for child in node.children().filter(Node::is_element) {
            if child.tag_name().name() == "Property" {
                let mut a = Attrs::new(cx, child, &mut self.diags);
                let p_at = a.at.clone();
                // The typed mapping pages write the property as `Property="dn"`; older
                // configurations write `Identifier="dn"`. Both name the target property.
                let p_id = match (a.text("Property"), a.text("Identifier")) {
                    (Some(p), _) | (None, Some(p)) => p,
                    (None, None) => {
                        a.missing(
                            "Property",
                            "add Property=\"...\" (the target entity type's property) to this <Property>",
                        );
                        Sp::new(String::new(), p_at.clone())
                    }
                };
                let rest = match known {
                    Some(k) => a.kept(k.property),
                    None => a.rest(),
                };
                a.finish(&[]);
                properties.push(ResourceTypeMappingProperty {
                    at: p_at,
                    id: p_id,
                    attributes: rest,
                });
            } else {
                self.unexpected(cx, child, &["Property"], &format!("in <{name}>"));
            }
        }
        ResourceTypeMapping {
            at,
            kind,
            id,
            connection,
            attributes,
            properties,
        }
    }

    fn job(&mut self, cx: &FileCx, node: Node) -> Job {
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let mut el = Job {
            at: a.at.clone(),
            id: a.required("Identifier"),
            display_names: a.display_names(),
            agent: a.text("Agent"),
            // The job page writes CronTabExpression; idlink's own examples wrote Crontab.
            crontab: {
                let documented = a.text("CronTabExpression");
                let older = a.text("CrontabExpression");
                documented.or(older)
            },
            steps: Vec::new(),
        };
        a.without_effect(JOB_WITHOUT_EFFECT, &[]);
        a.finish(JOB_IGNORED);
        record_job_children();
        for child in node.children().filter(Node::is_element) {
            let name = child.tag_name().name();
            if name == "Step" {
                let mut a = Attrs::new(cx, child, &mut self.diags);
                let step = StepRef {
                    at: a.at.clone(),
                    id: a.step_task(),
                    level: a.int("Level"),
                };
                a.finish(&[]);
                self.no_children(cx, child);
                el.steps.push(JobStep::Step(step));
            } else if !TASKS.contains(&name)
                && (KNOWN_OUT_OF_SCOPE_TASKS.contains(&name) || name.ends_with("TaskOverride"))
            {
                let why = if name.ends_with("TaskOverride") {
                    TASK_OVERRIDE_SKIPPED
                } else {
                    OUT_OF_SCOPE_TASK
                };
                self.skip_because(cx, child, why);
            } else if let Some(task) = self.task(cx, child) {
                el.steps.push(JobStep::Inline(Box::new(task)));
            }
        }
        el
    }

    /// `Identifier`, `Agent`, display names: what every task kind has.
    fn task_common(a: &mut Attrs, display_name_required: bool) -> TaskCommon {
        TaskCommon {
            id: a.text("Identifier"),
            display_names: if display_name_required {
                a.display_names_required()
            } else {
                a.display_names()
            },
            agent: a.text("Agent"),
            depends_on: Vec::new(),
        }
    }

    fn task(&mut self, cx: &FileCx, node: Node) -> Option<Task> {
        let name = node.tag_name().name();
        if !TASKS.contains(&name) {
            let mut expected = TASKS.to_vec();
            expected.push("Step");
            self.unexpected(cx, node, &expected, "in <Job>");
            return None;
        }
        let mut a = Attrs::new(cx, node, &mut self.diags);
        let at = a.at.clone();
        let task = match name {
            "ExportTask" => Task::Export(ExportTask {
                at,
                common: Self::task_common(&mut a, true),
                connection: a.text("Connection"),
                continue_on_error: a.bool("ContinueOnError", false),
                ignore_cookie_file: a.bool("IgnoreCookieFile", false),
            }),
            "PrepareSynchronizationTask" => {
                Task::PrepareSynchronization(PrepareSynchronizationTask {
                    at,
                    common: Self::task_common(&mut a, false),
                    connector: a.required("Connector"),
                    mode: {
                        let mode = a.choice_required(
                            "SynchronizationMode",
                            &[
                                ("Initial", SynchronizationMode::Initial),
                                ("Complete", SynchronizationMode::Complete),
                                ("Incremental", SynchronizationMode::Incremental),
                                ("0", SynchronizationMode::Initial),
                                ("1", SynchronizationMode::Complete),
                                ("2", SynchronizationMode::Incremental),
                            ],
                        );
                        if !a.has("SynchronizationMode") {
                            // Some job examples of the documentation leave it out; the task's
                            // reference page lists it as required.
                            if let Some(d) = a.diags_last() {
                                d.hint = Some(
                                    "the PrepareSynchronizationTask reference page (toolkit/xml-configuration/jobs/tasks/agent/preparesynchronizationtask) \
                                     requires it, though an example of the job page omits it; idlink follows the reference: \
                                     add SynchronizationMode=\"Complete\" (1) to re-read the whole export, \
                                     \"Incremental\" (2) to apply changes, or \"Initial\" (0) for the first load"
                                        .to_string(),
                                );
                            }
                        }
                        mode.unwrap_or(SynchronizationMode::Complete)
                    },
                })
            }
            "SynchronizeTask" => Task::Synchronize(SynchronizeTask {
                at,
                common: Self::task_common(&mut a, false),
                connector: a.required("Connector"),
                force_synchronization: a.bool("ForceSynchronization", false),
                do_not_delete_changes: a.bool("DoNotDeleteChanges", false),
            }),
            "GenerateProvisioningOrdersTask" => {
                Task::GenerateProvisioningOrders(GenerateProvisioningOrdersTask {
                    at,
                    common: Self::task_common(&mut a, false),
                    resource_types: a.list("ResourceTypes"),
                    connector: a.text("Connector"),
                })
            }
            _ => Task::Fulfill(FulfillTask {
                at,
                common: Self::task_common(&mut a, true),
                connector: a.text("Connector"),
                connection: a.text("Connection"),
                batch_size: a.uint("BatchSize"),
                continue_on_error: a.bool("ContinueOnError", false),
                resource_types: Vec::new(),
            }),
        };
        a.without_effect(TASK_WITHOUT_EFFECT, &[]);
        a.finish(TASK_IGNORED);
        match task {
            Task::Fulfill(_) | Task::GenerateProvisioningOrders(_) => {
                record_children(name, &["TaskDependsOnTask", "TaskResourceType"], &[]);
            }
            _ => record_children(name, &["TaskDependsOnTask"], &[]),
        }
        let mut task = task;
        for child in node.children().filter(Node::is_element) {
            let place = format!("in <{name}>");
            match (&mut task, child.tag_name().name()) {
                (_, "TaskDependsOnTask") => {
                    let mut a = Attrs::new(cx, child, &mut self.diags);
                    let parent = a.required("ParentTask");
                    a.finish(&[]);
                    self.no_children(cx, child);
                    task_common_mut(&mut task).depends_on.push(parent);
                }
                (Task::Fulfill(_) | Task::GenerateProvisioningOrders(_), "TaskResourceType") => {
                    let mut a = Attrs::new(cx, child, &mut self.diags);
                    let rt = a.required("ResourceType");
                    a.finish(&[]);
                    self.no_children(cx, child);
                    match &mut task {
                        Task::Fulfill(f) => f.resource_types.push(rt),
                        Task::GenerateProvisioningOrders(g) => g.resource_types.push(rt),
                        _ => {}
                    }
                }
                (Task::Fulfill(_) | Task::GenerateProvisioningOrders(_), _) => self.unexpected(
                    cx,
                    child,
                    &["TaskResourceType", "TaskDependsOnTask"],
                    &place,
                ),
                _ => self.unexpected(cx, child, &["TaskDependsOnTask"], &place),
            }
        }
        Some(task)
    }

    fn no_children(&mut self, cx: &FileCx, node: Node) {
        for child in node.children().filter(Node::is_element) {
            self.unexpected(cx, child, &[], &format!("in <{}>", node.tag_name().name()));
        }
    }
}

fn task_common_mut(task: &mut Task) -> &mut TaskCommon {
    match task {
        Task::Export(t) => &mut t.common,
        Task::PrepareSynchronization(t) => &mut t.common,
        Task::Synchronize(t) => &mut t.common,
        Task::GenerateProvisioningOrders(t) => &mut t.common,
        Task::Fulfill(t) => &mut t.common,
    }
}

/// In-scope top-level elements (typed resource type mappings are matched by suffix).
const TOP_LEVEL: &[&str] = &[
    "Agent",
    "Connector",
    "Connection",
    "ConnectionTable",
    "EntityType",
    "EntityAssociation",
    "EntityTypeMapping",
    "EntityAssociationMapping",
    "ResourceType",
    "ResourceCorrelationRule",
    "ResourceTypeMapping",
    "Job",
];

const TASKS: &[&str] = &[
    "ExportTask",
    "PrepareSynchronizationTask",
    "SynchronizeTask",
    "GenerateProvisioningOrdersTask",
    "FulfillTask",
];

/// Task kinds of the 6.2 reference (agent and server tasks) that idlink does not run. Declared
/// outside a job they are skipped, and a `<Step>` naming one is skipped with them.
const KNOWN_OUT_OF_SCOPE_TASKS: &[&str] = &[
    "ActivityInstanceActorTask",
    "BuildRoleModelTask",
    "ComputeCorrelationKeysTask",
    "ComputeRiskScoresTask",
    "ComputeRoleModelTask",
    "CreateDatabaseViewsTask",
    "DeployConfigurationTask",
    "GetRoleMiningTask",
    "InvokeApiTask",
    "InvokeAspectsTask",
    "InvokeExpressionTask",
    "InvokeSqlCommandTask",
    "MaintainIndexesTask",
    "ManageConfigurationIndexesTask",
    "ProcessAccessCertificationItemsTask",
    "ResetValidFromTask",
    "SavePreExistingAccessRightsTask",
    "SendAccessCertificationNotificationTask",
    "SendNotificationsTask",
    "SendRoleModelNotificationsTask",
    "SetAccessCertificationReviewerTask",
    "SetInternalUserProfilesTask",
    "SetRecentlyModifiedFlagTask",
    "UpdateAccessCertificationCampaignTask",
    "UpdateClassificationTask",
    "UpdateEntityPropertyExpressionsTask",
];

/// Netwrix Identity Manager elements that are outside idlink's scope. They are skipped with one
/// warning per kind, and never taken for a misspelling of an in-scope element.
const KNOWN_OUT_OF_SCOPE: &[&str] = &[
    "AccessCertificationCampaignPolicy",
    "AccessControlEntry",
    "AccessControlPermission",
    "AccessControlRule",
    "BasketRule",
    "Category",
    "CompositeRole",
    "CompositeRoleRule",
    "ConnectorMapping",
    "ContextRule",
    "Dimension",
    "DisplayEntityAssociation",
    "DisplayEntityType",
    "DisplayTable",
    "EntityPropertyExpression",
    "EntityPropertyMapping",
    "EntityTypeDisplay",
    "Form",
    "IndirectResourceRule",
    "Language",
    "MenuItem",
    "OpenIdClient",
    "Policy",
    "Profile",
    "ProfileRule",
    "ProfileRuleContext",
    "QueryRule",
    "ResourceClassificationRule",
    "ResourceQueryRule",
    "ResourceTypeRule",
    "SearchBar",
    "Setting",
    "SingleRole",
    "SingleRoleRule",
    "Tile",
    "ViewTargetResourceTemplate",
    "Workflow",
];

/// Attributes real configurations carry that idlink reads no meaning from (no warning).
const ENTITY_TYPE_IGNORED: &[&str] = &["IsLocal", "IsDeactivated", "ValidFrom", "ValidTo"];
const PROPERTY_IGNORED: &[&str] = &["IsNotSearchable", "IsMultiValued", "FlexibleComparisonType"];
/// Documented attributes idlink accepts without effect, each with the reason; one info line
/// per attribute and element is shown with `-v` (see [`Rule::AcceptedWithoutEffect`]).
type WithoutEffect = &'static [(&'static str, &'static str)];

/// A family of documented attribute names (e.g. `P0`..`P3V`): its label in the conformance
/// document, whether a name belongs to it, and why it has no effect.
type Family = (&'static str, fn(&str) -> bool, &'static str);

const POLICY: (&str, &str) = (
    "Policy",
    "policies (role model, approvals) are outside idlink's scope",
);
const OPENID_CLIENT: (&str, &str) = (
    "OpenIdClient",
    "it names the client the product's job engine signs in with; idlink runs tasks itself",
);

const RESOURCE_TYPE_WITHOUT_EFFECT: WithoutEffect = &[
    POLICY,
    (
        "Category",
        "categories only group resource types on the product's screens",
    ),
    (
        "ApprovalWorkflowType",
        "manual assignment workflows are outside idlink's scope",
    ),
    (
        "ImplicitApproval",
        "manual assignment workflows are outside idlink's scope",
    ),
    (
        "ProlongationWithoutApproval",
        "manual assignment workflows are outside idlink's scope",
    ),
    (
        "ManualAssignmentEndDateLockedToContextMode",
        "manual assignment workflows are outside idlink's scope",
    ),
    (
        "BlockProvisioning",
        "it blocks the product's provisioning policy orders; idlink has no policies",
    ),
    (
        "DiscardManualAssignments",
        "idlink does not track manual approvals of property values",
    ),
    (
        "CorrelateMultipleResources",
        "idlink correlates each owner with the resources its correlation rules match",
    ),
    (
        "SuggestAllCorrelations",
        "correlation suggestions go to the product's review screens, which idlink does not have",
    ),
    (
        "HideOnSimplifiedView",
        "it only changes the product's basket view",
    ),
    (
        "ArgumentsExpression",
        "its C# expression feeds the product's workflow connectors, which idlink does not run",
    ),
    (
        "DependsOn",
        "idlink does not yet hold orders back until the prerequisite resource type is provisioned",
    ),
    (
        "DependsOnOwnerProperty",
        "idlink does not yet hold orders back until the owner property is filled",
    ),
    (
        "FulfillHoursAheadOfTime",
        "idlink fulfills orders when they are generated, not ahead of a start date",
    ),
    (
        "TransmittedStateValidityPeriod",
        "idlink does not age transmitted orders into errors",
    ),
    (
        "Type",
        "resource type kinds only change the product's screens",
    ),
    (
        "Description_L1",
        "descriptions are shown on the product's screens only",
    ),
];

const RULE_WITHOUT_EFFECT: WithoutEffect = &[
    POLICY,
    (
        "SingleRole",
        "single roles belong to the product's role model (outside idlink's scope): the rule applies to every owner of the resource type",
    ),
    (
        "TimeOffsetReference",
        "idlink computes rules for the present: time offsets around assignment dates do not apply",
    ),
    (
        "TimeOffsetBeforeReference",
        "idlink computes rules for the present: time offsets around assignment dates do not apply",
    ),
    (
        "TimeOffsetAfterReference",
        "idlink computes rules for the present: time offsets around assignment dates do not apply",
    ),
    (
        "ComparisonType",
        "idlink compares computed and existing values as written",
    ),
    ("IsMapped", "idlink provisions every rule's property"),
];

const CORRELATION_WITHOUT_EFFECT: WithoutEffect = &[
    POLICY,
    (
        "SourceMatchedConfidenceLevel",
        "the product sends matches below 100 to a manual review, which idlink does not have; every match correlates",
    ),
];

const JOB_WITHOUT_EFFECT: WithoutEffect = &[
    (
        "LogLevel",
        "idlink's log level comes from -v/-q and IDLINK_LOG",
    ),
    (
        "CronTimeZone",
        "idlink reads CronTabExpression but does not schedule jobs in this build",
    ),
    (
        "IsConnectorJob",
        "it only places the job on the product's connector screen",
    ),
    (
        "IsIncremental",
        "each task's own mode (SynchronizationMode) decides",
    ),
    (
        "IsInitializationJob",
        "it only marks the job on the product's screens",
    ),
    (
        "UserStartDenied",
        "it only hides the product's manual launch button",
    ),
];

const TASK_WITHOUT_EFFECT: WithoutEffect = &[
    OPENID_CLIENT,
    (
        "Level",
        "idlink runs a job's tasks one at a time, in an order that respects TaskDependsOnTask",
    ),
    (
        "Type",
        "it picks one of the product's executables; idlink has one implementation per task",
    ),
    ("InitMode", "idlink keeps no archive of changes to skip"),
    (
        "ColumnName",
        "idlink's exports do not write a command column",
    ),
    ("WorkingDirectory", "idlink works in its --work folder"),
    (
        "IgnoreHistorization",
        "idlink keeps no archive of changes to skip",
    ),
    (
        "Dirty",
        "it tags the product's internal resources, which idlink does not have",
    ),
    ("Orphans", "idlink does not write an orphans file"),
    (
        "BatchInsertSize",
        "idlink's order generation takes no batch sizes",
    ),
    (
        "BatchSelectSize",
        "idlink's order generation takes no batch sizes",
    ),
    (
        "ForceProvisioning",
        "it acts on the product's provisioning policy orders; idlink has no provisioning policies",
    ),
];

/// Undocumented attributes real configurations carry that idlink reads no meaning from (no line).
const RESOURCE_TYPE_IGNORED: &[&str] = &["ApproveRoleImplicit"];
const RULE_IGNORED: &[&str] = &[
    "TimeOffset",
    "Priority",
    "ResourceType",
    "Binding1",
    "Binding2",
];
const JOB_IGNORED: &[&str] = &["Tags"];
const TASK_IGNORED: &[&str] = &["Tags", "ResourceTypeMappings"];

/// `DisplayName_L1` .. `DisplayName_L16`.
fn is_display_name(name: &str) -> bool {
    name.strip_prefix("DisplayName_L")
        .and_then(|n| n.parse::<u8>().ok())
        .is_some_and(|n| (1..=16).contains(&n))
}

/// Records the child elements `parent` reads (`<Child>`) and those it skips, with why.
fn record_children(parent: &str, read: &[&str], skipped: &[(&str, &str)]) {
    if !recording() {
        return;
    }
    for child in read {
        record(parent, &format!("<{child}>"), || {
            "child element".to_string()
        });
    }
    for (child, why) in skipped {
        record_known(parent, &format!("<{child}>"), || Known {
            status: Status::Skipped(why.to_string()),
            refused: None,
            family: None,
        });
    }
}

/// A job's children: the tasks idlink runs, `<Step>`, and the task kinds (and task overrides)
/// it skips.
fn record_job_children() {
    if !recording() {
        return;
    }
    let mut read = TASKS.to_vec();
    read.push("Step");
    let skipped: Vec<(&str, &str)> = KNOWN_OUT_OF_SCOPE_TASKS
        .iter()
        .map(|t| (*t, OUT_OF_SCOPE_TASK))
        .collect();
    record_children("Job", &read, &skipped);
    record_known("Job", "<…TaskOverride>", || Known {
        status: Status::Skipped(TASK_OVERRIDE_SKIPPED.to_string()),
        refused: None,
        family: Some(|n| n.starts_with('<') && n.ends_with("TaskOverride>")),
    });
}

const OUT_OF_SCOPE_TASK: &str =
    "a task of the product's role model, campaigns or maintenance, which idlink does not run";
const TASK_OVERRIDE_SKIPPED: &str = "a task override changes a task idlink does not run, or a task of a scaffolding idlink does not expand";

const AGENT_WITHOUT_EFFECT: WithoutEffect = &[(
    "State",
    "the agent's status is shown on the product's screens; idlink reads no status from the configuration",
)];

const CONNECTION_TABLE_WITHOUT_EFFECT: WithoutEffect = &[(
    "Path",
    "the product's path to a stored schema; idlink keeps refreshed schemas itself",
)];

const COLUMN_WITHOUT_EFFECT: WithoutEffect = &[
    (
        "ForeignColumn",
        "the product's internal id of a foreign key column; idlink links tables through association mappings",
    ),
    ("Path", "it only groups columns on the product's screens"),
    (
        "ValueLength",
        "idlink does not limit the length of exported values",
    ),
];

const ENTITY_TYPE_WITHOUT_EFFECT: WithoutEffect = &[
    (
        "LicenseTag",
        "it ties the entity type to a product license key; idlink has no license keys",
    ),
    ("TableName", "reserved to the product's Power BI connector"),
];

const ENTITY_PROPERTY_WITHOUT_EFFECT: WithoutEffect = &[
    (
        "FlexibleComparisonExpression",
        "it serves the product's flexible search operators, which idlink does not have",
    ),
    (
        "GroupByProperty",
        "it serves the product's Evaluate policy, which idlink does not run",
    ),
    ("HistoryPrecision", "idlink keeps no record history"),
    (
        "Language",
        "localized properties only change the product's screens",
    ),
    (
        "NeutralProperty",
        "localized properties only change the product's screens",
    ),
];

/// `C0` of entity type and association mappings.
const GENERIC_COLUMN_WITHOUT_EFFECT: WithoutEffect = &[(
    "C0",
    "a generic column of the Microsoft Entra ID and ServiceNow connectors, which idlink does not implement",
)];

/// Children of `<ResourceType>` that idlink skips, and why.
const RESOURCE_TYPE_SKIPPED_CHILDREN: &[(&str, &str)] = &[
    (
        "BinaryRule",
        "binary rules copy files the product stores; idlink provisions scalar and navigation properties",
    ),
    (
        "QueryRule",
        "query rules select resources with C# queries on the product's database; idlink computes navigation properties from NavigationRule",
    ),
    (
        "TypeRule",
        "type rules assign resource types through the product's role model; idlink gives a resource type to every resource of its SourceEntityType",
    ),
];

const DENY_RULES_REFUSED: &str = "idlink does not implement deny rules, so this rule would grant the resource it is meant to forbid";

/// Role-model criteria of navigation rules: dimension values and their inheritance.
const RULE_CRITERIA_WITHOUT_EFFECT: &[Family] = &[
    (
        "D0 … D127",
        is_dimension_value,
        "idlink has no dimensions: the rule applies whatever the owner's dimension values",
    ),
    (
        "L0 … L127",
        is_dimension_inheritance,
        "idlink has no dimensions, so no dimension inheritance",
    ),
];

/// `D0`..`D127` (decimal, as the resource type page writes them) or `D0`..`D3V` (base32hex).
fn is_dimension_value(name: &str) -> bool {
    dimension_suffix(name, 'D')
}

/// `L0`..`L127` or `L0`..`L3V`.
fn is_dimension_inheritance(name: &str) -> bool {
    dimension_suffix(name, 'L')
}

fn dimension_suffix(name: &str, prefix: char) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let decimal = rest.parse::<u8>().is_ok_and(|n| n <= 127) && !rest.starts_with('+');
    let base32 = (1..=2).contains(&rest.len())
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='V').contains(&c));
    decimal || base32
}

/// What idlink does with a documented attribute of a resource type mapping.
#[derive(Debug, Clone, Copy)]
enum Use {
    /// Kept for the package and used: how.
    Used(&'static str),
    /// Kept for the package, without effect: why.
    WithoutEffect(&'static str),
}

/// A resource type mapping element of a package idlink implements, with its documented
/// attributes and those of its `<Property>` children.
struct MappingKind {
    element: &'static str,
    attributes: &'static [(&'static str, Use)],
    property: &'static [(&'static str, Use)],
}

const DEFAULT_OBJECT_CLASS: (&str, Use) = (
    "DefaultObjectClass",
    Use::Used("string: the objectClass an Added order gets when it carries none (fulfill)"),
);

const MAPPING_KINDS: &[MappingKind] = &[
    MappingKind {
        element: "LdapResourceTypeMapping",
        attributes: &[
            DEFAULT_OBJECT_CLASS,
            (
                "PasswordResetSetting",
                Use::WithoutEffect("idlink runs no password reset process"),
            ),
            (
                "RDNAttributeIdentifier",
                Use::WithoutEffect("idlink reads an entry's RDN attribute from its DN"),
            ),
            (
                "UsePermissiveModify",
                Use::WithoutEffect(
                    "idlink compares with the entry first: adding a present value or removing a missing one is Executed without an error",
                ),
            ),
            (
                "UseTreeDelete",
                Use::WithoutEffect(
                    "idlink deletes one entry per order; deleting an entry that still has children fails with the server's error",
                ),
            ),
        ],
        property: &[
            (
                "IsDNProperty",
                Use::WithoutEffect("idlink takes an entry's DN from the order's dn property"),
            ),
            (
                "IsParentProperty",
                Use::WithoutEffect(
                    "idlink reads the parent from the DN: a changed dn moves the entry",
                ),
            ),
            (
                "IsRDNProperty",
                Use::WithoutEffect("idlink reads the RDN from the DN"),
            ),
            (
                "IsUserAccountControlProperty",
                Use::WithoutEffect(
                    "Active Directory's userAccountControl means nothing to the standard LDAP v3 directories idlink manages",
                ),
            ),
            (
                "DataSourceBacklinkColumnName",
                Use::WithoutEffect(
                    "idlink writes a membership on the attribute the order names; it does not turn a back-link (memberOf) into the linked entry's forward link (member)",
                ),
            ),
            (
                "MultiValueSeparator",
                Use::WithoutEffect(
                    "orders carry multi-valued properties as JSON arrays, not as separated strings",
                ),
            ),
        ],
    },
    MappingKind {
        element: "ScimResourceTypeMapping",
        attributes: &[DEFAULT_OBJECT_CLASS],
        property: &[(
            "IsDNProperty",
            Use::WithoutEffect(
                "the SCIM package finds a resource by the order's `id` property (its SCIM id), whatever property this marks",
            ),
        )],
    },
    MappingKind {
        element: "ManualProvisioningResourceTypeMapping",
        attributes: &[(
            "TicketSynchroIsNotAvailable",
            Use::WithoutEffect(
                "the manual ticket package, which would verify tickets by it, does not run in this build",
            ),
        )],
        property: &[],
    },
];

/// `P0`..`P3V`, `R0`..`R3V`: a resource type's dimension parameters (base32hex).
fn is_dimension_flag(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('P' | 'R'))
        && (2..=3).contains(&name.len())
        && chars.all(|c| c.is_ascii_digit() || ('A'..='V').contains(&c))
}

const JOB_INTEGRATION: &[(&str, JobIntegrationRule)] = &[
    ("Used", JobIntegrationRule::Used),
    ("NotUsed", JobIntegrationRule::NotUsed),
    (
        "OnlySynchronization",
        JobIntegrationRule::OnlySynchronization,
    ),
    ("OnlyProvisioning", JobIntegrationRule::OnlyProvisioning),
    ("0", JobIntegrationRule::Used),
    ("1", JobIntegrationRule::NotUsed),
    ("2", JobIntegrationRule::OnlySynchronization),
    ("3", JobIntegrationRule::OnlyProvisioning),
];

/// Largest |AddedDays| accepted: far beyond any date shift, well inside chrono's range.
const MAX_ADDED_DAYS: f64 = 1_000_000.0;

const VALUE_TYPES: &[(&str, ValueType)] = &[
    ("String", ValueType::String),
    ("Bytes", ValueType::Bytes),
    ("Int32", ValueType::Int32),
    ("Int64", ValueType::Int64),
    ("DateTime", ValueType::DateTime),
    ("Bool", ValueType::Bool),
    ("Guid", ValueType::Guid),
    ("Double", ValueType::Double),
    ("Binary", ValueType::Binary),
    ("Byte", ValueType::Byte),
    ("Int16", ValueType::Int16),
    // The connection table page's numeric codes.
    ("0", ValueType::String),
    ("1", ValueType::Bytes),
    ("2", ValueType::Int32),
    ("3", ValueType::Int64),
    ("4", ValueType::DateTime),
    ("5", ValueType::Bool),
    ("6", ValueType::Guid),
    ("7", ValueType::Double),
    ("8", ValueType::Binary),
    ("9", ValueType::Byte),
    ("10", ValueType::Int16),
];

const PROPERTY_TYPES: &[(&str, PropertyType)] = &[
    ("String", PropertyType::String),
    ("Int32", PropertyType::Int32),
    ("Int64", PropertyType::Int64),
    ("Bool", PropertyType::Bool),
    ("DateTime", PropertyType::DateTime),
    ("Guid", PropertyType::Guid),
    ("Double", PropertyType::Double),
    ("Binary", PropertyType::Binary),
    ("ForeignKey", PropertyType::ForeignKey),
    ("Bytes", PropertyType::Bytes),
    ("Byte", PropertyType::Byte),
    ("Int16", PropertyType::Int16),
    // The entity type page's numeric codes (11 is not used).
    ("0", PropertyType::String),
    ("1", PropertyType::Bytes),
    ("2", PropertyType::Int32),
    ("3", PropertyType::Int64),
    ("4", PropertyType::DateTime),
    ("5", PropertyType::Bool),
    ("6", PropertyType::Guid),
    ("7", PropertyType::Double),
    ("8", PropertyType::Binary),
    ("9", PropertyType::Byte),
    ("10", PropertyType::Int16),
    ("12", PropertyType::ForeignKey),
];

/// Per-file context: the file's name and its line index.
struct FileCx<'t> {
    file: Arc<str>,
    lines: LineIndex<'t>,
}

impl FileCx<'_> {
    fn at(&self, node: Node) -> Loc {
        self.lines.loc(&self.file, node.range().start)
    }
}

/// What the loader does with one item (an attribute, or a child element written `<Child>`) of
/// an element, recorded while [`record_attributes`] runs: `docs/conformance.md` is made from it,
/// so it tells what the loader really does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Read into the configuration: how (type, default, allowed values).
    Used(String),
    /// Accepted without effect, and why.
    WithoutEffect(String),
    /// A child element skipped as outside idlink's scope, and why.
    Skipped(String),
}

/// One item the loader knows, with what it does with it.
#[derive(Debug, Clone)]
pub struct Known {
    pub status: Status,
    /// Values the loader refuses (an error), and why: `true: deny rules are not implemented`.
    pub refused: Option<String>,
    /// For a family of names recorded under one label (`DisplayName_L1 … DisplayName_L16`):
    /// whether a name belongs to it.
    pub family: Option<fn(&str) -> bool>,
}

impl Known {
    fn used(how: String) -> Known {
        Known {
            status: Status::Used(how),
            refused: None,
            family: None,
        }
    }

    /// Whether this item, recorded as `label`, is `name` (or, for a family, has it as a member).
    pub fn matches(&self, label: &str, name: &str) -> bool {
        match self.family {
            Some(f) => f(name),
            None => label == name,
        }
    }
}

/// Element (a child `Property` recorded under its parent: `EntityType/Property`) -> item -> what
/// the loader does with it.
pub type AttributeReads = BTreeMap<String, BTreeMap<String, Known>>;

thread_local! {
    static RECORDED: std::cell::RefCell<Option<AttributeReads>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (which loads configurations) and returns what it returned and every item the
/// loader asked for, per element, with what it does with it. The loader records every item it
/// asks for at each element it reads, written or not, so what is recorded depends on the
/// element kinds reached, not on the attributes the configurations happen to write.
pub fn record_attributes<T>(f: impl FnOnce() -> T) -> (T, AttributeReads) {
    RECORDED.with(|r| *r.borrow_mut() = Some(AttributeReads::new()));
    let out = f();
    let reads = RECORDED.with(|r| r.borrow_mut().take()).unwrap_or_default();
    (out, reads)
}

/// Whether [`record_attributes`] is running (outside it, loading records nothing).
fn recording() -> bool {
    RECORDED.with(|r| r.borrow().is_some())
}

/// Records `item` of `element`. The first record of an item wins: a typed read records before
/// it looks the attribute up, so the plain lookup does not replace it.
fn record_known(element: &str, item: &str, known: impl FnOnce() -> Known) {
    RECORDED.with(|r| {
        if let Some(map) = r.borrow_mut().as_mut() {
            map.entry(element.to_string())
                .or_default()
                .entry(item.to_string())
                .or_insert_with(known);
        }
    });
}

fn record(element: &str, name: &str, how: impl FnOnce() -> String) {
    record_known(element, name, || Known::used(how()));
}

/// Reads the attributes of one element, remembering which were asked for so the rest can be
/// reported as unknown (with a suggestion).
struct Attrs<'d> {
    diags: &'d mut Diagnostics,
    at: Loc,
    element: String,
    attrs: Vec<(String, String, Loc)>,
    used: Vec<bool>,
    asked: Vec<&'static str>,
    /// The name reads are recorded under (see [`record_attributes`]).
    recorded_as: String,
    /// Per attribute: where its trimmed value starts, when written verbatim (see
    /// [`verbatim_value_start`]).
    value_starts: Vec<Option<Loc>>,
    /// `(attribute, value start)` of the expression attributes read (see
    /// [`Configuration::expression_value_starts`]).
    expression_starts: Vec<(Loc, Loc)>,
}

/// Where the trimmed value of `a` starts, when the value is written verbatim between its quotes
/// (no entity reference, line break or tab): a byte offset in the value is then the same
/// number of characters from there, on the same line.
fn verbatim_value_start(cx: &FileCx, input: &str, a: &roxmltree::Attribute) -> Option<Loc> {
    let range = a.range_value();
    let raw = input.get(range.clone())?;
    let quoted = range.start > 0
        && matches!(input.as_bytes().get(range.start - 1), Some(b'"' | b'\''))
        && input.as_bytes().get(range.start - 1) == input.as_bytes().get(range.end);
    if !quoted || raw != a.value() {
        return None;
    }
    let lead = raw.len() - raw.trim_start().len();
    Some(cx.lines.loc(&cx.file, range.start + lead))
}

impl<'d> Attrs<'d> {
    fn new(cx: &FileCx, node: Node, diags: &'d mut Diagnostics) -> Self {
        let input = node.document().input_text();
        let (attrs, value_starts): (Vec<_>, Vec<_>) = node
            .attributes()
            .filter(|a| a.namespace().is_none_or(|ns| ns == NAMESPACE))
            .map(|a| {
                (
                    (
                        a.name().to_string(),
                        a.value().to_string(),
                        cx.lines.loc(&cx.file, a.range().start),
                    ),
                    verbatim_value_start(cx, input, &a),
                )
            })
            .unzip();
        let used = vec![false; attrs.len()];
        let element = node.tag_name().name().to_string();
        // `Property` means something else under each parent: record it per parent.
        let recorded_as = match node.parent_element() {
            Some(parent) if element == "Property" => {
                format!("{}/Property", parent.tag_name().name())
            }
            _ => element.clone(),
        };
        Self {
            diags,
            at: cx.at(node),
            element,
            recorded_as,
            attrs,
            used,
            asked: Vec::new(),
            value_starts,
            expression_starts: Vec::new(),
        }
    }

    /// An expression attribute: as [`Attrs::text`], and where its value starts is kept for
    /// [`Configuration::expression_value_starts`] when it is written verbatim.
    fn expression(&mut self, name: &'static str) -> Option<Text> {
        let i = self.find(name)?;
        let (_, v, at) = &self.attrs[i];
        if v.trim().is_empty() {
            return None;
        }
        if let Some(start) = &self.value_starts[i] {
            self.expression_starts.push((at.clone(), start.clone()));
        }
        Some(Sp::new(v.trim().to_string(), at.clone()))
    }

    fn find(&mut self, name: &'static str) -> Option<usize> {
        record(&self.recorded_as, name, || "string".to_string());
        self.lookup(name)
    }

    /// `find` without recording (for names recorded as a family).
    fn lookup(&mut self, name: &'static str) -> Option<usize> {
        self.asked.push(name);
        let i = self.attrs.iter().position(|(n, _, _)| n == name)?;
        self.used[i] = true;
        Some(i)
    }

    /// The attribute as written, with its location; empty values count as absent.
    fn text(&mut self, name: &'static str) -> Option<Text> {
        let i = self.find(name)?;
        let (_, v, at) = &self.attrs[i];
        (!v.trim().is_empty()).then(|| Sp::new(v.trim().to_string(), at.clone()))
    }

    fn raw(&mut self, name: &'static str) -> Option<String> {
        let i = self.find(name)?;
        Some(self.attrs[i].1.clone())
    }

    fn missing(&mut self, name: &str, hint: &str) {
        let at = self.at.clone();
        self.diags.push(
            Diagnostic::new(
                Rule::MissingAttribute,
                at,
                format!("<{}> needs the attribute {name}", self.element),
            )
            .hint(hint.to_string()),
        );
    }

    /// A required attribute. When absent, reports it and returns an empty value located at the
    /// element, which later rules skip (it is already reported).
    fn required(&mut self, name: &'static str) -> Text {
        record(&self.recorded_as, name, || "string, required".to_string());
        match self.text(name) {
            Some(t) => t,
            None => {
                let hint = format!("add {name}=\"...\" to this <{}>", self.element);
                self.missing(name, &hint);
                Sp::new(String::new(), self.at.clone())
            }
        }
    }

    fn display_names(&mut self) -> DisplayNames {
        const NAMES: [&str; 16] = [
            "DisplayName_L1",
            "DisplayName_L2",
            "DisplayName_L3",
            "DisplayName_L4",
            "DisplayName_L5",
            "DisplayName_L6",
            "DisplayName_L7",
            "DisplayName_L8",
            "DisplayName_L9",
            "DisplayName_L10",
            "DisplayName_L11",
            "DisplayName_L12",
            "DisplayName_L13",
            "DisplayName_L14",
            "DisplayName_L15",
            "DisplayName_L16",
        ];
        record_known(
            &self.recorded_as,
            "DisplayName_L1 … DisplayName_L16",
            || Known {
                family: Some(is_display_name),
                ..Known::used("string".to_string())
            },
        );
        let mut names: Vec<Option<String>> = NAMES
            .iter()
            .map(|n| {
                let i = self.lookup(n)?;
                Some(self.attrs[i].1.clone())
            })
            .collect();
        while names.last().is_some_and(Option::is_none) {
            names.pop();
        }
        DisplayNames(names)
    }

    fn display_names_required(&mut self) -> DisplayNames {
        let names = self.display_names();
        if names.l1().is_none_or(|s| s.trim().is_empty()) {
            let hint = format!(
                "add DisplayName_L1=\"...\" to this <{}>: the name people see",
                self.element
            );
            self.missing("DisplayName_L1", &hint);
        }
        names
    }

    fn invalid(&mut self, i: usize, expected: &str) {
        let (name, value, at) = &self.attrs[i];
        self.diags.push(
            Diagnostic::new(
                Rule::AttributeValue,
                at.clone(),
                format!(
                    "{name}=\"{value}\" on <{}> is not valid: expected {expected}",
                    self.element
                ),
            )
            .hint(format!("write {name} as {expected}")),
        );
    }

    fn bool(&mut self, name: &'static str, default: bool) -> bool {
        record(&self.recorded_as, name, || {
            format!("boolean (true, false, 1, 0), default {default}")
        });
        let Some(i) = self.find(name) else {
            return default;
        };
        match self.attrs[i].1.trim() {
            // XML Schema's boolean: true, false, 1 or 0 (the job how-tos write 1).
            v if v.eq_ignore_ascii_case("true") || v == "1" => true,
            v if v.eq_ignore_ascii_case("false") || v == "0" => false,
            "" => default,
            _ => {
                self.invalid(i, "true, false, 1 or 0");
                default
            }
        }
    }

    fn parsed<T: std::str::FromStr>(&mut self, name: &'static str, expected: &str) -> Option<T> {
        let i = self.find(name)?;
        let v = self.attrs[i].1.trim();
        if v.is_empty() {
            return None;
        }
        match v.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.invalid(i, expected);
                None
            }
        }
    }

    fn int(&mut self, name: &'static str) -> Option<i32> {
        record(&self.recorded_as, name, || "integer".to_string());
        self.parsed(name, "a whole number")
    }

    /// A number of days, possibly fractional and negative (`-0.5`), bounded.
    fn days(&mut self, name: &'static str) -> Option<f64> {
        record(&self.recorded_as, name, || {
            "number of days (may be fractional)".to_string()
        });
        const EXPECTED: &str =
            "a number of days, possibly fractional (e.g. 1, -0.5), within one million";
        let i = self.find(name)?;
        let v = self.attrs[i].1.trim();
        if v.is_empty() {
            return None;
        }
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n.abs() <= MAX_ADDED_DAYS => Some(n),
            _ => {
                self.invalid(i, EXPECTED);
                None
            }
        }
    }

    fn uint(&mut self, name: &'static str) -> Option<u32> {
        record(&self.recorded_as, name, || "whole number ≥ 0".to_string());
        self.parsed(name, "a whole number, 0 or more")
    }

    fn choice<T: Copy>(&mut self, name: &'static str, allowed: &[(&str, T)]) -> Option<T> {
        record(&self.recorded_as, name, || {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            format!("one of {}", names.join(", "))
        });
        let i = self.find(name)?;
        let v = self.attrs[i].1.trim();
        if v.is_empty() {
            return None;
        }
        if let Some((_, t)) = allowed.iter().find(|(k, _)| k.eq_ignore_ascii_case(v)) {
            return Some(*t);
        }
        let names: Vec<&str> = allowed.iter().map(|(k, _)| *k).collect();
        let expected = format!("one of {}", names.join(", "));
        let suggestion = did_you_mean(v, names.iter().copied());
        self.invalid(i, &expected);
        if let (Some(s), Some(last)) = (suggestion, self.diags_last()) {
            last.hint = Some(format!("did you mean '{s}'? allowed: {}", names.join(", ")));
        }
        None
    }

    /// Whether the attribute is written with a non-empty value.
    fn has(&self, name: &str) -> bool {
        self.attrs
            .iter()
            .any(|(n, v, _)| n == name && !v.trim().is_empty())
    }

    fn diags_last(&mut self) -> Option<&mut Diagnostic> {
        // Diagnostics is append-only; the last one is the one just pushed.
        self.diags.last_mut()
    }

    fn choice_required<T: Copy>(&mut self, name: &'static str, allowed: &[(&str, T)]) -> Option<T> {
        record(&self.recorded_as, name, || {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            format!("one of {}, required", names.join(", "))
        });
        if self
            .attrs
            .iter()
            .any(|(n, v, _)| n == name && !v.trim().is_empty())
        {
            self.choice(name, allowed)
        } else {
            self.asked.push(name);
            let names: Vec<&str> = allowed.iter().map(|(k, _)| *k).collect();
            let hint = format!("add {name}=\"...\" with one of {}", names.join(", "));
            self.missing(name, &hint);
            None
        }
    }

    /// A list attribute: identifiers separated by spaces, commas or semicolons.
    fn list(&mut self, name: &'static str) -> Vec<Text> {
        let Some(t) = self.text(name) else {
            return Vec::new();
        };
        t.value
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .filter(|s| !s.is_empty())
            .map(|s| Sp::new(s.to_string(), t.at.clone()))
            .collect()
    }

    /// `EntityType:Property`, required.
    fn property_ref(&mut self, name: &'static str) -> Sp<PropertyRef> {
        record(&self.recorded_as, name, || {
            "EntityType:Property, required".to_string()
        });
        let t = self.required(name);
        if t.value.is_empty() {
            return Sp::new(
                PropertyRef {
                    entity_type: String::new(),
                    property: String::new(),
                },
                t.at,
            );
        }
        match t.value.split_once(':') {
            Some((e, p)) if !e.trim().is_empty() && !p.trim().is_empty() => Sp::new(
                PropertyRef {
                    entity_type: e.trim().to_string(),
                    property: p.trim().to_string(),
                },
                t.at,
            ),
            _ => {
                self.diags.push(
                    Diagnostic::new(
                        Rule::AttributeValue,
                        t.at.clone(),
                        format!("{name}=\"{}\" on <{}> is not valid: expected EntityType:Property", t.value, self.element),
                    )
                    .hint(format!("write {name} as the entity type identifier, a colon, and the property identifier")),
                );
                Sp::new(
                    PropertyRef {
                        entity_type: String::new(),
                        property: String::new(),
                    },
                    t.at,
                )
            }
        }
    }

    fn sync_thresholds(&mut self) -> SyncThresholds {
        let mut t = SyncThresholds::default();
        for (slot, name) in t.slots_mut().into_iter().zip(SyncThresholds::ATTRIBUTES) {
            *slot = self.uint(name);
        }
        t
    }

    /// An association mapping's thresholds. Its page names them like the connector's line
    /// thresholds (MaximumInsertedLines, ...); for an association they count links.
    fn association_thresholds(&mut self) -> SyncThresholds {
        SyncThresholds {
            max_link_inserted_lines: self.uint("MaximumInsertedLines"),
            max_link_deleted_lines: self.uint("MaximumDeletedLines"),
            max_link_percentage_inserted_lines: self.uint("MaxPercentageInsertedLines"),
            max_link_percentage_deleted_lines: self.uint("MaxPercentageDeletedLines"),
            ..SyncThresholds::default()
        }
    }

    /// `DisplayName`, else `DisplayName_L1` (connection tables and columns).
    fn display_name(&mut self) -> Option<String> {
        let plain = self.raw("DisplayName");
        let localized = self.display_names();
        plain.or_else(|| localized.l1().map(str::to_string))
    }

    /// A boolean whose `true` idlink refuses (an error saying why), e.g. a deny rule that would
    /// otherwise be applied as a grant.
    fn refuse_true(&mut self, name: &'static str, why: &'static str) {
        record_known(&self.recorded_as, name, || Known {
            refused: Some(format!("true: {why}")),
            ..Known::used("boolean (true, false, 1, 0), default false".to_string())
        });
        if self.bool(name, false) {
            let i = self.lookup(name).expect("just read");
            let (name, value, at) = &self.attrs[i];
            self.diags.push(
                Diagnostic::new(
                    Rule::AttributeValue,
                    at.clone(),
                    format!("{name}=\"{value}\" on <{}> is refused: {why}", self.element),
                )
                .hint(format!(
                    "remove this <{}> (or set {name}=\"false\")",
                    self.element
                )),
            );
        }
    }

    /// The documented attributes of a resource type mapping (or of its `<Property>`), kept for
    /// the package in document order; those idlink does not use say so once with `-v`.
    fn kept(&mut self, table: &'static [(&'static str, Use)]) -> Vec<(String, Text)> {
        for (name, u) in table {
            self.asked.push(name);
            record_known(&self.recorded_as, name, || match u {
                Use::Used(how) => Known::used(how.to_string()),
                Use::WithoutEffect(why) => Known {
                    status: Status::WithoutEffect(why.to_string()),
                    refused: None,
                    family: None,
                },
            });
        }
        let mut out = Vec::new();
        for i in 0..self.attrs.len() {
            if self.used[i] {
                continue;
            }
            let Some((_, u)) = table.iter().find(|(n, _)| *n == self.attrs[i].0) else {
                continue;
            };
            self.used[i] = true;
            let (name, value, at) = &self.attrs[i];
            if let Use::WithoutEffect(why) = u {
                self.diags.push(
                    Diagnostic::new(
                        Rule::AcceptedWithoutEffect,
                        at.clone(),
                        format!("{name} is accepted without effect in idlink: {why}"),
                    )
                    .hint(format!("<{}>", self.element)),
                );
            }
            out.push((name.clone(), Sp::new(value.clone(), at.clone())));
        }
        out
    }

    /// The task a `<Step>` names: `Task` in the job page's table, `Identifier` in its examples.
    fn step_task(&mut self) -> Text {
        record(&self.recorded_as, "Task", || {
            "string: the Identifier of a task declared outside any job".to_string()
        });
        record(&self.recorded_as, "Identifier", || {
            "string: the Identifier of a task declared outside any job (as the job page's examples write it)".to_string()
        });
        let task = self.text("Task");
        let identifier = self.text("Identifier");
        match (task, identifier) {
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => {
                self.missing(
                    "Task",
                    "add Task=\"...\" (or Identifier=\"...\", as the job page's examples write it): the Identifier of the task this step runs",
                );
                Sp::new(String::new(), self.at.clone())
            }
        }
    }

    /// `Binding` or `Expression`; with `required`, one of them must be there.
    fn rule_source(&mut self, required: bool) -> Option<RuleSource> {
        match (self.text("Binding"), self.expression("Expression")) {
            (Some(b), _) => Some(RuleSource::Binding(b)),
            (None, Some(e)) => Some(RuleSource::Expression(e)),
            (None, None) => {
                if required {
                    self.missing(
                        "Binding",
                        "give Binding (a property path of the source) or Expression",
                    );
                }
                None
            }
        }
    }

    /// Every attribute not asked for yet (variant attributes of resource type mappings).
    fn rest(&mut self) -> Vec<(String, Text)> {
        record(&self.recorded_as, "(any other)", || {
            "string, kept for the package (variant attributes)".to_string()
        });
        let mut out = Vec::new();
        for (i, (n, v, at)) in self.attrs.iter().enumerate() {
            if !self.used[i] {
                self.used[i] = true;
                out.push((n.clone(), Sp::new(v.clone(), at.clone())));
            }
        }
        out
    }

    /// Accepts the documented attributes of `table` (and those `also` matches) without effect:
    /// one info line each, folded per attribute and element by [`Loader::finish`].
    fn without_effect(&mut self, table: WithoutEffect, families: &[Family]) {
        for (name, why) in table {
            record_known(&self.recorded_as, name, || Known {
                status: Status::WithoutEffect(why.to_string()),
                refused: None,
                family: None,
            });
        }
        for (label, f, why) in families {
            record_known(&self.recorded_as, label, || Known {
                status: Status::WithoutEffect(why.to_string()),
                refused: None,
                family: Some(*f),
            });
        }
        // Documented names are candidates for "did you mean" too.
        self.asked.extend(table.iter().map(|(n, _)| *n));
        for i in 0..self.attrs.len() {
            if self.used[i] {
                continue;
            }
            let name = self.attrs[i].0.as_str();
            let why = table
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, w)| *w)
                .or_else(|| {
                    families
                        .iter()
                        .find(|(_, f, _)| f(name))
                        .map(|(_, _, w)| *w)
                });
            if let Some(why) = why {
                self.used[i] = true;
                let (name, _, at) = &self.attrs[i];
                self.diags.push(
                    Diagnostic::new(
                        Rule::AcceptedWithoutEffect,
                        at.clone(),
                        format!("{name} is accepted without effect in idlink: {why}"),
                    )
                    .hint(format!("<{}>", self.element)),
                );
            }
        }
    }

    /// Warns about attributes nobody asked for. `ignored` lists attributes real configurations
    /// carry that idlink deliberately does not read.
    fn finish(self, ignored: &[&str]) {
        for (i, (name, _, at)) in self.attrs.iter().enumerate() {
            if self.used[i] || ignored.contains(&name.as_str()) || name.starts_with("DisplayName_L")
            {
                continue;
            }
            self.diags.push(
                Diagnostic::new(
                    Rule::UnknownAttribute,
                    at.clone(),
                    format!("unknown attribute {name} on <{}>", self.element),
                )
                .hint("idlink ignores it")
                .did_you_mean(name, self.asked.iter().copied()),
            );
        }
    }
}
