//! The directory's schema, read from its subschema subentry (RFC 4512): attribute types (syntax,
//! SINGLE-VALUE, usage) and object classes. Export uses it to tell link attributes (multi-valued
//! DN-valued) and binary ones; Refresh Schema reports `<connection>_entries` and the link tables.

use std::collections::HashMap;

use idlink_model::config::{KeyType, ValueType};

use super::conn::{self, Session};
use super::settings::LdapSettings;
use crate::api::{ColumnSchema, ConnectionSchema, MappedTable, PackageError, TableSchema};
use crate::ldif::settings::LINK_ATTRIBUTES;

const SYNTAX_PREFIX: &str = "1.3.6.1.4.1.1466.115.121.1.";

/// One attribute type, with inherited syntax resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttributeType {
    /// The first name.
    pub name: String,
    pub syntax: Option<String>,
    pub single_value: bool,
    /// `USAGE` other than `userApplications`.
    pub operational: bool,
    sup: Option<String>,
}

impl AttributeType {
    /// The value type a syntax maps to.
    pub(crate) fn value_type(&self) -> ValueType {
        match self
            .syntax
            .as_deref()
            .and_then(|s| s.strip_prefix(SYNTAX_PREFIX))
        {
            Some("7") => ValueType::Bool,
            Some("27") => ValueType::Int64,
            Some("24") => ValueType::DateTime,
            Some(_) if self.is_binary() => ValueType::Binary,
            _ if self.syntax.as_deref() == Some("1.3.6.1.1.16.1") => ValueType::Guid,
            _ => ValueType::String,
        }
    }

    /// Values have a binary syntax: exported in base64.
    pub(crate) fn is_binary(&self) -> bool {
        matches!(
            self.syntax
                .as_deref()
                .and_then(|s| s.strip_prefix(SYNTAX_PREFIX)),
            Some("4" | "5" | "8" | "9" | "10" | "23" | "28" | "40" | "49")
        )
    }

    /// DN-valued (DN or Name And Optional UID).
    pub(crate) fn is_dn(&self) -> bool {
        matches!(
            self.syntax
                .as_deref()
                .and_then(|s| s.strip_prefix(SYNTAX_PREFIX)),
            Some("12" | "34")
        )
    }

    /// Multi-valued and DN-valued: gets a link table.
    pub(crate) fn is_link(&self) -> bool {
        self.is_dn() && !self.single_value && !self.operational
    }
}

/// The attribute types and object classes of a directory.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirectorySchema {
    /// Lowercased name (every alias) -> index in `types`.
    index: HashMap<String, usize>,
    pub types: Vec<AttributeType>,
    /// Object class names.
    pub classes: Vec<String>,
    /// Whether it was read from the server (else: the standard link attributes only).
    pub from_server: bool,
}

impl DirectorySchema {
    /// The type of an attribute description (options such as `;binary` ignored).
    pub(crate) fn get(&self, description: &str) -> Option<&AttributeType> {
        let base = description.split(';').next().unwrap_or(description);
        self.index
            .get(&base.to_ascii_lowercase())
            .map(|&i| &self.types[i])
    }

    /// Whether `attr` gets a link table: from the schema, else the standard list.
    pub(crate) fn is_link(&self, attr: &str) -> bool {
        match self.get(attr) {
            Some(t) => t.is_link(),
            None => LINK_ATTRIBUTES.iter().any(|l| l.eq_ignore_ascii_case(attr)),
        }
    }

    /// Whether values of `attr` are written in base64 whatever they hold.
    pub(crate) fn is_binary(&self, attr: &str) -> bool {
        attr.to_ascii_lowercase().contains(";binary")
            || self.get(attr).is_some_and(|t| t.is_binary())
    }

    /// The spelling the schema gives a name.
    pub(crate) fn canonical<'a>(&'a self, attr: &'a str) -> &'a str {
        self.get(attr).map_or(attr, |t| t.name.as_str())
    }

    /// Parses `attributeTypes` and `objectClasses` values.
    pub(crate) fn parse(attribute_types: &[String], object_classes: &[String]) -> Self {
        let mut s = DirectorySchema {
            from_server: true,
            ..Default::default()
        };
        for text in attribute_types {
            let Some(d) = Description::parse(text) else {
                continue;
            };
            let Some(name) = d.names.first().cloned() else {
                continue;
            };
            let at = AttributeType {
                name,
                syntax: d.one("SYNTAX").map(|s| {
                    // `1.3.6...{32768}`: the length bound is not part of the syntax.
                    s.split('{').next().unwrap_or(&s).to_string()
                }),
                single_value: d.flag("SINGLE-VALUE"),
                operational: d
                    .one("USAGE")
                    .is_some_and(|u| !u.eq_ignore_ascii_case("userApplications"))
                    || d.flag("NO-USER-MODIFICATION"),
                sup: d.one("SUP"),
            };
            let i = s.types.len();
            for n in &d.names {
                s.index.insert(n.to_ascii_lowercase(), i);
            }
            s.index.insert(d.oid.to_ascii_lowercase(), i);
            s.types.push(at);
        }
        // Inherit syntaxes from supertypes (a few levels are enough: name -> cn).
        for _ in 0..8 {
            let mut changed = false;
            for i in 0..s.types.len() {
                if s.types[i].syntax.is_some() {
                    continue;
                }
                let Some(sup) = s.types[i].sup.clone() else {
                    continue;
                };
                if let Some(&j) = s.index.get(&sup.to_ascii_lowercase())
                    && let Some(syntax) = s.types[j].syntax.clone()
                {
                    s.types[i].syntax = Some(syntax);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for text in object_classes {
            if let Some(d) = Description::parse(text)
                && let Some(n) = d.names.first()
            {
                s.classes.push(n.clone());
            }
        }
        s
    }
}

/// A parsed schema description: `( OID NAME ( 'a' 'b' ) SUP x SYNTAX y SINGLE-VALUE ... )`.
#[derive(Debug, Default)]
struct Description {
    oid: String,
    names: Vec<String>,
    /// Keyword -> its values (empty for flags).
    fields: Vec<(String, Vec<String>)>,
}

impl Description {
    fn parse(text: &str) -> Option<Description> {
        let tokens = tokenize(text);
        let mut it = tokens.into_iter().peekable();
        if it.next()? != "(" {
            return None;
        }
        let mut d = Description {
            oid: clean(it.next()?),
            ..Default::default()
        };
        while let Some(tok) = it.next() {
            if tok == ")" {
                break;
            }
            let mut values = Vec::new();
            match it.peek().map(String::as_str) {
                Some("(") => {
                    it.next();
                    for v in it.by_ref() {
                        if v == ")" {
                            break;
                        }
                        if v != "$" {
                            values.push(clean(v));
                        }
                    }
                }
                Some(v) if !is_keyword(v) && v != ")" => {
                    if let Some(v) = it.next() {
                        values.push(clean(v));
                    }
                }
                _ => {}
            }
            if tok == "NAME" {
                d.names = values;
            } else {
                d.fields.push((tok, values));
            }
        }
        Some(d)
    }

    fn one(&self, key: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.first().cloned())
    }

    fn flag(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == key)
    }
}

/// Keywords are upper case (`SUP`, `SINGLE-VALUE`, `X-ORIGIN`); values are quoted, OIDs or
/// lower/mixed-case names.
fn is_keyword(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '-' || c == '_')
        && token.chars().any(|c| c.is_ascii_uppercase())
}

/// Splits a description into `(`, `)`, `$`, quoted strings and bare words. Quoted strings
/// start with a `\u{1}` marker, so that a quoted upper-case word never reads as a keyword
/// ([`clean`] removes it).
fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '(' | ')' | '$' => out.push(c.to_string()),
            '\'' => {
                let mut s = String::new();
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    s.push(c);
                }
                // A quoted value is never a keyword: a leading marker keeps it apart, removed below.
                out.push(format!("\u{1}{s}"));
            }
            c if c.is_whitespace() => {}
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || n == '(' || n == ')' || n == '$' || n == '\'' {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

/// A token without the quoted-value marker.
fn clean(token: String) -> String {
    match token.strip_prefix('\u{1}') {
        Some(s) => s.to_string(),
        None => token,
    }
}

/// Reads the subschema subentry named by the root DSE (or `cn=Subschema`).
pub(crate) async fn read(
    session: &mut Session,
    subschema: Option<&str>,
) -> Result<DirectorySchema, PackageError> {
    let base = subschema.unwrap_or("cn=Subschema");
    let entries = conn::base_search(
        session,
        base,
        "(objectClass=subschema)",
        &["attributeTypes", "objectClasses"],
        "read the subschema",
    )
    .await?;
    let Some(e) = entries.into_iter().next() else {
        return Ok(DirectorySchema::default());
    };
    Ok(DirectorySchema::parse(
        &e.text("attributeTypes"),
        &e.text("objectClasses"),
    ))
}

/// The tables of Refresh Schema: `<connection>_entries` (`dn`, the primary key, then every user
/// attribute that is not a link attribute, sorted), and one link table per link attribute
/// (multi-valued, DN-valued), plus the tables named in `Tables`.
pub(crate) fn connection_schema(
    connection: &str,
    settings: &LdapSettings,
    schema: &DirectorySchema,
    mapped: &[MappedTable],
) -> ConnectionSchema {
    let column = |t: &AttributeType, multivalued: bool| ColumnSchema {
        name: t.name.clone(),
        value_type: t.value_type(),
        source_type: t.syntax.clone(),
        multivalued,
        key: KeyType::None,
    };
    let mut entries = vec![ColumnSchema {
        key: KeyType::Primary,
        ..ColumnSchema::string("dn")
    }];
    let mut links: Vec<&AttributeType> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut types: Vec<&AttributeType> = schema.types.iter().filter(|t| !t.operational).collect();
    types.sort_by_key(|t| t.name.to_ascii_lowercase());
    for t in types {
        if !seen.insert(t.name.to_ascii_lowercase()) {
            continue;
        }
        let own_table = settings
            .tables
            .iter()
            .skip(1)
            .any(|x| x.table.eq_ignore_ascii_case(&t.name));
        if t.is_link() || own_table {
            links.push(t);
        } else {
            entries.push(column(t, !t.single_value));
        }
    }
    // Columns mappings read that the schema does not list (operational attributes such as
    // entryUUID or modifyTimestamp) are columns too.
    for m in mapped.iter().filter(|m| {
        m.suffix
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("entries"))
    }) {
        for c in &m.columns {
            if !entries.iter().any(|e| e.name.eq_ignore_ascii_case(c)) {
                match schema.get(c) {
                    Some(t) => entries.push(ColumnSchema {
                        name: c.clone(),
                        ..column(t, !t.single_value)
                    }),
                    None if !c.eq_ignore_ascii_case("Command") => {
                        entries.push(ColumnSchema::string(c.clone()))
                    }
                    None => {}
                }
            }
        }
    }
    let mut tables = vec![TableSchema {
        name: format!("{connection}_entries"),
        columns: entries,
    }];
    for t in links {
        tables.push(TableSchema {
            name: format!("{connection}_{}", t.name),
            columns: vec![
                ColumnSchema::string("dn"),
                ColumnSchema {
                    name: t.name.clone(),
                    value_type: ValueType::String,
                    source_type: t.syntax.clone(),
                    multivalued: false,
                    key: KeyType::None,
                },
            ],
        });
    }
    ConnectionSchema { tables }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_give_syntax_inheritance_and_single_value() {
        let types = [
            "( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )".to_string(),
            "( 2.5.4.3 NAME ( 'cn' 'commonName' ) DESC 'RFC4519: common name(s) for which the entity is known by' SUP name )".to_string(),
            "( 2.5.4.31 NAME 'member' DESC 'RFC2256: member of a group' SUP distinguishedName )".to_string(),
            "( 2.5.4.49 NAME 'distinguishedName' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )".to_string(),
            "( 0.9.2342.19200300.100.1.60 NAME 'jpegPhoto' DESC 'RFC2798: a JPEG image' SYNTAX 1.3.6.1.4.1.1466.115.121.1.28 )".to_string(),
            "( 2.16.840.1.113730.3.1.3 NAME 'employeeNumber' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )".to_string(),
            "( 2.5.18.2 NAME 'modifyTimestamp' EQUALITY generalizedTimeMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )".to_string(),
        ];
        let classes = ["( 2.5.6.9 NAME 'groupOfNames' SUP top STRUCTURAL MUST ( member $ cn ) MAY ( businessCategory $ seeAlso ) )".to_string()];
        let s = DirectorySchema::parse(&types, &classes);
        let cn = s.get("commonName").expect("cn");
        assert_eq!(cn.name, "cn");
        assert_eq!(cn.value_type(), ValueType::String);
        assert!(!cn.single_value);
        assert!(s.is_link("MEMBER"));
        assert!(!s.is_link("cn"));
        assert!(s.is_binary("jpegPhoto"));
        assert_eq!(
            s.get("jpegPhoto").map(|t| t.value_type()),
            Some(ValueType::Binary)
        );
        assert!(s.get("employeeNumber").is_some_and(|t| t.single_value));
        let m = s.get("modifyTimestamp").expect("modifyTimestamp");
        assert!(m.operational);
        assert_eq!(m.value_type(), ValueType::DateTime);
        assert_eq!(s.classes, ["groupOfNames"]);
    }
}
