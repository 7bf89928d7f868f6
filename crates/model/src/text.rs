//! Source text helpers: decoding configuration files and turning byte offsets into line:column.

use std::sync::Arc;

use crate::diag::Loc;

/// Byte offset -> 1-based line and column (in characters), in O(log lines).
#[derive(Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr_newlines(text.as_bytes()));
        Self { text, starts }
    }

    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (to_u32(line + 1), to_u32(col + 1))
    }

    pub fn loc(&self, file: &Arc<str>, offset: usize) -> Loc {
        let (line, column) = self.line_col(offset);
        Loc::new(file, line, column)
    }
}

fn memchr_newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Why a file's bytes are not text we can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset of the problem in the file as read (BOM included).
    pub offset: usize,
    pub message: String,
}

/// Decodes a configuration file: UTF-8 with or without a byte order mark. UTF-16 files are
/// refused with a message that says how to convert them.
pub fn decode_utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(DecodeError {
            offset: 0,
            message:
                "the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"
                    .into(),
        });
    }
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    let bom = bytes.len() - body.len();
    std::str::from_utf8(body).map_err(|e| DecodeError {
        offset: bom + e.valid_up_to(),
        message: format!(
            "the file is not valid UTF-8: byte 0x{:02X} at offset {}; save it as UTF-8",
            body[e.valid_up_to()],
            bom + e.valid_up_to()
        ),
    })
}

/// Strips the BOM (if any) and reports how many bytes it took, so offsets can be mapped back.
pub fn bom_len(bytes: &[u8]) -> usize {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "ab\r\néé<x\nz";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_col(0), (1, 1));
        assert_eq!(idx.line_col(4), (2, 1));
        let lt = text.find('<').unwrap_or_default();
        assert_eq!(idx.line_col(lt), (2, 3));
        assert_eq!(idx.line_col(text.len() - 1), (3, 1));
    }

    #[test]
    fn decoding() {
        assert_eq!(decode_utf8(b"\xEF\xBB\xBFabc"), Ok("abc"));
        assert_eq!(decode_utf8(b"abc"), Ok("abc"));
        assert_eq!(decode_utf8(b"ab\xFFc").map_err(|e| e.offset), Err(2));
        assert!(decode_utf8(b"\xFF\xFEa\0").is_err());
    }
}
