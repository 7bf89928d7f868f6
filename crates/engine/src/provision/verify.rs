//! Verification: after a synchronization, Executed orders whose effect the store now shows
//! become Verified (SPEC §6). An order the store does not confirm stays Executed, with a message
//! saying what differs, and no duplicate is generated while it waits.

use std::collections::{BTreeSet, HashMap};

use idlink_model::config::binding_parts;
use idlink_packages::api::{ChangeType, ProvisioningOrder};
use idlink_store::{Assignment, OrderFilter, OrderState, OrderUpdate, Store};
use serde::Serialize;
use serde_json::Value;

use super::world::{World, key_property, navigation, strings};
use super::{differs, object_keys};
use crate::{Engine, EngineError};

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Executed orders looked at.
    pub checked: u64,
    pub verified: u64,
    /// Executed orders the store does not confirm yet.
    pub waiting: u64,
}

/// The changes Executed orders announce, which the next synchronization of their system
/// will show: they are not surprises, so they do not count toward its thresholds.
#[derive(Debug, Default)]
pub struct Expected {
    /// Target entity type -> (inserted, updated, deleted).
    pub resources: HashMap<String, (u64, u64, u64)>,
    /// Association -> (links added, links removed).
    pub links: HashMap<String, (u64, u64)>,
}

impl Engine {
    /// What the Executed orders of every resource type are expected to change.
    pub async fn expected_changes(&self, store: &Store) -> Result<Expected, EngineError> {
        let config = &self.checked().config;
        let mut out = Expected::default();
        let orders = store
            .orders(&OrderFilter {
                states: vec![OrderState::Executed],
                ..OrderFilter::default()
            })
            .await?;
        for o in orders {
            let Some(rt) = config.resource_type(&o.resource_type) else {
                continue;
            };
            let target = rt.target_entity_type.value.as_str();
            let e = out.resources.entry(target.to_string()).or_default();
            match o.change_type.as_str() {
                "Added" => e.0 += 1,
                "Modified" => e.1 += 1,
                "Deleted" => e.2 += 1,
                _ => {}
            }
            let Ok(order) = serde_json::from_str::<ProvisioningOrder>(&o.body) else {
                continue;
            };
            for (k, v) in &order.changes {
                let (prop, add) = match (k.strip_suffix("_add"), k.strip_suffix("_remove")) {
                    (Some(p), _) => (p, true),
                    (_, Some(p)) => (p, false),
                    _ => continue,
                };
                if let Some(nav) = navigation(config, target, prop) {
                    let n = object_keys(v).len() as u64;
                    let l = out.links.entry(nav.association).or_default();
                    if add {
                        l.0 += n;
                    } else {
                        l.1 += n;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Verifies the Executed orders of the resource types whose target entity type `connector`
    /// synchronizes.
    pub async fn verify_orders(
        &self,
        store: &Store,
        connector: &str,
    ) -> Result<VerifyReport, EngineError> {
        let config = &self.checked().config;
        let mut report = VerifyReport::default();
        for rt in super::resource_types_of_connector(config, connector) {
            let target = rt.target_entity_type.value.as_str();
            let orders = store
                .orders(&OrderFilter {
                    states: vec![OrderState::Executed],
                    resource_types: vec![rt.id.value.clone()],
                    ..OrderFilter::default()
                })
                .await?;
            if orders.is_empty() {
                continue;
            }
            let mut world = World::default();
            world.load_entities(store, target).await?;
            let key_prop = key_property(config, target).unwrap_or_default();
            let mapped: BTreeSet<&str> = config
                .entity_type_mappings
                .iter()
                .filter(|m| m.id.value == target)
                .flat_map(|m| m.properties.iter().map(|p| p.id.value.as_str()))
                .collect();
            let correlations: Vec<String> = config
                .resource_correlation_rules
                .iter()
                .filter(|r| r.resource_type.value == rt.id.value)
                .map(|r| binding_parts(&r.target_binding.value).1.to_string())
                .collect();
            let mut corr_index: HashMap<String, HashMap<String, Vec<i64>>> = HashMap::new();
            let mut updates = Vec::new();
            let mut assigned = Vec::new();
            let mut unassigned = Vec::new();
            for stored in &orders {
                report.checked += 1;
                let order: ProvisioningOrder = match serde_json::from_str(&stored.body) {
                    Ok(o) => o,
                    Err(e) => {
                        updates.push(OrderUpdate {
                            id: stored.id,
                            state: OrderState::Errored,
                            message: format!("the stored order cannot be read: {e}"),
                        });
                        continue;
                    }
                };
                for (k, _) in order
                    .changes
                    .iter()
                    .filter(|(k, _)| k.ends_with("_add") || k.ends_with("_remove"))
                {
                    let prop = k.trim_end_matches("_add").trim_end_matches("_remove");
                    if let Some(nav) = navigation(config, target, prop) {
                        world.load_nav(store, &nav).await?;
                    }
                }
                let targets = &world.entities[target];
                // The target: by the key the order names, else by a correlated value it sets.
                // A Modified order that changes the key finds the target under its new key.
                let new_key = (order.change_type == ChangeType::Modified)
                    .then(|| strings(order.changes.get(&key_prop)).into_iter().next())
                    .flatten();
                let mut tid = new_key
                    .as_ref()
                    .or(stored.target_key.as_ref())
                    .and_then(|k| targets.by_key.get(k).copied());
                if tid.is_none() && order.change_type == ChangeType::Added {
                    for prop in &correlations {
                        let Some(want) = strings(order.changes.get(prop)).into_iter().next() else {
                            continue;
                        };
                        let index = corr_index.entry(prop.clone()).or_insert_with(|| {
                            let mut m: HashMap<String, Vec<i64>> = HashMap::new();
                            for &id in &targets.order {
                                for v in targets.by_id[&id].values(prop, &key_prop) {
                                    m.entry(v).or_default().push(id);
                                }
                            }
                            m
                        });
                        if let Some([one]) = index.get(&want).map(Vec::as_slice) {
                            tid = Some(*one);
                            break;
                        }
                    }
                }
                let outcome: Result<(), String> = match (order.change_type, tid) {
                    (ChangeType::Deleted, None) => Ok(()),
                    (ChangeType::Deleted, Some(_)) => Err("the resource is still there".into()),
                    (_, None) => Err("the resource is not in the store".into()),
                    (_, Some(id)) => {
                        let t = &targets.by_id[&id];
                        let mut problems = Vec::new();
                        for (k, v) in &order.changes {
                            if let Some(prop) = k.strip_suffix("_add") {
                                let Some(nav) = navigation(config, target, prop) else {
                                    continue;
                                };
                                let have = world.linked_keys(&nav, id);
                                for key in object_keys(v) {
                                    if !have.contains(&key) {
                                        problems.push(format!("'{prop}' does not link '{key}'"));
                                    }
                                }
                            } else if let Some(prop) = k.strip_suffix("_remove") {
                                let Some(nav) = navigation(config, target, prop) else {
                                    continue;
                                };
                                let have = world.linked_keys(&nav, id);
                                for key in object_keys(v) {
                                    if have.contains(&key) {
                                        problems.push(format!("'{prop}' still links '{key}'"));
                                    }
                                }
                            } else if mapped.contains(k.as_str()) {
                                let want = strings(Some(v));
                                let current = if *k == key_prop {
                                    Some(Value::from(t.key.as_str()))
                                } else {
                                    t.data.get(k).cloned()
                                };
                                if differs(&want, current.as_ref()) {
                                    problems.push(format!(
                                        "'{k}' is {} in the store, the order set {}",
                                        show(current.as_ref()),
                                        show(Some(v))
                                    ));
                                }
                            }
                        }
                        if problems.is_empty() {
                            Ok(())
                        } else {
                            Err(problems.join("; "))
                        }
                    }
                };
                match outcome {
                    Ok(()) => {
                        report.verified += 1;
                        updates.push(OrderUpdate {
                            id: stored.id,
                            state: OrderState::Verified,
                            message: format!(
                                "verified by the synchronization of connector '{connector}'"
                            ),
                        });
                        match (order.change_type, &stored.owner_key, tid) {
                            (ChangeType::Deleted, Some(owner), _) => {
                                unassigned.push((rt.id.value.clone(), owner.clone()));
                            }
                            (_, Some(owner), Some(id)) => assigned.push(Assignment {
                                resource_type: rt.id.value.clone(),
                                owner_key: owner.clone(),
                                target_key: targets.by_id[&id].key.clone(),
                            }),
                            _ => {}
                        }
                    }
                    Err(why) => {
                        report.waiting += 1;
                        let message = format!(
                            "executed, not verified yet: after the synchronization of connector '{connector}', {why}"
                        );
                        if message != stored.message {
                            updates.push(OrderUpdate {
                                id: stored.id,
                                state: OrderState::Executed,
                                message,
                            });
                        }
                    }
                }
            }
            store
                .record_verification(&updates, &assigned, &unassigned)
                .await?;
        }
        Ok(report)
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "empty".into(),
        Some(Value::String(s)) => format!("'{s}'"),
        Some(other) => other.to_string(),
    }
}
