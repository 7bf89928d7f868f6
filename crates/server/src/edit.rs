//! In-place edits of the configuration folder (SPEC §7.1).
//!
//! The folder stays the source of truth: an edit made in the UI or the API changes only the
//! edited element (XML) or setting (JSON) and keeps every other byte of the file. Texts are
//! changed in memory ([`Draft`]), the whole folder is checked with the edited texts under
//! their real names (the same check as `idlink check`), and only a change that passes is
//! written, each file atomically (temp file + rename in the same folder). Edits are
//! serialized by the state's edit lock.
//!
//! The model keeps line and column of every element for diagnostics, not byte ranges; the
//! edits here parse the file again with the same parser (roxmltree, with positions) to find
//! the byte range of the element to change, and edit JSON through jsonc-parser's lossless
//! syntax tree (the one `idlink protect` updates the encrypted file with).

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use idlink_secrets::{PathSegment, Redactor};
use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstNode, CstObject, CstRootNode};

use crate::error::AppError;
use crate::running::{Loaded, Problem, load_with};
use crate::state::AppState;

/// Edited texts of configuration files, not yet written.
#[derive(Debug, Default)]
pub struct Draft {
    files: Vec<DraftFile>,
    /// Secret values typed in this edit: scrubbed from any message about it.
    pub secrets: Redactor,
}

/// Its `Debug` names the file only: the texts may hold secrets.
struct DraftFile {
    path: PathBuf,
    /// `None`: the file does not exist yet.
    original: Option<String>,
    text: String,
}

impl std::fmt::Debug for DraftFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DraftFile")
            .field("path", &self.path)
            .field("new", &self.original.is_none())
            .finish_non_exhaustive()
    }
}

impl Draft {
    pub fn new() -> Self {
        Self::default()
    }

    /// The text of `path` to edit: read on first use. A missing file is `new` when given,
    /// else an error.
    pub fn text(&mut self, path: &Path, new: Option<&str>) -> Result<&mut String, AppError> {
        if let Some(i) = self.files.iter().position(|f| f.path == path) {
            return Ok(&mut self.files[i].text);
        }
        let (original, text) = match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    AppError::BadRequest(format!(
                        "'{}' is not UTF-8: it cannot be edited here",
                        path.display()
                    ))
                })?;
                (Some(text.clone()), text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match new {
                Some(n) => (None, n.to_string()),
                None => {
                    return Err(AppError::NotFound(format!(
                        "'{}' does not exist",
                        path.display()
                    )));
                }
            },
            Err(e) => {
                return Err(AppError::Internal(format!(
                    "cannot read '{}': {e}",
                    path.display()
                )));
            }
        };
        self.files.push(DraftFile {
            path: path.to_path_buf(),
            original,
            text,
        });
        let last = self.files.len() - 1;
        Ok(&mut self.files[last].text)
    }

    /// The files whose text changed.
    pub fn changed(&self) -> Vec<&Path> {
        self.files
            .iter()
            .filter(|f| f.original.as_deref() != Some(f.text.as_str()))
            .map(|f| f.path.as_path())
            .collect()
    }

    fn overrides(&self) -> HashMap<PathBuf, Vec<u8>> {
        self.files
            .iter()
            .map(|f| (f.path.clone(), f.text.clone().into_bytes()))
            .collect()
    }
}

/// What [`commit`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The files written (none when the edit changed nothing).
    pub files: Vec<PathBuf>,
}

/// Checks the draft with the rest of the folder and writes it when it passes; the running
/// configuration is then the checked one. A draft that does not pass writes nothing and
/// answers 422 with the errors (file:line:col).
pub async fn commit(state: &AppState, draft: Draft) -> Result<Committed, AppError> {
    let changed: Vec<PathBuf> = draft.changed().into_iter().map(Path::to_path_buf).collect();
    if changed.is_empty() {
        return Ok(Committed::default());
    }
    let paths = state.paths().clone();
    let overrides = draft.overrides();
    let secrets = draft.secrets.clone();
    let loaded = tokio::task::spawn_blocking(move || load_with(&paths, &overrides))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    if let Loaded::Invalid { errors } = &loaded {
        let errors = errors
            .iter()
            .map(|p| Problem {
                message: secrets.redact(&p.message),
                hint: p.hint.as_ref().map(|h| secrets.redact(h)),
                ..p.clone()
            })
            .collect();
        return Err(AppError::Invalid(errors));
    }
    let files: Vec<(PathBuf, String)> = draft
        .files
        .into_iter()
        .filter(|f| f.original.as_deref() != Some(f.text.as_str()))
        .map(|f| (f.path, f.text))
        .collect();
    tokio::task::spawn_blocking(move || {
        for (path, text) in &files {
            write_atomic(path, text.as_bytes())?;
        }
        Ok::<(), AppError>(())
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    state.replace_running(loaded).await;
    Ok(Committed { files: changed })
}

/// Writes `bytes` to `path` through a temp file of the same folder renamed over it, keeping
/// the permissions of the file it replaces (the encrypted settings stay private).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        AppError::Internal(format!("cannot {what} '{}': {e}", path.display()))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".idlink-edit-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| fail("write beside", &e))?;
    tmp.write_all(bytes).map_err(|e| fail("write", &e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file()
            .set_permissions(meta.permissions())
            .map_err(|e| fail("set the permissions of", &e))?;
    }
    tmp.as_file().sync_all().map_err(|e| fail("sync", &e))?;
    tmp.persist(path).map_err(|e| fail("replace", &e.error))?;
    Ok(())
}

// ---------------------------------------------------------------- XML

fn xml_doc(text: &str) -> Result<roxmltree::Document<'_>, AppError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| AppError::BadRequest(format!("the file is not well-formed XML: {e}")))
}

/// The byte range of the element `<tag Identifier="id">` (identifier compared
/// case-insensitively), and of its `Identifier` attribute's element start.
pub fn element_range(text: &str, tag: &str, id: &str) -> Result<Option<Range<usize>>, AppError> {
    let doc = xml_doc(text)?;
    Ok(doc
        .descendants()
        .find(|n| {
            n.is_element()
                && n.tag_name().name() == tag
                && n.attribute("Identifier")
                    .is_some_and(|v| v.eq_ignore_ascii_case(id))
        })
        .map(|n| n.range()))
}

/// The byte range of the last element matching `pred` (with its tag name and attributes).
pub fn last_element_range(
    text: &str,
    pred: impl Fn(&str, &dyn Fn(&str) -> Option<String>) -> bool,
) -> Result<Option<Range<usize>>, AppError> {
    let doc = xml_doc(text)?;
    Ok(doc
        .descendants()
        .filter(|n| {
            n.is_element()
                && pred(n.tag_name().name(), &|a: &str| {
                    n.attribute(a).map(str::to_string)
                })
        })
        .last()
        .map(|n| n.range()))
}

/// Inserts `element` on its own line after the element at `after`, with that element's
/// indentation.
pub fn insert_after(text: &str, after: &Range<usize>, element: &str) -> String {
    let line_start = text[..after.start].rfind('\n').map_or(0, |i| i + 1);
    let indent: String = text[line_start..after.start]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len() + element.len() + 8);
    out.push_str(&text[..after.end]);
    out.push_str(newline);
    out.push_str(&indent);
    out.push_str(element);
    out.push_str(&text[after.end..]);
    out
}

/// Removes the element at `range`, with its line when it is alone on it.
pub fn remove_element(text: &str, range: &Range<usize>) -> String {
    let start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[range.end..].find('\n').map(|i| range.end + i + 1);
    let alone = text[start..range.start].trim().is_empty()
        && end.is_some_and(|e| text[range.end..e].trim().is_empty());
    match (alone, end) {
        (true, Some(end)) => replace_range(text, &(start..end), ""),
        _ => replace_range(text, range, ""),
    }
}

/// Replaces the bytes of `range`.
pub fn replace_range(text: &str, range: &Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

/// An attribute value, escaped for double quotes.
pub fn xml_attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------- JSON

/// A byte order mark, which .NET writes and jsonc-parser does not read: kept as it is.
const BOM: char = '\u{feff}';

fn json_options() -> ParseOptions {
    ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: false,
        allow_trailing_commas: true,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

fn json_root(text: &str, file: &Path) -> Result<CstRootNode, AppError> {
    CstRootNode::parse(text, &json_options()).map_err(|e| {
        AppError::BadRequest(format!(
            "'{}' is not JSON ({}:{}: {}): fix it first",
            file.display(),
            e.line_display(),
            e.column_display(),
            e.kind()
        ))
    })
}

fn shape(file: &Path, path: &[PathSegment]) -> AppError {
    AppError::BadRequest(format!(
        "'{}': {} has another shape than the setting needs: fix it by hand first",
        file.display(),
        idlink_secrets::path_to_string(path)
    ))
}

fn prop_of(object: &CstObject, key: &str) -> Option<jsonc_parser::cst::CstObjectProp> {
    object.properties().into_iter().rev().find(|p| {
        p.decoded_name()
            .is_some_and(|n| n.eq_ignore_ascii_case(key))
    })
}

/// Sets the value at `path`, creating the objects (and array slots, appended) on the way.
/// Everything else keeps its bytes.
pub fn json_set(
    text: &str,
    file: &Path,
    path: &[PathSegment],
    value: CstInputValue,
) -> Result<String, AppError> {
    if let Some(body) = text.strip_prefix(BOM) {
        return Ok(format!("{BOM}{}", json_set(body, file, path, value)?));
    }
    let root = json_root(text, file)?;
    let Some(object) = root.object_value() else {
        return Err(shape(file, &[]));
    };
    set_in(CstNode::from(object), file, path, 0, value)?;
    Ok(root.to_string())
}

fn container(next: &PathSegment) -> CstInputValue {
    match next {
        PathSegment::Key(_) => CstInputValue::Object(Vec::new()),
        PathSegment::Index(_) => CstInputValue::Array(Vec::new()),
    }
}

fn build(rest: &[PathSegment], value: CstInputValue) -> CstInputValue {
    match rest.split_first() {
        None => value,
        Some((PathSegment::Key(k), tail)) => {
            CstInputValue::Object(vec![(k.clone(), build(tail, value))])
        }
        Some((PathSegment::Index(i), tail)) => {
            let mut items: Vec<CstInputValue> =
                (0..*i).map(|_| CstInputValue::Object(Vec::new())).collect();
            items.push(build(tail, value));
            CstInputValue::Array(items)
        }
    }
}

fn set_in(
    node: CstNode,
    file: &Path,
    path: &[PathSegment],
    depth: usize,
    value: CstInputValue,
) -> Result<(), AppError> {
    let Some(step) = path.get(depth) else {
        return Err(shape(file, path));
    };
    let last = depth + 1 == path.len();
    match step {
        PathSegment::Key(key) => {
            let object = node
                .as_object()
                .ok_or_else(|| shape(file, &path[..depth]))?;
            match prop_of(&object, key) {
                Some(p) if last => p.set_value(value),
                Some(p) => {
                    let child = match p.value() {
                        Some(v) if v.as_object().is_some() || v.as_array().is_some() => v,
                        _ => {
                            p.set_value(container(&path[depth + 1]));
                            p.value().ok_or_else(|| shape(file, &path[..=depth]))?
                        }
                    };
                    return set_in(child, file, path, depth + 1, value);
                }
                None => {
                    object.append(key, build(&path[depth + 1..], value));
                }
            }
        }
        PathSegment::Index(i) => {
            let array = node.as_array().ok_or_else(|| shape(file, &path[..depth]))?;
            let elements = array.elements();
            match elements.get(*i) {
                Some(e) if last => {
                    array.insert(*i, value);
                    e.clone().remove();
                }
                Some(e) => return set_in(e.clone(), file, path, depth + 1, value),
                None => {
                    for _ in elements.len()..*i {
                        array.append(CstInputValue::Object(Vec::new()));
                    }
                    array.append(build(&path[depth + 1..], value));
                }
            }
        }
    }
    Ok(())
}

/// Removes the member or array element at `path`, when there is one.
pub fn json_remove(text: &str, file: &Path, path: &[PathSegment]) -> Result<String, AppError> {
    if let Some(body) = text.strip_prefix(BOM) {
        return Ok(format!("{BOM}{}", json_remove(body, file, path)?));
    }
    let root = json_root(text, file)?;
    let Some(object) = root.object_value() else {
        return Ok(text.to_string());
    };
    let mut node = CstNode::from(object);
    for (depth, step) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        match step {
            PathSegment::Key(key) => {
                let Some(object) = node.as_object() else {
                    return Ok(text.to_string());
                };
                let Some(p) = prop_of(&object, key) else {
                    return Ok(text.to_string());
                };
                if last {
                    p.remove();
                    return Ok(root.to_string());
                }
                let Some(v) = p.value() else {
                    return Ok(text.to_string());
                };
                node = v;
            }
            PathSegment::Index(i) => {
                let Some(array) = node.as_array() else {
                    return Ok(text.to_string());
                };
                let Some(e) = array.elements().get(*i).cloned() else {
                    return Ok(text.to_string());
                };
                if last {
                    e.remove();
                    return Ok(root.to_string());
                }
                node = e;
            }
        }
    }
    Ok(text.to_string())
}

/// Plain JSON as a syntax-tree input value.
pub fn input_value(v: &serde_json::Value) -> CstInputValue {
    use serde_json::Value as J;
    match v {
        J::Null => CstInputValue::Null,
        J::Bool(b) => CstInputValue::Bool(*b),
        J::Number(n) => CstInputValue::Number(n.to_string()),
        J::String(s) => CstInputValue::String(s.clone()),
        J::Array(items) => CstInputValue::Array(items.iter().map(input_value).collect()),
        J::Object(o) => {
            CstInputValue::Object(o.iter().map(|(k, v)| (k.clone(), input_value(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PathSegment {
        PathSegment::Key(k.into())
    }

    const SETTINGS: &str = "{\n  // comment kept\n  \"Connections\": {\n    \"A\": { \"Path\": \"a.csv\", \"Separator\": \";\" },\n    \"B\": {\n      \"Path\": \"b.csv\"\n    }\n  }\n}\n";

    #[test]
    fn json_set_changes_only_the_value() {
        let f = Path::new("s.json");
        let out = json_set(
            SETTINGS,
            f,
            &[key("connections"), key("a"), key("path")],
            CstInputValue::String("x.csv".into()),
        )
        .expect("set");
        assert_eq!(out, SETTINGS.replace("\"a.csv\"", "\"x.csv\""));
    }

    #[test]
    fn json_set_adds_a_member_and_remove_takes_it_back() {
        let f = Path::new("s.json");
        let path = [key("Connections"), key("B"), key("Encoding")];
        let out = json_set(SETTINGS, f, &path, CstInputValue::String("UTF-8".into())).expect("set");
        assert!(out.contains("\"Encoding\": \"UTF-8\""), "{out}");
        assert!(out.starts_with("{\n  // comment kept\n"), "{out}");
        let back = json_remove(&out, f, &path).expect("remove");
        let parsed: serde_json::Value =
            serde_json::from_str(&back.replace("// comment kept", "")).expect("json");
        assert_eq!(
            parsed["Connections"]["B"],
            serde_json::json!({ "Path": "b.csv" })
        );
        assert!(back.contains("\"A\": { \"Path\": \"a.csv\", \"Separator\": \";\" }"));
    }

    #[test]
    fn regression_a_settings_file_with_a_byte_order_mark_is_edited_and_keeps_it() {
        let f = Path::new("s.json");
        let text = format!("\u{feff}{SETTINGS}");
        let out = json_set(
            &text,
            f,
            &[key("Connections"), key("A"), key("Path")],
            CstInputValue::String("x.csv".into()),
        )
        .expect("set");
        assert_eq!(out, text.replace("\"a.csv\"", "\"x.csv\""));
        let out =
            json_remove(&out, f, &[key("Connections"), key("A"), key("Path")]).expect("remove");
        assert!(
            out.starts_with('\u{feff}') && !out.contains("x.csv"),
            "{out}"
        );
    }

    #[test]
    fn json_set_creates_objects_and_array_items() {
        let f = Path::new("s.json");
        let out = json_set(
            "{}",
            f,
            &[
                key("Connections"),
                key("L"),
                key("Servers"),
                PathSegment::Index(1),
                key("Password"),
            ],
            CstInputValue::String("age:x".into()),
        )
        .expect("set");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(
            v,
            serde_json::json!({ "Connections": { "L": { "Servers": [{}, { "Password": "age:x" }] } } })
        );
    }

    #[test]
    fn xml_insert_keeps_every_other_byte() {
        let text = "<ConfigurationFile>\n  <!-- c -->\n  <Connection Identifier=\"A\" />\n  <Other />\n</ConfigurationFile>\n";
        let r = element_range(text, "Connection", "a")
            .expect("xml")
            .expect("found");
        let out = insert_after(text, &r, "<Connection Identifier=\"B\" />");
        assert_eq!(
            out,
            "<ConfigurationFile>\n  <!-- c -->\n  <Connection Identifier=\"A\" />\n  <Connection Identifier=\"B\" />\n  <Other />\n</ConfigurationFile>\n"
        );
        assert_eq!(xml_attr("a\"<&"), "a&quot;&lt;&amp;");
    }
}
