//! The configuration model: one typed value per element of SPEC §2.1. Every element keeps the
//! location of its start tag (`at`), and attributes that rules talk about keep their own.

use std::collections::HashMap;

use crate::diag::{Loc, Sp};

/// Identifier references and other attribute values that rules report on.
pub type Text = Sp<String>;

/// A whole configuration: every element of every file, in file order.
#[derive(Debug, Default)]
pub struct Configuration {
    /// The XML files read, in the order they were read.
    pub files: Vec<String>,
    pub agents: Vec<Agent>,
    pub connectors: Vec<Connector>,
    pub connections: Vec<Connection>,
    pub connection_tables: Vec<ConnectionTable>,
    pub entity_types: Vec<EntityType>,
    pub entity_associations: Vec<EntityAssociation>,
    pub entity_type_mappings: Vec<EntityTypeMapping>,
    pub entity_association_mappings: Vec<EntityAssociationMapping>,
    pub resource_types: Vec<ResourceType>,
    pub resource_correlation_rules: Vec<ResourceCorrelationRule>,
    pub resource_type_mappings: Vec<ResourceTypeMapping>,
    pub jobs: Vec<Job>,
    /// Tasks declared outside any `Job` (each task page's own form), used by `<Step>`.
    pub tasks: Vec<Task>,
    /// Identifiers of declared tasks of kinds idlink skips (e.g. `BuildRoleModelTask`), with
    /// their element name: a `<Step>` naming one is skipped, not reported as undeclared.
    pub out_of_scope_tasks: Vec<(String, String)>,
    /// For expression attributes (`Expression`, `SourceExpression`, `TargetExpression`) whose
    /// value is written verbatim (no entity reference, line break or tab): the attribute's
    /// location -> the location of the value's first character. `check` points at the offending
    /// character of an expression from there; other expressions are reported at the attribute.
    pub expression_value_starts: HashMap<Loc, Loc>,
}

/// `DisplayName_L1` .. `DisplayName_L16`; index 0 is L1.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DisplayNames(pub Vec<Option<String>>);

impl DisplayNames {
    pub fn l1(&self) -> Option<&str> {
        self.0.first().and_then(|v| v.as_deref())
    }
}

#[derive(Debug)]
pub struct Agent {
    pub at: Loc,
    pub id: Text,
    pub display_names: DisplayNames,
    pub uri: Option<Text>,
}

/// Synchronization thresholds. `None` means "not set here"; 0 disables a threshold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncThresholds {
    pub max_inserted_lines: Option<u32>,
    pub max_updated_lines: Option<u32>,
    pub max_deleted_lines: Option<u32>,
    pub max_link_inserted_lines: Option<u32>,
    pub max_link_deleted_lines: Option<u32>,
    pub max_percentage_inserted_lines: Option<u32>,
    pub max_percentage_updated_lines: Option<u32>,
    pub max_percentage_deleted_lines: Option<u32>,
    pub max_link_percentage_inserted_lines: Option<u32>,
    pub max_link_percentage_deleted_lines: Option<u32>,
}

impl SyncThresholds {
    /// The attribute names, in field order, as written in XML.
    pub const ATTRIBUTES: [&'static str; 10] = [
        "MaximumInsertedLines",
        "MaximumUpdatedLines",
        "MaximumDeletedLines",
        "MaximumLinkInsertedLines",
        "MaximumLinkDeletedLines",
        "MaxPercentageInsertedLines",
        "MaxPercentageUpdatedLines",
        "MaxPercentageDeletedLines",
        "MaxLinkPercentageInsertedLines",
        "MaxLinkPercentageDeletedLines",
    ];

    /// The connector defaults of SPEC §2.1.
    pub const CONNECTOR_DEFAULTS: SyncThresholds = SyncThresholds {
        max_inserted_lines: Some(100),
        max_updated_lines: Some(100),
        max_deleted_lines: Some(100),
        max_link_inserted_lines: Some(1000),
        max_link_deleted_lines: Some(1000),
        max_percentage_inserted_lines: Some(5),
        max_percentage_updated_lines: Some(5),
        max_percentage_deleted_lines: Some(5),
        max_link_percentage_inserted_lines: Some(5),
        max_link_percentage_deleted_lines: Some(5),
    };

    pub fn slots_mut(&mut self) -> [&mut Option<u32>; 10] {
        [
            &mut self.max_inserted_lines,
            &mut self.max_updated_lines,
            &mut self.max_deleted_lines,
            &mut self.max_link_inserted_lines,
            &mut self.max_link_deleted_lines,
            &mut self.max_percentage_inserted_lines,
            &mut self.max_percentage_updated_lines,
            &mut self.max_percentage_deleted_lines,
            &mut self.max_link_percentage_inserted_lines,
            &mut self.max_link_percentage_deleted_lines,
        ]
    }

    /// Fills every unset threshold from `defaults`.
    #[must_use]
    pub fn or(mut self, defaults: &SyncThresholds) -> SyncThresholds {
        let mut d = *defaults;
        for (mine, theirs) in self.slots_mut().into_iter().zip(d.slots_mut()) {
            if mine.is_none() {
                *mine = *theirs;
            }
        }
        self
    }
}

#[derive(Debug)]
pub struct Connector {
    pub at: Loc,
    pub id: Text,
    pub display_names: DisplayNames,
    pub agent: Option<Text>,
    pub is_deactivated: bool,
    /// How the complete job scaffolding uses this connector (a value, not a job reference).
    pub complete_job: JobIntegrationRule,
    /// How the incremental job scaffolding uses this connector.
    pub incremental_job: JobIntegrationRule,
    /// As written; use `.or(&SyncThresholds::CONNECTOR_DEFAULTS)` for the effective values.
    pub thresholds: SyncThresholds,
}

/// Connector `CompleteJob` / `IncrementalJob`: how the product's job scaffolding uses the
/// connector (`0` Used, `1` NotUsed, `2` OnlySynchronization, `3` OnlyProvisioning). idlink does
/// not expand scaffoldings, so the value is kept for reports and has no effect on jobs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum JobIntegrationRule {
    #[default]
    Used,
    NotUsed,
    OnlySynchronization,
    OnlyProvisioning,
}

/// Which side of a connection is turned off.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Deactivation {
    #[default]
    None,
    Export,
    Fulfill,
}

#[derive(Debug)]
pub struct Connection {
    pub at: Loc,
    pub id: Text,
    pub display_names: DisplayNames,
    pub connector: Text,
    pub package: Text,
    pub deactivation: Deactivation,
    pub transformations: Vec<Transformation>,
}

impl Connection {
    pub fn export_enabled(&self) -> bool {
        self.deactivation != Deactivation::Export
    }

    pub fn fulfill_enabled(&self) -> bool {
        self.deactivation != Deactivation::Fulfill
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformationType {
    ConcatColumns,
    TransformDate,
    WhereValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhereOperator {
    Equals,
    NotEquals,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    Regex,
}

/// A change applied to a connection's export output before synchronization.
#[derive(Debug)]
pub struct Transformation {
    pub at: Loc,
    pub kind: TransformationType,
    pub table: Option<Text>,
    pub column: Option<Text>,
    /// `InputColumn`, `InputColumn2` .. `InputColumn5`, in order, those given.
    pub input_columns: Vec<Text>,
    pub concat_separator: Option<String>,
    pub remove_empty: bool,
    pub remove_duplicates: bool,
    pub sort_values: bool,
    /// Days added to the date; may be fractional (`-0.5` is twelve hours earlier).
    pub added_days: Option<f64>,
    pub min_year: Option<i32>,
    pub max_year: Option<i32>,
    pub date_pattern: Option<String>,
    pub where_operator: Option<WhereOperator>,
    pub where_value: Option<String>,
}

#[derive(Debug)]
pub struct ConnectionTable {
    pub at: Loc,
    pub connection: Text,
    /// The table's full name: `<connection>` or `<connection>_<suffix>`.
    pub id: Text,
    pub display_name: Option<String>,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    #[default]
    None,
    Primary,
    Unique,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueType {
    #[default]
    String,
    Bytes,
    Int32,
    Int64,
    DateTime,
    Bool,
    Guid,
    Double,
    Binary,
    Byte,
    Int16,
}

#[derive(Debug)]
pub struct Column {
    pub at: Loc,
    pub id: Text,
    pub display_name: Option<String>,
    pub is_multivalued: bool,
    pub key_type: KeyType,
    pub value_type: ValueType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PropertyType {
    #[default]
    String,
    Int32,
    Int64,
    Bool,
    DateTime,
    Guid,
    Double,
    Binary,
    ForeignKey,
    Bytes,
    Byte,
    Int16,
}

#[derive(Debug)]
pub struct EntityType {
    pub at: Loc,
    pub id: Text,
    pub display_names: DisplayNames,
    pub properties: Vec<EntityProperty>,
}

impl EntityType {
    pub fn property(&self, id: &str) -> Option<&EntityProperty> {
        self.properties.iter().find(|p| p.id.value == id)
    }
}

#[derive(Debug)]
pub struct EntityProperty {
    pub at: Loc,
    pub id: Text,
    pub display_names: DisplayNames,
    pub ty: PropertyType,
    pub is_key: bool,
    pub target_column_index: Option<i32>,
}

/// `EntityType:Property`, as association and association mapping attributes write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyRef {
    pub entity_type: String,
    pub property: String,
}

impl std::fmt::Display for PropertyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.entity_type, self.property)
    }
}

#[derive(Debug)]
pub struct EntityAssociation {
    pub at: Loc,
    pub id: Text,
    pub display_names: DisplayNames,
    pub property1: Sp<PropertyRef>,
    pub property2: Sp<PropertyRef>,
    pub is_property1_collection: bool,
    pub is_property2_collection: bool,
}

#[derive(Debug)]
pub struct EntityTypeMapping {
    pub at: Loc,
    /// The entity type's identifier.
    pub id: Text,
    pub connector: Text,
    pub connection_table: Text,
    pub thresholds: SyncThresholds,
    pub properties: Vec<PropertyMapping>,
}

#[derive(Debug)]
pub struct PropertyMapping {
    pub at: Loc,
    /// The entity type property's identifier.
    pub id: Text,
    pub connection_column: Text,
    pub is_primary_key: bool,
    pub is_unique_key: bool,
    pub format: Option<String>,
}

#[derive(Debug)]
pub struct EntityAssociationMapping {
    pub at: Loc,
    /// The association's identifier.
    pub id: Text,
    pub connector: Text,
    pub connection_table: Option<Text>,
    pub column1: Text,
    pub column2: Text,
    pub entity_property_mapping1: Sp<PropertyRef>,
    pub entity_property_mapping2: Sp<PropertyRef>,
    /// Link thresholds of this association (its page writes MaximumInsertedLines, ...).
    pub thresholds: SyncThresholds,
}

/// Thresholds on the orders one provisioning run may generate. `None`: not set; 0 disables.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProvisioningThresholds {
    pub max_added: Option<u32>,
    pub max_modified: Option<u32>,
    pub max_deleted: Option<u32>,
    pub max_percentage_added: Option<u32>,
    pub max_percentage_modified: Option<u32>,
    pub max_percentage_deleted: Option<u32>,
}

impl ProvisioningThresholds {
    pub const ATTRIBUTES: [&'static str; 6] = [
        "MaximumInsert",
        "MaximumUpdate",
        "MaximumDelete",
        "MaxPercentageInsert",
        "MaxPercentageUpdate",
        "MaxPercentageDelete",
    ];

    pub fn slots_mut(&mut self) -> [&mut Option<u32>; 6] {
        [
            &mut self.max_added,
            &mut self.max_modified,
            &mut self.max_deleted,
            &mut self.max_percentage_added,
            &mut self.max_percentage_modified,
            &mut self.max_percentage_deleted,
        ]
    }
}

/// How a rule computes its value: a property path on the source, or an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    /// `Property.Path` from the source entity type.
    Binding(Text),
    /// An expression; `C#:` expressions are kept as written but cannot run here.
    Expression(Text),
}

/// Splits a binding into its entity type prefix, if written (`Directory_UserRecord:Mail`, as
/// the provisioning pages write them), and its property path (`Mail`, `manager.department`).
pub fn binding_parts(binding: &str) -> (Option<&str>, &str) {
    match binding.split_once(':') {
        Some((et, path)) if !et.trim().is_empty() => (Some(et.trim()), path.trim()),
        Some((_, path)) => (None, path.trim()),
        None => (None, binding.trim()),
    }
}

impl RuleSource {
    pub fn is_csharp(&self) -> bool {
        matches!(self, RuleSource::Expression(e) if e.value.trim_start().starts_with("C#:"))
    }
}

#[derive(Debug)]
pub struct ResourceType {
    pub at: Loc,
    pub id: Text,
    pub display_names: DisplayNames,
    pub source_entity_type: Text,
    pub target_entity_type: Text,
    pub allow_add: bool,
    pub allow_remove: bool,
    pub remove_orphans: bool,
    pub thresholds: ProvisioningThresholds,
    pub scalar_rules: Vec<ScalarRule>,
    pub navigation_rules: Vec<NavigationRule>,
}

#[derive(Debug)]
pub struct ScalarRule {
    pub at: Loc,
    /// A property of the target entity type.
    pub property: Text,
    /// `None` when neither Binding nor Expression is given (reported by the loader).
    pub source: Option<RuleSource>,
}

#[derive(Debug)]
pub struct NavigationRule {
    pub at: Loc,
    /// A navigation property of the target entity type.
    pub property: Text,
    /// The resource (e.g. a group) the navigation points at, when fixed.
    pub resource: Option<Text>,
    pub source: Option<RuleSource>,
}

/// Adopts an existing target resource for an owner (SPEC §2.1).
#[derive(Debug)]
pub struct ResourceCorrelationRule {
    pub at: Loc,
    pub resource_type: Text,
    pub target_binding: Text,
    /// `TargetExpression`: a function applied to the target value before comparing (`ToLower`).
    pub target_expression: Option<Text>,
    pub source: Option<RuleSource>,
    /// `SourceExpression` written together with `SourceBinding`: applied to the bound value.
    pub source_expression: Option<Text>,
}

/// The element a resource type mapping was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceTypeMappingKind {
    /// `ResourceTypeMapping`.
    Generic,
    /// A typed variant such as `LdapResourceTypeMapping`: the element name without the suffix.
    Typed(String),
}

#[derive(Debug)]
pub struct ResourceTypeMapping {
    pub at: Loc,
    pub kind: ResourceTypeMappingKind,
    /// The resource type's identifier.
    pub id: Text,
    pub connection: Option<Text>,
    /// Variant attributes (e.g. `DefaultObjectClass`), by name, in document order.
    pub attributes: Vec<(String, Text)>,
    pub properties: Vec<ResourceTypeMappingProperty>,
}

impl ResourceTypeMapping {
    pub fn attribute(&self, name: &str) -> Option<&Text> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

#[derive(Debug)]
pub struct ResourceTypeMappingProperty {
    pub at: Loc,
    pub id: Text,
    pub attributes: Vec<(String, Text)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynchronizationMode {
    Initial,
    Complete,
    Incremental,
}

#[derive(Debug)]
pub struct Job {
    pub at: Loc,
    pub id: Text,
    pub display_names: DisplayNames,
    pub agent: Option<Text>,
    pub crontab: Option<Text>,
    /// The job's tasks in document order: written inside the job, or named by `<Step>`.
    pub steps: Vec<JobStep>,
}

/// One entry of a job: a task written inside it, or a `<Step Identifier="..."/>` naming a task
/// declared outside any job.
#[derive(Debug)]
pub enum JobStep {
    Inline(Box<Task>),
    Step(StepRef),
}

#[derive(Debug)]
pub struct StepRef {
    pub at: Loc,
    /// The identifier of a stand-alone task.
    pub id: Text,
    /// `Level`: tasks of one level may run together (documented; idlink runs them in order).
    pub level: Option<i32>,
}

/// A job whose tasks cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobOrderError {
    #[error(
        "job '{job}': tasks {} cannot be ordered: their TaskDependsOnTask parents form a cycle",
        .tasks.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
    )]
    Cycle { job: String, tasks: Vec<String> },
}

impl Job {
    /// Inline tasks only (those written inside the `<Job>`).
    pub fn inline_tasks(&self) -> impl Iterator<Item = &Task> {
        self.steps.iter().filter_map(|s| match s {
            JobStep::Inline(t) => Some(t.as_ref()),
            JobStep::Step(_) => None,
        })
    }
}

#[derive(Debug)]
pub enum Task {
    Export(ExportTask),
    PrepareSynchronization(PrepareSynchronizationTask),
    Synchronize(SynchronizeTask),
    GenerateProvisioningOrders(GenerateProvisioningOrdersTask),
    Fulfill(FulfillTask),
}

impl Task {
    pub fn at(&self) -> &Loc {
        match self {
            Task::Export(t) => &t.at,
            Task::PrepareSynchronization(t) => &t.at,
            Task::Synchronize(t) => &t.at,
            Task::GenerateProvisioningOrders(t) => &t.at,
            Task::Fulfill(t) => &t.at,
        }
    }

    /// What every task kind shares: identifier, dependencies, agent, display names.
    pub fn common(&self) -> &TaskCommon {
        match self {
            Task::Export(t) => &t.common,
            Task::PrepareSynchronization(t) => &t.common,
            Task::Synchronize(t) => &t.common,
            Task::GenerateProvisioningOrders(t) => &t.common,
            Task::Fulfill(t) => &t.common,
        }
    }

    /// The task's `Identifier`, when written.
    pub fn id(&self) -> Option<&Text> {
        self.common().id.as_ref().filter(|i| !i.value.is_empty())
    }

    /// How a person tells this task from the job's others: its `Identifier`, else its
    /// `DisplayName_L1`.
    pub fn label(&self) -> Option<&str> {
        if let Some(id) = self.id() {
            return Some(&id.value);
        }
        self.common().display_names.l1().filter(|n| !n.is_empty())
    }

    pub fn element_name(&self) -> &'static str {
        match self {
            Task::Export(_) => "ExportTask",
            Task::PrepareSynchronization(_) => "PrepareSynchronizationTask",
            Task::Synchronize(_) => "SynchronizeTask",
            Task::GenerateProvisioningOrders(_) => "GenerateProvisioningOrdersTask",
            Task::Fulfill(_) => "FulfillTask",
        }
    }
}

/// Attributes and children every task kind has.
#[derive(Debug, Default)]
pub struct TaskCommon {
    pub id: Option<Text>,
    pub display_names: DisplayNames,
    pub agent: Option<Text>,
    /// `TaskDependsOnTask ParentTask="..."`: tasks of the same job that must run first.
    pub depends_on: Vec<Text>,
}

#[derive(Debug)]
pub struct ExportTask {
    pub at: Loc,
    pub common: TaskCommon,
    pub connection: Option<Text>,
    pub continue_on_error: bool,
    pub ignore_cookie_file: bool,
}

#[derive(Debug)]
pub struct PrepareSynchronizationTask {
    pub at: Loc,
    pub common: TaskCommon,
    pub connector: Text,
    pub mode: SynchronizationMode,
}

#[derive(Debug)]
pub struct SynchronizeTask {
    pub at: Loc,
    pub common: TaskCommon,
    pub connector: Text,
    pub force_synchronization: bool,
    pub do_not_delete_changes: bool,
}

#[derive(Debug)]
pub struct GenerateProvisioningOrdersTask {
    pub at: Loc,
    pub common: TaskCommon,
    /// Resource type identifiers: `TaskResourceType` children, or the `ResourceTypes`
    /// attribute (space, comma or semicolon separated).
    pub resource_types: Vec<Text>,
    pub connector: Option<Text>,
}

#[derive(Debug)]
pub struct FulfillTask {
    pub at: Loc,
    pub common: TaskCommon,
    pub connector: Option<Text>,
    pub connection: Option<Text>,
    pub batch_size: Option<u32>,
    pub continue_on_error: bool,
    pub resource_types: Vec<Text>,
}

impl Configuration {
    pub fn connector(&self, id: &str) -> Option<&Connector> {
        self.connectors.iter().find(|c| c.id.value == id)
    }

    /// Connection lookup: connection identifiers are case-insensitive.
    pub fn connection(&self, id: &str) -> Option<&Connection> {
        self.connections
            .iter()
            .find(|c| c.id.value.eq_ignore_ascii_case(id))
    }

    pub fn entity_type(&self, id: &str) -> Option<&EntityType> {
        self.entity_types.iter().find(|c| c.id.value == id)
    }

    pub fn resource_type(&self, id: &str) -> Option<&ResourceType> {
        self.resource_types.iter().find(|c| c.id.value == id)
    }

    /// A stand-alone task (declared outside any job) by identifier.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks
            .iter()
            .find(|t| t.id().is_some_and(|i| i.value == id))
    }

    /// The job's tasks in document order: inline tasks, and stand-alone tasks its steps name.
    /// Steps naming no declared task (reported by `check`) are left out.
    pub fn job_tasks<'c>(&'c self, job: &'c Job) -> Vec<&'c Task> {
        job.steps
            .iter()
            .filter_map(|s| match s {
                JobStep::Inline(t) => Some(t.as_ref()),
                JobStep::Step(r) => self.task(&r.id.value),
            })
            .collect()
    }

    /// The job's tasks in an order a runner can follow: every task after the tasks its
    /// `TaskDependsOnTask` children name, otherwise in document order. Parents that are not
    /// tasks of this job are ignored here (`check` reports them). A cycle is an error.
    pub fn ordered_job_tasks<'c>(&'c self, job: &'c Job) -> Result<Vec<&'c Task>, JobOrderError> {
        let tasks = self.job_tasks(job);
        let position = |id: &str| {
            tasks
                .iter()
                .position(|t| t.id().is_some_and(|i| i.value == id))
        };
        // parents[i]: indexes of the tasks that must run before task i.
        let parents: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| {
                let mut p: Vec<usize> = t
                    .common()
                    .depends_on
                    .iter()
                    .filter_map(|d| position(&d.value))
                    .collect();
                p.sort_unstable();
                p.dedup();
                p
            })
            .collect();
        let mut waiting: Vec<usize> = parents.iter().map(Vec::len).collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
        for (i, ps) in parents.iter().enumerate() {
            for &p in ps {
                children[p].push(i);
            }
        }
        // Always run the earliest ready task: document order wherever dependencies allow.
        let mut ready: std::collections::BTreeSet<usize> =
            (0..tasks.len()).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(tasks.len());
        while let Some(i) = ready.pop_first() {
            order.push(tasks[i]);
            for &c in &children[i] {
                waiting[c] -= 1;
                if waiting[c] == 0 {
                    ready.insert(c);
                }
            }
        }
        if order.len() == tasks.len() {
            return Ok(order);
        }
        // Name the tasks on the cycle, not those merely waiting behind it: trim, again and
        // again, stuck tasks no stuck task waits for.
        let mut stuck: Vec<bool> = waiting.iter().map(|&w| w > 0).collect();
        loop {
            let tail: Vec<usize> = (0..tasks.len())
                .filter(|&i| stuck[i] && !children[i].iter().any(|&c| stuck[c]))
                .collect();
            if tail.is_empty() {
                break;
            }
            for i in tail {
                stuck[i] = false;
            }
        }
        let stuck = (0..tasks.len())
            .filter(|&i| stuck[i])
            .map(|i| {
                tasks[i].label().map_or_else(
                    || format!("{} #{}", tasks[i].element_name(), i + 1),
                    str::to_string,
                )
            })
            .collect();
        Err(JobOrderError::Cycle {
            job: job.id.value.clone(),
            tasks: stuck,
        })
    }
}
