//! Secured settings at run time: which settings are secured (from each package's schema),
//! decrypting `appsettings.encrypted.agent.json` values with the agent's key, and the list of
//! secret values to redact from anything shown.

use std::path::{Path, PathBuf};

use idlink_model::Checked;
use idlink_model::package::{Availability, Kind, PackageCatalog, SettingsSchema};
use idlink_packages::Registry;
use idlink_secrets::{
    AgentIdentity, Binding, PathSegment, Redactor, decrypt_bound, is_encrypted, load_identity,
    path_to_string,
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
    match schema_of(checked, registry, connection) {
        Some(schema) => secured_in(schema, rest),
        None => registry.all().any(|p| secured_in(p.settings, rest)),
    }
}

/// The settings schema of a declared connection's package, when this build runs it.
fn schema_of(
    checked: &Checked,
    registry: &Registry,
    connection: &str,
) -> Option<&'static SettingsSchema> {
    checked
        .config
        .connection(connection)
        .and_then(|c| registry.get(&c.package.value))
        .filter(|p| p.availability == Availability::Supported)
        .map(|p| p.settings)
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
///
/// A value encrypted bound to its setting and destination ([`binding`]) is refused unless it
/// sits at that setting and the connection still sends it there; a value encrypted unbound (by
/// `protect --values` or an older idlink) is accepted as it is, unless `bound_only`
/// ([`crate::Confinement::secrets`]), which also refuses a value bound to its setting alone
/// where the connection names a destination.
pub fn decrypt_settings(
    connection: &str,
    settings: &mut serde_json::Value,
    (schema, bound_only): (&'static SettingsSchema, bool),
    identity: impl FnOnce() -> Result<Option<AgentIdentity>, EngineError>,
) -> Result<Redactor, EngineError> {
    let mut keys = Keys {
        connection,
        load: Some(identity),
        identity: None,
        // The destinations are settings that are not secured: decrypting changes none of them.
        original: settings.clone(),
        schema,
        bound_only,
    };
    decrypt_secured(settings, schema, &mut Vec::new(), &mut keys)?;
    let mut redactor = Redactor::new();
    secured_values(settings, schema, &mut redactor);
    Ok(redactor)
}

/// What a secured value at `path` (below the connection's object) of `connection`'s settings
/// is bound to when encrypted: its setting, and the values of the settings that say where it
/// is sent (the schema's `destination` fields) in the objects on its way, outermost first.
pub fn binding<'s>(
    connection: &str,
    path: &[PathSegment],
    settings: &'s serde_json::Value,
    schema: &SettingsSchema,
) -> Binding {
    let mut full = vec![
        PathSegment::Key("Connections".into()),
        PathSegment::Key(connection.into()),
    ];
    full.extend_from_slice(path);
    let member = |v: Option<&'s serde_json::Value>, name: &str| {
        v.and_then(|v| setting_at(v, &[PathSegment::Key(name.to_string())]))
    };
    let mut destination = Vec::new();
    let (mut here, mut schema, mut rest) = (Some(settings), schema, path);
    loop {
        // Down the object list the path goes through, if any.
        let down = match rest {
            [PathSegment::Key(k), PathSegment::Index(i), tail @ ..] => Some((k, *i, tail)),
            _ => None,
        };
        for field in schema.fields.iter().filter(|f| f.destination) {
            match member(here, field.name) {
                // Where the value lies, an optional destination left out is its default (a
                // service's own URL): a value bound to it is refused once one is set. A
                // required one left out is unknown (a file of secrets alone): the value is
                // bound to its setting only.
                None | Some(serde_json::Value::Null) if down.is_some() => {}
                None | Some(serde_json::Value::Null) if field.required => {
                    destination.clear();
                    break;
                }
                None | Some(serde_json::Value::Null) => {
                    destination.push(format!("{}=", field.name))
                }
                Some(serde_json::Value::String(s)) => {
                    destination.push(format!("{}={s}", field.name))
                }
                Some(other) => destination.push(format!("{}={other}", field.name)),
            }
        }
        let Some((k, i, tail)) = down else {
            break;
        };
        let Some(Kind::ObjectList(inner)) = schema.field(k).map(|f| f.kind) else {
            break;
        };
        here = member(here, k).and_then(|list| list.get(i));
        (schema, rest) = (inner, tail);
    }
    Binding {
        place: path_to_string(&full),
        destination,
    }
}

/// The paths (below the connection's object) of the secured settings that hold a value in
/// `settings`, in object lists too.
pub fn secured_paths(
    settings: &serde_json::Value,
    schema: &SettingsSchema,
) -> Vec<Vec<PathSegment>> {
    fn walk(
        v: &serde_json::Value,
        schema: &SettingsSchema,
        path: &mut Vec<PathSegment>,
        out: &mut Vec<Vec<PathSegment>>,
    ) {
        let Some(map) = v.as_object() else { return };
        for (k, item) in map.iter().filter(|(_, item)| !item.is_null()) {
            let Some(field) = schema.field(k) else {
                continue;
            };
            path.push(PathSegment::Key(k.clone()));
            match (field.kind, item) {
                _ if field.secured => out.push(path.clone()),
                (Kind::ObjectList(inner), serde_json::Value::Array(items)) => {
                    for (i, element) in items.iter().enumerate() {
                        path.push(PathSegment::Index(i));
                        walk(element, inner, path, out);
                        path.pop();
                    }
                }
                _ => {}
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(settings, schema, &mut Vec::new(), &mut out);
    out
}

/// The binding of the secured setting at `path` (from the top of appsettings.agent.json, as
/// `idlink protect` walks it) for the configuration `checked`; None when it is not secured.
pub fn binding_of_path(
    checked: &Checked,
    registry: &Registry,
    path: &[PathSegment],
) -> Option<Binding> {
    if !is_secured_path(checked, registry, path) {
        return None;
    }
    let [_, PathSegment::Key(connection), rest @ ..] = path else {
        return None;
    };
    let schema = schema_of(checked, registry, connection);
    let settings = match (checked.settings.connection(connection), schema) {
        (Some(s), Some(schema)) => idlink_model::settings::typed_json(s, schema),
        _ => serde_json::Value::Null,
    };
    Some(binding(
        connection,
        rest,
        &settings,
        schema.unwrap_or(&SettingsSchema::EMPTY),
    ))
}

/// The agent's key, loaded when the first encrypted value is met (never when there is none),
/// and what binds the connection's values.
struct Keys<'a, F> {
    connection: &'a str,
    load: Option<F>,
    identity: Option<AgentIdentity>,
    original: serde_json::Value,
    schema: &'static SettingsSchema,
    bound_only: bool,
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

impl<F> Keys<'_, F> {
    fn error(&self, path: &[PathSegment], message: String) -> EngineError {
        EngineError::Secret {
            connection: Some(self.connection.to_string()),
            setting: Some(path_to_string(path)),
            message,
        }
    }
}

/// Walks `v` (an object of settings of `schema`) at `path`: decrypts what secured settings
/// hold, refuses encrypted values elsewhere.
fn decrypt_secured<F: FnOnce() -> Result<Option<AgentIdentity>, EngineError>>(
    v: &mut serde_json::Value,
    schema: &SettingsSchema,
    path: &mut Vec<PathSegment>,
    keys: &mut Keys<'_, F>,
) -> Result<(), EngineError> {
    let serde_json::Value::Object(map) = v else {
        return refuse_encrypted(v, path, keys);
    };
    for (k, item) in map.iter_mut() {
        path.push(PathSegment::Key(k.clone()));
        match (schema.field(k), &mut *item) {
            (Some(field), _) if field.secured => decrypt_in(item, path, keys)?,
            (Some(field), serde_json::Value::Array(items)) => match field.kind {
                Kind::ObjectList(inner) => {
                    for (i, element) in items.iter_mut().enumerate() {
                        path.push(PathSegment::Index(i));
                        decrypt_secured(element, inner, path, keys)?;
                        path.pop();
                    }
                }
                _ => refuse_encrypted(item, path, keys)?,
            },
            _ => refuse_encrypted(item, path, keys)?,
        }
        path.pop();
    }
    Ok(())
}

/// Fails on the first encrypted string in `v`, a value of settings that are not secured,
/// without decrypting it.
fn refuse_encrypted<F>(
    v: &serde_json::Value,
    path: &mut Vec<PathSegment>,
    keys: &Keys<'_, F>,
) -> Result<(), EngineError> {
    let mut each = |step: PathSegment, item: &serde_json::Value| {
        path.push(step);
        let r = refuse_encrypted(item, path, keys);
        path.pop();
        r
    };
    match v {
        serde_json::Value::String(s) if is_encrypted(s) => Err(keys.error(
            path,
            "the value is encrypted, but the setting is not secured: only secured settings are \
             decrypted (the value of any other may be shown, in a message or a file); write this \
             one in plain text"
                .to_string(),
        )),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| each(PathSegment::Index(i), item)),
        serde_json::Value::Object(map) => map
            .iter()
            .try_for_each(|(k, item)| each(PathSegment::Key(k.clone()), item)),
        _ => Ok(()),
    }
}

/// Decrypts every encrypted string of a secured setting's value `v` at `path`, checking the
/// binding of each bound one.
fn decrypt_in<F: FnOnce() -> Result<Option<AgentIdentity>, EngineError>>(
    v: &mut serde_json::Value,
    path: &mut Vec<PathSegment>,
    keys: &mut Keys<'_, F>,
) -> Result<(), EngineError> {
    match v {
        serde_json::Value::String(s) if is_encrypted(s) => {
            let shown = path_to_string(path);
            let (secret, bound) =
                decrypt_bound(keys.get(&shown)?, s).map_err(|e| keys.error(path, e.to_string()))?;
            if bound.is_some() || keys.bound_only {
                check_binding(bound, path, keys)?;
            }
            *s = secret.expose_secret().to_string();
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(PathSegment::Index(i));
                decrypt_in(item, path, keys)?;
                path.pop();
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                path.push(PathSegment::Key(k.clone()));
                decrypt_in(item, path, keys)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks the binding a value was encrypted with (`None`: unbound) against its place `path`
/// and its connection's destination now (see [`decrypt_settings`]).
fn check_binding<F>(
    bound: Option<Binding>,
    path: &[PathSegment],
    keys: &Keys<'_, F>,
) -> Result<(), EngineError> {
    let here = binding(keys.connection, path, &keys.original, keys.schema);
    let loose = match &bound {
        None => Some("to no setting (`idlink protect --values`, or an older idlink)"),
        Some(b) if b.destination.is_empty() && !here.destination.is_empty() => Some(
            "to its setting alone (its connection's destination was unknown where it was encrypted)",
        ),
        Some(_) => None,
    };
    if let (true, Some(loose)) = (keys.bound_only, loose) {
        let from = if here.destination.is_empty() {
            String::new()
        } else {
            format!(" from settings that name {}", here.destination.join(", "))
        };
        return Err(keys.error(
            path,
            format!(
                "the value is encrypted bound {loose}, and this agent takes only values \
                 bound to their setting and destination (--bound-secrets-only): encrypt \
                 it again with `idlink protect --file`{from}"
            ),
        ));
    }
    if let Some(bound) = bound.filter(|b| !b.admits(&here)) {
        return Err(keys.error(
            path,
            format!(
                "the value was encrypted for {bound}, and is refused here ({here}): an \
                 encrypted value serves only the setting and the destination it was \
                 encrypted for, so that whoever edits the settings cannot send it \
                 elsewhere; if the change is meant, encrypt the value again (`idlink \
                 protect`, or enter it in the UI)"
            ),
        ));
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
    for path in secured_paths(v, schema) {
        match setting_at(v, &path) {
            Some(serde_json::Value::Object(m)) => {
                for value in m.values().filter_map(|x| x.as_str()) {
                    out.add(value);
                }
            }
            Some(serde_json::Value::String(s)) => out.add_connection_string(s),
            _ => {}
        }
    }
}

/// The value at `path` in settings `v` (keys compare case-insensitively, as in .NET
/// configuration).
pub fn setting_at<'v>(
    v: &'v serde_json::Value,
    path: &[PathSegment],
) -> Option<&'v serde_json::Value> {
    path.iter().try_fold(v, |v, step| match step {
        PathSegment::Key(k) => v
            .as_object()?
            .iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .map(|(_, v)| v),
        PathSegment::Index(i) => v.get(*i),
    })
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
        let redactor =
            decrypt_settings("Dir", &mut ok, (ldap.settings, false), identity).expect("decrypts");
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
            let e = decrypt_settings("Dir", &mut moved, (ldap.settings, false), identity)
                .expect_err("refused");
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("connection 'Dir': setting {path}: the value is encrypted, but the setting is not secured")),
                "{text}"
            );
            assert!(!moved.to_string().contains("pw-1"), "{moved}");
        }
    }

    /// A bound value decrypts at the setting and destination it was encrypted for, and is
    /// refused, unread, at another setting or once its connection points elsewhere.
    #[test]
    fn a_bound_value_serves_only_its_setting_and_destination() {
        let registry = Registry::new();
        let ldap = registry
            .get_static("Usercube.OpenLDAP@0000001")
            .expect("the LDAP package");
        let agent = AgentIdentity::generate();
        let settings = |server: &str, login: &str, password: &str| {
            serde_json::json!({
                "Servers": [{ "Server": server, "AuthType": "Basic", "Login": login,
                              "Password": password }],
                "Tables": [{ "Table": "entries", "BaseDN": "dc=example,dc=org" }],
            })
        };
        let plain = settings("ldap://h:389", "cn=admin", "pw-1");
        let at = |steps: &[&str]| -> Vec<PathSegment> {
            steps
                .iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(i) => PathSegment::Index(i),
                    Err(_) => PathSegment::Key((*s).to_string()),
                })
                .collect()
        };
        let password = at(&["Servers", "0", "Password"]);
        let bound = binding("Dir", &password, &plain, ldap.settings);
        assert_eq!(bound.place, "Connections.Dir.Servers[0].Password");
        assert_eq!(bound.destination, vec!["Server=ldap://h:389".to_string()]);
        let sealed =
            idlink_secrets::encrypt_bound(&agent.recipient(), &bound, "pw-1").expect("encrypts");
        let identity = || Ok(Some(agent.clone()));
        let mut ok = settings("ldap://h:389", "cn=admin", &sealed);
        decrypt_settings("dir", &mut ok, (ldap.settings, false), identity).expect("decrypts");
        assert_eq!(ok["Servers"][0]["Password"], "pw-1");
        for (mut moved, connection, path, here) in [
            (
                settings("ldap://evil:389", "cn=admin", &sealed),
                "Dir",
                "Servers[0].Password",
                "Connections.Dir.Servers[0].Password with Server=ldap://evil:389",
            ),
            (
                settings("ldap://h:389", &sealed, "pw-2"),
                "Dir",
                "Servers[0].Login",
                "Connections.Dir.Servers[0].Login with Server=ldap://h:389",
            ),
            (
                settings("ldap://h:389", "cn=admin", &sealed),
                "Other",
                "Servers[0].Password",
                "Connections.Other.Servers[0].Password with Server=ldap://h:389",
            ),
        ] {
            let e = decrypt_settings(connection, &mut moved, (ldap.settings, false), identity)
                .expect_err("refused")
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "connection '{connection}': setting {path}: the value was encrypted for \
                     Connections.Dir.Servers[0].Password with Server=ldap://h:389, and is \
                     refused here ({here})"
                )),
                "{e}"
            );
            assert!(
                !e.contains("pw-1") && !moved.to_string().contains("pw-1"),
                "{e}"
            );
        }
    }

    /// `--bound-secrets-only`: unbound values, and values bound to their setting alone where
    /// the connection names a destination, are refused; a value bound to its setting serves
    /// where the connection names none (a SQL connection string holds its own host).
    #[test]
    fn bound_only_refuses_loose_values() {
        let registry = Registry::new();
        let ldap = registry
            .get_static("Usercube.OpenLDAP@0000001")
            .expect("the LDAP package");
        let sql = registry
            .get_static("Usercube.SQL.PostgreSQL@0000001")
            .expect("the SQL package");
        let agent = AgentIdentity::generate();
        let to = agent.recipient();
        let identity = || Ok(Some(agent.clone()));
        let place = |p: &str, destination: &[&str]| idlink_secrets::Binding {
            place: p.to_string(),
            destination: destination.iter().map(|d| d.to_string()).collect(),
        };
        let password = "Connections.Dir.Servers[0].Password";
        let ldap_with = |sealed: String| {
            serde_json::json!({
                "Servers": [{ "Server": "ldap://h:389", "AuthType": "Basic", "Login": "cn=a",
                              "Password": sealed }],
                "Tables": [{ "Table": "entries", "BaseDN": "dc=example,dc=org" }],
            })
        };
        let seal = |b: Option<idlink_secrets::Binding>| match b {
            Some(b) => idlink_secrets::encrypt_bound(&to, &b, "pw-1").expect("encrypts"),
            None => idlink_secrets::encrypt_value(&to, "pw-1").expect("encrypts"),
        };
        for (bound, why) in [
            (None, "bound to no setting"),
            (Some(place(password, &[])), "bound to its setting alone"),
        ] {
            let mut loose = ldap_with(seal(bound.clone()));
            decrypt_settings("Dir", &mut loose.clone(), (ldap.settings, false), identity)
                .expect("taken when not bound-only");
            let e = decrypt_settings("Dir", &mut loose, (ldap.settings, true), identity)
                .expect_err("refused")
                .to_string();
            assert!(
                e.contains(why)
                    && e.contains("--bound-secrets-only")
                    && e.ends_with("from settings that name Server=ldap://h:389"),
                "{e}"
            );
            assert!(
                !e.contains("pw-1") && !loose.to_string().contains("pw-1"),
                "{e}"
            );
        }
        let mut tight = ldap_with(seal(Some(place(password, &["Server=ldap://h:389"]))));
        decrypt_settings("Dir", &mut tight, (ldap.settings, true), identity).expect("taken");
        assert_eq!(tight["Servers"][0]["Password"], "pw-1");
        // No destination to name: bound to its setting is enough, unbound is not.
        let cs = "Connections.Db.ConnectionString";
        let mut db = serde_json::json!({ "ConnectionString": seal(Some(place(cs, &[]))) });
        decrypt_settings("Db", &mut db, (sql.settings, true), identity).expect("taken");
        let mut db = serde_json::json!({ "ConnectionString": seal(None) });
        let e = decrypt_settings("Db", &mut db, (sql.settings, true), identity)
            .expect_err("refused")
            .to_string();
        assert!(
            e.ends_with("encrypt it again with `idlink protect --file`"),
            "{e}"
        );
    }

    /// An optional destination left at its default (Slack's own API) is part of the binding:
    /// a token bound to it is refused once a server is set. A required one left out (a file
    /// of secrets alone) leaves the value bound to its setting only.
    #[test]
    fn a_default_destination_binds_and_an_unknown_one_does_not() {
        let registry = Registry::new();
        let slack = registry
            .get_static("Usercube.SCIM.Slack@0000001")
            .expect("the Slack package");
        let scim = registry
            .get_static("Usercube.SCIM@0000001")
            .expect("the SCIM package");
        let token = [PathSegment::Key("OAuthToken".into())];
        let defaults = serde_json::json!({ "OAuthToken": "t" });
        let bound = binding("Slack", &token, &defaults, slack.settings);
        assert_eq!(
            bound.to_string(),
            "Connections.Slack.OAuthToken with Server=, OAuth2Url="
        );
        let moved = serde_json::json!({ "OAuthToken": "t", "Server": "https://evil" });
        assert!(!bound.admits(&binding("Slack", &token, &moved, slack.settings)));
        assert!(bound.admits(&binding("Slack", &token, &defaults, slack.settings)));
        // SCIM needs its Server: without it the destination is unknown.
        let secrets_alone = binding("S", &token, &defaults, scim.settings);
        assert!(secrets_alone.destination.is_empty(), "{secrets_alone}");
        let full = serde_json::json!({ "OAuthToken": "t", "Server": "https://scim" });
        assert_eq!(
            binding("S", &token, &full, scim.settings).to_string(),
            "Connections.S.OAuthToken with Server=https://scim, OAuth2Url="
        );
    }
}
