//! Settings of the CSV packages, and the encoding check the LDIF package shares.

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};

/// `Usercube.CSV`: `Path` and/or `PathIncremental`.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::optional("Path", Kind::String, "CSV file read by a complete export"),
        Field::optional(
            "PathIncremental",
            Kind::String,
            "CSV file read by an incremental export",
        ),
        IS_FILE_NAME_REGEX,
        SEPARATOR,
        ENCODING,
        NUMBER_OF_LINES_TO_SKIP,
        VALUES_TO_TRIM,
    ],
    constraints: &[Constraint::AtLeastOne(&["Path", "PathIncremental"])],
};

/// `Usercube.CSV.Complete`: no incremental file, so `Path` is required.
pub static COMPLETE_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required("Path", Kind::String, "CSV file to export"),
        IS_FILE_NAME_REGEX,
        SEPARATOR,
        ENCODING,
        NUMBER_OF_LINES_TO_SKIP,
        VALUES_TO_TRIM,
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
        (Some(_), None) => Ok(()),
        _ => Err(format!(
            "'{value}' is not one character; give one character, or `tab`"
        )),
    }
}
