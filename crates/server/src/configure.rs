//! Editing connections: creating one (its `<Connection>` element in the connector's file and
//! its settings) and changing its settings, in place (see [`crate::edit`]).
//!
//! A change is described once, as a JSON patch of the connection's settings (what the API
//! takes; the UI's form is turned into one): a value sets a setting, `null` removes it; a
//! secured setting takes its new value as a string (encrypted to the agent's public key and
//! written into appsettings.encrypted.agent.json, its plain copy removed), `null` deletes
//! it, and an empty string or the masked read-back `{"secured": true, ...}` keeps it. Key-value
//! settings (`SecuredOptions`, `Options`) merge pair by pair; arrays of objects (LDAP
//! `Servers`, `Tables`) merge item by item, a shorter array removing the last items.
//!
//! Only settings whose value changes are written; the audit log names the settings changed,
//! never a value.

use idlink_model::package::{Kind, SettingsSchema};
use idlink_model::settings::{ENCRYPTED_SETTINGS_FILE, Entry, SettingValue};
use idlink_secrets::{AgentRecipient, PathSegment, Secret, encrypt_bound, path_to_string};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::edit::{self, Draft};
use crate::error::AppError;
use crate::state::AppState;

/// One change of a connection's settings; paths start below the connection's object.
#[derive(Debug)]
pub enum Op {
    Set(Vec<PathSegment>, Value),
    Secure(Vec<PathSegment>, Secret),
    Remove(Vec<PathSegment>),
}

impl Op {
    /// What the audit log says (setting names, never values).
    fn describe(&self) -> String {
        match self {
            Op::Set(p, _) => format!("set {}", path_to_string(p)),
            Op::Secure(p, _) => format!("set secured {}", path_to_string(p)),
            Op::Remove(p) => format!("removed {}", path_to_string(p)),
        }
    }
}

fn key(k: &str) -> PathSegment {
    PathSegment::Key(k.to_string())
}

fn with(prefix: &[PathSegment], step: PathSegment) -> Vec<PathSegment> {
    let mut p = prefix.to_vec();
    p.push(step);
    p
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether the setting already holds `new` (scalars compare as text: `"30"` is `30`).
fn same(current: &SettingValue, new: &Value) -> bool {
    match (current, new) {
        (SettingValue::Array(items), Value::Array(news)) => {
            items.len() == news.len() && items.iter().zip(news).all(|(a, b)| same(&a.value, b))
        }
        (SettingValue::Object(_), _) | (_, Value::Object(_)) => current.to_json() == *new,
        _ => match (current.as_scalar_text(), scalar_text(new)) {
            (Some(a), Some(b)) => a == b,
            _ => current.to_json() == *new,
        },
    }
}

fn lookup<'e>(entries: &'e [Entry], name: &str) -> Option<&'e Entry> {
    entries
        .iter()
        .rev()
        .find(|(k, _)| k.value.eq_ignore_ascii_case(name))
}

fn is_masked(v: &Value) -> bool {
    v.get("secured") == Some(&Value::Bool(true))
}

/// The operations a patch makes on settings `current` (the running ones) of schema `schema`.
pub fn plan(
    schema: &SettingsSchema,
    current: &[Entry],
    patch: &Map<String, Value>,
    prefix: &[PathSegment],
    out: &mut Vec<Op>,
) -> Result<(), AppError> {
    for (name, v) in patch {
        let field = schema.field(name).ok_or_else(|| {
            let known: Vec<&str> = schema.fields.iter().map(|f| f.name).collect();
            AppError::BadRequest(format!(
                "'{name}' is not a setting of this package; its settings are {}",
                known.join(", ")
            ))
        })?;
        let cur = lookup(current, name);
        // Keep the key as written in the file; a new key takes the documented spelling.
        let path = with(
            prefix,
            key(cur.map_or(field.name, |(k, _)| k.value.as_str())),
        );
        match (field.kind, v) {
            (_, Value::Null) => {
                if cur.is_some() {
                    out.push(Op::Remove(path));
                }
            }
            (Kind::Map, Value::Object(pairs)) => {
                let cur_pairs: &[Entry] = match cur.map(|(_, v)| &v.value) {
                    Some(SettingValue::Object(e)) => e,
                    _ => &[],
                };
                for (k, pv) in pairs {
                    let pc = lookup(cur_pairs, k);
                    let p = with(&path, key(pc.map_or(k.as_str(), |(k, _)| k.value.as_str())));
                    match pv {
                        Value::Null if pc.is_some() => out.push(Op::Remove(p)),
                        Value::Null => {}
                        v if is_masked(v) => {}
                        Value::String(s) if field.secured => {
                            if !s.is_empty() {
                                out.push(Op::Secure(p, Secret::new(s.clone())));
                            }
                        }
                        Value::String(_) => {
                            if !pc.is_some_and(|(_, c)| same(&c.value, pv)) {
                                out.push(Op::Set(p, pv.clone()));
                            }
                        }
                        _ => {
                            return Err(AppError::BadRequest(format!(
                                "the values of {name} are strings ('{k}' is not)"
                            )));
                        }
                    }
                }
            }
            (Kind::ObjectList(inner), Value::Array(items)) => {
                let cur_items: &[idlink_model::Sp<SettingValue>] = match cur.map(|(_, v)| &v.value)
                {
                    Some(SettingValue::Array(a)) => a,
                    _ => &[],
                };
                for (i, item) in items.iter().enumerate() {
                    let Value::Object(o) = item else {
                        return Err(AppError::BadRequest(format!(
                            "{name} takes an array of objects"
                        )));
                    };
                    let p = with(&path, PathSegment::Index(i));
                    let cur_entries: &[Entry] = match cur_items.get(i).map(|v| &v.value) {
                        Some(SettingValue::Object(e)) => e,
                        _ => {
                            out.push(Op::Set(p.clone(), json!({})));
                            &[]
                        }
                    };
                    plan(inner, cur_entries, o, &p, out)?;
                }
                for i in (items.len()..cur_items.len()).rev() {
                    out.push(Op::Remove(with(&path, PathSegment::Index(i))));
                }
            }
            (Kind::Map, _) => {
                return Err(AppError::BadRequest(format!(
                    "{name} takes an object of string values"
                )));
            }
            (Kind::ObjectList(_), _) => {
                return Err(AppError::BadRequest(format!(
                    "{name} takes an array of objects"
                )));
            }
            (_, v) if field.secured && is_masked(v) => {}
            (_, Value::String(s)) if field.secured => {
                if !s.is_empty() {
                    out.push(Op::Secure(path, Secret::new(s.clone())));
                }
            }
            (_, _) if field.secured => {
                return Err(AppError::BadRequest(format!(
                    "{name} is secured: give its new value as a string, or null to delete it"
                )));
            }
            (Kind::Bool | Kind::Enum(_), v) => {
                // Compared as .NET reads them: case-insensitively.
                let unchanged =
                    cur.is_some_and(|(_, c)| match (c.value.as_scalar_text(), scalar_text(v)) {
                        (Some(a), Some(b)) => a.eq_ignore_ascii_case(&b),
                        _ => false,
                    });
                if !unchanged {
                    out.push(Op::Set(path, v.clone()));
                }
            }
            (_, v) => {
                if !cur.is_some_and(|(_, c)| same(&c.value, v)) {
                    out.push(Op::Set(path, v.clone()));
                }
            }
        }
    }
    Ok(())
}

/// The text of a new settings file.
const NEW_SETTINGS: &str = "{\n  \"Connections\": {}\n}\n";
/// The text of a new encrypted settings file.
const NEW_ENCRYPTED: &str = "{\n  // Secured settings, encrypted to the agent's public key. These values override\n  // appsettings.agent.json and the environment.\n  \"Connections\": {}\n}\n";

/// The public key secured values of a connection are encrypted to: its remote agent's
/// registered key (`agent`: the connection's or its connector's agent, when it is not this
/// server's embedded one), else the embedded agent's key from the running configuration.
async fn recipient(state: &AppState, agent: Option<String>) -> Result<AgentRecipient, AppError> {
    if let Some(agent) = agent {
        let record = state.store().agent(&agent).await?.ok_or_else(|| {
            AppError::BadRequest(format!(
                "the connection runs on agent '{agent}', which has not enrolled yet: its secured values are encrypted to its public key, so start `idlink agent --agent {agent}` first (the server never holds them in clear)"
            ))
        })?;
        if record.state == idlink_store::AgentState::Revoked {
            return Err(AppError::BadRequest(format!(
                "the connection runs on agent '{agent}', which was revoked: nothing is encrypted to a revoked key"
            )));
        }
        return idlink_secrets::parse_recipient(&record.public_key)
            .map_err(|e| AppError::Internal(format!("agent '{agent}''s stored key: {e}")));
    }
    let engine = state.engine()?;
    let settings = state.paths().settings_file();
    let base = settings.parent().map_or_else(
        || std::path::PathBuf::from("."),
        std::path::Path::to_path_buf,
    );
    match idlink_engine::secured::agent_identity(engine.checked(), &base) {
        Ok(Some(identity)) => Ok(identity.recipient()),
        Ok(None) => Err(AppError::BadRequest(
            "a secured value is encrypted to the agent's public key, and no agent key is configured: create one with `idlink keygen --out FILE` and name it in EncryptionIdentity of appsettings.agent.json (or in IDLINK_AGENT_KEY)".into(),
        )),
        Err(e) => Err(AppError::BadRequest(format!(
            "cannot read the agent key to encrypt the secured value: {e}"
        ))),
    }
}

/// The key for `ops` when one of them secures a value (`agent` as for [`recipient`]).
async fn recipient_for(
    state: &AppState,
    ops: &[Op],
    agent: Option<String>,
) -> Result<Option<AgentRecipient>, AppError> {
    if ops.iter().any(|o| matches!(o, Op::Secure(..))) {
        Ok(Some(recipient(state, agent).await?))
    } else {
        Ok(None)
    }
}

/// `settings` (a connection's, as JSON) once the plain changes of `ops` are made: what a secured
/// value entered with them is bound to (its connection's destination as it will be).
fn settings_after(mut settings: Value, ops: &[Op]) -> Value {
    fn slot<'v>(v: &'v mut Value, step: &PathSegment) -> &'v mut Value {
        match step {
            PathSegment::Key(k) => {
                if !v.is_object() {
                    *v = json!({});
                }
                let map = v.as_object_mut().expect("an object");
                let name = map
                    .keys()
                    .find(|x| x.eq_ignore_ascii_case(k))
                    .cloned()
                    .unwrap_or_else(|| k.clone());
                map.entry(name).or_insert(Value::Null)
            }
            PathSegment::Index(i) => {
                if !v.is_array() {
                    *v = json!([]);
                }
                let items = v.as_array_mut().expect("an array");
                if items.len() <= *i {
                    items.resize(i + 1, Value::Null);
                }
                &mut items[*i]
            }
        }
    }
    for op in ops {
        match op {
            Op::Set(p, value) => {
                *p.iter().fold(&mut settings, |v, step| slot(v, step)) = value.clone();
            }
            Op::Remove(p) => {
                if let Some(at) = p.iter().try_fold(&mut settings, |v, step| match (v, step) {
                    (Value::Object(m), PathSegment::Key(k)) => m
                        .iter_mut()
                        .find(|(x, _)| x.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v),
                    (Value::Array(a), PathSegment::Index(i)) => a.get_mut(*i),
                    _ => None,
                }) {
                    *at = Value::Null;
                }
            }
            Op::Secure(..) => {}
        }
    }
    settings
}

/// Applies `ops` to the settings files of `connection` in `draft`; `after` is the
/// connection's settings once they are made ([`settings_after`]), `schema` its package's.
fn apply(
    state: &AppState,
    draft: &mut Draft,
    connection: &str,
    (after, schema): (&Value, &SettingsSchema),
    ops: &[Op],
    recipient: Option<AgentRecipient>,
) -> Result<(), AppError> {
    let plain_path = state.paths().settings_file();
    let enc_path = plain_path.with_file_name(ENCRYPTED_SETTINGS_FILE);
    let full = |p: &[PathSegment]| {
        let mut f = vec![key("Connections"), key(connection)];
        f.extend_from_slice(p);
        f
    };
    for op in ops {
        match op {
            Op::Set(p, v) => {
                let t = draft.text(&plain_path, Some(NEW_SETTINGS))?;
                *t = edit::json_set(t, &plain_path, &full(p), edit::input_value(v))?;
            }
            Op::Secure(p, secret) => {
                draft.secrets.add(secret.expose_secret());
                let Some(r) = &recipient else {
                    return Err(AppError::Internal("no recipient".into()));
                };
                // Bound to its setting and to where the connection sends it (see
                // `idlink_secrets::Binding`): the agent refuses it anywhere else.
                let binding = idlink_engine::secured::binding(connection, p, after, schema);
                let value = encrypt_bound(r, &binding, secret.expose_secret())
                    .map_err(|e| AppError::Internal(format!("cannot encrypt: {e}")))?;
                let t = draft.text(&enc_path, Some(NEW_ENCRYPTED))?;
                *t = edit::json_set(
                    t,
                    &enc_path,
                    &full(p),
                    jsonc_parser::cst::CstInputValue::String(value),
                )?;
                let t = draft.text(&plain_path, Some(NEW_SETTINGS))?;
                *t = edit::json_remove(t, &plain_path, &full(p))?;
            }
            Op::Remove(p) => {
                let t = draft.text(&plain_path, Some(NEW_SETTINGS))?;
                *t = edit::json_remove(t, &plain_path, &full(p))?;
                if enc_path.exists() {
                    let t = draft.text(&enc_path, None)?;
                    *t = edit::json_remove(t, &enc_path, &full(p))?;
                }
            }
        }
    }
    Ok(())
}

fn package_schema(
    engine: &idlink_engine::Engine,
    package: &str,
) -> Result<&'static SettingsSchema, AppError> {
    let info = engine.registry().get_static(package).ok_or_else(|| {
        AppError::BadRequest(format!("package '{package}' is not known to this build"))
    })?;
    if info.availability != idlink_model::package::Availability::Supported {
        return Err(AppError::BadRequest(format!(
            "package '{package}' cannot run in this build: its settings cannot be edited here"
        )));
    }
    Ok(info.settings)
}

/// What a change of settings did: the settings changed (names), and what the user must know
/// (secured values the agent now refuses).
#[derive(Debug, Default)]
pub struct Updated {
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
}

/// The secured values of `before` that its change by `ops` leaves bound to a destination the
/// connection no longer has (the agent refuses them): one warning each. The server cannot
/// read them; a value encrypted unbound or for its setting alone would still serve.
fn rebinding_warnings(
    connection: &str,
    (before, after): (&Value, &Value),
    schema: &SettingsSchema,
    ops: &[Op],
) -> Vec<String> {
    use idlink_engine::secured::{binding, secured_paths, setting_at};
    let entered = |p: &[PathSegment]| {
        ops.iter().any(|op| match op {
            Op::Secure(q, _) | Op::Remove(q) => p.starts_with(q),
            Op::Set(..) => false,
        })
    };
    // Only encrypted values are bound (a secured value left in plain text is not).
    let encrypted = |p: &[PathSegment]| match setting_at(before, p) {
        Some(Value::String(s)) => idlink_secrets::is_encrypted(s),
        Some(Value::Object(pairs)) => pairs
            .values()
            .any(|v| v.as_str().is_some_and(idlink_secrets::is_encrypted)),
        _ => false,
    };
    secured_paths(before, schema)
        .into_iter()
        .filter(|p| !entered(p) && encrypted(p))
        .filter_map(|p| {
            let (old, new) = (
                binding(connection, &p, before, schema),
                binding(connection, &p, after, schema),
            );
            let moved = !old.destination.is_empty() && old.destination != new.destination;
            moved.then(|| {
                let now = if new.destination.is_empty() {
                    "without them".to_string()
                } else {
                    format!("with {}", new.destination.join(", "))
                };
                format!(
                    "{}: a value encrypted here with {} (by this page or `idlink protect --file`) is refused by the agent {now}: enter it again",
                    path_to_string(&p),
                    old.destination.join(", "),
                )
            })
        })
        .collect()
}

/// Changes the settings of `id` by `patch`; returns what changed (setting names) and warnings.
pub async fn update_settings(
    state: &AppState,
    who: &str,
    id: &str,
    patch: &Map<String, Value>,
) -> Result<Updated, AppError> {
    let _lock = state.edit_lock().await;
    let engine = state.engine()?;
    let connection = engine.checked().config.connection(id).ok_or_else(|| {
        AppError::from(idlink_engine::EngineError::UnknownConnection {
            id: id.to_string(),
            suggestion: None,
        })
    })?;
    let cid = connection.id.value.clone();
    let schema = package_schema(&engine, &connection.package.value)?;
    let current = engine
        .checked()
        .settings
        .connection(&cid)
        .map(|s| s.entries.clone())
        .unwrap_or_default();
    // The key as written under Connections, when there is one.
    let written = engine
        .checked()
        .settings
        .connection(&cid)
        .map_or_else(|| cid.clone(), |s| s.id.value.clone());
    let mut ops = Vec::new();
    plan(schema, &current, patch, &[], &mut ops)?;
    let changes: Vec<String> = ops.iter().map(Op::describe).collect();
    if ops.is_empty() {
        return Ok(Updated {
            changes,
            warnings: Vec::new(),
        });
    }
    let local = state.agent_options().local_agent.clone();
    let to = recipient_for(state, &ops, engine.remote_agent_of(&cid, None, &local)).await?;
    let before = engine.checked().settings.connection(&cid).map_or_else(
        || json!({}),
        |s| idlink_model::settings::typed_json(s, schema),
    );
    let after = settings_after(before.clone(), &ops);
    let warnings = rebinding_warnings(&cid, (&before, &after), schema, &ops);
    let mut draft = Draft::new();
    apply(state, &mut draft, &written, (&after, schema), &ops, to)?;
    edit::commit(state, draft).await?;
    state
        .store()
        .audit(who, "edit-connection", &cid, &changes.join("; "))
        .await?;
    Ok(Updated { changes, warnings })
}

/// A connection to create.
#[derive(Debug, Deserialize)]
pub struct NewConnection {
    pub identifier: String,
    pub name: String,
    pub connector: String,
    pub package: String,
    #[serde(default)]
    pub settings: Map<String, Value>,
}

/// Creates the connection: its element goes into the connector's file, after the connector's
/// last connection (or after the connector), its settings into the settings files. Returns
/// its identifier.
pub async fn create(state: &AppState, who: &str, new: &NewConnection) -> Result<String, AppError> {
    let _lock = state.edit_lock().await;
    let engine = state.engine()?;
    let config = &engine.checked().config;
    let id = new.identifier.trim().to_string();
    let name = new.name.trim().to_string();
    if id.is_empty() {
        return Err(AppError::BadRequest(
            "give the connection an identifier".into(),
        ));
    }
    if name.is_empty() {
        return Err(AppError::BadRequest("give the connection a name".into()));
    }
    if let Some(c) = config
        .connections
        .iter()
        .find(|c| c.id.value.eq_ignore_ascii_case(&id))
    {
        return Err(AppError::BadRequest(format!(
            "connection '{}' exists already ({}): choose another identifier",
            c.id.value, c.at
        )));
    }
    let connector = engine.connector_id(new.connector.trim())?;
    let package = new.package.trim();
    let schema = package_schema(&engine, package)?;
    let file = config
        .connector(&connector)
        .map(|c| std::path::PathBuf::from(&*c.at.file))
        .ok_or_else(|| AppError::NotFound(format!("connector '{connector}' is not declared")))?;
    let mut draft = Draft::new();
    let text = draft.text(&file, None)?;
    let anchor = edit::last_element_range(text, |tag, attr| {
        tag == "Connection" && attr("Connector").is_some_and(|c| c == connector)
    })?;
    let anchor = match anchor {
        Some(a) => a,
        None => edit::element_range(text, "Connector", &connector)?.ok_or_else(|| {
            AppError::Internal(format!("connector '{connector}' not found in its file"))
        })?,
    };
    let element = format!(
        "<Connection Identifier=\"{}\" DisplayName_L1=\"{}\" Connector=\"{}\" Package=\"{}\" />",
        edit::xml_attr(&id),
        edit::xml_attr(&name),
        edit::xml_attr(&connector),
        edit::xml_attr(package)
    );
    *text = edit::insert_after(text, &anchor, &element);
    let mut ops = vec![Op::Set(Vec::new(), json!({}))];
    plan(schema, &[], &new.settings, &[], &mut ops)?;
    let local = state.agent_options().local_agent.clone();
    let agent = config
        .connector(&connector)
        .and_then(|c| c.agent.as_ref())
        .map(|a| a.value.clone())
        .filter(|a| !a.eq_ignore_ascii_case(&local));
    let to = recipient_for(state, &ops, agent).await?;
    // The connection's own object first, then its settings inside it.
    let plain_path = state.paths().settings_file();
    let t = draft.text(&plain_path, Some(NEW_SETTINGS))?;
    *t = edit::json_set(
        t,
        &plain_path,
        &[key("Connections"), key(&id)],
        jsonc_parser::cst::CstInputValue::Object(Vec::new()),
    )?;
    let after = settings_after(json!({}), &ops[1..]);
    apply(state, &mut draft, &id, (&after, schema), &ops[1..], to)?;
    edit::commit(state, draft).await?;
    let settings: Vec<String> = ops[1..].iter().map(Op::describe).collect();
    state
        .store()
        .audit(
            who,
            "create-connection",
            &id,
            &format!(
                "connector {connector}, package {package}{}{}",
                if settings.is_empty() { "" } else { "; " },
                settings.join("; ")
            ),
        )
        .await?;
    Ok(id)
}

/// Deletes the connection: its element (with its line) and its settings in both settings
/// files. What still refers to it (mappings, tables, tasks) makes the change fail check, and
/// then nothing is written.
pub async fn delete(state: &AppState, who: &str, id: &str) -> Result<String, AppError> {
    let _lock = state.edit_lock().await;
    let engine = state.engine()?;
    let connection = engine.checked().config.connection(id).ok_or_else(|| {
        AppError::from(idlink_engine::EngineError::UnknownConnection {
            id: id.to_string(),
            suggestion: None,
        })
    })?;
    let cid = connection.id.value.clone();
    let package = connection.package.value.clone();
    let file = std::path::PathBuf::from(&*connection.at.file);
    let written = engine
        .checked()
        .settings
        .connection(&cid)
        .map_or_else(|| cid.clone(), |s| s.id.value.clone());
    drop(engine);
    let mut draft = Draft::new();
    let text = draft.text(&file, None)?;
    let range = edit::element_range(text, "Connection", &cid)?.ok_or_else(|| {
        AppError::NotFound(format!(
            "the Connection element of '{cid}' is not in '{}' any more: reload the page",
            file.display()
        ))
    })?;
    *text = edit::remove_element(text, &range);
    let path = [key("Connections"), key(&written)];
    let plain_path = state.paths().settings_file();
    for p in [
        plain_path.clone(),
        plain_path.with_file_name(ENCRYPTED_SETTINGS_FILE),
    ] {
        if p.exists() {
            let t = draft.text(&p, None)?;
            *t = edit::json_remove(t, &p, &path)?;
        }
    }
    edit::commit(state, draft).await?;
    state
        .store()
        .audit(
            who,
            "delete-connection",
            &cid,
            &format!("package {package}"),
        )
        .await?;
    Ok(cid)
}

// ---------------------------------------------------------------- the UI's form

/// The form's fields: `f.<path>` values, `del.<path>` deletes a secured value, `mk.<path>.<j>`
/// / `mv.<path>.<j>` / `mdel.<path>.<j>` key-value pairs (`j` = `new` for a new pair),
/// `n.<path>` the number of items of an array of objects shown, `idel.<path>` removes its last.
pub type Form = Vec<(String, String)>;

fn field<'f>(form: &'f Form, name: &str) -> Option<&'f str> {
    form.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn typed(kind: Kind, text: &str) -> Value {
    match kind {
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        Kind::Int { .. } => text
            .trim()
            .parse::<i64>()
            .map_or_else(|_| Value::String(text.to_string()), |n| json!(n)),
        Kind::StringList => Value::Array(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| Value::String(l.to_string()))
                .collect(),
        ),
        _ => Value::String(text.to_string()),
    }
}

/// The settings patch a submitted form means.
pub fn form_patch(
    schema: &SettingsSchema,
    current: &[Entry],
    form: &Form,
    prefix: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    for f in schema.fields {
        let base = format!("{prefix}{}", f.name);
        let present = lookup(current, f.name);
        match f.kind {
            Kind::Map => {
                let mut pairs = Map::new();
                for j in 0.. {
                    let Some(k) = field(form, &format!("mk.{base}.{j}")) else {
                        break;
                    };
                    let v = field(form, &format!("mv.{base}.{j}")).unwrap_or_default();
                    if field(form, &format!("mdel.{base}.{j}")).is_some() {
                        pairs.insert(k.to_string(), Value::Null);
                    } else if !f.secured || !v.is_empty() {
                        pairs.insert(k.to_string(), Value::String(v.to_string()));
                    }
                }
                let nk = field(form, &format!("mk.{base}.new"))
                    .unwrap_or_default()
                    .trim();
                if !nk.is_empty() {
                    let nv = field(form, &format!("mv.{base}.new")).unwrap_or_default();
                    pairs.insert(nk.to_string(), Value::String(nv.to_string()));
                }
                if !pairs.is_empty() {
                    out.insert(f.name.to_string(), Value::Object(pairs));
                }
            }
            Kind::ObjectList(inner) => {
                let Some(n) =
                    field(form, &format!("n.{base}")).and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                let cur_items: &[idlink_model::Sp<SettingValue>] =
                    match present.map(|(_, v)| &v.value) {
                        Some(SettingValue::Array(a)) => a,
                        _ => &[],
                    };
                let keep = if field(form, &format!("idel.{base}")).is_some() {
                    n.saturating_sub(1)
                } else {
                    n
                };
                let mut items = Vec::new();
                for i in 0..keep {
                    let cur: &[Entry] = match cur_items.get(i).map(|v| &v.value) {
                        Some(SettingValue::Object(e)) => e,
                        _ => &[],
                    };
                    items.push(Value::Object(form_patch(
                        inner,
                        cur,
                        form,
                        &format!("{base}.{i}."),
                    )));
                }
                let new = form_patch(inner, &[], form, &format!("{base}.new."));
                if new.values().any(|v| !v.is_null()) {
                    items.push(Value::Object(new));
                }
                out.insert(f.name.to_string(), Value::Array(items));
            }
            _ if f.secured => {
                if field(form, &format!("del.{base}")).is_some() {
                    out.insert(f.name.to_string(), Value::Null);
                } else if let Some(v) = field(form, &format!("f.{base}")).filter(|v| !v.is_empty())
                {
                    out.insert(f.name.to_string(), Value::String(v.to_string()));
                }
            }
            kind => match field(form, &format!("f.{base}")) {
                None => {}
                // A list written as one string (as the documentation writes some) and shown
                // as it is: unchanged, it stays a string.
                Some(v)
                    if matches!(kind, Kind::StringList)
                        && present
                            .and_then(|(_, c)| match &c.value {
                                SettingValue::String(s) => Some(s.trim() == v.trim()),
                                _ => None,
                            })
                            .unwrap_or(false) => {}
                Some(v) if v.trim().is_empty() && present.is_some() => {
                    out.insert(f.name.to_string(), Value::Null);
                }
                Some(v) if v.trim().is_empty() => {}
                Some(v) => {
                    out.insert(f.name.to_string(), typed(kind, v));
                }
            },
        }
    }
    out
}

/// The form's fields for settings `current` of schema `schema` (secured values never
/// included: only whether they are set).
pub fn form_fields(schema: &SettingsSchema, current: &[Entry], prefix: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for f in schema.fields {
        let present = lookup(current, f.name).map(|(_, v)| &v.value);
        if f.no_effect.is_some() && present.is_none() {
            continue;
        }
        let base = format!("{prefix}{}", f.name);
        let mut v = json!({
            "name": f.name,
            "path": base,
            "kind": f.kind.describe(),
            "required": f.required,
            "secured": f.secured,
            "doc": f.doc,
        });
        match f.kind {
            Kind::Map => {
                let pairs: Vec<Value> = match present {
                    Some(SettingValue::Object(e)) => e
                        .iter()
                        .map(|(k, pv)| {
                            json!({
                                "key": k.value,
                                "value": if f.secured { Value::Null } else { json!(pv.value.as_scalar_text().unwrap_or_default()) },
                            })
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                v["input"] = json!("map");
                v["pairs"] = json!(pairs);
            }
            Kind::ObjectList(inner) => {
                let items: Vec<Value> = match present {
                    Some(SettingValue::Array(a)) => a
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            let e: &[Entry] = match &item.value {
                                SettingValue::Object(e) => e,
                                _ => &[],
                            };
                            json!({ "index": i, "fields": form_fields(inner, e, &format!("{base}.{i}.")) })
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                v["input"] = json!("objects");
                v["items"] = json!(items);
                v["new"] = json!(form_fields(inner, &[], &format!("{base}.new.")));
            }
            _ if f.secured => {
                v["input"] = json!("secured");
                v["set"] = json!(present.is_some_and(|p| !matches!(p, SettingValue::Null)
                    && p.as_scalar_text().is_none_or(|s| !s.is_empty())));
            }
            Kind::Bool => {
                v["input"] = json!("select");
                v["options"] = json!(["true", "false"]);
                v["value"] = json!(
                    present
                        .and_then(SettingValue::as_scalar_text)
                        .map(|s| s.to_ascii_lowercase())
                );
            }
            Kind::Enum(values) => {
                v["input"] = json!("select");
                let cur = present.and_then(SettingValue::as_scalar_text);
                // The value as written, when it matches an option case-insensitively.
                let cur = cur.map(|c| {
                    values
                        .iter()
                        .find(|o| o.eq_ignore_ascii_case(&c))
                        .map_or(c, |o| (*o).to_string())
                });
                v["options"] = json!(values);
                v["value"] = json!(cur);
            }
            Kind::Int { min, max } => {
                v["input"] = json!("number");
                v["min"] = json!(min);
                v["max"] = json!(max);
                v["value"] = json!(present.and_then(SettingValue::as_scalar_text));
            }
            Kind::StringList => {
                v["input"] = json!("list");
                let text = match present {
                    Some(SettingValue::Array(a)) => a
                        .iter()
                        .filter_map(|x| x.value.as_scalar_text())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Some(other) => other.as_scalar_text().unwrap_or_default(),
                    None => String::new(),
                };
                v["value"] = json!(text);
            }
            Kind::String | Kind::CheckedString(_) => {
                v["input"] = json!("text");
                v["value"] = json!(present.and_then(SettingValue::as_scalar_text));
            }
        }
        out.push(v);
    }
    out
}
