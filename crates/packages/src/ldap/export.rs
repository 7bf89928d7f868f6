//! Export: directory entries -> `<connection>_entries` and one link table per link attribute,
//! written as the entries arrive (paged when `PagedResult` is on, so memory stays flat).

// Seeded (not SipHash): attribute names come from the server, so the seed keeps collisions
// out of its reach, and hashing stays cheap on the hot path.
use foldhash::HashMap;

use base64::Engine as _;
use ldap3::{LdapResult, SearchOptions};

use super::bulk;
use super::conn::{Cx, Session, describe_result, retryable};
use super::entry::{self, RawEntry, StateControl, SyncInfo};
use super::schema::DirectorySchema;
use super::settings::{LdapSettings, Scope, TableSettings};
use crate::api::{MappedTable, PackageError, Progress};
#[cfg(doc)]
use crate::output::multivalued_cell;
use crate::output::{ExportOutput, TableId};

/// Progress is reported every this many entries.
const PROGRESS_EVERY: u64 = 10_000;

/// Where an attribute goes: a column of the entries table, a link table, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    entry: Option<usize>,
    link: Option<usize>,
}

/// The tables an export writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Columns of `<connection>_entries` after `dn`.
    pub entries: Vec<String>,
    /// Link attributes read by the `entries` search: tables `<connection>_<attribute>`.
    pub links: Vec<String>,
    /// Link attributes with their own `Tables` element (their own search).
    pub own_links: Vec<String>,
    index: HashMap<String, Slot>,
}

fn sort_names(names: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    names.sort_by(|a, b| {
        a.to_ascii_lowercase()
            .cmp(&b.to_ascii_lowercase())
            .then_with(|| a.cmp(b))
    });
}

impl Layout {
    fn new(mut entries: Vec<String>, mut links: Vec<String>, mut own_links: Vec<String>) -> Self {
        sort_names(&mut entries);
        sort_names(&mut links);
        sort_names(&mut own_links);
        let mut index: HashMap<String, Slot> = HashMap::default();
        for (i, e) in entries.iter().enumerate() {
            index.entry(e.to_ascii_lowercase()).or_default().entry = Some(i);
        }
        for (i, l) in links.iter().enumerate() {
            index.entry(l.to_ascii_lowercase()).or_default().link = Some(i);
        }
        Layout {
            entries,
            links,
            own_links,
            index,
        }
    }

    /// What the configuration maps: the columns read from `<connection>_entries`, and the
    /// mapped link tables `<connection>_<attribute>`.
    pub(crate) fn from_mapping(
        mapped: &[MappedTable],
        settings: &LdapSettings,
        schema: &DirectorySchema,
    ) -> Option<Self> {
        let entries_table = mapped.iter().find(|t| {
            t.suffix
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("entries"))
        })?;
        let entries: Vec<String> = entries_table
            .columns
            .iter()
            .filter(|c| !c.eq_ignore_ascii_case("dn") && !c.eq_ignore_ascii_case("Command"))
            .cloned()
            .collect();
        let mut links = Vec::new();
        let mut own = Vec::new();
        for t in mapped {
            let Some(s) = t.suffix.as_deref() else {
                continue;
            };
            if s.eq_ignore_ascii_case("entries") {
                continue;
            }
            if settings.tables[1..]
                .iter()
                .any(|x| x.table.eq_ignore_ascii_case(s))
            {
                own.push(s.to_string());
            } else if schema.is_link(s) {
                links.push(s.to_string());
            }
        }
        Some(Layout::new(entries, links, own))
    }

    /// Every attribute found by a first pass (`names`): link attributes as tables, the others
    /// as columns; plus the tables named in `Tables`.
    pub(crate) fn from_names(
        names: Vec<String>,
        settings: &LdapSettings,
        schema: &DirectorySchema,
    ) -> Self {
        let own: Vec<String> = settings.tables[1..]
            .iter()
            .map(|t| t.table.clone())
            .collect();
        let mut entries = Vec::new();
        let mut links = Vec::new();
        for n in names {
            if own.iter().any(|o| o.eq_ignore_ascii_case(&n)) {
                continue;
            }
            let n = schema.canonical(&n).to_string();
            if schema.is_link(&n) {
                links.push(n);
            } else {
                entries.push(n);
            }
        }
        Layout::new(entries, links, own)
    }

    /// The attributes the `entries` search asks for.
    pub(crate) fn requested(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.iter().chain(&self.links).cloned().collect();
        if v.is_empty() {
            // "1.1": no attributes, only DNs (RFC 4511).
            v.push("1.1".to_string());
        }
        v
    }
}

/// Writes entries to the tables of a layout, with a `Command` column when incremental.
///
/// Built for speed: values move from the parsed entry into reused buffers, rows are written as
/// byte records, and nothing is allocated per cell but multi-valued joins and base64.
pub(crate) struct Writer<'a> {
    layout: &'a Layout,
    /// Lowercased attribute -> (where it goes, binary).
    slots: HashMap<String, (Slot, bool)>,
    entries: TableId,
    links: Vec<TableId>,
    incremental: bool,
    cells: Vec<Vec<Vec<u8>>>,
    link_values: Vec<Vec<Vec<u8>>>,
    record: csv::ByteRecord,
    joined: Vec<u8>,
    key: String,
    /// Entries written.
    pub written: u64,
    reported: Vec<u64>,
    progress: &'a dyn Progress,
}

impl<'a> Writer<'a> {
    /// Opens the entries table and the link tables the `entries` search fills.
    pub(crate) fn open(
        layout: &'a Layout,
        schema: &'a DirectorySchema,
        out: &mut ExportOutput,
        incremental: bool,
        progress: &'a dyn Progress,
    ) -> Result<Self, PackageError> {
        let mut header: Vec<&str> = Vec::with_capacity(layout.entries.len() + 2);
        header.push("dn");
        header.extend(layout.entries.iter().map(String::as_str));
        if incremental {
            header.push("Command");
        }
        let entries = out.create(Some("entries"), &header)?;
        let mut links = Vec::new();
        for l in &layout.links {
            links.push(open_link(out, l, incremental)?);
        }
        let slots = layout
            .index
            .iter()
            .map(|(k, slot)| (k.clone(), (*slot, schema.is_binary(k))))
            .collect();
        Ok(Writer {
            layout,
            slots,
            entries,
            incremental,
            cells: vec![Vec::new(); layout.entries.len()],
            link_values: vec![Vec::new(); layout.links.len()],
            record: csv::ByteRecord::new(),
            joined: Vec::new(),
            key: String::new(),
            written: 0,
            reported: vec![0; links.len() + 1],
            links,
            progress,
        })
    }

    /// Writes one entry (`command`: `Insert` or `Update` when incremental). In incremental
    /// mode, each link table first gets a `Delete` row with an empty value (the entry's links
    /// are replaced), then one `Insert` row per value.
    pub(crate) fn entry(
        &mut self,
        e: RawEntry,
        command: &str,
        out: &mut ExportOutput,
    ) -> Result<(), PackageError> {
        for (name, values) in e.attrs {
            self.key.clear();
            self.key.push_str(&name);
            self.key.make_ascii_lowercase();
            let Some(&(slot, binary)) = self.slots.get(self.key.as_str()) else {
                continue;
            };
            for v in values {
                let v = cell_bytes(v, binary);
                match (slot.entry, slot.link) {
                    (Some(i), Some(l)) => {
                        self.link_values[l].push(v.clone());
                        self.cells[i].push(v);
                    }
                    (Some(i), None) => self.cells[i].push(v),
                    (None, Some(l)) => self.link_values[l].push(v),
                    (None, None) => {}
                }
            }
        }
        self.record.clear();
        self.record.push_field(e.dn.as_bytes());
        for values in &mut self.cells {
            match values.len() {
                0 => self.record.push_field(b""),
                1 => self.record.push_field(&values[0]),
                _ => {
                    sort_bytes(values);
                    self.joined.clear();
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            self.joined.push(b'\n');
                        }
                        self.joined.extend_from_slice(v);
                    }
                    self.record.push_field(&self.joined);
                }
            }
            values.clear();
        }
        if self.incremental {
            self.record.push_field(command.as_bytes());
        }
        out.write_byte_record(self.entries, &self.record)?;
        for (values, &table) in self.link_values.iter_mut().zip(&self.links) {
            sort_bytes(values);
            if self.incremental {
                out.write(table, [e.dn.as_str(), "", "Delete"])?;
            }
            for v in values.iter() {
                self.record.clear();
                self.record.push_field(e.dn.as_bytes());
                self.record.push_field(v);
                if self.incremental {
                    self.record.push_field(b"Insert");
                }
                out.write_byte_record(table, &self.record)?;
            }
            values.clear();
        }
        self.count(out);
        Ok(())
    }

    /// A deleted entry (incremental only): a `Delete` row in every table.
    pub(crate) fn delete(&mut self, dn: &str, out: &mut ExportOutput) -> Result<(), PackageError> {
        self.record.clear();
        self.record.push_field(dn.as_bytes());
        for _ in 0..self.layout.entries.len() {
            self.record.push_field(b"");
        }
        self.record.push_field(b"Delete");
        out.write_byte_record(self.entries, &self.record)?;
        for &t in &self.links {
            out.write(t, [dn, "", "Delete"])?;
        }
        self.count(out);
        Ok(())
    }

    fn count(&mut self, out: &ExportOutput) {
        self.written += 1;
        if self.written.is_multiple_of(PROGRESS_EVERY) {
            self.report(out);
        }
    }

    /// Reports the rows written since the last report.
    pub(crate) fn report(&mut self, out: &ExportOutput) {
        let tables: Vec<TableId> = std::iter::once(self.entries)
            .chain(self.links.iter().copied())
            .collect();
        for (t, done) in tables.iter().zip(self.reported.iter_mut()) {
            let rows = out.rows(*t);
            if rows > *done {
                self.progress.rows(out.name(*t), rows - *done);
                *done = rows;
            }
        }
    }
}

/// A value as cell bytes: as is when it is text, base64 when binary (by syntax, or not UTF-8).
fn cell_bytes(v: Vec<u8>, binary: bool) -> Vec<u8> {
    if !binary && std::str::from_utf8(&v).is_ok() {
        return v;
    }
    base64::engine::general_purpose::STANDARD
        .encode(&v)
        .into_bytes()
}

/// Case-insensitive order (then byte order), as [`multivalued_cell`] sorts; exact duplicates
/// dropped.
fn sort_bytes(values: &mut Vec<Vec<u8>>) {
    if values.len() < 2 {
        return;
    }
    values.sort_by(|a, b| {
        let la = String::from_utf8_lossy(a).to_lowercase();
        let lb = String::from_utf8_lossy(b).to_lowercase();
        la.cmp(&lb).then_with(|| a.cmp(b))
    });
    values.dedup();
}

/// Opens `<connection>_<attribute>` with `dn`, `<attribute>` (and `Command`).
pub(crate) fn open_link(
    out: &mut ExportOutput,
    attribute: &str,
    incremental: bool,
) -> Result<TableId, PackageError> {
    if incremental {
        out.create(Some(attribute), &["dn", attribute, "Command"])
    } else {
        out.create(Some(attribute), &["dn", attribute])
    }
}

/// What a search hands over: an entry (with its Sync State control, in a content
/// synchronization), or a Sync Info message.
#[derive(Debug)]
pub(crate) enum Item {
    Entry(RawEntry, Option<StateControl>),
    Info(SyncInfo),
}

/// How a search ended.
#[derive(Debug, Default)]
pub(crate) struct SearchEnd {
    /// Search result references skipped (referrals are not followed).
    pub referrals: u64,
    /// Controls of the final result (Sync Done, ...).
    pub controls: Vec<ldap3::controls::Control>,
}

/// One search to run.
pub(crate) struct Search<'a> {
    pub table: &'a TableSettings,
    pub attrs: Vec<String>,
    pub paged: bool,
    pub typesonly: bool,
    /// Request controls (e.g. Sync Request); not combined with paging.
    pub controls: Vec<ldap3::controls::RawControl>,
}

pub(crate) fn scope(s: Scope) -> ldap3::Scope {
    match s {
        Scope::Base => ldap3::Scope::Base,
        Scope::OneLevel => ldap3::Scope::OneLevel,
        Scope::Subtree => ldap3::Scope::Subtree,
    }
}

/// The callback a search hands its items to.
pub(crate) type Each<'a> = dyn FnMut(Item) -> Result<(), PackageError> + Send + 'a;

/// Runs a search, handing each entry (and Sync Info message) to `each` as it arrives. Plain
/// searches go through the bulk reader; searches with request controls through ldap3. Fails on
/// any result but success, with a message that says what to change.
pub(crate) async fn search(
    session: &mut Session,
    settings: &LdapSettings,
    s: Search<'_>,
    each: &mut Each<'_>,
) -> Result<SearchEnd, PackageError> {
    let op = "search";
    let cx = session.cx.clone();
    if s.controls.is_empty() {
        let req = bulk::Request {
            base: &s.table.base_dn,
            scope: scope(s.table.scope) as i64,
            filter: &s.table.filter,
            attrs: &s.attrs,
            size_limit: settings.size_limit,
            time_limit: settings.time_limit,
            typesonly: s.typesonly,
            page: s.paged.then_some(settings.page_size),
        };
        let reader = session.bulk().await?;
        let mut wrap = |raw: RawEntry| each(Item::Entry(raw, None));
        let done = match reader.search(&req, &mut wrap).await {
            Err((class, m)) => return Err(cx.error(op, m, retryable(class))),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(done)) => done,
        };
        let result = LdapResult {
            rc: done.rc,
            matched: done.matched,
            text: done.text,
            refs: done.refs,
            ctrls: Vec::new(),
        };
        check(&cx, settings, &s, &result, done.entries)?;
        return Ok(SearchEnd {
            referrals: done.referrals,
            controls: Vec::new(),
        });
    }
    let mut opts = SearchOptions::new()
        .sizelimit(settings.size_limit)
        .timelimit(settings.time_limit);
    if s.typesonly {
        opts = opts.typesonly(true);
    }
    let ldap = session.handle();
    ldap.with_search_options(opts);
    ldap.with_controls(s.controls.clone());
    let base = s.table.base_dn.clone();
    let filter = s.table.filter.clone();
    let attrs = s.attrs.clone();
    let mut stream = ldap
        .streaming_search(&base, scope(s.table.scope), &filter, attrs)
        .await
        .map_err(|e| cx.ldap(op, e))?;
    let mut end = SearchEnd::default();
    let mut entries = 0u64;
    loop {
        let e = match stream.next().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                let _ = stream.finish().await;
                return Err(cx.ldap(op, e));
            }
        };
        if e.is_ref() {
            end.referrals += 1;
            continue;
        }
        if e.is_intermediate() {
            match entry::sync_info(e.0) {
                Ok(Some(info)) => each(Item::Info(info))?,
                Ok(None) => {}
                Err(m) => return Err(cx.error(op, m, false)),
            }
            continue;
        }
        let state = entry::sync_state(&e.1).map_err(|m| cx.error(op, m, false))?;
        let raw = entry::parse(e.0).map_err(|m| cx.error(op, m, false))?;
        entries += 1;
        each(Item::Entry(raw, state))?;
    }
    let res = stream.finish().await;
    end.controls = res.ctrls.clone();
    check(&cx, settings, &s, &res, entries)?;
    Ok(end)
}

/// Success, or an error that says what to change.
fn check(
    cx: &Cx,
    settings: &LdapSettings,
    s: &Search<'_>,
    res: &LdapResult,
    entries: u64,
) -> Result<(), PackageError> {
    let op = "search";
    let table = &s.table.table;
    let base = &s.table.base_dn;
    match res.rc {
        0 => Ok(()),
        4 if !s.paged => Err(cx.error(
            op,
            format!(
                "size limit exceeded after {entries} entries of table '{table}' ({}): enable PagedResult in the server's Controls (\"Controls\": [\"PagedResult\"]) so that the directory returns every entry page by page{}",
                describe_result(res),
                if settings.size_limit > 0 {
                    format!(", and raise SizeLimit ({}; 0: no limit)", settings.size_limit)
                } else {
                    String::new()
                }
            ),
            false,
        )),
        4 => Err(cx.error(
            op,
            format!(
                "size limit exceeded after {entries} entries of table '{table}' ({}): raise SizeLimit ({}; 0: no limit) or the server's limits for this Login",
                describe_result(res),
                settings.size_limit
            ),
            false,
        )),
        3 => Err(cx.error(
            op,
            format!(
                "time limit exceeded after {entries} entries of table '{table}' ({}): raise TimeLimit ({} s; 0: no limit)",
                describe_result(res),
                settings.time_limit
            ),
            true,
        )),
        10 => Err(cx.error(
            op,
            format!(
                "BaseDN '{base}' of table '{table}' is held by another server (referral to {}); referrals are not followed: list that server in Servers",
                res.refs.join(", ")
            ),
            false,
        )),
        32 => Err(cx.error(
            op,
            format!(
                "BaseDN '{base}' of table '{table}' does not exist ({})",
                describe_result(res)
            ),
            false,
        )),
        _ => Err(cx.error(
            op,
            format!("table '{table}': {}", describe_result(res)),
            matches!(res.rc, 51 | 52),
        )),
    }
}

/// The first pass without a mapping: the names of the attributes the `entries` entries have
/// (values not transferred).
pub(crate) async fn scan_names(
    session: &mut Session,
    settings: &LdapSettings,
    paged: bool,
) -> Result<Vec<String>, PackageError> {
    let mut seen: HashMap<String, String> = HashMap::default();
    let mut each = |item: Item| {
        if let Item::Entry(raw, _) = item {
            for (name, _) in raw.attrs {
                seen.entry(name.to_ascii_lowercase()).or_insert(name);
            }
        }
        Ok(())
    };
    search(
        session,
        settings,
        Search {
            table: settings.entries(),
            attrs: vec!["*".to_string()],
            paged,
            typesonly: true,
            controls: Vec::new(),
        },
        &mut each,
    )
    .await?;
    Ok(seen.into_values().collect())
}

/// The entries of a search without a mapping, kept in an unnamed temporary file while the
/// attribute names are collected, so that the directory is read once: the tables' columns
/// are known only at the end. Memory stays flat (buffered I/O); the file is unlinked from
/// its creation, so nothing is left behind whatever happens.
pub(crate) struct Spool {
    file: std::io::BufWriter<std::fs::File>,
    /// Lowercased name -> the name as first seen.
    names: HashMap<String, String>,
    entries: u64,
}

fn put_len(w: &mut impl std::io::Write, n: usize) -> std::io::Result<()> {
    let n = u32::try_from(n).map_err(|_| std::io::Error::other("value above 4 GiB"))?;
    w.write_all(&n.to_le_bytes())
}

fn put_bytes(w: &mut impl std::io::Write, b: &[u8]) -> std::io::Result<()> {
    put_len(w, b.len())?;
    w.write_all(b)
}

fn get_len(r: &mut impl std::io::Read) -> std::io::Result<usize> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b) as usize)
}

fn get_bytes(r: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let n = get_len(r)?;
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

impl Spool {
    pub(crate) fn new() -> std::io::Result<Spool> {
        Ok(Spool {
            file: std::io::BufWriter::with_capacity(256 * 1024, tempfile::tempfile()?),
            names: HashMap::default(),
            entries: 0,
        })
    }

    /// Keeps an entry, and the names of its attributes.
    pub(crate) fn push(&mut self, raw: &RawEntry) -> std::io::Result<()> {
        let w = &mut self.file;
        put_bytes(w, raw.dn.as_bytes())?;
        put_len(w, raw.attrs.len())?;
        for (name, values) in &raw.attrs {
            if !self.names.contains_key(name.as_str()) {
                let key = name.to_ascii_lowercase();
                self.names.entry(key).or_insert_with(|| name.clone());
            }
            put_bytes(w, name.as_bytes())?;
            put_len(w, values.len())?;
            for v in values {
                put_bytes(w, v)?;
            }
        }
        self.entries += 1;
        Ok(())
    }

    /// The attribute names found.
    pub(crate) fn names(&self) -> Vec<String> {
        self.names.values().cloned().collect()
    }

    /// Hands every entry kept, in order, to `each`.
    pub(crate) fn replay(
        self,
        cx: &Cx,
        each: &mut dyn FnMut(RawEntry) -> Result<(), PackageError>,
    ) -> Result<(), PackageError> {
        use std::io::{Seek, SeekFrom};
        let fail = |e: std::io::Error| {
            cx.error(
                "read the entries back",
                format!(
                    "the temporary spool file (in {}) failed: {e}",
                    std::env::temp_dir().display()
                ),
                false,
            )
        };
        let mut file = self.file.into_inner().map_err(|e| fail(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(fail)?;
        let mut r = std::io::BufReader::with_capacity(256 * 1024, file);
        for _ in 0..self.entries {
            let dn = text_of(get_bytes(&mut r).map_err(fail)?);
            let n = get_len(&mut r).map_err(fail)?;
            let mut attrs = Vec::with_capacity(n);
            for _ in 0..n {
                let name = text_of(get_bytes(&mut r).map_err(fail)?);
                let count = get_len(&mut r).map_err(fail)?;
                let mut values = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    values.push(get_bytes(&mut r).map_err(fail)?);
                }
                attrs.push((name, values));
            }
            each(RawEntry { dn, attrs })?;
        }
        Ok(())
    }
}

fn text_of(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Without a mapping: reads the `entries` entries once (every user attribute), spooling them
/// while their attribute names are collected; returns the spool.
pub(crate) async fn spool_all(
    session: &mut Session,
    settings: &LdapSettings,
    paged: bool,
    extra: &[&str],
) -> Result<Spool, PackageError> {
    let cx = session.cx.clone();
    let spool_error = |e: std::io::Error| {
        cx.error(
            "spool the entries",
            format!(
                "cannot write the temporary spool file in {}: {e}",
                std::env::temp_dir().display()
            ),
            false,
        )
    };
    let mut spool = Spool::new().map_err(spool_error)?;
    let mut each = |item: Item| {
        if let Item::Entry(raw, _) = item {
            spool.push(&raw).map_err(spool_error)?;
        }
        Ok(())
    };
    search(
        session,
        settings,
        Search {
            table: settings.entries(),
            attrs: std::iter::once("*")
                .chain(extra.iter().copied())
                .map(str::to_string)
                .collect(),
            paged,
            typesonly: false,
            controls: Vec::new(),
        },
        &mut each,
    )
    .await?;
    Ok(spool)
}

/// Writes the tables of `Tables` elements other than `entries`: one search each, reading only
/// that attribute.
pub(crate) async fn own_links(
    session: &mut Session,
    settings: &LdapSettings,
    layout: &Layout,
    paged: bool,
    out: &mut ExportOutput,
) -> Result<(), PackageError> {
    for name in &layout.own_links {
        let Some(table) = settings.tables[1..]
            .iter()
            .find(|t| t.table.eq_ignore_ascii_case(name))
        else {
            continue;
        };
        let id = open_link(out, &table.table, false)?;
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut each = |item: Item| {
            let Item::Entry(raw, _) = item else {
                return Ok(());
            };
            values.clear();
            for (n, vs) in raw.attrs {
                if n.eq_ignore_ascii_case(&table.table) {
                    values.extend(vs.into_iter().map(|v| cell_bytes(v, false)));
                }
            }
            sort_bytes(&mut values);
            for v in &values {
                out.write(id, [raw.dn.as_bytes(), v.as_slice()])?;
            }
            Ok(())
        };
        search(
            session,
            settings,
            Search {
                table,
                attrs: vec![table.table.clone()],
                paged,
                typesonly: false,
                controls: Vec::new(),
            },
            &mut each,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_gives_back_every_entry_in_order() {
        let mut spool = Spool::new().expect("spool");
        let a = RawEntry {
            dn: "cn=Zoë,dc=x".into(),
            attrs: vec![
                ("cn".into(), vec![b"Zo\xc3\xab".to_vec()]),
                ("jpegPhoto".into(), vec![vec![0xff, 0xd8, 0, 1]]),
            ],
        };
        let b = RawEntry {
            dn: "cn=b,dc=x".into(),
            attrs: vec![("CN".into(), vec![b"b".to_vec(), b"B".to_vec()])],
        };
        spool.push(&a).expect("push");
        spool.push(&b).expect("push");
        let mut names = spool.names();
        names.sort();
        assert_eq!(names, ["cn", "jpegPhoto"]);
        let cx = Cx::for_tests();
        let mut back = Vec::new();
        spool
            .replay(&cx, &mut |e| {
                back.push(e);
                Ok(())
            })
            .expect("replay");
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].dn, a.dn);
        assert_eq!(back[0].attrs, a.attrs);
        assert_eq!(back[1].attrs, b.attrs);
    }

    #[test]
    fn binary_and_invalid_utf8_values_are_base64() {
        assert_eq!(cell_bytes(b"abc".to_vec(), false), b"abc");
        assert_eq!(cell_bytes(vec![0xff, 0xd8], false), b"/9g=");
        assert_eq!(cell_bytes(b"abc".to_vec(), true), b"YWJj");
    }

    #[test]
    fn values_sort_case_insensitively_without_duplicates() {
        let mut v: Vec<Vec<u8>> = ["b", "A", "a", "C", "b"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        sort_bytes(&mut v);
        assert_eq!(
            v,
            [b"A".to_vec(), b"a".to_vec(), b"b".to_vec(), b"C".to_vec()]
        );
    }
}
