//! What the server and its remote agents send each other (JSON over HTTPS, camelCase).
//!
//! 1. `POST /api/agent/enrol` [`Enrol`] → [`Enrolled`]: the agent registers its age public key
//!    (Pending until an administrator approves it, or Approved at once with a one-time token).
//! 2. `POST /api/agent/session` [`SessionRequest`] → [`SessionGranted`]: a bearer token,
//!    encrypted to the agent's registered key, so only the holder of the private key can use
//!    it (no password ever crosses the wire).
//! 3. `GET /api/agent/configuration` → [`AgentConfiguration`]: the XML configuration and the
//!    settings of this agent's connections only (secured values as ciphertext to its key).
//! 4. `GET /api/agent/work?wait=S` → [`WorkItem`] (200) or nothing (204 after `S` seconds):
//!    the next task, leased to the agent until `leaseExpiresMs`.
//! 5. `POST /api/agent/tasks/{id}/renew` [`Lease`]: keeps the lease while the work runs.
//! 6. `PUT /api/agent/tasks/{id}/tables/{table}?lease=L`: an exported table, gzip-compressed,
//!    with the SHA-256 of the uncompressed bytes in [`HASH_HEADER`].
//! 7. `POST /api/agent/tasks/{id}/result` [`TaskResult`]: accepted once, from the lease that
//!    holds the task (409 otherwise).

use serde::{Deserialize, Serialize};

/// The header carrying the hex SHA-256 of an uploaded table's uncompressed bytes.
pub const HASH_HEADER: &str = "x-idlink-sha256";

/// Work kinds.
pub mod kind {
    pub const EXPORT: &str = "export";
    pub const SCHEMA: &str = "schema";
    pub const CHECK: &str = "check";
    pub const FULFILL: &str = "fulfill";
}

/// A fulfill's payload: one batch of orders (SPEC §6), sent as the package receives them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FulfillPayload {
    pub orders: Vec<idlink_packages::api::ProvisioningOrder>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrol {
    pub agent: String,
    /// `age1…`
    pub public_key: String,
    /// A one-time enrolment token, when the administrator gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrolled {
    pub agent: String,
    /// `Pending` or `Approved`.
    pub state: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    pub agent: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionGranted {
    /// The bearer token, encrypted to the agent's public key (armored age).
    pub sealed_token: String,
    pub expires_in_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFile {
    /// The file's name in the configuration folder.
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfiguration {
    /// Changes whenever anything below changes.
    pub version: String,
    pub files: Vec<ConfigFile>,
    /// `appsettings.agent.json` with this agent's connections only.
    pub settings: serde_json::Value,
    /// `appsettings.encrypted.agent.json` with this agent's connections only (ciphertext).
    pub encrypted: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkItem {
    pub id: i64,
    pub lease: String,
    pub lease_expires_ms: i64,
    pub kind: String,
    pub connection: String,
    /// Which attempt this is (1, then 2 after a lease expired).
    pub attempt: i32,
    /// The configuration version the work was queued under.
    pub config_version: String,
    pub payload: serde_json::Value,
}

/// An export's payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportPayload {
    #[serde(default)]
    pub ignore_cookies: bool,
    /// The cookie the export starts from (the server keeps cookies: they advance only with
    /// the tables committed there).
    #[serde(default)]
    pub cookie: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub lease: String,
}

/// A table an export produced, as the result lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedTable {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub columns: Vec<String>,
}

/// An export's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportResult {
    pub package: String,
    pub incremental: bool,
    pub tables: Vec<ExportedTable>,
    pub cookie: Option<String>,
    pub duration_ms: u64,
    /// The export's notes (agents before this field sent none).
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    pub lease: String,
    /// The work's answer (an [`ExportResult`] for an export; a schema, or a check's message).
    #[serde(default)]
    pub ok: Option<serde_json::Value>,
    /// Why it failed (secrets redacted by the agent).
    #[serde(default)]
    pub error: Option<String>,
    /// Whether running it again may succeed.
    #[serde(default)]
    pub retryable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export's notes (a stray quote that swallowed rows) reach the server from the agent;
    /// an agent from before the field sends none, and is still understood.
    #[test]
    fn an_export_result_carries_its_notes_and_reads_without_them() {
        let r = ExportResult {
            package: "Usercube.CSV@0000001".into(),
            incremental: false,
            tables: Vec::new(),
            cookie: None,
            duration_ms: 5,
            notes: vec!["people.csv:2: a quoted value holds 1 line ...".into()],
        };
        let json = serde_json::to_value(&r).expect("serializes");
        let back: ExportResult = serde_json::from_value(json.clone()).expect("reads");
        assert_eq!(back.notes, r.notes);
        let mut older = json;
        older.as_object_mut().expect("object").remove("notes");
        let back: ExportResult = serde_json::from_value(older).expect("reads without notes");
        assert!(back.notes.is_empty());
    }
}
