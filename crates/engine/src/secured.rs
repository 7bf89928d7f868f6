//! Secured settings at run time: which settings are secured (from each package's schema),
//! decrypting `appsettings.encrypted.agent.json` values with the agent's key, and the list of
//! secret values to redact from anything shown.

use std::path::{Path, PathBuf};

use idlink_model::Checked;
use idlink_model::package::{Availability, Kind, PackageCatalog, SettingsSchema};
use idlink_packages::Registry;
use idlink_secrets::{
    AgentIdentity, PathSegment, Redactor, decrypt_value, is_encrypted, load_identity,
};

use crate::EngineError;

/// The environment variable that names the agent's identity file when the settings don't.
pub const AGENT_KEY_ENV: &str = "IDLINK_AGENT_KEY";

/// Whether the setting at `path` (from the top of appsettings.agent.json) is secured: the
/// connection's package schema says so. For settings of connections the configuration does
/// not declare, any field that some package secures is treated as secured.
pub fn is_secured_path(checked: &Checked, registry: &Registry, path: &[PathSegment]) -> bool {
    let [
        PathSegment::Key(top),
        PathSegment::Key(connection),
        rest @ ..,
    ] = path
    else {
        return false;
    };
    if !top.eq_ignore_ascii_case("Connections") || rest.is_empty() {
        return false;
    }
    let schema = checked
        .config
        .connection(connection)
        .and_then(|c| registry.get(&c.package.value))
        .filter(|p| p.availability == Availability::Supported)
        .map(|p| p.settings);
    match schema {
        Some(schema) => secured_in(schema, rest),
        None => registry.all().any(|p| secured_in(p.settings, rest)),
    }
}

fn secured_in(schema: &SettingsSchema, path: &[PathSegment]) -> bool {
    let [PathSegment::Key(name), rest @ ..] = path else {
        return false;
    };
    let Some(field) = schema.field(name) else {
        return false;
    };
    if field.secured {
        return true;
    }
    match (field.kind, rest) {
        (Kind::ObjectList(inner), [PathSegment::Index(_), rest @ ..]) => secured_in(inner, rest),
        _ => false,
    }
}

/// The agent's identity, from `EncryptionIdentity` (relative to the settings folder) or
/// `IDLINK_AGENT_KEY`. `None` when neither names one.
pub fn agent_identity(
    checked: &Checked,
    base_dir: &Path,
) -> Result<Option<AgentIdentity>, EngineError> {
    let path: Option<PathBuf> = match &checked.settings.encryption_identity {
        Some(p) => Some(base_dir.join(&p.value)),
        None => std::env::var_os(AGENT_KEY_ENV).map(PathBuf::from),
    };
    let Some(path) = path else { return Ok(None) };
    load_identity(&path)
        .map(Some)
        .map_err(|e| EngineError::Secret {
            connection: None,
            setting: None,
            message: e.to_string(),
        })
}

/// Decrypts the encrypted strings of a connection's secured settings, in place, and returns the
/// values of all secured settings (decrypted or plain), to redact them from messages.
///
/// Only secured settings are decrypted: an encrypted value anywhere else is refused, unread.
/// A setting that is not secured may be shown (a path in a message, a filter in a log, a
/// value written to a file), so whoever can edit the settings (the server, for a remote
/// agent) could otherwise move a secret's ciphertext there and read it in plain text.
pub fn decrypt_settings(
    connection: &str,
    settings: &mut serde_json::Value,
    schema: &SettingsSchema,
    identity: impl FnOnce() -> Result<Option<AgentIdentity>, EngineError>,
) -> Result<Redactor, EngineError> {
    let mut keys = Keys {
        connection,
        load: Some(identity),
        identity: None,
    };
    decrypt_secured(settings, schema, "", &mut keys)?;
    let mut redactor = Redactor::new();
    secured_values(settings, schema, &mut redactor);
    Ok(redactor)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The agent's key, loaded when the first encrypted value is met (never when there is none).
struct Keys<'a, F> {
    connection: &'a str,
    load: Option<F>,
    identity: Option<AgentIdentity>,
}

impl<F: FnOnce() -> Result<Option<AgentIdentity>, EngineError>> Keys<'_, F> {
    fn get(&mut self, setting: &str) -> Result<&AgentIdentity, EngineError> {
        if let Some(load) = self.load.take() {
            self.identity = load()?;
        }
        self.identity.as_ref().ok_or_else(|| EngineError::Secret {
            connection: Some(self.connection.to_string()),
            setting: Some(setting.to_string()),
            message: format!(
                "the value is encrypted, but no agent key is configured: set EncryptionIdentity in \
                 appsettings.agent.json or {AGENT_KEY_ENV} to the key file written by `idlink keygen`"
            ),
        })
    }
}

/// Walks `v` (an object of settings of `schema`): decrypts what secured settings hold, refuses
/// encrypted values elsewhere.
fn decrypt_secured<F: FnOnce() -> Result<Option<AgentIdentity>, EngineError>>(
    v: &mut serde_json::Value,
    schema: &SettingsSchema,
    path: &str,
    keys: &mut Keys<'_, F>,
) -> Result<(), EngineError> {
    let serde_json::Value::Object(map) = v else {
        return refuse_encrypted(v, path, keys.connection);
    };
    for (k, item) in map.iter_mut() {
        let here = child(path, k);
        match (schema.field(k), &mut *item) {
            (Some(field), _) if field.secured => decrypt_in(item, here, keys)?,
            (Some(field), serde_json::Value::Array(items)) => match field.kind {
                Kind::ObjectList(inner) => {
                    for (i, element) in items.iter_mut().enumerate() {
                        decrypt_secured(element, inner, &format!("{here}[{i}]"), keys)?;
                    }
                }
                _ => refuse_encrypted(item, &here, keys.connection)?,
            },
            _ => refuse_encrypted(item, &here, keys.connection)?,
        }
    }
    Ok(())
}

/// Fails on the first encrypted string in `v`, a value of settings that are not secured,
/// without decrypting it.
fn refuse_encrypted(
    v: &serde_json::Value,
    path: &str,
    connection: &str,
) -> Result<(), EngineError> {
    match v {
        serde_json::Value::String(s) if is_encrypted(s) => Err(EngineError::Secret {
            connection: Some(connection.to_string()),
            setting: Some(path.to_string()),
            message: "the value is encrypted, but the setting is not secured: only secured \
                      settings are decrypted (the value of any other may be shown, in a message \
                      or a file); write this one in plain text"
                .to_string(),
        }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| refuse_encrypted(item, &format!("{path}[{i}]"), connection)),
        serde_json::Value::Object(map) => map
            .iter()
            .try_for_each(|(k, item)| refuse_encrypted(item, &child(path, k), connection)),
        _ => Ok(()),
    }
}

fn decrypt_in<F: FnOnce() -> Result<Option<AgentIdentity>, EngineError>>(
    v: &mut serde_json::Value,
    path: String,
    keys: &mut Keys<'_, F>,
) -> Result<(), EngineError> {
    match v {
        serde_json::Value::String(s) if is_encrypted(s) => {
            let connection = keys.connection;
            let secret = decrypt_value(keys.get(&path)?, s).map_err(|e| EngineError::Secret {
                connection: Some(connection.to_string()),
                setting: Some(path.clone()),
                message: e.to_string(),
            })?;
            *s = secret.expose_secret().to_string();
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                decrypt_in(item, format!("{path}[{i}]"), keys)?;
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                decrypt_in(item, child(&path, k), keys)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The redactor for a connection's typed settings: every secured value (see [`secured_values`]).
pub fn redactor_for(settings: &serde_json::Value, schema: &SettingsSchema) -> Redactor {
    let mut redactor = Redactor::new();
    secured_values(settings, schema, &mut redactor);
    redactor
}

/// Values of the secured settings (and of secured key-value options), for redaction. A secured
/// string that is a connection string hides its secret parts on their own too, and leaves the
/// host, port, database and user readable.
fn secured_values(v: &serde_json::Value, schema: &SettingsSchema, out: &mut Redactor) {
    let serde_json::Value::Object(map) = v else {
        return;
    };
    for (k, item) in map {
        let Some(field) = schema.field(k) else {
            continue;
        };
        match (item, field.kind) {
            (serde_json::Value::Array(items), Kind::ObjectList(inner)) => {
                for i in items {
                    secured_values(i, inner, out);
                }
            }
            (serde_json::Value::Object(m), Kind::Map) if field.secured => {
                for value in m.values().filter_map(|x| x.as_str()) {
                    out.add(value);
                }
            }
            (serde_json::Value::String(s), _) if field.secured => out.add_connection_string(s),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only secured settings are decrypted, inside object lists too; an encrypted value in any
    /// other setting (or one the schema does not know) is refused, unread.
    #[test]
    fn only_secured_settings_are_decrypted() {
        let registry = Registry::new();
        let ldap = registry
            .get_static("Usercube.OpenLDAP@0000001")
            .expect("the LDAP package");
        let agent = AgentIdentity::generate();
        let sealed =
            |v: &str| idlink_secrets::encrypt_value(&agent.recipient(), v).expect("encrypts");
        let settings = |server: String, password: String| {
            serde_json::json!({
                "Servers": [{ "Server": server, "AuthType": "Basic", "Login": "cn=admin",
                              "Password": password }],
                "Tables": [{ "Table": "entries", "BaseDN": "dc=example,dc=org" }],
            })
        };
        let identity = || Ok(Some(agent.clone()));
        let mut ok = settings("ldap://h:389".into(), sealed("pw-1"));
        let redactor = decrypt_settings("Dir", &mut ok, ldap.settings, identity).expect("decrypts");
        assert_eq!(ok["Servers"][0]["Password"], "pw-1");
        assert!(!redactor.redact("bind pw-1").contains("pw-1"));
        for (server, path) in [
            (sealed("pw-1"), "Servers[0].Server"),
            ("ldap://h:389".to_string(), "Servers[0].Unknown"),
        ] {
            let mut moved = settings(server, "pw-2".into());
            if path.ends_with("Unknown") {
                moved["Servers"][0]["Unknown"] = sealed("pw-1").into();
            }
            let e =
                decrypt_settings("Dir", &mut moved, ldap.settings, identity).expect_err("refused");
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("connection 'Dir': setting {path}: the value is encrypted, but the setting is not secured")),
                "{text}"
            );
            assert!(!moved.to_string().contains("pw-1"), "{moved}");
        }
    }
}
