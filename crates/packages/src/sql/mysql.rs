//! MySQL and MariaDB values, from the binary protocol of prepared statements.

use chrono::NaiveDate;
use idlink_model::config::ValueType;
use sqlx::mysql::{MySql, MySqlTypeInfo, MySqlValueRef};
use sqlx::{Decode, TypeInfo};

use super::export::Dialect;
use super::render;

/// The MySQL dialect.
pub(crate) struct My;

/// How a MySQL column is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A column that is always NULL (`SELECT NULL`).
    Null,
    /// `BOOLEAN` (`TINYINT(1)`).
    Bool,
    /// Signed integers; the value type says how wide.
    Int(ValueType),
    /// Unsigned integers; the value type says how wide.
    UInt(ValueType),
    Float,
    Double,
    /// `DECIMAL`: sent as exact text.
    Decimal,
    /// Character strings, `ENUM`, `SET`.
    Text,
    /// `JSON` (MySQL); MariaDB's JSON is text.
    Json,
    /// `BINARY`, `VARBINARY`, `BLOB`s: the server flags binary strings and text with a binary
    /// collation (`utf8mb4_bin`, MariaDB's `JSON`) alike, and sqlx does not expose the
    /// character set that tells them apart. So a value that is UTF-8 text (no control
    /// character but tab, CR, LF) is written as text, any other as base64.
    Bytes,
    /// `BIT(n)`: an unsigned number.
    Bit,
    Datetime,
    Date,
    Time,
}

impl Dialect for My {
    type DB = MySql;
    type Kind = Kind;

    super::export::prepare_and_fetch!(MySql);

    fn classify(t: &MySqlTypeInfo) -> Option<Kind> {
        Some(match t.name() {
            "NULL" => Kind::Null,
            "BOOLEAN" => Kind::Bool,
            "TINYINT" | "SMALLINT" => Kind::Int(ValueType::Int16),
            "MEDIUMINT" | "INT" => Kind::Int(ValueType::Int32),
            "BIGINT" => Kind::Int(ValueType::Int64),
            "TINYINT UNSIGNED" => Kind::UInt(ValueType::Byte),
            "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" => Kind::UInt(ValueType::Int32),
            "INT UNSIGNED" => Kind::UInt(ValueType::Int64),
            // May exceed Int64.
            "BIGINT UNSIGNED" => Kind::UInt(ValueType::String),
            "YEAR" => Kind::UInt(ValueType::Int32),
            "FLOAT" => Kind::Float,
            "DOUBLE" => Kind::Double,
            "DECIMAL" => Kind::Decimal,
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => Kind::Text,
            "JSON" => Kind::Json,
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => Kind::Bytes,
            "BIT" => Kind::Bit,
            "DATETIME" | "TIMESTAMP" => Kind::Datetime,
            "DATE" => Kind::Date,
            "TIME" => Kind::Time,
            _ => return None,
        })
    }

    fn value_type(kind: &Kind) -> (ValueType, bool) {
        let t = match *kind {
            Kind::Null | Kind::Decimal | Kind::Text | Kind::Json | Kind::Time => ValueType::String,
            Kind::Bool => ValueType::Bool,
            Kind::Int(t) | Kind::UInt(t) => t,
            Kind::Float | Kind::Double => ValueType::Double,
            Kind::Bytes => ValueType::Binary,
            Kind::Bit => ValueType::Int64,
            Kind::Datetime | Kind::Date => ValueType::DateTime,
        };
        (t, false)
    }

    fn render(value: MySqlValueRef<'_>, kind: &Kind, out: &mut String) -> Result<(), String> {
        let e = |e: sqlx::error::BoxDynError| e.to_string();
        match *kind {
            Kind::Null => {}
            Kind::Bool => {
                render::push_bool(out, <i64 as Decode<MySql>>::decode(value).map_err(e)? != 0)
            }
            Kind::Int(_) => {
                render::push_int(out, <i64 as Decode<MySql>>::decode(value).map_err(e)?)
            }
            Kind::UInt(_) => {
                render::push_uint(out, <u64 as Decode<MySql>>::decode(value).map_err(e)?)
            }
            Kind::Float => render::push_f32(out, <f32 as Decode<MySql>>::decode(value).map_err(e)?),
            Kind::Double => {
                render::push_f64(out, <f64 as Decode<MySql>>::decode(value).map_err(e)?)
            }
            Kind::Decimal | Kind::Text => {
                render::push_text(out, <&[u8] as Decode<MySql>>::decode(value).map_err(e)?)?
            }
            Kind::Json => {
                render::push_json(out, <&[u8] as Decode<MySql>>::decode(value).map_err(e)?)?
            }
            Kind::Bytes => {
                let b = <&[u8] as Decode<MySql>>::decode(value).map_err(e)?;
                match std::str::from_utf8(b) {
                    Ok(text)
                        if !text
                            .chars()
                            .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n')) =>
                    {
                        out.push_str(text)
                    }
                    _ => render::push_base64(out, b),
                }
            }
            Kind::Bit => {
                let b = <&[u8] as Decode<MySql>>::decode(value).map_err(e)?;
                if b.len() > 8 {
                    return Err("BIT value wider than 64 bits".to_string());
                }
                let n = b.iter().fold(0u64, |n, &x| (n << 8) | u64::from(x));
                render::push_uint(out, n);
            }
            Kind::Datetime | Kind::Date => {
                let b = <&[u8] as Decode<MySql>>::decode(value).map_err(e)?;
                push_datetime(out, b, *kind == Kind::Date)?;
            }
            Kind::Time => {
                let b = <&[u8] as Decode<MySql>>::decode(value).map_err(e)?;
                push_time(out, b)?;
            }
        }
        Ok(())
    }
}

/// A binary DATE/DATETIME/TIMESTAMP: `[len] year(2) month day [hour minute second
/// [micros(4)]]`. The zero date (`0000-00-00`) renders as empty, like NULL.
fn push_datetime(out: &mut String, b: &[u8], date_only: bool) -> Result<(), String> {
    let (&len, rest) = b.split_first().ok_or("empty date value")?;
    let len = usize::from(len);
    let rest = rest.get(..len).ok_or("date value too short")?;
    if len == 0 {
        return Ok(());
    }
    if len < 4 {
        return Err(format!("date value of {len} bytes"));
    }
    let year = i32::from(u16::from_le_bytes([rest[0], rest[1]]));
    let (month, day) = (u32::from(rest[2]), u32::from(rest[3]));
    let (h, m, s) = if len >= 7 {
        (u32::from(rest[4]), u32::from(rest[5]), u32::from(rest[6]))
    } else {
        (0, 0, 0)
    };
    let micros = if len >= 11 {
        u32::from_le_bytes([rest[7], rest[8], rest[9], rest[10]])
    } else {
        0
    };
    let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
        if year == 0 && month == 0 && day == 0 {
            return Ok(());
        }
        return Err(format!(
            "invalid date {year:04}-{month:02}-{day:02} (zero month or day)"
        ));
    };
    if date_only {
        render::push_date(out, date);
        return Ok(());
    }
    let dt = date
        .and_hms_micro_opt(h, m, s, micros)
        .ok_or("invalid time of day")?;
    render::push_timestamp(out, dt);
    Ok(())
}

/// A binary TIME: `[len] negative days(4) hour minute second [micros(4)]`, as
/// `[-]HH:MM:SS[.ffffff]` (hours may exceed 23).
fn push_time(out: &mut String, b: &[u8]) -> Result<(), String> {
    let (&len, rest) = b.split_first().ok_or("empty time value")?;
    let len = usize::from(len);
    let rest = rest.get(..len).ok_or("time value too short")?;
    if len == 0 {
        out.push_str("00:00:00");
        return Ok(());
    }
    if len < 8 {
        return Err(format!("time value of {len} bytes"));
    }
    let negative = rest[0] != 0;
    let days = u64::from(u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]));
    let hours = days * 24 + u64::from(rest[5]);
    let micros = if len >= 12 {
        u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]])
    } else {
        0
    };
    if negative {
        out.push('-');
    }
    if hours < 10 {
        out.push('0');
    }
    render::push_uint(out, hours);
    for v in [rest[6], rest[7]] {
        out.push(':');
        out.push(char::from(b'0' + v / 10));
        out.push(char::from(b'0' + v % 10));
    }
    render::push_fraction(out, micros * 1000);
    Ok(())
}
