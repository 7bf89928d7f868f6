//! Provisioning (SPEC §6): what the resource types' rules compute for each owner, compared
//! with the synchronized targets, becomes orders: `Added` (no target), `Modified` (only the
//! changed properties; `<prop>_add` / `<prop>_remove` for navigation properties), `Deleted`
//! (the owner is gone and AllowRemove allows it, or an orphan and RemoveOrphans asks for it).
//!
//! Which target an owner holds: the assignment the store learnt (from a verified order or an
//! earlier correlation), else the resource a `ResourceCorrelationRule` finds (adopted: no second
//! account is created), else the target whose key the rules compute. While an order of an owner
//! is open (Pending, Transmitted, Executed), no second one is generated for it. Thresholds on
//! the resource type block the whole run (nothing is stored) unless forced.
//!
//! [`verify`] closes the loop after a synchronization: Executed orders whose effect the store
//! now shows become Verified.

mod rules;
pub mod verify;
mod world;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use idlink_model::config::ResourceType;
use idlink_packages::api::{ChangeType, Progress, ProvisioningOrder, ResourceTypeRef};
use idlink_store::{Assignment, NewOrder, Store};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::sync::Blocked;
use crate::{Engine, EngineError};
pub(crate) use rules::Compiled;
use world::{World, strings};

/// What a provisioning run does.
#[derive(Debug, Clone, Default)]
pub struct ProvisionOptions {
    /// The resource types to compute (empty: all of them).
    pub resource_types: Vec<String>,
    /// Compute and report the orders, store nothing.
    pub dry_run: bool,
    /// Store the orders even when a threshold is exceeded.
    pub force: bool,
}

/// What one resource type gave.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResourceTypeReport {
    pub resource_type: String,
    pub connection: Option<String>,
    pub owners: u64,
    pub targets: u64,
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Owners with an open order: nothing new is generated for them until it closes.
    pub waiting: u64,
    /// Existing targets adopted by a correlation rule or by their computed key.
    pub adopted: u64,
    /// Rules that could not be computed (the owner gets no order), or why the resource type
    /// generated nothing.
    pub errors: Vec<String>,
    pub exceeded: Vec<Blocked>,
}

/// The run's report.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionReport {
    pub resource_types: Vec<ResourceTypeReport>,
    pub dry_run: bool,
    pub forced: bool,
    /// Orders stored (0 in a dry run or when blocked).
    pub stored: usize,
    #[serde(serialize_with = "crate::secs")]
    pub duration: Duration,
    /// The orders computed, in the form packages receive them (ids once stored).
    pub orders: Vec<ProvisioningOrder>,
}

impl ProvisionReport {
    pub fn exceeded(&self) -> impl Iterator<Item = &Blocked> {
        self.resource_types.iter().flat_map(|r| r.exceeded.iter())
    }

    pub fn errors(&self) -> usize {
        self.resource_types.iter().map(|r| r.errors.len()).sum()
    }
}

/// An order computed, with what the store keeps beside it.
struct Planned {
    order: ProvisioningOrder,
    owner_key: Option<String>,
    target_key: Option<String>,
}

impl Engine {
    /// Computes the orders of the resource types `options` names (all by default) from the
    /// store and stores them (unless `dry_run`, or a threshold blocks the run).
    pub async fn provision(
        &self,
        store: &Store,
        options: &ProvisionOptions,
        progress: &dyn Progress,
    ) -> Result<ProvisionReport, EngineError> {
        let started = Instant::now();
        let config = &self.checked().config;
        let mut selected: Vec<&ResourceType> = Vec::new();
        for id in &options.resource_types {
            match config.resource_type(id) {
                Some(rt) => selected.push(rt),
                None => {
                    let names = config.resource_types.iter().map(|r| r.id.value.as_str());
                    let hint = idlink_model::diag::did_you_mean(id, names)
                        .map(|s| format!("; did you mean '{s}'?"))
                        .unwrap_or_default();
                    return Err(EngineError::Data(format!(
                        "resource type '{id}' is not declared in the configuration{hint}"
                    )));
                }
            }
        }
        if options.resource_types.is_empty() {
            selected = config.resource_types.iter().collect();
        }
        let mut reports = Vec::new();
        let mut planned = Vec::new();
        let mut adopted = Vec::new();
        for rt in selected {
            progress.phase(&format!("computing orders of {}", rt.id));
            let (report, orders, adopt) = self.provision_one(store, rt).await?;
            reports.push(report);
            planned.extend(orders);
            adopted.extend(adopt);
        }
        let blocked = reports.iter().any(|r| !r.exceeded.is_empty()) && !options.force;
        let mut report = ProvisionReport {
            resource_types: reports,
            dry_run: options.dry_run,
            forced: options.force,
            stored: 0,
            duration: Duration::ZERO,
            orders: Vec::new(),
        };
        if !options.dry_run && !blocked {
            let rows: Vec<NewOrder> = planned
                .iter()
                .map(|p| {
                    Ok(NewOrder {
                        resource_type: p.order.resource_type.identifier.clone(),
                        connection: mapping_connection(config, &p.order.resource_type.identifier),
                        owner_key: p.owner_key.clone(),
                        target_key: p.target_key.clone(),
                        change_type: change_label(p.order.change_type).to_string(),
                        body: serde_json::to_string(&p.order)
                            .map_err(|e| EngineError::Contract(e.to_string()))?,
                    })
                })
                .collect::<Result<_, EngineError>>()?;
            let ids = store.record_provisioning(&rows, &adopted).await?;
            for (p, id) in planned.iter_mut().zip(ids) {
                p.order.id = Some(id.to_string());
            }
            report.stored = rows.len();
        }
        report.orders = planned.into_iter().map(|p| p.order).collect();
        report.duration = started.elapsed();
        if blocked {
            return Err(EngineError::ProvisioningBlocked(Box::new(report)));
        }
        Ok(report)
    }

    async fn provision_one(
        &self,
        store: &Store,
        rt: &ResourceType,
    ) -> Result<(ResourceTypeReport, Vec<Planned>, Vec<Assignment>), EngineError> {
        let config = &self.checked().config;
        let rt_id = rt.id.value.as_str();
        let mut report = ResourceTypeReport {
            resource_type: rt_id.to_string(),
            connection: mapping_connection(config, rt_id),
            ..ResourceTypeReport::default()
        };
        let compiled = match Compiled::new(config, rt) {
            Ok(c) => c,
            Err(errors) => {
                report.errors = errors;
                return Ok((report, Vec::new(), Vec::new()));
            }
        };
        let (source, target) = (&compiled.source, &compiled.target);
        let mut world = World::default();
        world.load_entities(store, source).await?;
        world.load_entities(store, target).await?;
        for path in compiled.paths() {
            world.load_path(store, config, source, &path).await?;
        }
        for nav in compiled.target_navs.values() {
            world.load_nav(store, nav).await?;
        }
        let assignments = store.assignments(rt_id).await?;
        let open = store.open_order_keys(rt_id).await?;
        let open_owners: HashSet<&str> = open.iter().filter_map(|o| o.0.as_deref()).collect();
        let open_targets: HashSet<&str> = open.iter().filter_map(|o| o.1.as_deref()).collect();

        let owners = &world.entities[source.as_str()];
        let targets = &world.entities[target.as_str()];
        report.owners = owners.order.len() as u64;
        report.targets = targets.order.len() as u64;
        let correlation = compiled.correlation_index(&world);

        // Targets held by an owner: assigned ones (that still exist), then adopted ones.
        let mut claimed: HashSet<i64> = assignments
            .iter()
            .filter(|(owner, _)| owners.by_key.contains_key(owner.as_str()))
            .filter_map(|(_, t)| targets.by_key.get(t).copied())
            .collect();
        let mut planned = Vec::new();
        let mut adopted = Vec::new();
        for &owner_id in &owners.order {
            let owner = &owners.by_id[&owner_id];
            let lookup = |path: &str| world.values(config, source, owner_id, path);
            let computed = match compiled.compute(&lookup) {
                Ok(c) => c,
                Err(e) => {
                    report.errors.push(format!(
                        "owner '{}': {e}; no order for this owner",
                        owner.key
                    ));
                    continue;
                }
            };
            let mut found = assignments
                .get(&owner.key)
                .and_then(|t| targets.by_key.get(t).copied());
            let assigned = found.is_some();
            if found.is_none() {
                found = compiled
                    .correlate(&correlation, &lookup)
                    .filter(|id| !claimed.contains(id));
                if found.is_none() {
                    found = computed
                        .key(&compiled.key_property)
                        .and_then(|k| targets.by_key.get(k).copied())
                        .filter(|id| !claimed.contains(id));
                }
            }
            if open_owners.contains(owner.key.as_str()) {
                report.waiting += 1;
                if let Some(id) = found {
                    claimed.insert(id);
                }
                continue;
            }
            let owner_obj = owner_object(&owner.key);
            match found {
                None if rt.allow_add => {
                    let changes = compiled.added_changes(&computed, &world);
                    report.added += 1;
                    planned.push(Planned {
                        order: order(rt, ChangeType::Added, Some(owner_obj), None, changes),
                        owner_key: Some(owner.key.clone()),
                        target_key: computed.key(&compiled.key_property).map(str::to_string),
                    });
                }
                None => report.unchanged += 1,
                Some(tid) => {
                    claimed.insert(tid);
                    let t = &targets.by_id[&tid];
                    if !assigned {
                        report.adopted += 1;
                        adopted.push(Assignment {
                            resource_type: rt_id.to_string(),
                            owner_key: owner.key.clone(),
                            target_key: t.key.clone(),
                        });
                    }
                    let changes = compiled.modified_changes(&computed, tid, &t.data, &world);
                    if changes.is_empty() {
                        report.unchanged += 1;
                    } else {
                        report.modified += 1;
                        planned.push(Planned {
                            order: order(
                                rt,
                                ChangeType::Modified,
                                Some(owner_obj),
                                Some(target_object(&compiled, t)),
                                changes,
                            ),
                            owner_key: Some(owner.key.clone()),
                            target_key: Some(t.key.clone()),
                        });
                    }
                }
            }
        }
        // Owners that are gone: their targets go when AllowRemove allows.
        let mut gone: Vec<(&String, &String)> = assignments
            .iter()
            .filter(|(owner, _)| !owners.by_key.contains_key(owner.as_str()))
            .collect();
        gone.sort();
        for (owner_key, target_key) in gone {
            let Some(&tid) = targets.by_key.get(target_key) else {
                continue;
            };
            claimed.insert(tid);
            if open_owners.contains(owner_key.as_str())
                || open_targets.contains(target_key.as_str())
            {
                report.waiting += 1;
                continue;
            }
            if !rt.allow_remove {
                continue;
            }
            let t = &targets.by_id[&tid];
            report.deleted += 1;
            let owner =
                Map::from_iter([("Identifier".to_string(), Value::from(owner_key.as_str()))]);
            planned.push(Planned {
                order: order(
                    rt,
                    ChangeType::Deleted,
                    Some(owner),
                    Some(target_object(&compiled, t)),
                    Map::new(),
                ),
                owner_key: Some(owner_key.clone()),
                target_key: Some(t.key.clone()),
            });
        }
        // Orphans: targets nobody holds, when RemoveOrphans asks for their removal.
        if rt.remove_orphans && rt.allow_remove {
            for &tid in &targets.order {
                let t = &targets.by_id[&tid];
                if claimed.contains(&tid) {
                    continue;
                }
                if open_targets.contains(t.key.as_str()) {
                    report.waiting += 1;
                    continue;
                }
                report.deleted += 1;
                planned.push(Planned {
                    order: order(
                        rt,
                        ChangeType::Deleted,
                        None,
                        Some(target_object(&compiled, t)),
                        Map::new(),
                    ),
                    owner_key: None,
                    target_key: Some(t.key.clone()),
                });
            }
        }
        report.exceeded = thresholds(rt, &report);
        Ok((report, planned, adopted))
    }
}

/// The resource types whose targets `connector` synchronizes (an entity type mapping of the
/// connector maps their target entity type).
pub(crate) fn resource_types_of_connector<'c>(
    config: &'c idlink_model::Configuration,
    connector: &'c str,
) -> impl Iterator<Item = &'c ResourceType> {
    config.resource_types.iter().filter(move |rt| {
        config
            .entity_type_mappings
            .iter()
            .any(|m| m.id.value == rt.target_entity_type.value && m.connector.value == connector)
    })
}

/// The connection the resource type's mapping names.
pub(crate) fn mapping_connection(
    config: &idlink_model::Configuration,
    resource_type: &str,
) -> Option<String> {
    config
        .resource_type_mappings
        .iter()
        .find(|m| m.id.value == resource_type)
        .and_then(|m| m.connection.as_ref())
        .map(|c| {
            config
                .connection(&c.value)
                .map_or_else(|| c.value.clone(), |conn| conn.id.value.clone())
        })
}

pub fn change_label(c: ChangeType) -> &'static str {
    match c {
        ChangeType::Added => "Added",
        ChangeType::Modified => "Modified",
        ChangeType::Deleted => "Deleted",
    }
}

/// The order's `Owner` (SPEC §6): the owner's key as `Identifier`. Its values are in the store,
/// not copied into every order.
fn owner_object(key: &str) -> Map<String, Value> {
    Map::from_iter([("Identifier".to_string(), Value::from(key))])
}

/// The target's current values, its key property included.
fn target_object(compiled: &Compiled, t: &world::Res) -> Map<String, Value> {
    let mut m = t.data.clone();
    m.entry(compiled.key_property.clone())
        .or_insert_with(|| Value::from(t.key.as_str()));
    m
}

fn order(
    rt: &ResourceType,
    change_type: ChangeType,
    owner: Option<Map<String, Value>>,
    resource: Option<Map<String, Value>>,
    changes: Map<String, Value>,
) -> ProvisioningOrder {
    let ident = |id: &str| Some(serde_json::json!({ "Identifier": id }));
    ProvisioningOrder {
        id: None,
        change_type,
        resource_type: ResourceTypeRef {
            identifier: rt.id.value.clone(),
            source_entity_type: ident(&rt.source_entity_type.value),
            target_entity_type: ident(&rt.target_entity_type.value),
            default_object_class: None,
        },
        owner,
        resource,
        changes,
    }
}

/// The resource type's provisioning thresholds (only those written: 0 disables one),
/// against the number of targets before the run.
fn thresholds(rt: &ResourceType, r: &ResourceTypeReport) -> Vec<Blocked> {
    let t = &rt.thresholds;
    let checks = [
        (
            "MaximumInsert",
            "MaxPercentageInsert",
            r.added,
            t.max_added,
            t.max_percentage_added,
        ),
        (
            "MaximumUpdate",
            "MaxPercentageUpdate",
            r.modified,
            t.max_modified,
            t.max_percentage_modified,
        ),
        (
            "MaximumDelete",
            "MaxPercentageDelete",
            r.deleted,
            t.max_deleted,
            t.max_percentage_deleted,
        ),
    ];
    let mut out = Vec::new();
    crate::sync::thresholds::check(
        &format!("resource type '{}'", rt.id),
        r.targets,
        "resource type",
        &checks,
        &mut out,
    );
    out
}

/// Values of one property as an order carries them: none -> null, one -> a value, several ->
/// an array; numbers and booleans typed as the target property is.
pub(crate) fn json_of(ty: idlink_model::config::PropertyType, values: &[String]) -> Value {
    use idlink_model::config::PropertyType as P;
    let one = |s: &String| -> Value {
        match ty {
            P::Int32 | P::Int64 | P::Int16 | P::Byte => s
                .trim()
                .parse::<i64>()
                .map_or_else(|_| Value::from(s.as_str()), Value::from),
            P::Double => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::from(s.as_str()), Value::Number),
            P::Bool => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => Value::from(s.as_str()),
            },
            _ => Value::from(s.as_str()),
        }
    };
    match values {
        [] => Value::Null,
        [v] => one(v),
        vs => Value::Array(vs.iter().map(one).collect()),
    }
}

/// Whether computed values differ from a stored value (order ignored when several).
pub(crate) fn differs(computed: &[String], current: Option<&Value>) -> bool {
    let mut cur = strings(current);
    if computed.len() <= 1 && cur.len() <= 1 {
        return computed.first() != cur.first();
    }
    let mut want: Vec<&String> = computed.iter().collect();
    want.sort();
    want.dedup();
    cur.sort();
    cur.dedup();
    want.len() != cur.len() || want.iter().zip(&cur).any(|(a, b)| *a != b)
}

/// A set of keys as `<prop>_add` / `<prop>_remove` lists: objects holding the linked resource's
/// key property.
pub(crate) fn key_objects(key_property: &str, keys: &BTreeSet<String>) -> Value {
    Value::Array(
        keys.iter()
            .map(|k| {
                Value::Object(Map::from_iter([(
                    key_property.to_string(),
                    Value::from(k.as_str()),
                )]))
            })
            .collect(),
    )
}

/// The linked key each `_add` / `_remove` object names (its first value).
pub(crate) fn object_keys(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o
                    .values()
                    .next()
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                _ => None,
            })
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}
