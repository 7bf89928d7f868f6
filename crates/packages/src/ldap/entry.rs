//! Reading LDAP messages without panicking: search result entries, and the RFC 4533
//! content-synchronization controls and intermediate messages. Malformed input is an error
//! message, never a crash.

use ldap3::asn1::{PL, StructureTag, TagClass, parse_tag};
use ldap3::controls::Control;

/// A search result entry: its DN and raw attribute values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub dn: String,
    /// Attribute descriptions as the server wrote them, with their values.
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    /// The values of `name` (ignoring case).
    pub(crate) fn get(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The values of `name` as text.
    pub(crate) fn text(&self, name: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or_default()
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
}

fn constructed(tag: StructureTag, what: &str) -> Result<Vec<StructureTag>, String> {
    match tag.payload {
        PL::C(items) => Ok(items),
        PL::P(_) => Err(format!("malformed LDAP message: {what} is not constructed")),
    }
}

fn primitive(tag: StructureTag, what: &str) -> Result<Vec<u8>, String> {
    match tag.payload {
        PL::P(bytes) => Ok(bytes),
        PL::C(_) => Err(format!("malformed LDAP message: {what} is not primitive")),
    }
}

/// Bytes as text without copying when they are UTF-8.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Parses a SearchResultEntry (`[APPLICATION 4]`).
pub(crate) fn parse(tag: StructureTag) -> Result<RawEntry, String> {
    if tag.class != TagClass::Application || tag.id != 4 {
        return Err(format!(
            "malformed LDAP message: expected a search result entry, got tag {}",
            tag.id
        ));
    }
    let mut parts = constructed(tag, "the entry")?.into_iter();
    let dn = parts
        .next()
        .ok_or("malformed LDAP message: entry without DN")
        .and_then(|t| primitive(t, "the DN").map_err(|_| "malformed DN"))?;
    let dn = text(dn);
    let mut attrs = Vec::new();
    if let Some(list) = parts.next() {
        for a in constructed(list, "the attribute list")? {
            let mut av = constructed(a, "an attribute")?.into_iter();
            let name = match av.next() {
                Some(t) => {
                    String::from_utf8_lossy(&primitive(t, "an attribute type")?).into_owned()
                }
                None => return Err("malformed LDAP message: attribute without type".into()),
            };
            let mut values = Vec::new();
            if let Some(set) = av.next() {
                for v in constructed(set, "the values")? {
                    values.push(primitive(v, "a value")?);
                }
            }
            attrs.push((name, values));
        }
    }
    Ok(RawEntry { dn, attrs })
}

/// The state an entry has in a content synchronization (RFC 4533 syncStateValue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncState {
    Present,
    Add,
    Modify,
    Delete,
}

/// A Sync State control: state and entryUUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateControl {
    pub state: SyncState,
    pub uuid: Vec<u8>,
}

const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
const SYNC_INFO_OID: &str = "1.3.6.1.4.1.4203.1.9.1.4";

fn parse_ber(bytes: &[u8], what: &str) -> Result<StructureTag, String> {
    match parse_tag(bytes) {
        Ok((_, tag)) => Ok(tag),
        Err(_) => Err(format!("malformed {what}")),
    }
}

fn uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
}

/// The Sync State control among an entry's controls, if any.
pub(crate) fn sync_state(controls: &[Control]) -> Result<Option<StateControl>, String> {
    let Some(raw) = controls.iter().find(|c| c.1.ctype == SYNC_STATE_OID) else {
        return Ok(None);
    };
    let bytes = raw.1.val.as_deref().unwrap_or_default();
    let mut items = constructed(parse_ber(bytes, "Sync State control")?, "Sync State")?.into_iter();
    let state = match items.next().map(|t| primitive(t, "state")) {
        Some(Ok(b)) => match uint(&b) {
            0 => SyncState::Present,
            1 => SyncState::Add,
            2 => SyncState::Modify,
            3 => SyncState::Delete,
            n => return Err(format!("unknown sync state {n}")),
        },
        _ => return Err("Sync State control without state".into()),
    };
    let uuid = match items.next() {
        Some(t) => primitive(t, "entryUUID")?,
        None => return Err("Sync State control without entryUUID".into()),
    };
    Ok(Some(StateControl { state, uuid }))
}

/// A Sync Done control: the cookie, and refreshDeletes.
pub(crate) type SyncDone = (Option<Vec<u8>>, bool);

/// The Sync Done control of a search result: its cookie and refreshDeletes.
pub(crate) fn sync_done(controls: &[Control]) -> Result<Option<SyncDone>, String> {
    let Some(raw) = controls.iter().find(|c| c.1.ctype == SYNC_DONE_OID) else {
        return Ok(None);
    };
    let bytes = raw.1.val.as_deref().unwrap_or_default();
    if bytes.is_empty() {
        return Ok(Some((None, false)));
    }
    let mut cookie = None;
    let mut deletes = false;
    for t in constructed(parse_ber(bytes, "Sync Done control")?, "Sync Done")? {
        match t.id {
            4 => cookie = Some(primitive(t, "cookie")?),
            1 => {
                deletes = primitive(t, "refreshDeletes")?
                    .first()
                    .is_some_and(|b| *b != 0)
            }
            _ => {}
        }
    }
    Ok(Some((cookie, deletes)))
}

/// A Sync Info intermediate message (RFC 4533 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncInfo {
    NewCookie(Vec<u8>),
    /// End of a refresh phase: `deletes` is true for refreshDelete.
    RefreshDone {
        cookie: Option<Vec<u8>>,
        deletes: bool,
    },
    /// entryUUIDs of deleted entries (`deletes`), or of present ones.
    IdSet {
        cookie: Option<Vec<u8>>,
        deletes: bool,
        uuids: Vec<Vec<u8>>,
    },
}

/// Parses an intermediate response (`[APPLICATION 25]`); `None` if it is not a Sync Info.
pub(crate) fn sync_info(tag: StructureTag) -> Result<Option<SyncInfo>, String> {
    let mut oid = None;
    let mut value = None;
    for t in constructed(tag, "intermediate response")? {
        match t.id {
            0 => oid = Some(primitive(t, "responseName")?),
            1 => value = Some(primitive(t, "responseValue")?),
            _ => {}
        }
    }
    if oid.as_deref() != Some(SYNC_INFO_OID.as_bytes()) {
        return Ok(None);
    }
    let value = value.ok_or("Sync Info without value")?;
    let tag = parse_ber(&value, "Sync Info")?;
    let id = tag.id;
    if id == 0 {
        return Ok(Some(SyncInfo::NewCookie(primitive(tag, "newcookie")?)));
    }
    let mut cookie = None;
    // refreshDone defaults to TRUE, refreshDeletes to FALSE.
    let mut flag = None;
    let mut uuids = Vec::new();
    for t in constructed(tag, "Sync Info value")? {
        match t.id {
            4 => cookie = Some(primitive(t, "cookie")?),
            1 => flag = Some(primitive(t, "flag")?.first().is_some_and(|b| *b != 0)),
            17 => {
                for u in constructed(t, "syncUUIDs")? {
                    uuids.push(primitive(u, "syncUUID")?);
                }
            }
            _ => {}
        }
    }
    Ok(Some(match id {
        1 => SyncInfo::RefreshDone {
            cookie,
            deletes: true,
        },
        2 => SyncInfo::RefreshDone {
            cookie,
            deletes: false,
        },
        3 => SyncInfo::IdSet {
            cookie,
            deletes: flag.unwrap_or(false),
            uuids,
        },
        other => return Err(format!("unknown Sync Info choice {other}")),
    }))
}

/// The 16 bytes of an entryUUID as text (`8-4-4-4-12` hex), as the attribute shows it.
pub(crate) fn uuid_text(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if hex.len() == 32 {
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    } else {
        hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{ASNTag, OctetString, Sequence, Set, Tag};

    #[test]
    fn entries_parse_without_panics() {
        let tag = Tag::Sequence(Sequence {
            id: 4,
            class: TagClass::Application,
            inner: vec![
                Tag::OctetString(OctetString {
                    inner: b"cn=x,dc=y".to_vec(),
                    ..Default::default()
                }),
                Tag::Sequence(Sequence {
                    inner: vec![Tag::Sequence(Sequence {
                        inner: vec![
                            Tag::OctetString(OctetString {
                                inner: b"cn".to_vec(),
                                ..Default::default()
                            }),
                            Tag::Set(Set {
                                inner: vec![Tag::OctetString(OctetString {
                                    inner: b"x".to_vec(),
                                    ..Default::default()
                                })],
                                ..Default::default()
                            }),
                        ],
                        ..Default::default()
                    })],
                    ..Default::default()
                }),
            ],
        })
        .into_structure();
        let e = parse(tag).expect("entry");
        assert_eq!(e.dn, "cn=x,dc=y");
        assert_eq!(e.text("CN"), ["x"]);
        let bad = StructureTag {
            class: TagClass::Application,
            id: 4,
            payload: PL::P(vec![1, 2]),
        };
        assert!(parse(bad).is_err());
    }

    #[test]
    fn uuids_print_like_entry_uuid() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(uuid_text(&b), "00010203-0405-0607-0809-0a0b0c0d0e0f");
    }
}
