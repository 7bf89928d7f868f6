//! SQLite values. SQLite types values, not columns: each value is rendered by its storage
//! class (integer, real, text, blob), and the column's declared type adds meaning
//! (`BOOLEAN` integers are `true`/`false`, date-time columns are normalized to RFC 3339 UTC).

use chrono::DateTime;
use idlink_model::config::ValueType;
use sqlx::sqlite::{Sqlite, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, TypeInfo, ValueRef};

use super::export::Dialect;
use super::render;

/// The SQLite dialect.
pub(crate) struct Lite;

/// What the declared type of a column says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Integer,
    Real,
    Datetime,
    Date,
    Time,
    Blob,
    /// Text, numeric, or no declared type: values as they are stored.
    Any,
}

impl Dialect for Lite {
    type DB = Sqlite;
    type Kind = Kind;

    super::export::prepare_and_fetch!(Sqlite);

    fn classify(t: &SqliteTypeInfo) -> Option<Kind> {
        Some(match t.name() {
            "BOOLEAN" => Kind::Bool,
            "INTEGER" => Kind::Integer,
            "REAL" => Kind::Real,
            "DATETIME" => Kind::Datetime,
            "DATE" => Kind::Date,
            "TIME" => Kind::Time,
            "BLOB" => Kind::Blob,
            _ => Kind::Any,
        })
    }

    fn value_type(kind: &Kind) -> (ValueType, bool) {
        let t = match kind {
            Kind::Bool => ValueType::Bool,
            Kind::Integer => ValueType::Int64,
            Kind::Real => ValueType::Double,
            Kind::Datetime | Kind::Date => ValueType::DateTime,
            Kind::Blob => ValueType::Binary,
            Kind::Time | Kind::Any => ValueType::String,
        };
        (t, false)
    }

    fn render(value: SqliteValueRef<'_>, kind: &Kind, out: &mut String) -> Result<(), String> {
        let e = |e: sqlx::error::BoxDynError| e.to_string();
        let storage = value.type_info().name().to_string();
        match storage.as_str() {
            "INTEGER" => {
                let n = <i64 as Decode<Sqlite>>::decode(value).map_err(e)?;
                match kind {
                    Kind::Bool => render::push_bool(out, n != 0),
                    // Unix time, in seconds.
                    Kind::Datetime => match DateTime::from_timestamp(n, 0) {
                        Some(dt) => render::push_timestamp(out, dt.naive_utc()),
                        None => render::push_int(out, n),
                    },
                    _ => render::push_int(out, n),
                }
            }
            "REAL" => render::push_f64(out, <f64 as Decode<Sqlite>>::decode(value).map_err(e)?),
            "BLOB" => {
                render::push_base64(out, <&[u8] as Decode<Sqlite>>::decode(value).map_err(e)?)
            }
            _ => {
                let text = <&str as Decode<Sqlite>>::decode(value).map_err(e)?;
                match kind {
                    Kind::Datetime => match render::parse_datetime_text(text) {
                        Some(dt) => render::push_timestamp(out, dt),
                        None => out.push_str(text),
                    },
                    Kind::Date => match render::parse_datetime_text(text) {
                        Some(dt) if dt.time() == chrono::NaiveTime::MIN => {
                            render::push_date(out, dt.date())
                        }
                        _ => out.push_str(text),
                    },
                    Kind::Bool => match text.to_ascii_lowercase().as_str() {
                        "true" | "t" | "1" | "yes" => render::push_bool(out, true),
                        "false" | "f" | "0" | "no" => render::push_bool(out, false),
                        _ => out.push_str(text),
                    },
                    _ => out.push_str(text),
                }
            }
        }
        Ok(())
    }
}
