//! `idlink protect --file`: encrypt the secured settings of an appsettings document.

use std::fmt::{self, Write as _};

use jsonc_parser::ast::Value as Ast;
use jsonc_parser::cst::{CstArray, CstInputValue, CstNode, CstObject};
use jsonc_parser::{CollectOptions, ParseOptions};
use serde_json::Value;

use crate::error::SecretError;
use crate::keys::AgentRecipient;
use crate::value::{Binding, encrypt_bound, encrypt_value, looks_like_ciphertext};

/// One step of a path in a JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSegment {
    /// A member of an object, by its key as written (settings keys are case-insensitive in
    /// .NET configuration: compare with `eq_ignore_ascii_case` in the callback).
    Key(String),
    /// An element of an array (0-based).
    Index(usize),
}

impl PathSegment {
    /// The key, if this is an object member.
    pub fn key(&self) -> Option<&str> {
        match self {
            PathSegment::Key(k) => Some(k),
            PathSegment::Index(_) => None,
        }
    }
}

/// A full path from the document's root, e.g. `Connections.LDAP.Servers[0].Password`.
pub type JsonPath = Vec<PathSegment>;

/// A SQLite connection string (`sqlite:path`) names a file and carries no credential: it is
/// secured as every `ConnectionString` is, but holds nothing to hide, so `protect` leaves it
/// in the plain file (and `check` does not call it a plaintext secret).
pub fn holds_no_secret(path: &[PathSegment], value: &str) -> bool {
    path.last()
        .and_then(PathSegment::key)
        .is_some_and(|k| k.eq_ignore_ascii_case("ConnectionString"))
        && value
            .trim_start()
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("sqlite:"))
}

impl fmt::Display for PathSegment {
    /// `Key` as written (or `["key"]` when it holds `.`, `[`, `]`, `"` or is empty),
    /// `Index` as `[n]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSegment::Key(k) if needs_quoting(k) => {
                write!(f, "[{}]", Value::String(k.clone()))
            }
            PathSegment::Key(k) => f.write_str(k),
            PathSegment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

fn needs_quoting(key: &str) -> bool {
    key.is_empty() || key.contains(['.', '[', ']', '"'])
}

/// `Connections.LDAP.Servers[0].Password`: the form used in messages.
pub fn path_to_string(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for (i, segment) in path.iter().enumerate() {
        if i > 0 && matches!(segment, PathSegment::Key(k) if !needs_quoting(k)) {
            out.push('.');
        }
        let _ = write!(out, "{segment}");
    }
    out
}

/// The path [`path_to_string`] shows, or a package names (`Servers[0].Server`), as segments.
/// Lenient: an index that is not a number is skipped (compare with [`path_to_string`] of the
/// result to refuse such a text).
pub fn parse_path(text: &str) -> JsonPath {
    let mut steps = Vec::new();
    for part in text.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                steps.push(PathSegment::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(body) = rest.strip_prefix('[') {
                let Some(end) = body.find(']') else { break };
                if let Ok(n) = body[..end].parse() {
                    steps.push(PathSegment::Index(n));
                }
                rest = &body[end + 1..];
            }
        } else {
            steps.push(PathSegment::Key(rest.to_string()));
        }
    }
    steps
}

/// What [`protect_json`] / [`protect_jsonc_text`] did, by path, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectReport {
    /// Secured string values that were encrypted.
    pub encrypted: Vec<JsonPath>,
    /// Secured values that were already encrypted (well-formed `age:` values), left as they are.
    pub already_encrypted: Vec<JsonPath>,
    /// Secured paths holding a number or a boolean: left as they are (they would change type);
    /// the caller should tell the user to write them as strings.
    pub not_strings: Vec<JsonPath>,
}

/// Encrypts, in a copy of `value`, every string whose path `is_secured` accepts, and leaves
/// everything else (including non-secured strings, `null`s, and values already encrypted)
/// as it is; nothing is removed.
///
/// `is_secured` is called with the full path of each string, number and boolean in the
/// document (never for objects or arrays: a secured object such as a script's `Options` is
/// handled by accepting every path under it).
///
/// Key order is kept only if `serde_json` is built with `preserve_order`, and comments cannot
/// be kept in a `Value`: to rewrite a settings file, prefer [`protect_jsonc_text`].
pub fn protect_json(
    value: &Value,
    recipient: &AgentRecipient,
    is_secured: impl Fn(&[PathSegment]) -> bool,
) -> Result<(Value, ProtectReport), SecretError> {
    let mut out = value.clone();
    let mut report = ProtectReport::default();
    let mut path = Vec::new();
    walk_value(&mut out, &mut path, recipient, &is_secured, &mut report)?;
    Ok((out, report))
}

fn walk_value(
    value: &mut Value,
    path: &mut JsonPath,
    recipient: &AgentRecipient,
    is_secured: &impl Fn(&[PathSegment]) -> bool,
    report: &mut ProtectReport,
) -> Result<(), SecretError> {
    match value {
        Value::Object(map) => {
            for (key, member) in map.iter_mut() {
                path.push(PathSegment::Key(key.clone()));
                walk_value(member, path, recipient, is_secured, report)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(PathSegment::Index(i));
                walk_value(item, path, recipient, is_secured, report)?;
                path.pop();
            }
        }
        Value::String(s) => {
            if is_secured(path) && !holds_no_secret(path, s) {
                if looks_like_ciphertext(s) {
                    report.already_encrypted.push(path.clone());
                } else {
                    let encrypted = encrypt_value(recipient, s)?;
                    // Overwrite the clear text in place before the buffer is dropped.
                    zeroize::Zeroize::zeroize(s);
                    *s = encrypted;
                    report.encrypted.push(path.clone());
                }
            }
        }
        Value::Number(_) | Value::Bool(_) => {
            if is_secured(path) {
                report.not_strings.push(path.clone());
            }
        }
        Value::Null => {}
    }
    Ok(())
}

/// Like [`protect_json`], on the text of a settings file (JSON with comments and trailing
/// commas, as appsettings files allow): only the secured string literals are replaced, so
/// every other byte (comments, key order, spacing, number spelling) stays as it was.
///
/// A text that is not JSON gives [`SecretError::InvalidJson`] with the line and column, never
/// the text around it. An empty text is returned as it is.
pub fn protect_jsonc_text(
    text: &str,
    recipient: &AgentRecipient,
    is_secured: impl Fn(&[PathSegment]) -> bool,
) -> Result<(String, ProtectReport), SecretError> {
    let (bom, body) = split_bom(text);
    let mut report = ProtectReport::default();
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (path, found, ()) in secured_values(body, &|p: &[PathSegment]| is_secured(p).then_some(()))?
    {
        match found {
            Secured::Plain { value, start, end } => {
                let encrypted = encrypt_value(recipient, &value)?;
                // `age:` + base64 needs no JSON escaping.
                edits.push((start, end, format!("\"{encrypted}\"")));
                report.encrypted.push(path);
            }
            Secured::Encrypted => report.already_encrypted.push(path),
            Secured::NotString => report.not_strings.push(path),
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out =
        String::with_capacity(text.len() + edits.iter().map(|e| e.2.len()).sum::<usize>());
    out.push_str(bom);
    let mut copied = 0;
    for (start, end, replacement) in edits {
        out.push_str(&body[copied..start]);
        out.push_str(&replacement);
        copied = end;
    }
    out.push_str(&body[copied..]);
    Ok((out, report))
}

/// What [`protect_into_encrypted`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Secured plain values of the settings file, encrypted and written into the encrypted file
    /// (added, or replacing the value it had at that path).
    pub encrypted: Vec<JsonPath>,
    /// Of `encrypted`, the paths where the encrypted file already held a value (now replaced).
    pub replaced: Vec<JsonPath>,
    /// Secured values of the settings file that are already encrypted there: left where they are.
    pub already_encrypted: Vec<JsonPath>,
    /// Secured paths holding a number or a boolean: left as they are (they would change type).
    pub not_strings: Vec<JsonPath>,
    /// Encrypted values of the encrypted file this run did not touch: kept as they were.
    pub kept: Vec<JsonPath>,
    /// Values of the encrypted file that are not encrypted (e.g. copies of ordinary settings
    /// written by an older `protect`): kept, but they override the plain settings file.
    pub not_encrypted: Vec<JsonPath>,
}

/// The text of a new encrypted settings file, when there is none yet.
const NEW_ENCRYPTED_FILE: &str = "{\n  // Secured settings, encrypted with `idlink protect` to the agent's public key. These\n  // values override appsettings.agent.json and the environment.\n  \"Connections\": {}\n}\n";

/// Encrypts the secured plain values of a settings file (`plain_text`, the text of
/// appsettings.agent.json) *into* the encrypted settings file (`encrypted_text`, the text of
/// appsettings.encrypted.agent.json, or `None` when there is none yet), and returns the new
/// text of the encrypted file. `binding` says which paths are secured (`Some`) and what a
/// value there is bound to (see [`Binding`]).
///
/// The encrypted file holds only secured values: nothing but the encrypted values is written
/// into it. What it already holds is kept, with its comments, order and spacing: a secured
/// value of the settings file adds its path or replaces the value at that path (keys compare
/// case-insensitively, as in .NET configuration), and no value is ever removed, so an
/// encrypted value that the settings file no longer holds in plain text stays.
///
/// Errors: either text is not JSON ([`SecretError::InvalidJson`], with the position and never
/// the text), or the encrypted file has another shape at a path to write (e.g. a string where
/// an object is needed: [`SecretError::Shape`]).
pub fn protect_into_encrypted(
    plain_text: &str,
    encrypted_text: Option<&str>,
    recipient: &AgentRecipient,
    binding: impl Fn(&[PathSegment]) -> Option<Binding>,
) -> Result<(String, MergeReport), SecretError> {
    let mut report = MergeReport::default();
    // 1. The secured values of the plain file.
    let (_, body) = split_bom(plain_text);
    let mut to_write: Vec<(JsonPath, String)> = Vec::new();
    for (path, found, bound) in secured_values(body, &binding)? {
        match found {
            Secured::Plain { value, .. } if value.is_empty() => {}
            Secured::Plain { value, .. } => {
                let sealed = encrypt_bound(recipient, &bound, &value)?;
                to_write.push((path.clone(), sealed));
                report.encrypted.push(path);
            }
            Secured::Encrypted => report.already_encrypted.push(path),
            Secured::NotString => report.not_strings.push(path),
        }
    }
    // 2. The encrypted file: what it holds, then the new values merged in.
    let (bom, existing) = match encrypted_text {
        Some(t) if !t.trim().is_empty() => split_bom(t),
        _ => ("", NEW_ENCRYPTED_FILE),
    };
    let existing_ast =
        jsonc_parser::parse_to_ast(existing, &CollectOptions::default(), &parse_options())
            .map_err(invalid_json)?;
    let mut held: Vec<(JsonPath, bool)> = Vec::new();
    if let Some(root) = &existing_ast.value {
        let mut path = Vec::new();
        walk_ast(root, &mut path, &mut |path, node| {
            match node {
                Ast::StringLit(s) => held.push((path.to_vec(), looks_like_ciphertext(&s.value))),
                Ast::NumberLit(_) | Ast::BooleanLit(_) => held.push((path.to_vec(), false)),
                _ => {}
            }
            Ok(())
        })?;
    }
    let same = |a: &[PathSegment], b: &[PathSegment]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (PathSegment::Key(x), PathSegment::Key(y)) => x.eq_ignore_ascii_case(y),
                (PathSegment::Index(x), PathSegment::Index(y)) => x == y,
                _ => false,
            })
    };
    for (path, encrypted) in &held {
        if to_write.iter().any(|(p, _)| same(p, path)) {
            report.replaced.push(path.clone());
        } else if *encrypted {
            report.kept.push(path.clone());
        } else {
            report.not_encrypted.push(path.clone());
        }
    }
    if to_write.is_empty() && encrypted_text.is_some_and(|t| !t.trim().is_empty()) {
        // Nothing to add: the file stays byte for byte.
        return Ok((encrypted_text.unwrap_or_default().to_string(), report));
    }
    let cst =
        jsonc_parser::cst::CstRootNode::parse(existing, &parse_options()).map_err(invalid_json)?;
    let root = cst.object_value().ok_or_else(|| SecretError::Shape {
        path: String::new(),
        expected: "an object",
    })?;
    for (path, value) in to_write {
        set_in_object(&root, &path, &path, value)?;
    }
    let mut text = format!("{bom}{cst}");
    if existing.ends_with('\n') && !text.ends_with('\n') {
        text.push('\n');
    }
    Ok((text, report))
}

/// A secured value of a settings document, as `protect` sees it.
enum Secured {
    /// A plain string, with its byte range (quotes included) in the text.
    Plain {
        value: String,
        start: usize,
        end: usize,
    },
    /// Already an `age:` ciphertext.
    Encrypted,
    /// A number or a boolean: left as it is (it would change type).
    NotString,
}

/// Every value of the JSONC `body` whose path `secured` accepts (`Some`), in document order,
/// with what `secured` said of it.
fn secured_values<T>(
    body: &str,
    secured: &impl Fn(&[PathSegment]) -> Option<T>,
) -> Result<Vec<(JsonPath, Secured, T)>, SecretError> {
    let parsed = jsonc_parser::parse_to_ast(body, &CollectOptions::default(), &parse_options())
        .map_err(invalid_json)?;
    let mut found = Vec::new();
    if let Some(root) = &parsed.value {
        let mut path = Vec::new();
        walk_ast(root, &mut path, &mut |path, node| {
            match node {
                Ast::StringLit(s) if !holds_no_secret(path, &s.value) => {
                    if let Some(said) = secured(path) {
                        let value = if looks_like_ciphertext(&s.value) {
                            Secured::Encrypted
                        } else {
                            Secured::Plain {
                                value: s.value.to_string(),
                                start: s.range.start,
                                end: s.range.end,
                            }
                        };
                        found.push((path.to_vec(), value, said));
                    }
                }
                Ast::NumberLit(_) | Ast::BooleanLit(_) => {
                    if let Some(said) = secured(path) {
                        found.push((path.to_vec(), Secured::NotString, said));
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(found)
}

fn split_bom(text: &str) -> (&'static str, &str) {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    }
}

fn invalid_json(e: jsonc_parser::errors::ParseError) -> SecretError {
    SecretError::InvalidJson {
        line: e.line_display(),
        column: e.column_display(),
        kind: e.kind().to_string(),
    }
}

/// What a path step needs its value to be: an object for a key, an array for an index.
fn container_for(next: &PathSegment) -> CstInputValue {
    match next {
        PathSegment::Key(_) => CstInputValue::Object(Vec::new()),
        PathSegment::Index(_) => CstInputValue::Array(Vec::new()),
    }
}

fn shape(upto: &[PathSegment], next: &PathSegment) -> SecretError {
    SecretError::Shape {
        path: path_to_string(upto),
        expected: match next {
            PathSegment::Key(_) => "an object",
            PathSegment::Index(_) => "an array",
        },
    }
}

/// Sets `rest` (a path below `object`) to the string `value`, creating what is missing.
fn set_in_object(
    object: &CstObject,
    full: &[PathSegment],
    rest: &[PathSegment],
    value: String,
) -> Result<(), SecretError> {
    let Some((PathSegment::Key(key), tail)) = rest.split_first() else {
        let upto = &full[..full.len() - rest.len()];
        return Err(shape(upto, &PathSegment::Index(0)));
    };
    let prop = object.properties().into_iter().rev().find(|p| {
        p.decoded_name()
            .is_some_and(|n| n.eq_ignore_ascii_case(key))
    });
    if tail.is_empty() {
        match prop {
            Some(p) => p.set_value(CstInputValue::String(value)),
            None => {
                object.append(key, CstInputValue::String(value));
            }
        }
        return Ok(());
    }
    let Some(prop) = prop else {
        object.append(key, build(tail, value));
        return Ok(());
    };
    let upto = &full[..full.len() - tail.len()];
    descend(prop.value(), full, upto, tail, value)
}

/// The value that holds `value` at `path` (created whole, so it is laid out as one piece);
/// array elements before an index are empty objects (or nulls before a scalar).
fn build(path: &[PathSegment], value: String) -> CstInputValue {
    match path.split_first() {
        None => CstInputValue::String(value),
        Some((PathSegment::Key(k), rest)) => {
            CstInputValue::Object(vec![(k.clone(), build(rest, value))])
        }
        Some((PathSegment::Index(i), rest)) => {
            let mut items: Vec<CstInputValue> = (0..*i)
                .map(|_| match rest.first() {
                    Some(next) => container_for(next),
                    None => CstInputValue::Null,
                })
                .collect();
            items.push(build(rest, value));
            CstInputValue::Array(items)
        }
    }
}

fn descend(
    node: Option<CstNode>,
    full: &[PathSegment],
    upto: &[PathSegment],
    tail: &[PathSegment],
    value: String,
) -> Result<(), SecretError> {
    let Some(next) = tail.first() else {
        return Ok(());
    };
    match (next, node) {
        (PathSegment::Key(_), Some(n)) if n.as_object().is_some() => match n.as_object() {
            Some(o) => set_in_object(&o, full, tail, value),
            None => Err(shape(upto, next)),
        },
        (PathSegment::Index(_), Some(n)) if n.as_array().is_some() => match n.as_array() {
            Some(a) => set_in_array(&a, full, tail, value),
            None => Err(shape(upto, next)),
        },
        _ => Err(shape(upto, next)),
    }
}

fn set_in_array(
    array: &CstArray,
    full: &[PathSegment],
    rest: &[PathSegment],
    value: String,
) -> Result<(), SecretError> {
    let Some((PathSegment::Index(i), tail)) = rest.split_first() else {
        let upto = &full[..full.len() - rest.len()];
        return Err(shape(upto, &PathSegment::Key(String::new())));
    };
    // Pad with empty containers: an empty object merges into the plain element it overlays
    // without changing it.
    let fill = || match tail.first() {
        Some(next) => container_for(next),
        None => CstInputValue::Null,
    };
    while array.elements().len() <= *i {
        array.append(fill());
    }
    let Some(element) = array.elements().into_iter().nth(*i) else {
        return Ok(());
    };
    if tail.is_empty() {
        element.remove();
        array.insert(*i, CstInputValue::String(value));
        return Ok(());
    }
    let upto = &full[..full.len() - tail.len()];
    descend(Some(element), full, upto, tail, value)
}

fn walk_ast(
    node: &Ast<'_>,
    path: &mut JsonPath,
    visit: &mut impl FnMut(&[PathSegment], &Ast<'_>) -> Result<(), SecretError>,
) -> Result<(), SecretError> {
    match node {
        Ast::Object(o) => {
            for prop in &o.properties {
                path.push(PathSegment::Key(prop.name.as_str().to_string()));
                walk_ast(&prop.value, path, visit)?;
                path.pop();
            }
        }
        Ast::Array(a) => {
            for (i, element) in a.elements.iter().enumerate() {
                path.push(PathSegment::Index(i));
                walk_ast(element, path, visit)?;
                path.pop();
            }
        }
        scalar => visit(path, scalar)?,
    }
    Ok(())
}

/// The same dialect as the settings loader: comments and trailing commas, nothing looser.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn regression_a_sqlite_connection_string_holds_no_secret() {
        let path = |k: &str| {
            vec![
                PathSegment::Key("Connections".into()),
                PathSegment::Key(k.into()),
            ]
        };
        assert!(holds_no_secret(
            &path("ConnectionString"),
            "sqlite:data/apps.db"
        ));
        assert!(holds_no_secret(
            &path("connectionstring"),
            " SQLite:apps.db"
        ));
        assert!(!holds_no_secret(
            &path("ConnectionString"),
            "postgres://u:pw@h/db"
        ));
        assert!(!holds_no_secret(&path("Password"), "sqlite:x"));
    }

    use super::*;

    fn k(s: &str) -> PathSegment {
        PathSegment::Key(s.to_string())
    }

    #[test]
    fn paths_print() {
        let p = vec![
            k("Connections"),
            k("LDAP"),
            k("Servers"),
            PathSegment::Index(0),
            k("Password"),
        ];
        assert_eq!(path_to_string(&p), "Connections.LDAP.Servers[0].Password");
        assert_eq!(path_to_string(&[k("a.b"), k("c")]), "[\"a.b\"].c");
        assert_eq!(path_to_string(&[]), "");
    }

    #[test]
    fn invalid_json_error_has_position_not_text() {
        let r = crate::AgentIdentity::generate().recipient();
        let e = protect_jsonc_text("{\n \"Password\": \"hunter2secret", &r, |_| true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("hunter2secret"), "{e}");
    }
}
