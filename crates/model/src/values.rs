//! Property values as synchronization reads them from connection tables: the `Format` of an
//! entity type mapping property, and the check and normal form of a cell for each property
//! type (String, Int32, Int64, Bool, DateTime, Guid, Double, Binary, multi-valued text).
//!
//! A value is never coerced: a cell that does not read as its property's type is an error
//! that says what was expected, so the row can be set aside and reported.

use std::sync::LazyLock;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::config::PropertyType;

/// How a mapping property's `Format` says its cells are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// No format: the type's usual written forms.
    #[default]
    Default,
    /// A .NET custom date and time format (`yyyy-MM-dd`, `dd/MM/yyyy HH:mm:ss`,
    /// `yyyyMMddHHmmss.0Z`), translated to chrono's, parsed once (`items`; an unreadable
    /// format reads no cell).
    Date {
        written: String,
        chrono: String,
        items: Vec<Item<'static>>,
    },
    /// `1601date`: a count of 100-nanosecond intervals since 1601-01-01 UTC, as Active
    /// Directory writes `accountExpires` or `pwdLastSet`; 0 and the largest Int64 mean "never".
    FileTime,
    /// `multivaluedtext`: values one per line in the cell, as the LDAP and SCIM exports write
    /// multi-valued attributes.
    MultivaluedText,
}

impl ValueFormat {
    /// Reads a `Format` attribute. Date formats are only checked when used on a DateTime
    /// property; an empty attribute is the default format.
    pub fn parse(written: &str) -> ValueFormat {
        let w = written.trim();
        if w.is_empty() {
            return ValueFormat::Default;
        }
        if w.eq_ignore_ascii_case("1601date") {
            return ValueFormat::FileTime;
        }
        if w.eq_ignore_ascii_case("multivaluedtext") {
            return ValueFormat::MultivaluedText;
        }
        let chrono = dotnet_to_chrono(w);
        let items = StrftimeItems::new(&chrono)
            .parse_to_owned()
            .unwrap_or_else(|_| vec![Item::Error]);
        ValueFormat::Date {
            written: w.to_string(),
            chrono,
            items,
        }
    }

    fn describe(&self) -> String {
        match self {
            ValueFormat::Default => String::new(),
            ValueFormat::Date { written, .. } => format!(" in the format '{written}'"),
            ValueFormat::FileTime => " as a 1601date (100 ns intervals since 1601)".to_string(),
            ValueFormat::MultivaluedText => " (multi-valued text)".to_string(),
        }
    }
}

/// Translates a .NET custom date and time format into a chrono one.
fn dotnet_to_chrono(f: &str) -> String {
    let chars: Vec<char> = f.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let mut literal = |s: &str| {
            for ch in s.chars() {
                if ch == '%' {
                    out.push_str("%%");
                } else {
                    out.push(ch);
                }
            }
        };
        match c {
            'y' => out.push_str(if run <= 2 { "%y" } else { "%Y" }),
            'M' => out.push_str(match run {
                1 | 2 => "%m",
                3 => "%b",
                _ => "%B",
            }),
            'd' => out.push_str(match run {
                1 | 2 => "%d",
                3 => "%a",
                _ => "%A",
            }),
            'H' => out.push_str("%H"),
            'h' => out.push_str("%I"),
            'm' => out.push_str("%M"),
            's' => out.push_str("%S"),
            'f' | 'F' => out.push_str(match run {
                3 => "%3f",
                6 => "%6f",
                9 => "%9f",
                _ => "%f",
            }),
            't' => out.push_str("%p"),
            'z' => out.push_str(if run >= 3 { "%:z" } else { "%z" }),
            'K' => out.push_str("%:z"),
            '\'' | '"' => {
                // A quoted literal runs to the same quote.
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .map_or(chars.len(), |p| i + 1 + p);
                let s: String = chars[i + 1..end].iter().collect();
                literal(&s);
                i = (end + 1).min(chars.len());
                continue;
            }
            '\\' if i + 1 < chars.len() => {
                literal(&chars[i + 1].to_string());
                i += 2;
                continue;
            }
            _ => literal(&c.to_string().repeat(run)),
        }
        i += run;
    }
    out
}

/// Reads one cell as a value of `ty` written in `format`. `Ok(None)` for an empty cell (no
/// value); `Err` says what was expected.
pub fn read_value(
    ty: PropertyType,
    format: &ValueFormat,
    cell: &str,
) -> Result<Option<Value>, String> {
    if cell.is_empty() {
        return Ok(None);
    }
    if *format == ValueFormat::MultivaluedText {
        let mut values: Vec<&str> = cell.split('\n').map(|v| v.trim_end_matches('\r')).collect();
        values.retain(|v| !v.is_empty());
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            if let Some(v) = read_value(ty, &ValueFormat::Default, v)? {
                out.push(v);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    let expected = |what: &str| format!("expected {what}{}", format.describe());
    let t = cell.trim();
    Ok(Some(match ty {
        PropertyType::String | PropertyType::ForeignKey => Value::String(cell.to_string()),
        PropertyType::Byte => Value::from(
            t.parse::<u8>()
                .map_err(|_| expected("a whole number from 0 to 255 (Byte)"))?,
        ),
        PropertyType::Int16 => Value::from(
            t.parse::<i16>()
                .map_err(|_| expected("a whole number (Int16)"))?,
        ),
        PropertyType::Int32 => Value::from(
            t.parse::<i32>()
                .map_err(|_| expected("a whole number (Int32)"))?,
        ),
        PropertyType::Int64 => Value::from(
            t.parse::<i64>()
                .map_err(|_| expected("a whole number (Int64)"))?,
        ),
        PropertyType::Bool => Value::Bool(match t {
            _ if t.eq_ignore_ascii_case("true") || t == "1" => true,
            _ if t.eq_ignore_ascii_case("false") || t == "0" => false,
            _ => return Err(expected("true, false, 1 or 0 (Bool)")),
        }),
        PropertyType::Double => match t.parse::<f64>() {
            Ok(d) if d.is_finite() => Value::from(d),
            _ => return Err(expected("a finite number (Double)")),
        },
        PropertyType::Guid => {
            let g = t.trim_start_matches('{').trim_end_matches('}');
            match parse_guid(g) {
                Some(g) => Value::String(g),
                None => {
                    return Err(expected(
                        "a GUID (Guid), e.g. 0f8fad5b-d9cb-469f-a165-70867728950e",
                    ));
                }
            }
        }
        PropertyType::Binary | PropertyType::Bytes => {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(t) {
                Ok(_) => Value::String(t.to_string()),
                Err(_) => return Err(expected("base64 (Binary)")),
            }
        }
        PropertyType::DateTime => match read_datetime(format, t) {
            Some(Some(d)) => Value::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Some(None) => return Ok(None),
            None => {
                return Err(expected(match format {
                    ValueFormat::Default => {
                        "a date (DateTime) such as 2024-05-31, 2024-05-31T08:30:00 or 2024-05-31T08:30:00+02:00"
                    }
                    ValueFormat::FileTime => "a date (DateTime)",
                    _ => "a date (DateTime)",
                }));
            }
        },
    }))
}

fn parse_guid(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let dashes_ok = s.len() == 32
        || (s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-'));
    if hex.len() != 32 || !dashes_ok || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// `Some(None)`: a date that means "never" (1601date 0 or max). Values without a zone are UTC.
pub fn read_datetime(format: &ValueFormat, t: &str) -> Option<Option<DateTime<Utc>>> {
    match format {
        ValueFormat::FileTime => {
            let ticks: i64 = t.parse().ok()?;
            if ticks == 0 || ticks == i64::MAX {
                return Some(None);
            }
            // 100 ns intervals between 1601-01-01 and 1970-01-01.
            const EPOCH_DIFF: i64 = 116_444_736_000_000_000;
            let since_1970 = ticks.checked_sub(EPOCH_DIFF)?;
            let secs = since_1970.div_euclid(10_000_000);
            let nanos = u32::try_from(since_1970.rem_euclid(10_000_000) * 100).ok()?;
            Some(Some(DateTime::from_timestamp(secs, nanos)?))
        }
        ValueFormat::Date { items, .. } => parse_with(t, items).map(Some),
        ValueFormat::Default | ValueFormat::MultivaluedText => {
            if let Ok(d) = DateTime::parse_from_rfc3339(t) {
                return Some(Some(d.with_timezone(&Utc)));
            }
            DEFAULT_DATE_FORMATS
                .iter()
                .find_map(|items| parse_with(t, items))
                .map(Some)
        }
    }
}

/// The written forms of a date without a `Format`, after RFC 3339, parsed once.
static DEFAULT_DATE_FORMATS: LazyLock<Vec<Vec<Item<'static>>>> = LazyLock::new(|| {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    ]
    .iter()
    .map(|f| {
        StrftimeItems::new(f)
            .parse_to_owned()
            .unwrap_or_else(|_| vec![Item::Error])
    })
    .collect()
});

/// Reads `t` whole with a parsed format: a date and time with its offset, else one without
/// (UTC), else a date alone (midnight UTC).
fn parse_with(t: &str, items: &[Item<'_>]) -> Option<DateTime<Utc>> {
    let mut p = Parsed::new();
    chrono::format::parse(&mut p, t, items.iter()).ok()?;
    if let Ok(d) = p.to_datetime() {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = p.to_naive_datetime_with_offset(0) {
        return Some(d.and_utc());
    }
    p.to_naive_date()
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ty: PropertyType, format: &str, cell: &str) -> Result<Option<Value>, String> {
        read_value(ty, &ValueFormat::parse(format), cell)
    }

    #[test]
    fn dotnet_formats_translate_to_chrono() {
        assert_eq!(dotnet_to_chrono("yyyy-MM-dd"), "%Y-%m-%d");
        assert_eq!(dotnet_to_chrono("dd/MM/yyyy HH:mm:ss"), "%d/%m/%Y %H:%M:%S");
        assert_eq!(dotnet_to_chrono("yyyyMMddHHmmss'.0Z'"), "%Y%m%d%H%M%S.0Z");
        assert_eq!(
            dotnet_to_chrono("yyyy-MM-ddTHH:mm:ss.fffzzz"),
            "%Y-%m-%dT%H:%M:%S.%3f%:z"
        );
        assert_eq!(dotnet_to_chrono("100%"), "100%%");
    }

    #[test]
    fn dates_read_in_their_format_and_normalize_to_utc() {
        let d = |f: &str, c: &str| {
            read(PropertyType::DateTime, f, c)
                .map(|v| v.and_then(|v| v.as_str().map(str::to_string)))
        };
        assert_eq!(
            d("yyyy-MM-dd", "2019-03-01"),
            Ok(Some("2019-03-01T00:00:00Z".into()))
        );
        assert_eq!(
            d("dd/MM/yyyy", "31/12/2020"),
            Ok(Some("2020-12-31T00:00:00Z".into()))
        );
        assert_eq!(
            d("yyyyMMddHHmmss'.0Z'", "20240102030405.0Z"),
            Ok(Some("2024-01-02T03:04:05Z".into()))
        );
        assert_eq!(
            d("", "2024-05-31T08:30:00+02:00"),
            Ok(Some("2024-05-31T06:30:00Z".into()))
        );
        assert_eq!(
            d("", "2024-05-31 08:30:00"),
            Ok(Some("2024-05-31T08:30:00Z".into()))
        );
        assert_eq!(
            d("1601date", "133485408000000000"),
            Ok(Some("2024-01-01T00:00:00Z".into()))
        );
        assert_eq!(d("1601date", "9223372036854775807"), Ok(None));
        assert!(
            d("yyyy-MM-dd", "01/03/2019")
                .expect_err("a date in another format")
                .contains("yyyy-MM-dd")
        );
        assert!(d("", "yesterday").is_err());
        assert!(d("yyyy-MM-dd", "2019-02-30").is_err());
    }

    #[test]
    fn numbers_booleans_guids_and_binary_are_checked_not_coerced() {
        assert_eq!(
            read(PropertyType::Int32, "", " 42 "),
            Ok(Some(Value::from(42)))
        );
        assert!(read(PropertyType::Int32, "", "3000000000").is_err());
        assert_eq!(
            read(PropertyType::Int64, "", "3000000000"),
            Ok(Some(Value::from(3_000_000_000_i64)))
        );
        assert!(read(PropertyType::Int64, "", "4.5").is_err());
        assert_eq!(
            read(PropertyType::Bool, "", "1"),
            Ok(Some(Value::Bool(true)))
        );
        assert_eq!(
            read(PropertyType::Bool, "", "FALSE"),
            Ok(Some(Value::Bool(false)))
        );
        assert!(read(PropertyType::Bool, "", "yes").is_err());
        assert!(read(PropertyType::Double, "", "NaN").is_err());
        assert_eq!(
            read(PropertyType::Double, "", "2.5"),
            Ok(Some(Value::from(2.5)))
        );
        assert_eq!(
            read(
                PropertyType::Guid,
                "",
                "{0F8FAD5B-D9CB-469F-A165-70867728950E}"
            ),
            Ok(Some(Value::from("0f8fad5b-d9cb-469f-a165-70867728950e")))
        );
        assert!(read(PropertyType::Guid, "", "0f8fad5b").is_err());
        assert!(read(PropertyType::Binary, "", "not base64!").is_err());
        assert_eq!(read(PropertyType::String, "", ""), Ok(None));
        assert_eq!(
            read(PropertyType::String, "", " kept as written "),
            Ok(Some(Value::from(" kept as written ")))
        );
    }

    #[test]
    fn multivalued_text_is_a_list_of_checked_values() {
        assert_eq!(
            read(
                PropertyType::String,
                "multivaluedtext",
                "top\ninetOrgPerson\n"
            ),
            Ok(Some(serde_json::json!(["top", "inetOrgPerson"])))
        );
        assert!(read(PropertyType::Int32, "MultivaluedText", "1\nx").is_err());
    }
}
