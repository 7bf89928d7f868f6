//! `appsettings.agent.json`: connection settings by identifier, `SourcesRootPaths`,
//! `EncryptionIdentity`, and environment overrides `IDLINK__Connections__<id>__<Setting>`.
//!
//! The file is read as .NET reads it: comments and trailing commas are accepted, keys compare
//! case-insensitively, and environment values are strings that stand for any scalar.
//! Every value keeps its location (file:line:col, or the environment variable it came from).

use std::collections::HashMap;
use std::sync::Arc;

use jsonc_parser::ast::{Object, Value as Ast};
use jsonc_parser::{CollectOptions, ParseOptions};

use crate::diag::{Diagnostic, Diagnostics, Loc, Rule, Sp};
use crate::package::{Constraint, Kind, SettingsSchema};
use crate::text::{LineIndex, decode_utf8};

/// The prefix of environment overrides; `__` separates the levels.
pub const ENV_PREFIX: &str = "IDLINK__";

/// The encrypted companion of appsettings.agent.json, in the same folder and of the same shape;
/// its values override the plain file's and the environment's.
pub const ENCRYPTED_SETTINGS_FILE: &str = "appsettings.encrypted.agent.json";

/// How an encrypted value starts (`age:` + base64 of an age ciphertext; see `idlink-secrets`).
pub const ENCRYPTED_PREFIX: &str = "age:";

/// A settings value with locations all the way down.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    Null,
    Bool(bool),
    /// As written, so nothing is lost to float conversion.
    Number(String),
    String(String),
    Array(Vec<Sp<SettingValue>>),
    Object(Vec<Entry>),
}

/// One key of an object.
pub type Entry = (Sp<String>, Sp<SettingValue>);

impl SettingValue {
    fn type_name(&self) -> &'static str {
        match self {
            SettingValue::Null => "null",
            SettingValue::Bool(_) => "a boolean",
            SettingValue::Number(_) => "a number",
            SettingValue::String(_) => "a string",
            SettingValue::Array(_) => "an array",
            SettingValue::Object(_) => "an object",
        }
    }

    /// The scalar as text (strings, numbers, booleans); `None` for null, arrays and objects.
    pub fn as_scalar_text(&self) -> Option<String> {
        match self {
            SettingValue::Bool(b) => Some(b.to_string()),
            SettingValue::Number(n) => Some(n.clone()),
            SettingValue::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Plain JSON, for packages that deserialize their typed settings with serde.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            SettingValue::Null => J::Null,
            SettingValue::Bool(b) => J::Bool(*b),
            SettingValue::Number(n) => n
                .parse::<serde_json::Number>()
                .map_or_else(|_| J::String(n.clone()), J::Number),
            SettingValue::String(s) => J::String(s.clone()),
            SettingValue::Array(items) => {
                J::Array(items.iter().map(|v| v.value.to_json()).collect())
            }
            SettingValue::Object(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// The settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// The key as written under `Connections`.
    pub id: Sp<String>,
    pub entries: Vec<Entry>,
}

impl ConnectionSettings {
    /// Case-insensitive lookup, as .NET configuration does.
    pub fn get(&self, key: &str) -> Option<&Sp<SettingValue>> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k.value.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    pub fn to_json(&self) -> serde_json::Value {
        SettingValue::Object(self.entries.clone()).to_json()
    }
}

/// The agent's settings file, merged with environment overrides.
#[derive(Debug, Clone, Default)]
pub struct AgentSettings {
    /// The file read, if there was one.
    pub file: Option<String>,
    pub connections: Vec<ConnectionSettings>,
    pub sources_root_paths: Vec<Sp<String>>,
    pub encryption_identity: Option<Sp<String>>,
    /// The file could not be parsed (reported as `json-syntax`): connections are not reported
    /// as lacking settings that may well be in it.
    pub unreadable: bool,
    /// Documented top-level sections idlink reads without effect (the agent settings page's
    /// other sections), for `check -v` (see [`NoEffect`]).
    pub without_effect: Vec<NoEffect>,
    /// Lower-cased connection identifier -> index in `connections`.
    index: HashMap<String, usize>,
}

/// A documented item idlink accepts without effect: not a warning, an information `check -v`
/// shows at most once per kind (see [`once_per_kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEffect {
    /// What it is, the same for every occurrence of one kind: `top-level section 'OpenId'`,
    /// `setting NoSigning of Usercube.LDAP@0000001`.
    pub kind: String,
    /// Where it was first seen.
    pub at: Loc,
    /// Why it has no effect in idlink.
    pub why: &'static str,
}

impl std::fmt::Display for NoEffect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} without effect in idlink: {}",
            self.at, self.kind, self.why
        )
    }
}

/// The first of each kind, in order.
pub fn once_per_kind(items: impl IntoIterator<Item = NoEffect>) -> Vec<NoEffect> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|n| seen.insert(n.kind.clone()))
        .collect()
}

/// The settings of one connection that its package's schema marks as without effect
/// (`Field::no_effect`), nested lists included.
pub fn settings_without_effect(
    settings: &ConnectionSettings,
    package: &str,
    schema: &SettingsSchema,
) -> Vec<NoEffect> {
    let mut out = Vec::new();
    collect_no_effect(&settings.entries, package, schema, &mut out);
    out
}

fn collect_no_effect(
    entries: &[Entry],
    package: &str,
    schema: &SettingsSchema,
    out: &mut Vec<NoEffect>,
) {
    for (key, value) in entries {
        let Some(field) = schema.field(&key.value) else {
            continue;
        };
        if let Some(why) = field.no_effect {
            out.push(NoEffect {
                kind: format!("setting {} of {package}", field.name),
                at: key.at.clone(),
                why,
            });
        }
        if let (Kind::ObjectList(inner), SettingValue::Array(items)) = (field.kind, &value.value) {
            for item in items {
                if let SettingValue::Object(e) = &item.value {
                    collect_no_effect(e, package, inner, out);
                }
            }
        }
    }
}

impl AgentSettings {
    /// No settings yet; `file` names where they were looked for.
    pub fn empty(file: Option<String>) -> Self {
        AgentSettings {
            file,
            ..AgentSettings::default()
        }
    }

    /// Settings of a connection; connection identifiers are case-insensitive.
    pub fn connection(&self, id: &str) -> Option<&ConnectionSettings> {
        self.index
            .get(&id.to_lowercase())
            .map(|&i| &self.connections[i])
    }

    fn connection_mut(&mut self, id: &str, at: &Loc) -> &mut ConnectionSettings {
        let len = self.connections.len();
        let i = *self.index.entry(id.to_lowercase()).or_insert(len);
        if i == len {
            self.connections.push(ConnectionSettings {
                id: Sp::new(id.to_string(), at.clone()),
                entries: Vec::new(),
            });
        }
        &mut self.connections[i]
    }
}

/// Top-level sections of Netwrix settings files that idlink reads without effect, and why:
/// the agent settings page's other sections (Databases, OpenId, PasswordResetSettings,
/// TaskAgentConfiguration), and sections of the product's other settings files that are
/// often copied into this one.
pub const SECTIONS_WITHOUT_EFFECT: &[(&str, &str)] = &[
    (
        "OpenId",
        "client ids and secrets the Netwrix agent uses to start jobs on the Netwrix server; idlink's agent does not authenticate with OpenId",
    ),
    (
        "PasswordResetSettings",
        "settings of the password reset process (certificate, mail, notifications, two-way tokens); idlink does not run password resets",
    ),
    (
        "Databases",
        "connection strings for InvokeSqlCommandTask; idlink has no such task",
    ),
    (
        "TaskAgentConfiguration",
        "tunes tasks of the Netwrix agent; idlink's tasks take no such settings",
    ),
    (
        "Logging",
        "logging of the .NET host; idlink logs through tracing (-v, RUST_LOG)",
    ),
    (
        "Serilog",
        "logging of the .NET host; idlink logs through tracing (-v, RUST_LOG)",
    ),
    (
        "Scheduler",
        "the Netwrix server's scheduler; idlink schedules jobs from their CrontabExpression",
    ),
    (
        "EncryptionCertificate",
        "the .NET agent's X.509 certificate for encrypted settings; idlink encrypts to an age key (EncryptionIdentity)",
    ),
    (
        "InvitationSettings",
        "a Netwrix server setting; idlink's agent has none",
    ),
    (
        "Authentication",
        "a Netwrix server setting; idlink's agent has none",
    ),
    (
        "IdentityServer",
        "a Netwrix server setting; idlink's agent has none",
    ),
    (
        "ApplicationUri",
        "a Netwrix server setting; idlink's agent has none",
    ),
];
/// Top-level sections idlink reads, and what for (the parser's arms below read them).
pub const SECTIONS_READ: &[(&str, &str)] = &[
    (
        "Connections",
        "each connection's settings, checked against its package's settings schema",
    ),
    (
        "SourcesRootPaths",
        "the folders file-based connections may read and write under",
    ),
    (
        "EncryptionIdentity",
        "the age identity that decrypts appsettings.encrypted.agent.json",
    ),
];

/// Parses the text of an appsettings file. Problems become diagnostics; what could be read is kept.
pub fn parse(file: &str, bytes: &[u8], diags: &mut Diagnostics) -> AgentSettings {
    let file: Arc<str> = Arc::from(file);
    let mut out = AgentSettings {
        file: Some(file.to_string()),
        ..AgentSettings::default()
    };
    let text = match decode_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                Diagnostic::new(Rule::JsonSyntax, Loc::file_only(file.clone()), e.message)
                    .hint("appsettings.agent.json is UTF-8 JSON"),
            );
            out.unreadable = true;
            return out;
        }
    };
    let lines = LineIndex::new(text);
    let ast = match jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &parse_options()) {
        Ok(r) => r.value,
        Err(e) => {
            let offset = e.range().start;
            let path = json_path_at(text, offset);
            diags.push(
                Diagnostic::new(
                    Rule::JsonSyntax,
                    lines.loc(&file, offset),
                    format!("invalid JSON at {path}: {}", e.kind()),
                )
                .hint("fix the JSON syntax here (comments and trailing commas are accepted, as in .NET settings files)"),
            );
            out.unreadable = true;
            return out;
        }
    };
    let cx = Cx {
        file: &file,
        lines: &lines,
    };
    let Some(ast) = ast else {
        diags.push(
            Diagnostic::new(
                Rule::JsonSyntax,
                Loc::file_only(file.clone()),
                "the file is empty",
            )
            .hint("write at least {\"Connections\": {}}"),
        );
        return out;
    };
    let Ast::Object(root) = ast else {
        diags.push(
            Diagnostic::new(
                Rule::JsonSyntax,
                cx.loc(ast_start(&ast)),
                "expected a JSON object at $",
            )
            .hint("the file is one object: {\"Connections\": {...}, \"SourcesRootPaths\": [...]}"),
        );
        out.unreadable = true;
        return out;
    };
    for prop in &root.properties {
        let key = prop.name.as_str();
        let key_at = cx.loc(prop.range.start);
        let value = cx.value(&prop.value);
        match key {
            k if k.eq_ignore_ascii_case("Connections") => match value.value {
                SettingValue::Object(entries) => {
                    for (id, v) in entries {
                        let conn_at = v.at.clone();
                        match v.value {
                            SettingValue::Object(settings) => {
                                if out.connection(&id.value).is_some() {
                                    diags.push(
                                        Diagnostic::new(
                                            Rule::DuplicateIdentifier,
                                            id.at.clone(),
                                            format!("settings for connection '{}' are given twice", id.value),
                                        )
                                        .hint("connection identifiers are case-insensitive: merge the two objects"),
                                    );
                                }
                                let c = out.connection_mut(&id.value, &id.at);
                                c.entries.extend(settings);
                            }
                            other => diags.push(type_error(
                                &format!("$.Connections.{}", id.value),
                                "an object",
                                &other,
                                conn_at,
                            )),
                        }
                    }
                }
                other => {
                    diags.push(type_error("$.Connections", "an object", &other, value.at));
                    out.unreadable = true;
                }
            },
            k if k.eq_ignore_ascii_case("SourcesRootPaths") => match value.value {
                SettingValue::Array(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        match item.value {
                            SettingValue::String(s) => {
                                out.sources_root_paths.push(Sp::new(s, item.at))
                            }
                            other => diags.push(type_error(
                                &format!("$.SourcesRootPaths[{i}]"),
                                "a string",
                                &other,
                                item.at,
                            )),
                        }
                    }
                }
                other => diags.push(type_error(
                    "$.SourcesRootPaths",
                    "an array of folder paths",
                    &other,
                    value.at,
                )),
            },
            k if k.eq_ignore_ascii_case("EncryptionIdentity") => match value.value {
                SettingValue::String(s) => out.encryption_identity = Some(Sp::new(s, value.at)),
                SettingValue::Null => {}
                other => diags.push(type_error(
                    "$.EncryptionIdentity",
                    "a file path",
                    &other,
                    value.at,
                )),
            },
            k if let Some((name, why)) = SECTIONS_WITHOUT_EFFECT
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k)) =>
            {
                out.without_effect.push(NoEffect {
                    kind: format!("top-level section '{name}'"),
                    at: key_at,
                    why,
                });
            }
            k => diags.push(
                Diagnostic::new(
                    Rule::UnknownSetting,
                    key_at,
                    format!("unknown top-level setting '{k}'"),
                )
                .hint("idlink ignores it")
                .did_you_mean(
                    k,
                    SECTIONS_READ
                        .iter()
                        .map(|(n, _)| *n)
                        .chain(SECTIONS_WITHOUT_EFFECT.iter().map(|(n, _)| *n)),
                ),
            ),
        }
    }
    out
}

fn type_error(path: &str, expected: &str, found: &SettingValue, at: Loc) -> Diagnostic {
    Diagnostic::new(
        Rule::JsonSyntax,
        at,
        format!("{path} must be {expected}, not {}", found.type_name()),
    )
    .hint(format!("write {path} as {expected}"))
}

fn parse_options() -> ParseOptions {
    ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

fn ast_start(v: &Ast) -> usize {
    use jsonc_parser::common::Ranged;
    v.range().start
}

struct Cx<'a> {
    file: &'a Arc<str>,
    lines: &'a LineIndex<'a>,
}

impl Cx<'_> {
    fn loc(&self, offset: usize) -> Loc {
        self.lines.loc(self.file, offset)
    }

    fn value(&self, v: &Ast) -> Sp<SettingValue> {
        let at = self.loc(ast_start(v));
        let value = match v {
            Ast::StringLit(s) => SettingValue::String(s.value.to_string()),
            Ast::NumberLit(n) => SettingValue::Number(n.value.to_string()),
            Ast::BooleanLit(b) => SettingValue::Bool(b.value),
            Ast::NullKeyword(_) => SettingValue::Null,
            Ast::Array(a) => {
                SettingValue::Array(a.elements.iter().map(|e| self.value(e)).collect())
            }
            Ast::Object(o) => SettingValue::Object(self.object(o)),
        };
        Sp::new(value, at)
    }

    fn object(&self, o: &Object) -> Vec<Entry> {
        o.properties
            .iter()
            .map(|p| {
                (
                    Sp::new(p.name.as_str().to_string(), self.loc(p.range.start)),
                    self.value(&p.value),
                )
            })
            .collect()
    }
}

/// The JSON path of the innermost value being written at `offset`, for syntax error messages.
fn json_path_at(text: &str, offset: usize) -> String {
    use jsonc_parser::tokens::Token;
    enum Frame {
        /// The key whose value is being written, once its colon is seen; a string in key
        /// position that has no colon yet is not shown (it may be a value typed in the wrong
        /// place, even a secret).
        Object(Option<String>),
        Array(usize),
    }
    let opts = parse_options();
    let mut scanner = jsonc_parser::Scanner::new(
        text,
        &jsonc_parser::ScannerOptions {
            allow_single_quoted_strings: opts.allow_single_quoted_strings,
            allow_hexadecimal_numbers: opts.allow_hexadecimal_numbers,
            allow_unary_plus_numbers: opts.allow_unary_plus_numbers,
            allow_bare_decimal_point_numbers: opts.allow_bare_decimal_point_numbers,
            allow_non_finite_numbers: opts.allow_non_finite_numbers,
            allow_extended_string_escapes: opts.allow_extended_string_escapes,
        },
    );
    let mut stack: Vec<Frame> = Vec::new();
    let mut expect_key = false;
    let mut pending_key: Option<String> = None;
    while let Ok(Some(tok)) = scanner.scan() {
        if scanner.token_start() >= offset {
            break;
        }
        match tok {
            Token::OpenBrace => {
                stack.push(Frame::Object(None));
                expect_key = true;
            }
            Token::OpenBracket => {
                stack.push(Frame::Array(0));
                expect_key = false;
            }
            Token::CloseBrace | Token::CloseBracket => {
                stack.pop();
                expect_key = false;
            }
            Token::Comma => match stack.last_mut() {
                Some(Frame::Array(i)) => *i += 1,
                Some(Frame::Object(k)) => {
                    *k = None;
                    expect_key = true;
                }
                None => {}
            },
            Token::String(s) if expect_key => {
                pending_key = Some(s.to_string());
                expect_key = false;
            }
            Token::Colon => {
                if let (Some(Frame::Object(k)), Some(p)) = (stack.last_mut(), pending_key.take()) {
                    *k = Some(p);
                }
            }
            _ => expect_key = false,
        }
    }
    let mut path = String::from("$");
    for frame in &stack {
        match frame {
            Frame::Object(Some(k)) => {
                path.push('.');
                path.push_str(k);
            }
            Frame::Object(None) => {}
            Frame::Array(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

/// One scalar of a connection's settings, with what its package's schema says of it.
struct Leaf<'a> {
    /// `Connections.Dir.Servers[0].Password`.
    shown: String,
    /// Keys and indexes from the connection's object, to find the same place in another file.
    steps: Vec<Step>,
    value: &'a Sp<SettingValue>,
    secured: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn leaves<'a>(
    entries: &'a [Entry],
    schema: Option<&SettingsSchema>,
    shown: &str,
    steps: &mut Vec<Step>,
    secured: bool,
    out: &mut Vec<Leaf<'a>>,
) {
    for (key, value) in entries {
        let field = schema.and_then(|s| s.field(&key.value));
        let here = format!("{shown}.{}", key.value);
        steps.push(Step::Key(key.value.clone()));
        let secured = secured || field.is_some_and(|f| f.secured);
        let inner = match field.map(|f| f.kind) {
            Some(Kind::ObjectList(inner)) => Some(inner),
            _ => None,
        };
        value_leaves(value, inner, &here, steps, secured, out);
        steps.pop();
    }
}

fn value_leaves<'a>(
    value: &'a Sp<SettingValue>,
    schema: Option<&SettingsSchema>,
    shown: &str,
    steps: &mut Vec<Step>,
    secured: bool,
    out: &mut Vec<Leaf<'a>>,
) {
    match &value.value {
        SettingValue::Null => {}
        SettingValue::Object(entries) => leaves(entries, schema, shown, steps, secured, out),
        SettingValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                steps.push(Step::Index(i));
                value_leaves(item, schema, &format!("{shown}[{i}]"), steps, secured, out);
                steps.pop();
            }
        }
        _ => out.push(Leaf {
            shown: shown.to_string(),
            steps: steps.clone(),
            value,
            secured,
        }),
    }
}

/// The value at `steps` under a connection's entries (keys compare case-insensitively).
fn value_at<'a>(entries: &'a [Entry], steps: &[Step]) -> Option<&'a Sp<SettingValue>> {
    let (Step::Key(first), rest) = steps.split_first()? else {
        return None;
    };
    let mut here = entries
        .iter()
        .rev()
        .find(|(k, _)| k.value.eq_ignore_ascii_case(first))
        .map(|(_, v)| v)?;
    for step in rest {
        here = match (step, &here.value) {
            (Step::Key(k), SettingValue::Object(e)) => e
                .iter()
                .rev()
                .find(|(x, _)| x.value.eq_ignore_ascii_case(k))
                .map(|(_, v)| v)?,
            (Step::Index(i), SettingValue::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(here)
}

fn is_encrypted_leaf(leaf: &Leaf<'_>) -> bool {
    matches!(&leaf.value.value, SettingValue::String(s) if s.starts_with(ENCRYPTED_PREFIX))
}

/// An encrypted value in a setting that is not secured: the agent refuses it unread (it
/// decrypts secured settings only, so that a secret's ciphertext moved into a setting whose
/// value may be shown is never read out).
fn encrypted_unsecured(leaf: &Leaf<'_>) -> Diagnostic {
    Diagnostic::new(
        Rule::EncryptedSettings,
        leaf.value.at.clone(),
        format!(
            "{} holds an encrypted value, but it is not a secured setting: the agent decrypts secured settings only, and refuses to run the connection with it",
            leaf.shown
        ),
    )
    .hint("write this setting in plain text; only secured settings (passwords, tokens, secured options) are encrypted")
}

/// The values of a connection's settings, each with its path from `Connections`.
fn connection_leaves<'a>(conn: &'a ConnectionSettings, schema: &SettingsSchema) -> Vec<Leaf<'a>> {
    let shown = format!("Connections.{}", conn.id.value);
    let mut found = Vec::new();
    leaves(
        &conn.entries,
        Some(schema),
        &shown,
        &mut Vec::new(),
        false,
        &mut found,
    );
    found
}

/// Warns of encrypted values in settings that are not secured, in the plain settings file
/// (the encrypted one is checked by [`check_encrypted`]). `schema_of` as there.
pub fn check_encrypted_in_plain<'s>(
    plain: &AgentSettings,
    schema_of: impl Fn(&str) -> Option<&'s SettingsSchema>,
    diags: &mut Diagnostics,
) {
    for conn in &plain.connections {
        let Some(schema) = schema_of(&conn.id.value) else {
            continue;
        };
        let found = connection_leaves(conn, schema);
        for leaf in found.iter().filter(|l| !l.secured && is_encrypted_leaf(l)) {
            diags.push(encrypted_unsecured(leaf));
        }
    }
}

/// What is wrong in the encrypted settings file `encrypted`, given the plain file `plain`
/// (before the encrypted one is laid over it): settings that are not secured (they override the
/// plain file, so later edits there are silently ignored), secured values that are not
/// encrypted, and secured values written in plain text in the plain file although the encrypted
/// file holds one. `schema_of` gives the settings schema of a connection's package (`None` for
/// connections the configuration does not declare and packages this build cannot run).
pub fn check_encrypted<'s>(
    plain: &AgentSettings,
    encrypted: &AgentSettings,
    schema_of: impl Fn(&str) -> Option<&'s SettingsSchema>,
    diags: &mut Diagnostics,
) {
    let plain_file = plain.file.as_deref().unwrap_or("appsettings.agent.json");
    let enc_file = encrypted.file.as_deref().unwrap_or(ENCRYPTED_SETTINGS_FILE);
    let ordinary = |what: &str, at: &Loc| {
        Diagnostic::new(
            Rule::EncryptedSettings,
            at.clone(),
            format!(
                "{what} is not a secured setting, yet {enc_file} holds it: it overrides {plain_file}, where edits of it are silently ignored"
            ),
        )
        .hint(format!(
            "move it to {plain_file} (or delete it here if {plain_file} already has it): {enc_file} should hold only secured values, encrypted with `idlink protect`"
        ))
    };
    if let Some(first) = encrypted.sources_root_paths.first() {
        diags.push(ordinary("SourcesRootPaths", &first.at));
    }
    if let Some(id) = &encrypted.encryption_identity {
        diags.push(ordinary("EncryptionIdentity", &id.at));
    }
    for conn in &encrypted.connections {
        let Some(schema) = schema_of(&conn.id.value) else {
            continue;
        };
        let plain_conn = plain.connection(&conn.id.value);
        for leaf in connection_leaves(conn, schema) {
            if !leaf.secured && is_encrypted_leaf(&leaf) {
                diags.push(encrypted_unsecured(&leaf));
                continue;
            }
            if !leaf.secured {
                diags.push(ordinary(&leaf.shown, &leaf.value.at));
                continue;
            }
            if !is_encrypted_leaf(&leaf) {
                diags.push(
                    Diagnostic::new(
                        Rule::EncryptedSettings,
                        leaf.value.at.clone(),
                        format!("{} is a secured setting, but its value in {enc_file} is not encrypted", leaf.shown),
                    )
                    .hint(format!(
                        "move the plain value to {plain_file}, then run `idlink protect --recipient <agent public key> --file {plain_file}`"
                    )),
                );
                continue;
            }
            let Some(plain_value) = plain_conn.and_then(|c| value_at(&c.entries, &leaf.steps))
            else {
                continue;
            };
            let is_plain = &*plain_value.at.file == plain_file
                && match &plain_value.value {
                    SettingValue::String(s) => !s.is_empty() && !s.starts_with(ENCRYPTED_PREFIX),
                    SettingValue::Number(_) | SettingValue::Bool(_) => true,
                    _ => false,
                };
            if is_plain {
                diags.push(
                    Diagnostic::new(
                        Rule::PlaintextSecret,
                        plain_value.at.clone(),
                        format!(
                            "{} is a secured setting stored in plain text, and {enc_file} holds an encrypted value for it (which wins)",
                            leaf.shown
                        ),
                    )
                    .hint(format!(
                        "remove the plain value from {plain_file}; to change the secret, run `idlink protect --recipient <agent public key> --file {plain_file}` first, which replaces the encrypted value"
                    )),
                );
            }
        }
    }
}

/// Lays `top` (the encrypted settings file) over `base`: objects merge key by key, arrays
/// element by element, and scalars of `top` win.
pub fn overlay(base: &mut AgentSettings, top: AgentSettings) {
    for conn in top.connections {
        let target = base.connection_mut(&conn.id.value, &conn.id.at);
        merge_entries(&mut target.entries, conn.entries);
    }
    if !top.sources_root_paths.is_empty() {
        base.sources_root_paths = top.sources_root_paths;
    }
    if top.encryption_identity.is_some() {
        base.encryption_identity = top.encryption_identity;
    }
}

fn merge_entries(base: &mut Vec<Entry>, top: Vec<Entry>) {
    for (key, value) in top {
        match base
            .iter_mut()
            .rev()
            .find(|(k, _)| k.value.eq_ignore_ascii_case(&key.value))
        {
            Some((_, existing)) => merge_value(existing, value),
            None => base.push((key, value)),
        }
    }
}

fn merge_value(base: &mut Sp<SettingValue>, top: Sp<SettingValue>) {
    match (&mut base.value, top.value) {
        (SettingValue::Object(b), SettingValue::Object(t)) => merge_entries(b, t),
        (SettingValue::Array(b), SettingValue::Array(t)) => {
            for (i, item) in t.into_iter().enumerate() {
                match b.get_mut(i) {
                    Some(existing) => merge_value(existing, item),
                    None => b.push(item),
                }
            }
        }
        (_, other) => *base = Sp::new(other, top.at),
    }
}

/// Secured settings given in plain text in `plain_file`, as `(path, location)`, for the
/// `plaintext-secret` warning. Values from the environment or the encrypted file are fine.
pub fn plaintext_secrets(
    settings: &ConnectionSettings,
    schema: &SettingsSchema,
    plain_file: &str,
) -> Vec<(String, Loc)> {
    let mut out = Vec::new();
    plaintext_in(
        &settings.entries,
        schema,
        &format!("Connections.{}", settings.id.value),
        plain_file,
        &mut out,
    );
    out
}

fn plaintext_in(
    entries: &[Entry],
    schema: &SettingsSchema,
    path: &str,
    plain_file: &str,
    out: &mut Vec<(String, Loc)>,
) {
    let is_plain = |v: &Sp<SettingValue>| {
        &*v.at.file == plain_file
            && matches!(&v.value, SettingValue::String(s) if !s.is_empty() && !s.starts_with(ENCRYPTED_PREFIX))
    };
    for (key, value) in entries {
        let Some(field) = schema.field(&key.value) else {
            continue;
        };
        let here = format!("{path}.{}", field.name);
        match (&value.value, field.kind) {
            (SettingValue::Array(items), Kind::ObjectList(inner)) => {
                for (i, item) in items.iter().enumerate() {
                    if let SettingValue::Object(e) = &item.value {
                        plaintext_in(e, inner, &format!("{here}[{i}]"), plain_file, out);
                    }
                }
            }
            (SettingValue::Object(e), Kind::Map) if field.secured => {
                for (k, v) in e {
                    if is_plain(v) {
                        out.push((format!("{here}.{}", k.value), v.at.clone()));
                    }
                }
            }
            _ if field.secured
                && is_plain(value)
                && !names_only_a_file(field.name, &value.value) =>
            {
                out.push((here, value.at.clone()))
            }
            _ => {}
        }
    }
}

/// A SQLite connection string names a file and carries no credential: nothing to hide.
fn names_only_a_file(field: &str, value: &SettingValue) -> bool {
    field.eq_ignore_ascii_case("ConnectionString")
        && matches!(value, SettingValue::String(s) if s.trim_start().get(..7).is_some_and(|p| p.eq_ignore_ascii_case("sqlite:")))
}

/// Applies `IDLINK__...` environment variables over the file's values. Keys are
/// case-insensitive; numeric levels index arrays (`IDLINK__Connections__Dir__Servers__0__Server`).
pub fn apply_env<I, K, V>(settings: &mut AgentSettings, vars: I, diags: &mut Diagnostics)
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            k.as_ref().len() > ENV_PREFIX.len()
                && k.as_ref()[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX)
        })
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let at = Loc::file_only(format!("environment variable {name}"));
        let path: Vec<&str> = name[ENV_PREFIX.len()..].split("__").collect();
        match path.as_slice() {
            [c, id, rest @ ..]
                if c.eq_ignore_ascii_case("Connections") && !id.is_empty() && !rest.is_empty() =>
            {
                let conn = settings.connection_mut(id, &at);
                set_path(&mut conn.entries, rest, value, &at);
            }
            [s, i] if s.eq_ignore_ascii_case("SourcesRootPaths") => match i.parse::<usize>() {
                Ok(i) => {
                    let v = Sp::new(value, at);
                    if i < settings.sources_root_paths.len() {
                        settings.sources_root_paths[i] = v;
                    } else {
                        settings.sources_root_paths.push(v);
                    }
                }
                Err(_) => diags.push(env_error(&name)),
            },
            [e] if e.eq_ignore_ascii_case("EncryptionIdentity") => {
                settings.encryption_identity = Some(Sp::new(value, at));
            }
            _ => diags.push(env_error(&name)),
        }
    }
}

fn env_error(name: &str) -> Diagnostic {
    Diagnostic::new(Rule::UnknownSetting, Loc::file_only(format!("environment variable {name}")), format!("{name} is not an idlink setting"))
        .hint("use IDLINK__Connections__<connection>__<Setting>, IDLINK__SourcesRootPaths__<n> or IDLINK__EncryptionIdentity")
}

fn set_path(entries: &mut Vec<Entry>, path: &[&str], value: String, at: &Loc) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let i = match entries
        .iter()
        .rposition(|(k, _)| k.value.eq_ignore_ascii_case(first))
    {
        Some(i) => i,
        None => {
            let empty = if rest.is_empty() {
                SettingValue::Null
            } else {
                container_for(rest[0])
            };
            entries.push((
                Sp::new((*first).to_string(), at.clone()),
                Sp::new(empty, at.clone()),
            ));
            entries.len() - 1
        }
    };
    set_value(&mut entries[i].1, rest, value, at);
}

fn container_for(next: &str) -> SettingValue {
    if next.parse::<usize>().is_ok() {
        SettingValue::Array(Vec::new())
    } else {
        SettingValue::Object(Vec::new())
    }
}

fn set_value(slot: &mut Sp<SettingValue>, path: &[&str], value: String, at: &Loc) {
    let Some((first, rest)) = path.split_first() else {
        *slot = Sp::new(SettingValue::String(value), at.clone());
        return;
    };
    if let (SettingValue::Array(items), Ok(i)) = (&mut slot.value, first.parse::<usize>()) {
        while items.len() <= i {
            let fill = if rest.is_empty() {
                SettingValue::Null
            } else {
                container_for(rest[0])
            };
            items.push(Sp::new(fill, at.clone()));
        }
        set_value(&mut items[i], rest, value, at);
        return;
    }
    if !matches!(slot.value, SettingValue::Object(_)) {
        *slot = Sp::new(SettingValue::Object(Vec::new()), at.clone());
    }
    if let SettingValue::Object(entries) = &mut slot.value {
        set_path(entries, path, value, at);
    }
}

/// Checks one connection's settings against its package's schema (SPEC §2.2 rule 4).
/// Secured values are never echoed in messages.
pub fn check_against(
    settings: &ConnectionSettings,
    package: &str,
    schema: &SettingsSchema,
    diags: &mut Diagnostics,
) {
    let path = format!("Connections.{}", settings.id.value);
    check_object(
        &settings.entries,
        &settings.id.at,
        &path,
        package,
        schema,
        diags,
    );
}

fn check_object(
    entries: &[Entry],
    at: &Loc,
    path: &str,
    package: &str,
    schema: &SettingsSchema,
    diags: &mut Diagnostics,
) {
    let present = |name: &str| {
        entries.iter().any(|(k, v)| {
            k.value.eq_ignore_ascii_case(name) && !matches!(v.value, SettingValue::Null)
        })
    };
    for (key, value) in entries {
        let Some(field) = schema.field(&key.value) else {
            diags.push(
                Diagnostic::new(
                    Rule::UnknownSetting,
                    key.at.clone(),
                    format!("unknown setting {path}.{} for package {package}", key.value),
                )
                .hint(format!(
                    "{package} takes: {}",
                    schema
                        .fields
                        .iter()
                        .map(|f| f.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .did_you_mean(&key.value, schema.fields.iter().map(|f| f.name)),
            );
            continue;
        };
        if matches!(value.value, SettingValue::Null) {
            continue;
        }
        let field_path = format!("{path}.{}", field.name);
        check_kind(
            &value.value,
            &value.at,
            &field_path,
            field.kind,
            field.secured,
            package,
            diags,
        );
        if let Some(text) = value.value.as_scalar_text()
            && let Some(why) = field.refusal(&text)
        {
            diags.push(
                Diagnostic::new(
                    Rule::SettingValue,
                    value.at.clone(),
                    format!(
                        "{field_path} = '{}' is refused by idlink: {why}",
                        text.trim()
                    ),
                )
                .hint(format!(
                    "change or remove {} in appsettings.agent.json",
                    field.name
                )),
            );
        }
    }
    for field in schema.fields.iter().filter(|f| f.required) {
        if !present(field.name) {
            diags.push(
                Diagnostic::new(
                    Rule::SettingRequired,
                    at.clone(),
                    format!("{path} lacks the required setting {}", field.name),
                )
                .hint(format!(
                    "add \"{}\": ... ({}) to {path} in appsettings.agent.json",
                    field.name, field.doc
                )),
            );
        }
    }
    for c in schema.constraints {
        if let Constraint::OneShapeOf(shapes) = c {
            let given: Vec<Vec<&str>> = shapes
                .iter()
                .map(|shape| shape.iter().copied().filter(|n| present(n)).collect())
                .collect();
            let used: Vec<usize> = (0..shapes.len())
                .filter(|&i| !given[i].is_empty())
                .collect();
            if used.len() > 1 {
                let described: Vec<String> = used
                    .iter()
                    .map(|&i| format!("{} (the {} shape)", given[i].join(", "), shapes[i][0]))
                    .collect();
                let keep: Vec<String> = used
                    .iter()
                    .map(|&i| format!("keep only {}", shapes[i].join(", ")))
                    .collect();
                diags.push(
                    Diagnostic::new(
                        Rule::SettingValue,
                        at.clone(),
                        format!(
                            "{path} mixes two shapes of {package} settings: {}",
                            described.join(" and ")
                        ),
                    )
                    .hint(format!("choose one shape: {}", keep.join(", or "))),
                );
            }
            continue;
        }
        let broken = match c {
            Constraint::OneShapeOf(_) => false,
            Constraint::AtLeastOne(names) => !names.iter().any(|n| present(n)),
            Constraint::AtMostOne(names) => names.iter().filter(|n| present(n)).count() > 1,
            Constraint::RequiresWhen {
                field,
                equals,
                then,
            } => {
                let matches = entries.iter().any(|(k, v)| {
                    k.value.eq_ignore_ascii_case(field)
                        && v.value
                            .as_scalar_text()
                            .is_some_and(|s| s.eq_ignore_ascii_case(equals))
                });
                matches && then.iter().any(|n| !present(n))
            }
        };
        if broken {
            let rule = if matches!(c, Constraint::AtMostOne(_)) {
                Rule::SettingValue
            } else {
                Rule::SettingRequired
            };
            diags.push(
                Diagnostic::new(rule, at.clone(), format!("{path}: {c}"))
                    .hint(format!("see the settings of {package}")),
            );
        }
    }
}

fn check_kind(
    value: &SettingValue,
    at: &Loc,
    path: &str,
    kind: Kind,
    secured: bool,
    package: &str,
    diags: &mut Diagnostics,
) {
    let bad = |why: String| {
        Diagnostic::new(Rule::SettingValue, at.clone(), format!("{path} {why}"))
            .hint(format!("write {path} as {}", kind.describe()))
    };
    let shown = |s: &str| {
        if secured {
            "(secured value)".to_string()
        } else {
            format!("'{s}'")
        }
    };
    match kind {
        Kind::String | Kind::CheckedString(_) => {
            let Some(s) = value.as_scalar_text() else {
                diags.push(bad(format!("must be a string, not {}", value.type_name())));
                return;
            };
            if let Kind::CheckedString(check) = kind
                && let Err(why) = check(&s)
            {
                diags.push(bad(format!("= {} is not valid: {why}", shown(&s))));
            }
        }
        Kind::Bool => match value {
            SettingValue::Bool(_) => {}
            SettingValue::String(s)
                if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {}
            other => diags.push(bad(format!(
                "must be true or false, not {}",
                describe(other, secured)
            ))),
        },
        Kind::Int { min, max } => {
            let n = value
                .as_scalar_text()
                .and_then(|s| s.trim().parse::<i64>().ok());
            match n {
                Some(n) if (min..=max).contains(&n) => {}
                _ => diags.push(bad(format!(
                    "must be a whole number from {min} to {max}, not {}",
                    describe(value, secured)
                ))),
            }
        }
        Kind::Enum(allowed) => match value.as_scalar_text() {
            Some(s) if allowed.iter().any(|a| a.eq_ignore_ascii_case(&s)) => {}
            Some(s) => diags.push(
                bad(format!(
                    "= {} is not one of {}",
                    shown(&s),
                    allowed.join(", ")
                ))
                .did_you_mean(&s, allowed.iter().copied()),
            ),
            None => diags.push(bad(format!(
                "must be one of {}, not {}",
                allowed.join(", "),
                value.type_name()
            ))),
        },
        Kind::StringList => match value {
            SettingValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.value.as_scalar_text().is_none() {
                        diags.push(
                            Diagnostic::new(
                                Rule::SettingValue,
                                item.at.clone(),
                                format!(
                                    "{path}[{i}] must be a string, not {}",
                                    item.value.type_name()
                                ),
                            )
                            .hint(format!("write {path} as an array of strings")),
                        );
                    }
                }
            }
            // Netwrix documentation also writes lists as one string ("user organizationalUnit");
            // the package splits it as that setting's documentation says.
            SettingValue::String(_) => {}
            other => diags.push(bad(format!(
                "must be an array of strings, not {}",
                other.type_name()
            ))),
        },
        Kind::ObjectList(schema) => match value {
            SettingValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match &item.value {
                        SettingValue::Object(entries) => check_object(
                            entries,
                            &item.at,
                            &format!("{path}[{i}]"),
                            package,
                            schema,
                            diags,
                        ),
                        other => diags.push(
                            Diagnostic::new(
                                Rule::SettingValue,
                                item.at.clone(),
                                format!("{path}[{i}] must be an object, not {}", other.type_name()),
                            )
                            .hint(format!("write each element of {path} as an object")),
                        ),
                    }
                }
            }
            other => diags.push(bad(format!(
                "must be an array of objects, not {}",
                other.type_name()
            ))),
        },
        Kind::Map => match value {
            SettingValue::Object(entries) => {
                for (k, v) in entries {
                    if v.value.as_scalar_text().is_none() && v.value != SettingValue::Null {
                        diags.push(
                            Diagnostic::new(
                                Rule::SettingValue,
                                v.at.clone(),
                                format!(
                                    "{path}.{} must be a string, not {}",
                                    k.value,
                                    v.value.type_name()
                                ),
                            )
                            .hint(format!("{path} holds key-value pairs of strings")),
                        );
                    }
                }
            }
            other => diags.push(bad(format!(
                "must be an object of key-value pairs, not {}",
                other.type_name()
            ))),
        },
    }
}

fn describe(v: &SettingValue, secured: bool) -> String {
    match v.as_scalar_text() {
        Some(_) if secured => "(secured value)".into(),
        Some(s) => format!("'{s}'"),
        None => v.type_name().into(),
    }
}

/// The settings as plain JSON in the schema's terms, for a package to deserialize with serde:
/// keys take the schema's spelling (they match case-insensitively), and scalars given as
/// strings (environment overrides) become the numbers and booleans the schema expects.
/// Keys the schema does not know are dropped (they were reported as warnings).
pub fn typed_json(settings: &ConnectionSettings, schema: &SettingsSchema) -> serde_json::Value {
    typed_object(&settings.entries, schema)
}

fn typed_object(entries: &[Entry], schema: &SettingsSchema) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (key, value) in entries {
        if let Some(field) = schema.field(&key.value)
            && value.value != SettingValue::Null
        {
            map.insert(
                field.name.to_string(),
                typed_value(&value.value, field.kind),
            );
        }
    }
    serde_json::Value::Object(map)
}

fn typed_value(value: &SettingValue, kind: Kind) -> serde_json::Value {
    use serde_json::Value as J;
    match (kind, value) {
        (Kind::Bool, SettingValue::String(s)) => {
            s.parse::<bool>().map_or_else(|_| value.to_json(), J::Bool)
        }
        (Kind::Int { .. }, SettingValue::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_or_else(|_| value.to_json(), |n| J::Number(n.into())),
        (Kind::String | Kind::CheckedString(_) | Kind::Enum(_), v) => {
            v.as_scalar_text().map_or_else(|| v.to_json(), J::String)
        }
        (Kind::ObjectList(inner), SettingValue::Array(items)) => J::Array(
            items
                .iter()
                .map(|item| match &item.value {
                    SettingValue::Object(entries) => typed_object(entries, inner),
                    other => other.to_json(),
                })
                .collect(),
        ),
        (Kind::StringList, SettingValue::Array(items)) => J::Array(
            items
                .iter()
                .map(|i| {
                    i.value
                        .as_scalar_text()
                        .map_or_else(|| i.value.to_json(), J::String)
                })
                .collect(),
        ),
        (Kind::Map, SettingValue::Object(entries)) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.value.clone(),
                        v.value
                            .as_scalar_text()
                            .map_or_else(|| v.value.to_json(), J::String),
                    )
                })
                .collect(),
        ),
        (_, v) => v.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_carry_line_and_path() {
        let text =
            "{\n  \"Connections\": {\n    \"HR\": { \"Path\": \"a\" \"Separator\": \";\" }\n  }\n}";
        let mut d = Diagnostics::default();
        parse("a.json", text.as_bytes(), &mut d);
        let e = d
            .iter()
            .next()
            .map(|d| (d.rule, d.at.line, d.message.clone()));
        let (rule, line, msg) = e.unwrap_or((Rule::Crontab, 0, String::new()));
        assert_eq!((rule, line), (Rule::JsonSyntax, 3));
        assert!(msg.contains("$.Connections.HR"), "{msg}");
    }

    #[test]
    fn env_overrides_merge_case_insensitively_and_index_arrays() {
        let mut d = Diagnostics::default();
        let mut s = parse(
            "a.json",
            br#"{"Connections": {"Dir": {"Servers": [{"Server": "ldap://a"}]}}}"#,
            &mut d,
        );
        apply_env(
            &mut s,
            [
                ("IDLINK__Connections__dir__Servers__0__Server", "ldap://b"),
                ("IDLINK__Connections__Dir__Servers__1__Server", "ldap://c"),
                ("IDLINK__Connections__New__Path", "x.csv"),
                ("PATH", "/bin"),
            ],
            &mut d,
        );
        assert!(d.is_empty(), "{d:?}");
        let dir = s.connection("DIR").map(ConnectionSettings::to_json);
        assert_eq!(
            dir,
            Some(serde_json::json!({"Servers": [{"Server": "ldap://b"}, {"Server": "ldap://c"}]}))
        );
        assert!(s.connection("new").is_some());
    }

    /// Issue #9: the agent settings page's other top-level sections are accepted without
    /// effect (listed once each for `check -v`), never warned "unknown"; a misspelt section
    /// still is, with its "did you mean".
    #[test]
    fn regression_agent_file_documented_sections_are_without_effect_not_unknown() {
        let mut d = Diagnostics::default();
        let s = parse(
            "a.json",
            br#"{"OpenId": {"AgentIdentifier": "Local", "DefaultOpenIdClient": "Job", "OpenIdClients": {"Job": "s"}},
                "PasswordResetSettings": {}, "Databases": {"Db": "data source=."},
                "TaskAgentConfiguration": {}, "SourcesRootPaths": ["data"], "Connections": {},
                "Conections": {}}"#,
            &mut d,
        );
        let found: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(d.len(), 1, "{found:?}");
        let only = d
            .iter()
            .next()
            .map(|d| (d.rule, d.message.clone(), d.hint.clone()));
        let (rule, message, hint) = only.unwrap_or((Rule::Crontab, String::new(), None));
        assert_eq!(rule, Rule::UnknownSetting);
        assert!(message.contains("Conections"), "{message}");
        assert!(
            hint.unwrap_or_default().contains("Connections"),
            "{found:?}"
        );
        let kinds: Vec<&str> = s.without_effect.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "top-level section 'OpenId'",
                "top-level section 'PasswordResetSettings'",
                "top-level section 'Databases'",
                "top-level section 'TaskAgentConfiguration'"
            ]
        );
        assert!(
            s.without_effect[0]
                .to_string()
                .contains("without effect in idlink: ")
        );
    }

    static INNER: SettingsSchema = SettingsSchema {
        fields: &[
            crate::package::Field::required("Server", Kind::String, "host"),
            crate::package::Field::no_effect("NoSigning", Kind::Bool, "no Kerberos here"),
        ],
        constraints: &[],
    };
    static SCHEMA: SettingsSchema = SettingsSchema {
        fields: &[
            crate::package::Field::optional("Servers", Kind::ObjectList(&INNER), "servers"),
            crate::package::Field::no_effect(
                "Provider",
                Kind::Enum(&["A", "B"]),
                "a .NET provider name",
            ),
        ],
        constraints: &[],
    };

    /// Issue #9: a schema field marked `no_effect` is accepted without a warning (its value
    /// still checked), listed for `check -v`, and shown once per kind.
    #[test]
    fn regression_no_effect_settings_are_accepted_listed_once_per_kind_and_still_checked() {
        let mut d = Diagnostics::default();
        let s = parse(
            "a.json",
            br#"{"Connections": {
                "One": {"Provider": "A", "Servers": [{"Server": "h", "NoSigning": true}, {"Server": "i", "NoSigning": false}]},
                "Two": {"Provider": "C", "Sever": "x"}}}"#,
            &mut d,
        );
        for c in &s.connections {
            check_against(c, "P@1", &SCHEMA, &mut d);
        }
        let found: Vec<(Rule, String)> = d.iter().map(|d| (d.rule, d.message.clone())).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|(r, m)| *r == Rule::SettingValue && m.contains("Provider")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(r, m)| *r == Rule::UnknownSetting && m.contains("Sever")),
            "{found:?}"
        );
        let all: Vec<NoEffect> = s
            .connections
            .iter()
            .flat_map(|c| settings_without_effect(c, "P@1", &SCHEMA))
            .collect();
        assert_eq!(all.len(), 4, "{all:?}");
        let once: Vec<String> = once_per_kind(all).into_iter().map(|n| n.kind).collect();
        assert_eq!(
            once,
            ["setting Provider of P@1", "setting NoSigning of P@1"]
        );
    }
}
