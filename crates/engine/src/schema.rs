//! Schema refresh and check connection, and how a schema is shown: text for people, JSON for
//! programs, `<ConnectionTable>` XML to paste into the configuration.

use std::fmt::Write as _;

use idlink_model::config::{KeyType, ValueType};
use idlink_model::schema::{ConnectionSchema, value_type_name};

use crate::EngineError;
use crate::connection::Opened;

impl Opened {
    /// Reads the connection's tables and columns from its system.
    pub async fn refresh_schema(&self) -> Result<ConnectionSchema, EngineError> {
        let schema = self.instance.schema().ok_or_else(|| {
            self.unsupported("describe its schema: there is no schema for this connection")
        })?;
        Ok(schema.schema().await?)
    }

    /// Tests that the system is reachable with the connection's settings; says what was reached.
    pub async fn check_connection(&self) -> Result<String, EngineError> {
        let check = self
            .instance
            .check_connection()
            .ok_or_else(|| self.unsupported("check its connection"))?;
        Ok(check.check_connection().await?)
    }
}

/// The schema as text: one line per table, one per column with its type and notes.
pub fn render_text(connection: &str, package: &str, schema: &ConnectionSchema) -> String {
    let mut s = String::new();
    let n = schema.tables.len();
    let _ = writeln!(
        s,
        "{connection} ({package}): {n} table{}",
        if n == 1 { "" } else { "s" }
    );
    for t in &schema.tables {
        let _ = writeln!(s, "  {}", t.name);
        for c in &t.columns {
            let mut notes = Vec::new();
            if let Some(st) = &c.source_type {
                notes.push(st.clone());
            }
            if c.multivalued {
                notes.push("multivalued".into());
            }
            match c.key {
                KeyType::Primary => notes.push("primary key".into()),
                KeyType::Unique => notes.push("unique key".into()),
                KeyType::None => {}
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            let _ = writeln!(
                s,
                "    {:<32} {}{notes}",
                c.name,
                value_type_name(c.value_type)
            );
        }
    }
    s
}

/// The schema as JSON: `{"connection", "package", "tables"}`.
pub fn render_json(connection: &str, package: &str, schema: &ConnectionSchema) -> String {
    let mut s = serde_json::to_string_pretty(
        &serde_json::json!({"connection": connection, "package": package, "tables": schema.tables}),
    )
    .unwrap_or_default();
    s.push('\n');
    s
}

fn xml_escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The schema as `<ConnectionTable>` elements in a configuration file, to paste.
pub fn render_xml(connection: &str, schema: &ConnectionSchema) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ConfigurationFile xmlns=\"urn:schemas-usercube-com:configuration\">\n",
    );
    for t in &schema.tables {
        let _ = writeln!(
            s,
            "  <ConnectionTable Connection=\"{}\" Identifier=\"{}\">",
            xml_escape(connection),
            xml_escape(&t.name)
        );
        for c in &t.columns {
            let _ = write!(s, "    <Column Identifier=\"{}\"", xml_escape(&c.name));
            if c.value_type != ValueType::String {
                let _ = write!(s, " ValueType=\"{}\"", value_type_name(c.value_type));
            }
            if c.multivalued {
                s.push_str(" IsMultivalued=\"true\"");
            }
            match c.key {
                KeyType::Primary => s.push_str(" KeyType=\"1\""),
                KeyType::Unique => s.push_str(" KeyType=\"2\""),
                KeyType::None => {}
            }
            s.push_str(" />\n");
        }
        s.push_str("  </ConnectionTable>\n");
    }
    s.push_str("</ConfigurationFile>\n");
    s
}
