//! Streaming, strict decoding of a source file into UTF-8.
//!
//! [`Decoded`] wraps a byte reader and yields UTF-8 through [`BufRead`], a buffer at a time:
//! the file is never held in memory. Unlike `encoding_rs_io` (which replaces malformed input
//! with U+FFFD, silently), bytes that are not valid in the declared encoding stop the read with
//! a [`Malformed`] error that carries their byte offset in the file. A byte-order mark at the
//! start overrides the declared encoding and is removed, as .NET's `StreamReader` does.

use std::io::{self, BufRead, Read};

use encoding_rs::{DecoderResult, Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// A source encoding, from the `Encoding` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceEncoding {
    /// The name shown in messages.
    pub name: &'static str,
    encoding: &'static Encoding,
}

impl SourceEncoding {
    /// UTF-8, the default.
    pub const UTF8: SourceEncoding = SourceEncoding {
        name: "UTF-8",
        encoding: UTF_8,
    };

    /// The encoding for a name accepted by
    /// [`check_encoding`](crate::csv::settings::check_encoding), case-insensitively.
    ///
    /// - `UTF-16` and `Unicode` are little-endian, as in .NET, unless a BOM says otherwise.
    /// - `ISO-8859-1` / `Latin1` decode as Windows-1252, as the WHATWG Encoding Standard (and
    ///   `encoding_rs`) do: bytes 0x80–0x9F are the Windows-1252 characters (`€`, `‚`, ...),
    ///   which is what such files hold in practice, rather than C1 control characters.
    /// - `US-ASCII` / `ASCII` are read as their superset UTF-8: bytes that are not UTF-8 (a
    ///   Windows-1252 `é`, say) are refused with their offset, not replaced with `?`.
    pub fn from_name(name: &str) -> Option<SourceEncoding> {
        let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(name));
        let (name, encoding) = if is(&["UTF-8", "UTF8"]) {
            ("UTF-8", UTF_8)
        } else if is(&["UTF-16", "UTF-16LE", "Unicode"]) {
            ("UTF-16LE", UTF_16LE)
        } else if is(&["UTF-16BE"]) {
            ("UTF-16BE", UTF_16BE)
        } else if is(&["Windows-1252", "CP1252", "ISO-8859-1", "Latin1", "Latin-1"]) {
            ("Windows-1252", WINDOWS_1252)
        } else if is(&["US-ASCII", "ASCII"]) {
            ("US-ASCII", UTF_8)
        } else {
            return None;
        };
        Some(SourceEncoding { name, encoding })
    }

    /// The `encoding_rs` encoding that decodes it.
    pub fn encoding(self) -> &'static Encoding {
        self.encoding
    }
}

/// Bytes that are not valid in the declared encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Byte offset of the first malformed byte in the file (0-based, BOM included).
    pub offset: u64,
    /// The malformed bytes, when they are still at hand (at most 4).
    pub bytes: Vec<u8>,
    /// The encoding the bytes were decoded as (the BOM's, if the file has one).
    pub encoding: &'static str,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid {} at byte offset {}",
            self.encoding, self.offset
        )?;
        if !self.bytes.is_empty() {
            f.write_str(" (bytes")?;
            for b in &self.bytes {
                write!(f, " {b:02X}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for Malformed {}

impl Malformed {
    /// The [`Malformed`] inside an I/O error returned by [`Decoded`], if that is what it is.
    pub fn find(e: &io::Error) -> Option<&Malformed> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Malformed>())
    }
}

/// Size of the raw and the decoded buffers. Big enough that syscalls and decoder calls are
/// rare, small enough that memory stays flat.
const BUFFER: usize = 128 * 1024;

/// A UTF-8 view of a reader in some encoding (see the module docs).
pub struct Decoded<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    declared: SourceEncoding,
    src: Box<[u8]>,
    src_pos: usize,
    src_len: usize,
    /// Raw bytes consumed by the decoder so far.
    consumed: u64,
    eof: bool,
    out: Box<[u8]>,
    out_pos: usize,
    out_len: usize,
    /// Decoding is over: input exhausted, or `error` met.
    done: bool,
    error: Option<Malformed>,
}

impl<R> std::fmt::Debug for Decoded<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("encoding", &self.declared.name)
            .field("consumed", &self.consumed)
            .field("done", &self.done)
            .finish()
    }
}

impl<R: Read> Decoded<R> {
    /// Decodes `inner` as `encoding` (a BOM at the start overrides it).
    pub fn new(inner: R, encoding: SourceEncoding) -> Self {
        Decoded {
            inner,
            decoder: encoding.encoding.new_decoder(),
            declared: encoding,
            src: vec![0; BUFFER].into_boxed_slice(),
            src_pos: 0,
            src_len: 0,
            consumed: 0,
            eof: false,
            // Room for any one character, whatever the buffer's fill.
            out: vec![0; BUFFER + 16].into_boxed_slice(),
            out_pos: 0,
            out_len: 0,
            done: false,
            error: None,
        }
    }

    /// The encoding in use: the BOM's if the file starts with one, else the declared one.
    fn effective_name(&self) -> &'static str {
        match self.decoder.encoding() {
            e if e == self.declared.encoding => self.declared.name,
            e if e == UTF_8 => "UTF-8",
            e if e == UTF_16LE => "UTF-16LE",
            e if e == UTF_16BE => "UTF-16BE",
            e => e.name(),
        }
    }

    /// Decodes the next chunk into `dst` (at least 4 bytes long); returns the bytes written,
    /// which may be none while input remains. Call only while decoding is not over.
    fn decode_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if self.src_pos == self.src_len && !self.eof {
            self.src_pos = 0;
            self.src_len = loop {
                match self.inner.read(&mut self.src) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            self.eof = self.src_len == 0;
        }
        let src = &self.src[self.src_pos..self.src_len];
        let (result, read, written) = self
            .decoder
            .decode_to_utf8_without_replacement(src, dst, self.eof);
        self.src_pos += read;
        self.consumed += read as u64;
        match result {
            DecoderResult::InputEmpty => self.done = self.eof,
            DecoderResult::OutputFull => {}
            DecoderResult::Malformed(bad, after) => {
                let (bad, after) = (usize::from(bad), usize::from(after));
                // The bad bytes may have begun in an earlier buffer: show them only if they
                // are all in this one.
                let bytes = self
                    .src_pos
                    .checked_sub(after + bad)
                    .map(|start| self.src[start..start + bad].to_vec())
                    .unwrap_or_default();
                self.error = Some(Malformed {
                    offset: self.consumed.saturating_sub((after + bad) as u64),
                    bytes,
                    encoding: self.effective_name(),
                });
                self.done = true;
            }
        }
        Ok(written)
    }

    /// The end of the text: nothing more, or the error met.
    fn end(&self) -> io::Result<usize> {
        match self.error.clone() {
            Some(m) => Err(io::Error::new(io::ErrorKind::InvalidData, m)),
            None => Ok(0),
        }
    }
}

impl<R: Read> BufRead for Decoded<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.out_pos == self.out_len {
            if self.done {
                // What was decoded before any bad bytes has been read; now the error.
                self.end()?;
                return Ok(&[]);
            }
            let mut out = std::mem::take(&mut self.out);
            let written = self.decode_into(&mut out);
            self.out = out;
            self.out_pos = 0;
            self.out_len = written?;
        }
        Ok(&self.out[self.out_pos..self.out_len])
    }

    fn consume(&mut self, amt: usize) {
        self.out_pos = (self.out_pos + amt).min(self.out_len);
    }
}

/// Reads of at least this many bytes are decoded straight into the caller's buffer.
const DIRECT: usize = 64;

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_pos == self.out_len && buf.len() >= DIRECT {
            // Nothing pending: skip the copy through our own buffer.
            loop {
                if self.done {
                    return self.end();
                }
                let n = self.decode_into(buf)?;
                if n > 0 {
                    return Ok(n);
                }
            }
        }
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Skips one line (through its `\n`). Returns false at the end of the input.
pub fn skip_line<B: BufRead>(input: &mut B) -> io::Result<bool> {
    let mut any = false;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(any);
        }
        any = true;
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(true);
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// The 1-based line holding byte `offset` of a file whose first `offset` bytes are `head`,
/// decoded leniently: used only to place an error, so the happy path never counts lines.
pub fn line_at<R: Read>(head: R, encoding: SourceEncoding) -> io::Result<u64> {
    let mut reader = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding.encoding))
        .build(head);
    let mut buf = vec![0; 64 * 1024];
    let mut lines = 1;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(lines),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], encoding: &str) -> Result<String, Malformed> {
        let enc = SourceEncoding::from_name(encoding).expect("known encoding");
        let mut d = Decoded::new(bytes, enc);
        let mut out = Vec::new();
        match d.read_to_end(&mut out) {
            Ok(_) => Ok(String::from_utf8(out).expect("decoded text is UTF-8")),
            Err(e) => Err(Malformed::find(&e).expect("a decoding error").clone()),
        }
    }

    /// A reader that returns one byte per call, to cut sequences across buffers.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn encodings_and_boms() {
        assert_eq!(decode_all(b"caf\xE9", "windows-1252"), Ok("café".into()));
        assert_eq!(decode_all(b"\x80", "latin1"), Ok("€".into()));
        assert_eq!(decode_all("café".as_bytes(), "utf-8"), Ok("café".into()));
        assert_eq!(decode_all(b"\xEF\xBB\xBFa", "utf-8"), Ok("a".into()));
        // A BOM overrides the declared encoding.
        assert_eq!(
            decode_all(b"\xEF\xBB\xBFcaf\xC3\xA9", "cp1252"),
            Ok("café".into())
        );
        assert_eq!(
            decode_all(b"\xFF\xFEa\x00\xE9\x00", "utf-8"),
            Ok("aé".into())
        );
        assert_eq!(
            decode_all(b"\xFE\xFF\x00a\x00\xE9", "utf-8"),
            Ok("aé".into())
        );
        assert_eq!(decode_all(b"a\x00", "Unicode"), Ok("a".into()));
        assert_eq!(decode_all(b"\x00a", "UTF-16BE"), Ok("a".into()));
        assert_eq!(decode_all(b"", "UTF-16"), Ok(String::new()));
    }

    #[test]
    fn malformed_bytes_have_their_offset() {
        let m = decode_all(b"ab\ncaf\xE9!", "utf-8").expect_err("not UTF-8");
        assert_eq!((m.offset, m.bytes.as_slice()), (6, &b"\xE9"[..]));
        assert_eq!(m.to_string(), "invalid UTF-8 at byte offset 6 (bytes E9)");
        let m = decode_all(b"\xEF\xBB\xBFab\xFF", "utf-8").expect_err("not UTF-8");
        assert_eq!(m.offset, 5);
        let m = decode_all(b"caf\xE9", "ascii").expect_err("not ASCII");
        assert_eq!((m.offset, m.encoding), (3, "US-ASCII"));
        // An unpaired surrogate, then a truncated code unit.
        let m = decode_all(b"a\x00\x00\xDCb\x00", "UTF-16LE").expect_err("bad UTF-16");
        assert_eq!(m.offset, 2);
        let m = decode_all(b"a\x00b", "UTF-16LE").expect_err("odd length");
        assert_eq!(m.offset, 2);
    }

    #[test]
    fn offsets_hold_across_buffers() {
        let mut bytes = vec![b'x'; BUFFER - 1];
        bytes.extend_from_slice(b"\xC3\xA9\xC3(");
        let enc = SourceEncoding::UTF8;
        let mut out = Vec::new();
        let e = Decoded::new(bytes.as_slice(), enc)
            .read_to_end(&mut out)
            .expect_err("bad");
        let m = Malformed::find(&e).expect("malformed");
        assert_eq!(m.offset, BUFFER as u64 + 1);
        // The text before the bad bytes was delivered first.
        assert!(
            out.ends_with("xé".as_bytes()),
            "{:?}",
            &out[out.len() - 4..]
        );

        let mut out = Vec::new();
        let e = Decoded::new(OneByte(b"ab\xE2\x82"), enc)
            .read_to_end(&mut out)
            .expect_err("truncated");
        let m = Malformed::find(&e).expect("malformed");
        assert_eq!((m.offset, out.as_slice()), (2, &b"ab"[..]));
    }

    #[test]
    fn small_reads_go_through_the_buffer() {
        let enc = SourceEncoding::from_name("cp1252").expect("known");
        let mut d = Decoded::new(OneByte(b"caf\xE9 cr\xE8me"), enc);
        let mut out = Vec::new();
        let mut chunk = [0u8; 3];
        loop {
            let n = d.read(&mut chunk).expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(String::from_utf8(out).ok().as_deref(), Some("café crème"));
        let mut d = Decoded::new(&b"ab\xFFcd"[..], SourceEncoding::UTF8);
        let mut chunk = [0u8; 2];
        assert_eq!(d.read(&mut chunk).ok(), Some(2));
        let e = d.read(&mut chunk).expect_err("bad byte");
        assert_eq!(Malformed::find(&e).map(|m| m.offset), Some(2));
    }

    #[test]
    fn lines_are_skipped_and_counted() {
        let mut d = Decoded::new(&b"one\r\ntwo\nthree"[..], SourceEncoding::UTF8);
        assert!(skip_line(&mut d).expect("skip"));
        let mut rest = String::new();
        d.read_to_string(&mut rest).expect("read");
        assert_eq!(rest, "two\nthree");
        let mut empty = Decoded::new(&b""[..], SourceEncoding::UTF8);
        assert!(!skip_line(&mut empty).expect("skip"));
        assert_eq!(line_at(&b"a\nb\nc"[..], SourceEncoding::UTF8).ok(), Some(3));
        let utf16 = SourceEncoding::from_name("UTF-16").expect("known");
        assert_eq!(line_at(&b"\xFF\xFEa\x00\n\x00"[..], utf16).ok(), Some(2));
    }
}
