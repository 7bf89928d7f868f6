//! A resource type's rules, compiled once per run: scalar rules, navigation rules and the
//! correlation rules that adopt existing targets.

use std::collections::{BTreeSet, HashMap};

use idlink_model::config::{Configuration, PropertyType, ResourceType, RuleSource};
use idlink_model::expr::Expr;
use serde_json::{Map, Value};

use super::world::{Nav, World, key_property, navigation};
use super::{differs, json_of, key_objects};

struct Scalar {
    property: String,
    ty: PropertyType,
    expr: Expr,
}

struct NavRule {
    property: String,
    /// `Resource`: the key of the one resource linked (e.g. a group's dn). With a source too,
    /// the source is a condition: the link is wanted when it has a value.
    fixed: Option<String>,
    expr: Option<Expr>,
}

struct Correlation {
    target_binding: String,
    target_fn: Option<String>,
    source: Expr,
    source_fn: Option<String>,
}

/// What the rules give for one owner.
#[derive(Debug, Default)]
pub(crate) struct Computed {
    scalars: Vec<(String, Vec<String>)>,
    navs: HashMap<String, BTreeSet<String>>,
}

impl Computed {
    /// The (first) value computed for `property`.
    pub fn key(&self, property: &str) -> Option<&str> {
        self.scalars
            .iter()
            .find(|(p, _)| p == property)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }
}

pub(crate) struct Compiled {
    pub source: String,
    pub target: String,
    /// The target entity type's key property.
    pub key_property: String,
    scalars: Vec<Scalar>,
    navs: Vec<NavRule>,
    /// The target's navigation properties the rules set.
    pub target_navs: HashMap<String, Nav>,
    /// For each of them, the key property of the linked entity type.
    nav_keys: HashMap<String, String>,
    correlations: Vec<Correlation>,
}

/// A correlation rule's named function (`ToLower`, ...) applied to values.
fn apply_named(name: &str, values: Vec<String>) -> Result<Vec<String>, String> {
    idlink_model::expr::apply_named(name, values).map_err(|e| e.message)
}

fn compile(source: &Option<RuleSource>, what: &str) -> Result<Option<Expr>, String> {
    match source {
        None => Ok(None),
        Some(s @ RuleSource::Expression(e)) if s.is_csharp() => Err(format!(
            "{what} uses a C# expression, which idlink cannot run: rewrite it in idlink's expression language (docs/expressions.md)"
        )),
        Some(RuleSource::Expression(e)) => Expr::parse(&e.value)
            .map(Some)
            .map_err(|err| format!("{what}: {} (at character {})", err.message, err.offset + 1)),
        Some(RuleSource::Binding(b)) => Ok(Some(Expr::binding(&b.value))),
    }
}

impl Compiled {
    /// Compiles the rules; `Err` lists why the resource type cannot generate orders.
    pub fn new(config: &Configuration, rt: &ResourceType) -> Result<Compiled, Vec<String>> {
        let mut errors = Vec::new();
        let source = rt.source_entity_type.value.clone();
        let target = rt.target_entity_type.value.clone();
        let Some(target_et) = config.entity_type(&target) else {
            return Err(vec![format!(
                "target entity type '{target}' is not declared"
            )]);
        };
        let key_prop = key_property(config, &target).unwrap_or_default();
        if key_prop.is_empty() {
            errors.push(format!(
                "entity type '{target}' has no key property (IsPrimaryKey in its mapping)"
            ));
        }
        let mut scalars = Vec::new();
        for r in &rt.scalar_rules {
            let what = format!("the scalar rule on '{}'", r.property);
            match compile(&r.source, &what) {
                Ok(Some(expr)) => scalars.push(Scalar {
                    property: r.property.value.clone(),
                    ty: target_et
                        .property(&r.property.value)
                        .map_or(PropertyType::String, |p| p.ty),
                    expr,
                }),
                Ok(None) => errors.push(format!("{what} has neither Binding nor Expression")),
                Err(e) => errors.push(e),
            }
        }
        let mut navs = Vec::new();
        let mut target_navs = HashMap::new();
        let mut nav_keys = HashMap::new();
        for r in &rt.navigation_rules {
            let what = format!("the navigation rule on '{}'", r.property);
            let Some(nav) = navigation(config, &target, &r.property.value) else {
                errors.push(format!(
                    "{what}: '{}' is not a navigation property of '{target}' (no association names it)",
                    r.property
                ));
                continue;
            };
            let expr = match compile(&r.source, &what) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if expr.is_none() && r.resource.is_none() {
                errors.push(format!(
                    "{what} has neither Resource nor Binding nor Expression"
                ));
                continue;
            }
            nav_keys.insert(
                r.property.value.clone(),
                key_property(config, &nav.other).unwrap_or_else(|| "Identifier".into()),
            );
            target_navs.insert(r.property.value.clone(), nav);
            navs.push(NavRule {
                property: r.property.value.clone(),
                fixed: r.resource.as_ref().map(|t| t.value.clone()),
                expr,
            });
        }
        let mut correlations = Vec::new();
        for r in config
            .resource_correlation_rules
            .iter()
            .filter(|r| r.resource_type.value == rt.id.value)
        {
            let what = format!("the correlation rule on '{}'", r.target_binding);
            let source = match compile(&r.source, &what) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    errors.push(format!("{what} has no SourceBinding or SourceExpression"));
                    continue;
                }
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for f in [&r.target_expression, &r.source_expression]
                .into_iter()
                .flatten()
            {
                if let Err(e) = apply_named(&f.value, Vec::new()) {
                    errors.push(format!("{what}: {e}"));
                }
            }
            correlations.push(Correlation {
                target_binding: idlink_model::config::binding_parts(&r.target_binding.value)
                    .1
                    .to_string(),
                target_fn: r.target_expression.as_ref().map(|t| t.value.clone()),
                source,
                source_fn: r.source_expression.as_ref().map(|t| t.value.clone()),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Compiled {
            source,
            target,
            key_property: key_prop,
            scalars,
            navs,
            target_navs,
            nav_keys,
            correlations,
        })
    }

    /// Every source path the rules read.
    pub fn paths(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let exprs = self
            .scalars
            .iter()
            .map(|s| &s.expr)
            .chain(self.navs.iter().filter_map(|n| n.expr.as_ref()))
            .chain(self.correlations.iter().map(|c| &c.source));
        for e in exprs {
            for p in e.paths() {
                if !out.iter().any(|o| o == p) {
                    out.push(p.to_string());
                }
            }
        }
        out
    }

    /// What the rules give for one owner.
    pub fn compute(&self, lookup: &dyn Fn(&str) -> Vec<String>) -> Result<Computed, String> {
        let mut out = Computed::default();
        for s in &self.scalars {
            let v = s
                .expr
                .eval(lookup)
                .map_err(|e| format!("the rule on '{}': {}", s.property, e.message))?;
            out.scalars.push((s.property.clone(), v));
        }
        for n in &self.navs {
            let values = match &n.expr {
                Some(e) => e
                    .eval(lookup)
                    .map_err(|e| format!("the rule on '{}': {}", n.property, e.message))?,
                None => Vec::new(),
            };
            let set = out.navs.entry(n.property.clone()).or_default();
            match &n.fixed {
                Some(key) if n.expr.is_none() || !values.is_empty() => {
                    set.insert(key.clone());
                }
                Some(_) => {}
                None => set.extend(values),
            }
        }
        Ok(out)
    }

    /// Per correlation rule: the target value (after its function) -> target ids.
    pub fn correlation_index(&self, world: &World) -> Vec<HashMap<String, Vec<i64>>> {
        let Some(targets) = world.entities.get(&self.target) else {
            return Vec::new();
        };
        self.correlations
            .iter()
            .map(|c| {
                let mut m: HashMap<String, Vec<i64>> = HashMap::new();
                for &id in &targets.order {
                    let values = targets.by_id[&id].values(&c.target_binding, &self.key_property);
                    let values = match &c.target_fn {
                        Some(f) => apply_named(f, values).unwrap_or_default(),
                        None => values,
                    };
                    for v in values {
                        m.entry(v).or_default().push(id);
                    }
                }
                m
            })
            .collect()
    }

    /// The one target the first matching correlation rule finds (none when ambiguous).
    pub fn correlate(
        &self,
        index: &[HashMap<String, Vec<i64>>],
        lookup: &dyn Fn(&str) -> Vec<String>,
    ) -> Option<i64> {
        for (c, m) in self.correlations.iter().zip(index) {
            let Ok(values) = c.source.eval(lookup) else {
                continue;
            };
            let values = match &c.source_fn {
                Some(f) => apply_named(f, values).unwrap_or_default(),
                None => values,
            };
            let Some(v) = values.first() else { continue };
            if let Some([id]) = m.get(v).map(Vec::as_slice) {
                return Some(*id);
            }
        }
        None
    }

    /// The changes of an `Added` order: every computed value, and the links wanted.
    pub fn added_changes(&self, computed: &Computed, _world: &World) -> Map<String, Value> {
        let mut changes = Map::new();
        for (s, (_, values)) in self.scalars.iter().zip(&computed.scalars) {
            if !values.is_empty() {
                changes.insert(s.property.clone(), json_of(s.ty, values));
            }
        }
        for (prop, keys) in &computed.navs {
            if !keys.is_empty() {
                changes.insert(
                    format!("{prop}_add"),
                    key_objects(&self.nav_keys[prop], keys),
                );
            }
        }
        changes
    }

    /// The changes of a `Modified` order: only what differs from the target.
    pub fn modified_changes(
        &self,
        computed: &Computed,
        target_id: i64,
        data: &Map<String, Value>,
        world: &World,
    ) -> Map<String, Value> {
        let mut changes = Map::new();
        for (s, (_, values)) in self.scalars.iter().zip(&computed.scalars) {
            if differs(values, data.get(&s.property)) {
                changes.insert(s.property.clone(), json_of(s.ty, values));
            }
        }
        let mut props: Vec<&String> = computed.navs.keys().collect();
        props.sort();
        for prop in props {
            let want = &computed.navs[prop];
            let nav = &self.target_navs[prop];
            let have: BTreeSet<String> = world.linked_keys(nav, target_id).into_iter().collect();
            let add: BTreeSet<String> = want.difference(&have).cloned().collect();
            let remove: BTreeSet<String> = have.difference(want).cloned().collect();
            if !add.is_empty() {
                changes.insert(
                    format!("{prop}_add"),
                    key_objects(&self.nav_keys[prop], &add),
                );
            }
            if !remove.is_empty() {
                changes.insert(
                    format!("{prop}_remove"),
                    key_objects(&self.nav_keys[prop], &remove),
                );
            }
        }
        changes
    }
}
