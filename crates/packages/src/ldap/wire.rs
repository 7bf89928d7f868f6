//! Bounded reading from a directory: whole LDAP messages, each no larger than
//! `MaxMessageSize` and each awaited no longer than `TimeOut`, checked before anything else
//! decodes them.
//!
//! Both readers stand behind this module:
//! - the bulk reader (`bulk.rs`) reads its messages through a [`Framer`];
//! - ldap3 (bind, root DSE, subschema, syncrepl, fulfill) has no size limit of its own, and
//!   its decoder waits for more bytes when an element announces more than its message holds.
//!   So ldap3 never talks to the server: it talks to a [`relay`] over a Unix socket pair
//!   (ldap3's `ldapi` transport), and the relay forwards each server message only once it is
//!   whole and well formed (every nested length inside its container, at most
//!   [`MAX_DEPTH`] levels, so that ldap3's recursive decoder cannot overflow the stack).
//!   Requests go the other way untouched. TLS (LDAPS, StartTLS) is the relay's, done by
//!   the same code as the bulk reader's.
//!
//! A server announcing a message above the limit fails at its header, before any of it is
//! buffered; the relay then closes ldap3's side and records why, so the error ldap3 reports
//! ("the server closed the connection") is replaced by the real reason ([`Link`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conn::{Class, tls_message};

/// What a transport needs to be.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An error of a reader: its class and message.
pub(crate) type Failure = (Class, String);

/// The deepest nesting of BER elements accepted in a message (LDAP responses nest about 8).
pub(crate) const MAX_DEPTH: usize = 32;

/// The time a wait may take, as messages say it.
pub(crate) fn timeout_text(timeout: Option<Duration>) -> String {
    match timeout {
        Some(t) if t.subsec_millis() == 0 => format!("{} s", t.as_secs()),
        Some(t) => format!("{:.1} s", t.as_secs_f64()),
        None => "no limit".to_string(),
    }
}

/// No whole response within `TimeOut`.
pub(crate) fn timed_out(timeout: Option<Duration>) -> Failure {
    (
        Class::Unreachable,
        format!(
            "no complete response within TimeOut ({}; the TimeOut setting, in seconds, 0 waits without limit)",
            timeout_text(timeout)
        ),
    )
}

pub(crate) fn malformed(what: &str) -> Failure {
    (
        Class::Malformed,
        format!("malformed LDAP message from the server ({what})"),
    )
}

fn too_large(announced: usize, max: usize) -> Failure {
    (
        Class::Malformed,
        format!(
            "the server announced a {announced}-byte message, above MaxMessageSize ({max}); raise MaxMessageSize if the directory really holds entries that large"
        ),
    )
}

pub(crate) fn io_failure(e: std::io::Error) -> Failure {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return (Class::Tls, tls_message(&tls.to_string()));
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => (
            Class::Unreachable,
            "the server closed the connection".to_string(),
        ),
        _ => (Class::Unreachable, format!("cannot reach the server: {e}")),
    }
}

/// Waits for `fut` at most `timeout`.
pub(crate) async fn bounded<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, Failure> {
    match timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r.map_err(io_failure),
            Err(_) => Err(timed_out(Some(t))),
        },
        None => fut.await.map_err(io_failure),
    }
}

/// The header of the BER element at the start of `b`: (tag, header length, content length),
/// or `None` when more bytes are needed. Lengths are definite, in at most 4 bytes (LDAP
/// messages are below 4 GiB); tags are one byte (LDAP's are all below 31).
fn header(b: &[u8]) -> Result<Option<(u8, usize, usize)>, Failure> {
    if b.len() < 2 {
        return Ok(None);
    }
    let tag = b[0];
    if tag & 0x1f == 0x1f {
        return Err(malformed("multi-byte tag"));
    }
    let first = b[1] as usize;
    if first < 0x80 {
        return Ok(Some((tag, 2, first)));
    }
    let n = first & 0x7f;
    if n == 0 {
        return Err(malformed("indefinite length"));
    }
    if n > 4 {
        return Err(malformed("length over 4 bytes"));
    }
    if b.len() < 2 + n {
        return Ok(None);
    }
    let len = b[2..2 + n]
        .iter()
        .fold(0usize, |acc, x| (acc << 8) | *x as usize);
    Ok(Some((tag, 2 + n, len)))
}

/// The total length of the message at the start of `b`, once its header is there; fails at
/// once when it announces more than `max` bytes.
pub(crate) fn message_length(b: &[u8], max: usize) -> Result<Option<usize>, Failure> {
    if let Some(&t) = b.first()
        && t != 0x30
    {
        return Err(malformed("not a message"));
    }
    match header(b)? {
        None => Ok(None),
        Some((_, head, len)) => {
            let total = head.saturating_add(len);
            if total > max {
                return Err(too_large(len, max));
            }
            Ok(Some(total))
        }
    }
}

/// The most BER elements a message may hold: [`BYTES_PER_ELEMENT`] bytes of
/// `MaxMessageSize` each. A decoder allocates for every element (ldap3 about 100 bytes with
/// its copy), so a message of tiny elements would cost far more memory than its size.
pub(crate) fn max_elements(max_message: usize) -> usize {
    (max_message / BYTES_PER_ELEMENT).max(4096)
}

/// See [`max_elements`]: real entries average well above this per element.
pub(crate) const BYTES_PER_ELEMENT: usize = 16;

/// Checks that `msg` (one whole element) is well formed: every element inside its
/// container, at most [`MAX_DEPTH`] levels deep, at most `max_elements` elements. No
/// allocation but the stack of open ends.
pub(crate) fn validate(msg: &[u8], max_elements: usize) -> Result<(), Failure> {
    let mut ends: Vec<usize> = Vec::with_capacity(MAX_DEPTH);
    let mut pos = 0usize;
    let end = msg.len();
    let mut elements = 0usize;
    loop {
        while ends.last() == Some(&pos) {
            ends.pop();
        }
        if pos == end && ends.is_empty() {
            return Ok(());
        }
        let limit = ends.last().copied().unwrap_or(end);
        let Some((tag, head, len)) = header(&msg[pos..limit])? else {
            return Err(malformed("truncated element"));
        };
        if len > limit - pos - head {
            return Err(malformed("an element is longer than what contains it"));
        }
        elements += 1;
        if elements > max_elements {
            return Err((
                Class::Malformed,
                format!(
                    "the server sent a message of more than {max_elements} elements (MaxMessageSize / {BYTES_PER_ELEMENT}); raise MaxMessageSize if the directory really holds entries with that many values"
                ),
            ));
        }
        if tag & 0x20 != 0 {
            if ends.len() >= MAX_DEPTH {
                return Err(malformed("elements nested too deep"));
            }
            ends.push(pos + head + len);
            pos += head;
        } else {
            pos += head + len;
        }
    }
}

/// Reads whole messages from a transport.
pub(crate) struct Framer<R> {
    pub io: R,
    buf: Vec<u8>,
    /// Start of unread bytes in `buf`.
    start: usize,
    /// `MaxMessageSize`.
    pub max: usize,
    /// `TimeOut`: the wait for each whole response.
    pub timeout: Option<Duration>,
}

impl<R: AsyncRead + Unpin> Framer<R> {
    pub(crate) fn new(io: R, max: usize, timeout: Option<Duration>) -> Self {
        Framer {
            io,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            max,
            timeout,
        }
    }

    /// When a response awaited from now must be whole.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// The bytes of a message returned by [`Framer::next`].
    pub(crate) fn bytes(&self, (s, e): (usize, usize)) -> &[u8] {
        &self.buf[s..e]
    }

    /// Whether bytes were read but not handed out.
    pub(crate) fn has_unread(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Reads the next whole message (its bounds in the buffer), failing when its header
    /// announces more than `max` bytes or when it is not whole at `deadline`.
    pub(crate) async fn next(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<(usize, usize), Failure> {
        loop {
            let avail = &self.buf[self.start..];
            if let Some(total) = message_length(avail, self.max)?
                && avail.len() >= total
            {
                let s = self.start;
                self.start += total;
                return Ok((s, s + total));
            }
            // Make room: drop what was read, then read more.
            if self.start > 0 && self.start * 2 >= self.buf.len() {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            let read = self.io.read_buf(&mut self.buf);
            let n = match deadline {
                Some(d) => {
                    match tokio::time::timeout_at(tokio::time::Instant::from_std(d), read).await {
                        Ok(r) => r.map_err(io_failure)?,
                        Err(_) => return Err(timed_out(self.timeout)),
                    }
                }
                None => read.await.map_err(io_failure)?,
            };
            if n == 0 {
                return Err((
                    Class::Unreachable,
                    "the server closed the connection".to_string(),
                ));
            }
        }
    }
}

/// What the relay learned when it stopped: set before ldap3's side is closed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Link {
    failure: Arc<Mutex<Option<Failure>>>,
}

impl Link {
    /// Why the relay closed ldap3's side (a message too large, malformed, the server gone).
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn set(&self, f: Failure) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(f);
        }
    }
}

/// Puts a relay between ldap3 and the server: returns ldap3's end of a Unix socket pair
/// (for `LdapConnSettings::set_std_stream` with an `ldapi://` URL) and the relay's [`Link`].
/// The relay's two tasks run on the caller's runtime and end when either side closes.
pub(crate) fn relay(
    framer: Framer<Box<dyn Io>>,
) -> Result<(std::os::unix::net::UnixStream, Link), Failure> {
    if framer.has_unread() {
        return Err(malformed("unexpected data before the first request"));
    }
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(io_failure)?;
    ours.set_nonblocking(true).map_err(io_failure)?;
    let ours = tokio::net::UnixStream::from_std(ours).map_err(io_failure)?;
    let (mut our_read, mut our_write) = ours.into_split();
    let Framer {
        io, max, timeout, ..
    } = framer;
    let (server_read, mut server_write) = tokio::io::split(io);
    let mut down = Framer::new(server_read, max, timeout);
    let link = Link::default();
    let seen = link.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    // Requests: ldap3 -> server, as they are. When ldap3 closes, the other task stops too.
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut our_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
        drop(stop);
    });
    // Responses: server -> ldap3, one whole, checked message at a time. ldap3 bounds the
    // wait for each response itself (`with_timeout`), so no deadline here.
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                r = down.next(None) => r,
                _ = &mut stopped => break,
            };
            let message = next.and_then(|m| validate(down.bytes(m), max_elements(max)).map(|()| m));
            match message {
                Ok(m) => {
                    if our_write.write_all(down.bytes(m)).await.is_err() {
                        break;
                    }
                }
                Err(f) => {
                    seen.set(f);
                    break;
                }
            }
        }
        // Dropping `our_write` ends ldap3's reading: its pending operations fail at once.
    });
    Ok((theirs, link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_announced_length_fails_at_the_header() {
        let e =
            message_length(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff], 1 << 24).expect_err("too large");
        assert!(
            e.1.contains("announced a 2147483647-byte message, above MaxMessageSize (16777216)"),
            "{}",
            e.1
        );
        assert_eq!(
            message_length(&[0x30, 0x84, 0x7f], 1 << 24).expect("partial"),
            None
        );
        assert_eq!(message_length(&[0x30, 0x03], 100).expect("ok"), Some(5));
        assert!(message_length(&[0x04, 0x00], 100).is_err());
    }

    #[test]
    fn validate_refuses_inner_lengths_and_deep_nesting() {
        // The minimal bind response of message 1.
        let bind = [
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        validate(&bind, 100).expect("valid");
        assert!(
            validate(&bind, 3)
                .expect_err("too many")
                .1
                .contains("more than 3 elements")
        );
        // An octet string announcing 2 GiB inside a 10-byte message.
        let inner = [0x30, 0x08, 0x02, 0x01, 0x01, 0x04, 0x84, 0x7f, 0xff, 0xff];
        assert!(validate(&inner, 100).is_err());
        let mut deep = Vec::new();
        for i in 0..40usize {
            deep.push(0x30);
            deep.push((2 * (40 - i - 1)) as u8);
        }
        assert!(validate(&deep, 100).expect_err("deep").1.contains("nested"));
        assert!(validate(&[0x30, 0x02, 0x30, 0x80], 100).is_err());
    }
}
