//! PostgreSQL values, decoded from the binary format the extended protocol returns.

use chrono::NaiveTime;
use idlink_model::config::ValueType;
use sqlx::postgres::{PgConnection, PgTypeInfo, PgTypeKind, PgValueFormat, PgValueRef, Postgres};
use sqlx::{TypeInfo, ValueRef};

use super::Query;
use super::error::Cx;
use super::export::{Counter, Dialect, Opened, TimedOut, Watch, export_query, open};
use super::render;
use crate::api::PackageError;
use crate::output::{ExportOutput, multivalued_cell};

/// The PostgreSQL dialect.
pub(crate) struct Pg;

/// How a PostgreSQL column is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Bytea,
    Uuid,
    Json,
    Jsonb,
    Timestamp,
    TimestampTz,
    Date,
    Time,
    /// `inet` and `cidr`: `192.0.2.1`, `192.0.2.0/24`, `2001:db8::1`.
    Inet,
    /// `macaddr`: `08:00:2b:01:02:03`.
    MacAddr,
    /// A one-dimensional array of a scalar kind: a multivalued cell.
    Array(Box<Kind>),
}

impl Kind {
    fn from_oid(oid: u32) -> Option<Kind> {
        Some(match oid {
            16 => Kind::Bool,
            17 => Kind::Bytea,
            // "char", name, text, bpchar, varchar, unknown (untyped literals), xml
            18 | 19 | 25 | 1042 | 1043 | 705 | 142 => Kind::Text,
            650 | 869 => Kind::Inet,
            829 => Kind::MacAddr,
            20 => Kind::Int8,
            21 => Kind::Int2,
            23 => Kind::Int4,
            26 => Kind::Oid,
            114 => Kind::Json,
            700 => Kind::Float4,
            701 => Kind::Float8,
            1082 => Kind::Date,
            1083 => Kind::Time,
            1114 => Kind::Timestamp,
            1184 => Kind::TimestampTz,
            1700 => Kind::Numeric,
            2950 => Kind::Uuid,
            3802 => Kind::Jsonb,
            _ => return None,
        })
    }

    fn scalar(t: &PgTypeInfo) -> Option<Kind> {
        match t.kind() {
            PgTypeKind::Domain(base) => Kind::scalar(base),
            PgTypeKind::Enum(_) => Some(Kind::Text),
            PgTypeKind::Simple | PgTypeKind::Pseudo => {
                if let Some(k) = t.oid().and_then(|o| Kind::from_oid(o.0)) {
                    return Some(k);
                }
                // Extension types sent as their text.
                match t.name().to_ascii_lowercase().as_str() {
                    "citext" => Some(Kind::Text),
                    _ => None,
                }
            }
            PgTypeKind::Array(_) | PgTypeKind::Composite(_) | PgTypeKind::Range(_) => None,
        }
    }
}

impl Dialect for Pg {
    type DB = Postgres;
    type Kind = Kind;

    super::export::prepare_and_fetch!(Postgres);

    fn classify(t: &PgTypeInfo) -> Option<Kind> {
        match t.kind() {
            PgTypeKind::Array(elem) => Kind::scalar(elem).map(|k| Kind::Array(Box::new(k))),
            PgTypeKind::Domain(base) => Pg::classify(base),
            _ => Kind::scalar(t),
        }
    }

    fn value_type(kind: &Kind) -> (ValueType, bool) {
        let t = match kind {
            Kind::Bool => ValueType::Bool,
            Kind::Int2 => ValueType::Int16,
            Kind::Int4 => ValueType::Int32,
            Kind::Int8 | Kind::Oid => ValueType::Int64,
            Kind::Float4 | Kind::Float8 => ValueType::Double,
            Kind::Bytea => ValueType::Binary,
            Kind::Uuid => ValueType::Guid,
            Kind::Timestamp | Kind::TimestampTz | Kind::Date => ValueType::DateTime,
            Kind::Numeric
            | Kind::Text
            | Kind::Json
            | Kind::Jsonb
            | Kind::Time
            | Kind::Inet
            | Kind::MacAddr => ValueType::String,
            Kind::Array(inner) => return (Pg::value_type(inner).0, true),
        };
        (t, false)
    }

    fn render(value: PgValueRef<'_>, kind: &Kind, out: &mut String) -> Result<(), String> {
        let bytes = value.as_bytes().map_err(|e| e.to_string())?;
        match value.format() {
            PgValueFormat::Binary => render_binary(bytes, kind, out),
            // Only the simple query protocol returns text; idlink does not use it.
            PgValueFormat::Text => render::push_text(out, bytes),
        }
        .map_err(|e| {
            if value.type_info().is_null() {
                e
            } else {
                format!("{e} (type {})", value.type_info().name())
            }
        })
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn render_binary(b: &[u8], kind: &Kind, out: &mut String) -> Result<(), String> {
    match kind {
        Kind::Bool => render::push_bool(out, fixed::<1>(b)?[0] != 0),
        Kind::Int2 => render::push_int(out, i16::from_be_bytes(fixed(b)?).into()),
        Kind::Int4 => render::push_int(out, i32::from_be_bytes(fixed(b)?).into()),
        Kind::Int8 => render::push_int(out, i64::from_be_bytes(fixed(b)?)),
        Kind::Oid => render::push_uint(out, u32::from_be_bytes(fixed(b)?).into()),
        Kind::Float4 => render::push_f32(out, f32::from_be_bytes(fixed(b)?)),
        Kind::Float8 => render::push_f64(out, f64::from_be_bytes(fixed(b)?)),
        Kind::Numeric => push_numeric(out, b)?,
        Kind::Text => render::push_text(out, b)?,
        Kind::Bytea => render::push_base64(out, b),
        Kind::Uuid => render::push_uuid(out, b)?,
        Kind::Json => render::push_json(out, b)?,
        Kind::Jsonb => match b.split_first() {
            Some((1, text)) => render::push_json(out, text)?,
            _ => return Err("unknown jsonb format version".to_string()),
        },
        Kind::Timestamp | Kind::TimestampTz => {
            let us = i64::from_be_bytes(fixed(b)?);
            match us {
                i64::MAX => out.push_str("infinity"),
                i64::MIN => out.push_str("-infinity"),
                // 2000-01-01 is 946,684,800 s after 1970-01-01; PostgreSQL's range keeps
                // this sum far from overflow.
                _ => render::push_timestamp_micros(
                    out,
                    us.checked_add(946_684_800_000_000)
                        .ok_or("timestamp out of range")?,
                ),
            }
        }
        Kind::Date => {
            let days = i32::from_be_bytes(fixed(b)?);
            match days {
                i32::MAX => out.push_str("infinity"),
                i32::MIN => out.push_str("-infinity"),
                _ => render::push_civil_date(out, i64::from(days) + 10_957),
            }
        }
        Kind::Time => {
            let us = i64::from_be_bytes(fixed(b)?);
            let secs = u32::try_from(us.div_euclid(1_000_000)).map_err(|_| "time out of range")?;
            let nanos = u32::try_from(us.rem_euclid(1_000_000) * 1_000).unwrap_or(0);
            // 24:00:00 is a valid PostgreSQL time.
            if secs == 86_400 && nanos == 0 {
                out.push_str("24:00:00");
            } else {
                let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                    .ok_or("time out of range")?;
                render::push_time(out, t);
            }
        }
        Kind::Inet => push_inet(out, b)?,
        Kind::MacAddr => {
            let m = fixed::<6>(b)?;
            for (i, byte) in m.iter().enumerate() {
                if i > 0 {
                    out.push(':');
                }
                out.push_str(&format!("{byte:02x}"));
            }
        }
        Kind::Array(elem) => push_array(out, b, elem)?,
    }
    Ok(())
}

/// A binary `inet`/`cidr`: family, prefix bits, is-cidr flag, address length, address. The
/// prefix is shown when it does not cover the whole address, or for a `cidr`, as PostgreSQL
/// shows it.
fn push_inet(out: &mut String, b: &[u8]) -> Result<(), String> {
    let (&[family, bits, is_cidr, len], addr) =
        b.split_first_chunk::<4>().ok_or("inet value too short")?;
    let full = match (family, addr.len(), usize::from(len)) {
        (2, 4, 4) => {
            let a: [u8; 4] = fixed(addr)?;
            out.push_str(&std::net::Ipv4Addr::from(a).to_string());
            32
        }
        (3, 16, 16) => {
            let a: [u8; 16] = fixed(addr)?;
            out.push_str(&std::net::Ipv6Addr::from(a).to_string());
            128
        }
        _ => return Err("unknown inet address family".to_string()),
    };
    if bits != full || is_cidr != 0 {
        out.push('/');
        render::push_uint(out, bits.into());
    }
    Ok(())
}

/// A binary `numeric` as exact decimal text, with its scale (`1.50` stays `1.50`).
fn push_numeric(out: &mut String, b: &[u8]) -> Result<(), String> {
    let header = b.get(..8).ok_or("numeric value too short")?;
    let ndigits = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let weight = i32::from(i16::from_be_bytes([header[2], header[3]]));
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let dscale = usize::from(u16::from_be_bytes([header[6], header[7]]));
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => {
            out.push_str("NaN");
            return Ok(());
        }
        0xD000 => {
            out.push_str("Infinity");
            return Ok(());
        }
        0xF000 => {
            out.push_str("-Infinity");
            return Ok(());
        }
        _ => return Err("unknown numeric sign".to_string()),
    }
    let body = &b[8..];
    if body.len() != ndigits * 2 {
        return Err("numeric value has the wrong length".to_string());
    }
    let digit = |i: i32| -> u32 {
        usize::try_from(i)
            .ok()
            .and_then(|i| body.get(i * 2..i * 2 + 2))
            .map_or(0, |d| u32::from(u16::from_be_bytes([d[0], d[1]])))
    };
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i);
            if i == 0 {
                render::push_uint(out, d.into());
            } else {
                push_4(out, d);
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut i = weight + 1;
        while out.len() - start < dscale {
            push_4(out, digit(i));
            i += 1;
        }
        out.truncate(start + dscale);
    }
    Ok(())
}

fn push_4(out: &mut String, d: u32) {
    for div in [1000, 100, 10, 1] {
        out.push(char::from(b'0' + ((d / div) % 10) as u8));
    }
}

/// A binary array: its non-NULL elements, each rendered, as a multivalued cell.
fn push_array(out: &mut String, b: &[u8], elem: &Kind) -> Result<(), String> {
    let int = |at: usize| -> Result<i32, String> {
        b.get(at..at + 4)
            .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| "array value too short".to_string())
    };
    let ndim = usize::try_from(int(0)?).map_err(|_| "bad array dimensions")?;
    let mut at = 12;
    let mut count = 1usize;
    for _ in 0..ndim {
        count = count.saturating_mul(usize::try_from(int(at)?).map_err(|_| "bad array length")?);
        at += 8;
    }
    if ndim == 0 {
        count = 0;
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            continue;
        }
        let len = usize::try_from(len).map_err(|_| "bad element length")?;
        let bytes = b.get(at..at + len).ok_or("array value too short")?;
        at += len;
        let mut s = String::new();
        render_binary(bytes, elem, &mut s)?;
        values.push(s);
    }
    out.push_str(&multivalued_cell(&mut values));
    Ok(())
}

/// Exports one query. A plain query goes through `COPY (query) TO STDOUT (FORMAT binary)`:
/// the same binary values as the row protocol, rendered by the same code, without the
/// per-row cost of sqlx's row machinery. Anything else is read row by row.
pub(crate) async fn export(
    conn: &mut PgConnection,
    query: &Query<'_>,
    out: &mut ExportOutput,
    cx: &Cx<'_>,
) -> Result<u64, PackageError> {
    let Some(copy) = copy_statement(query.sql) else {
        return export_query::<Pg>(conn, query, out, cx).await;
    };
    let opened = open::<Pg>(conn, query, out, cx).await?;
    let mut stream = cx
        .wait("read rows", Box::pin(conn.copy_out_raw(&copy)))
        .await?;
    let mut watch = Watch::new(cx.timeout);
    let mut reader = CopyReader::new(opened.kinds.len());
    let mut count = Counter::new();
    loop {
        let chunk = match watch.next(&mut stream, count.rows).await {
            Err(TimedOut) => return Err(cx.timed_out("read rows")),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(cx.sqlx("read rows", e)),
            Ok(Some(Ok(chunk))) => chunk,
        };
        reader.feed(&chunk, &opened, out, &mut count, cx)?;
    }
    if !reader.ended || !reader.pending.is_empty() {
        return Err(cx.data(
            format!("connection '{}', table '{}'", cx.connection, opened.name),
            "the server's COPY data ended early".to_string(),
        ));
    }
    Ok(count.finish(cx, &opened.name))
}

/// `COPY (<sql>) TO STDOUT (FORMAT binary)` when `sql` is one plain query (`SELECT`, `WITH`,
/// `VALUES`, `TABLE`); `None` otherwise.
fn copy_statement(sql: &str) -> Option<String> {
    let body = sql
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if body.contains(';') {
        return None;
    }
    let keyword = first_keyword(body)?.to_ascii_lowercase();
    matches!(keyword.as_str(), "select" | "with" | "values" | "table")
        .then(|| format!("COPY (\n{body}\n) TO STDOUT (FORMAT binary)"))
}

/// The first word of a statement, past blanks, comments and opening parentheses.
fn first_keyword(sql: &str) -> Option<&str> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map(|(_, after)| after)?;
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// Reads PostgreSQL's binary COPY format from chunks that may split tuples anywhere.
struct CopyReader {
    columns: usize,
    header_done: bool,
    ended: bool,
    /// The start of a tuple that continues in the next chunk.
    pending: Vec<u8>,
    cells: Vec<String>,
}

/// Why a tuple could not be read.
enum TupleError {
    /// The value of this column could not be rendered.
    Value(usize, String),
    Protocol(String),
}

/// The 11-byte signature that starts binary COPY data.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl CopyReader {
    fn new(columns: usize) -> Self {
        CopyReader {
            columns,
            header_done: false,
            ended: false,
            pending: Vec::new(),
            cells: vec![String::new(); columns],
        }
    }

    fn feed(
        &mut self,
        chunk: &[u8],
        opened: &Opened<Kind>,
        out: &mut ExportOutput,
        count: &mut Counter,
        cx: &Cx<'_>,
    ) -> Result<(), PackageError> {
        if self.pending.is_empty() {
            let used = self.parse(chunk, opened, out, count, cx)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(chunk);
            let used = self.parse(&data, opened, out, count, cx)?;
            data.drain(..used);
            self.pending = data;
        }
        Ok(())
    }

    /// Reads the complete tuples at the start of `data`; returns the bytes used.
    fn parse(
        &mut self,
        data: &[u8],
        opened: &Opened<Kind>,
        out: &mut ExportOutput,
        count: &mut Counter,
        cx: &Cx<'_>,
    ) -> Result<usize, PackageError> {
        let protocol = |m: String| {
            cx.data(
                format!("connection '{}', table '{}'", cx.connection, opened.name),
                format!("unexpected COPY data from the server: {m}"),
            )
        };
        let mut pos = 0;
        if !self.header_done {
            let Some(ext) = data.get(15..19) else {
                return Ok(0);
            };
            if !data.starts_with(SIGNATURE) {
                return Err(protocol("bad signature".to_string()));
            }
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]) as usize;
            if data.len() < 19 + ext {
                return Ok(0);
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        while pos < data.len() {
            if self.ended {
                return Err(protocol("data after the end marker".to_string()));
            }
            match self.tuple(&data[pos..], &opened.kinds) {
                Ok(None) => break,
                Ok(Some(Tuple::End)) => {
                    self.ended = true;
                    pos += 2;
                }
                Ok(Some(Tuple::Row(used))) => {
                    out.write(opened.table, &self.cells)?;
                    count.add(cx, &opened.name);
                    pos += used;
                }
                Err(TupleError::Protocol(m)) => return Err(protocol(m)),
                Err(TupleError::Value(i, m)) => {
                    return Err(cx.data(opened.at(cx, count.rows + 1, i), m));
                }
            }
        }
        Ok(pos)
    }

    /// Renders one tuple into `cells`; `None` when it is not complete in `data`.
    fn tuple(&mut self, data: &[u8], kinds: &[Kind]) -> Result<Option<Tuple>, TupleError> {
        let Some(n) = data.get(..2) else {
            return Ok(None);
        };
        let n = i16::from_be_bytes([n[0], n[1]]);
        if n == -1 {
            return Ok(Some(Tuple::End));
        }
        if usize::try_from(n).ok() != Some(self.columns) {
            return Err(TupleError::Protocol(format!(
                "a row of {n} values, expected {}",
                self.columns
            )));
        }
        let mut pos = 2;
        for (i, (cell, kind)) in self.cells.iter_mut().zip(kinds).enumerate() {
            cell.clear();
            let Some(len) = data.get(pos..pos + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            pos += 4;
            if len < 0 {
                continue;
            }
            let len = len as usize;
            let Some(value) = data.get(pos..pos + len) else {
                return Ok(None);
            };
            pos += len;
            render_binary(value, kind, cell)
                .map_err(|m| TupleError::Value(i, format!("{m} (COPY binary value)")))?;
        }
        Ok(Some(Tuple::Row(pos)))
    }
}

/// What a complete tuple was.
enum Tuple {
    /// A row, rendered into the cells, of this many bytes.
    Row(usize),
    /// The end marker.
    End,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> String {
        let mut b = Vec::new();
        for v in [ndigits, weight as u16, sign, dscale] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        let mut s = String::new();
        push_numeric(&mut s, &b).expect("numeric");
        s
    }

    #[test]
    fn numerics_are_exact_text_with_their_scale() {
        assert_eq!(numeric(2, 0, 0, 2, &[1, 5000]), "1.50");
        assert_eq!(numeric(1, 1, 0x4000, 0, &[12]), "-120000");
        assert_eq!(numeric(1, -2, 0, 6, &[1200]), "0.000012");
        assert_eq!(numeric(1, -2, 0, 8, &[12]), "0.00000012");
        assert_eq!(numeric(0, 0, 0, 0, &[]), "0");
        assert_eq!(numeric(0, 0, 0, 3, &[]), "0.000");
        assert_eq!(numeric(3, 2, 0, 0, &[12, 3456, 7890]), "1234567890");
        assert_eq!(numeric(0, 0, 0xC000, 0, &[]), "NaN");
    }
}
