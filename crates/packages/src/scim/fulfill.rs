//! Fulfill: provisioning orders -> SCIM requests.
//!
//! How an order reads:
//! - The endpoint is `Changes.objectClass`, else `Resource.objectClass`, else
//!   `ResourceType.DefaultObjectClass` (the engine fills the ScimResourceTypeMapping's
//!   `DefaultObjectClass`, e.g. `Groups`, into every order, and into `Changes.objectClass` of
//!   Added orders): an endpoint or a resource type name; `Users` when the order names none.
//! - The resource's SCIM id is the `id` property, in `Resource` (or `Changes`): `Modified` and
//!   `Deleted` need it.
//! - Other properties are attributes, named as export columns name them: `userName`,
//!   `name:givenName` (or `name.givenName`), `emails:value` (a multi-valued attribute's
//!   sub-attribute: one value, or a list of values, one element each), an extension's
//!   attribute behind its URN (`urn:...:enterprise:2.0:User:employeeNumber`). Values are
//!   converted to the attribute's type when the service's schema gives it (`"true"` for a
//!   boolean). A `password` is sent, but never shown.
//! - `<property>_add` / `<property>_remove` list linked resources (their `id`, or one key
//!   property such as `{"displayName": "staff"}`, looked up with a filter): `groups_*` of a user
//!   are memberships, sent as PATCHes of each group's `members`; any other (`members_*` of a
//!   group, `roles_*`, ...) PATCHes the resource's own attribute.
//!
//! What is sent: `Added` -> POST with every non-empty attribute; `Modified` -> PATCH with only
//! the changed attributes (a null or empty value removes one), or, when the service's
//! `/ServiceProviderConfig` says it does not support PATCH, GET then PUT of the whole resource
//! with the changes applied; `Deleted` -> DELETE; then the membership PATCHes.
//!
//! Idempotent: a POST answered 409 (the resource exists) finds the resource by `userName`
//! (groups: `displayName`; else `externalId`) and modifies it instead; a DELETE answered 404
//! is Executed (already gone); adding a member twice or removing one that is not there is
//! Executed.
//!
//! With `ServiceSupportBulk` (and a service announcing bulk), orders go in `/Bulk` requests of
//! at most `BulkMaxOperation` operations (else the service's `bulk.maxOperations`, else 100,
//! and within its `maxPayloadSize`); an order's operations stay in one request, a new
//! resource's memberships refer to it by `bulkId`. Without bulk, up to
//! `MaxConcurrentRequests` orders are in flight at once; orders touching the same resource
//! keep their order. 429 and 503 are retried (see [`super::client`]); other failures make the
//! order Errored with the status and the service's detail, and the others go on.
//!
//! Dry run: nothing is sent (the service is not even asked what it supports); each result
//! lists the requests that would be sent (method, path, body with secrets redacted).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Client, Reply};
use super::export::{get_ci, scalar};
use super::schema::{Catalog, ENTERPRISE_SCHEMA, GROUP_SCHEMA, ResourceType};
use super::settings::{DEFAULT_BULK_MAX, ScimSettings};
use crate::api::{ChangeType, FulfillRequest, OrderResult, OrderState, PackageError};

const OPERATION: &str = "fulfill";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const REDACTED: &str = "**REDACTED**";
/// Attributes whose values are never shown.
const SECRET_ATTRIBUTES: &[&str] = &["password"];
/// Multi-valued complex attributes of RFC 7643, for services that publish no schema.
const KNOWN_MULTI: &[&str] = &[
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
    "members",
];
/// Boolean attributes of RFC 7643, for services that publish no schema.
const KNOWN_BOOL: &[&str] = &["active", "primary"];

/// What the service supports.
#[derive(Debug, Clone)]
pub struct Service {
    pub patch: bool,
    /// `Some((max operations, max payload))` when bulk requests are to be used.
    pub bulk: Option<(usize, Option<usize>)>,
    pub catalog: Catalog,
}

impl Service {
    /// What a dry run assumes: PATCH, bulk as the settings say, RFC schemas.
    fn assumed(settings: &ScimSettings) -> Service {
        Service {
            patch: true,
            bulk: settings
                .bulk
                .then(|| (settings.bulk_max.unwrap_or(DEFAULT_BULK_MAX), None)),
            catalog: Catalog::fallback(),
        }
    }

    /// Asks `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas`.
    async fn discover(client: &Client, settings: &ScimSettings) -> Result<Service, PackageError> {
        let url = client.url(&["ServiceProviderConfig"], &[]);
        let reply = client.send(Method::GET, &url, None, OPERATION).await?;
        let config = if reply.ok() {
            client.parse(&reply)?
        } else if reply.status == 401 || reply.status >= 500 {
            return Err(client.status_error(&reply, OPERATION));
        } else {
            Value::Null
        };
        let flag = |section: &str| {
            config
                .get(section)
                .and_then(|s| s.get("supported"))
                .and_then(Value::as_bool)
        };
        let patch = flag("patch").unwrap_or(true);
        let bulk = if settings.bulk && flag("bulk") != Some(false) {
            let b = config.get("bulk");
            let server_max = b
                .and_then(|b| b.get("maxOperations"))
                .and_then(Value::as_u64)
                .filter(|&m| m > 0)
                .map(|m| m as usize);
            let payload = b
                .and_then(|b| b.get("maxPayloadSize"))
                .and_then(Value::as_u64)
                .filter(|&m| m > 0)
                .map(|m| m as usize);
            let max = match (settings.bulk_max, server_max) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => DEFAULT_BULK_MAX,
            };
            Some((max, payload))
        } else {
            None
        };
        let catalog = match Catalog::read(client, OPERATION).await {
            Ok(c) => c,
            Err(e @ PackageError::Credentials { .. }) => return Err(e),
            // A service that does not describe itself: RFC 7643's attributes are assumed.
            Err(_) => Catalog::fallback(),
        };
        Ok(Service {
            patch,
            bulk,
            catalog,
        })
    }
}

/// A linked resource: by id, or by one key property.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Id(String),
    Lookup { attr: String, value: String },
}

impl Target {
    fn show(&self) -> String {
        match self {
            Target::Id(id) => id.clone(),
            Target::Lookup { attr, value } => format!("<id of {attr} \"{value}\">"),
        }
    }
}

/// Which request a link becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Via {
    /// A membership: PATCH the group's `members` with this resource.
    GroupMembers,
    /// PATCH this resource's own multi-valued attribute.
    Own(String),
}

#[derive(Debug, Clone)]
struct Link {
    add: bool,
    via: Via,
    target: Target,
}

/// What one order turns into.
#[derive(Debug, Clone)]
struct Plan {
    change: ChangeType,
    endpoint: String,
    groups_endpoint: String,
    users_endpoint: String,
    id: Option<String>,
    /// Added: the POST body. Modified: the attributes to set (for PUT and 409 adoption).
    body: Map<String, Value>,
    /// Modified: the PATCH operations.
    ops: Vec<Value>,
    /// Modified: the attributes to remove (for PUT).
    removes: Vec<Place>,
    links: Vec<Link>,
    /// Added: how to find the resource when it exists already.
    natural: Option<(String, String)>,
    /// What the order touches (for ordering).
    keys: Vec<String>,
}

/// A property as a place in a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    urn: Option<String>,
    attr: String,
    sub: Option<String>,
}

impl Place {
    /// The PATCH path (`name.givenName`, `urn:...:User:manager.value`).
    fn path(&self, multi: bool) -> String {
        let mut p = String::new();
        if let Some(u) = &self.urn {
            p.push_str(u);
            p.push(':');
        }
        p.push_str(&self.attr);
        if let Some(s) = &self.sub
            && !multi
        {
            p.push('.');
            p.push_str(s);
        }
        p
    }
}

struct Planner<'a> {
    catalog: &'a Catalog,
}

impl Planner<'_> {
    fn resource_type(&self, endpoint: &str) -> Option<&ResourceType> {
        self.catalog.resource_type(endpoint)
    }

    fn endpoint_of_schema(&self, schema: &str, default: &str) -> String {
        self.catalog
            .types
            .iter()
            .find(|t| t.schema.eq_ignore_ascii_case(schema))
            .map_or_else(|| default.to_string(), |t| t.endpoint.clone())
    }

    /// The URNs a property may start with.
    fn urns(&self, rt: Option<&ResourceType>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(rt) = rt {
            out.push(rt.schema.clone());
            out.extend(rt.extensions.iter().cloned());
        }
        out.extend(self.catalog.schemas.iter().map(|(id, _)| id.clone()));
        out.push(ENTERPRISE_SCHEMA.to_string());
        out.sort_by_key(|u| std::cmp::Reverse(u.len()));
        out
    }

    fn place(&self, name: &str, rt: Option<&ResourceType>) -> Result<Place, String> {
        let split = |rest: &str| -> (String, Option<String>) {
            match rest.split_once([':', '.']) {
                Some((a, s)) => (a.to_string(), Some(s.to_string())),
                None => (rest.to_string(), None),
            }
        };
        if name.len() > 4 && name[..4].eq_ignore_ascii_case("urn:") {
            for u in self.urns(rt) {
                if name.len() > u.len() + 1
                    && name[..u.len()].eq_ignore_ascii_case(&u)
                    && matches!(name.as_bytes()[u.len()], b':' | b'.')
                {
                    let (attr, sub) = split(&name[u.len() + 1..]);
                    // The core schema's own URN in front: a core attribute.
                    let core = rt.is_some_and(|t| t.schema.eq_ignore_ascii_case(&u));
                    return Ok(Place {
                        urn: (!core).then_some(u),
                        attr,
                        sub,
                    });
                }
            }
            return Err(format!(
                "property '{name}' starts with a URN that is none of the schemas the service describes (or the enterprise extension): write <schema URN>:<attribute>[:<sub-attribute>]"
            ));
        }
        let (attr, sub) = split(name);
        Ok(Place {
            urn: None,
            attr,
            sub,
        })
    }

    /// Whether a place's attribute is multi-valued.
    fn multi(&self, rt: Option<&ResourceType>, p: &Place) -> bool {
        rt.and_then(|t| self.catalog.is_multi(t, p.urn.as_deref(), &p.attr))
            .unwrap_or_else(|| KNOWN_MULTI.iter().any(|k| k.eq_ignore_ascii_case(&p.attr)))
    }

    /// The SCIM type of a place (`boolean`, `integer`, ...), when known.
    fn kind(&self, rt: Option<&ResourceType>, p: &Place) -> Option<String> {
        let attrs = rt.and_then(|t| {
            self.catalog
                .attributes(p.urn.as_deref().unwrap_or(&t.schema))
        });
        let Some(attrs) = attrs else {
            let name = p.sub.as_deref().unwrap_or(&p.attr);
            return KNOWN_BOOL
                .iter()
                .any(|b| b.eq_ignore_ascii_case(name))
                .then(|| "boolean".to_string());
        };
        let a = attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(&p.attr))?;
        match &p.sub {
            None => Some(a.kind.clone()),
            Some(s) => a
                .sub
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(s))
                .map(|x| x.kind.clone()),
        }
    }

    fn plan(&self, order: &crate::api::ProvisioningOrder) -> Result<Plan, String> {
        let empty = Map::new();
        let changes = &order.changes;
        let resource = order.resource.as_ref().unwrap_or(&empty);
        let class = get_ci(changes, "objectClass")
            .or_else(|| get_ci(resource, "objectClass"))
            .and_then(|v| match v {
                Value::Array(a) => a.first().and_then(scalar),
                other => scalar(other),
            })
            .or_else(|| {
                order
                    .resource_type
                    .default_object_class
                    .clone()
                    .filter(|c| !c.trim().is_empty())
            });
        let users_endpoint = self.endpoint_of_schema(super::schema::USER_SCHEMA, "Users");
        let groups_endpoint = self.endpoint_of_schema(GROUP_SCHEMA, "Groups");
        let endpoint = match class {
            Some(c) => self
                .resource_type(c.trim_matches('/'))
                .map_or_else(|| c.trim_matches('/').to_string(), |t| t.endpoint.clone()),
            None => users_endpoint.clone(),
        };
        if endpoint.is_empty() || endpoint.contains(['?', '#']) {
            return Err(format!("objectClass '{endpoint}' is not an endpoint name"));
        }
        let rt = self.resource_type(&endpoint);
        let id = get_ci(resource, "id")
            .or_else(|| get_ci(changes, "id"))
            .and_then(scalar)
            .filter(|s| !s.is_empty());
        let mut plan = Plan {
            change: order.change_type,
            endpoint: endpoint.clone(),
            groups_endpoint,
            users_endpoint,
            id: id.clone(),
            body: Map::new(),
            ops: Vec::new(),
            removes: Vec::new(),
            links: Vec::new(),
            natural: None,
            keys: Vec::new(),
        };
        if let Some(id) = &id {
            plan.keys
                .push(format!("{}/{}", endpoint.to_lowercase(), id));
        }
        // Links.
        for (k, v) in changes {
            let (prop, add) = if let Some(p) = strip_suffix_ci(k, "_add") {
                (p, true)
            } else if let Some(p) = strip_suffix_ci(k, "_remove") {
                (p, false)
            } else {
                continue;
            };
            let is_group = endpoint.eq_ignore_ascii_case(&plan.groups_endpoint);
            let via = if prop.eq_ignore_ascii_case("groups") && !is_group {
                Via::GroupMembers
            } else {
                Via::Own(prop.to_string())
            };
            for target in targets(v).map_err(|m| format!("{k}: {m}"))? {
                plan.links.push(Link {
                    add,
                    via: via.clone(),
                    target,
                });
            }
        }
        if order.change_type == ChangeType::Deleted {
            if id.is_none() {
                return Err(
                    "a Deleted order needs the resource's SCIM id: an `id` property in Resource"
                        .into(),
                );
            }
            plan.links.clear();
            return Ok(plan);
        }
        // Attributes.
        let mut multi_set: Map<String, Value> = Map::new();
        let mut schemas: Vec<String> = Vec::new();
        for (k, v) in changes {
            if k.eq_ignore_ascii_case("objectClass")
                || k.eq_ignore_ascii_case("id")
                || k.eq_ignore_ascii_case("schemas")
                || strip_suffix_ci(k, "_add").is_some()
                || strip_suffix_ci(k, "_remove").is_some()
            {
                continue;
            }
            let place = self.place(k, rt)?;
            let multi = self.multi(rt, &place);
            let kind = self.kind(rt, &place);
            let value = typed(v, kind.as_deref());
            if let Some(u) = &place.urn
                && !schemas.iter().any(|s| s.eq_ignore_ascii_case(u))
            {
                schemas.push(u.clone());
            }
            if empty_value(&value) {
                if order.change_type == ChangeType::Modified {
                    plan.ops
                        .push(json!({"op": "remove", "path": place.path(multi)}));
                    plan.removes.push(place);
                }
                continue;
            }
            if order.change_type == ChangeType::Added && place.urn.is_none() && place.sub.is_none()
            {
                let attr = place.attr.to_ascii_lowercase();
                if (attr == "username" && endpoint.eq_ignore_ascii_case(&plan.users_endpoint))
                    || (attr == "displayname"
                        && endpoint.eq_ignore_ascii_case(&plan.groups_endpoint))
                    || attr == "externalid"
                {
                    let better = plan.natural.as_ref().is_none_or(|(a, _)| a == "externalId");
                    if let (true, Some(text)) = (better, scalar(&value)) {
                        plan.natural = Some((place.attr.clone(), text));
                    }
                }
            }
            put(&mut plan.body, &place, value.clone(), multi);
            if order.change_type == ChangeType::Modified {
                if multi {
                    put(&mut multi_set, &place, value, true);
                } else {
                    plan.ops
                        .push(json!({"op": "replace", "path": place.path(false), "value": value}));
                }
            }
        }
        // One replace per multi-valued attribute, holding every element the order gives.
        for (k, v) in multi_set {
            if k.len() > 4 && k[..4].eq_ignore_ascii_case("urn:") {
                if let Value::Object(inner) = v {
                    for (a, x) in inner {
                        plan.ops
                            .push(json!({"op": "replace", "path": format!("{k}:{a}"), "value": x}));
                    }
                }
            } else {
                plan.ops
                    .push(json!({"op": "replace", "path": k, "value": v}));
            }
        }
        if let Some(n) = &plan.natural {
            plan.keys.push(format!(
                "{}?{}={}",
                endpoint.to_lowercase(),
                n.0.to_lowercase(),
                n.1
            ));
        }
        match order.change_type {
            ChangeType::Added => {
                let core = rt.map_or_else(
                    || {
                        if endpoint.eq_ignore_ascii_case(&plan.groups_endpoint) {
                            GROUP_SCHEMA.to_string()
                        } else {
                            super::schema::USER_SCHEMA.to_string()
                        }
                    },
                    |t| t.schema.clone(),
                );
                let mut list = vec![Value::String(core)];
                list.extend(schemas.into_iter().map(Value::String));
                plan.body.insert("schemas".into(), Value::Array(list));
            }
            ChangeType::Modified => {
                if id.is_none() {
                    return Err(
                        "a Modified order needs the resource's SCIM id: an `id` property in Resource"
                            .into(),
                    );
                }
            }
            ChangeType::Deleted => {}
        }
        Ok(plan)
    }
}

fn strip_suffix_ci<'k>(k: &'k str, suffix: &str) -> Option<&'k str> {
    let n = k.len().checked_sub(suffix.len())?;
    (n > 0 && k.is_char_boundary(n) && k[n..].eq_ignore_ascii_case(suffix)).then(|| &k[..n])
}

fn empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A value converted to the attribute's type (orders carry what CSV tables hold: text).
fn typed(v: &Value, kind: Option<&str>) -> Value {
    let convert = |s: &str| -> Option<Value> {
        match kind?.to_ascii_lowercase().as_str() {
            "boolean" => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(Value::Bool(true)),
                "false" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
            "integer" => s.trim().parse::<i64>().ok().map(Value::from),
            "decimal" => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            _ => None,
        }
    };
    match v {
        Value::String(s) => convert(s).unwrap_or_else(|| v.clone()),
        Value::Number(n) if kind.is_some_and(|k| k.eq_ignore_ascii_case("string")) => {
            Value::String(n.to_string())
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| typed(i, kind)).collect()),
        other => other.clone(),
    }
}

/// Sets a place in a body (a multi-valued attribute's sub-attribute: one element per value).
fn put(body: &mut Map<String, Value>, place: &Place, value: Value, multi: bool) {
    let target = match &place.urn {
        Some(u) => {
            let e = body
                .entry(u.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            match e {
                Value::Object(m) => m,
                _ => return,
            }
        }
        None => body,
    };
    let values = |v: Value| match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    match (&place.sub, multi) {
        (None, false) => {
            target.insert(place.attr.clone(), value);
        }
        (None, true) => {
            let items = values(value)
                .into_iter()
                .map(|x| match x {
                    Value::Object(_) => x,
                    other => json!({"value": other}),
                })
                .collect();
            target.insert(place.attr.clone(), Value::Array(items));
        }
        (Some(s), false) => {
            let e = target
                .entry(place.attr.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            if let Value::Object(m) = e {
                m.insert(s.clone(), value);
            }
        }
        (Some(s), true) => {
            let e = target
                .entry(place.attr.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !e.is_array() {
                *e = Value::Array(Vec::new());
            }
            if let Value::Array(items) = e {
                for (i, x) in values(value).into_iter().enumerate() {
                    if items.len() <= i {
                        items.push(Value::Object(Map::new()));
                    }
                    if let Value::Object(m) = &mut items[i] {
                        m.insert(s.clone(), x);
                    }
                }
            }
        }
    }
}

/// Removes a place from a resource (for PUT).
fn remove(body: &mut Map<String, Value>, place: &Place, multi: bool) {
    let target = match &place.urn {
        Some(u) => match body.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(u)) {
            Some((_, Value::Object(m))) => m,
            _ => return,
        },
        None => body,
    };
    let key = target
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&place.attr))
        .cloned();
    let Some(key) = key else { return };
    match (&place.sub, multi) {
        (Some(s), false) => {
            if let Some(Value::Object(m)) = target.get_mut(&key) {
                let sk = m.keys().find(|k| k.eq_ignore_ascii_case(s)).cloned();
                if let Some(sk) = sk {
                    m.remove(&sk);
                }
            }
        }
        _ => {
            target.remove(&key);
        }
    }
}

/// The linked resources of a `_add` / `_remove` value.
fn targets(v: &Value) -> Result<Vec<Target>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(s) if !s.is_empty() => out.push(Target::Id(s.clone())),
            Value::Number(n) => out.push(Target::Id(n.to_string())),
            Value::Object(o) => {
                if let Some(id) = get_ci(o, "id")
                    .or_else(|| get_ci(o, "value"))
                    .and_then(scalar)
                {
                    out.push(Target::Id(id));
                } else if let Some(r) = get_ci(o, "$ref").and_then(Value::as_str) {
                    let id = r.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                    out.push(Target::Id(id.to_string()));
                } else if o.len() == 1 {
                    let (k, x) = o.iter().next().ok_or("an empty object")?;
                    let value = scalar(x).ok_or_else(|| format!("{k} has no value"))?;
                    out.push(Target::Lookup {
                        attr: k.clone(),
                        value,
                    });
                } else {
                    return Err(format!(
                        "{} names no linked resource: give its id ({{\"id\": \"...\"}}) or one key property",
                        Value::Object(o.clone())
                    ));
                }
            }
            _ => return Err(format!("{item} is not a linked resource")),
        }
    }
    Ok(out)
}

/// A body (or a PATCH operation list) as results show it: secrets redacted.
fn shown(v: &Value) -> String {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                let secret_path = m
                    .get("path")
                    .and_then(Value::as_str)
                    .is_some_and(|p| SECRET_ATTRIBUTES.iter().any(|s| p.eq_ignore_ascii_case(s)));
                for (k, x) in m.iter_mut() {
                    if SECRET_ATTRIBUTES.iter().any(|s| k.eq_ignore_ascii_case(s))
                        || (secret_path && k == "value")
                    {
                        *x = Value::String(REDACTED.into());
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = v.clone();
    walk(&mut v);
    v.to_string()
}

/// A filter's quoted value.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The run's shared state.
struct Run<'a> {
    client: &'a Client,
    service: &'a Service,
    /// `(endpoint, attr, value)` -> id.
    lookups: Mutex<HashMap<(String, String, String), String>>,
}

/// What happened to one order.
#[derive(Debug, Default)]
struct Outcome {
    ok: bool,
    message: String,
    ops: Vec<String>,
}

impl Outcome {
    fn fail(mut self, message: impl Into<String>) -> Outcome {
        self.ok = false;
        self.message = message.into();
        self
    }
}

impl Run<'_> {
    fn line(&self, method: &Method, url: &reqwest::Url, body: Option<&Value>) -> String {
        let mut line = format!("{method} {}", Client::show(url));
        if let Some(b) = body {
            line.push(' ');
            line.push_str(&shown(b));
        }
        self.client.cx.redact(&line)
    }

    async fn send(
        &self,
        out: &mut Outcome,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        out.ops.push(self.line(&method, &url, body));
        self.client
            .send(method, &url, body, OPERATION)
            .await
            .map_err(|e| e.to_string())
    }

    fn refused(&self, reply: &Reply) -> String {
        self.client.status_error(reply, OPERATION).to_string()
    }

    /// The id of a linked resource.
    async fn resolve(
        &self,
        out: &mut Outcome,
        endpoint: &str,
        target: &Target,
    ) -> Result<String, String> {
        let (attr, value) = match target {
            Target::Id(id) => return Ok(id.clone()),
            Target::Lookup { attr, value } => (attr, value),
        };
        let key = (endpoint.to_lowercase(), attr.to_lowercase(), value.clone());
        if let Some(id) = self.lookups.lock().ok().and_then(|l| l.get(&key).cloned()) {
            return Ok(id);
        }
        let id = self
            .find(out, endpoint, attr, value)
            .await?
            .ok_or_else(|| format!("no resource of {endpoint} has {attr} {}", quoted(value)))?;
        if let Ok(mut l) = self.lookups.lock() {
            l.insert(key, id.clone());
        }
        Ok(id)
    }

    /// The id of the one resource whose `attr` is `value` (`None`: none).
    async fn find(
        &self,
        out: &mut Outcome,
        endpoint: &str,
        attr: &str,
        value: &str,
    ) -> Result<Option<String>, String> {
        let filter = format!("{attr} eq {}", quoted(value));
        let url = self.client.url(
            &[endpoint],
            &[("filter", filter.as_str()), ("attributes", "id")],
        );
        let reply = self.send(out, Method::GET, url, None).await?;
        if !reply.ok() {
            return Err(self.refused(&reply));
        }
        let v = self.client.parse(&reply).map_err(|e| e.to_string())?;
        let found: Vec<String> = v
            .get("Resources")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.get("id").and_then(scalar))
                    .collect()
            })
            .unwrap_or_default();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next()),
            n => Err(format!(
                "{n} resources of {endpoint} have {attr} {}: cannot tell which one",
                quoted(value)
            )),
        }
    }

    /// Applies the attributes of `plan` to an existing resource (PATCH, or GET + PUT).
    async fn modify(
        &self,
        out: &mut Outcome,
        plan: &Plan,
        id: &str,
        ops: &[Value],
    ) -> Result<(), String> {
        if ops.is_empty() {
            return Ok(());
        }
        let url = self.client.url(&[&plan.endpoint, id], &[]);
        if self.service.patch {
            let body = json!({"schemas": [PATCH_OP], "Operations": ops});
            let reply = self.send(out, Method::PATCH, url, Some(&body)).await?;
            return if reply.ok() {
                Ok(())
            } else {
                Err(self.refused(&reply))
            };
        }
        // No PATCH: read the resource, apply the changes, write it whole.
        let reply = self.send(out, Method::GET, url.clone(), None).await?;
        if !reply.ok() {
            return Err(self.refused(&reply));
        }
        let Value::Object(mut current) = self.client.parse(&reply).map_err(|e| e.to_string())?
        else {
            return Err(format!(
                "{}: the resource is not a JSON object",
                reply.request
            ));
        };
        current.remove("meta");
        let rt = self.service.catalog.resource_type(&plan.endpoint);
        let planner = Planner {
            catalog: &self.service.catalog,
        };
        for p in &plan.removes {
            remove(&mut current, p, planner.multi(rt, p));
        }
        for (k, v) in &plan.body {
            if k == "schemas" {
                continue;
            }
            let existing = current.keys().find(|x| x.eq_ignore_ascii_case(k)).cloned();
            match (existing, v) {
                (Some(e), Value::Object(new))
                    if k.len() > 4 && k[..4].eq_ignore_ascii_case("urn:") =>
                {
                    if let Some(Value::Object(old)) = current.get_mut(&e) {
                        for (a, x) in new {
                            old.insert(a.clone(), x.clone());
                        }
                    }
                }
                (Some(e), Value::Object(new)) => {
                    if let Some(Value::Object(old)) = current.get_mut(&e) {
                        for (a, x) in new {
                            old.insert(a.clone(), x.clone());
                        }
                    } else {
                        current.insert(e, v.clone());
                    }
                }
                (Some(e), _) => {
                    current.insert(e, v.clone());
                }
                (None, _) => {
                    current.insert(k.clone(), v.clone());
                }
            }
            // A URN section must be listed in schemas.
            if k.len() > 4 && k[..4].eq_ignore_ascii_case("urn:") {
                let listed = current
                    .get("schemas")
                    .and_then(Value::as_array)
                    .is_some_and(|a| {
                        a.iter()
                            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(k)))
                    });
                if !listed && let Some(Value::Array(a)) = current.get_mut("schemas") {
                    a.push(Value::String(k.clone()));
                }
            }
        }
        let body = Value::Object(current);
        let reply = self.send(out, Method::PUT, url, Some(&body)).await?;
        if reply.ok() {
            Ok(())
        } else {
            Err(self.refused(&reply))
        }
    }

    /// The PATCH operations that set every attribute of an Added order's body.
    fn replace_all(body: &Map<String, Value>) -> Vec<Value> {
        body.iter()
            .filter(|(k, _)| k.as_str() != "schemas")
            .map(|(k, v)| json!({"op": "replace", "path": k, "value": v}))
            .collect()
    }

    /// The membership and attribute links of an order.
    async fn links(&self, out: &mut Outcome, plan: &Plan, id: &str) -> Result<usize, String> {
        let mut done = 0;
        for link in &plan.links {
            let (endpoint, lookup_in) = match &link.via {
                Via::GroupMembers => (plan.groups_endpoint.as_str(), plan.groups_endpoint.as_str()),
                Via::Own(_) => (plan.endpoint.as_str(), plan.users_endpoint.as_str()),
            };
            let target = self.resolve(out, lookup_in, &link.target).await?;
            let (resource, attr, member) = match &link.via {
                Via::GroupMembers => (target.as_str(), "members", id),
                Via::Own(attr) => (id, attr.as_str(), target.as_str()),
            };
            let op = if link.add {
                json!({"op": "add", "path": attr, "value": [{"value": member}]})
            } else {
                json!({"op": "remove", "path": format!("{attr}[value eq {}]", quoted(member))})
            };
            let body = json!({"schemas": [PATCH_OP], "Operations": [op]});
            let url = self.client.url(&[endpoint, resource], &[]);
            let reply = self.send(out, Method::PATCH, url, Some(&body)).await?;
            let gone = !link.add
                && reply.status == 400
                && reply.detail().to_ascii_lowercase().contains("notarget");
            if !reply.ok() && !gone {
                return Err(self.refused(&reply));
            }
            done += 1;
        }
        Ok(done)
    }

    /// Runs one order.
    async fn execute(&self, plan: &Plan) -> Outcome {
        let mut out = Outcome::default();
        let result = match plan.change {
            ChangeType::Added => self.create(&mut out, plan).await,
            ChangeType::Modified => self.update(&mut out, plan).await,
            ChangeType::Deleted => self.delete(&mut out, plan).await,
        };
        match result {
            Ok(m) => {
                out.ok = true;
                out.message = m;
                out
            }
            Err(m) => out.fail(m),
        }
    }

    async fn create(&self, out: &mut Outcome, plan: &Plan) -> Result<String, String> {
        let url = self.client.url(&[&plan.endpoint], &[]);
        let body = Value::Object(plan.body.clone());
        let reply = self.send(out, Method::POST, url, Some(&body)).await?;
        let (id, how) = if reply.ok() {
            let v = self.client.parse(&reply).map_err(|e| e.to_string())?;
            let id = v.get("id").and_then(scalar).ok_or_else(|| {
                format!(
                    "{}: the service created the resource but sent back no id",
                    reply.request
                )
            })?;
            let how = format!("created {} {id} ({})", plan.endpoint, reply.status);
            (id, how)
        } else if reply.status == 409 {
            let Some((attr, value)) = &plan.natural else {
                return Err(format!(
                    "{} (409: it exists already, and the order has no userName, displayName or externalId to find it by)",
                    self.refused(&reply)
                ));
            };
            let Some(id) = self.find(out, &plan.endpoint, attr, value).await? else {
                return Err(format!(
                    "{} (409, but no resource of {} has {attr} {})",
                    self.refused(&reply),
                    plan.endpoint,
                    quoted(value)
                ));
            };
            self.modify(out, plan, &id, &Run::replace_all(&plan.body))
                .await?;
            (
                id.clone(),
                format!(
                    "{} {id} existed already (409): found by {attr} and updated",
                    plan.endpoint
                ),
            )
        } else {
            return Err(self.refused(&reply));
        };
        let links = self
            .links(out, plan, &id)
            .await
            .map_err(|m| format!("{how}, but a link failed: {m}"))?;
        Ok(with_links(how, links))
    }

    async fn update(&self, out: &mut Outcome, plan: &Plan) -> Result<String, String> {
        let id = plan.id.as_deref().unwrap_or_default();
        self.modify(out, plan, id, &plan.ops).await?;
        let how = if plan.ops.is_empty() {
            format!("{} {id}: no attribute to change", plan.endpoint)
        } else {
            format!("modified {} {id}", plan.endpoint)
        };
        let links = self
            .links(out, plan, id)
            .await
            .map_err(|m| format!("{how}, but a link failed: {m}"))?;
        Ok(with_links(how, links))
    }

    async fn delete(&self, out: &mut Outcome, plan: &Plan) -> Result<String, String> {
        let id = plan.id.as_deref().unwrap_or_default();
        let url = self.client.url(&[&plan.endpoint, id], &[]);
        let reply = self.send(out, Method::DELETE, url, None).await?;
        if reply.ok() {
            Ok(format!("deleted {} {id} ({})", plan.endpoint, reply.status))
        } else if reply.status == 404 {
            Ok(format!("{} {id} was already gone (404)", plan.endpoint))
        } else {
            Err(self.refused(&reply))
        }
    }
}

fn with_links(how: String, links: usize) -> String {
    match links {
        0 => how,
        1 => format!("{how}; 1 link updated"),
        n => format!("{how}; {n} links updated"),
    }
}

/// The requests of a plan as a dry run shows them.
fn dry_lines(client: &Client, plan: &Plan, service: &Service) -> Vec<String> {
    let line = |method: &str, url: reqwest::Url, body: Option<&Value>| {
        let mut l = format!("{method} {}", Client::show(&url));
        if let Some(b) = body {
            l.push(' ');
            l.push_str(&shown(b));
        }
        client.cx.redact(&l)
    };
    let mut out = Vec::new();
    let new_id = "<id of the new resource>".to_string();
    let id = match plan.change {
        ChangeType::Added => {
            out.push(line(
                "POST",
                client.url(&[&plan.endpoint], &[]),
                Some(&Value::Object(plan.body.clone())),
            ));
            new_id
        }
        ChangeType::Modified => {
            let id = plan.id.clone().unwrap_or_default();
            if !plan.ops.is_empty() {
                let url = client.url(&[&plan.endpoint, &id], &[]);
                if service.patch {
                    out.push(line(
                        "PATCH",
                        url,
                        Some(&json!({"schemas": [PATCH_OP], "Operations": plan.ops})),
                    ));
                } else {
                    out.push(line("GET", url.clone(), None));
                    out.push(format!(
                        "PUT {} (the resource read, with {} changed)",
                        Client::show(&url),
                        plan.ops.len()
                    ));
                }
            }
            id
        }
        ChangeType::Deleted => {
            let id = plan.id.clone().unwrap_or_default();
            out.push(line(
                "DELETE",
                client.url(&[&plan.endpoint, &id], &[]),
                None,
            ));
            id
        }
    };
    for link in &plan.links {
        let (endpoint, lookup_in) = match &link.via {
            Via::GroupMembers => (&plan.groups_endpoint, &plan.groups_endpoint),
            Via::Own(_) => (&plan.endpoint, &plan.users_endpoint),
        };
        if let Target::Lookup { attr, value } = &link.target {
            let filter = format!("{attr} eq {}", quoted(value));
            out.push(line(
                "GET",
                client.url(&[lookup_in], &[("filter", &filter), ("attributes", "id")]),
                None,
            ));
        }
        let target = link.target.show();
        let (resource, attr, member) = match &link.via {
            Via::GroupMembers => (target.clone(), "members".to_string(), id.clone()),
            Via::Own(a) => (id.clone(), a.clone(), target.clone()),
        };
        let op = if link.add {
            json!({"op": "add", "path": attr, "value": [{"value": member}]})
        } else {
            json!({"op": "remove", "path": format!("{attr}[value eq {}]", quoted(&member))})
        };
        out.push(line(
            "PATCH",
            client.url(&[endpoint, &resource], &[]),
            Some(&json!({"schemas": [PATCH_OP], "Operations": [op]})),
        ));
    }
    out
}

/// Runs the orders (or, in a dry run, only plans them).
pub async fn run(
    client: &Client,
    settings: &ScimSettings,
    request: &FulfillRequest<'_>,
) -> Result<Vec<OrderResult>, PackageError> {
    let orders = request.orders;
    let result = |i: usize, o: Outcome| OrderResult {
        index: i,
        id: orders[i].id.clone(),
        state: if o.ok {
            OrderState::Executed
        } else {
            OrderState::Errored
        },
        message: client.cx.redact(&o.message),
        operations: o.ops,
    };
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let service = if request.dry_run {
        Service::assumed(settings)
    } else {
        request.progress.phase(&format!(
            "reading the service's configuration at {}",
            client.cx.system
        ));
        Service::discover(client, settings).await?
    };
    let planner = Planner {
        catalog: &service.catalog,
    };
    let plans: Vec<Result<Plan, String>> = orders.iter().map(|o| planner.plan(o)).collect();
    if request.dry_run {
        let bulk_note = service.bulk.map(|(max, _)| {
            format!(
                "; with ServiceSupportBulk these go in /Bulk requests of up to {max} operations"
            )
        });
        return Ok(plans
            .into_iter()
            .enumerate()
            .map(|(i, p)| match p {
                Ok(p) => result(
                    i,
                    Outcome {
                        ok: true,
                        message: format!(
                            "dry run: nothing sent{}",
                            bulk_note.clone().unwrap_or_default()
                        ),
                        ops: dry_lines(client, &p, &service),
                    },
                ),
                Err(m) => result(i, Outcome::default().fail(m)),
            })
            .collect());
    }
    let run = Run {
        client,
        service: &service,
        lookups: Mutex::new(HashMap::new()),
    };
    let mut results: Vec<Option<OrderResult>> = (0..orders.len()).map(|_| None).collect();
    let mut ready: Vec<(usize, Plan)> = Vec::new();
    for (i, p) in plans.into_iter().enumerate() {
        match p {
            Ok(p) => ready.push((i, p)),
            Err(m) => results[i] = Some(result(i, Outcome::default().fail(m))),
        }
    }
    request.progress.phase(&format!(
        "sending {} orders to {}{}",
        ready.len(),
        client.cx.system,
        match service.bulk {
            Some((max, _)) => format!(" in /Bulk requests of up to {max} operations"),
            None => String::new(),
        }
    ));
    let individual = match service.bulk {
        Some((max, payload)) => {
            let (outcomes, rest) = bulk(&run, ready, max, payload).await;
            for (i, o) in outcomes {
                request.progress.rows(&client.cx.connection, 1);
                results[i] = Some(result(i, o));
            }
            rest
        }
        None => ready,
    };
    // Without bulk: batches of orders that touch distinct resources, concurrently.
    let mut batches: Vec<Vec<(usize, Plan)>> = Vec::new();
    let mut batch: Vec<(usize, Plan)> = Vec::new();
    let mut touched: HashSet<String> = HashSet::new();
    for (i, p) in individual {
        if p.keys.iter().any(|k| touched.contains(k)) {
            batches.push(std::mem::take(&mut batch));
            touched.clear();
        }
        touched.extend(p.keys.iter().cloned());
        batch.push((i, p));
    }
    batches.push(batch);
    for batch in batches {
        let run = &run;
        let mut stream = futures_util::stream::iter(batch)
            .map(|(i, p)| async move { (i, run.execute(&p).await) })
            .buffer_unordered(settings.concurrency);
        while let Some((i, o)) = stream.next().await {
            request.progress.rows(&client.cx.connection, 1);
            results[i] = Some(result(i, o));
        }
    }
    Ok(results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| OrderResult {
                index: i,
                id: orders[i].id.clone(),
                state: OrderState::Errored,
                message: "not run (a bug: no result was recorded)".into(),
                operations: Vec::new(),
            })
        })
        .collect())
}

/// One operation of a `/Bulk` request, and whose it is.
struct BulkOp {
    /// What the operation is in the order: the resource's own, or a link.
    own: bool,
    method: &'static str,
    value: Value,
    line: String,
}

/// Sends the orders in `/Bulk` requests. Returns the outcomes, and the orders to send one by
/// one (a create answered 409, orders needing a lookup the bulk could not do, a service that
/// refused bulk).
async fn bulk(
    run: &Run<'_>,
    plans: Vec<(usize, Plan)>,
    max: usize,
    payload: Option<usize>,
) -> (Vec<(usize, Outcome)>, Vec<(usize, Plan)>) {
    let client = run.client;
    let mut outcomes = Vec::new();
    let mut rest = Vec::new();
    // Lookups first (a link by key property), so that the bulk holds only ids.
    let mut plans_ok: Vec<(usize, Plan, Vec<String>)> = Vec::new();
    for (i, plan) in plans {
        let mut out = Outcome::default();
        let mut ids = Vec::new();
        let mut failed = None;
        for link in &plan.links {
            let lookup_in = match link.via {
                Via::GroupMembers => &plan.groups_endpoint,
                Via::Own(_) => &plan.users_endpoint,
            };
            match run.resolve(&mut out, lookup_in, &link.target).await {
                Ok(id) => ids.push(id),
                Err(m) => {
                    failed = Some(m);
                    break;
                }
            }
        }
        if let Some(m) = failed {
            outcomes.push((i, out.fail(m)));
        } else if plan.change == ChangeType::Modified && !run.service.patch {
            // GET + PUT cannot go in a bulk.
            rest.push((i, plan));
        } else {
            plans_ok.push((i, plan, ids));
        }
    }
    let base_path = client.base().path().trim_end_matches('/').to_string();
    let rel = |segments: &[&str]| {
        let full = client.url(segments, &[]);
        let p = full.path();
        p.strip_prefix(&base_path).unwrap_or(p).to_string()
    };
    // Each order's operations.
    let mut per_order: Vec<(usize, Plan, Vec<BulkOp>)> = Vec::new();
    for (i, plan, ids) in plans_ok {
        let mut ops = Vec::new();
        let bulk_id = format!("order{i}");
        let (own_path, member_ref) = match plan.change {
            ChangeType::Added => (rel(&[&plan.endpoint]), format!("bulkId:{bulk_id}")),
            _ => {
                let id = plan.id.clone().unwrap_or_default();
                (rel(&[&plan.endpoint, &id]), id)
            }
        };
        let mut push = |own: bool,
                        method: &'static str,
                        path: String,
                        data: Option<Value>,
                        bid: Option<&str>| {
            let mut v = json!({"method": method, "path": path});
            if let Some(b) = bid {
                v["bulkId"] = Value::String(b.to_string());
            }
            if let Some(d) = data {
                v["data"] = d;
            }
            let line = client.cx.redact(&format!("/Bulk {}", shown(&v)));
            ops.push(BulkOp {
                own,
                method,
                value: v,
                line,
            });
        };
        match plan.change {
            ChangeType::Added => push(
                true,
                "POST",
                own_path.clone(),
                Some(Value::Object(plan.body.clone())),
                Some(&bulk_id),
            ),
            ChangeType::Modified => {
                if !plan.ops.is_empty() {
                    push(
                        true,
                        "PATCH",
                        own_path.clone(),
                        Some(json!({"schemas": [PATCH_OP], "Operations": plan.ops})),
                        None,
                    );
                }
            }
            ChangeType::Deleted => push(true, "DELETE", own_path.clone(), None, None),
        }
        for (link, target) in plan.links.iter().zip(&ids) {
            let (path, attr, member) = match &link.via {
                Via::GroupMembers => (
                    rel(&[&plan.groups_endpoint, target]),
                    "members".to_string(),
                    member_ref.clone(),
                ),
                Via::Own(a) => (own_path.clone(), a.clone(), target.clone()),
            };
            let op = if link.add {
                json!({"op": "add", "path": attr, "value": [{"value": member}]})
            } else {
                json!({"op": "remove", "path": format!("{attr}[value eq {}]", quoted(&member))})
            };
            push(
                false,
                "PATCH",
                path,
                Some(json!({"schemas": [PATCH_OP], "Operations": [op]})),
                None,
            );
        }
        if ops.is_empty() || ops.len() > max {
            // Nothing to bulk, or more than one request may hold: one by one.
            rest.push((i, plan));
        } else {
            per_order.push((i, plan, ops));
        }
    }
    // Pack orders into requests.
    let limit = payload.map(|p| p.saturating_sub(1024).max(1024));
    let mut chunks: Vec<Vec<(usize, Plan, Vec<BulkOp>)>> = Vec::new();
    let mut chunk: Vec<(usize, Plan, Vec<BulkOp>)> = Vec::new();
    let (mut n_ops, mut n_bytes) = (0usize, 0usize);
    for (i, plan, ops) in per_order {
        let bytes: usize = ops.iter().map(|o| o.value.to_string().len() + 1).sum();
        let full = n_ops + ops.len() > max || limit.is_some_and(|l| n_bytes + bytes > l);
        if full && !chunk.is_empty() {
            chunks.push(std::mem::take(&mut chunk));
            n_ops = 0;
            n_bytes = 0;
        }
        n_ops += ops.len();
        n_bytes += bytes;
        chunk.push((i, plan, ops));
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    let url = client.url(&["Bulk"], &[]);
    for chunk in chunks {
        let operations: Vec<Value> = chunk
            .iter()
            .flat_map(|(_, _, ops)| ops.iter().map(|o| o.value.clone()))
            .collect();
        let count = operations.len();
        let body = json!({"schemas": [BULK_REQUEST], "Operations": operations});
        let reply = client
            .send(Method::POST, &url, Some(&body), OPERATION)
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                let m = e.to_string();
                for (i, _, ops) in chunk {
                    let o = Outcome {
                        ops: ops.into_iter().map(|x| x.line).collect(),
                        ..Outcome::default()
                    };
                    outcomes.push((i, o.fail(m.clone())));
                }
                continue;
            }
        };
        if !reply.ok() {
            if matches!(reply.status, 404 | 405 | 413 | 501) {
                // The service does not take this bulk: one by one.
                rest.extend(chunk.into_iter().map(|(i, p, _)| (i, p)));
                continue;
            }
            let m = run.refused(&reply);
            for (i, _, ops) in chunk {
                let o = Outcome {
                    ops: ops.into_iter().map(|x| x.line).collect(),
                    ..Outcome::default()
                };
                outcomes.push((i, o.fail(m.clone())));
            }
            continue;
        }
        let answers: Vec<Value> = client
            .parse(&reply)
            .ok()
            .and_then(|v| v.get("Operations").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        if answers.len() != count {
            // Cannot tell which answer is whose: each order again, alone (they are idempotent).
            rest.extend(chunk.into_iter().map(|(i, p, _)| (i, p)));
            continue;
        }
        let mut answers = answers.into_iter();
        for (i, plan, ops) in chunk {
            let mut o = Outcome::default();
            let mut error: Option<String> = None;
            let mut redo = false;
            let mut created: Option<String> = None;
            let mut links = 0;
            for op in ops {
                let a = answers.next().unwrap_or(Value::Null);
                o.ops.push(op.line);
                if error.is_some() || redo {
                    continue;
                }
                let status = a
                    .get("status")
                    .and_then(|s| {
                        s.as_u64()
                            .or_else(|| s.as_str().and_then(|t| t.trim().parse().ok()))
                    })
                    .unwrap_or(0);
                let ok = (200..300).contains(&status);
                if ok {
                    if op.own && op.method == "POST" {
                        created = a.get("location").and_then(Value::as_str).map(|l| {
                            l.trim_end_matches('/')
                                .rsplit('/')
                                .next()
                                .unwrap_or("")
                                .to_string()
                        });
                    }
                    if !op.own {
                        links += 1;
                    }
                    continue;
                }
                if op.own && op.method == "POST" && status == 409 {
                    redo = true;
                } else if op.own && op.method == "DELETE" && status == 404 {
                    // Already gone.
                } else {
                    let detail = a
                        .get("response")
                        .and_then(|r| r.get("detail"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let mut m = format!(
                        "/Bulk: {} {} answered {status}",
                        op.method,
                        op.value.get("path").and_then(Value::as_str).unwrap_or("")
                    );
                    if !detail.is_empty() {
                        m.push_str(": ");
                        m.push_str(detail);
                    }
                    error = Some(m);
                }
            }
            if redo {
                rest.push((i, plan));
                continue;
            }
            match error {
                Some(m) => outcomes.push((i, o.fail(m))),
                None => {
                    let id = created.or_else(|| plan.id.clone()).unwrap_or_default();
                    let how = match plan.change {
                        ChangeType::Added => format!("created {} {id} (/Bulk)", plan.endpoint),
                        ChangeType::Modified if plan.ops.is_empty() => {
                            format!("{} {id}: no attribute to change", plan.endpoint)
                        }
                        ChangeType::Modified => format!("modified {} {id} (/Bulk)", plan.endpoint),
                        ChangeType::Deleted => format!("deleted {} {id} (/Bulk)", plan.endpoint),
                    };
                    o.ok = true;
                    o.message = with_links(how, links);
                    outcomes.push((i, o));
                }
            }
        }
    }
    (outcomes, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ProvisioningOrder, ResourceTypeRef};

    fn order(change: ChangeType, changes: Value, resource: Option<Value>) -> ProvisioningOrder {
        let obj = |v: Value| match v {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        ProvisioningOrder {
            id: None,
            change_type: change,
            resource_type: ResourceTypeRef {
                identifier: "SCIM_User".into(),
                source_entity_type: None,
                target_entity_type: None,
                default_object_class: None,
            },
            owner: None,
            resource: resource.map(obj),
            changes: obj(changes),
        }
    }

    fn plan(o: &ProvisioningOrder) -> Result<Plan, String> {
        let catalog = Catalog::fallback();
        Planner { catalog: &catalog }.plan(o)
    }

    #[test]
    fn regression_modified_and_deleted_orders_go_to_the_resource_types_default_object_class() {
        // The engine carries the mapping's DefaultObjectClass in ResourceType: orders with no
        // objectClass of their own go to that endpoint, not to /Users.
        let with_class = |change, changes: Value, class: Option<&str>| {
            let mut o = order(change, changes, Some(json!({"id": "g-1"})));
            o.resource_type.default_object_class = class.map(str::to_string);
            o
        };
        let m = plan(&with_class(
            ChangeType::Modified,
            json!({"displayName": "staff-2", "members_add": [{"id": "u-1"}]}),
            Some("Groups"),
        ))
        .expect("plan");
        assert_eq!(
            (m.endpoint.as_str(), m.id.as_deref()),
            ("Groups", Some("g-1"))
        );
        assert_eq!(m.links[0].via, Via::Own("members".into()));
        let d = plan(&with_class(ChangeType::Deleted, json!({}), Some("Groups"))).expect("plan");
        assert_eq!(d.endpoint, "Groups");
        // The order's own objectClass wins; none at all is /Users.
        let own = plan(&with_class(
            ChangeType::Deleted,
            json!({"objectClass": "Users"}),
            Some("Groups"),
        ))
        .expect("plan");
        assert_eq!(own.endpoint, "Users");
        let none = plan(&with_class(ChangeType::Deleted, json!({}), None)).expect("plan");
        assert_eq!(none.endpoint, "Users");
    }

    #[test]
    fn added_orders_build_a_scim_body() {
        let p = plan(&order(
            ChangeType::Added,
            json!({
                "objectClass": "Users", "userName": "ada", "name:givenName": "Ada",
                "name.familyName": "Lovelace", "emails:value": ["a@x.org", "b@x.org"],
                "emails:type": "work", "active": "true", "nickName": null, "password": "pw-9",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager:value": "m1",
                "groups_add": [{"id": "g1"}, {"displayName": "staff"}],
            }),
            None,
        ))
        .expect("plan");
        assert_eq!(
            plan_body(&p),
            json!({
                "schemas": [super::super::schema::USER_SCHEMA, ENTERPRISE_SCHEMA],
                "userName": "ada",
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"value": "a@x.org", "type": "work"}, {"value": "b@x.org"}],
                "active": true,
                "password": "pw-9",
                ENTERPRISE_SCHEMA: {"employeeNumber": "42", "manager": {"value": "m1"}},
            })
        );
        assert_eq!(p.natural, Some(("userName".to_string(), "ada".to_string())));
        assert_eq!(p.links.len(), 2);
        assert_eq!(
            p.links[1].target,
            Target::Lookup {
                attr: "displayName".into(),
                value: "staff".into()
            }
        );
        assert_eq!(p.links[0].via, Via::GroupMembers);
        let shown = shown(&Value::Object(p.body.clone()));
        assert!(
            !shown.contains("pw-9") && shown.contains(REDACTED),
            "{shown}"
        );
    }

    fn plan_body(p: &Plan) -> Value {
        Value::Object(p.body.clone())
    }

    #[test]
    fn modified_orders_patch_only_the_changes() {
        let p = plan(&order(
            ChangeType::Modified,
            json!({"name:givenName": "Ada", "title": "", "emails:value": "n@x.org", "password": "s3",
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager:value": "m2",
                   "groups_remove": ["g1"]}),
            Some(json!({"id": "u1", "userName": "ada"})),
        ))
        .expect("plan");
        assert_eq!(p.id.as_deref(), Some("u1"));
        let ops = Value::Array(p.ops.clone());
        assert_eq!(
            ops,
            json!([
                {"op": "replace", "path": "name.givenName", "value": "Ada"},
                {"op": "replace", "path": "password", "value": "s3"},
                {"op": "remove", "path": "title"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m2"},
                {"op": "replace", "path": "emails", "value": [{"value": "n@x.org"}]},
            ])
        );
        let s = shown(&ops);
        assert!(!s.contains("s3"), "{s}");
        assert!(!p.links[0].add);
        // No id: refused before anything is sent.
        let e = plan(&order(
            ChangeType::Modified,
            json!({"title": "x"}),
            Some(json!({"userName": "a"})),
        ))
        .expect_err("no id");
        assert!(e.contains("`id`"), "{e}");
        let e = plan(&order(ChangeType::Deleted, json!({}), None)).expect_err("no id");
        assert!(e.contains("Deleted"), "{e}");
    }

    #[test]
    fn puts_merge_into_the_resource_read() {
        let mut r = match json!({"id": "u1", "name": {"givenName": "A", "familyName": "L"}, "title": "t"})
        {
            Value::Object(o) => o,
            _ => unreachable!(),
        };
        remove(
            &mut r,
            &Place {
                urn: None,
                attr: "Title".into(),
                sub: None,
            },
            false,
        );
        remove(
            &mut r,
            &Place {
                urn: None,
                attr: "name".into(),
                sub: Some("givenName".into()),
            },
            false,
        );
        assert_eq!(
            Value::Object(r),
            json!({"id": "u1", "name": {"familyName": "L"}})
        );
    }

    #[test]
    fn targets_are_ids_or_one_key_property() {
        assert_eq!(
            targets(&json!(["a", {"value": "b"}, {"$ref": "https://h/v2/Groups/c"}, {"displayName": "d"}])).expect("targets"),
            vec![
                Target::Id("a".into()),
                Target::Id("b".into()),
                Target::Id("c".into()),
                Target::Lookup { attr: "displayName".into(), value: "d".into() },
            ]
        );
        assert!(targets(&json!([{"a": 1, "b": 2}])).is_err());
        assert!(targets(&json!([true])).is_err());
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
