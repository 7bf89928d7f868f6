//! Settings of the LDIF package.

use idlink_model::package::{Field, Kind, SettingsSchema};

use crate::api::PackageError;
use crate::csv::settings::check_encoding;

/// `LDIFFile` and optional entry/attribute filters.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "LDIFFile",
            Kind::String,
            "LDIF file to export, relative to the settings file, under SourcesRootPaths",
        )
        .under_roots(),
        Field::optional(
            "FilterAttribute",
            Kind::String,
            "attribute that selects the entries (with FilterValues)",
        ),
        Field::optional(
            "FilterValues",
            Kind::StringList,
            "values of FilterAttribute to keep, ignoring case (with FilterAttribute)",
        ),
        Field::optional(
            "Attributes",
            Kind::StringList,
            "attributes to export (default: those the mappings read, else all)",
        ),
        Field::optional(
            "LdifEncoding",
            Kind::CheckedString(check_encoding),
            "file encoding (default UTF-8)",
        ),
        Field::optional(
            "MaxEntrySize",
            Kind::Int {
                min: 1024,
                max: 2_147_483_647,
            },
            "largest entry read from the file, in bytes, its lines together (default 67108864, 64 MiB; raise it for groups with more members): a longer one, or a file without line breaks, fails the export at that entry instead of growing the memory to the file's size",
        ),
    ],
    constraints: &[],
};

/// Attributes that hold references to other entries (DNs) and are multi-valued in the standard
/// LDAP schemas: each gets its own link table `<connection>_<attribute>` (columns `dn` and the
/// attribute, one row per value) instead of a column of `<connection>_entries`.
pub const LINK_ATTRIBUTES: &[&str] = &[
    "member",
    "memberOf",
    "manager",
    "owner",
    "secretary",
    "seeAlso",
    "uniqueMember",
];

/// The standard spelling of a link attribute, if `name` is one (compared case-insensitively).
pub fn link_attribute(name: &str) -> Option<&'static str> {
    LINK_ATTRIBUTES
        .iter()
        .copied()
        .find(|a| a.eq_ignore_ascii_case(name))
}

/// How the file's bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdifEncoding {
    /// UTF-8 (the default): invalid bytes are an error naming the line. A byte order mark is
    /// skipped; a UTF-16 one switches to UTF-16.
    Utf8,
    /// Like UTF-8, but any byte above 0x7F is an error naming the line.
    Ascii,
    /// Decoded with `encoding_rs` (UTF-16, Windows-1252). A byte order mark, if any, wins.
    Decoded(&'static encoding_rs::Encoding),
}

impl LdifEncoding {
    /// The encoding for a name accepted by [`check_encoding`], case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(name));
        if is(&["UTF-8", "UTF8"]) {
            Some(LdifEncoding::Utf8)
        } else if is(&["US-ASCII", "ASCII"]) {
            Some(LdifEncoding::Ascii)
        } else if is(&["UTF-16", "UTF-16LE", "Unicode"]) {
            // .NET's `Unicode` is UTF-16 little-endian.
            Some(LdifEncoding::Decoded(encoding_rs::UTF_16LE))
        } else if is(&["UTF-16BE"]) {
            Some(LdifEncoding::Decoded(encoding_rs::UTF_16BE))
        } else if is(&["Windows-1252", "CP1252", "ISO-8859-1", "Latin1", "Latin-1"]) {
            // As in browsers (WHATWG), ISO-8859-1 is read as its superset Windows-1252.
            Some(LdifEncoding::Decoded(encoding_rs::WINDOWS_1252))
        } else {
            None
        }
    }
}

/// The settings as appsettings.agent.json holds them (after `typed_json`).
#[derive(Debug, Clone, serde::Deserialize)]
// A field the schema lacks is refused, so the schema and this parser cannot disagree
// silently (the settings schema test in idlink-engine walks both).
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "LDIFFile")]
    ldif_file: String,
    #[serde(rename = "FilterAttribute", default)]
    filter_attribute: Option<String>,
    #[serde(rename = "FilterValues", default)]
    filter_values: Option<OneOrMany>,
    #[serde(rename = "Attributes", default)]
    attributes: Option<OneOrMany>,
    #[serde(rename = "LdifEncoding", default)]
    ldif_encoding: Option<String>,
    #[serde(rename = "MaxEntrySize", default)]
    max_entry_size: Option<u64>,
}

/// A list, or one string of values separated by spaces (or commas), as the Netwrix
/// documentation writes `"FilterValues": "user organizationalUnit"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<String>),
    One(String),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::Many(v) => v
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            OneOrMany::One(s) => s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// `FilterAttribute` and `FilterValues`: keep only entries where the attribute has one of the
/// values (both compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The attribute as written in settings (`dn` filters on the entry's DN).
    pub attribute: String,
    /// The accepted values, lowercased.
    pub values: Vec<String>,
}

impl Filter {
    /// Whether a value (of the filter's attribute) is accepted.
    pub fn accepts(&self, value: &str) -> bool {
        let lower = value.to_lowercase();
        self.values.contains(&lower)
    }
}

/// Checked settings of one LDIF connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdifSettings {
    /// `LDIFFile` as written: resolved against the settings folder and checked to be under
    /// `SourcesRootPaths` when the file is read.
    pub file: String,
    pub filter: Option<Filter>,
    /// `Attributes` without `dn` and without duplicates, as written, in order; `None` when not
    /// given.
    pub attributes: Option<Vec<String>>,
    pub encoding: LdifEncoding,
    /// `MaxEntrySize`: the longest entry read, in bytes of its lines.
    pub max_entry: u64,
}

/// The default of `MaxEntrySize`: 64 MiB.
pub const DEFAULT_MAX_ENTRY: u64 = 64 << 20;

/// Parses and checks the settings (no I/O).
pub fn parse(connection: &str, value: serde_json::Value) -> Result<LdifSettings, PackageError> {
    let raw: Raw = crate::api::parse_settings(connection, value)?;
    let bad = |path: &str, message: String| PackageError::Settings {
        connection: connection.to_string(),
        path: path.to_string(),
        message,
    };
    let file = raw.ldif_file.trim().to_string();
    if file.is_empty() {
        return Err(bad(
            "LDIFFile",
            "is empty; give the path of the LDIF file".into(),
        ));
    }
    let filter_attribute = raw
        .filter_attribute
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    let filter_values = raw
        .filter_values
        .map(OneOrMany::into_vec)
        .filter(|v| !v.is_empty());
    let filter = match (filter_attribute, filter_values) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "FilterValues",
                "is required when FilterAttribute is given: list the values to keep".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "FilterAttribute",
                "is required when FilterValues is given: name the attribute to compare".into(),
            ));
        }
        (Some(attribute), Some(values)) => {
            if !is_attribute_description(&attribute) {
                return Err(bad(
                    "FilterAttribute",
                    format!("'{attribute}' is not an attribute name"),
                ));
            }
            Some(Filter {
                attribute,
                values: values.iter().map(|v| v.to_lowercase()).collect(),
            })
        }
    };
    let attributes = match raw.attributes.map(OneOrMany::into_vec) {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(bad(
                "Attributes",
                "is empty; list the attributes to export, or remove it to export them all".into(),
            ));
        }
        Some(list) => {
            let mut kept: Vec<String> = Vec::with_capacity(list.len());
            for (i, a) in list.into_iter().enumerate() {
                if !is_attribute_description(&a) {
                    return Err(bad(
                        &format!("Attributes[{i}]"),
                        format!("'{a}' is not an attribute name"),
                    ));
                }
                if let Some(first) = kept.iter().find(|k| k.eq_ignore_ascii_case(&a)) {
                    return Err(bad(
                        &format!("Attributes[{i}]"),
                        format!(
                            "'{a}' is listed twice (also as '{first}'); attribute names ignore case"
                        ),
                    ));
                }
                kept.push(a);
            }
            // `dn` is always the first column.
            kept.retain(|a| !a.eq_ignore_ascii_case("dn"));
            Some(kept)
        }
    };
    let encoding = match raw.ldif_encoding.as_deref().map(str::trim) {
        None | Some("") => LdifEncoding::Utf8,
        Some(name) => LdifEncoding::from_name(name).ok_or_else(|| {
            bad(
                "LdifEncoding",
                check_encoding(name)
                    .err()
                    .unwrap_or_else(|| format!("'{name}' is not a known encoding")),
            )
        })?,
    };
    let max_entry = crate::csv::settings::byte_bound(raw.max_entry_size, DEFAULT_MAX_ENTRY)
        .map_err(|m| bad("MaxEntrySize", m))?;
    Ok(LdifSettings {
        file,
        filter,
        attributes,
        encoding,
        max_entry,
    })
}

/// An attribute description as RFC 4512 writes it (`cn`, `cn;lang-fr`, `2.5.4.3`), with `_`
/// also allowed (some directories use it): letters, digits, `-`, `.`, `_`, options after `;`.
pub fn is_attribute_description(s: &str) -> bool {
    let mut parts = s.split(';');
    let ty = parts.next().unwrap_or_default();
    let ty_ok = !ty.is_empty()
        && ty
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    ty_ok
        && parts.all(|o| {
            !o.is_empty()
                && o.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}
