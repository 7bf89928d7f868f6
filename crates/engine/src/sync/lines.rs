//! A table against the copy of the one last synchronized, record by record (the record's text,
//! not its values): what a Complete run must look at when most of a large table is as it was.
//!
//! Both tables are read once, as they stream. A record of the new table equal, byte for byte,
//! to the next record of the old one (or to one of the few after it, which the records between
//! then left) is unchanged; the others are the new table's records to prepare and the old
//! table's records they replace or that left. Equal text is the same row: the records are
//! split exactly where the CSV reader splits them (see [`Records`]), so equal text parses to
//! equal cells. Tables whose records moved about give up early ([`Outcome::TooDifferent`]).

use std::collections::VecDeque;
use std::io::{self, Read};

/// A reader that keeps the digest (xxh3-128, seeded) and the count of the bytes read through
/// it: what the store keeps of a table last synchronized.
pub(super) struct Digested<R> {
    inner: R,
    digest: Box<xxhash_rust::xxh3::Xxh3>,
    size: u64,
}

impl<R> Digested<R> {
    pub fn new(inner: R, seed: u64) -> Self {
        Digested {
            inner,
            digest: Box::new(xxhash_rust::xxh3::Xxh3::with_seed(seed)),
            size: 0,
        }
    }

    /// The digest and the count of the bytes read so far.
    pub fn digest(&self) -> (u128, u64) {
        (self.digest.digest128(), self.size)
    }
}

impl<R: Read> Read for Digested<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// One table read record by record, with the digest of all its bytes.
pub(super) struct Records<R> {
    input: Digested<R>,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// Line feeds before `start`.
    newlines: u64,
    /// The line the csv crate gives the next record: 1, then one more than the line feeds
    /// before the first byte of the last record's terminator (it counts neither the LF of a
    /// CR LF nor the blank lines before a record: `prepare`'s lines are the crate's).
    line: u64,
    csv: csv_core::Reader,
    scratch: Vec<u8>,
    ends: Vec<usize>,
}

/// A record: its text without the line terminator, and the line it starts on.
pub(super) struct Record<'a> {
    pub text: &'a [u8],
    pub line: u64,
}

/// The read buffer of a table being compared.
const BUFFER: usize = 1 << 20;

impl<R: Read> Records<R> {
    /// Reads `input` with a buffer of `buffer` bytes (it grows for a longer record).
    fn new(input: R, seed: u64, buffer: usize) -> Self {
        Records {
            input: Digested::new(input, seed),
            buf: vec![0; buffer.max(2)],
            start: 0,
            end: 0,
            eof: false,
            newlines: 0,
            line: 1,
            // The CSV reader's defaults, as `prepare` reads tables.
            csv: csv_core::Reader::new(),
            scratch: vec![0; 1 << 12],
            ends: vec![0; 256],
        }
    }

    /// Reads more input after the unread bytes (moved to the front, the buffer grown when
    /// they fill it). False at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The unread bytes: a sixteenth of the buffer at least, unless the input ends first
    /// (what is left is moved to the front to read more: a small part, seldom).
    fn unread(&mut self) -> io::Result<&[u8]> {
        let want = self.buf.len() / 16;
        while self.end - self.start < want && self.fill()? {}
        Ok(&self.buf[self.start..self.end])
    }

    /// Passes over the first `len` unread bytes: `lines` plain lines (each ending with a line
    /// feed, none blank, no quote and no carriage return in them), as many records.
    fn skip_plain_lines(&mut self, len: usize, lines: u64) {
        debug_assert!(len <= self.end - self.start);
        self.start += len;
        self.newlines += lines;
        // As after any record ended by a line feed.
        self.line = self.newlines + 1;
    }

    /// The next record, blank lines skipped (the CSV reader skips them too).
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        loop {
            // The first LF, quote or CR: an LF or a CR LF first ends a plain line, the
            // record; anything else is the CSV parser's to split.
            let plain = loop {
                let rest = &self.buf[self.start..self.end];
                match memchr::memchr3(b'\n', b'"', b'\r', rest).map(|i| self.start + i) {
                    Some(i) if self.buf[i] == b'\n' => break Some((i, i + 1, true)),
                    Some(i) if self.buf[i] == b'\r' && i + 1 < self.end => {
                        break (self.buf[i + 1] == b'\n').then_some((i, i + 2, false));
                    }
                    // A CR last in the buffer: what follows it decides.
                    Some(i) if self.buf[i] == b'\r' && !self.eof => {
                        self.fill()?;
                    }
                    Some(_) => break None,
                    None if self.fill()? => {}
                    None if self.start == self.end => return Ok(None),
                    // The input's last line, without a line end.
                    None => break Some((self.end, self.end, false)),
                }
            };
            let first = self.start;
            let line = self.line;
            if let Some((text_end, next, terminated_by_lf)) = plain {
                // One LF at most, the line end's.
                let before = self.newlines;
                self.newlines += u64::from(next > text_end && self.buf[next - 1] == b'\n');
                self.start = next;
                if text_end == first {
                    continue;
                }
                self.line = 2 + before - u64::from(!terminated_by_lf);
                return Ok(Some(Record {
                    text: &self.buf[first..text_end],
                    line,
                }));
            }
            // Quotes (a record may go on over several lines) or a bare CR (which ends a
            // record).
            let (consumed, at_eof) = self.csv_record()?;
            let first = self.start;
            let mut next = first + consumed;
            let mut text_end = next;
            // The terminator that ended it (none when the input did: a quote left open keeps
            // its line feeds).
            if !at_eof && text_end > first && matches!(self.buf[text_end - 1], b'\n' | b'\r') {
                text_end -= 1;
            }
            // A CR LF: the LF belongs to this record's end.
            if next > first
                && next < self.end
                && self.buf[next - 1] == b'\r'
                && self.buf[next] == b'\n'
            {
                next += 1;
            }
            let count = |b: &[u8]| memchr::memchr_iter(b'\n', b).count() as u64;
            let before = self.newlines;
            self.newlines += count(&self.buf[first..next]);
            self.start = next;
            if text_end == first {
                continue;
            }
            let terminated_by_lf = text_end < next && self.buf[text_end] == b'\n';
            self.line =
                1 + before + count(&self.buf[first..text_end]) + u64::from(terminated_by_lf);
            return Ok(Some(Record {
                text: &self.buf[first..text_end],
                line,
            }));
        }
    }

    /// How many bytes from `start` the CSV parser reads for one record (its terminator
    /// included), reading more input as it needs, and whether the input ended it.
    fn csv_record(&mut self) -> io::Result<(usize, bool)> {
        use csv_core::ReadRecordResult as R;
        'parse: loop {
            self.csv.reset();
            let mut at = self.start;
            loop {
                let (res, nin, _, _) = self.csv.read_record(
                    &self.buf[at..self.end],
                    &mut self.scratch,
                    &mut self.ends,
                );
                at += nin;
                match res {
                    R::Record | R::End => return Ok((at - self.start, false)),
                    R::OutputFull | R::OutputEndsFull => continue,
                    R::InputEmpty if self.eof => {
                        // The input ends inside the record: the parser ends it there.
                        let (res, _, _, _) =
                            self.csv.read_record(&[], &mut self.scratch, &mut self.ends);
                        if matches!(res, R::OutputFull | R::OutputEndsFull) {
                            continue;
                        }
                        return Ok((at - self.start, true));
                    }
                    R::InputEmpty => {
                        self.fill()?;
                        continue 'parse;
                    }
                }
            }
        }
    }

    /// The digest and the count of the bytes read so far (all of them once
    /// [`Records::next_record`] gave None).
    pub fn digest(&self) -> (u128, u64) {
        self.input.digest()
    }
}

/// What differs between the two tables.
#[derive(Debug, Default)]
pub(super) struct Diff {
    /// The header record, then each new record not found in the old table, each ending with
    /// a line feed: a table to prepare.
    pub new_records: Vec<u8>,
    /// The line each of those records starts on in the new table.
    pub new_lines: Vec<u64>,
    /// The header, then the old table's records not found in the new one.
    pub old_records: Vec<u8>,
    /// New records equal to an old one.
    pub unchanged: u64,
    /// Records of the old table (the header aside).
    pub old_count: u64,
    pub old_digest: u128,
    /// The new table's digest and size.
    pub new_digest: (u128, u64),
}

#[derive(Debug)]
pub(super) enum Outcome {
    Diff(Diff),
    /// Different headers: the columns moved.
    HeaderChanged,
    /// More than the limit of records differ: comparing by key costs less.
    TooDifferent,
}

/// Appends a record and a line feed to a table.
fn push_record(table: &mut Vec<u8>, record: &[u8]) {
    table.extend_from_slice(record);
    table.push(b'\n');
}

/// Old records ahead of the one expected that a new record may match (records that left).
const WINDOW: usize = 16;

/// The whole lines that start both `a` and `b`, equal in both, that are plain (no quote, no
/// carriage return, none blank): their length in bytes and their count. From a record's start,
/// each such line is one record, the same in both tables, whatever follows.
fn shared_plain_lines(a: &[u8], b: &[u8]) -> (usize, u64) {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // Equal blocks first (one comparison each), then the bytes of the block that differs.
    const BLOCK: usize = 512;
    let mut same = a
        .chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .take_while(|(x, y)| x == y)
        .count()
        * BLOCK;
    same = same.min(n);
    same += a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count();
    let whole = |text: &[u8]| memchr::memrchr(b'\n', text).map_or(0, |i| i + 1);
    let mut len = whole(&a[..same]);
    if let Some(i) = memchr::memchr2(b'"', b'\r', &a[..len]) {
        len = whole(&a[..i]);
    }
    if a.first() == Some(&b'\n') {
        return (0, 0);
    }
    if let Some(i) = memchr::memmem::find(&a[..len], b"\n\n") {
        len = i + 1;
    }
    (len, memchr::memchr_iter(b'\n', &a[..len]).count() as u64)
}

/// Reads old records into the window until it holds `len` of them (or the old table ends),
/// counting them.
fn fill_window<R: Read>(
    old: &mut Records<R>,
    ahead: &mut VecDeque<Vec<u8>>,
    spare: &mut Vec<Vec<u8>>,
    count: &mut u64,
    len: usize,
) -> io::Result<()> {
    while ahead.len() < len {
        let Some(r) = old.next_record()? else { break };
        let mut b = spare.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(r.text);
        ahead.push_back(b);
        *count += 1;
    }
    Ok(())
}

/// Where a record is among the next old records, looked for without reading them.
#[derive(Debug, PartialEq, Eq)]
enum Peek {
    /// The first equal to it, after that many others.
    Found(usize),
    /// None of them is, or the old table ends first.
    NotFound,
    /// They are not all plain lines already read: the window is read whole.
    Unknown,
}

/// Looks for `text` among the next `n` records of `old` where they are, in its unread bytes,
/// when those hold them all as plain lines (each ending with a line feed, none blank, no
/// quote and no carriage return in them: each line is then one record, its text the line).
fn peek<R: Read>(old: &mut Records<R>, n: usize, text: &[u8]) -> io::Result<Peek> {
    old.unread()?;
    let (unread, eof) = (&old.buf[old.start..old.end], old.eof);
    let mut at = 0;
    for j in 0..n {
        let rest = &unread[at..];
        match memchr::memchr3(b'\n', b'"', b'\r', rest) {
            Some(i) if i > 0 && rest[i] == b'\n' => {
                if &rest[..i] == text {
                    return Ok(Peek::Found(j));
                }
                at += i + 1;
            }
            None if rest.is_empty() && eof => return Ok(Peek::NotFound),
            _ => return Ok(Peek::Unknown),
        }
    }
    Ok(Peek::NotFound)
}

/// Compares `new` with `old`, both read with `seed` for their digests; gives up past `limit`
/// differing records (new and old). `found` sees the header, then each differing record as it
/// is found (so that their keys can be looked up while the tables are still being read).
pub(super) fn diff(
    old: impl Read,
    new: impl Read,
    seed: u64,
    limit: usize,
    found: impl FnMut(&[u8]),
) -> io::Result<Outcome> {
    diff_with_buffers(old, new, seed, limit, found, BUFFER)
}

/// [`diff`] with read buffers of `buffer` bytes.
///
/// A new record matches the first of the next [`WINDOW`] old records (not yet matched) that
/// equals it. That window is read only when a new record differs from the next old one: while
/// the two tables agree, their bytes are compared as they are, many records at once.
fn diff_with_buffers(
    old: impl Read,
    new: impl Read,
    seed: u64,
    limit: usize,
    mut found: impl FnMut(&[u8]),
    buffer: usize,
) -> io::Result<Outcome> {
    let mut old = Records::new(old, seed, buffer);
    let mut new = Records::new(new, seed, buffer);
    let mut d = Diff::default();
    match (old.next_record()?, new.next_record()?) {
        (Some(o), Some(n)) if o.text == n.text => {
            found(n.text);
            push_record(&mut d.new_records, n.text);
            push_record(&mut d.old_records, o.text);
        }
        _ => return Ok(Outcome::HeaderChanged),
    }
    // The first old records of the window, read (the rest of it is still to be read), and
    // spent buffers. Empty: the next old record is the one expected.
    let mut ahead: VecDeque<Vec<u8>> = VecDeque::with_capacity(WINDOW);
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut differing = 0usize;
    loop {
        if ahead.is_empty() {
            let (len, lines) = shared_plain_lines(old.unread()?, new.unread()?);
            if len > 0 {
                old.skip_plain_lines(len, lines);
                new.skip_plain_lines(len, lines);
                d.unchanged += lines;
                d.old_count += lines;
                continue;
            }
        }
        let Some(r) = new.next_record()? else { break };
        if ahead.is_empty() {
            match old.next_record()? {
                Some(o) if o.text == r.text => {
                    d.unchanged += 1;
                    d.old_count += 1;
                    continue;
                }
                Some(o) => {
                    let mut b = spare.pop().unwrap_or_default();
                    b.clear();
                    b.extend_from_slice(o.text);
                    ahead.push_back(b);
                    d.old_count += 1;
                }
                None => {}
            }
        }
        let read = ahead.len();
        let mut at = ahead.iter().position(|o| o.as_slice() == r.text);
        if at.is_none() && read < WINDOW {
            // The rest of the window, looked at where it is (most often: a record changed in
            // place leaves plain lines after it), so that only the records up to a match are
            // read into it: the match then leaves it empty, and the comparison goes on by
            // blocks at once, instead of record by record through copies of the whole window.
            match peek(&mut old, WINDOW - read, r.text)? {
                Peek::Found(j) => {
                    let len = read + j + 1;
                    fill_window(&mut old, &mut ahead, &mut spare, &mut d.old_count, len)?;
                    at = Some(read + j);
                }
                Peek::NotFound => {}
                Peek::Unknown => {
                    fill_window(&mut old, &mut ahead, &mut spare, &mut d.old_count, WINDOW)?;
                    at = ahead
                        .iter()
                        .skip(read)
                        .position(|o| o.as_slice() == r.text)
                        .map(|k| k + read);
                }
            }
        }
        match at {
            Some(k) => {
                for left in ahead.drain(..k) {
                    found(&left);
                    push_record(&mut d.old_records, &left);
                    differing += 1;
                    spare.push(left);
                }
                spare.extend(ahead.pop_front());
                d.unchanged += 1;
            }
            None => {
                found(r.text);
                push_record(&mut d.new_records, r.text);
                d.new_lines.push(r.line);
                differing += 1;
            }
        }
        if differing > limit {
            return Ok(Outcome::TooDifferent);
        }
    }
    // The old records left over.
    loop {
        if ahead.is_empty() {
            fill_window(&mut old, &mut ahead, &mut spare, &mut d.old_count, WINDOW)?;
        }
        let Some(left) = ahead.pop_front() else { break };
        found(&left);
        push_record(&mut d.old_records, &left);
        differing += 1;
        if differing > limit {
            return Ok(Outcome::TooDifferent);
        }
        spare.push(left);
    }
    d.old_digest = old.digest().0;
    d.new_digest = new.digest();
    Ok(Outcome::Diff(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records as the splitter gives them, and as the csv crate parses the same text:
    /// the same count, each record's text parsing to the crate's cells.
    fn split(text: &str) -> Vec<(String, u64)> {
        let mut r = Records::new(text.as_bytes(), 0, BUFFER);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().expect("read") {
            out.push((
                String::from_utf8(rec.text.to_vec()).expect("utf-8"),
                rec.line,
            ));
        }
        assert_eq!(
            r.digest(),
            (
                xxhash_rust::xxh3::xxh3_128_with_seed(text.as_bytes(), 0),
                text.len() as u64
            )
        );
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let parsed: Vec<(csv::StringRecord, u64)> = csv
            .records()
            .map(|r| {
                let r = r.expect("parsed");
                let line = r.position().expect("position").line();
                (r, line)
            })
            .collect();
        assert_eq!(parsed.len(), out.len(), "{text:?}: {out:?}");
        for ((want, line), (record, at)) in parsed.iter().zip(&out) {
            let got = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(record.as_bytes())
                .records()
                .next()
                .expect("a record")
                .expect("parsed");
            assert_eq!(&got, want, "{record:?} in {text:?}");
            assert_eq!(line, at, "{record:?} in {text:?}");
        }
        out
    }

    #[test]
    fn records_split_where_the_csv_reader_splits_them() {
        split("a,b\n1,2\n3,4\n");
        split("a,b\r\n1,2\r\n3,4");
        split("a,b\n\n1,2\n\r\n3,4\n\n");
        split("a,b\n\"1\n2\",x\n3,\"4,\"\"5\"\"\"\n6,7\n");
        split("a,b\n\"x\r\ny\",z\r\n1,2\r\n");
        split("a,b\r1,2\r3,4\r");
        split("a,b\n1,\"unterminated\n2,3\n");
        split("a,b\n1,x\"y\n2,3\n");
        split("\u{feff}a,b\n1,2\n");
        // Records longer than the buffer.
        let long = format!(
            "a,b\n\"{}\",1\n{},2\n",
            "x\n".repeat(700_000),
            "y".repeat(1_500_000)
        );
        let r = split(&long);
        assert_eq!(r.len(), 3);
    }

    fn outcome(old: &str, new: &str, limit: usize) -> Outcome {
        let mut seen = Vec::new();
        let o = diff(old.as_bytes(), new.as_bytes(), 7, limit, |r| {
            push_record(&mut seen, r)
        })
        .expect("diff");
        // The header, then the records that differ, new and old, as the diff lists them.
        if let Outcome::Diff(d) = &o {
            let mut listed = records(&d.new_records);
            listed.extend(records(&d.old_records).into_iter().skip(1));
            listed.sort_unstable();
            let mut seen = records(&seen);
            assert_eq!(seen.first(), records(&d.new_records).first());
            seen.sort_unstable();
            assert_eq!(seen, listed);
        }
        o
    }

    fn records(b: &[u8]) -> Vec<&str> {
        std::str::from_utf8(b).expect("utf-8").lines().collect()
    }

    #[test]
    fn changed_inserted_and_removed_records_are_found() {
        let old = "k,v\n1,a\n2,b\n3,c\n4,d\n5,e\n";
        let new = "k,v\n1,a\n2,B\n3,c\n9,z\n4,d\n";
        let Outcome::Diff(d) = outcome(old, new, 100) else {
            panic!("no diff")
        };
        assert_eq!(records(&d.new_records), ["k,v", "2,B", "9,z"]);
        assert_eq!(d.new_lines, [3, 5]);
        assert_eq!(records(&d.old_records), ["k,v", "2,b", "5,e"]);
        assert_eq!(d.unchanged, 3);
        assert_eq!(d.old_count, 5);
        assert_eq!(
            d.old_digest,
            xxhash_rust::xxh3::xxh3_128_with_seed(old.as_bytes(), 7)
        );
        assert_eq!(
            d.new_digest,
            (
                xxhash_rust::xxh3::xxh3_128_with_seed(new.as_bytes(), 7),
                new.len() as u64
            )
        );
    }

    #[test]
    fn line_ends_do_not_make_a_record_differ_but_quotes_do() {
        let Outcome::Diff(d) = outcome("k,v\n1,a\n2,b\n", "k,v\r\n1,a\r\n\"2\",b\r\n", 10) else {
            panic!("no diff")
        };
        assert_eq!(d.unchanged, 1);
        assert_eq!(records(&d.new_records), ["k,v", "\"2\",b"]);
        assert_eq!(records(&d.old_records), ["k,v", "2,b"]);
    }

    #[test]
    fn a_quoted_record_over_lines_is_one_record() {
        // Its second line alone equals an old record: it must not match it.
        let old = "k\nx\n\"a\n";
        let new = "k\n\"a\nx\"\n";
        let Outcome::Diff(d) = outcome(old, new, 10) else {
            panic!("no diff")
        };
        assert_eq!(d.unchanged, 0);
        assert_eq!(d.new_lines, [2]);
    }

    /// The comparison as its definition says, on records split by the csv crate: each new
    /// record matches the first of the next `WINDOW` old records not yet matched that equals
    /// it. Gives the new records, their lines, the old records, the unchanged count.
    fn by_definition(old: &str, new: &str) -> (Vec<String>, Vec<u64>, Vec<String>, u64) {
        let old = split(old);
        let new = split(new);
        let (mut news, mut lines, mut olds, mut unchanged) = (
            vec![new[0].0.clone()],
            Vec::new(),
            vec![old[0].0.clone()],
            0,
        );
        let mut next = 1;
        for (text, line) in &new[1..] {
            let end = (next + WINDOW).min(old.len());
            match old[next..end].iter().position(|(o, _)| o == text) {
                Some(k) => {
                    olds.extend(old[next..next + k].iter().map(|(o, _)| o.clone()));
                    next += k + 1;
                    unchanged += 1;
                }
                None => {
                    news.push(text.clone());
                    lines.push(*line);
                }
            }
        }
        olds.extend(old[next..].iter().map(|(o, _)| o.clone()));
        (news, lines, olds, unchanged)
    }

    /// A small generator of test tables (xorshift).
    struct Gen(u64);

    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        /// A record, now and then with quotes, a quoted line feed or CR LF, or a blank line
        /// before it.
        fn record(&mut self, i: u64) -> String {
            let mut r = match self.next(40) {
                0 => format!("{i},\"q{}\"", self.next(3)),
                1 => format!("{i},\"two\nlines\""),
                2 => format!("\n{i},after a blank line"),
                _ => format!("{i},v{}", self.next(3)),
            };
            r.push_str(if self.next(30) == 0 { "\r\n" } else { "\n" });
            r
        }
    }

    #[test]
    fn tables_compared_in_blocks_give_what_the_definition_gives() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for case in 0..60 {
            let records: Vec<String> = (0..400).map(|i| g.record(i)).collect();
            let mut old: String = std::iter::once("k,v\n".to_string())
                .chain(records.iter().cloned())
                .collect();
            if case % 7 == 3 {
                // The last line of the old table without its line end.
                old.pop();
            }
            // Changes: a record changed, inserted, removed (or several in a row), or moved a
            // little way.
            let mut changed = records.clone();
            for _ in 0..g.next(12) {
                let at = g.next(changed.len() as u64) as usize;
                match g.next(5) {
                    0 => changed[at] = format!("{at},changed\n"),
                    1 => changed.insert(at, format!("new{at},x\n")),
                    2 => {
                        changed.remove(at);
                    }
                    3 => {
                        // Several records in a row removed: the next one matches further on.
                        let end = (at + 2 + g.next(5) as usize).min(changed.len());
                        changed.drain(at..end);
                    }
                    _ => {
                        let r = changed.remove(at);
                        let to = (at + g.next(30) as usize).min(changed.len());
                        changed.insert(to, r);
                    }
                }
            }
            let mut new: String = std::iter::once("k,v\n".to_string())
                .chain(changed)
                .collect();
            if case % 5 == 0 {
                // The last line without its line end.
                new.pop();
            }
            let want = by_definition(&old, &new);
            for buffer in [2, 7, 64, 1000, BUFFER] {
                let mut seen = Vec::new();
                let Outcome::Diff(d) = diff_with_buffers(
                    old.as_bytes(),
                    new.as_bytes(),
                    3,
                    usize::MAX,
                    |r| push_record(&mut seen, r),
                    buffer,
                )
                .expect("diff") else {
                    panic!("case {case}: no diff")
                };
                let got = (
                    split(std::str::from_utf8(&d.new_records).expect("utf-8"))
                        .into_iter()
                        .map(|(r, _)| r)
                        .collect::<Vec<_>>(),
                    d.new_lines.clone(),
                    split(std::str::from_utf8(&d.old_records).expect("utf-8"))
                        .into_iter()
                        .map(|(r, _)| r)
                        .collect::<Vec<_>>(),
                    d.unchanged,
                );
                assert_eq!(got, want, "case {case}, buffer {buffer}");
                assert_eq!(
                    d.old_count,
                    split(&old).len() as u64 - 1,
                    "case {case}, buffer {buffer}"
                );
                assert_eq!(
                    d.new_digest,
                    (
                        xxhash_rust::xxh3::xxh3_128_with_seed(new.as_bytes(), 3),
                        new.len() as u64
                    )
                );
                assert_eq!(
                    d.old_digest,
                    xxhash_rust::xxh3::xxh3_128_with_seed(old.as_bytes(), 3)
                );
                assert_eq!(
                    split(std::str::from_utf8(&seen).expect("utf-8")).len(),
                    want.0.len() + want.2.len() - 1
                );
            }
        }
    }

    #[test]
    fn the_window_is_looked_at_in_place_only_when_it_holds_plain_lines() {
        let peek_in = |text: &str, n: usize, want: &str| {
            let mut r = Records::new(text.as_bytes(), 0, BUFFER);
            peek(&mut r, n, want.as_bytes()).expect("peek")
        };
        let plain = "a,1\nb,2\nc,3\n";
        assert_eq!(peek_in(plain, 16, "a,1"), Peek::Found(0));
        assert_eq!(peek_in(plain, 16, "c,3"), Peek::Found(2));
        // Past the window, or the table ending first: not there.
        assert_eq!(peek_in(plain, 2, "c,3"), Peek::NotFound);
        assert_eq!(peek_in(plain, 16, "d,4"), Peek::NotFound);
        // A prefix of a line is not the line.
        assert_eq!(peek_in(plain, 16, "a,"), Peek::NotFound);
        // What only the CSV reader splits rightly is left to it.
        for odd in ["\"x\",1\nc,3\n", "a,1\r\nc,3\n", "a,1\n\nc,3\n", "a,1\nc,3"] {
            assert_eq!(peek_in(odd, 16, "c,3"), Peek::Unknown, "{odd:?}");
        }
        // A small buffer: the lines not yet read are not guessed at.
        let mut r = Records::new(plain.as_bytes(), 0, 4);
        assert_eq!(peek(&mut r, 16, b"c,3").expect("peek"), Peek::Unknown);
    }

    #[test]
    fn moved_records_and_new_headers_give_up() {
        let old: String = std::iter::once("k,v\n".to_string())
            .chain((0..100).map(|i| format!("{i},x\n")))
            .collect();
        let new: String = std::iter::once("k,v\n".to_string())
            .chain((0..100).rev().map(|i| format!("{i},x\n")))
            .collect();
        assert!(matches!(outcome(&old, &new, 20), Outcome::TooDifferent));
        assert!(matches!(
            outcome(&old, &old.replace("k,v", "v,k"), 20),
            Outcome::HeaderChanged
        ));
        assert!(matches!(outcome("", "k\n", 20), Outcome::HeaderChanged));
        let Outcome::Diff(d) = outcome(&old, &old, 0) else {
            panic!("no diff")
        };
        assert_eq!((d.unchanged, d.old_count), (100, 100));
    }
}
