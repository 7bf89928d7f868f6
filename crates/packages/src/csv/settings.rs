//! Settings of the CSV packages, and the encoding check the LDIF package shares.

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};

use super::decode::SourceEncoding;
use crate::api::{PackageError, parse_settings};

/// `Usercube.CSV`: `Path` and/or `PathIncremental`.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::optional("Path", Kind::String, "CSV file read by a complete export").under_roots(),
        Field::optional(
            "PathIncremental",
            Kind::String,
            "CSV file read by an incremental export",
        )
        .under_roots(),
        IS_FILE_NAME_REGEX,
        SEPARATOR,
        ENCODING,
        NUMBER_OF_LINES_TO_SKIP,
        VALUES_TO_TRIM,
        MAX_ROW_SIZE,
    ],
    constraints: &[Constraint::AtLeastOne(&["Path", "PathIncremental"])],
};

/// `Usercube.CSV.Complete`: no incremental file, so `Path` is required.
pub static COMPLETE_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required("Path", Kind::String, "CSV file to export").under_roots(),
        Field::no_effect(
            "PathIncremental",
            Kind::String,
            "the CSV page documents it for incremental exports; this package runs complete exports only (use Usercube.CSV@0000001 for incremental ones)",
        ),
        IS_FILE_NAME_REGEX,
        SEPARATOR,
        ENCODING,
        NUMBER_OF_LINES_TO_SKIP,
        VALUES_TO_TRIM,
        MAX_ROW_SIZE,
    ],
    constraints: &[],
};

const IS_FILE_NAME_REGEX: Field = Field::optional(
    "IsFileNameRegex",
    Kind::Bool,
    "the file name is a regular expression; the newest matching file is read",
);
const SEPARATOR: Field = Field::optional(
    "Separator",
    Kind::CheckedString(check_separator),
    "column separator: one character, or `tab` (default `,`)",
);
const ENCODING: Field = Field::optional(
    "Encoding",
    Kind::CheckedString(check_encoding),
    "file encoding (default UTF-8)",
);
const NUMBER_OF_LINES_TO_SKIP: Field = Field::optional(
    "NumberOfLinesToSkip",
    Kind::Int {
        min: 0,
        max: 1_000_000,
    },
    "lines skipped before the header row (default 0)",
);
const VALUES_TO_TRIM: Field = Field::optional(
    "ValuesToTrim",
    Kind::StringList,
    "values removed from the start and end of each cell, in order",
);

/// The default of `MaxRowSize`: 64 MiB, the largest value a synchronization keeps.
pub(crate) const DEFAULT_MAX_ROW: u64 = 64 << 20;
const MAX_ROW_SIZE: Field = Field::optional(
    "MaxRowSize",
    Kind::Int {
        min: 1024,
        max: 2_147_483_647,
    },
    "largest row read from the file, in bytes (default 67108864, 64 MiB): a longer row, or a quoted value left open that takes in the lines after it, fails the export at that row instead of growing the memory to the file's size",
);

/// A bound in bytes read from a file (`MaxRowSize`, LDIF's `MaxEntrySize`): from 1024 to
/// 2147483647, or `default` when not given.
pub(crate) fn byte_bound(value: Option<u64>, default: u64) -> Result<u64, String> {
    match value {
        None => Ok(default),
        Some(n) if (1024..=2_147_483_647).contains(&n) => Ok(n),
        Some(_) => Err("expected a number of bytes from 1024 to 2147483647".into()),
    }
}

/// Encoding names accepted by `Encoding` (CSV) and `LdifEncoding` (LDIF), case-insensitively.
pub const ENCODINGS: &[&str] = &[
    "UTF-8",
    "UTF8",
    "UTF-16",
    "UTF-16LE",
    "UTF-16BE",
    "Unicode",
    "Windows-1252",
    "CP1252",
    "ISO-8859-1",
    "Latin1",
    "Latin-1",
    "US-ASCII",
    "ASCII",
];

/// Accepts a known encoding name (see [`ENCODINGS`]), case-insensitively.
pub fn check_encoding(value: &str) -> Result<(), String> {
    if ENCODINGS.iter().any(|e| e.eq_ignore_ascii_case(value)) {
        Ok(())
    } else {
        Err(format!(
            "'{value}' is not a known encoding; use one of {}",
            ENCODINGS.join(", ")
        ))
    }
}

/// Accepts one character (not a quote nor a line break), or `tab` / `\t` for a tab.
pub fn check_separator(value: &str) -> Result<(), String> {
    if value.eq_ignore_ascii_case("tab") || value == "\\t" {
        return Ok(());
    }
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some('"' | '\r' | '\n'), None) => {
            Err("a quote or a line break cannot separate columns".to_owned())
        }
        (Some(c), None) if c.is_ascii() => Ok(()),
        (Some(c), None) => Err(format!(
            "'{c}' is not an ASCII character; the separator must be one ASCII character, or `tab`"
        )),
        _ => Err(format!(
            "'{value}' is not one character; give one character, or `tab`"
        )),
    }
}

/// The settings as `typed_json` gives them (names as the schema spells them).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
// A field the schema lacks is refused, so the schema and this parser cannot disagree
// silently (the settings schema test in idlink-engine walks both).
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    path_incremental: Option<String>,
    #[serde(default)]
    is_file_name_regex: Option<bool>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    number_of_lines_to_skip: Option<u64>,
    #[serde(default)]
    values_to_trim: Option<OneOrMany>,
    #[serde(default)]
    max_row_size: Option<u64>,
}

/// `Usercube.CSV.Complete`'s settings: those of `Usercube.CSV`; `PathIncremental` is accepted without effect.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompleteSettings {
    #[serde(default)]
    path: Option<String>,
    /// Accepted without effect (see [`COMPLETE_SETTINGS`]).
    #[serde(default)]
    #[allow(dead_code)]
    path_incremental: Option<String>,
    #[serde(default)]
    is_file_name_regex: Option<bool>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    number_of_lines_to_skip: Option<u64>,
    #[serde(default)]
    values_to_trim: Option<OneOrMany>,
    #[serde(default)]
    max_row_size: Option<u64>,
}

impl From<RawCompleteSettings> for RawSettings {
    fn from(c: RawCompleteSettings) -> Self {
        RawSettings {
            path: c.path,
            path_incremental: None,
            is_file_name_regex: c.is_file_name_regex,
            separator: c.separator,
            encoding: c.encoding,
            number_of_lines_to_skip: c.number_of_lines_to_skip,
            values_to_trim: c.values_to_trim,
            max_row_size: c.max_row_size,
        }
    }
}

/// `ValuesToTrim` as a list, or as one string (read as a list of one).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged, expecting = "a list of strings, or one string")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Where a file comes from: a plain path, or a folder and a file-name pattern.
#[derive(Debug, Clone)]
pub(crate) enum FileSpec {
    /// A path as written in the settings (relative to the settings folder).
    Plain(String),
    /// `IsFileNameRegex`: the newest file of `folder` whose whole name matches `pattern`.
    Regex {
        /// The folder part of the path, as written (empty: the settings folder).
        folder: String,
        /// The file-name part, as written.
        shown: String,
        /// That part, anchored to match whole names.
        pattern: regex::Regex,
    },
}

/// Checked settings of a CSV connection.
#[derive(Debug, Clone)]
pub(crate) struct CsvSettings {
    /// `Path`: read by complete exports (and schema).
    pub path: Option<FileSpec>,
    /// `PathIncremental`: read by incremental exports (never set for `Usercube.CSV.Complete`).
    pub path_incremental: Option<FileSpec>,
    /// The column separator, one ASCII byte.
    pub separator: u8,
    pub encoding: SourceEncoding,
    /// Lines skipped before the header.
    pub skip: u64,
    /// `ValuesToTrim`, in order; none empty.
    pub trim: Vec<Box<[u8]>>,
    /// `MaxRowSize`: the longest row read, in bytes of the decoded text.
    pub max_row: u64,
}

impl CsvSettings {
    /// Parses and checks settings, without I/O. `incremental` is false for
    /// `Usercube.CSV.Complete`, which accepts `PathIncremental` without effect.
    pub(crate) fn parse(
        connection: &str,
        settings: serde_json::Value,
        incremental: bool,
    ) -> Result<CsvSettings, PackageError> {
        let raw: RawSettings = if incremental {
            parse_settings(connection, settings)?
        } else {
            parse_settings::<RawCompleteSettings>(connection, settings)?.into()
        };
        let bad = |path: &str, message: String| PackageError::Settings {
            connection: connection.to_string(),
            path: path.to_string(),
            message,
        };
        let regex = raw.is_file_name_regex.unwrap_or(false);
        let spec = |name: &str, value: Option<String>| -> Result<Option<FileSpec>, PackageError> {
            match value {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Err(bad(name, "the path is empty".into())),
                Some(v) if !regex => Ok(Some(FileSpec::Plain(v))),
                Some(v) => {
                    let (folder, file) = v.rsplit_once('/').unwrap_or(("", &v));
                    if file.is_empty() {
                        return Err(bad(
                            name,
                            "IsFileNameRegex is set, but the path ends with '/': its last part must be a file-name pattern".into(),
                        ));
                    }
                    let pattern = regex::Regex::new(&format!("^(?:{file})$")).map_err(|e| {
                        // The regex error draws a caret under the anchored pattern over
                        // several lines: keep its last line, the reason.
                        let text = e.to_string();
                        let why = text
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .unwrap_or("invalid")
                            .trim()
                            .trim_start_matches("error: ")
                            .to_string();
                        bad(
                            name,
                            format!("'{file}' is not a valid regular expression: {why}"),
                        )
                    })?;
                    Ok(Some(FileSpec::Regex {
                        folder: folder.to_string(),
                        shown: file.to_string(),
                        pattern,
                    }))
                }
            }
        };
        let path = spec("Path", raw.path)?;
        let path_incremental = if incremental {
            spec("PathIncremental", raw.path_incremental)?
        } else {
            None
        };
        if path.is_none() && path_incremental.is_none() {
            let message = if incremental {
                "give Path (the complete file) and/or PathIncremental (the incremental file)"
            } else {
                "Path is required: the CSV file to export"
            };
            return Err(bad("Path", message.into()));
        }
        let separator = match raw.separator.as_deref() {
            None => b',',
            Some(s) => {
                check_separator(s).map_err(|m| bad("Separator", m))?;
                if s.eq_ignore_ascii_case("tab") || s == "\\t" {
                    b'\t'
                } else {
                    match s.as_bytes() {
                        [b] if b.is_ascii() => *b,
                        _ => {
                            return Err(bad(
                                "Separator",
                                format!(
                                    "'{s}' is not an ASCII character; this build reads files separated by an ASCII character or a tab"
                                ),
                            ));
                        }
                    }
                }
            }
        };
        let encoding = match raw.encoding.as_deref() {
            None => SourceEncoding::UTF8,
            Some(e) => SourceEncoding::from_name(e).ok_or_else(|| {
                bad(
                    "Encoding",
                    check_encoding(e)
                        .err()
                        .unwrap_or_else(|| format!("'{e}' is not supported")),
                )
            })?,
        };
        let trim = match raw.values_to_trim {
            None => Vec::new(),
            Some(OneOrMany::One(v)) => vec![v],
            Some(OneOrMany::Many(v)) => v,
        };
        if let Some(i) = trim.iter().position(String::is_empty) {
            return Err(bad(
                &format!("ValuesToTrim[{i}]"),
                "an empty value trims nothing; remove it".into(),
            ));
        }
        let max_row =
            byte_bound(raw.max_row_size, DEFAULT_MAX_ROW).map_err(|m| bad("MaxRowSize", m))?;
        Ok(CsvSettings {
            path,
            path_incremental,
            separator,
            encoding,
            skip: raw.number_of_lines_to_skip.unwrap_or(0),
            trim: trim
                .into_iter()
                .map(|t| t.into_bytes().into_boxed_slice())
                .collect(),
            max_row,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::CsvSettings;

    /// Issue #9: what `check` accepts for Usercube.CSV.Complete (PathIncremental, without
    /// effect), the package accepts too; it reads Path only.
    #[test]
    fn regression_csv_complete_package_accepts_the_incremental_path_without_effect() {
        let s = CsvSettings::parse(
            "HR",
            serde_json::json!({"Path": "hr.csv", "PathIncremental": "hr_delta.csv"}),
            false,
        )
        .expect("accepted");
        assert!(format!("{s:?}").contains("hr.csv"));
        assert!(!format!("{s:?}").contains("hr_delta.csv"), "{s:?}");
    }
}
