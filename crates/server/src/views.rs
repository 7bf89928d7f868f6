//! What the API returns and the UI shows, built once from the running configuration and the
//! store. Secured settings are masked here: each becomes `{"secured": true, "set": bool}`.

use idlink_engine::Engine;
use idlink_engine::snapshots::{
    ConnectionView, NO_SCHEMA, SchemaStatus, connection_view, show_time,
};
use idlink_model::package::{Kind, SettingsSchema};
use idlink_model::settings::{Entry, SettingValue};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorSummary {
    pub id: String,
    pub name: String,
    pub connections: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub export: bool,
    pub incremental: bool,
    pub fulfill: bool,
    pub schema: bool,
}

/// A connection's schema state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaView {
    /// `none`, `never-refreshed`, `refreshed` or `failed`.
    pub state: &'static str,
    /// The error of a failed refresh, or the sentence for a package without schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last successful refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<usize>,
}

impl From<&SchemaStatus> for SchemaView {
    fn from(s: &SchemaStatus) -> Self {
        let none = SchemaView {
            state: "none",
            message: None,
            refreshed_at: None,
            failed_at: None,
            tables: None,
            columns: None,
        };
        match s {
            SchemaStatus::NoSchema => SchemaView {
                message: Some(NO_SCHEMA.into()),
                ..none
            },
            SchemaStatus::NeverRefreshed => SchemaView {
                state: "never-refreshed",
                ..none
            },
            SchemaStatus::Refreshed {
                at,
                tables,
                columns,
            } => SchemaView {
                state: "refreshed",
                refreshed_at: Some(show_time(at)),
                tables: Some(*tables),
                columns: Some(*columns),
                ..none
            },
            SchemaStatus::Failed {
                at,
                message,
                last_success,
            } => SchemaView {
                state: "failed",
                message: Some(message.clone()),
                failed_at: Some(show_time(at)),
                refreshed_at: last_success.as_ref().map(show_time),
                ..none
            },
        }
    }
}

/// One connection in a list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub connector: String,
    pub package: String,
    pub available: bool,
    pub capabilities: Capabilities,
    pub schema: SchemaView,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorDetail {
    pub id: String,
    pub name: String,
    pub connections: Vec<ConnectionRow>,
}

fn display_name(names: &idlink_model::config::DisplayNames, id: &str) -> String {
    names.l1().unwrap_or(id).to_string()
}

pub fn connectors(engine: &Engine) -> Vec<ConnectorSummary> {
    let config = &engine.checked().config;
    // One pass over the connections, not one per connector.
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for c in &config.connections {
        *counts.entry(c.connector.value.as_str()).or_default() += 1;
    }
    config
        .connectors
        .iter()
        .map(|c| ConnectorSummary {
            id: c.id.value.clone(),
            name: display_name(&c.display_names, &c.id.value),
            connections: counts.get(c.id.value.as_str()).copied().unwrap_or(0),
        })
        .collect()
}

fn row_named(name: String, v: &ConnectionView) -> ConnectionRow {
    let c = v.capabilities;
    ConnectionRow {
        id: v.connection.clone(),
        name,
        connector: v.connector.clone(),
        package: v.package.clone(),
        available: v.available,
        capabilities: Capabilities {
            export: c.export,
            incremental: c.incremental,
            fulfill: c.fulfill,
            schema: c.schema,
        },
        schema: SchemaView::from(&v.schema),
    }
}

/// Every connection (of `connector`, when given) with its schema state.
pub async fn connections(
    state: &AppState,
    engine: &Engine,
    connector: Option<&str>,
) -> Result<Vec<ConnectionRow>, AppError> {
    let connector = connector.map(|c| engine.connector_id(c)).transpose()?;
    let states = state.store().schema_states().await?;
    // By identifier, so each connection finds its state without a scan of them all.
    let by_id: std::collections::HashMap<String, &idlink_store::SchemaState> = states
        .iter()
        .map(|s| (s.connection.to_ascii_lowercase(), s))
        .collect();
    Ok(engine
        .checked()
        .config
        .connections
        .iter()
        .filter(|c| connector.as_ref().is_none_or(|k| *k == c.connector.value))
        .map(|c| {
            let found = by_id
                .get(&c.id.value.to_ascii_lowercase())
                .map_or(&[][..], |s| std::slice::from_ref(*s));
            let view = connection_view(c, engine.registry(), found);
            row_named(display_name(&c.display_names, &c.id.value), &view)
        })
        .collect())
}

/// A connector with its connections and their schema states: the connections come from the
/// configuration's index ([`crate::pages`]), each schema state from the store (one read per
/// connection with the schema capability, so the page costs the same whatever the other
/// connectors hold).
pub async fn connector(state: &AppState, id: &str) -> Result<ConnectorDetail, AppError> {
    let (engine, pages) = state.pages()?;
    let c =
        match engine.checked().config.connector(id) {
            Some(c) => c,
            None => {
                let id = engine.connector_id(id)?;
                engine.checked().config.connector(&id).ok_or_else(|| {
                    AppError::NotFound(format!("connector '{id}' is not declared"))
                })?
            }
        };
    let id = c.id.value.clone();
    let mut rows = Vec::new();
    for conn in pages.connections_of(&engine, &id).unwrap_or_default() {
        let has_schema = engine
            .registry()
            .get_static(&conn.package.value)
            .is_some_and(|p| p.capabilities.schema);
        let key = conn.id.value.to_ascii_lowercase();
        let mut view = connection_view(conn, engine.registry(), &[]);
        if has_schema {
            view.schema = match state.schemas().get(&key) {
                Some(s) => s,
                None => {
                    let found = state.store().schema_state(&conn.id.value).await?;
                    let s = connection_view(conn, engine.registry(), found.as_slice()).schema;
                    state.schemas().put(key, s.clone());
                    s
                }
            };
        }
        rows.push(row_named(
            display_name(&conn.display_names, &conn.id.value),
            &view,
        ));
    }
    Ok(ConnectorDetail {
        name: display_name(&c.display_names, &id),
        id,
        connections: rows,
    })
}

/// One connection (case-insensitive identifier) with its schema state: one store read, not
/// every connection's.
async fn one(state: &AppState, engine: &Engine, id: &str) -> Result<ConnectionRow, AppError> {
    let c = engine.checked().config.connection(id).ok_or_else(|| {
        AppError::from(idlink_engine::EngineError::UnknownConnection {
            id: id.to_string(),
            suggestion: None,
        })
    })?;
    let found = state.store().schema_state(&c.id.value).await?;
    let view = connection_view(c, engine.registry(), found.as_slice());
    Ok(row_named(
        display_name(&c.display_names, &c.id.value),
        &view,
    ))
}

/// One connection with its settings, secured values masked.
pub async fn connection(state: &AppState, engine: &Engine, id: &str) -> Result<Value, AppError> {
    let row = one(state, engine, id).await?;
    let schema = engine
        .registry()
        .get_static(&row.package)
        .map(|p| p.settings);
    let entries = engine
        .checked()
        .settings
        .connection(&row.id)
        .map(|s| s.entries.clone())
        .unwrap_or_default();
    let settings = match schema {
        Some(schema) => masked(&entries, schema),
        // An unknown package: nothing says which values are secret, so none is shown.
        None => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.clone(), secured(&v.value)))
                .collect(),
        ),
    };
    let mut out = serde_json::to_value(&row).map_err(|e| AppError::Internal(e.to_string()))?;
    if let Value::Object(o) = &mut out {
        o.insert("settings".into(), settings);
    }
    Ok(out)
}

fn is_set(v: &SettingValue) -> bool {
    match v {
        SettingValue::Null => false,
        SettingValue::String(s) => !s.is_empty(),
        SettingValue::Array(a) => !a.is_empty(),
        SettingValue::Object(o) => !o.is_empty(),
        SettingValue::Bool(_) | SettingValue::Number(_) => true,
    }
}

fn secured(v: &SettingValue) -> Value {
    json!({ "secured": true, "set": is_set(v) })
}

/// Settings as JSON, each secured value replaced by `{"secured": true, "set": bool}` (key-value
/// secured options: each value), secured fields not given shown as not set.
pub fn masked(entries: &[Entry], schema: &SettingsSchema) -> Value {
    let mut out = Map::new();
    for (key, value) in entries {
        let shown = match schema.field(&key.value) {
            None => value.value.to_json(),
            Some(f) => match (&value.value, f.kind) {
                (SettingValue::Object(pairs), Kind::Map) if f.secured => Value::Object(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.value.clone(), secured(&v.value)))
                        .collect(),
                ),
                _ if f.secured => secured(&value.value),
                (SettingValue::Array(items), Kind::ObjectList(inner)) => Value::Array(
                    items
                        .iter()
                        .map(|item| match &item.value {
                            SettingValue::Object(e) => masked(e, inner),
                            other => other.to_json(),
                        })
                        .collect(),
                ),
                _ => value.value.to_json(),
            },
        };
        out.insert(key.value.clone(), shown);
    }
    for f in schema.fields.iter().filter(|f| f.secured) {
        if !out.keys().any(|k| k.eq_ignore_ascii_case(f.name)) && !matches!(f.kind, Kind::Map) {
            out.insert(f.name.to_string(), json!({ "secured": true, "set": false }));
        }
    }
    Value::Object(out)
}

/// A connection's schema: its state and the last good snapshot's tables and columns.
pub async fn schema(state: &AppState, engine: &Engine, id: &str) -> Result<Value, AppError> {
    let row = one(state, engine, id).await?;
    let snapshot = state
        .store()
        .schema_state(&row.id)
        .await?
        .and_then(|s| s.snapshot);
    let tables: Vec<Value> = snapshot
        .map(|s| {
            s.schema
                .tables
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "columns": t.columns.iter().map(|c| json!({
                            "name": c.name,
                            "type": format!("{:?}", c.value_type),
                            "key": format!("{:?}", c.key),
                            "multivalued": c.multivalued,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(
        json!({ "connection": row.id, "package": row.package, "state": row.schema, "tables": tables }),
    )
}

/// The entity types with their properties.
pub fn entity_types(engine: &Engine) -> Vec<Value> {
    engine
        .checked()
        .config
        .entity_types
        .iter()
        .map(|e| {
            json!({
                "id": e.id.value,
                "name": display_name(&e.display_names, &e.id.value),
                "properties": e.properties.iter().map(|p| p.id.value.clone()).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn entity_type<'e>(
    engine: &'e Engine,
    id: &str,
) -> Result<&'e idlink_model::config::EntityType, AppError> {
    engine.checked().config.entity_type(id).ok_or_else(|| {
        let names = engine
            .checked()
            .config
            .entity_types
            .iter()
            .map(|e| e.id.value.as_str());
        let hint = idlink_model::diag::did_you_mean(id, names)
            .map(|s| format!("; did you mean '{s}'?"))
            .unwrap_or_default();
        AppError::NotFound(format!("entity type '{id}' is not declared{hint}"))
    })
}

/// At most this many resources per search.
pub const SEARCH_LIMIT: usize = 100;

/// Resources of `entity_type` whose key or a value contains `q` (case-insensitively); the
/// total found and the first [`SEARCH_LIMIT`].
pub async fn search(
    state: &AppState,
    engine: &Engine,
    entity_type: &str,
    q: &str,
) -> Result<Value, AppError> {
    let et = entity_type_ref(engine, entity_type)?;
    let q = q.trim().to_lowercase();
    let hit = |r: &idlink_store::Resource| resource_matches(&r.key, &r.data, &q);
    // A page of resources at a time, in key order: the count of all that match, and the first
    // ones, in memory that does not grow with the entity type. Every page from one snapshot,
    // so the count and the matches are of one state of the store.
    let _turn = state.search_turn().await;
    let store = state.store();
    let mut snapshot = store.read_snapshot().await?;
    let (mut total, mut items, mut after) = (0usize, Vec::new(), None::<String>);
    loop {
        // Rows whose stored text cannot hold the query are not decoded.
        let page = snapshot
            .resources_page_where(&et, after.as_deref(), SEARCH_PAGE, |key, text| {
                may_match(key, text, &q)
            })
            .await?;
        let full = page.read == SEARCH_PAGE;
        after = page.last_key;
        for r in page.resources.into_iter().filter(|r| hit(r)) {
            total += 1;
            if items.len() < SEARCH_LIMIT {
                items.push(json!({ "key": r.key, "properties": r.data }));
            }
        }
        if !full {
            break;
        }
    }
    Ok(json!({ "entityType": et, "total": total, "resources": items }))
}

/// Resources read at a time by a search. A page is read and compared on one of the server's
/// async workers: 1,000 keep each step short enough for other requests to get between them
/// (with four searches running on 1M people, `/healthz` answered in 2-99 ms; with pages of
/// 5,000, up to 790 ms), at no cost to the search.
const SEARCH_PAGE: usize = 1_000;

fn entity_type_ref(engine: &Engine, id: &str) -> Result<String, AppError> {
    entity_type(engine, id).map(|e| e.id.value.clone())
}

/// Whether a resource's key or one of its values, as [`value_text`] shows it, contains `q`
/// (in lower case), ignoring case.
fn resource_matches(key: &str, data: &serde_json::Map<String, Value>, q: &str) -> bool {
    q.is_empty()
        || contains_ignoring_case(key, q)
        || data.values().any(|v| match v {
            Value::String(s) => contains_ignoring_case(s, q),
            other => value_text(other).to_lowercase().contains(q),
        })
}

/// False when a resource whose key is `key` and whose stored values are `text` (JSON: an array
/// that follows a layout, or an object) cannot match `q` ([`resource_matches`]), so it need
/// not be decoded. The text holds every string value as it is but for what JSON escapes
/// (quotes, backslashes, control characters), and numbers and booleans as they read back; so
/// an ASCII query without those characters is in the text (ignoring case) when it is in a
/// value. Lists are shown with their values joined by ", ", which the text does not hold: a
/// text with a list (a `[` after the first character) is always decoded, as is any text for
/// a query outside ASCII (lower case is not always the same char by char).
fn may_match(key: &str, text: &str, q: &str) -> bool {
    let unsure = q.is_empty()
        || !q.is_ascii()
        || q.bytes()
            .any(|b| b == b'"' || b == b'\\' || b.is_ascii_control())
        || text.get(1..).is_none_or(|t| t.contains('['));
    unsure || contains_ignoring_case(key, q) || contains_ignoring_case(text, q)
}

/// `text.to_lowercase().contains(q)`, `q` in lower case, without building the lower-case text
/// when both are ASCII (a search compares every value of its entity type).
fn contains_ignoring_case(text: &str, q: &str) -> bool {
    if text.is_ascii() && q.is_ascii() {
        let (t, q) = (text.as_bytes(), q.as_bytes());
        q.is_empty() || t.windows(q.len()).any(|w| w.eq_ignore_ascii_case(q))
    } else {
        text.to_lowercase().contains(q)
    }
}

/// A value as text, for searching and showing.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One resource with its properties and its links (navigation properties through the
/// associations of its entity type).
pub async fn resource(
    state: &AppState,
    engine: &Engine,
    type_id: &str,
    key: &str,
) -> Result<Value, AppError> {
    let et = entity_type(engine, type_id)?;
    // One resource and its own links: indexed look-ups, whatever the size of the store.
    let r = state
        .store()
        .resource_by_key(&et.id.value, key)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!("{} '{key}' is not in the store", et.id.value))
        })?;
    let mut links = Vec::new();
    for a in &engine.checked().config.entity_associations {
        for (side, p, other) in [
            (1u8, &a.property1.value, &a.property2.value),
            (2u8, &a.property2.value, &a.property1.value),
        ] {
            if p.entity_type == et.id.value {
                let keys = state
                    .store()
                    .linked_keys_of(&a.id.value, side, r.id)
                    .await?;
                links.push(json!({
                    "association": a.id.value,
                    "property": p.property,
                    "entityType": other.entity_type,
                    "keys": keys,
                }));
            }
        }
    }
    Ok(json!({
        "entityType": et.id.value,
        "key": r.key,
        "properties": r.data,
        "links": links,
    }))
}

#[cfg(test)]
mod tests {
    use idlink_model::package::Field;

    use super::*;

    /// The search's test on the stored text never drops a resource that its test on the values
    /// keeps: every piece of every value's text, as a query, against the text in both stored
    /// forms (a layout's array and a JSON object); and it does drop what cannot match.
    #[test]
    fn may_match_keeps_every_resource_that_matches() {
        let values = [
            json!("Ada Lovelace"),
            json!("O'Brien"),
            json!("say \"hi\" now"),
            json!("back\\slash"),
            json!("tab\there"),
            json!("KELVIN \u{212A}"),
            json!("ΟΔΟΣ Σ"),
            json!("Édith"),
            json!("2019-03-01T00:00:00Z"),
            json!(7),
            json!(-3),
            json!(1.5),
            json!(1e21),
            json!(true),
            Value::Null,
            json!(["ENG", "OPS"]),
            json!(["a, b"]),
        ];
        let mut queries: Vec<String> = vec!["zzz".into(), " ".into(), "\",\"".into()];
        for v in &values {
            let text: Vec<char> = value_text(v).to_lowercase().chars().collect();
            for len in 1..=6 {
                for w in text.windows(len) {
                    queries.push(w.iter().collect());
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            // Each value alone, then beside the one after it.
            for pair in [
                vec![v.clone()],
                vec![v.clone(), values[(i + 1) % values.len()].clone()],
            ] {
                let data: serde_json::Map<String, Value> = pair
                    .iter()
                    .enumerate()
                    .map(|(n, v)| (format!("P{n}"), v.clone()))
                    .collect();
                let mut packer = idlink_store::Packer::new(3);
                packer.start();
                for v in &pair {
                    packer.value(serde_json::to_string(v).expect("json").as_bytes());
                }
                let packed = packer.finish().expect("utf-8").to_string();
                let object = serde_json::to_string(&data).expect("json");
                for q in &queries {
                    if resource_matches("K1", &data, q) {
                        assert!(may_match("K1", &packed, q), "{q:?} in {packed}");
                        assert!(may_match("K1", &object, q), "{q:?} in {object}");
                    }
                }
            }
        }
        let text = r#"[3,"Ada Lovelace",7,true]"#;
        assert!(!may_match("E001", text, "zzz"));
        assert!(!may_match("E001", text, "grace"));
        assert!(may_match("E001", text, "love"));
        assert!(may_match("E001", text, "e00"));
    }

    #[test]
    fn contains_ignoring_case_is_lower_case_contains() {
        let texts = [
            "",
            "Ada",
            "ADA LOVELACE",
            "lovelace",
            "Édith Piaf",
            "ÉDITH",
            "KELVIN \u{212A}",
            "ab",
            "x",
        ];
        let queries = [
            "", "a", "ada", "love", "édith", "piaf", "k", "kelvin k", "abc", "é",
        ];
        for t in texts {
            for q in queries {
                assert_eq!(
                    contains_ignoring_case(t, q),
                    t.to_lowercase().contains(q),
                    "{t:?} {q:?}"
                );
            }
        }
    }

    static INNER: SettingsSchema = SettingsSchema {
        fields: &[
            Field::optional("Server", Kind::String, "host"),
            Field::optional("Password", Kind::String, "password").secured(),
        ],
        constraints: &[],
    };

    static SCHEMA: SettingsSchema = SettingsSchema {
        fields: &[
            Field::optional("ConnectionString", Kind::String, "plain part"),
            Field::optional("SecuredOptions", Kind::Map, "secret parts").secured(),
            Field::optional("Token", Kind::String, "a token").secured(),
            Field::optional("Servers", Kind::ObjectList(&INNER), "servers"),
        ],
        constraints: &[],
    };

    #[test]
    fn secured_values_key_value_pairs_and_nested_ones_are_masked() {
        let mut diags = idlink_model::Diagnostics::default();
        let settings = idlink_model::settings::parse(
            "appsettings.agent.json",
            br#"{"Connections": {"C": {
                "ConnectionString": "Host=db",
                "SecuredOptions": {"Password": "s3cret", "Empty": ""},
                "Servers": [{"Server": "ldap://h", "Password": "p4ss"}]
            }}}"#,
            &mut diags,
        );
        let entries = &settings.connection("C").expect("parsed").entries;
        let shown = masked(entries, &SCHEMA);
        assert_eq!(
            shown,
            json!({
                "ConnectionString": "Host=db",
                "SecuredOptions": {
                    "Password": { "secured": true, "set": true },
                    "Empty": { "secured": true, "set": false },
                },
                "Token": { "secured": true, "set": false },
                "Servers": [{ "Server": "ldap://h", "Password": { "secured": true, "set": true } }],
            })
        );
        let text = shown.to_string();
        assert!(!text.contains("s3cret") && !text.contains("p4ss"), "{text}");
    }
}
