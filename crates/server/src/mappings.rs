//! The entity type mapping editor (SPEC §7): `Source` offers only tables of the refreshed
//! schemas (stored snapshots) of the connector's connections, `Source Columns` that table's
//! columns; without a refreshed schema there is nothing to choose and nothing can be saved.
//! A mapping whose table or columns the latest snapshot lacks is flagged (schema drift).
//!
//! Saving edits that one `EntityTypeMapping` element in place: its `ConnectionTable`
//! attribute, and its `Property` children (a changed one is rewritten, a dropped one removed
//! with its line, a new one added after the last); every other byte of the file stays.

use idlink_engine::Engine;
use idlink_engine::snapshots::show_time;
use idlink_model::config::EntityTypeMapping;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::edit::{self, Draft};
use crate::error::AppError;
use crate::state::AppState;

/// The sentence shown when there is nothing to choose.
pub fn no_source_sentence(connector: &str) -> String {
    format!(
        "There is no table to choose: refresh the schema of a connection of connector {connector} first (Refresh schema on the connector page)."
    )
}

/// One table offered as `Source`.
#[derive(Debug, Clone)]
pub struct Source {
    pub connection: String,
    pub table: String,
    pub columns: Vec<String>,
    pub refreshed_at: String,
}

/// The tables of the refreshed schemas of `connector`'s connections.
pub async fn sources(
    state: &AppState,
    engine: &Engine,
    connector: &str,
) -> Result<Vec<Source>, AppError> {
    let states = state.store().schema_states().await?;
    let mut out = Vec::new();
    for c in engine
        .checked()
        .config
        .connections
        .iter()
        .filter(|c| c.connector.value == connector)
    {
        let Some(snapshot) = states
            .iter()
            .filter(|s| s.connection.eq_ignore_ascii_case(&c.id.value))
            .find_map(|s| s.snapshot.as_ref())
        else {
            continue;
        };
        for t in &snapshot.schema.tables {
            out.push(Source {
                connection: c.id.value.clone(),
                table: t.name.clone(),
                columns: t.columns.iter().map(|c| c.name.clone()).collect(),
                refreshed_at: show_time(&snapshot.refreshed_at),
            });
        }
    }
    Ok(out)
}

/// What the latest snapshot says is gone: the table, or the columns, the mapping reads.
/// Empty when nothing vanished or when the table's connection has no snapshot.
pub fn drift(m: &EntityTypeMapping, all: &[Source], engine: &Engine) -> Vec<String> {
    let table = &m.connection_table.value;
    let prefix = table.split('_').next().unwrap_or_default();
    let Some(connection) = engine.checked().config.connection(prefix) else {
        return Vec::new();
    };
    let of_connection: Vec<&Source> = all
        .iter()
        .filter(|s| s.connection == connection.id.value)
        .collect();
    if of_connection.is_empty() {
        return Vec::new();
    }
    match of_connection
        .iter()
        .find(|s| s.table.eq_ignore_ascii_case(table))
    {
        None => vec![format!(
            "table '{table}' is not in the latest schema of connection '{}'",
            connection.id.value
        )],
        Some(s) => m
            .properties
            .iter()
            .filter(|p| !s.columns.contains(&p.connection_column.value))
            .map(|p| {
                format!(
                    "column '{}' (property {}) is not in table '{}' of the latest schema (refreshed {})",
                    p.connection_column.value, p.id.value, s.table, s.refreshed_at
                )
            })
            .collect(),
    }
}

fn mapping<'e>(engine: &'e Engine, entity_type: &str) -> Result<&'e EntityTypeMapping, AppError> {
    let all = &engine.checked().config.entity_type_mappings;
    all.iter()
        .find(|m| m.id.value == entity_type)
        .or_else(|| {
            all.iter()
                .find(|m| m.id.value.eq_ignore_ascii_case(entity_type))
        })
        .ok_or_else(|| {
            let hint = idlink_model::diag::did_you_mean(
                entity_type,
                all.iter().map(|m| m.id.value.as_str()),
            )
            .map(|s| format!("; did you mean '{s}'?"))
            .unwrap_or_default();
            AppError::NotFound(format!(
                "entity type '{entity_type}' has no entity type mapping{hint}"
            ))
        })
}

/// Every mapping, with its drift.
pub async fn list(state: &AppState, engine: &Engine) -> Result<Vec<Value>, AppError> {
    let mut by_connector: std::collections::HashMap<String, Vec<Source>> =
        std::collections::HashMap::new();
    let mut out = Vec::new();
    for m in &engine.checked().config.entity_type_mappings {
        let connector = m.connector.value.clone();
        if !by_connector.contains_key(&connector) {
            let s = sources(state, engine, &connector).await?;
            by_connector.insert(connector.clone(), s);
        }
        let all = by_connector.get(&connector).map_or(&[][..], Vec::as_slice);
        out.push(view(m, all, engine));
    }
    Ok(out)
}

fn view(m: &EntityTypeMapping, all: &[Source], engine: &Engine) -> Value {
    // Shown relative to the configuration folder.
    let location = m.at.to_string();
    let dir = format!("{}/", engine.config_dir().display());
    let location = location.strip_prefix(&dir).unwrap_or(&location).to_string();
    json!({
        "entityType": m.id.value,
        "connector": m.connector.value,
        "connectionTable": m.connection_table.value,
        "location": location,
        "properties": m.properties.iter().map(|p| json!({
            "property": p.id.value,
            "connectionColumn": p.connection_column.value,
            "isPrimaryKey": p.is_primary_key,
            "isUniqueKey": p.is_unique_key,
            "format": p.format,
        })).collect::<Vec<_>>(),
        "drift": drift(m, all, engine),
    })
}

/// One mapping for the editor: the mapping, its drift, the sources to choose from, the
/// entity type's properties, and whether it can be saved (and why not).
pub async fn editor(
    state: &AppState,
    engine: &Engine,
    entity_type: &str,
) -> Result<Value, AppError> {
    let m = mapping(engine, entity_type)?;
    let all = sources(state, engine, &m.connector.value).await?;
    let properties: Vec<String> = engine
        .checked()
        .config
        .entity_type(&m.id.value)
        .map(|e| e.properties.iter().map(|p| p.id.value.clone()).collect())
        .unwrap_or_default();
    let mut v = view(m, &all, engine);
    v["entityTypeProperties"] = json!(properties);
    v["sources"] = json!(all
        .iter()
        .map(|s| json!({ "connection": s.connection, "table": s.table, "columns": s.columns, "refreshedAt": s.refreshed_at }))
        .collect::<Vec<_>>());
    v["canSave"] = json!(!all.is_empty());
    if all.is_empty() {
        v["message"] = json!(no_source_sentence(&m.connector.value));
    }
    Ok(v)
}

/// A mapping as the editor saves it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingEdit {
    pub connection_table: String,
    pub properties: Vec<PropertyEdit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyEdit {
    pub property: String,
    pub connection_column: String,
    #[serde(default)]
    pub is_primary_key: bool,
    #[serde(default)]
    pub is_unique_key: bool,
    #[serde(default)]
    pub format: Option<String>,
}

fn property_xml(p: &PropertyEdit, extra: &[(String, String)]) -> String {
    let mut s = format!(
        "<Property Identifier=\"{}\" ConnectionColumn=\"{}\"",
        edit::xml_attr(&p.property),
        edit::xml_attr(&p.connection_column)
    );
    if p.is_primary_key {
        s.push_str(" IsPrimaryKey=\"true\"");
    }
    if p.is_unique_key {
        s.push_str(" IsUniqueKey=\"true\"");
    }
    if let Some(f) = p.format.as_ref().filter(|f| !f.is_empty()) {
        s.push_str(&format!(" Format=\"{}\"", edit::xml_attr(f)));
    }
    for (k, v) in extra {
        s.push_str(&format!(" {k}=\"{}\"", edit::xml_attr(v)));
    }
    s.push_str(" />");
    s
}

fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1")
}

/// The text of the file with the mapping of `entity_type` edited to `new`, in place.
pub fn edit_xml(text: &str, entity_type: &str, new: &MappingEdit) -> Result<String, AppError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| AppError::BadRequest(format!("the file is not well-formed XML: {e}")))?;
    let node = doc
        .descendants()
        .find(|n| {
            n.is_element()
                && n.tag_name().name() == "EntityTypeMapping"
                && n.attribute("Identifier") == Some(entity_type)
        })
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "the EntityTypeMapping of '{entity_type}' is not in its file any more: reload the page"
            ))
        })?;
    // (range, replacement), applied from the end.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    match node.attributes().find(|a| a.name() == "ConnectionTable") {
        Some(a) if a.value() != new.connection_table => {
            edits.push((a.range_value(), edit::xml_attr(&new.connection_table)));
        }
        Some(_) => {}
        None => {
            return Err(AppError::BadRequest(
                "the mapping has no ConnectionTable attribute to change".into(),
            ));
        }
    }
    let known = [
        "Identifier",
        "ConnectionColumn",
        "IsPrimaryKey",
        "IsUniqueKey",
        "Format",
    ];
    let children: Vec<roxmltree::Node<'_, '_>> = node
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Property")
        .collect();
    let line_start = |pos: usize| text[..pos].rfind('\n').map_or(0, |i| i + 1);
    for child in &children {
        let id = child.attribute("Identifier").unwrap_or_default();
        let r = child.range();
        match new.properties.iter().find(|p| p.property == id) {
            Some(p) => {
                let same = child.attribute("ConnectionColumn")
                    == Some(p.connection_column.as_str())
                    && truthy(child.attribute("IsPrimaryKey")) == p.is_primary_key
                    && truthy(child.attribute("IsUniqueKey")) == p.is_unique_key
                    && child.attribute("Format").filter(|f| !f.is_empty())
                        == p.format.as_deref().filter(|f| !f.is_empty());
                if !same {
                    let extra: Vec<(String, String)> = child
                        .attributes()
                        .filter(|a| !known.contains(&a.name()))
                        .map(|a| (a.name().to_string(), a.value().to_string()))
                        .collect();
                    edits.push((r, property_xml(p, &extra)));
                }
            }
            None => {
                // The element and its line, when it is alone on it.
                let start = line_start(r.start);
                let alone = text[start..r.start].trim().is_empty();
                let end_of_line = text[r.end..].find('\n').map(|i| r.end + i + 1);
                let rest_blank = end_of_line.is_some_and(|e| text[r.end..e].trim().is_empty());
                let range = if alone && rest_blank {
                    start..end_of_line.unwrap_or(r.end)
                } else {
                    r
                };
                edits.push((range, String::new()));
            }
        }
    }
    let added: Vec<&PropertyEdit> = new
        .properties
        .iter()
        .filter(|p| {
            !children
                .iter()
                .any(|c| c.attribute("Identifier") == Some(p.property.as_str()))
        })
        .collect();
    if !added.is_empty() {
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let element_indent: String = text[line_start(node.range().start)..node.range().start]
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        let kept = children.iter().rev().find(|c| {
            new.properties
                .iter()
                .any(|p| c.attribute("Identifier") == Some(p.property.as_str()))
        });
        match kept {
            Some(last) => {
                let r = last.range();
                let indent: String = text[line_start(r.start)..r.start]
                    .chars()
                    .take_while(|c| *c == ' ' || *c == '\t')
                    .collect();
                let mut block = String::new();
                for p in &added {
                    block.push_str(newline);
                    block.push_str(&indent);
                    block.push_str(&property_xml(p, &[]));
                }
                edits.push((r.end..r.end, block));
            }
            None => {
                let r = node.range();
                let indent = format!("{element_indent}  ");
                let mut block = String::new();
                for p in &added {
                    block.push_str(newline);
                    block.push_str(&indent);
                    block.push_str(&property_xml(p, &[]));
                }
                let source = &text[r.clone()];
                if source.trim_end().ends_with("/>") {
                    // A mapping written as `<EntityTypeMapping ... />` gets children.
                    let slash = r.start + source.rfind("/>").unwrap_or(0);
                    let mut head_end = slash;
                    while head_end > r.start && text.as_bytes()[head_end - 1] == b' ' {
                        head_end -= 1;
                    }
                    edits.push((
                        head_end..r.end,
                        format!(">{block}{newline}{element_indent}</EntityTypeMapping>"),
                    ));
                } else {
                    let close = r.start + source.rfind("</").unwrap_or(source.len());
                    let close_line = line_start(close);
                    if text[close_line..close].trim().is_empty() {
                        // Lines of their own, before the closing tag's line.
                        let mut lines = String::new();
                        for p in &added {
                            lines.push_str(&indent);
                            lines.push_str(&property_xml(p, &[]));
                            lines.push_str(newline);
                        }
                        edits.push((close_line..close_line, lines));
                    } else {
                        edits.push((close..close, block));
                    }
                }
            }
        }
    }
    edits.sort_by(|a, b| b.0.start.cmp(&a.0.start).then(b.0.end.cmp(&a.0.end)));
    let mut out = text.to_string();
    for (range, with) in edits {
        out.replace_range(range, &with);
    }
    Ok(out)
}

/// Saves the mapping of `entity_type` (administrators only; checked before it is written).
pub async fn save(
    state: &AppState,
    who: &str,
    entity_type: &str,
    new: &MappingEdit,
) -> Result<Vec<String>, AppError> {
    let _lock = state.edit_lock().await;
    let engine = state.engine()?;
    let m = mapping(&engine, entity_type)?;
    let all = sources(state, &engine, &m.connector.value).await?;
    if all.is_empty() {
        return Err(AppError::BadRequest(no_source_sentence(&m.connector.value)));
    }
    let source = all
        .iter()
        .find(|s| s.table.eq_ignore_ascii_case(new.connection_table.trim()))
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|s| s.table.as_str()).collect();
            AppError::BadRequest(format!(
                "'{}' is not a table of a refreshed schema of connector {}; choose one of {}",
                new.connection_table,
                m.connector.value,
                names.join(", ")
            ))
        })?;
    let mut edit_to = new.clone();
    edit_to.connection_table = source.table.clone();
    for p in &edit_to.properties {
        if !source.columns.contains(&p.connection_column) {
            return Err(AppError::BadRequest(format!(
                "column '{}' (property {}) is not in table '{}'; its columns are {}",
                p.connection_column,
                p.property,
                source.table,
                source.columns.join(", ")
            )));
        }
    }
    let id = m.id.value.clone();
    let file = std::path::PathBuf::from(&*m.at.file);
    let mut changes = Vec::new();
    if m.connection_table.value != edit_to.connection_table {
        changes.push(format!("Source {}", edit_to.connection_table));
    }
    for p in &edit_to.properties {
        match m.properties.iter().find(|x| x.id.value == p.property) {
            None => changes.push(format!("mapped {}", p.property)),
            Some(x)
                if x.connection_column.value != p.connection_column
                    || x.is_primary_key != p.is_primary_key
                    || x.is_unique_key != p.is_unique_key
                    || x.format.as_deref().unwrap_or_default()
                        != p.format.as_deref().unwrap_or_default() =>
            {
                changes.push(format!("changed {}", p.property));
            }
            Some(_) => {}
        }
    }
    for x in &m.properties {
        if !edit_to.properties.iter().any(|p| p.property == x.id.value) {
            changes.push(format!("unmapped {}", x.id.value));
        }
    }
    let mut draft = Draft::new();
    let text = draft.text(&file, None)?;
    *text = edit_xml(text, &id, &edit_to)?;
    drop(engine);
    edit::commit(state, draft).await?;
    if !changes.is_empty() {
        state
            .store()
            .audit(who, "edit-mapping", &id, &changes.join("; "))
            .await?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "<ConfigurationFile>\n  <!-- keep -->\n  <EntityTypeMapping Identifier=\"P\" Connector=\"HR\" ConnectionTable=\"A\">\n    <Property Identifier=\"Id\" ConnectionColumn=\"Id\" IsPrimaryKey=\"true\" />\n    <!-- inside -->\n    <Property Identifier=\"Name\" ConnectionColumn=\"Name\" />\n  </EntityTypeMapping>\n  <EntityTypeMapping Identifier=\"Q\" Connector=\"HR\" ConnectionTable=\"A\" />\n</ConfigurationFile>\n";

    fn p(id: &str, col: &str, pk: bool) -> PropertyEdit {
        PropertyEdit {
            property: id.into(),
            connection_column: col.into(),
            is_primary_key: pk,
            is_unique_key: false,
            format: None,
        }
    }

    #[test]
    fn only_the_edited_parts_change() {
        // Name is dropped with its line, Mail added after the last property kept, the
        // comments stay.
        let new = MappingEdit {
            connection_table: "B".into(),
            properties: vec![p("Id", "Id", true), p("Mail", "Email", false)],
        };
        let out = edit_xml(FILE, "P", &new).expect("edit");
        assert_eq!(
            out,
            "<ConfigurationFile>\n  <!-- keep -->\n  <EntityTypeMapping Identifier=\"P\" Connector=\"HR\" ConnectionTable=\"B\">\n    <Property Identifier=\"Id\" ConnectionColumn=\"Id\" IsPrimaryKey=\"true\" />\n    <Property Identifier=\"Mail\" ConnectionColumn=\"Email\" />\n    <!-- inside -->\n  </EntityTypeMapping>\n  <EntityTypeMapping Identifier=\"Q\" Connector=\"HR\" ConnectionTable=\"A\" />\n</ConfigurationFile>\n"
        );
    }

    #[test]
    fn a_self_closed_mapping_gets_children() {
        let new = MappingEdit {
            connection_table: "A".into(),
            properties: vec![p("Id", "Id", true)],
        };
        let out = edit_xml(FILE, "Q", &new).expect("edit");
        assert!(
            out.ends_with("  <EntityTypeMapping Identifier=\"Q\" Connector=\"HR\" ConnectionTable=\"A\">\n    <Property Identifier=\"Id\" ConnectionColumn=\"Id\" IsPrimaryKey=\"true\" />\n  </EntityTypeMapping>\n</ConfigurationFile>\n"),
            "{out}"
        );
        assert!(
            out.starts_with(
                &FILE[..FILE
                    .find("  <EntityTypeMapping Identifier=\"Q\"")
                    .expect("Q")]
            )
        );
    }
}
