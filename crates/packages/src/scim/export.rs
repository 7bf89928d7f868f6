//! Export: each entity's resources, page by page, into `<connection>_<entity>` and (for
//! entities with members) `<connection>_members_<entity>` (`value`: the resource's id,
//! `MemberId`: the member's).
//!
//! Which entities: those `Filter` names (with their queries), and those the mappings read
//! (`<connection>_<entity>`, `<connection>_members_<entity>`); with neither, `Users` and
//! `Groups`. Which columns: `id` and the columns the mappings read, else every attribute the
//! service's schema describes (see [`super::schema`]).
//!
//! Paging: by `startIndex` and `count` (PageSize), one page at a time, or with `PagesAhead`
//! that many pages requested ahead once the first page told `totalResults` (a service that
//! caps `count` shifts them: they follow its page size); by cursor (RFC 9865) when the
//! service announces cursors and not indexes. It ends at an empty page, past `totalResults`, or (cursors) without a
//! `nextCursor`. A page repeating the previous one, a cursor given back unchanged, or more
//! resources than twice the first `totalResults` plus 1,000 fail the export instead of
//! looping: the service's paging is broken. A resource already on the previous page (an
//! insertion shifted the pages) is written once.
//!
//! Incremental (Users only, not `Usercube.SCIM.CyberArk`): the cookie is the service's time
//! when the export began (the `Date` of its first answer, else the newest
//! `meta.lastModified` read); the next run asks for `meta.lastModified gt "<cookie>"` (with
//! the entity's own filter) and writes a `Command` column (`Insert` when `meta.created` is
//! after the cookie's whole second, else `Update`). The `Date` is to the second, so resources
//! changed within the second the previous export began are read again (at least once, never
//! missed: a change made while the previous export ran, to a page it had read, is after its
//! `Date`). SCIM keeps no trace of deleted resources: deletions show at the next complete
//! export. Other entities are exported completely every time.

use std::collections::{HashSet, VecDeque};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use reqwest::Method;
use serde_json::{Map, Value};

use super::client::Client;
use super::schema::Catalog;
use super::settings::{EntityQuery, ScimSettings};
use crate::api::{Environment, ExportOutcome, ExportRequest, PackageError, Progress};
use crate::output::{ExportOutput, TableId, multivalued_cell};

const OPERATION: &str = "export";

/// How the service pages, from its `/ServiceProviderConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paging {
    #[default]
    Index,
    Cursor,
}

/// What to export of one entity.
#[derive(Debug, Clone)]
pub struct EntityPlan {
    /// The table suffix (`Users`).
    pub suffix: String,
    /// The endpoint (`Users`).
    pub endpoint: String,
    pub params: Vec<(String, String)>,
    pub columns: Vec<String>,
    /// Write `<connection>_members_<suffix>`.
    pub members: bool,
    /// The one entity an incremental run reads incrementally (Users).
    pub incremental: bool,
}

/// Decides the entities and their columns.
pub fn plan(
    settings: &ScimSettings,
    env: &Environment,
    catalog: &Catalog,
    incremental_package: bool,
) -> Result<Vec<EntityPlan>, PackageError> {
    // Entities: Filter's, then the mappings', else Users and Groups.
    let mut wanted: Vec<EntityQuery> = settings.queries.clone();
    let mut mapped_entity: Vec<(String, Option<Vec<String>>, bool)> = Vec::new();
    for t in &env.mapped_tables {
        let Some(suffix) = &t.suffix else { continue };
        let (entity, members) = match suffix.strip_prefix("members_") {
            Some(e) => (e.to_string(), true),
            None => (suffix.clone(), false),
        };
        if entity.is_empty() {
            continue;
        }
        let slot = match mapped_entity
            .iter_mut()
            .position(|(e, _, _)| e.eq_ignore_ascii_case(&entity))
        {
            Some(i) => i,
            None => {
                mapped_entity.push((entity.clone(), None, false));
                mapped_entity.len() - 1
            }
        };
        if members {
            mapped_entity[slot].2 = true;
        } else {
            mapped_entity[slot].0 = entity.clone();
            mapped_entity[slot].1 = Some(t.columns.clone());
        }
    }
    for (e, _, _) in &mapped_entity {
        if !wanted.iter().any(|q| q.entity.eq_ignore_ascii_case(e)) {
            wanted.push(EntityQuery {
                entity: e.clone(),
                params: Vec::new(),
            });
        }
    }
    if wanted.is_empty() {
        for e in ["Users", "Groups"] {
            wanted.push(EntityQuery {
                entity: e.to_string(),
                params: Vec::new(),
            });
        }
    }
    let mapped_any = !mapped_entity.is_empty();
    let mut plans = Vec::new();
    for q in wanted {
        let mapping = mapped_entity
            .iter()
            .find(|(e, _, _)| e.eq_ignore_ascii_case(&q.entity));
        let suffix = mapping.map_or_else(|| q.entity.clone(), |(e, _, _)| e.clone());
        let rt = catalog.resource_type(&q.entity);
        let endpoint = rt.map_or_else(|| q.entity.clone(), |t| t.endpoint.clone());
        let members = match mapping {
            Some((_, _, m)) => *m,
            None if mapped_any => false,
            None => rt.is_some_and(|t| catalog.has_members(t)),
        };
        let columns = match mapping.and_then(|(_, c, _)| c.as_ref()) {
            Some(cols) => {
                let mut out = vec!["id".to_string()];
                for c in cols {
                    if !out.iter().any(|o| o == c) && !c.eq_ignore_ascii_case("Command") {
                        out.push(c.clone());
                    }
                }
                out
            }
            None => match rt.and_then(|t| catalog.columns(t, members)) {
                Some(cols) => cols.into_iter().map(|c| c.name).collect(),
                None if members && mapping.is_some() => vec!["id".to_string()],
                None => {
                    return Err(PackageError::Data {
                        location: format!("connection '{}'", env.connection),
                        message: format!(
                            "cannot tell the columns of {}_{suffix}: the service describes no schema for {} (/ResourceTypes and /Schemas) and no entity type mapping reads that table; map the columns you need",
                            env.connection, q.entity
                        ),
                    });
                }
            },
        };
        plans.push(EntityPlan {
            incremental: incremental_package && endpoint.eq_ignore_ascii_case("Users"),
            suffix,
            endpoint,
            params: q.params,
            columns,
            members,
        });
    }
    Ok(plans)
}

/// One page of a listing.
#[derive(Debug)]
struct Page {
    total: Option<u64>,
    resources: Vec<Value>,
    next_cursor: Option<String>,
    date: Option<String>,
}

/// Lists an endpoint and hands each resource over.
struct Lister<'a> {
    client: &'a Client,
    endpoint: &'a str,
    params: Vec<(String, String)>,
    page_size: u32,
    paging: Paging,
    ahead: usize,
}

/// What a listing saw.
#[derive(Debug, Default)]
struct Listed {
    /// The `Date` of the first answer.
    first_date: Option<String>,
}

impl Lister<'_> {
    fn url(&self, position: Position<'_>) -> reqwest::Url {
        let count = self.page_size.to_string();
        let start;
        let mut query: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match position {
            Position::Index(i) => {
                start = i.to_string();
                query.push(("startIndex", &start));
            }
            Position::Cursor(c) => query.push(("cursor", c)),
        }
        query.push(("count", &count));
        self.client.url(&[self.endpoint], &query)
    }

    async fn fetch(&self, position: Position<'_>) -> Result<Page, PackageError> {
        let url = self.url(position);
        let (value, reply) = self.client.json(Method::GET, &url, None, OPERATION).await?;
        let Value::Object(mut o) = value else {
            return Err(self
                .client
                .cx
                .data(&reply.request, "the answer is not a ListResponse object"));
        };
        let key =
            |o: &Map<String, Value>, k: &str| o.keys().find(|x| x.eq_ignore_ascii_case(k)).cloned();
        let resources = match key(&o, "Resources").and_then(|k| o.remove(&k)) {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(self
                    .client
                    .cx
                    .data(&reply.request, "Resources is not an array"));
            }
        };
        let total = key(&o, "totalResults")
            .and_then(|k| o.get(&k))
            .and_then(Value::as_u64);
        let next_cursor = key(&o, "nextCursor")
            .and_then(|k| o.get(&k))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        Ok(Page {
            total,
            resources,
            next_cursor,
            date: reply.date,
        })
    }

    /// Reads every page, calling `each` on each resource (in the service's order).
    async fn run(&self, each: &mut Each<'_>) -> Result<Listed, PackageError> {
        let mut guard = Guard::default();
        let first = match self.paging {
            Paging::Index => self.fetch(Position::Index(1)).await?,
            Paging::Cursor => self.fetch(Position::Cursor("")).await?,
        };
        let listed = Listed {
            first_date: first.date.clone(),
        };
        let first_total = first.total;
        let first_len = first.resources.len() as u64;
        let first_cursor = first.next_cursor.clone();
        guard.page(self, &first, "the first page")?;
        deliver(&first, &guard, each)?;
        guard.remember(&first);
        if first_len == 0 {
            return Ok(listed);
        }
        match self.paging {
            Paging::Cursor => {
                let mut cursor = first_cursor;
                while let Some(c) = cursor.take() {
                    let page = self.fetch(Position::Cursor(&c)).await?;
                    guard.page(self, &page, &format!("cursor {c}"))?;
                    if page.next_cursor.as_deref() == Some(c.as_str()) {
                        return Err(self.broken(format!(
                            "the service gave back the same nextCursor ({c}) for it"
                        )));
                    }
                    deliver(&page, &guard, each)?;
                    guard.remember(&page);
                    if page.resources.is_empty() {
                        break;
                    }
                    cursor = page.next_cursor.clone();
                }
            }
            Paging::Index => {
                // A page shorter than asked while more remain: the service caps count.
                let step = match first_total {
                    Some(t) if first_len < u64::from(self.page_size) && t > first_len => first_len,
                    _ => u64::from(self.page_size),
                };
                let mut next = 1 + first_len;
                let mut inflight = FuturesOrdered::new();
                let mut planned: VecDeque<u64> = VecDeque::new();
                loop {
                    let total = guard.latest.or(first_total);
                    if total.is_some_and(|t| next > t) {
                        break;
                    }
                    // Without totalResults, one page at a time until a short page.
                    let ahead = if total.is_some() { self.ahead } else { 1 };
                    while planned.len() < ahead {
                        let start = planned.back().map_or(next, |s| s + step);
                        if planned.back().is_some() && total.is_some_and(|t| start > t) {
                            break;
                        }
                        planned.push_back(start);
                        inflight.push_back(async move {
                            (start, self.fetch(Position::Index(start)).await)
                        });
                    }
                    let Some((start, page)) = inflight.next().await else {
                        break;
                    };
                    planned.pop_front();
                    let page = page?;
                    debug_assert_eq!(start, next);
                    guard.page(self, &page, &format!("startIndex={start}"))?;
                    deliver(&page, &guard, each)?;
                    guard.remember(&page);
                    let n = page.resources.len() as u64;
                    if n == 0 || (total.is_none() && n < u64::from(self.page_size)) {
                        break;
                    }
                    next = start + n;
                    if n != step {
                        // The pages read ahead start at the wrong place: drop them.
                        inflight = FuturesOrdered::new();
                        planned.clear();
                    }
                }
            }
        }
        Ok(listed)
    }

    fn broken(&self, what: String) -> PackageError {
        self.client.cx.error(
            OPERATION,
            format!(
                "listing {}: {what}; its paging is broken, so the export stops instead of reading forever",
                self.endpoint
            ),
            false,
        )
    }
}

/// What a listing calls on each resource.
type Each<'a> = dyn FnMut(&Map<String, Value>) -> Result<(), PackageError> + Send + 'a;

#[derive(Debug, Clone, Copy)]
enum Position<'a> {
    Index(u64),
    Cursor(&'a str),
}

/// What stops a listing that would not end.
#[derive(Debug, Default)]
struct Guard {
    /// The ids of the previous page, in order.
    previous: Vec<String>,
    previous_set: HashSet<String>,
    /// The first page's totalResults (the bound on what a listing may read).
    total: Option<u64>,
    /// The last page's totalResults (where the listing ends: resources created meanwhile
    /// are read too).
    latest: Option<u64>,
    read: u64,
}

impl Guard {
    fn page(&mut self, lister: &Lister<'_>, page: &Page, at: &str) -> Result<(), PackageError> {
        if self.total.is_none() && self.read == 0 {
            self.total = page.total;
        }
        if page.total.is_some() {
            self.latest = page.total;
        }
        let ids: Vec<String> = page.resources.iter().map(id_of).collect();
        if !ids.is_empty() && ids == self.previous {
            return Err(lister.broken(format!(
                "the page at {at} repeats the previous one ({} resources, from id {})",
                ids.len(),
                ids[0]
            )));
        }
        self.read += ids.len() as u64;
        if let Some(t) = self.total
            && self.read > t.saturating_mul(2) + 1000
        {
            return Err(lister.broken(format!(
                "{} resources were read though the first page announced totalResults {t}",
                self.read
            )));
        }
        Ok(())
    }

    fn remember(&mut self, page: &Page) {
        self.previous = page.resources.iter().map(id_of).collect();
        self.previous_set = self.previous.iter().cloned().collect();
    }
}

fn id_of(v: &Value) -> String {
    v.get("id")
        .and_then(|i| match i {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Hands a page's resources over, but for those already on the previous page.
fn deliver(page: &Page, guard: &Guard, each: &mut Each<'_>) -> Result<(), PackageError> {
    for r in &page.resources {
        let Value::Object(o) = r else { continue };
        let id = id_of(r);
        if !id.is_empty() && guard.previous_set.contains(&id) {
            continue;
        }
        each(o)?;
    }
    Ok(())
}

/// Runs the export.
pub async fn run(
    client: &Client,
    settings: &ScimSettings,
    env: &Environment,
    incremental_package: bool,
    request: &ExportRequest<'_>,
    out: &mut ExportOutput,
) -> Result<ExportOutcome, PackageError> {
    let progress = request.progress;
    progress.phase(&format!(
        "reading the service's configuration at {}",
        client.cx.system
    ));
    let (paging, catalog) = tokio::join!(paging(client), Catalog::read(client, OPERATION));
    let paging = paging?;
    let catalog = match catalog {
        Ok(c) => c,
        // A service that does not describe itself: the mappings must name the columns.
        Err(
            PackageError::System {
                retryable: false, ..
            }
            | PackageError::Data { .. },
        ) => Catalog::fallback(),
        Err(e) => return Err(e),
    };
    let plans = plan(settings, env, &catalog, incremental_package)?;
    let since = match (request.incremental, request.cookie) {
        (true, Some(c)) if incremental_package => parse_cookie(c),
        _ => None,
    };
    let mut cookie: Option<String> = None;
    let mut incremental_run = false;
    for p in &plans {
        let inc = if p.incremental { since.as_ref() } else { None };
        let mut header = p.columns.clone();
        if inc.is_some() {
            header.push("Command".to_string());
            incremental_run = true;
        }
        let table = out.create(Some(&p.suffix), &header)?;
        let members = if p.members {
            Some(out.create(
                Some(&format!("members_{}", p.suffix)),
                &["value", "MemberId"],
            )?)
        } else {
            None
        };
        let mut params = p.params.clone();
        if let Some((text, _)) = inc {
            let changed = format!("meta.lastModified gt \"{text}\"");
            match params
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case("filter"))
            {
                Some((_, f)) => *f = format!("({f}) and {changed}"),
                None => params.push(("filter".to_string(), changed)),
            }
        }
        progress.phase(&format!(
            "reading {}{}",
            p.endpoint,
            if inc.is_some() { " (changes only)" } else { "" }
        ));
        let lister = Lister {
            client,
            endpoint: &p.endpoint,
            params,
            page_size: settings.page_size,
            paging,
            ahead: settings.pages_ahead + 1,
        };
        let paths: Vec<Path> = p.columns.iter().map(|c| Path::parse(c)).collect();
        let mut cells: Vec<String> = Vec::with_capacity(header.len());
        let mut newest: Option<String> = None;
        let mut counted = (0u64, 0u64);
        let name = out.name(table).to_string();
        let mut each = |r: &Map<String, Value>| -> Result<(), PackageError> {
            cells.clear();
            for path in &paths {
                cells.push(path.cell(r));
            }
            if let Some((_, at)) = inc {
                // Created after the cookie's whole second: surely not in the previous export.
                // Within that second it may have been: Update (the engine's upsert) is safe.
                let created = meta_time(r, "created");
                let insert = created.is_some_and(|c| c >= *at + chrono::Duration::seconds(1));
                cells.push(if insert { "Insert" } else { "Update" }.to_string());
            }
            out.write(table, &cells)?;
            counted.0 += 1;
            if p.incremental
                && let Some(m) = meta_text(r, "lastModified")
                && newest.as_deref().is_none_or(|n| later(m, n))
            {
                newest = Some(m.to_string());
            }
            if let Some(mt) = members {
                let id = id_of(&Value::Object(r.clone()));
                if let Some(Value::Array(list)) = get_ci(r, "members") {
                    for m in list {
                        let value = match m {
                            Value::Object(o) => get_ci(o, "value").and_then(scalar),
                            other => scalar(other),
                        };
                        if let Some(v) = value {
                            out.write(mt, [id.as_str(), v.as_str()])?;
                            counted.1 += 1;
                        }
                    }
                }
            }
            if counted.0.is_multiple_of(1000) {
                progress.rows(&name, 1000);
            }
            Ok(())
        };
        let listed = lister.run(&mut each).await?;
        progress.rows(&name, counted.0 % 1000);
        if p.incremental {
            // The service's clock when the listing began; else the newest change read.
            cookie = listed
                .first_date
                .as_deref()
                .and_then(http_date)
                .or(newest)
                .or_else(|| request.cookie.map(str::to_string));
        }
    }
    Ok(ExportOutcome {
        notes: Vec::new(),
        cookie: if incremental_package { cookie } else { None },
        incremental: incremental_run,
    })
}

/// How the service pages (index unless it announces cursors and not indexes, or cursors as
/// its default).
pub async fn paging(client: &Client) -> Result<Paging, PackageError> {
    let url = client.url(&["ServiceProviderConfig"], &[]);
    let reply = client.send(Method::GET, &url, None, OPERATION).await?;
    if !reply.ok() {
        // Credentials refused or the service down: say so now, before reading anything.
        if reply.status == 401 || reply.status >= 500 {
            return Err(client.status_error(&reply, OPERATION));
        }
        return Ok(Paging::Index);
    }
    let value = client.parse(&reply)?;
    Ok(paging_of(&value))
}

/// The paging a `/ServiceProviderConfig` announces.
pub fn paging_of(config: &Value) -> Paging {
    let Some(p) = config.get("pagination") else {
        return Paging::Index;
    };
    let flag = |k: &str| p.get(k).and_then(Value::as_bool);
    let default = p
        .get("defaultPaginationMethod")
        .and_then(Value::as_str)
        .unwrap_or("");
    match (flag("cursor"), flag("index")) {
        (Some(true), Some(false)) => Paging::Cursor,
        (Some(true), _) if default.eq_ignore_ascii_case("cursor") => Paging::Cursor,
        _ => Paging::Index,
    }
}

/// A column's place in a resource: `attr`, `attr:sub`, or `<extension URN>:attr[:sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    Core {
        attr: String,
        sub: Option<String>,
    },
    /// The URN is found among the resource's keys (`urn:...:User:manager:value`).
    Urn(String),
}

impl Path {
    pub fn parse(column: &str) -> Path {
        if column.len() > 4 && column[..4].eq_ignore_ascii_case("urn:") {
            return Path::Urn(column.to_string());
        }
        match column.split_once(':') {
            Some((a, s)) => Path::Core {
                attr: a.to_string(),
                sub: Some(s.to_string()),
            },
            None => Path::Core {
                attr: column.to_string(),
                sub: None,
            },
        }
    }

    /// The cell of this column for a resource.
    pub fn cell(&self, r: &Map<String, Value>) -> String {
        match self {
            Path::Core { attr, sub } => cell(get_ci(r, attr), sub.as_deref()),
            Path::Urn(full) => {
                for (k, v) in r {
                    if let Value::Object(ext) = v
                        && full.len() > k.len() + 1
                        && full[..k.len()].eq_ignore_ascii_case(k)
                        && full.as_bytes()[k.len()] == b':'
                    {
                        let rest = &full[k.len() + 1..];
                        let (attr, sub) = match rest.split_once(':') {
                            Some((a, s)) => (a, Some(s)),
                            None => (rest, None),
                        };
                        return cell(get_ci(ext, attr), sub);
                    }
                }
                String::new()
            }
        }
    }
}

/// A key of a resource, compared as SCIM does (case-insensitively).
pub fn get_ci<'v>(o: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A scalar's text (`None` for null; objects and arrays as compact JSON).
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

fn cell(v: Option<&Value>, sub: Option<&str>) -> String {
    let Some(v) = v else {
        return String::new();
    };
    match (v, sub) {
        (Value::Array(items), sub) => {
            let mut values: Vec<String> = Vec::with_capacity(items.len());
            for i in items {
                let x = match (i, sub) {
                    (Value::Object(o), Some(s)) => get_ci(o, s),
                    (Value::Object(o), None) => get_ci(o, "value").or(Some(i)),
                    (other, None) => Some(other),
                    (_, Some(_)) => None,
                };
                match x {
                    Some(Value::Array(inner)) => values.extend(inner.iter().filter_map(scalar)),
                    Some(x) => values.extend(scalar(x)),
                    None => {}
                }
            }
            if values.len() == 1 {
                values.pop().unwrap_or_default()
            } else {
                multivalued_cell(&mut values)
            }
        }
        (Value::Object(o), Some(s)) => cell(get_ci(o, s), None),
        (Value::Object(o), None) => match get_ci(o, "value") {
            Some(x) => scalar(x).unwrap_or_default(),
            None => v.to_string(),
        },
        (_, Some(_)) => String::new(),
        (x, None) => scalar(x).unwrap_or_default(),
    }
}

fn meta_text<'v>(r: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
    match get_ci(r, "meta")? {
        Value::Object(m) => get_ci(m, key)?.as_str(),
        _ => None,
    }
}

fn meta_time(r: &Map<String, Value>, key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    parse_time(meta_text(r, key)?)
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Whether timestamp `a` is after `b` (as times when both parse, else as text).
fn later(a: &str, b: &str) -> bool {
    match (parse_time(a), parse_time(b)) {
        (Some(x), Some(y)) => x > y,
        _ => a > b,
    }
}

/// A cookie: the RFC 3339 time the previous export began at (as the service's clock told).
/// Anything else is ignored (a complete export runs).
pub fn parse_cookie(c: &str) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
    let t = parse_time(c)?;
    Some((c.trim().to_string(), t))
}

/// An HTTP `Date` as RFC 3339 (UTC, seconds).
fn http_date(d: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc2822(d.trim()).ok()?;
    Some(
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    )
}

#[allow(dead_code)]
fn _assert_progress_is_object_safe(_: &dyn Progress, _: TableId) {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resource() -> Map<String, Value> {
        match json!({
            "id": "u1",
            "userName": "ada",
            "Active": true,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "b@x.org", "type": "home"}, {"value": "a@x.org", "type": "work"}],
            "x509Certificates": [],
            "nickName": null,
            "roles": ["b", "A"],
            "meta": {"created": "2024-01-01T00:00:00Z", "lastModified": "2024-02-01T00:00:00Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": 42, "manager": {"value": "m1", "displayName": "Boss"}}
        }) {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn cells_follow_the_column_names() {
        let r = resource();
        let cell = |c: &str| Path::parse(c).cell(&r);
        assert_eq!(cell("userName"), "ada");
        assert_eq!(cell("active"), "true");
        assert_eq!(cell("name:givenName"), "Ada");
        assert_eq!(cell("emails:value"), "a@x.org\nb@x.org");
        assert_eq!(cell("emails"), "a@x.org\nb@x.org");
        assert_eq!(cell("x509Certificates:value"), "");
        assert_eq!(cell("nickName"), "");
        assert_eq!(cell("roles"), "A\nb");
        assert_eq!(cell("meta:lastModified"), "2024-02-01T00:00:00Z");
        assert_eq!(cell("missing"), "");
        assert_eq!(
            cell("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"),
            "42"
        );
        assert_eq!(
            cell("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager:value"),
            "m1"
        );
        assert_eq!(
            cell("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"),
            "m1"
        );
        assert_eq!(
            cell("name"),
            r#"{"familyName":"Lovelace","givenName":"Ada"}"#
        );
    }

    #[test]
    fn cookies_are_times_and_dates_become_cookies() {
        assert_eq!(
            http_date("Mon, 30 Nov 2026 12:10:40 GMT").as_deref(),
            Some("2026-11-30T12:10:40Z")
        );
        assert!(parse_cookie("2026-11-30T12:10:40Z").is_some());
        assert!(parse_cookie("garbage").is_none());
        assert!(later("2024-01-01T00:00:01Z", "2024-01-01T00:00:00.5Z"));
        assert!(!later("2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00Z"));
    }

    #[test]
    fn paging_follows_the_announcement() {
        assert_eq!(paging_of(&json!({})), Paging::Index);
        assert_eq!(
            paging_of(&json!({"pagination": {"cursor": true, "index": false}})),
            Paging::Cursor
        );
        assert_eq!(
            paging_of(&json!({"pagination": {"cursor": true, "index": true}})),
            Paging::Index
        );
        assert_eq!(
            paging_of(
                &json!({"pagination": {"cursor": true, "index": true, "defaultPaginationMethod": "cursor"}})
            ),
            Paging::Cursor
        );
    }
}
