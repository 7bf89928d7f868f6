//! Fulfill: provisioning orders -> LDAP add, modify, modrdn and delete operations.
//!
//! How an order reads (SPEC §6):
//! - The entry's DN is the `dn` property: `Changes.dn` for `Added`; `Resource.dn` for
//!   `Modified` and `Deleted` (a `Modified` order whose `Changes.dn` differs renames the entry
//!   with modrdn, with a new superior when the parent changes, before modifying it).
//! - Other properties are attribute names. `Added` sends every non-empty one; `Modified`
//!   replaces each changed one (null or `[]` removes it); `<attribute>_add` and
//!   `<attribute>_remove` list values to add or remove (group members): strings, or objects
//!   holding the linked resource's `dn`.
//! - objectClass of an added entry: `Changes.objectClass` when the order carries one (the
//!   engine puts the LdapResourceTypeMapping's `DefaultObjectClass` there), else the
//!   connection's `DefaultObjectClass` setting; neither is an error for that order. The RDN's
//!   attribute value is added when the order lacks it.
//! - Passwords: a `userPassword` (or `password`) property is sent only when the
//!   `IsLdapPasswordReset` setting is true, or the order's `Changes.IsLdapPasswordReset` is
//!   true; its value never appears in any text (`userPassword=**REDACTED**`).
//! - Binary attributes (`jpegPhoto`, certificates, `;binary`) take base64 values.
//!
//! - `memberOf_add` / `memberOf_remove` (and `memberOf` in an Added order) change the groups:
//!   each group named gets (or loses) the entry's DN in its `member` attribute, after the
//!   entry's own operations (OpenLDAP's memberOf overlay and Active Directory compute `memberOf`
//!   from `member`; it cannot be written on the person).
//!
//! Idempotent: an add whose entry exists with the same values, a delete of an entry already
//! gone, member values already added or already removed, a rename already done: all are
//! Executed. Each order gets one result with the LDAP result code and message; a failing
//! order is Errored and the others go on. Orders are sent several at a time, but orders
//! that touch the same DN (as entry or as value) keep their order.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use futures_util::StreamExt as _;
use ldap3::{Ldap, LdapResult, Mod, SearchOptions};
use serde_json::Value;

use super::conn::{self, Cx, describe_result};
use super::dn;
use super::entry;
use super::settings::LdapSettings;
use crate::api::{
    ChangeType, Environment, FulfillRequest, OrderResult, OrderState, PackageError,
    ProvisioningOrder,
};

/// The navigation property on a person that lists its groups; changes to it go to the groups.
const MEMBER_OF: &str = "memberOf";
/// The groups' attribute listing their members (groupOfNames).
const MEMBER_ATTRIBUTE: &str = "member";

/// Orders in flight at once.
const CONCURRENCY: usize = 16;

/// Attributes whose values are binary (base64 in orders).
const BINARY_ATTRIBUTES: &[&str] = &[
    "jpegPhoto",
    "photo",
    "audio",
    "userCertificate",
    "cACertificate",
    "authorityRevocationList",
    "certificateRevocationList",
    "crossCertificatePair",
    "userSMIMECertificate",
    "userPKCS12",
    "thumbnailPhoto",
    "objectGUID",
    "objectSid",
];

const PASSWORD_ATTRIBUTE: &str = "userPassword";

/// One attribute and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attr {
    name: String,
    values: Vec<Vec<u8>>,
    secret: bool,
    binary: bool,
}

impl Attr {
    fn show(&self) -> String {
        if self.values.is_empty() {
            return format!("{} (remove all values)", self.name);
        }
        self.values
            .iter()
            .map(|v| format!("{}={}", self.name, self.show_value(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn show_value(&self, v: &[u8]) -> String {
        if self.secret {
            "**REDACTED**".to_string()
        } else if self.binary {
            format!("<{} bytes>", v.len())
        } else {
            String::from_utf8_lossy(v).into_owned()
        }
    }

    fn set(&self) -> HashSet<Vec<u8>> {
        self.values.iter().cloned().collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Replace,
    Add,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    kind: Kind,
    attr: Attr,
}

/// One LDAP operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Add {
        dn: String,
        attrs: Vec<Attr>,
    },
    Modify {
        dn: String,
        changes: Vec<Change>,
    },
    Rename {
        dn: String,
        new_rdn: String,
        new_superior: Option<String>,
    },
    Delete {
        dn: String,
    },
}

impl Op {
    /// The operation as results show it (never a password).
    fn show(&self) -> String {
        match self {
            Op::Add { dn, attrs } => format!(
                "add {dn}: {}",
                attrs.iter().map(Attr::show).collect::<Vec<_>>().join(", ")
            ),
            Op::Modify { dn, changes } => format!(
                "modify {dn}: {}",
                changes
                    .iter()
                    .map(|c| {
                        let kind = match c.kind {
                            Kind::Replace => "replace",
                            Kind::Add => "add",
                            Kind::Delete => "delete",
                        };
                        format!("{kind} {}", c.attr.show())
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Op::Rename {
                dn,
                new_rdn,
                new_superior,
            } => match new_superior {
                Some(s) => {
                    format!("modrdn {dn}: newrdn={new_rdn}, deleteoldrdn=1, newsuperior={s}")
                }
                None => format!("modrdn {dn}: newrdn={new_rdn}, deleteoldrdn=1"),
            },
            Op::Delete { dn } => format!("delete {dn}"),
        }
    }
}

/// What one order turns into.
#[derive(Debug, Clone, Default)]
struct Plan {
    ops: Vec<Op>,
    notes: Vec<String>,
    /// Normalized DNs the order touches (its entry, old and new, and DN values).
    dns: Vec<String>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "TRUE" } else { "FALSE" }.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => {
            let dn = o
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("dn"))
                .map(|(_, v)| v);
            match (dn, o.len()) {
                (Some(v), _) => text_of(v),
                (None, 1) => o.values().next().and_then(text_of),
                _ => None,
            }
        }
        Value::Array(_) => None,
    }
}

/// The values of a property: one, several (array), none (null, empty).
fn values_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(text_of).collect(),
        other => text_of(other).into_iter().collect(),
    }
}

fn get_ci<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn is_password(key: &str) -> bool {
    key.eq_ignore_ascii_case(PASSWORD_ATTRIBUTE) || key.eq_ignore_ascii_case("password")
}

fn is_binary(attr: &str) -> bool {
    attr.to_ascii_lowercase().contains(";binary")
        || BINARY_ATTRIBUTES
            .iter()
            .any(|b| b.eq_ignore_ascii_case(attr))
}

/// Builds an attribute from a property's values.
fn attr(name: &str, values: Vec<String>) -> Result<Attr, String> {
    let secret = is_password(name);
    let binary = is_binary(name);
    let name = if secret {
        PASSWORD_ATTRIBUTE.to_string()
    } else {
        name.to_string()
    };
    let mut bytes = Vec::with_capacity(values.len());
    for v in values {
        if binary {
            let b = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .map_err(|_| format!("{name} is binary: its values must be base64"))?;
            bytes.push(b);
        } else {
            bytes.push(v.into_bytes());
        }
    }
    Ok(Attr {
        name,
        values: bytes,
        secret,
        binary,
    })
}

/// Keys of `Changes` that are not attributes.
fn is_control_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("dn") || key.eq_ignore_ascii_case("IsLdapPasswordReset")
}

/// Turns an order into operations (no I/O).
fn plan(order: &ProvisioningOrder, settings: &LdapSettings) -> Result<Plan, String> {
    let changes = &order.changes;
    let empty = serde_json::Map::new();
    let resource = order.resource.as_ref().unwrap_or(&empty);
    let reset = settings.password_reset
        || get_ci(changes, "IsLdapPasswordReset").is_some_and(|v| {
            v.as_bool() == Some(true) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
        });
    let dn_in = |map: &serde_json::Map<String, Value>| {
        get_ci(map, "dn")
            .and_then(text_of)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let mut p = Plan::default();
    // Plain attributes, additions and removals, in the order of the map (sorted by name).
    let mut plain: Vec<Attr> = Vec::new();
    let mut adds: Vec<Attr> = Vec::new();
    let mut removes: Vec<Attr> = Vec::new();
    let mut object_class: Option<Attr> = None;
    // `memberOf` is the groups' side of `member` (an OpenLDAP overlay computes it, Active
    // Directory a back link): membership changes on it are written to the groups.
    let mut join: Vec<String> = Vec::new();
    let mut leave: Vec<String> = Vec::new();
    for (key, value) in changes {
        if is_control_key(key) {
            continue;
        }
        let base = key
            .strip_suffix("_add")
            .or_else(|| key.strip_suffix("_remove"))
            .unwrap_or(key);
        if base.eq_ignore_ascii_case(MEMBER_OF) {
            let groups = values_of(value);
            if key.ends_with("_remove") {
                leave.extend(groups);
            } else if key.ends_with("_add") || order.change_type == ChangeType::Added {
                join.extend(groups);
            } else {
                return Err(format!(
                    "{key} cannot be replaced as a whole: send {MEMBER_OF}_add and {MEMBER_OF}_remove (the groups' {MEMBER_ATTRIBUTE} values are changed)"
                ));
            }
            continue;
        }
        if let Some(a) = key.strip_suffix("_add") {
            let a = attr(a, values_of(value))?;
            p.dns.extend(
                a.values
                    .iter()
                    .map(|v| dn::normalize(&String::from_utf8_lossy(v))),
            );
            adds.push(a);
            continue;
        }
        if let Some(a) = key.strip_suffix("_remove") {
            let a = attr(a, values_of(value))?;
            p.dns.extend(
                a.values
                    .iter()
                    .map(|v| dn::normalize(&String::from_utf8_lossy(v))),
            );
            removes.push(a);
            continue;
        }
        let a = attr(key, values_of(value))?;
        if a.secret && !reset {
            p.notes.push(format!(
                "{PASSWORD_ATTRIBUTE} not sent: IsLdapPasswordReset is off (set it in the connection's settings or the order)"
            ));
            continue;
        }
        if key.eq_ignore_ascii_case("objectClass") {
            object_class = Some(a);
        } else {
            plain.push(a);
        }
    }
    match order.change_type {
        ChangeType::Added => {
            let target = dn_in(changes)
                .or_else(|| dn_in(resource))
                .ok_or("an Added order needs the entry's DN: a `dn` property in Changes")?;
            p.dns.push(dn::normalize(&target));
            let classes = match object_class {
                Some(c) if !c.values.is_empty() => c,
                _ if !settings.default_object_class.is_empty() => {
                    attr("objectClass", settings.default_object_class.clone())?
                }
                _ => {
                    return Err("no objectClass for the new entry: send objectClass in the order's Changes or set DefaultObjectClass in the connection's settings".into());
                }
            };
            let mut attrs = vec![classes];
            for a in plain.into_iter().chain(adds) {
                if a.values.is_empty() {
                    continue;
                }
                match attrs
                    .iter_mut()
                    .find(|x| x.name.eq_ignore_ascii_case(&a.name))
                {
                    Some(x) => {
                        for v in a.values {
                            if !x.values.contains(&v) {
                                x.values.push(v);
                            }
                        }
                    }
                    None => attrs.push(a),
                }
            }
            // The RDN's values must be in the entry.
            let (rdn, _) = dn::split(&target);
            for (name, value) in dn::rdn_values(rdn) {
                match attrs
                    .iter_mut()
                    .find(|x| x.name.eq_ignore_ascii_case(&name))
                {
                    Some(x) => {
                        let has = x.values.iter().any(|v| {
                            String::from_utf8_lossy(v).to_lowercase() == value.to_lowercase()
                        });
                        if !has {
                            x.values.insert(0, value.into_bytes());
                        }
                    }
                    None => attrs.push(attr(&name, vec![value])?),
                }
            }
            p.ops.push(Op::Add { dn: target, attrs });
        }
        ChangeType::Modified => {
            let old = dn_in(resource)
                .or_else(|| dn_in(changes))
                .ok_or("a Modified order needs the entry's DN: a `dn` property in Resource")?;
            p.dns.push(dn::normalize(&old));
            let mut target = old.clone();
            if let Some(new) = dn_in(changes)
                && !dn::same(&new, &old)
            {
                let (new_rdn, new_parent) = dn::split(&new);
                let (_, old_parent) = dn::split(&old);
                p.ops.push(Op::Rename {
                    dn: old.clone(),
                    new_rdn: new_rdn.to_string(),
                    new_superior: (!dn::same(new_parent, old_parent))
                        .then(|| new_parent.to_string()),
                });
                p.dns.push(dn::normalize(&new));
                target = new;
            }
            let mut list: Vec<Change> = Vec::new();
            if let Some(c) = object_class {
                list.push(Change {
                    kind: Kind::Replace,
                    attr: c,
                });
            }
            list.extend(plain.into_iter().map(|a| Change {
                kind: Kind::Replace,
                attr: a,
            }));
            list.extend(
                adds.into_iter()
                    .filter(|a| !a.values.is_empty())
                    .map(|a| Change {
                        kind: Kind::Add,
                        attr: a,
                    }),
            );
            list.extend(
                removes
                    .into_iter()
                    .filter(|a| !a.values.is_empty())
                    .map(|a| Change {
                        kind: Kind::Delete,
                        attr: a,
                    }),
            );
            if !list.is_empty() {
                p.ops.push(Op::Modify {
                    dn: target,
                    changes: list,
                });
            }
        }
        ChangeType::Deleted => {
            let target = dn_in(resource)
                .or_else(|| dn_in(changes))
                .ok_or("a Deleted order needs the entry's DN: a `dn` property in Resource")?;
            p.dns.push(dn::normalize(&target));
            p.ops.push(Op::Delete { dn: target });
        }
    }
    if !join.is_empty() || !leave.is_empty() {
        // The entry's DN once this order's own operations are done.
        let entry = match p.ops.iter().rev().find_map(|op| match op {
            Op::Add { dn, .. } | Op::Modify { dn, .. } => Some(dn.clone()),
            Op::Rename { .. } | Op::Delete { .. } => None,
        }) {
            Some(dn) => dn,
            None => dn_in(changes)
                .or_else(|| dn_in(resource))
                .ok_or("a membership change needs the entry's DN: a `dn` property in Resource")?,
        };
        for (groups, kind) in [(join, Kind::Add), (leave, Kind::Delete)] {
            for group in groups {
                p.dns.push(dn::normalize(&group));
                p.ops.push(Op::Modify {
                    dn: group,
                    changes: vec![Change {
                        kind,
                        attr: attr(MEMBER_ATTRIBUTE, vec![entry.clone()])?,
                    }],
                });
            }
        }
    }
    Ok(p)
}

/// Runs the orders (or, in a dry run, only plans them).
pub(crate) async fn run(
    settings: &LdapSettings,
    env: &Environment,
    request: &FulfillRequest<'_>,
    cx: Cx,
) -> Result<Vec<OrderResult>, PackageError> {
    let plans: Vec<Result<Plan, String>> =
        request.orders.iter().map(|o| plan(o, settings)).collect();
    let result = |i: usize, state: OrderState, message: String, ops: Vec<String>| OrderResult {
        index: i,
        id: request.orders[i].id.clone(),
        state,
        message: cx.redact(&message),
        operations: ops,
    };
    if request.dry_run {
        return Ok(plans
            .into_iter()
            .enumerate()
            .map(|(i, p)| match p {
                Ok(p) => {
                    let mut m = "dry run: nothing sent".to_string();
                    for n in &p.notes {
                        m.push_str("; ");
                        m.push_str(n);
                    }
                    result(
                        i,
                        OrderState::Executed,
                        m,
                        p.ops.iter().map(Op::show).collect(),
                    )
                }
                Err(m) => result(i, OrderState::Errored, m, Vec::new()),
            })
            .collect());
    }
    if request.orders.is_empty() {
        return Ok(Vec::new());
    }
    request
        .progress
        .phase(&format!("connecting to {}", cx.system));
    let mut session = conn::connect(settings, env, &cx).await?;
    let ldap = session.ldap.clone();
    let link_cx = session.cx.clone();
    let mut results: Vec<Option<OrderResult>> = vec![None; request.orders.len()];
    // Batches of orders that touch distinct DNs run concurrently; a conflict starts a new batch.
    let mut batch: Vec<(usize, Plan)> = Vec::new();
    let mut touched: HashSet<String> = HashSet::new();
    let mut pending: Vec<Vec<(usize, Plan)>> = Vec::new();
    for (i, p) in plans.into_iter().enumerate() {
        match p {
            Err(m) => results[i] = Some(result(i, OrderState::Errored, m, Vec::new())),
            Ok(p) => {
                if p.dns.iter().any(|d| touched.contains(d)) {
                    pending.push(std::mem::take(&mut batch));
                    touched.clear();
                }
                touched.extend(p.dns.iter().cloned());
                batch.push((i, p));
            }
        }
    }
    pending.push(batch);
    for batch in pending {
        let outcomes: Vec<(usize, Outcome)> = futures_util::stream::iter(batch)
            .map(|(i, p)| {
                let ldap = ldap.clone();
                let cx = &link_cx;
                async move { (i, execute(ldap, cx, p).await) }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let done = outcomes.len() as u64;
        for (i, o) in outcomes {
            let state = if o.ok {
                OrderState::Executed
            } else {
                OrderState::Errored
            };
            results[i] = Some(result(i, state, o.message, o.operations));
        }
        request.progress.rows("orders", done);
    }
    session.ldap = ldap;
    session.close().await;
    Ok(results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| result(i, OrderState::Errored, "not run".into(), Vec::new()))
        })
        .collect())
}

/// What happened to one order.
#[derive(Debug, Default)]
struct Outcome {
    ok: bool,
    message: String,
    operations: Vec<String>,
}

/// Sends an order's operations in turn; stops at the first failure.
async fn execute(mut ldap: Ldap, cx: &Cx, plan: Plan) -> Outcome {
    let mut out = Outcome {
        ok: true,
        ..Default::default()
    };
    let mut notes = plan.notes.clone();
    let mut last = "result code 0 (success)".to_string();
    if plan.ops.is_empty() {
        notes.insert(0, "nothing to change".to_string());
    }
    for op in plan.ops {
        out.operations.push(op.show());
        match apply(&mut ldap, cx, &op, &mut out.operations).await {
            Ok((r, note)) => {
                last = describe_result(&r);
                if let Some(n) = note {
                    notes.push(n);
                }
            }
            Err(m) => {
                out.ok = false;
                out.message = m;
                return out;
            }
        }
    }
    out.message = std::iter::once(last)
        .chain(notes)
        .collect::<Vec<_>>()
        .join("; ");
    out
}

fn timed<'l>(ldap: &'l mut Ldap, cx: &Cx) -> &'l mut Ldap {
    if let Some(t) = cx.timeout {
        ldap.with_timeout(t);
    }
    ldap
}

/// Why an operation failed: `<operation>: result code N (name): server text`.
fn failed(op: &Op, r: &LdapResult) -> String {
    let what = match op {
        Op::Add { .. } => "add",
        Op::Modify { .. } => "modify",
        Op::Rename { .. } => "modrdn",
        Op::Delete { .. } => "delete",
    };
    format!("{what} failed: {}", describe_result(r))
}

/// An ldap3 error as an order's message (the relay's reason when it closed the connection).
fn ldap_error(cx: &Cx, e: ldap3::LdapError) -> String {
    cx.explain(&e).1
}

/// Reads an entry's values of `attrs` (lowercased name -> values); `None` when it is gone.
async fn read(
    ldap: &mut Ldap,
    cx: &Cx,
    dn: &str,
    attrs: Vec<String>,
) -> Result<Option<HashMap<String, Vec<Vec<u8>>>>, String> {
    let r = timed(ldap, cx)
        .with_search_options(SearchOptions::new())
        .search(dn, ldap3::Scope::Base, "(objectClass=*)", attrs)
        .await
        .map_err(|e| ldap_error(cx, e))?;
    let ldap3::SearchResult(entries, res) = r;
    if res.rc == 32 {
        return Ok(None);
    }
    if res.rc != 0 {
        return Err(format!("reading {dn} failed: {}", describe_result(&res)));
    }
    let Some(e) = entries
        .into_iter()
        .find(|e| !e.is_ref() && !e.is_intermediate())
    else {
        return Ok(None);
    };
    let raw = entry::parse(e.0)?;
    Ok(Some(
        raw.attrs
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect(),
    ))
}

/// Values compare ignoring case (most directory attributes match that way).
fn same_value(a: &[u8], b: &[u8]) -> bool {
    a == b || String::from_utf8_lossy(a).to_lowercase() == String::from_utf8_lossy(b).to_lowercase()
}

/// Sends one operation; on the results that mean "already done" checks the entry and
/// succeeds. Returns the result and a note, or the failure message.
async fn apply(
    ldap: &mut Ldap,
    cx: &Cx,
    op: &Op,
    operations: &mut Vec<String>,
) -> Result<(LdapResult, Option<String>), String> {
    match op {
        Op::Add { dn, attrs } => {
            let list: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attrs
                .iter()
                .map(|a| (a.name.clone().into_bytes(), a.set()))
                .collect();
            let r = timed(ldap, cx)
                .add(dn, list)
                .await
                .map_err(|e| ldap_error(cx, e))?;
            if r.rc == 0 {
                return Ok((r, None));
            }
            if r.rc != 68 {
                return Err(failed(op, &r));
            }
            // Already there: Executed when it holds the same values.
            let names: Vec<String> = attrs
                .iter()
                .filter(|a| !a.secret)
                .map(|a| a.name.clone())
                .collect();
            let Some(current) = read(ldap, cx, dn, names).await? else {
                return Err(failed(op, &r));
            };
            let differ: Vec<&str> = attrs
                .iter()
                .filter(|a| !a.secret)
                .filter(|a| {
                    let have = current
                        .get(&a.name.to_ascii_lowercase())
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let subset = |x: &[Vec<u8>], y: &[Vec<u8>]| {
                        x.iter().all(|v| y.iter().any(|w| same_value(v, w)))
                    };
                    if a.name.eq_ignore_ascii_case("objectClass") {
                        !subset(&a.values, have)
                    } else {
                        !(subset(&a.values, have) && subset(have, &a.values))
                    }
                })
                .map(|a| a.name.as_str())
                .collect();
            if differ.is_empty() {
                Ok((
                    r,
                    Some("the entry already exists with the same values: nothing to do".into()),
                ))
            } else {
                Err(format!(
                    "{}; the existing entry differs in {}",
                    failed(op, &r),
                    differ.join(", ")
                ))
            }
        }
        Op::Modify { dn, changes } => {
            let r = send_modify(ldap, cx, dn, changes).await?;
            if r.rc == 0 {
                return Ok((r, None));
            }
            if r.rc != 20 && r.rc != 16 {
                return Err(failed(op, &r));
            }
            // Some values were already added or removed: send only what is still needed.
            let names: Vec<String> = changes
                .iter()
                .filter(|c| c.kind != Kind::Replace)
                .map(|c| c.attr.name.clone())
                .collect();
            let Some(current) = read(ldap, cx, dn, names).await? else {
                return Err(failed(op, &r));
            };
            let mut left = Vec::new();
            for c in changes {
                let have = current
                    .get(&c.attr.name.to_ascii_lowercase())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let values: Vec<Vec<u8>> = match c.kind {
                    Kind::Replace => {
                        left.push(c.clone());
                        continue;
                    }
                    Kind::Add => c
                        .attr
                        .values
                        .iter()
                        .filter(|v| !have.iter().any(|w| same_value(v, w)))
                        .cloned()
                        .collect(),
                    Kind::Delete => c
                        .attr
                        .values
                        .iter()
                        .filter(|v| have.iter().any(|w| same_value(v, w)))
                        .cloned()
                        .collect(),
                };
                if !values.is_empty() {
                    left.push(Change {
                        kind: c.kind,
                        attr: Attr {
                            values,
                            ..c.attr.clone()
                        },
                    });
                }
            }
            if left.is_empty() {
                return Ok((
                    LdapResult {
                        rc: 0,
                        matched: String::new(),
                        text: String::new(),
                        refs: Vec::new(),
                        ctrls: Vec::new(),
                    },
                    Some("the values were already added or removed: nothing to do".into()),
                ));
            }
            let retry = Op::Modify {
                dn: dn.clone(),
                changes: left.clone(),
            };
            operations.push(format!(
                "{} (again, without the values already there)",
                retry.show()
            ));
            let r2 = send_modify(ldap, cx, dn, &left).await?;
            if r2.rc == 0 {
                Ok((r2, Some("some values were already added or removed".into())))
            } else {
                Err(failed(op, &r2))
            }
        }
        Op::Rename {
            dn: old,
            new_rdn,
            new_superior,
        } => {
            let r = timed(ldap, cx)
                .modifydn(old, new_rdn, true, new_superior.as_deref())
                .await
                .map_err(|e| ldap_error(cx, e))?;
            if r.rc == 0 {
                return Ok((r, None));
            }
            if r.rc == 32 {
                let (_, old_parent) = dn::split(old);
                let parent = new_superior.as_deref().unwrap_or(old_parent);
                let new = if parent.is_empty() {
                    new_rdn.clone()
                } else {
                    format!("{new_rdn},{parent}")
                };
                if read(ldap, cx, &new, vec!["1.1".into()]).await?.is_some() {
                    return Ok((r, Some(format!("already renamed to {new}"))));
                }
            }
            Err(failed(op, &r))
        }
        Op::Delete { dn } => {
            let r = timed(ldap, cx)
                .delete(dn)
                .await
                .map_err(|e| ldap_error(cx, e))?;
            match r.rc {
                0 => Ok((r, None)),
                32 => Ok((r, Some("the entry was already gone: nothing to do".into()))),
                _ => Err(failed(op, &r)),
            }
        }
    }
}

async fn send_modify(
    ldap: &mut Ldap,
    cx: &Cx,
    dn: &str,
    changes: &[Change],
) -> Result<LdapResult, String> {
    let mods: Vec<Mod<Vec<u8>>> = changes
        .iter()
        .map(|c| {
            let name = c.attr.name.clone().into_bytes();
            match c.kind {
                Kind::Replace => Mod::Replace(name, c.attr.set()),
                Kind::Add => Mod::Add(name, c.attr.set()),
                Kind::Delete => Mod::Delete(name, c.attr.set()),
            }
        })
        .collect();
    timed(ldap, cx)
        .modify(dn, mods)
        .await
        .map_err(|e| ldap_error(cx, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ResourceTypeRef;

    fn settings() -> LdapSettings {
        super::super::settings::parse(
            "Directory",
            serde_json::json!({
                "Servers": [{"Server": "h"}],
                "Tables": [{"Table": "entries", "BaseDN": "dc=x"}],
                "DefaultObjectClass": ["inetOrgPerson"],
            }),
        )
        .expect("settings")
    }

    fn order(change: ChangeType, resource: Value, changes: Value) -> ProvisioningOrder {
        ProvisioningOrder {
            id: None,
            change_type: change,
            resource_type: ResourceTypeRef {
                identifier: "LDAP_Account".into(),
                source_entity_type: None,
                target_entity_type: None,
                default_object_class: None,
            },
            owner: None,
            resource: resource.as_object().cloned(),
            changes: changes.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn added_orders_get_object_class_rdn_and_redacted_password() {
        let mut s = settings();
        s.password_reset = true;
        let o = order(
            ChangeType::Added,
            Value::Null,
            serde_json::json!({"dn": "uid=new,ou=p,dc=x", "cn": "New", "sn": "N", "userPassword": "s3cret!", "mail": null}),
        );
        let p = plan(&o, &s).expect("plan");
        let shown = p.ops[0].show();
        assert_eq!(
            shown,
            "add uid=new,ou=p,dc=x: objectClass=inetOrgPerson, cn=New, sn=N, userPassword=**REDACTED**, uid=new"
        );
        s.password_reset = false;
        let p = plan(&o, &s).expect("plan");
        assert!(!p.ops[0].show().contains("userPassword"));
        assert!(p.notes[0].contains("IsLdapPasswordReset"));
    }

    #[test]
    fn modified_orders_rename_then_replace_and_change_members() {
        let o = order(
            ChangeType::Modified,
            serde_json::json!({"dn": "cn=g,ou=a,dc=x"}),
            serde_json::json!({
                "dn": "cn=h,ou=b,dc=x",
                "description": null,
                "member_add": [{"dn": "uid=a,dc=x"}],
                "member_remove": ["uid=b,dc=x"],
            }),
        );
        let p = plan(&o, &settings()).expect("plan");
        let shown: Vec<String> = p.ops.iter().map(Op::show).collect();
        assert_eq!(
            shown,
            [
                "modrdn cn=g,ou=a,dc=x: newrdn=cn=h, deleteoldrdn=1, newsuperior=ou=b,dc=x",
                "modify cn=h,ou=b,dc=x: replace description (remove all values); add member=uid=a,dc=x; delete member=uid=b,dc=x",
            ]
        );
    }

    #[test]
    fn member_of_changes_are_written_to_the_groups_member_attribute() {
        let o = order(
            ChangeType::Modified,
            serde_json::json!({"dn": "uid=a,ou=p,dc=x"}),
            serde_json::json!({
                "memberOf_add": [{"dn": "cn=staff,ou=g,dc=x"}],
                "memberOf_remove": [{"dn": "cn=old,ou=g,dc=x"}],
            }),
        );
        let p = plan(&o, &settings()).expect("plan");
        let shown: Vec<String> = p.ops.iter().map(Op::show).collect();
        assert_eq!(p.ops.len(), 2, "{shown:?}");
        assert!(
            shown[0].contains("cn=staff,ou=g,dc=x") && shown[0].contains("add member"),
            "{shown:?}"
        );
        assert!(shown[0].contains("uid=a,ou=p,dc=x"), "{shown:?}");
        assert!(
            shown[1].contains("cn=old,ou=g,dc=x") && shown[1].contains("delete member"),
            "{shown:?}"
        );
        // An Added entry joins its groups after it is created.
        let o = order(
            ChangeType::Added,
            Value::Null,
            serde_json::json!({"dn": "uid=n,ou=p,dc=x", "sn": "N", "memberOf_add": ["cn=staff,ou=g,dc=x"]}),
        );
        let p = plan(&o, &settings()).expect("plan");
        assert!(matches!(p.ops[0], Op::Add { .. }));
        assert!(matches!(&p.ops[1], Op::Modify { dn, .. } if dn == "cn=staff,ou=g,dc=x"));
        // Replacing memberOf as a whole is refused with the way out.
        let o = order(
            ChangeType::Modified,
            serde_json::json!({"dn": "uid=a,ou=p,dc=x"}),
            serde_json::json!({"memberOf": ["cn=staff,ou=g,dc=x"]}),
        );
        assert!(
            plan(&o, &settings())
                .expect_err("refused")
                .contains("memberOf_add")
        );
    }

    #[test]
    fn orders_without_dn_or_object_class_are_refused() {
        let mut s = settings();
        s.default_object_class.clear();
        let o = order(
            ChangeType::Added,
            Value::Null,
            serde_json::json!({"dn": "uid=x,dc=x"}),
        );
        assert!(
            plan(&o, &s)
                .expect_err("no class")
                .contains("DefaultObjectClass")
        );
        let o = order(ChangeType::Deleted, Value::Null, serde_json::json!({}));
        assert!(plan(&o, &s).expect_err("no dn").contains("dn"));
    }
}
