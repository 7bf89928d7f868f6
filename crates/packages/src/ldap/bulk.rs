//! The bulk reader: one connection that only binds and runs (paged) searches, decoding each
//! message in place from its read buffer.
//!
//! Why not ldap3 for this: its decoder builds a tree of allocated tags for every message and
//! clones it before handing it over, which made a 100,000-entry export cost twice the CPU of
//! `ldapsearch`. Exports read everything through this reader; ldap3 still does the rest (root
//! DSE, subschema, content synchronization, fulfill). Requests are built with ldap3's BER types
//! and its filter parser, so only the reading of responses is written here.

use std::sync::Arc;
use std::time::Duration;

use ldap3::asn1::{
    ASNTag, Boolean, Enumerated, Integer, OctetString, PL, Sequence, StructureTag, Tag, TagClass,
};
use tokio::io::AsyncWriteExt;

use super::conn::{Class, describe_code, tls_config, tls_message};
use super::entry::RawEntry;
use super::settings::{Auth, ServerSettings, Tls};
use super::wire::{Failure, Framer, Io, bounded, malformed, max_elements, validate};
use crate::api::Environment;

/// RFC 2696 paged results.
const PAGED_OID: &str = "1.2.840.113556.1.4.319";
/// RFC 4511 StartTLS.
const STARTTLS_OID: &str = "1.3.6.1.4.1.1466.20037";

/// A bound connection for searches.
pub(crate) struct Bulk {
    wire: Framer<Box<dyn Io>>,
    next_id: i32,
    /// See [`max_elements`].
    max_elements: usize,
}

impl std::fmt::Debug for Bulk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulk")
            .field("next_id", &self.next_id)
            .finish()
    }
}

/// The end of a search (all pages).
#[derive(Debug, Default)]
pub(crate) struct Done {
    pub rc: u32,
    pub matched: String,
    pub text: String,
    pub refs: Vec<String>,
    /// Search result references skipped.
    pub referrals: u64,
    pub entries: u64,
}

/// One search.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub base: &'a str,
    /// 0 base, 1 one level, 2 subtree.
    pub scope: i64,
    pub filter: &'a str,
    pub attrs: &'a [String],
    pub size_limit: i32,
    pub time_limit: i32,
    pub typesonly: bool,
    /// Page size when paged.
    pub page: Option<i32>,
}

impl Bulk {
    /// Connects (TCP, then LDAPS or StartTLS as set) and binds.
    pub(crate) async fn open(
        server: &ServerSettings,
        timeout: Option<Duration>,
        max_message: usize,
        env: &Environment,
    ) -> Result<Bulk, Failure> {
        let mut bulk = Bulk::connect(server, timeout, max_message, env).await?;
        bulk.bind(server).await?;
        Ok(bulk)
    }

    /// The transport (TCP, then LDAPS or StartTLS as set), not bound: for the relay in
    /// front of ldap3 (see `wire.rs`).
    pub(crate) async fn transport(
        server: &ServerSettings,
        timeout: Option<Duration>,
        max_message: usize,
        env: &Environment,
    ) -> Result<Framer<Box<dyn Io>>, Failure> {
        Ok(Bulk::connect(server, timeout, max_message, env).await?.wire)
    }

    async fn connect(
        server: &ServerSettings,
        timeout: Option<Duration>,
        max_message: usize,
        env: &Environment,
    ) -> Result<Bulk, Failure> {
        let addr = (server.host.as_str(), server.port);
        let tcp = bounded(timeout, tokio::net::TcpStream::connect(addr)).await?;
        let _ = tcp.set_nodelay(true);
        let mut bulk = Bulk {
            wire: Framer::new(Box::new(tcp), max_message, timeout),
            next_id: 1,
            max_elements: max_elements(max_message),
        };
        if server.tls == Tls::StartTls {
            let req = Tag::Sequence(Sequence {
                id: 23,
                class: TagClass::Application,
                inner: vec![Tag::OctetString(OctetString {
                    id: 0,
                    class: TagClass::Context,
                    inner: STARTTLS_OID.as_bytes().to_vec(),
                })],
            });
            let id = bulk.send(req, None).await?;
            let (rc, _, text) = bulk.simple_response(id, 0x78).await?;
            if rc != 0 {
                return Err((
                    Class::Tls,
                    tls_message(&format!(
                        "the server refused StartTLS ({})",
                        describe_code(rc, &text)
                    )),
                ));
            }
        }
        if server.tls != Tls::None {
            let config = tls_config(server, env).map_err(|m| (Class::Tls, tls_message(&m)))?;
            let name = rustls::pki_types::ServerName::try_from(server.host.clone())
                .map_err(|e| (Class::Tls, tls_message(&format!("server name: {e}"))))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
            if bulk.wire.has_unread() {
                return Err(malformed("data before the TLS handshake"));
            }
            // The plain stream is taken back to wrap it; nothing is buffered at this point.
            let io = std::mem::replace(&mut bulk.wire.io, Box::new(tokio::io::duplex(1).0));
            let tls = bounded(timeout, connector.connect(name, io))
                .await
                .map_err(|(class, m)| match class {
                    // A plain LDAP port hangs up on a TLS hello.
                    Class::Unreachable if !m.starts_with("no complete response") => (
                        Class::Tls,
                        tls_message(&format!(
                            "the handshake failed ({m}); is this port serving {}?",
                            if server.tls == Tls::Ldaps {
                                "LDAPS"
                            } else {
                                "StartTLS"
                            }
                        )),
                    ),
                    _ => (class, m),
                })?;
            bulk.wire.io = Box::new(tls);
        }
        Ok(bulk)
    }

    /// The simple bind of `Login` (nothing when anonymous).
    async fn bind(&mut self, server: &ServerSettings) -> Result<(), Failure> {
        let bulk = self;
        if let Auth::Basic { login, password } = &server.auth {
            let req = Tag::Sequence(Sequence {
                id: 0,
                class: TagClass::Application,
                inner: vec![
                    Tag::Integer(Integer {
                        inner: 3,
                        ..Default::default()
                    }),
                    Tag::OctetString(OctetString {
                        inner: login.expose_secret().as_bytes().to_vec(),
                        ..Default::default()
                    }),
                    Tag::OctetString(OctetString {
                        id: 0,
                        class: TagClass::Context,
                        inner: password.expose_secret().as_bytes().to_vec(),
                    }),
                ],
            });
            let id = bulk.send(req, None).await?;
            let (rc, _, text) = bulk.simple_response(id, 0x61).await?;
            match rc {
                0 => {}
                49 => {
                    return Err((
                        Class::BadCredentials,
                        "bad credentials: the server refused the bind (result code 49, invalidCredentials); check Login and Password".to_string(),
                    ));
                }
                _ => return Err((Class::Refused, describe_code(rc, &text))),
            }
        }
        Ok(())
    }

    /// Sends an LDAP message with `op` and optional controls; returns its message ID.
    async fn send(&mut self, op: Tag, controls: Option<Tag>) -> Result<i32, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let mut inner = vec![
            Tag::Integer(Integer {
                inner: i64::from(id),
                ..Default::default()
            }),
            op,
        ];
        if let Some(c) = controls {
            inner.push(c);
        }
        let msg = Tag::Sequence(Sequence {
            inner,
            ..Default::default()
        })
        .into_structure();
        let mut bytes = Vec::new();
        encode(&msg, &mut bytes);
        let timeout = self.wire.timeout;
        bounded(timeout, self.wire.io.write_all(&bytes)).await?;
        bounded(timeout, self.wire.io.flush()).await?;
        Ok(id)
    }

    /// Reads the response to `id` with protocol op tag `op`: result code, matched DN, text.
    async fn simple_response(&mut self, id: i32, op: u8) -> Result<(u32, String, String), Failure> {
        // Messages of other IDs do not extend the wait.
        let deadline = self.wire.deadline();
        loop {
            let m = self.wire.next(deadline).await?;
            let msg = Message::parse(self.wire.bytes(m))?;
            if msg.id != id {
                continue;
            }
            validate(self.wire.bytes(m), self.max_elements)?;
            if msg.op_tag != op {
                return Err(malformed("unexpected response"));
            }
            let r = ResultFields::parse(msg.op)?;
            return Ok((r.rc, r.matched, r.text));
        }
    }

    /// Runs a search (page after page when paged), handing each entry to `each`.
    pub(crate) async fn search(
        &mut self,
        req: &Request<'_>,
        each: &mut (dyn FnMut(RawEntry) -> Result<(), crate::api::PackageError> + Send),
    ) -> Result<Result<Done, crate::api::PackageError>, Failure> {
        let filter = ldap3::parse_filter(req.filter).map_err(|_| {
            (
                Class::Other,
                "the filter is not an LDAP search filter (RFC 4515)".to_string(),
            )
        })?;
        let mut cookie: Vec<u8> = Vec::new();
        // Every cookie the server gave: one given twice would page forever.
        let mut cookies_seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let mut done = Done::default();
        loop {
            let op = Tag::Sequence(Sequence {
                id: 3,
                class: TagClass::Application,
                inner: vec![
                    Tag::OctetString(OctetString {
                        inner: req.base.as_bytes().to_vec(),
                        ..Default::default()
                    }),
                    Tag::Enumerated(Enumerated {
                        inner: req.scope,
                        ..Default::default()
                    }),
                    Tag::Enumerated(Enumerated {
                        inner: 0,
                        ..Default::default()
                    }),
                    Tag::Integer(Integer {
                        inner: i64::from(req.size_limit),
                        ..Default::default()
                    }),
                    Tag::Integer(Integer {
                        inner: i64::from(req.time_limit),
                        ..Default::default()
                    }),
                    Tag::Boolean(Boolean {
                        inner: req.typesonly,
                        ..Default::default()
                    }),
                    filter.clone(),
                    Tag::Sequence(Sequence {
                        inner: req
                            .attrs
                            .iter()
                            .map(|a| {
                                Tag::OctetString(OctetString {
                                    inner: a.as_bytes().to_vec(),
                                    ..Default::default()
                                })
                            })
                            .collect(),
                        ..Default::default()
                    }),
                ],
            });
            let controls = req.page.map(|size| paged_control(size, &cookie));
            let id = self.send(op, controls).await?;
            cookie.clear();
            // TimeOut bounds the wait for each whole response message of this search.
            let mut deadline = self.wire.deadline();
            loop {
                let m = self.wire.next(deadline).await?;
                let msg = Message::parse(self.wire.bytes(m))?;
                if msg.id != id {
                    continue;
                }
                validate(self.wire.bytes(m), self.max_elements)?;
                match msg.op_tag {
                    0x64 => {
                        let entry = parse_entry(msg.op)?;
                        done.entries += 1;
                        if let Err(e) = each(entry) {
                            return Ok(Err(e));
                        }
                        deadline = self.wire.deadline();
                    }
                    0x73 => {
                        done.referrals += 1;
                        deadline = self.wire.deadline();
                    }
                    0x65 => {
                        let r = ResultFields::parse(msg.op)?;
                        done.rc = r.rc;
                        done.matched = r.matched;
                        done.text = r.text;
                        done.refs = r.refs;
                        if let Some(c) = msg.controls {
                            cookie = paged_cookie(c)?;
                        }
                        break;
                    }
                    _ => {}
                }
            }
            if done.rc != 0 || req.page.is_none() || cookie.is_empty() {
                return Ok(Ok(done));
            }
            if !cookies_seen.insert(cookie.clone()) {
                return Err((
                    Class::Malformed,
                    format!(
                        "the server gave a paged-results cookie it had already given (after {} entries): following it would read the same pages forever",
                        done.entries
                    ),
                ));
            }
        }
    }

    /// Says goodbye (unbind); errors do not matter any more.
    pub(crate) async fn close(mut self) {
        let unbind = Tag::Null(ldap3::asn1::Null {
            id: 2,
            class: TagClass::Application,
            inner: (),
        });
        let _ = self.send(unbind, None).await;
        let _ = self.wire.io.shutdown().await;
    }
}

/// The Paged Results request control (`[0]` controls of the message).
fn paged_control(size: i32, cookie: &[u8]) -> Tag {
    let value = Tag::Sequence(Sequence {
        inner: vec![
            Tag::Integer(Integer {
                inner: i64::from(size),
                ..Default::default()
            }),
            Tag::OctetString(OctetString {
                inner: cookie.to_vec(),
                ..Default::default()
            }),
        ],
        ..Default::default()
    })
    .into_structure();
    let mut bytes = Vec::new();
    encode(&value, &mut bytes);
    Tag::Sequence(Sequence {
        id: 0,
        class: TagClass::Context,
        inner: vec![Tag::Sequence(Sequence {
            inner: vec![
                Tag::OctetString(OctetString {
                    inner: PAGED_OID.as_bytes().to_vec(),
                    ..Default::default()
                }),
                Tag::OctetString(OctetString {
                    inner: bytes,
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })],
    })
}

/// BER encoding of a tag tree (definite lengths; LDAP tags are all below 31).
fn encode(tag: &StructureTag, out: &mut Vec<u8>) {
    let class = match tag.class {
        TagClass::Universal => 0x00,
        TagClass::Application => 0x40,
        TagClass::Context => 0x80,
        TagClass::Private => 0xc0,
    };
    let id = (tag.id & 0x1f) as u8;
    match &tag.payload {
        PL::P(bytes) => {
            out.push(class | id);
            push_len(out, bytes.len());
            out.extend_from_slice(bytes);
        }
        PL::C(children) => {
            let mut inner = Vec::new();
            for c in children {
                encode(c, &mut inner);
            }
            out.push(class | 0x20 | id);
            push_len(out, inner.len());
            out.extend_from_slice(&inner);
        }
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A cursor over BER elements.
struct Ber<'a> {
    data: &'a [u8],
}

impl<'a> Ber<'a> {
    fn new(data: &'a [u8]) -> Self {
        Ber { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next element: tag byte and value.
    fn next(&mut self) -> Result<(u8, &'a [u8]), Failure> {
        let d = self.data;
        if d.len() < 2 {
            return Err(malformed("truncated element"));
        }
        let tag = d[0];
        let first = d[1] as usize;
        let (len, head) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 || d.len() < 2 + n {
                return Err(malformed("element length"));
            }
            (
                d[2..2 + n]
                    .iter()
                    .fold(0usize, |acc, x| (acc << 8) | *x as usize),
                2 + n,
            )
        };
        if d.len() < head + len {
            return Err(malformed("truncated element"));
        }
        self.data = &d[head + len..];
        Ok((tag, &d[head..head + len]))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], Failure> {
        match self.next()? {
            (t, v) if t == tag => Ok(v),
            _ => Err(malformed(what)),
        }
    }
}

fn uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
}

/// An LDAP message: ID, protocol op (tag and value), controls.
struct Message<'a> {
    id: i32,
    op_tag: u8,
    op: &'a [u8],
    controls: Option<&'a [u8]>,
}

impl<'a> Message<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, Failure> {
        let mut outer = Ber::new(bytes);
        let body = outer.expect(0x30, "message")?;
        let mut m = Ber::new(body);
        let id = m.expect(0x02, "message ID")?;
        let (op_tag, op) = m.next()?;
        let mut controls = None;
        if !m.is_empty() {
            let (t, v) = m.next()?;
            if t == 0xa0 {
                controls = Some(v);
            }
        }
        Ok(Message {
            id: uint(id) as i32,
            op_tag,
            op,
            controls,
        })
    }
}

/// The LDAPResult fields of a response.
struct ResultFields {
    rc: u32,
    matched: String,
    text: String,
    refs: Vec<String>,
}

impl ResultFields {
    fn parse(op: &[u8]) -> Result<Self, Failure> {
        let mut b = Ber::new(op);
        let rc = uint(b.expect(0x0a, "result code")?) as u32;
        let matched = String::from_utf8_lossy(b.expect(0x04, "matched DN")?).into_owned();
        let text = String::from_utf8_lossy(b.expect(0x04, "diagnostic message")?).into_owned();
        let mut refs = Vec::new();
        while !b.is_empty() {
            let (t, v) = b.next()?;
            if t == 0xa3 {
                let mut urls = Ber::new(v);
                while !urls.is_empty() {
                    let (_, u) = urls.next()?;
                    refs.push(String::from_utf8_lossy(u).into_owned());
                }
            }
        }
        Ok(ResultFields {
            rc,
            matched,
            text,
            refs,
        })
    }
}

/// A SearchResultEntry's DN and attributes (values copied out of the read buffer).
fn parse_entry(op: &[u8]) -> Result<RawEntry, Failure> {
    let mut b = Ber::new(op);
    let dn = b.expect(0x04, "entry DN")?;
    let mut entry = RawEntry {
        dn: text(dn),
        attrs: Vec::new(),
    };
    if b.is_empty() {
        return Ok(entry);
    }
    let mut attrs = Ber::new(b.expect(0x30, "attribute list")?);
    while !attrs.is_empty() {
        let mut a = Ber::new(attrs.expect(0x30, "attribute")?);
        let name = text(a.expect(0x04, "attribute type")?);
        let mut values = Vec::new();
        if !a.is_empty() {
            let mut set = Ber::new(a.expect(0x31, "attribute values")?);
            while !set.is_empty() {
                values.push(set.expect(0x04, "value")?.to_vec());
            }
        }
        entry.attrs.push((name, values));
    }
    Ok(entry)
}

fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The cookie of the Paged Results control among a response's controls (empty: last page).
fn paged_cookie(controls: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut list = Ber::new(controls);
    while !list.is_empty() {
        let mut c = Ber::new(list.expect(0x30, "control")?);
        let oid = c.expect(0x04, "control type")?;
        if oid != PAGED_OID.as_bytes() {
            continue;
        }
        while !c.is_empty() {
            let (t, v) = c.next()?;
            if t == 0x04 {
                let mut value = Ber::new(v);
                let mut seq = Ber::new(value.expect(0x30, "paged results value")?);
                seq.expect(0x02, "paged results size")?;
                return Ok(seq.expect(0x04, "paged results cookie")?.to_vec());
            }
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::wire::message_length;

    #[test]
    fn lengths_and_elements_round_trip() {
        let tag = Tag::Sequence(Sequence {
            inner: vec![
                Tag::Integer(Integer {
                    inner: 7,
                    ..Default::default()
                }),
                Tag::OctetString(OctetString {
                    inner: vec![b'x'; 300],
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })
        .into_structure();
        let mut bytes = Vec::new();
        encode(&tag, &mut bytes);
        let max = 1 << 20;
        assert_eq!(
            message_length(&bytes, max).expect("length"),
            Some(bytes.len())
        );
        assert_eq!(message_length(&bytes[..3], max).expect("partial"), None);
        crate::ldap::wire::validate(&bytes, 100).expect("well formed");
        let mut b = Ber::new(&bytes);
        let mut inner = Ber::new(b.expect(0x30, "seq").expect("seq"));
        assert_eq!(uint(inner.expect(0x02, "int").expect("int")), 7);
        assert_eq!(inner.expect(0x04, "str").expect("str").len(), 300);
        assert!(inner.is_empty());
        assert!(Ber::new(&[0x04, 0x05, 1]).next().is_err());
    }
}
