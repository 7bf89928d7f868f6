//! Schema snapshots (SPEC §7) between packages and the store: "Refresh schema" for one
//! connection and "Refresh all schemas" for a connector, each refresh recorded (the schema and
//! its time, or the failure with its time and message, secrets hidden), and the state of every
//! connection for `idlink connections` and the server.

use chrono::{DateTime, Utc};
use idlink_model::Checked;
use idlink_model::diag::did_you_mean;
use idlink_model::package::{Availability, Capabilities};
use idlink_packages::Registry;
use idlink_packages::api::ConnectionSchema;
use idlink_secrets::Redactor;
use idlink_store::{SchemaState, Store};

use crate::connection::Opened;
use crate::{Engine, EngineError, ErrorKind};

/// What SPEC §7 says for a package without the schema capability.
pub const NO_SCHEMA: &str = "There is no schema for this connection";

/// The outcome of refreshing one connection's schema.
#[derive(Debug, Clone)]
pub enum Refresh {
    /// Read and recorded.
    Refreshed {
        schema: ConnectionSchema,
        at: DateTime<Utc>,
    },
    /// The package has no schema capability: nothing to refresh, not a failure.
    NoSchema,
    /// Failed and recorded (the last good snapshot is kept); the message has no secret.
    Failed {
        message: String,
        kind: ErrorKind,
        at: DateTime<Utc>,
    },
}

impl Refresh {
    pub fn failed(&self) -> bool {
        matches!(self, Refresh::Failed { .. })
    }
}

/// One connection of a "Refresh all schemas".
#[derive(Debug, Clone)]
pub struct ConnectionRefresh {
    /// The identifier as declared.
    pub connection: String,
    pub package: String,
    pub outcome: Refresh,
    /// The connection's secret values, to hide from anything shown of the outcome.
    pub redactor: Redactor,
}

impl Opened {
    /// Whether the connection's package can describe its schema.
    pub fn has_schema(&self) -> bool {
        self.instance.schema().is_some()
    }

    /// Refreshes the schema and records the outcome in `store`: the snapshot on success, the
    /// failure (secrets hidden) otherwise. `Err` only when the store cannot record it.
    pub async fn refresh_schema_into(&self, store: &Store) -> Result<Refresh, EngineError> {
        if !self.has_schema() {
            return Ok(Refresh::NoSchema);
        }
        let at = idlink_store::now();
        match self.refresh_schema().await {
            Ok(schema) => {
                store
                    .record_schema(self.id(), self.package.id, &schema, at)
                    .await?;
                Ok(Refresh::Refreshed { schema, at })
            }
            Err(e) => {
                let message = self.redact(&e.to_string());
                store.record_schema_failure(self.id(), at, &message).await?;
                Ok(Refresh::Failed {
                    message,
                    kind: e.kind(),
                    at,
                })
            }
        }
    }
}

/// Whether a connection that cannot be opened for `id` counts as a failed refresh of a declared
/// connection (recorded), rather than a mistake in the command (an undeclared connection).
pub fn records_open_failure(e: &EngineError) -> bool {
    !matches!(e, EngineError::UnknownConnection { .. })
}

impl Engine {
    /// Refreshes connection `id` and records the outcome. A connection that cannot be opened
    /// (missing settings, a secret that does not decrypt) is a failed refresh, recorded too;
    /// an undeclared one is an error.
    pub async fn refresh_schema_into(
        &self,
        store: &Store,
        id: &str,
    ) -> Result<ConnectionRefresh, EngineError> {
        let opened = match self.open(id) {
            Ok(o) => o,
            Err(e) if records_open_failure(&e) => {
                let connection = self
                    .checked()
                    .config
                    .connection(id)
                    .map_or_else(|| id.to_string(), |c| c.id.value.clone());
                let package = self
                    .checked()
                    .config
                    .connection(id)
                    .map(|c| c.package.value.clone())
                    .unwrap_or_default();
                if !self.package_has_schema(&package) {
                    return Ok(ConnectionRefresh {
                        connection,
                        package,
                        outcome: Refresh::NoSchema,
                        redactor: Redactor::default(),
                    });
                }
                let at = idlink_store::now();
                let message = e.to_string();
                store
                    .record_schema_failure(&connection, at, &message)
                    .await?;
                return Ok(ConnectionRefresh {
                    connection,
                    package,
                    outcome: Refresh::Failed {
                        message,
                        kind: e.kind(),
                        at,
                    },
                    redactor: Redactor::default(),
                });
            }
            Err(e) => return Err(e),
        };
        let outcome = opened.refresh_schema_into(store).await?;
        Ok(ConnectionRefresh {
            connection: opened.id().to_string(),
            package: opened.package.id.to_string(),
            outcome,
            redactor: opened.redactor().clone(),
        })
    }

    /// [`Engine::refresh_schema_into`], on the connection's remote agent when `agents` carries
    /// work to one and the connection runs there: the schema it reads (or its failure) is
    /// recorded here as a local refresh's is.
    pub async fn refresh_schema_via(
        &self,
        store: &Store,
        id: &str,
        agents: Option<&dyn crate::agents::RemoteAgents>,
    ) -> Result<ConnectionRefresh, EngineError> {
        let remote = agents.and_then(|a| {
            self.remote_agent_of(id, None, a.local_agent())
                .map(|agent| (a, agent))
        });
        let Some((agents, agent)) = remote else {
            return self.refresh_schema_into(store, id).await;
        };
        let c =
            self.checked()
                .config
                .connection(id)
                .ok_or_else(|| EngineError::UnknownConnection {
                    id: id.to_string(),
                    suggestion: None,
                })?;
        let (connection, package) = (c.id.value.clone(), c.package.value.clone());
        if !self.package_has_schema(&package) {
            return Ok(ConnectionRefresh {
                connection,
                package,
                outcome: Refresh::NoSchema,
                redactor: Redactor::default(),
            });
        }
        let at = idlink_store::now();
        let outcome = match agents.refresh_schema(&agent, &connection).await {
            Ok(schema) => {
                store
                    .record_schema(&connection, &package, &schema, at)
                    .await?;
                Refresh::Refreshed { schema, at }
            }
            Err(e) => {
                let message = e.to_string();
                store
                    .record_schema_failure(&connection, at, &message)
                    .await?;
                Refresh::Failed {
                    message,
                    kind: e.kind(),
                    at,
                }
            }
        };
        Ok(ConnectionRefresh {
            connection,
            package,
            outcome,
            redactor: Redactor::default(),
        })
    }

    /// "Refresh all schemas": every connection of `connector`, in configuration order,
    /// continuing past failures (each on its agent, as [`Engine::refresh_schema_via`]). Holds
    /// the connector's lock meanwhile, so it never interleaves with another run on the
    /// connector.
    pub async fn refresh_connector_schemas(
        &self,
        store: &Store,
        connector: &str,
        agents: Option<&dyn crate::agents::RemoteAgents>,
    ) -> Result<Vec<ConnectionRefresh>, EngineError> {
        let connector = self.connector_id(connector)?;
        let lock = store.lock_connector(&connector, "refresh-schema").await?;
        let ids: Vec<String> = self
            .checked()
            .config
            .connections
            .iter()
            .filter(|c| c.connector.value == connector)
            .map(|c| c.id.value.clone())
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.refresh_schema_via(store, &id, agents).await?);
        }
        lock.release().await?;
        Ok(out)
    }

    /// The declared connector `id` (exact), or an error with a suggestion.
    pub fn connector_id(&self, id: &str) -> Result<String, EngineError> {
        connector_id(self.checked(), id)
    }

    fn package_has_schema(&self, package: &str) -> bool {
        self.registry()
            .get_static(package)
            .is_some_and(|p| p.capabilities.schema)
    }
}

fn connector_id(checked: &Checked, id: &str) -> Result<String, EngineError> {
    let connectors = &checked.config.connectors;
    if let Some(c) = connectors.iter().find(|c| c.id.value == id) {
        return Ok(c.id.value.clone());
    }
    Err(EngineError::UnknownConnector {
        id: id.to_string(),
        suggestion: did_you_mean(id, connectors.iter().map(|c| c.id.value.as_str()))
            .map(str::to_string),
    })
}

/// A connection's schema, as `idlink connections` and the connector page show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// The package has no schema capability.
    NoSchema,
    /// Never refreshed (or refreshed before this store existed).
    NeverRefreshed,
    /// The last refresh succeeded.
    Refreshed {
        at: DateTime<Utc>,
        tables: usize,
        columns: usize,
    },
    /// The last refresh failed; the last good snapshot's time, if any.
    Failed {
        at: DateTime<Utc>,
        message: String,
        last_success: Option<DateTime<Utc>>,
    },
}

/// One connection, for listings.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub connection: String,
    pub connector: String,
    pub package: String,
    pub capabilities: Capabilities,
    /// Whether this build can run the package (false: documented only, or unknown).
    pub available: bool,
    pub schema: SchemaStatus,
}

/// Every connection (of `connector`, when given), in configuration order, with its schema
/// state from `states` (what the store holds; empty without a store).
pub fn connection_views(
    checked: &Checked,
    registry: &Registry,
    states: &[SchemaState],
    connector: Option<&str>,
) -> Result<Vec<ConnectionView>, EngineError> {
    let connector = connector.map(|c| connector_id(checked, c)).transpose()?;
    Ok(checked
        .config
        .connections
        .iter()
        .filter(|c| connector.as_ref().is_none_or(|k| *k == c.connector.value))
        .map(|c| connection_view(c, registry, states))
        .collect())
}

/// One connection with its schema state (`states`: the store's, any order).
pub fn connection_view(
    c: &idlink_model::config::Connection,
    registry: &Registry,
    states: &[SchemaState],
) -> ConnectionView {
    let info = registry.get_static(&c.package.value);
    let capabilities = info.map(|p| p.capabilities).unwrap_or_default();
    let available = info.is_some_and(|p| p.availability == Availability::Supported);
    let state = states
        .iter()
        .find(|s| s.connection.eq_ignore_ascii_case(&c.id.value));
    let schema = if !capabilities.schema {
        SchemaStatus::NoSchema
    } else {
        match state {
            None => SchemaStatus::NeverRefreshed,
            Some(s) => match (&s.failure, &s.snapshot) {
                (Some(f), snap) => SchemaStatus::Failed {
                    at: f.at,
                    message: f.message.clone(),
                    last_success: snap.as_ref().map(|s| s.refreshed_at),
                },
                (None, Some(snap)) => SchemaStatus::Refreshed {
                    at: snap.refreshed_at,
                    tables: snap.schema.tables.len(),
                    columns: snap.schema.tables.iter().map(|t| t.columns.len()).sum(),
                },
                (None, None) => SchemaStatus::NeverRefreshed,
            },
        }
    };
    ConnectionView {
        connection: c.id.value.clone(),
        connector: c.connector.value.clone(),
        package: c.package.value.clone(),
        capabilities,
        available,
        schema,
    }
}

/// A time as listings show it: `2025-03-01T10:00:00Z`.
pub fn show_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use idlink_model::config::{KeyType, ValueType};
    use idlink_model::schema::{ColumnSchema, TableSchema};
    use idlink_model::{Rule, SettingsSource};
    use idlink_store::{SchemaFailure, SchemaSnapshot};

    use super::*;

    const CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Agent Identifier="Local" DisplayName_L1="Local" />
  <Connector Identifier="HR" DisplayName_L1="HR" Agent="Local" />
  <Connection Identifier="HRPeople" DisplayName_L1="People" Connector="HR" Package="Usercube.CSV@0000001" />
  <Connection Identifier="HRGroups" DisplayName_L1="Groups" Connector="HR" Package="Usercube.CSV@0000001" />
  <Connection Identifier="HRTickets" DisplayName_L1="Tickets" Connector="HR" Package="Usercube.FulfillToFile@0000001" />
  <EntityType Identifier="Person" DisplayName_L1="Person">
    <Property Identifier="Id" DisplayName_L1="Id" IsKey="true" />
    <Property Identifier="Mail" DisplayName_L1="Mail" />
  </EntityType>
  <EntityType Identifier="Group" DisplayName_L1="Group">
    <Property Identifier="Name" DisplayName_L1="Name" IsKey="true" />
  </EntityType>
  <EntityTypeMapping Identifier="Person" Connector="HR" ConnectionTable="HRPeople">
    <Property Identifier="Id" ConnectionColumn="Id" IsPrimaryKey="true" />
    <Property Identifier="Mail" ConnectionColumn="Mail" />
  </EntityTypeMapping>
  <EntityTypeMapping Identifier="Group" Connector="HR" ConnectionTable="HRGroups_list">
    <Property Identifier="Name" ConnectionColumn="Name" IsPrimaryKey="true" />
  </EntityTypeMapping>
</ConfigurationFile>
"#;

    fn checked() -> (tempfile::TempDir, Checked) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hr.xml"), CONFIG).expect("write");
        std::fs::create_dir(dir.path().join("data")).expect("mkdir");
        std::fs::write(
            dir.path().join("appsettings.agent.json"),
            r#"{"SourcesRootPaths": ["data"], "Connections": {"HRPeople": {"Path": "data/p.csv"}, "HRGroups": {"Path": "data/g.csv"}}}"#,
        )
        .expect("write");
        let checked = idlink_model::load_and_check(
            dir.path(),
            SettingsSource {
                path: &dir.path().join("appsettings.agent.json"),
                explicit: true,
            },
            std::iter::empty::<(String, String)>(),
            &Registry::new(),
        )
        .expect("loads");
        assert!(checked.is_valid(), "{:?}", checked.diagnostics);
        (dir, checked)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn state(connection: &str, table: &str, columns: &[&str], failed: bool) -> SchemaState {
        SchemaState {
            connection: connection.into(),
            snapshot: Some(SchemaSnapshot {
                package: "Usercube.CSV@0000001".into(),
                schema: ConnectionSchema {
                    tables: vec![TableSchema {
                        name: table.into(),
                        columns: columns
                            .iter()
                            .map(|c| ColumnSchema {
                                key: KeyType::None,
                                value_type: ValueType::String,
                                ..ColumnSchema::string(*c)
                            })
                            .collect(),
                    }],
                },
                refreshed_at: at("2025-03-01T10:00:00Z"),
            }),
            failure: failed.then(|| SchemaFailure {
                at: at("2025-03-02T10:00:00Z"),
                message: "file not found".into(),
            }),
        }
    }

    fn rules(checked: &Checked, rule: Rule) -> Vec<String> {
        checked
            .diagnostics
            .iter()
            .filter(|d| d.rule == rule)
            .map(|d| d.message.clone())
            .collect()
    }

    #[test]
    fn snapshots_replace_not_refreshed_and_flag_missing_tables_and_columns() {
        let (_dir, mut checked) = checked();
        assert_eq!(rules(&checked, Rule::SchemaNotRefreshed).len(), 2);
        let states = [
            // Keys compare case-insensitively; the Mail column is gone.
            state("hrpeople", "HRPEOPLE", &["Id", "mail"], false),
            // The mapped table is gone; this snapshot is the last good one.
            state("HRGroups", "HRGroups_all", &["Name"], true),
        ];
        crate::check::check_snapshots(&mut checked, &states);
        assert!(rules(&checked, Rule::SchemaNotRefreshed).is_empty());
        let drift = rules(&checked, Rule::SchemaDrift);
        assert_eq!(
            drift,
            [
                "entity type mapping 'Person' reads column 'Mail', which table 'HRPEOPLE' does not have in the latest schema snapshot of connection 'HRPeople' (refreshed 2025-03-01T10:00:00Z)",
                "entity type mapping 'Group' reads table 'HRGroups_list', which is not in the latest schema snapshot of connection 'HRGroups' (refreshed 2025-03-01T10:00:00Z); the last refresh failed, so this is the last good snapshot",
            ]
        );
        let hint = checked
            .diagnostics
            .iter()
            .find(|d| d.rule == Rule::SchemaDrift)
            .and_then(|d| d.hint.clone())
            .unwrap_or_default();
        assert!(hint.contains("did you mean 'mail'?"), "{hint}");
        assert!(checked.is_valid(), "drift is a warning");
    }

    #[test]
    fn a_failure_without_any_snapshot_leaves_the_configuration_rules_alone() {
        let (_dir, mut checked) = checked();
        let before = checked.diagnostics.len();
        let failed = SchemaState {
            connection: "HRPeople".into(),
            snapshot: None,
            failure: Some(SchemaFailure {
                at: at("2025-03-02T10:00:00Z"),
                message: "x".into(),
            }),
        };
        crate::check::check_snapshots(&mut checked, &[failed]);
        assert_eq!(checked.diagnostics.len(), before);
    }

    #[test]
    fn connection_views_give_each_schema_state() {
        let (_dir, checked) = checked();
        let states = [
            state("HRPeople", "HRPeople", &["Id", "Mail"], false),
            state("HRGroups", "HRGroups_list", &["Name"], true),
        ];
        let views =
            connection_views(&checked, &Registry::new(), &states, Some("HR")).expect("views");
        let schemas: Vec<(&str, &SchemaStatus)> = views
            .iter()
            .map(|v| (v.connection.as_str(), &v.schema))
            .collect();
        assert_eq!(
            schemas,
            [
                (
                    "HRPeople",
                    &SchemaStatus::Refreshed {
                        at: at("2025-03-01T10:00:00Z"),
                        tables: 1,
                        columns: 2
                    }
                ),
                (
                    "HRGroups",
                    &SchemaStatus::Failed {
                        at: at("2025-03-02T10:00:00Z"),
                        message: "file not found".into(),
                        last_success: Some(at("2025-03-01T10:00:00Z"))
                    }
                ),
                ("HRTickets", &SchemaStatus::NoSchema),
            ]
        );
        assert!(views.iter().all(|v| v.connector == "HR" && v.available));
        let e = connection_views(&checked, &Registry::new(), &[], Some("hr")).expect_err("exact");
        assert_eq!(
            e.to_string(),
            "connector 'hr' is not declared in the configuration; did you mean 'HR'?"
        );
    }
}
