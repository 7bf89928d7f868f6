//! What provisioning reads from the store: the resources of the entity types its rules reach
//! and the links of the associations they cross, loaded once per run and kept by id.

use std::collections::HashMap;

use idlink_model::config::{Configuration, binding_parts};
use idlink_store::Store;
use serde_json::{Map, Value};

use crate::EngineError;

/// One resource: its key and values.
#[derive(Debug)]
pub(crate) struct Res {
    pub key: String,
    pub data: Map<String, Value>,
}

impl Res {
    /// The values of `property` as strings; the key property's is the resource's key.
    pub fn values(&self, property: &str, key_property: &str) -> Vec<String> {
        if property == key_property {
            vec![self.key.clone()]
        } else {
            strings(self.data.get(property))
        }
    }
}

/// The resources of one entity type.
#[derive(Debug, Default)]
pub(crate) struct Entities {
    pub by_id: HashMap<i64, Res>,
    pub by_key: HashMap<String, i64>,
    /// Ids in key order (owners are visited in this order, so runs are repeatable).
    pub order: Vec<i64>,
}

/// A navigation property: the association it is an end of, the side it reads from (1: the
/// association's Property1, so links go id1 -> id2) and the entity type on the other side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Nav {
    pub association: String,
    pub side: u8,
    pub other: String,
}

/// The navigation `entity_type:property` is, if it is one.
pub(crate) fn navigation(config: &Configuration, entity_type: &str, property: &str) -> Option<Nav> {
    for a in &config.entity_associations {
        let (p1, p2) = (&a.property1.value, &a.property2.value);
        if p1.entity_type == entity_type && p1.property == property {
            return Some(Nav {
                association: a.id.value.clone(),
                side: 1,
                other: p2.entity_type.clone(),
            });
        }
        if p2.entity_type == entity_type && p2.property == property {
            return Some(Nav {
                association: a.id.value.clone(),
                side: 2,
                other: p1.entity_type.clone(),
            });
        }
    }
    None
}

/// The property holding an entity type's key: its mapping's `IsPrimaryKey` property, else the
/// entity type's `IsKey` one.
pub(crate) fn key_property(config: &Configuration, entity_type: &str) -> Option<String> {
    config
        .entity_type_mappings
        .iter()
        .filter(|m| m.id.value == entity_type)
        .flat_map(|m| m.properties.iter())
        .find(|p| p.is_primary_key)
        .map(|p| p.id.value.clone())
        .or_else(|| {
            config
                .entity_type(entity_type)?
                .properties
                .iter()
                .find(|p| p.is_key)
                .map(|p| p.id.value.clone())
        })
}

/// The values of a JSON value as strings: a string as it is, numbers and booleans as written,
/// each element of an array; null and absent give none.
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().flat_map(|i| strings(Some(i))).collect(),
        Some(Value::Bool(b)) => vec![b.to_string()],
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Object(_)) => vec![v.map(Value::to_string).unwrap_or_default()],
    }
}

/// Resources and links loaded for one run.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub entities: HashMap<String, Entities>,
    /// (association, side) -> id on that side -> ids on the other.
    pub links: HashMap<(String, u8), HashMap<i64, Vec<i64>>>,
}

impl World {
    pub async fn load_entities(
        &mut self,
        store: &Store,
        entity_type: &str,
    ) -> Result<(), EngineError> {
        if self.entities.contains_key(entity_type) {
            return Ok(());
        }
        let rows = store.resources(entity_type, &[]).await?;
        let mut e = Entities {
            by_id: HashMap::with_capacity(rows.len()),
            by_key: HashMap::with_capacity(rows.len()),
            order: Vec::with_capacity(rows.len()),
        };
        for r in rows {
            e.order.push(r.id);
            e.by_key.insert(r.key.clone(), r.id);
            e.by_id.insert(
                r.id,
                Res {
                    key: r.key,
                    data: r.data,
                },
            );
        }
        self.entities.insert(entity_type.to_string(), e);
        Ok(())
    }

    pub async fn load_nav(&mut self, store: &Store, nav: &Nav) -> Result<(), EngineError> {
        self.load_entities(store, &nav.other).await?;
        let k = (nav.association.clone(), nav.side);
        if self.links.contains_key(&k) {
            return Ok(());
        }
        let pairs = store.link_pairs(&nav.association).await?;
        let mut map: HashMap<i64, Vec<i64>> = HashMap::new();
        for (id1, id2) in pairs {
            let (from, to) = if nav.side == 1 {
                (id1, id2)
            } else {
                (id2, id1)
            };
            map.entry(from).or_default().push(to);
        }
        self.links.insert(k, map);
        Ok(())
    }

    /// Loads what reading `path` from `entity_type` crosses.
    pub async fn load_path(
        &mut self,
        store: &Store,
        config: &Configuration,
        entity_type: &str,
        path: &str,
    ) -> Result<(), EngineError> {
        let (prefix, rest) = binding_parts(path);
        let mut et = prefix
            .filter(|p| config.entity_type(p).is_some())
            .unwrap_or(entity_type)
            .to_string();
        self.load_entities(store, &et).await?;
        for seg in rest.split('.') {
            match navigation(config, &et, seg) {
                Some(nav) => {
                    self.load_nav(store, &nav).await?;
                    et = nav.other;
                }
                None => break,
            }
        }
        Ok(())
    }

    /// The keys of the resources linked to `id` through `nav`, sorted.
    pub fn linked_keys(&self, nav: &Nav, id: i64) -> Vec<String> {
        let Some(ids) = self
            .links
            .get(&(nav.association.clone(), nav.side))
            .and_then(|m| m.get(&id))
        else {
            return Vec::new();
        };
        let Some(other) = self.entities.get(&nav.other) else {
            return Vec::new();
        };
        let mut keys: Vec<String> = ids
            .iter()
            .filter_map(|i| other.by_id.get(i).map(|r| r.key.clone()))
            .collect();
        keys.sort();
        keys
    }

    /// The values of `path` for resource `id` of `entity_type` (paths were loaded first).
    pub fn values(
        &self,
        config: &Configuration,
        entity_type: &str,
        id: i64,
        path: &str,
    ) -> Vec<String> {
        let (prefix, rest) = binding_parts(path);
        let mut et = prefix
            .filter(|p| config.entity_type(p).is_some())
            .unwrap_or(entity_type)
            .to_string();
        let mut ids = vec![id];
        let segs: Vec<&str> = rest.split('.').map(str::trim).collect();
        for (i, seg) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            match navigation(config, &et, seg) {
                Some(nav) => {
                    if last {
                        let mut out: Vec<String> = ids
                            .iter()
                            .flat_map(|id| self.linked_keys(&nav, *id))
                            .collect();
                        out.dedup();
                        return out;
                    }
                    let map = self.links.get(&(nav.association.clone(), nav.side));
                    ids = ids
                        .iter()
                        .flat_map(|id| map.and_then(|m| m.get(id)).cloned().unwrap_or_default())
                        .collect();
                    et = nav.other;
                }
                None if last => {
                    let Some(ents) = self.entities.get(&et) else {
                        return Vec::new();
                    };
                    return ids
                        .iter()
                        .filter_map(|id| ents.by_id.get(id))
                        .flat_map(|r| strings(r.data.get(*seg)))
                        .collect();
                }
                None => return Vec::new(),
            }
        }
        Vec::new()
    }
}
