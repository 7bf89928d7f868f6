//! Canonical text of database values, shared by the drivers.
//!
//! - timestamps: RFC 3339 in UTC, `2024-01-02T03:04:05Z`, with a fraction of 3, 6 or 9
//!   digits only when it is not zero (chrono's `AutoSi`);
//! - dates `YYYY-MM-DD`, times `HH:MM:SS[.fraction]`;
//! - booleans `true`/`false`; NULL: empty;
//! - bytes: standard base64 with padding;
//! - floating point: the shortest text that reads back to the same value, in plain notation
//!   from 1e-7 to 1e21 and in exponent notation (`1e300`) outside; `NaN`, `Infinity`,
//!   `-Infinity`;
//! - exact numerics as the database's exact decimal text;
//! - JSON: compact (no insignificant whitespace).

use std::fmt::Write;

use base64::Engine;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// Appends `n` as exactly `width` digits (zero-padded; `n` fits).
fn push_digits(out: &mut String, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = n;
    for i in (0..width).rev() {
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &b in &buf[..width] {
        out.push(b as char);
    }
}

/// Appends the fraction `.fff`, `.ffffff` or `.fffffffff` of `nanos`, nothing when zero.
pub fn push_fraction(out: &mut String, nanos: u32) {
    if nanos == 0 {
        return;
    }
    out.push('.');
    if nanos.is_multiple_of(1_000_000) {
        push_digits(out, nanos / 1_000_000, 3);
    } else if nanos.is_multiple_of(1_000) {
        push_digits(out, nanos / 1_000, 6);
    } else {
        push_digits(out, nanos, 9);
    }
}

/// `YYYY-MM-DD` (years outside 0..=9999 get a sign and as many digits as they need).
pub fn push_date(out: &mut String, d: NaiveDate) {
    let year = d.year();
    if (0..=9999).contains(&year) {
        push_digits(out, year.unsigned_abs(), 4);
    } else {
        let _ = write!(out, "{year:+05}");
    }
    out.push('-');
    push_digits(out, d.month(), 2);
    out.push('-');
    push_digits(out, d.day(), 2);
}

/// `HH:MM:SS[.fraction]`.
pub fn push_time(out: &mut String, t: NaiveTime) {
    push_digits(out, t.hour(), 2);
    out.push(':');
    push_digits(out, t.minute(), 2);
    out.push(':');
    // A leap second shows as :60.
    let (sec, nanos) = if t.nanosecond() >= 1_000_000_000 {
        (t.second() + 1, t.nanosecond() - 1_000_000_000)
    } else {
        (t.second(), t.nanosecond())
    };
    push_digits(out, sec, 2);
    push_fraction(out, nanos);
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`: a UTC instant (naive values are taken as UTC).
pub fn push_timestamp(out: &mut String, dt: NaiveDateTime) {
    push_date(out, dt.date());
    out.push('T');
    push_time(out, dt.time());
    out.push('Z');
}

pub fn push_bool(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

pub fn push_base64(out: &mut String, bytes: &[u8]) {
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
}

pub fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else if v == 0.0 || (1e-7..1e21).contains(&v.abs()) {
        // Display is the shortest round-trip text, without exponent.
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

pub fn push_f32(out: &mut String, v: f32) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else if v == 0.0 || (1e-7..1e21).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

pub fn push_int(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_uint(out, v.unsigned_abs());
}

/// Decimal digits without going through `core::fmt` (hot in large exports).
pub fn push_uint(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("?"));
}

/// The civil date of a day count from 1970-01-01 (Howard Hinnant's `civil_from_days`), for
/// any day a 64-bit count of microseconds can reach.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` from microseconds since 1970-01-01 00:00:00 UTC.
pub fn push_timestamp_micros(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    push_civil_date(out, days);
    out.push('T');
    push_digits(out, sod / 3600, 2);
    out.push(':');
    push_digits(out, sod / 60 % 60, 2);
    out.push(':');
    push_digits(out, sod % 60, 2);
    push_fraction(out, frac * 1000);
    out.push('Z');
}

/// `YYYY-MM-DD` from days since 1970-01-01.
pub fn push_civil_date(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        push_digits(out, y as u32, 4);
    } else {
        let _ = write!(out, "{y:+05}");
    }
    out.push('-');
    push_digits(out, m, 2);
    out.push('-');
    push_digits(out, d, 2);
}

/// A UUID, hyphenated lower case.
pub fn push_uuid(out: &mut String, bytes: &[u8]) -> Result<(), String> {
    let u = sqlx::types::Uuid::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut buf = sqlx::types::uuid::Uuid::encode_buffer();
    out.push_str(u.hyphenated().encode_lower(&mut buf));
    Ok(())
}

/// JSON text, re-written compactly.
pub fn push_json(out: &mut String, text: &[u8]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let s = serde_json::to_string(&v).map_err(|e| e.to_string())?;
    out.push_str(&s);
    Ok(())
}

/// UTF-8 text as it is.
pub fn push_text(out: &mut String, bytes: &[u8]) -> Result<(), String> {
    out.push_str(std::str::from_utf8(bytes).map_err(|e| format!("text is not UTF-8: {e}"))?);
    Ok(())
}

/// Parses a date-time written as text (SQLite stores them so): RFC 3339 with a zone (converted
/// to UTC), or `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` (taken as UTC), or a date alone.
pub fn parse_datetime_text(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.naive_utc());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt);
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(dt.naive_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_fraction_only_when_needed() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 2).expect("date");
        let at = |h, m, sec, nano| d.and_hms_nano_opt(h, m, sec, nano).expect("time");
        assert_eq!(
            s(|o| push_timestamp(o, at(3, 4, 5, 0))),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            s(|o| push_timestamp(o, at(3, 4, 5, 500_000_000))),
            "2024-01-02T03:04:05.500Z"
        );
        assert_eq!(
            s(|o| push_timestamp(o, at(3, 4, 5, 123_456_000))),
            "2024-01-02T03:04:05.123456Z"
        );
        assert_eq!(
            s(|o| push_timestamp(o, at(3, 4, 5, 1))),
            "2024-01-02T03:04:05.000000001Z"
        );
        let far = NaiveDate::from_ymd_opt(-44, 3, 15).expect("date");
        assert_eq!(s(|o| push_date(o, far)), "-0044-03-15");
        // The fast path agrees with chrono over a wide range.
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
        for days in (-800_000i64..3_000_000).step_by(997) {
            let d = epoch + chrono::TimeDelta::days(days);
            let micros = days * 86_400_000_000 + 3_723_000_250;
            let dt = d.and_hms_micro_opt(1, 2, 3, 250).expect("dt");
            assert_eq!(
                s(|o| push_timestamp_micros(o, micros)),
                s(|o| push_timestamp(o, dt)),
                "{days}"
            );
        }
        assert_eq!(s(|o| push_int(o, i64::MIN)), "-9223372036854775808");
        assert_eq!(s(|o| push_uint(o, 0)), "0");
    }

    #[test]
    fn floats_are_shortest_round_trip() {
        assert_eq!(s(|o| push_f64(o, 1.5)), "1.5");
        assert_eq!(s(|o| push_f64(o, 0.1)), "0.1");
        assert_eq!(s(|o| push_f64(o, 1e300)), "1e300");
        assert_eq!(s(|o| push_f64(o, 1.0)), "1");
        assert_eq!(s(|o| push_f64(o, f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(s(|o| push_f32(o, 1.1)), "1.1");
    }

    #[test]
    fn json_is_compacted_and_text_dates_parse() {
        assert_eq!(
            s(|o| push_json(o, br#"{ "a" : [1, 2] }"#).expect("json")),
            r#"{"a":[1,2]}"#
        );
        let at = |t| parse_datetime_text(t).map(|d| s(|o| push_timestamp(o, d)));
        assert_eq!(
            at("2024-01-02 03:04:05").as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
        assert_eq!(
            at("2024-01-02T05:04:05+02:00").as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
        assert_eq!(at("2024-01-02").as_deref(), Some("2024-01-02T00:00:00Z"));
        assert_eq!(at("soon"), None);
    }
}
