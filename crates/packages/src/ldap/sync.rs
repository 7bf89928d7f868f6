//! Incremental export for OpenLDAP.
//!
//! With syncprov (RFC 4533 content synchronization), a complete export first takes a
//! synchronization cookie (a refreshOnly search that matches nothing), then reads the entries;
//! an incremental export sends that cookie in a refreshOnly Sync Request and writes what the
//! server reports: changed entries (`Insert` when new, `Update` otherwise) and deleted ones
//! (`Delete`). The server names deleted entries by entryUUID only, so the cookie also holds
//! the entryUUID -> DN index of the exported entries: deletions and renames come out with the
//! DN the previous export wrote (a renamed entry is a `Delete` of its old DN and an `Insert`
//! of the new one).
//!
//! Without syncprov, changes are read with `(modifyTimestamp>=T)` (T: the latest
//! modifyTimestamp of the previous run: that second is read again, since an entry may have
//! changed in it after the previous run; the cookie keeps a digest of each entry exported at
//! T, and an entry read again with the same values is skipped, so a run with no change
//! yields no rows), and deletions are found by listing the DNs (no attributes) and comparing
//! them to the index.
//!
//! The cookie is JSON: `{"v":1,"mode":"syncrepl","cookie":"<base64>","index":{...}}` or
//! `{"v":1,"mode":"timestamp","since":"20240101000000Z","index":{...}}`. The engine stores it
//! only after the tables are durable. An unreadable cookie, or one whose mode the server no
//! longer supports, gives a complete export.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use ldap3::controls::{RawControl, RefreshMode, SyncRequest};

use super::conn::{RootDse, SYNC_OID, Session};
use super::entry::{self, SyncInfo, SyncState, uuid_text};
use super::export::{self, Each, Item, Layout, Search, Writer};
use super::schema::DirectorySchema;
use super::settings::{LdapSettings, TableSettings};
use crate::api::{ExportOutcome, PackageError, Progress};
use crate::output::ExportOutput;

/// What an incremental export needs besides the connection.
pub(crate) struct Context<'a> {
    pub settings: &'a LdapSettings,
    pub layout: &'a Layout,
    pub schema: &'a DirectorySchema,
    pub dse: &'a RootDse,
    pub paged: bool,
    pub progress: &'a dyn Progress,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Syncrepl,
    Timestamp,
}

/// The cookie an OpenLDAP export leaves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Cookie {
    v: u32,
    mode: Mode,
    /// The server's synchronization cookie, base64 (syncrepl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cookie: Option<String>,
    /// The latest modifyTimestamp seen (timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// entryUUID (syncrepl) or lowercased DN (timestamp) -> DN of the exported entries.
    index: HashMap<String, String>,
    /// Timestamp mode: lowercased DN -> digest of the values exported, for the entries whose
    /// modifyTimestamp is `since`. The next run reads that second again (a change later in
    /// the same second must not be lost) but skips those entries when unchanged.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    last: HashMap<String, String>,
}

impl Cookie {
    fn to_text(&self, cx: &super::conn::Cx) -> Result<String, PackageError> {
        serde_json::to_string(self).map_err(|e| cx.error("write the cookie", e.to_string(), false))
    }
}

/// Attributes to ask for: the layout's, plus `extra`.
fn attrs_with(layout: &Layout, extra: &str) -> Vec<String> {
    let mut v: Vec<String> = layout
        .requested()
        .into_iter()
        .filter(|a| a != "1.1")
        .collect();
    if !v.iter().any(|a| a.eq_ignore_ascii_case(extra)) {
        v.push(extra.to_string());
    }
    v
}

/// A filter that matches nothing, to take a cookie without reading entries.
const NOTHING: &str = "(&(objectClass=*)(!(objectClass=*)))";

/// A complete export that also returns the cookie for the next incremental one.
pub(crate) async fn complete(
    session: &mut Session,
    ctx: &Context<'_>,
    out: &mut ExportOutput,
) -> Result<ExportOutcome, PackageError> {
    complete_as(session, ctx, false, out)
        .await
        .map(|(outcome, _)| outcome)
}

/// What a complete export learns for the cookie, entry by entry.
struct Tracker {
    syncrepl: bool,
    index: HashMap<String, String>,
    since: Option<String>,
    last: HashMap<String, String>,
}

impl Tracker {
    fn track(&mut self, raw: &entry::RawEntry) {
        if self.syncrepl {
            if let Some(u) = raw.text("entryUUID").into_iter().next() {
                self.index.insert(u.to_ascii_lowercase(), raw.dn.clone());
            }
        } else {
            let key = raw.dn.to_lowercase();
            self.index.insert(key.clone(), raw.dn.clone());
            if let Some(t) = raw.text("modifyTimestamp").into_iter().next() {
                if self.since.as_ref().is_none_or(|s| t > *s) {
                    self.since = Some(t.clone());
                    self.last.clear();
                }
                if self.since.as_deref() == Some(t.as_str()) {
                    self.last.insert(key, digest(raw));
                }
            }
        }
    }
}

/// [`complete`]; with `spooled` (no mapping), every user attribute is read in one pass and
/// spooled until the columns are known, and the layout made from them is returned.
pub(crate) async fn complete_as(
    session: &mut Session,
    ctx: &Context<'_>,
    spooled: bool,
    out: &mut ExportOutput,
) -> Result<(ExportOutcome, Option<Layout>), PackageError> {
    let entries = ctx.settings.entries();
    let syncrepl = ctx.dse.supports(SYNC_OID);
    let mut start_cookie = None;
    if syncrepl {
        ctx.progress.phase("taking a synchronization cookie");
        let nothing = TableSettings {
            filter: NOTHING.to_string(),
            ..entries.clone()
        };
        let (cookie, _) = sync_search(
            session,
            ctx,
            &nothing,
            None,
            vec!["1.1".into()],
            &mut |_| Ok(()),
        )
        .await?;
        start_cookie = cookie;
    }
    ctx.progress
        .phase(&format!("reading {} ({})", entries.base_dn, entries.filter));
    let extra = if syncrepl {
        "entryUUID"
    } else {
        "modifyTimestamp"
    };
    let mut tracker = Tracker {
        syncrepl,
        index: HashMap::new(),
        since: None,
        last: HashMap::new(),
    };
    let mut made = None;
    if spooled {
        let spool = export::spool_all(session, ctx.settings, ctx.paged, &[extra]).await?;
        let names = spool
            .names()
            .into_iter()
            .filter(|n| !n.eq_ignore_ascii_case(extra))
            .collect();
        let layout = Layout::from_names(names, ctx.settings, ctx.schema);
        {
            let cx = session.cx.clone();
            let mut writer = Writer::open(&layout, ctx.schema, out, false, ctx.progress)?;
            spool.replay(&cx, &mut |raw| {
                tracker.track(&raw);
                writer.entry(raw, "", out)
            })?;
            writer.report(out);
        }
        made = Some(layout);
    } else {
        let mut writer = Writer::open(ctx.layout, ctx.schema, out, false, ctx.progress)?;
        let mut each = |item: Item| {
            let Item::Entry(raw, _) = item else {
                return Ok(());
            };
            tracker.track(&raw);
            writer.entry(raw, "", out)
        };
        export::search(
            session,
            ctx.settings,
            Search {
                table: entries,
                attrs: attrs_with(ctx.layout, extra),
                paged: ctx.paged,
                typesonly: false,
                controls: Vec::new(),
            },
            &mut each,
        )
        .await?;
        writer.report(out);
    }
    let Tracker {
        index, since, last, ..
    } = tracker;
    let cookie = if syncrepl {
        Cookie {
            v: 1,
            mode: Mode::Syncrepl,
            cookie: start_cookie.map(|c| base64::engine::general_purpose::STANDARD.encode(c)),
            since: None,
            index,
            last: HashMap::new(),
        }
    } else {
        Cookie {
            v: 1,
            mode: Mode::Timestamp,
            cookie: None,
            since: Some(since.unwrap_or_else(now)),
            index,
            last,
        }
    };
    Ok((
        ExportOutcome {
            notes: Vec::new(),
            cookie: Some(cookie.to_text(&session.cx)?),
            incremental: false,
        },
        made,
    ))
}

/// A digest of an entry's DN and values (attribute names case-insensitive, in any order):
/// FNV-1a, 64 bits, stable across versions, as hex.
fn digest(raw: &entry::RawEntry) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    fn feed(h: &mut u64, bytes: &[u8]) {
        for b in bytes {
            *h ^= u64::from(*b);
            *h = h.wrapping_mul(PRIME);
        }
        // A separator that no length-prefix-free concatenation can fake.
        *h ^= 0xff;
        *h = h.wrapping_mul(PRIME);
        for b in (bytes.len() as u64).to_le_bytes() {
            *h ^= u64::from(b);
            *h = h.wrapping_mul(PRIME);
        }
    }
    let mut attrs: Vec<(String, Vec<&Vec<u8>>)> = raw
        .attrs
        .iter()
        .map(|(n, vs)| {
            let mut vs: Vec<&Vec<u8>> = vs.iter().collect();
            vs.sort();
            (n.to_ascii_lowercase(), vs)
        })
        .collect();
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = OFFSET;
    feed(&mut h, raw.dn.as_bytes());
    for (n, vs) in attrs {
        feed(&mut h, n.as_bytes());
        for v in vs {
            feed(&mut h, v);
        }
    }
    format!("{h:016x}")
}

/// The current time as LDAP writes it.
fn now() -> String {
    chrono::Utc::now().format("%Y%m%d%H%M%SZ").to_string()
}

/// An incremental export from `cookie`; falls back to a complete export when the cookie
/// cannot be used.
pub(crate) async fn incremental(
    session: &mut Session,
    ctx: &Context<'_>,
    cookie: &str,
    out: &mut ExportOutput,
) -> Result<ExportOutcome, PackageError> {
    let parsed: Option<Cookie> = serde_json::from_str(cookie)
        .ok()
        .filter(|c: &Cookie| c.v == 1);
    let syncrepl = ctx.dse.supports(SYNC_OID);
    match parsed {
        Some(c) if c.mode == Mode::Syncrepl && syncrepl && c.cookie.is_some() => {
            incremental_sync(session, ctx, c, out).await
        }
        Some(c) if c.mode == Mode::Timestamp && !syncrepl && c.since.is_some() => {
            incremental_timestamp(session, ctx, c, out).await
        }
        _ => {
            ctx.progress
                .phase("the cookie does not match this server's synchronization: complete export");
            complete(session, ctx, out).await
        }
    }
}

/// Runs a refreshOnly content synchronization; returns the final cookie and whether the
/// server said deletions were sent explicitly (refreshDeletes).
async fn sync_search(
    session: &mut Session,
    ctx: &Context<'_>,
    table: &TableSettings,
    cookie: Option<Vec<u8>>,
    attrs: Vec<String>,
    each: &mut Each<'_>,
) -> Result<(Option<Vec<u8>>, bool), PackageError> {
    let control: RawControl = SyncRequest {
        mode: RefreshMode::RefreshOnly,
        cookie,
        reload_hint: false,
    }
    .into();
    let end = export::search(
        session,
        ctx.settings,
        Search {
            table,
            attrs,
            paged: false,
            typesonly: false,
            controls: vec![control],
        },
        each,
    )
    .await?;
    match entry::sync_done(&end.controls) {
        Ok(Some((cookie, deletes))) => Ok((cookie, deletes)),
        Ok(None) => Ok((None, true)),
        Err(m) => Err(session.cx.error("synchronize", m, false)),
    }
}

async fn incremental_sync(
    session: &mut Session,
    ctx: &Context<'_>,
    mut cookie: Cookie,
    out: &mut ExportOutput,
) -> Result<ExportOutcome, PackageError> {
    let entries = ctx.settings.entries();
    let server_cookie = cookie
        .cookie
        .as_deref()
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok());
    ctx.progress.phase(&format!(
        "synchronizing {} ({}) from the cookie",
        entries.base_dn, entries.filter
    ));
    let mut writer = Writer::open(ctx.layout, ctx.schema, out, true, ctx.progress)?;
    let index = &mut cookie.index;
    let mut present: HashSet<String> = HashSet::new();
    let mut deleted: Vec<String> = Vec::new();
    let mut latest: Option<Vec<u8>> = None;
    let mut explicit_deletes = false;
    let mut each = |item: Item| {
        let (raw, state) = match item {
            Item::Info(info) => {
                match info {
                    SyncInfo::NewCookie(c) => latest = Some(c),
                    SyncInfo::RefreshDone { cookie, deletes } => {
                        if let Some(c) = cookie {
                            latest = Some(c);
                        }
                        explicit_deletes |= deletes;
                    }
                    SyncInfo::IdSet {
                        cookie,
                        deletes,
                        uuids,
                    } => {
                        if let Some(c) = cookie {
                            latest = Some(c);
                        }
                        for u in uuids {
                            let u = uuid_text(&u);
                            if deletes {
                                deleted.push(u);
                            } else {
                                present.insert(u);
                            }
                        }
                        explicit_deletes |= deletes;
                    }
                }
                return Ok(());
            }
            Item::Entry(raw, state) => (raw, state),
        };
        let (state, uuid) = match state {
            Some(s) => (s.state, uuid_text(&s.uuid)),
            None => match raw.text("entryUUID").into_iter().next() {
                Some(u) => (SyncState::Add, u.to_ascii_lowercase()),
                None => return Ok(()),
            },
        };
        match state {
            SyncState::Present => {
                present.insert(uuid);
            }
            SyncState::Delete => deleted.push(uuid),
            SyncState::Add | SyncState::Modify => {
                let command = match index.get(&uuid) {
                    Some(old) if *old != raw.dn => {
                        writer.delete(&old.clone(), out)?;
                        "Insert"
                    }
                    Some(_) => "Update",
                    None => "Insert",
                };
                index.insert(uuid.clone(), raw.dn.clone());
                present.insert(uuid);
                writer.entry(raw, command, out)?;
            }
        }
        Ok(())
    };
    let (done_cookie, done_deletes) = sync_search(
        session,
        ctx,
        entries,
        server_cookie,
        attrs_with(ctx.layout, "entryUUID"),
        &mut each,
    )
    .await?;
    // refreshDeletes FALSE: the present phase listed every unchanged entry, the others are gone.
    if !done_deletes && !explicit_deletes {
        let gone: Vec<String> = index
            .keys()
            .filter(|u| !present.contains(*u))
            .cloned()
            .collect();
        deleted.extend(gone);
    }
    for u in deleted {
        if let Some(dn) = index.remove(&u) {
            writer.delete(&dn, out)?;
        }
    }
    writer.report(out);
    if let Some(c) = done_cookie.or(latest) {
        cookie.cookie = Some(base64::engine::general_purpose::STANDARD.encode(c));
    }
    Ok(ExportOutcome {
        notes: Vec::new(),
        cookie: Some(cookie.to_text(&session.cx)?),
        incremental: true,
    })
}

async fn incremental_timestamp(
    session: &mut Session,
    ctx: &Context<'_>,
    mut cookie: Cookie,
    out: &mut ExportOutput,
) -> Result<ExportOutcome, PackageError> {
    let entries = ctx.settings.entries();
    let since = cookie.since.clone().unwrap_or_else(now);
    let changed = TableSettings {
        filter: format!("(&{}(modifyTimestamp>={since}))", entries.filter),
        ..entries.clone()
    };
    ctx.progress.phase(&format!(
        "reading entries of {} changed since {since}",
        entries.base_dn
    ));
    let mut writer = Writer::open(ctx.layout, ctx.schema, out, true, ctx.progress)?;
    let index = &mut cookie.index;
    let before = std::mem::take(&mut cookie.last);
    let mut latest = since.clone();
    // The entries exported at `latest`, with their digests.
    let mut last = before.clone();
    let mut each = |item: Item| {
        let Item::Entry(raw, _) = item else {
            return Ok(());
        };
        let key = raw.dn.to_lowercase();
        if let Some(t) = raw.text("modifyTimestamp").into_iter().next() {
            let d = digest(&raw);
            // Read again from the previous run's last second, unchanged: already exported.
            let unchanged = t == since && before.get(&key) == Some(&d);
            if t > latest {
                latest = t.clone();
                last.clear();
            }
            if t == latest {
                last.insert(key.clone(), d);
            }
            if unchanged && index.contains_key(&key) {
                return Ok(());
            }
        }
        let command = if index.contains_key(&key) {
            "Update"
        } else {
            "Insert"
        };
        index.insert(key, raw.dn.clone());
        writer.entry(raw, command, out)
    };
    export::search(
        session,
        ctx.settings,
        Search {
            table: &changed,
            attrs: attrs_with(ctx.layout, "modifyTimestamp"),
            paged: ctx.paged,
            typesonly: false,
            controls: Vec::new(),
        },
        &mut each,
    )
    .await?;
    ctx.progress
        .phase("listing the DNs to find deleted entries");
    let mut current: HashSet<String> = HashSet::new();
    let mut list = |item: Item| {
        if let Item::Entry(raw, _) = item {
            current.insert(raw.dn.to_lowercase());
        }
        Ok(())
    };
    export::search(
        session,
        ctx.settings,
        Search {
            table: entries,
            attrs: vec!["1.1".to_string()],
            paged: ctx.paged,
            typesonly: false,
            controls: Vec::new(),
        },
        &mut list,
    )
    .await?;
    let gone: Vec<String> = index
        .keys()
        .filter(|k| !current.contains(*k))
        .cloned()
        .collect();
    for k in gone {
        last.remove(&k);
        if let Some(dn) = index.remove(&k) {
            writer.delete(&dn, out)?;
        }
    }
    writer.report(out);
    cookie.since = Some(latest);
    cookie.last = last;
    Ok(ExportOutcome {
        notes: Vec::new(),
        cookie: Some(cookie.to_text(&session.cx)?),
        incremental: true,
    })
}
