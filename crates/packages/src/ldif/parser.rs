//! A streaming reader of LDIF content records (RFC 2849).
//!
//! Lines are read one at a time through a `BufReader` (transcoded by `encoding_rs_io` when the
//! file is not UTF-8) and only the current record is held, so memory does not grow with the
//! file. Supported: the `version: 1` line, folded lines (a line starting with one space continues
//! the previous one), comments (`#`, folded too), `attr: value`, `attr:: base64`, attribute
//! options (`cn;lang-fr`), base64 DNs, `changetype: add`. Refused with the line number: URL
//! values (`attr:< file://...`), change records (`changetype: modify|delete|modrdn|moddn`),
//! lines without a colon, records that do not start with `dn:`, a continuation line with nothing
//! to continue.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use encoding_rs_io::DecodeReaderBytesBuilder;

use super::settings::{DEFAULT_MAX_ENTRY, LdifEncoding, is_attribute_description};
use crate::api::PackageError;

/// Base64 as LDIF writes it; missing padding is tolerated.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Read buffer: large reads keep the syscall count low.
const BUFFER: usize = 64 * 1024;

/// One attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A plain value, or a base64 one that decodes to UTF-8 text (without control characters
    /// other than tab, CR and LF).
    Text(String),
    /// A base64 value that is not text (e.g. a `jpegPhoto`, an `objectGUID`).
    Binary(Vec<u8>),
}

impl Value {
    pub(crate) fn is_binary(&self) -> bool {
        matches!(self, Value::Binary(_))
    }

    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            Value::Binary(_) => None,
        }
    }

    /// The value as a CSV cell: text as is, binary as base64.
    pub(crate) fn into_cell(self) -> String {
        match self {
            Value::Text(t) => t,
            Value::Binary(b) => base64::engine::general_purpose::STANDARD.encode(b),
        }
    }

    /// Decoded base64: text when it is UTF-8 without control characters, else binary.
    fn from_bytes(bytes: Vec<u8>) -> Value {
        match String::from_utf8(bytes) {
            Ok(s)
                if !s
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
            {
                Value::Text(s)
            }
            Ok(s) => Value::Binary(s.into_bytes()),
            Err(e) => Value::Binary(e.into_bytes()),
        }
    }
}

/// One `attr: value` line of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    /// The attribute description as written (`cn`, `CN;lang-fr`).
    pub(crate) name: String,
    pub(crate) value: Value,
    /// Where the (unfolded) line starts.
    pub(crate) line: u64,
}

/// One content record (entry), reused from one record to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) dn: String,
    /// The line of `dn:`.
    pub(crate) line: u64,
    /// In file order, `changetype` and `control` lines left out.
    pub(crate) attrs: Vec<Attr>,
    has_dn: bool,
    change_add: bool,
    /// A `control:` line waiting for its `changetype:`.
    control_line: Option<u64>,
}

impl Record {
    fn clear(&mut self) {
        self.dn.clear();
        self.line = 0;
        self.attrs.clear();
        self.has_dn = false;
        self.change_add = false;
        self.control_line = None;
    }
}

fn data(shown: &str, line: u64, message: impl Into<String>) -> PackageError {
    PackageError::Data {
        location: format!("{shown}:{line}"),
        message: message.into(),
    }
}

/// Physical lines, decoded to text.
struct Lines {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    number: u64,
    ascii: bool,
    /// `MaxEntrySize`.
    max_entry: u64,
    /// Bytes read since the entry being read started, and the line where it did.
    entry_bytes: u64,
    entry_line: u64,
}

impl Lines {
    /// Starts counting the bytes of an entry (see [`Lines::next`]).
    fn start_entry(&mut self) {
        self.entry_bytes = 0;
        self.entry_line = self.number + 1;
    }

    /// The next line without its line break, and its number (from 1). Reads no more than
    /// `MaxEntrySize` bytes for the entry since [`Lines::start_entry`]: a longer entry (or a
    /// file without line breaks) fails instead of growing the memory to the file's size.
    fn next(&mut self, shown: &str) -> Result<Option<(u64, &str)>, PackageError> {
        self.buf.clear();
        let room = self.max_entry.saturating_sub(self.entry_bytes) + 1;
        let n = (&mut self.input)
            .take(room)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| PackageError::io("read", &self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.entry_bytes += n as u64;
        if n as u64 == room && self.buf.last() != Some(&b'\n') {
            return Err(data(
                shown,
                self.entry_line,
                format!(
                    "the entry that starts here is longer than MaxEntrySize ({} bytes): the \
                     file is damaged (no line break?), or raise MaxEntrySize if its entries are \
                     really that large (groups with many members)",
                    self.max_entry
                ),
            ));
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let number = self.number;
        let mut text = std::str::from_utf8(&self.buf).map_err(|e| {
            data(
                shown,
                number,
                format!(
                    "invalid UTF-8 at byte {} of the line; if the file is not UTF-8, set \
                     LdifEncoding (e.g. Windows-1252)",
                    e.valid_up_to() + 1
                ),
            )
        })?;
        if number == 1 {
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        if self.ascii
            && let Some((i, c)) = text.char_indices().find(|(_, c)| !c.is_ascii())
        {
            return Err(data(
                shown,
                number,
                format!(
                    "'{c}' at byte {} is not ASCII, but LdifEncoding is ASCII; set the file's \
                     encoding (e.g. UTF-8)",
                    i + 1
                ),
            ));
        }
        Ok(Some((number, text)))
    }
}

/// How a value is given after the attribute's colon.
enum Spec<'a> {
    Plain(&'a str),
    Base64(&'a str),
    Url(&'a str),
}

impl Spec<'_> {
    fn decode(&self, name: &str) -> Result<Value, String> {
        match *self {
            Spec::Plain(v) => Ok(Value::Text(v.to_string())),
            Spec::Base64(b) => BASE64
                .decode(b)
                .map(Value::from_bytes)
                .map_err(|e| format!("the base64 value of {name} is invalid: {e}")),
            Spec::Url(u) => Err(format!(
                "URL values are not supported; inline the value (`{name}:: <base64>`) instead of \
                 `{name}:< {u}`"
            )),
        }
    }
}

/// Splits `attr: value`, `attr:: base64`, `attr:< url`.
fn split_line(text: &str) -> Result<(&str, Spec<'_>), String> {
    let Some(colon) = text.find(':') else {
        return Err(
            "expected `attribute: value`, but the line has no colon (a folded line must start \
             with one space; records are separated by one blank line)"
                .to_string(),
        );
    };
    let name = &text[..colon];
    if !is_attribute_description(name) {
        return Err(format!(
            "'{name}' is not an attribute name (letters, digits, '-', options after ';')"
        ));
    }
    let rest = &text[colon + 1..];
    let spec = if let Some(b) = rest.strip_prefix(':') {
        Spec::Base64(b.trim_matches(' '))
    } else if let Some(u) = rest.strip_prefix('<') {
        Spec::Url(u.trim_matches(' '))
    } else {
        Spec::Plain(rest.trim_start_matches(' '))
    };
    Ok((name, spec))
}

/// Unfolds lines and turns them into records.
struct Assembler {
    /// The file as settings name it, for error locations.
    shown: String,
    /// The logical line being unfolded, and where it starts (0: none).
    pending: String,
    pending_line: u64,
    in_comment: bool,
    /// A logical line other than a comment was seen: `version:` is no longer allowed.
    started: bool,
}

impl Assembler {
    /// Ends the logical line being unfolded (if any) and adds it to `rec`.
    fn flush(&mut self, rec: &mut Record) -> Result<(), PackageError> {
        self.in_comment = false;
        if self.pending_line == 0 {
            return Ok(());
        }
        let line = std::mem::replace(&mut self.pending_line, 0);
        let first = !std::mem::replace(&mut self.started, true);
        let text = std::mem::take(&mut self.pending);
        let result = self.add(line, &text, first, rec);
        self.pending = text;
        self.pending.clear();
        result
    }

    fn add(
        &self,
        line: u64,
        text: &str,
        first: bool,
        rec: &mut Record,
    ) -> Result<(), PackageError> {
        let err = |m: String| data(&self.shown, line, m);
        let (name, spec) = split_line(text).map_err(err)?;
        if !rec.has_dn {
            if name.eq_ignore_ascii_case("version") {
                if !first {
                    return Err(err("`version:` must be the first line of the file".into()));
                }
                return match spec {
                    Spec::Plain("1") => Ok(()),
                    Spec::Plain(v) => Err(err(format!(
                        "LDIF version '{v}' is not supported; version 1 is the only one"
                    ))),
                    _ => Err(err("`version:` takes a plain value: `version: 1`".into())),
                };
            }
            if !name.eq_ignore_ascii_case("dn") {
                return Err(err(format!(
                    "a record must start with `dn:`, not `{name}:` (records are separated by \
                     one blank line)"
                )));
            }
            rec.dn = match spec.decode(name).map_err(err)? {
                Value::Text(t) => t,
                Value::Binary(_) => {
                    return Err(err("the base64 DN does not decode to UTF-8 text".into()));
                }
            };
            rec.has_dn = true;
            rec.line = line;
            return Ok(());
        }
        if name.eq_ignore_ascii_case("dn") {
            return Err(err(
                "a second `dn:` in one record; separate records with a blank line".into(),
            ));
        }
        if name.eq_ignore_ascii_case("changetype") {
            let value = spec.decode(name).map_err(err)?;
            let kind = value
                .as_text()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            return match kind.as_str() {
                "add" => {
                    rec.change_add = true;
                    rec.control_line = None;
                    Ok(())
                }
                "modify" | "delete" | "modrdn" | "moddn" => Err(err(format!(
                    "change records are not supported (changetype: {kind}): the LDIF package \
                     reads entries; give it the entries themselves (content records, as \
                     `ldapsearch -LLL` or `slapcat` write them)"
                ))),
                _ => Err(err(format!(
                    "unknown changetype '{kind}' (and change records other than `add` are not \
                     supported)"
                ))),
            };
        }
        if name.eq_ignore_ascii_case("control") && rec.attrs.is_empty() && !rec.change_add {
            rec.control_line.get_or_insert(line);
            return Ok(());
        }
        if let Some(c) = rec.control_line {
            return Err(data(
                &self.shown,
                c,
                "`control:` is only allowed in change records, between `dn:` and `changetype:`",
            ));
        }
        let value = spec.decode(name).map_err(err)?;
        rec.attrs.push(Attr {
            name: name.to_string(),
            value,
            line,
        });
        Ok(())
    }

    /// Checks a finished record; `false` when there is none.
    fn end(&self, rec: &Record) -> Result<bool, PackageError> {
        if let Some(c) = rec.control_line {
            return Err(data(
                &self.shown,
                c,
                "`control:` is only allowed in change records, between `dn:` and `changetype:`",
            ));
        }
        Ok(rec.has_dn)
    }
}

/// Reads an LDIF file record by record.
pub(crate) struct Reader {
    lines: Lines,
    asm: Assembler,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.lines.path)
            .field("line", &self.lines.number)
            .finish()
    }
}

impl Reader {
    /// Opens `path` (already checked against the source roots); `shown` names it in messages.
    pub(crate) fn open(
        path: &Path,
        shown: &str,
        encoding: LdifEncoding,
    ) -> Result<Reader, PackageError> {
        let file = File::open(path).map_err(|e| PackageError::io("open", path, e))?;
        let mut builder = DecodeReaderBytesBuilder::new();
        builder.strip_bom(true);
        match encoding {
            // UTF-8 is passed through and checked line by line; a UTF-16 BOM is still honoured.
            LdifEncoding::Utf8 | LdifEncoding::Ascii => builder.utf8_passthru(true),
            LdifEncoding::Decoded(e) => builder.encoding(Some(e)).bom_override(true),
        };
        let input = BufReader::with_capacity(BUFFER, builder.build(file));
        Ok(Reader::new(
            Box::new(input),
            path,
            shown,
            encoding == LdifEncoding::Ascii,
        ))
    }

    fn new(input: Box<dyn BufRead + Send>, path: &Path, shown: &str, ascii: bool) -> Reader {
        Reader {
            lines: Lines {
                path: path.to_path_buf(),
                input,
                buf: Vec::new(),
                number: 0,
                ascii,
                max_entry: DEFAULT_MAX_ENTRY,
                entry_bytes: 0,
                entry_line: 1,
            },
            asm: Assembler {
                shown: shown.to_string(),
                pending: String::new(),
                pending_line: 0,
                in_comment: false,
                started: false,
            },
        }
    }

    /// Reads entries of `max` bytes at most (`MaxEntrySize`; default 64 MiB).
    pub(crate) fn with_max_entry(mut self, max: u64) -> Reader {
        self.lines.max_entry = max;
        self
    }

    /// Reads the next record into `rec`; `false` at the end of the file.
    pub(crate) fn next_record(&mut self, rec: &mut Record) -> Result<bool, PackageError> {
        rec.clear();
        self.lines.start_entry();
        loop {
            let Some((number, text)) = self.lines.next(&self.asm.shown)? else {
                self.asm.flush(rec)?;
                return self.asm.end(rec);
            };
            if text.is_empty() {
                self.asm.flush(rec)?;
                if rec.has_dn {
                    return self.asm.end(rec);
                }
                continue;
            }
            if let Some(rest) = text.strip_prefix(' ') {
                if self.asm.in_comment {
                    continue;
                }
                if self.asm.pending_line == 0 {
                    return Err(data(
                        &self.asm.shown,
                        number,
                        "this line starts with a space, so it continues the previous line, but \
                         there is none to continue (it follows a blank line or starts the file); \
                         remove the leading space",
                    ));
                }
                self.asm.pending.push_str(rest);
                continue;
            }
            self.asm.flush(rec)?;
            if text.starts_with('#') {
                self.asm.in_comment = true;
                continue;
            }
            self.asm.pending.push_str(text);
            self.asm.pending_line = number;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &[u8]) -> Reader {
        Reader::new(
            Box::new(std::io::Cursor::new(text.to_vec())),
            Path::new("t.ldif"),
            "t.ldif",
            false,
        )
    }

    fn all(text: &str) -> Result<Vec<Record>, PackageError> {
        let mut r = reader(text.as_bytes());
        let mut out = Vec::new();
        let mut rec = Record::default();
        while r.next_record(&mut rec)? {
            out.push(rec.clone());
        }
        Ok(out)
    }

    fn err(text: &str) -> String {
        all(text).expect_err("must fail").to_string()
    }

    fn text_attrs(rec: &Record) -> Vec<(&str, &str)> {
        rec.attrs
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_text().unwrap_or("<binary>")))
            .collect()
    }

    #[test]
    fn folding_comments_version_and_crlf() {
        let recs = all(concat!(
            "# a comment\r\n",
            " folded into the comment\r\n",
            "version: 1\r\n",
            "\r\n",
            "\r\n",
            "dn: cn=A,\r\n",
            " dc=example\r\n",
            "cn: A\r\n",
            "# inside\r\n",
            "description: one\r\n",
            "  two\r\n",
            "\r\n",
            "dn:cn=B\r\n",
            "cn:B",
        ))
        .expect("parse");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].dn, "cn=A,dc=example");
        assert_eq!(recs[0].line, 6);
        assert_eq!(
            text_attrs(&recs[0]),
            [("cn", "A"), ("description", "one two")]
        );
        assert_eq!(recs[0].attrs[1].line, 10);
        assert_eq!(recs[1].dn, "cn=B");
        assert_eq!(text_attrs(&recs[1]), [("cn", "B")]);
    }

    #[test]
    fn version_then_dn_without_blank_line_and_bom() {
        let recs = all("\u{feff}version: 1\ndn: cn=A\ncn: A\n").expect("parse");
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].dn, "cn=A");
        assert!(err("version: 2\n").contains("version '2'"));
        assert!(err("dn: cn=A\n\nversion: 1\n").contains("first line"));
    }

    #[test]
    fn base64_text_binary_and_dn() {
        let recs = all(concat!(
            "dn:: Y249Wm/DqyxkYz1leGFtcGxl\n", // cn=Zoë,dc=example
            "description:: aMOpbGxv\n",        // héllo
            "photo:: /9j/4AAQ\n",
            "guid:: AAECAw==\n",
            "empty::\n",
            "unpadded:: aGk\n",
        ))
        .expect("parse");
        let r = &recs[0];
        assert_eq!(r.dn, "cn=Zoë,dc=example");
        assert_eq!(r.attrs[0].value, Value::Text("héllo".into()));
        assert_eq!(
            r.attrs[1].value,
            Value::Binary(vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10])
        );
        assert_eq!(r.attrs[2].value, Value::Binary(vec![0, 1, 2, 3]));
        assert_eq!(r.attrs[3].value, Value::Text(String::new()));
        assert_eq!(r.attrs[4].value, Value::Text("hi".into()));
        assert_eq!(r.attrs[1].value.clone().into_cell(), "/9j/4AAQ");
        assert!(err("dn: cn=A\nx:: !!!\n").starts_with("t.ldif:2: the base64 value of x"));
        assert!(err("dn:: /9j/4AAQ\n").contains("does not decode to UTF-8"));
    }

    #[test]
    fn changetype_add_is_content_and_other_changes_are_refused() {
        let recs = all(concat!(
            "dn: cn=A\n",
            "control: 1.2.3 true\n",
            "changetype: add\n",
            "cn: A\n",
        ))
        .expect("parse");
        assert_eq!(text_attrs(&recs[0]), [("cn", "A")]);
        let e = err("dn: cn=A\ncn: A\n\ndn: cn=B\nchangetype: modify\nreplace: cn\ncn: B\n");
        assert!(
            e.starts_with("t.ldif:5: change records are not supported"),
            "{e}"
        );
        assert!(err("dn: cn=A\nchangetype: delete\n").contains("changetype: delete"));
        assert!(err("dn: cn=A\nchangetype: frob\n").contains("unknown changetype"));
        assert!(err("dn: cn=A\ncontrol: 1.2.3\ncn: A\n").starts_with("t.ldif:2: `control:`"));
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let e = err("dn: cn=A\ncn: A\nno colon here\n");
        assert!(
            e.starts_with("t.ldif:3: expected `attribute: value`"),
            "{e}"
        );
        let e = err("dn: cn=A\n\ncn: B\n");
        assert!(
            e.starts_with("t.ldif:3: a record must start with `dn:`"),
            "{e}"
        );
        let e = err(" continued\ndn: cn=A\n");
        assert!(
            e.starts_with("t.ldif:1: this line starts with a space"),
            "{e}"
        );
        let e = err("dn: cn=A\n\n folded\n");
        assert!(
            e.starts_with("t.ldif:3: this line starts with a space"),
            "{e}"
        );
        let e = err("dn: cn=A\ncn: A\ndn: cn=B\n");
        assert!(e.starts_with("t.ldif:3: a second `dn:`"), "{e}");
        let e = err("dn: cn=A\nbad name: x\n");
        assert!(e.contains("'bad name' is not an attribute name"), "{e}");
        let e = err("dn: cn=A\njpegPhoto:< file:///tmp/a.jpg\n");
        assert!(
            e.starts_with("t.ldif:2: URL values are not supported; inline the value"),
            "{e}"
        );
    }

    /// A line was read whole whatever its length, and an entry whole whatever its lines: a
    /// file without line breaks took its size in memory before failing. Entries are read up
    /// to `MaxEntrySize` bytes.
    #[test]
    fn regression_an_entry_longer_than_max_entry_size_fails_at_its_start() {
        let text = format!(
            "dn: cn=A\ncn: A\n\ndn: cn=B\ndescription: {}\n\ndn: cn=C\n",
            "x".repeat(5000)
        );
        let mut rec = Record::default();
        let mut r = reader(text.as_bytes()).with_max_entry(1024);
        assert!(r.next_record(&mut rec).expect("the first entry"));
        let e = r.next_record(&mut rec).expect_err("too long").to_string();
        assert!(
            e.starts_with(
                "t.ldif:4: the entry that starts here is longer than MaxEntrySize (1024 bytes)"
            ),
            "{e}"
        );
        // Spread over folded lines, the same.
        let folded = format!("dn: cn=B\ndescription: x\n{}\n", " yyyyyyyyy\n".repeat(200));
        let mut r = reader(folded.as_bytes()).with_max_entry(1024);
        let e = r.next_record(&mut rec).expect_err("too long").to_string();
        assert!(e.starts_with("t.ldif:1: the entry"), "{e}");
        // No line break at all.
        let mut r = reader("x".repeat(3000).as_bytes()).with_max_entry(1024);
        let e = r.next_record(&mut rec).expect_err("too long").to_string();
        assert!(e.starts_with("t.ldif:1: the entry"), "{e}");
        // Within the bound, every entry is read.
        let mut r = reader(text.as_bytes()).with_max_entry(8192);
        let mut n = 0;
        while r.next_record(&mut rec).expect("read") {
            n += 1;
        }
        assert_eq!(n, 3);
        // An entry of exactly MaxEntrySize bytes is read.
        let exact = format!("dn: cn=D\ndescription: {}\n", "z".repeat(1024 - 23));
        assert_eq!(exact.len(), 1024);
        let mut r = reader(exact.as_bytes()).with_max_entry(1024);
        assert!(r.next_record(&mut rec).expect("exactly MaxEntrySize"));
    }

    #[test]
    fn invalid_utf8_and_ascii_name_the_line() {
        let mut r = reader(b"dn: cn=A\ncn: Zo\xeb\n");
        let mut rec = Record::default();
        let e = r.next_record(&mut rec).expect_err("invalid").to_string();
        assert!(e.starts_with("t.ldif:2: invalid UTF-8 at byte 7"), "{e}");
        let mut r = Reader::new(
            Box::new(std::io::Cursor::new("dn: cn=Zoë\n".as_bytes().to_vec())),
            Path::new("t.ldif"),
            "t.ldif",
            true,
        );
        let e = r.next_record(&mut rec).expect_err("ascii").to_string();
        assert!(
            e.starts_with("t.ldif:1: 'ë' at byte 10 is not ASCII"),
            "{e}"
        );
    }

    #[test]
    fn options_are_kept_as_written_and_empty_files_have_no_record() {
        let recs = all("dn: cn=A\ncn;lang-fr: Bonjour\nCN: A\n").expect("parse");
        assert_eq!(
            text_attrs(&recs[0]),
            [("cn;lang-fr", "Bonjour"), ("CN", "A")]
        );
        assert!(all("").expect("empty").is_empty());
        assert!(all("# only a comment\n\n\n").expect("comments").is_empty());
    }
}
