//! `idlink sync` and `idlink resources`: the identity store's side. They parse arguments, call
//! the engine or the store and print.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use idlink_engine::sync::{SyncMode, SyncOptions, SyncReport};
use idlink_engine::{CancellationToken, EngineError};
use idlink_store::Store;
use tokio::runtime::Runtime;

use crate::Global;
use crate::connection::{CliProgress, cancel_on_signals, engine, failure};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The connector whose exported tables (<work>/ExportOutput) to synchronize.
    #[arg(long, value_name = "ID")]
    connector: String,
    /// initial: a plain load without thresholds (the first run); complete: the tables are the
    /// whole system (rows absent are deleted); incremental: the tables hold changes only.
    #[arg(long, value_enum, default_value_t = Mode::Complete)]
    mode: Mode,
    /// Run even when a threshold is exceeded (the report still lists them).
    #[arg(long)]
    force: bool,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Initial,
    Complete,
    Incremental,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ResourcesArgs {
    /// The entity type whose resources to list.
    #[arg(long, value_name = "ID")]
    entity_type: String,
    /// Only resources whose property equals the value (repeat to combine).
    #[arg(long = "where", value_name = "PROP=VALUE")]
    filters: Vec<String>,
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    format: ListFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ListFormat {
    Text,
    Json,
    Csv,
}

pub fn sync(rt: &Runtime, g: &Global, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let engine = match engine(g)? {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let location = crate::store::location(g)?;
    let store = match rt.block_on(Store::open(&location)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let cancel = CancellationToken::new();
    cancel_on_signals(rt, &cancel);
    let progress = Arc::new(CliProgress::new(g.quiet));
    let options = SyncOptions {
        mode: match args.mode {
            Mode::Initial => SyncMode::Initial,
            Mode::Complete => SyncMode::Complete,
            Mode::Incremental => SyncMode::Incremental,
        },
        force: args.force,
    };
    let result = rt.block_on(engine.sync(&store, &args.connector, &options, &*progress, &cancel));
    progress.finish();
    rt.block_on(store.close());
    let mut out = std::io::stdout().lock();
    match result {
        Ok(report) => {
            match args.format {
                ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
                ReportFormat::Text => print_report(&mut out, &report, g)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(EngineError::Blocked(report)) => {
            if let ReportFormat::Json = args.format {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            }
            eprintln!("error: {}", EngineError::Blocked(report));
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!(
                "error: synchronization of connector '{}' failed: {e}",
                args.connector
            );
            Ok(failure(&e))
        }
    }
}

fn print_report(out: &mut impl Write, r: &SyncReport, g: &Global) -> std::io::Result<()> {
    if !g.quiet {
        writeln!(
            out,
            "{:<28} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "mapping", "rows", "inserted", "updated", "deleted", "unchanged", "set aside"
        )?;
        for m in &r.mappings {
            let c = &m.counts;
            writeln!(
                out,
                "{:<28} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                m.entity_type,
                c.rows,
                c.inserted,
                c.updated,
                c.deleted,
                c.unchanged,
                c.set_aside()
            )?;
            for b in &m.bad_values {
                writeln!(
                    out,
                    "  {}.csv:{}: column '{}': {}",
                    b.table, b.line, b.column, b.message
                )?;
            }
        }
        for a in &r.associations {
            let c = &a.counts;
            write!(
                out,
                "{:<28} links: {} added, {} removed",
                a.association, c.added, c.removed
            )?;
            if c.unresolved > 0 {
                write!(out, ", {} naming no resource", c.unresolved)?;
            }
            writeln!(out)?;
        }
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    for b in &r.exceeded {
        eprintln!("warning: forced past a threshold: {b}");
    }
    let (ins, upd, del) = r.mappings.iter().fold((0, 0, 0), |(i, u, d), m| {
        (
            i + m.counts.inserted,
            u + m.counts.updated,
            d + m.counts.deleted,
        )
    });
    writeln!(
        out,
        "synchronized {} ({:?}): {ins} inserted, {upd} updated, {del} deleted in {:.2} s; report: {}",
        r.connector,
        r.mode,
        r.duration.as_secs_f64(),
        g.work
            .join("Reports")
            .join(format!("sync-{}.json", r.connector))
            .display()
    )
}

pub fn resources(rt: &Runtime, g: &Global, args: &ResourcesArgs) -> anyhow::Result<ExitCode> {
    let checked = crate::check::load(g)?;
    let config = &checked.config;
    let Some(et) = config.entity_type(&args.entity_type) else {
        let names = config.entity_types.iter().map(|e| e.id.value.as_str());
        let hint = idlink_model::diag::did_you_mean(&args.entity_type, names)
            .map(|s| format!("; did you mean '{s}'?"))
            .unwrap_or_default();
        eprintln!(
            "error: entity type '{}' is not declared in the configuration{hint}",
            args.entity_type
        );
        return Ok(ExitCode::from(1));
    };
    let mut filters = Vec::new();
    for f in &args.filters {
        let Some((p, v)) = f.split_once('=') else {
            eprintln!("error: --where '{f}' is not PROP=VALUE");
            return Ok(ExitCode::from(2));
        };
        if et.property(p).is_none() {
            let names = et.properties.iter().map(|p| p.id.value.as_str());
            let hint = idlink_model::diag::did_you_mean(p, names)
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            eprintln!(
                "error: entity type '{}' has no property '{p}'{hint}",
                et.id.value
            );
            return Ok(ExitCode::from(2));
        }
        filters.push((p.to_string(), v.to_string()));
    }
    let location = crate::store::location(g)?;
    let store = match rt.block_on(Store::open_existing(&location)) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "error: there is no store at {location} yet: run `idlink sync --connector ...` first"
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    // Navigation properties: the associations whose Property1 or Property2 is on this type.
    let mut navigations = Vec::new();
    for a in &config.entity_associations {
        for (side, p, collection) in [
            (1u8, &a.property1.value, a.is_property1_collection),
            (2u8, &a.property2.value, a.is_property2_collection),
        ] {
            if p.entity_type == et.id.value {
                navigations.push(Navigation {
                    association: &a.id.value,
                    side,
                    property: &p.property,
                    collection,
                });
            }
        }
    }
    let props: Vec<&str> = et.properties.iter().map(|p| p.id.value.as_str()).collect();
    let list = List {
        format: args.format,
        props: &props,
        out: std::io::BufWriter::new(std::io::stdout().lock()),
    };
    let listed = rt.block_on(list_resources(
        &store,
        &et.id.value,
        &filters,
        &navigations,
        list,
    ));
    rt.block_on(store.close());
    let n = listed?;
    if matches!(args.format, ListFormat::Text) && !g.quiet {
        eprintln!("{n} resource(s) of {}", et.id.value);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the navigation properties of `o` (the linked keys: a list for a collection, else
/// one key or null) match every `(property, key)` of `filters`: a collection when one of its
/// keys is the one given, and an empty key matches a resource linked to none, as `--where
/// PROP=` does for values.
fn links_match(
    o: &serde_json::Map<String, serde_json::Value>,
    filters: &[(String, String)],
) -> bool {
    use serde_json::Value;
    filters.iter().all(|(p, want)| match o.get(p) {
        Some(Value::Array(keys)) if !keys.is_empty() => {
            keys.iter().any(|k| k.as_str() == Some(want.as_str()))
        }
        Some(Value::String(key)) => key == want,
        _ => want.is_empty(),
    })
}

/// A value as a CSV or text cell: empty for none, a string as it is, the values of a list
/// joined by `sep`, anything else as JSON.
fn cell<'v>(v: Option<&'v serde_json::Value>, sep: &str) -> std::borrow::Cow<'v, str> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => "".into(),
        Some(Value::String(s)) => s.as_str().into(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(sep)
            .into(),
        Some(v) => v.to_string().into(),
    }
}

/// Resources read from the store at a time by `idlink resources`: the listing's memory does not
/// grow with the entity type.
const RESOURCES_PAGE: usize = 5_000;

/// A navigation property of the listed entity type: the keys linked through one side of an
/// association (`side` 1: the listed type is on `Property1`'s side).
struct Navigation<'a> {
    association: &'a str,
    side: u8,
    property: &'a str,
    collection: bool,
}

/// Where and how `idlink resources` writes.
struct List<'a, W: Write> {
    format: ListFormat,
    props: &'a [&'a str],
    out: W,
}

/// Writes the resources of `entity_type` that match `filters`, a page at a time, with their
/// navigation properties as the linked keys.
/// How many were written.
async fn list_resources<W: Write>(
    store: &Store,
    entity_type: &str,
    filters: &[(String, String)],
    navigations: &[Navigation<'_>],
    list: List<'_, W>,
) -> anyhow::Result<u64> {
    let List { format, props, out } = list;
    // A resource's values (its own map, nothing copied: those of declared properties) and its
    // navigation properties (its links, taken from the page's).
    let object = |r: idlink_store::Resource,
                  linked: &mut [std::collections::HashMap<i64, Vec<String>>]| {
        let mut o = r.data;
        o.retain(|p, _| props.contains(&p.as_str()));
        for (n, linked) in navigations.iter().zip(linked.iter_mut()) {
            let keys = linked.remove(&r.id).unwrap_or_default();
            let v = if n.collection {
                serde_json::Value::from(keys)
            } else {
                keys.into_iter()
                    .next()
                    .map_or(serde_json::Value::Null, serde_json::Value::from)
            };
            o.insert(n.property.to_string(), v);
        }
        o
    };
    // A multi-valued cell: one value a line in CSV, comma-separated in text.
    let list_sep = if matches!(format, ListFormat::Csv) {
        "\n"
    } else {
        ", "
    };
    // The three writers: a JSON array written element by element (the same text as the whole
    // array pretty-printed: each element's lines indented by two; its strings hold no line
    // feed, JSON escapes them), a CSV writer, or lines.
    enum Writer<W: Write> {
        Json(W),
        Csv(Box<csv::Writer<W>>),
        Text(W),
    }
    let mut writer = match format {
        ListFormat::Json => Writer::Json(out),
        ListFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(props)?;
            Writer::Csv(Box::new(w))
        }
        ListFormat::Text => Writer::Text(out),
    };
    // `--where` on a navigation property compares with the linked keys, which the stored
    // values do not hold.
    let (link_filters, value_filters): (Vec<_>, Vec<_>) = filters
        .iter()
        .cloned()
        .partition(|(p, _)| navigations.iter().any(|n| n.property == p));
    let in_text = idlink_store::ValuesInText::new(&value_filters);
    // Every page from one snapshot: a synchronization that commits while the list is written
    // does not make it half the old store and half the new.
    let mut snapshot = store.read_snapshot().await?;
    let (mut n, mut after) = (0u64, None::<String>);
    loop {
        // Rows whose stored text cannot hold the values wanted are not decoded.
        let page = snapshot
            .resources_page_where(entity_type, after.as_deref(), RESOURCES_PAGE, |_, text| {
                in_text.may_match(text)
            })
            .await?;
        let full = page.read == RESOURCES_PAGE;
        after = page.last_key;
        // The links of the resources that pass the filters on values only (`--where` may
        // keep few of the page); those on navigation properties are checked on the links.
        let listed: Vec<_> = page
            .resources
            .into_iter()
            .filter(|r| idlink_store::values_match(&r.data, &value_filters))
            .collect();
        let ids: Vec<i64> = listed.iter().map(|r| r.id).collect();
        let mut linked = Vec::with_capacity(navigations.len());
        for n in navigations {
            linked.push(
                snapshot
                    .linked_keys_of_ids(n.association, n.side, &ids)
                    .await?,
            );
        }
        for r in listed {
            let o = object(r, &mut linked);
            if !links_match(&o, &link_filters) {
                continue;
            }
            match &mut writer {
                Writer::Json(w) => {
                    w.write_all(if n == 0 { b"[\n" } else { b",\n" })?;
                    let text = serde_json::to_string_pretty(&o)?;
                    for (i, line) in text.lines().enumerate() {
                        let sep = if i == 0 { "" } else { "\n" };
                        write!(w, "{sep}  {line}")?;
                    }
                }
                Writer::Csv(w) => {
                    let cells: Vec<_> = props.iter().map(|p| cell(o.get(*p), list_sep)).collect();
                    w.write_record(cells.iter().map(|c| c.as_bytes()))?;
                }
                Writer::Text(w) => {
                    let fields: Vec<String> = props
                        .iter()
                        .filter_map(|p| {
                            let c = cell(o.get(*p), list_sep);
                            (!c.is_empty()).then(|| format!("{p}={c}"))
                        })
                        .collect();
                    writeln!(w, "{}", fields.join("  "))?;
                }
            }
            n += 1;
        }
        if !full {
            break;
        }
    }
    match writer {
        Writer::Json(mut w) => {
            w.write_all(if n == 0 { b"[]\n" } else { b"\n]\n" })?;
            w.flush()?;
        }
        Writer::Csv(mut w) => w.flush()?,
        Writer::Text(mut w) => w.flush()?,
    }
    Ok(n)
}
