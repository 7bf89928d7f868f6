//! What the busy pages need from a running configuration, computed once per configuration
//! (it lives in [`crate::running::Running`], so a new configuration starts with none):
//! the connectors table rendered once, and each connector's connections indexed. Nothing
//! here comes from the store, so nothing here goes stale while the configuration runs;
//! schema states are read per request.

use std::collections::HashMap;
use std::sync::Arc;

use idlink_engine::Engine;
use serde_json::json;

use crate::error::AppError;

/// The cached parts of the connectors and connector pages of one configuration.
#[derive(Debug)]
pub struct Pages {
    /// The rows of the connectors table, rendered (escaped) once.
    pub connector_rows: Arc<str>,
    /// How many connectors are declared.
    pub connectors: usize,
    /// Connector identifier → the positions of its connections in the configuration, in
    /// configuration order.
    by_connector: HashMap<String, Vec<usize>>,
}

impl Pages {
    /// Builds the cache of `engine`'s configuration with the `connector_rows.html` template.
    pub fn build(
        engine: &Engine,
        templates: &minijinja::Environment<'_>,
    ) -> Result<Pages, AppError> {
        let config = &engine.checked().config;
        let mut by_connector: HashMap<String, Vec<usize>> =
            HashMap::with_capacity(config.connectors.len());
        for (i, c) in config.connections.iter().enumerate() {
            by_connector
                .entry(c.connector.value.clone())
                .or_default()
                .push(i);
        }
        let list: Vec<_> = config
            .connectors
            .iter()
            .map(|c| {
                json!({
                    "id": c.id.value,
                    "name": c.display_names.l1().unwrap_or(&c.id.value),
                    "connections": by_connector.get(&c.id.value).map_or(0, Vec::len),
                })
            })
            .collect();
        let rows = templates
            .get_template("connector_rows.html")
            .and_then(|t| t.render(json!({ "connectors": list })))
            .map_err(|e| AppError::Internal(format!("template connector_rows.html: {e:#}")))?;
        Ok(Pages {
            connector_rows: rows.into(),
            connectors: config.connectors.len(),
            by_connector,
        })
    }

    /// The connections of connector `id` (exactly as declared), in configuration order; `None`
    /// when no connection names it.
    pub fn connections_of<'e>(
        &self,
        engine: &'e Engine,
        id: &str,
    ) -> Option<Vec<&'e idlink_model::config::Connection>> {
        let all = &engine.checked().config.connections;
        self.by_connector
            .get(id)
            .map(|ix| ix.iter().filter_map(|&i| all.get(i)).collect())
    }
}
