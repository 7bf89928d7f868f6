//! `docs/conformance.md`: what idlink does with each item the Netwrix Identity Manager 6.2
//! reference documents, made from the join of two sources so it cannot drift:
//!
//! - the corpus under [`CORPUS`]: what the reference pages document (element attributes and
//!   children, package settings, agent file sections), with their documented types and
//!   defaults, written by us as data (facts only);
//! - what the code does: the XML loader records every item it asks for at each element it
//!   reads (used, accepted without effect and why, skipped and why, refused values and why)
//!   while it loads the fixtures of [`FIXTURES`]; each supported package's settings schema
//!   (the one `check`, the parser and `protect` share) says the same for its settings.
//!
//! [`Report::gaps`] lists what the documentation has and the code does not know: a documented
//! item neither used, nor accepted without effect, nor skipped, nor refused; an element of the
//! corpus no fixture reaches; a supported package without its pages in the corpus. A test
//! fails when the list is not empty.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use idlink_model::package::{Availability, Field, Kind, PackageCatalog, SettingsSchema};
use idlink_model::settings::{SECTIONS_READ, SECTIONS_WITHOUT_EFFECT};
use idlink_model::xml::{AttributeReads, Known, Status, record_attributes};
use idlink_packages::Registry;

/// The folders whose configurations the XML tables are recorded from, relative to the
/// repository root.
pub const FIXTURES: [&str; 4] = [
    "examples/documented",
    "examples/documented-provisioning",
    "examples/documented-settings",
    "examples/quickstart",
];

/// The corpus of what the 6.2 reference documents, relative to the repository root.
pub const CORPUS: &str = "docs/reference-6.2";

/// Pages of element rows are under this folder of `netwrix/docs`.
const XML_PAGES: &str = "docs/identitymanager/6.2/integration-guide/toolkit/xml-configuration/";
/// Pages of package settings rows are under this folder of `netwrix/docs`.
const CONNECTOR_PAGES: &str =
    "docs/identitymanager/6.2/integration-guide/connectors/references-connectors/";
/// The agent settings page (top-level sections of appsettings.agent.json).
const AGENT_PAGE: &str = "appsettings.agent";

/// One documented item: an attribute, a child element (`<Child>`) or a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documented {
    /// Element (`EntityType/Property` for a child `Property`), or connector page of a setting.
    pub owner: String,
    pub item: String,
    pub doc_type: String,
    /// `required`, `optional`, `default: X`, or `example` (shown in the page's examples only).
    pub requirement: String,
    /// The page: under `toolkit/xml-configuration/` for element rows, the connector page (the
    /// owner) for settings.
    pub page: String,
}

/// The corpus, as read from [`CORPUS`].
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub elements: Vec<Documented>,
    pub settings: Vec<Documented>,
    /// Package identifier -> the connector pages whose settings it takes.
    pub packages: BTreeMap<String, Vec<String>>,
}

impl Corpus {
    /// Reads `elements.tsv`, `settings.tsv` and `packages.tsv` under `root`/[`CORPUS`].
    pub fn read(root: &Path) -> Result<Corpus, String> {
        let dir = root.join(CORPUS);
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| format!("cannot read {}/{name}: {e}", dir.display()))
        };
        Corpus::parse(
            &read("elements.tsv")?,
            &read("settings.tsv")?,
            &read("packages.tsv")?,
        )
    }

    /// Parses the three tables (tab-separated; `#` starts a comment line).
    pub fn parse(elements: &str, settings: &str, packages: &str) -> Result<Corpus, String> {
        let rows = |text: &str, file: &str, columns: usize| -> Result<Vec<Vec<String>>, String> {
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
                .map(|(i, l)| {
                    let cells: Vec<String> = l.split('\t').map(|c| c.trim().to_string()).collect();
                    if cells.len() == columns {
                        Ok(cells)
                    } else {
                        Err(format!(
                            "{file}:{}: {} columns, expected {columns}",
                            i + 1,
                            cells.len()
                        ))
                    }
                })
                .collect()
        };
        let elements = rows(elements, "elements.tsv", 5)?
            .into_iter()
            .map(|c| Documented {
                owner: c[0].clone(),
                item: c[1].clone(),
                doc_type: c[2].clone(),
                requirement: c[3].clone(),
                page: c[4].clone(),
            })
            .collect();
        let settings = rows(settings, "settings.tsv", 4)?
            .into_iter()
            .map(|c| Documented {
                owner: c[0].clone(),
                item: c[1].clone(),
                doc_type: c[2].clone(),
                requirement: c[3].clone(),
                page: c[0].clone(),
            })
            .collect();
        let packages = rows(packages, "packages.tsv", 2)?
            .into_iter()
            .map(|c| {
                let pages = c[1].split_whitespace().map(str::to_string).collect();
                (c[0].clone(), pages)
            })
            .collect();
        Ok(Corpus {
            elements,
            settings,
            packages,
        })
    }
}

/// What idlink does with one row's item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowStatus {
    Used,
    WithoutEffect(String),
    Skipped(String),
    /// Documented, and the code does not know it: a gap.
    Unknown,
}

/// One row of a table: a documented item, or an item idlink uses that the pages do not
/// document (an idlink extension).
#[derive(Debug, Clone)]
pub struct Row {
    pub item: String,
    /// `None` for an idlink extension.
    pub documented: Option<Documented>,
    /// How idlink reads it (type, default, allowed values); empty when it does not.
    pub read_as: String,
    pub status: RowStatus,
    /// Values idlink refuses, and why.
    pub refused: Option<String>,
    /// The family label the item was recorded under (`DisplayName_L1 … DisplayName_L16`).
    pub family: Option<String>,
}

/// One table: an element, a package, or the agent file's sections.
#[derive(Debug, Clone)]
pub struct Table {
    /// `<Connector>`, `Usercube.CSV@0000001 (File/CSV)`, ...
    pub title: String,
    /// The pages the documented rows come from.
    pub pages: Vec<String>,
    pub rows: Vec<Row>,
    /// Rules across settings (packages only).
    pub rules: Vec<String>,
    /// Reached by the loader (elements) or described by the registry (packages).
    pub known: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    documented: usize,
    known: usize,
    used: usize,
    without_effect: usize,
    refused: usize,
    skipped: usize,
    extensions: usize,
}

impl Table {
    fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in &self.rows {
            if r.documented.is_none() {
                c.extensions += 1;
                continue;
            }
            c.documented += 1;
            if r.status != RowStatus::Unknown {
                c.known += 1;
            }
            match r.status {
                RowStatus::Used => c.used += 1,
                RowStatus::WithoutEffect(_) => c.without_effect += 1,
                RowStatus::Skipped(_) => c.skipped += 1,
                RowStatus::Unknown => {}
            }
            if r.refused.is_some() {
                c.refused += 1;
            }
        }
        c
    }
}

/// The join of the corpus with what the code does.
#[derive(Debug, Clone)]
pub struct Report {
    pub elements: Vec<Table>,
    pub packages: Vec<Table>,
    pub sections: Table,
    /// Supported packages the corpus does not map to pages.
    pub unmapped_packages: Vec<String>,
}

impl Report {
    /// Reads the corpus and records the loader on the fixtures of the repository at `root`.
    pub fn build(root: &Path, registry: &Registry) -> Result<Report, String> {
        let corpus = Corpus::read(root)?;
        let mut reads = AttributeReads::new();
        for dir in FIXTURES {
            let dir = root.join(dir);
            let (loaded, r) = record_attributes(|| idlink_model::xml::load_dir(&dir));
            loaded.map_err(|e| format!("fixture {}: {e}", dir.display()))?;
            for (element, items) in r {
                let known = reads.entry(element).or_default();
                for (item, k) in items {
                    known.entry(item).or_insert(k);
                }
            }
        }
        Ok(Report::join(&corpus, &reads, registry))
    }

    /// Joins a corpus with what the loader recorded and the registry's supported packages.
    pub fn join(corpus: &Corpus, reads: &AttributeReads, registry: &Registry) -> Report {
        // Elements in the corpus's order, then those only the loader knows.
        let mut order: Vec<&str> = Vec::new();
        for d in &corpus.elements {
            if !order.contains(&d.owner.as_str()) {
                order.push(&d.owner);
            }
        }
        for element in reads.keys() {
            if !order.contains(&element.as_str()) {
                order.push(element);
            }
        }
        let elements = order
            .into_iter()
            .map(|element| {
                let documented: Vec<&Documented> = corpus
                    .elements
                    .iter()
                    .filter(|d| d.owner == element)
                    .collect();
                element_table(element, &documented, reads.get(element))
            })
            .collect();

        let mut packages = Vec::new();
        let mut unmapped_packages = Vec::new();
        for p in registry
            .all()
            .filter(|p| p.availability == Availability::Supported)
        {
            let Some(pages) = corpus.packages.get(p.id) else {
                unmapped_packages.push(p.id.to_string());
                continue;
            };
            let mut documented: Vec<&Documented> = Vec::new();
            for page in pages {
                for d in corpus.settings.iter().filter(|d| &d.owner == page) {
                    if !documented
                        .iter()
                        .any(|x| x.item.eq_ignore_ascii_case(&d.item))
                    {
                        documented.push(d);
                    }
                }
            }
            let mut fields = Vec::new();
            flatten("", p.settings, &mut fields);
            packages.push(package_table(
                &format!("{} ({})", p.id, p.display_name),
                pages,
                &documented,
                &fields,
                p.settings,
            ));
        }

        let documented: Vec<&Documented> = corpus
            .settings
            .iter()
            .filter(|d| d.owner == AGENT_PAGE)
            .collect();
        let sections = sections_table(&documented);
        Report {
            elements,
            packages,
            sections,
            unmapped_packages,
        }
    }

    /// What the documentation has and the code does not know. Empty when idlink conforms.
    pub fn gaps(&self) -> Vec<String> {
        let mut gaps = Vec::new();
        for t in self
            .elements
            .iter()
            .chain(&self.packages)
            .chain([&self.sections])
        {
            if !t.known {
                gaps.push(format!(
                    "{}: documented, but no fixture of {} reaches it, so what the loader does with it is not recorded; add one to examples/documented*",
                    t.title,
                    FIXTURES.join(", ")
                ));
                continue;
            }
            for r in t.rows.iter().filter(|r| r.status == RowStatus::Unknown) {
                gaps.push(format!(
                    "{} {}: documented, unknown to idlink; use it, or accept it without effect with a reason, or refuse it with a reason",
                    t.title, r.item
                ));
            }
        }
        for p in &self.unmapped_packages {
            gaps.push(format!(
                "{p}: supported, but {CORPUS}/packages.tsv does not name its connector pages"
            ));
        }
        gaps
    }

    /// The whole document.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Conformance with Netwrix Identity Manager 6.2\n\n\
             Generated by `IDLINK_BLESS=1 cargo test -p idlink-engine --test it conformance` from the\n\
             join of two sources; a test fails when this file differs from what they give, and another\n\
             when a documented item is unknown to idlink.\n\n\
             - What the reference documents: `docs/reference-6.2/` (element attributes and children,\n  \
             package settings, agent file sections, with their documented types and defaults), written\n  \
             from the pages of `netwrix/docs`. Element pages are under\n  \
             `docs/identitymanager/6.2/integration-guide/toolkit/xml-configuration/`, connector pages\n  \
             under `docs/identitymanager/6.2/integration-guide/connectors/references-connectors/`.\n\
             - What idlink does: the XML loader records every item it asks for at each element it reads,\n  \
             written or not (loading `examples/documented*` and `examples/quickstart` reaches every\n  \
             element); each supported package's settings schema is the one `check` and the package\n  \
             read.\n\n\
             Status: **used** (read into the configuration: how), **accepted without effect** (no\n\
             warning; `check -v` says why once per kind), **skipped** (a child element outside idlink's\n\
             scope: one warning per kind, saying why), **refused** (these values are errors, saying why).\n\
             Rows marked *extension* are items idlink reads that the page does not document. Items idlink\n\
             merely tolerates without documentation (accepted without effect, or skipped, where the page\n\
             does not list them) are not extensions and are left out.\n\n",
        );
        out.push_str(
            "## Summary\n\n\
             Counts of documented items: *known* = used + without effect + skipped (an item used with\n\
             refused values counts as used and as refused); *extensions* are counted apart.\n\n",
        );
        out.push_str(
            "| element or package | documented | known | used | without effect | refused | skipped | extensions |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        let mut total = Counts::default();
        for t in self
            .elements
            .iter()
            .chain(&self.packages)
            .chain([&self.sections])
        {
            let c = t.counts();
            total.documented += c.documented;
            total.known += c.known;
            total.used += c.used;
            total.without_effect += c.without_effect;
            total.refused += c.refused;
            total.skipped += c.skipped;
            total.extensions += c.extensions;
            summary_row(&mut out, &t.title, c);
        }
        summary_row(&mut out, "**total**", total);

        out.push_str("\n## XML elements\n");
        for t in &self.elements {
            table(&mut out, t, XML_PAGES);
        }
        out.push_str("\n## Package settings (appsettings.agent.json > Connections)\n");
        for t in &self.packages {
            table(&mut out, t, CONNECTOR_PAGES);
        }
        out.push_str("\n## Agent settings file\n");
        table(
            &mut out,
            &self.sections,
            "docs/identitymanager/6.2/integration-guide/network-configuration/agent-configuration/",
        );
        out
    }
}

/// Renders the whole document from the repository at `root`.
pub fn render(root: &Path, registry: &Registry) -> Result<String, String> {
    Ok(Report::build(root, registry)?.render())
}

fn summary_row(out: &mut String, title: &str, c: Counts) {
    let _ = writeln!(
        out,
        "| {title} | {} | {} | {} | {} | {} | {} | {} |",
        c.documented, c.known, c.used, c.without_effect, c.refused, c.skipped, c.extensions
    );
}

fn element_table(
    element: &str,
    documented: &[&Documented],
    known: Option<&BTreeMap<String, Known>>,
) -> Table {
    let title = match element.split_once('/') {
        Some((parent, child)) => format!("`<{child}>` in `<{parent}>`"),
        None => format!("`<{element}>`"),
    };
    let mut pages: Vec<String> = Vec::new();
    for d in documented {
        if !pages.contains(&d.page) {
            pages.push(d.page.clone());
        }
    }
    let empty = BTreeMap::new();
    let reads = known.unwrap_or(&empty);
    let mut rows = Vec::new();
    let mut matched: Vec<&str> = Vec::new();
    for d in documented {
        let hit = reads.iter().find(|(label, k)| k.matches(label, &d.item));
        let row = match hit {
            Some((label, k)) => {
                matched.push(label);
                let mut row = row_of(&d.item, k);
                if k.family.is_some() {
                    row.family = Some(label.clone());
                }
                row.documented = Some((*d).clone());
                row
            }
            None => Row {
                item: d.item.clone(),
                documented: Some((*d).clone()),
                read_as: String::new(),
                status: RowStatus::Unknown,
                refused: None,
                family: None,
            },
        };
        rows.push(row);
    }
    // What the loader uses and the page does not document: idlink extensions.
    for (label, k) in reads {
        if !matched.contains(&label.as_str()) && matches!(k.status, Status::Used(_)) {
            rows.push(row_of(label, k));
        }
    }
    Table {
        title,
        pages,
        rows,
        rules: Vec::new(),
        known: known.is_some(),
    }
}

fn row_of(item: &str, k: &Known) -> Row {
    let (read_as, status) = match &k.status {
        Status::Used(how) => (how.clone(), RowStatus::Used),
        Status::WithoutEffect(why) => (String::new(), RowStatus::WithoutEffect(why.clone())),
        Status::Skipped(why) => (String::new(), RowStatus::Skipped(why.clone())),
    };
    Row {
        item: item.to_string(),
        documented: None,
        read_as,
        status,
        refused: k.refused.clone(),
        family: None,
    }
}

/// A schema's fields with their paths (`Servers[].Server` for a field of a list's objects).
fn flatten(prefix: &str, schema: &'static SettingsSchema, out: &mut Vec<(String, &'static Field)>) {
    for f in schema.fields {
        out.push((format!("{prefix}{}", f.name), f));
        if let Kind::ObjectList(inner) = f.kind {
            flatten(&format!("{prefix}{}[].", f.name), inner, out);
        }
    }
}

fn setting_row(path: &str, f: &Field) -> Row {
    let (read_as, status) = match f.no_effect {
        Some(why) => (String::new(), RowStatus::WithoutEffect(why.to_string())),
        None => {
            let mut how = f.kind.describe();
            if f.required {
                how.push_str(", required");
            }
            if f.secured {
                how.push_str(", secured");
            }
            (format!("{how}: {}", f.doc), RowStatus::Used)
        }
    };
    let refused = (!f.refused.is_empty()).then(|| {
        f.refused
            .iter()
            .map(|(v, why)| format!("{v}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    });
    Row {
        item: path.to_string(),
        documented: None,
        read_as,
        status,
        refused,
        family: None,
    }
}

fn package_table(
    title: &str,
    pages: &[String],
    documented: &[&Documented],
    fields: &[(String, &'static Field)],
    schema: &SettingsSchema,
) -> Table {
    let mut rows = Vec::new();
    let mut matched: Vec<&str> = Vec::new();
    for d in documented {
        let hit = fields
            .iter()
            .find(|(path, _)| path.eq_ignore_ascii_case(&d.item));
        let row = match hit {
            Some((path, f)) => {
                matched.push(path);
                Row {
                    documented: Some((*d).clone()),
                    ..setting_row(&d.item, f)
                }
            }
            None => Row {
                item: d.item.clone(),
                documented: Some((*d).clone()),
                read_as: String::new(),
                status: RowStatus::Unknown,
                refused: None,
                family: None,
            },
        };
        rows.push(row);
    }
    for (path, f) in fields {
        if !matched.contains(&path.as_str()) && f.no_effect.is_none() {
            rows.push(setting_row(path, f));
        }
    }
    Table {
        title: title.to_string(),
        pages: pages.to_vec(),
        rows,
        rules: schema.constraints.iter().map(|c| c.to_string()).collect(),
        known: true,
    }
}

fn sections_table(documented: &[&Documented]) -> Table {
    let known: Vec<(&str, RowStatus, String)> = SECTIONS_READ
        .iter()
        .map(|(n, how)| (*n, RowStatus::Used, how.to_string()))
        .chain(
            SECTIONS_WITHOUT_EFFECT
                .iter()
                .map(|(n, why)| (*n, RowStatus::WithoutEffect(why.to_string()), String::new())),
        )
        .collect();
    let mut rows = Vec::new();
    for d in documented {
        let row = match known
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(&d.item))
        {
            Some((_, status, how)) => Row {
                item: d.item.clone(),
                documented: Some((*d).clone()),
                read_as: how.clone(),
                status: status.clone(),
                refused: None,
                family: None,
            },
            None => Row {
                item: d.item.clone(),
                documented: Some((*d).clone()),
                read_as: String::new(),
                status: RowStatus::Unknown,
                refused: None,
                family: None,
            },
        };
        rows.push(row);
    }
    for (n, status, how) in &known {
        if *status == RowStatus::Used && !documented.iter().any(|d| d.item.eq_ignore_ascii_case(n))
        {
            rows.push(Row {
                item: n.to_string(),
                documented: None,
                read_as: how.clone(),
                status: status.clone(),
                refused: None,
                family: None,
            });
        }
    }
    Table {
        title: "appsettings.agent.json sections".to_string(),
        pages: vec![format!("{AGENT_PAGE}")],
        rows,
        rules: Vec::new(),
        known: true,
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn table(out: &mut String, t: &Table, base: &str) {
    let _ = writeln!(out, "\n### {}\n", t.title);
    match t.pages.as_slice() {
        [] if t.rows.is_empty() => {
            out.push_str("No reference page documents settings for it, and idlink reads none.\n");
            return;
        }
        [] => out.push_str("Not on a reference page: every row is an idlink extension.\n\n"),
        pages => {
            let pages: Vec<String> = pages.iter().map(|p| format!("`{p}`")).collect();
            let _ = writeln!(out, "Reference: {} (under `{base}`)\n", pages.join(", "));
        }
    }
    if !t.known {
        out.push_str("**Not reached by any fixture: unknown to idlink.**\n\n");
    }
    out.push_str(
        "| item | documented | idlink reads it as | status |\n| --- | --- | --- | --- |\n",
    );
    for r in &t.rows {
        let documented = match &r.documented {
            Some(d) => {
                let page = if d.page.is_empty() || t.pages.len() == 1 {
                    String::new()
                } else {
                    format!(" (`{}`)", d.page)
                };
                format!("{}, {}{page}", d.doc_type, d.requirement)
            }
            None => "*extension*".to_string(),
        };
        let mut status = match &r.status {
            RowStatus::Used => "used".to_string(),
            RowStatus::WithoutEffect(why) => format!("accepted without effect: {why}"),
            RowStatus::Skipped(why) => format!("skipped: {why}"),
            RowStatus::Unknown => "**unknown**".to_string(),
        };
        if let Some(refused) = &r.refused {
            let _ = write!(status, "; **refused** {refused}");
        }
        let mut read_as = if r.read_as.is_empty() {
            "—".to_string()
        } else {
            r.read_as.clone()
        };
        if let Some(family) = &r.family {
            let _ = write!(read_as, " (as one of {family})");
        }
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            cell(&r.item),
            cell(&documented),
            cell(&read_as),
            cell(&status)
        );
    }
    for rule in &t.rules {
        let _ = writeln!(out, "\nRule: {}", cell(rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(element: &str, items: &[(&str, Status)]) -> AttributeReads {
        let mut r = AttributeReads::new();
        let map = r.entry(element.to_string()).or_default();
        for (item, status) in items {
            map.insert(
                item.to_string(),
                Known {
                    status: status.clone(),
                    refused: None,
                    family: None,
                },
            );
        }
        r
    }

    fn corpus(elements: &str, settings: &str) -> Corpus {
        let packages: String = Registry::new()
            .all()
            .filter(|p| p.availability == Availability::Supported)
            .map(|p| format!("{}\tnone\n", p.id))
            .collect();
        Corpus::parse(elements, settings, &packages).expect("corpus")
    }

    /// The gaps test can fail: a documented attribute the loader does not know, an element no
    /// fixture reaches, a documented setting no schema has, a package without pages.
    #[test]
    fn gaps_name_unknown_items_unreached_elements_and_unmapped_packages() {
        let c = corpus(
            "Job\tIdentifier\tString\trequired\tjobs/job\n\
             Job\tBogus\tString\toptional\tjobs/job\n\
             Nowhere\tIdentifier\tString\trequired\tx/nowhere\n",
            "appsettings.agent\tConnections\tList\toptional\n\
             appsettings.agent\tNoSuchSection\tX\toptional\n",
        );
        let r = reads(
            "Job",
            &[
                ("Identifier", Status::Used("string, required".into())),
                ("Extra", Status::Used("string".into())),
                ("Tolerated", Status::WithoutEffect("why".into())),
            ],
        );
        let report = Report::join(&c, &r, &Registry::new());
        let gaps = report.gaps();
        assert!(gaps.iter().any(|g| g.contains("`<Job>` Bogus")), "{gaps:?}");
        assert!(
            gaps.iter()
                .any(|g| g.contains("`<Nowhere>`") && g.contains("no fixture")),
            "{gaps:?}"
        );
        assert!(gaps.iter().any(|g| g.contains("NoSuchSection")), "{gaps:?}");
        assert_eq!(gaps.len(), 3, "{gaps:?}");
        // Extensions are listed, tolerated undocumented items are not.
        let job = &report.elements[0];
        assert!(
            job.rows
                .iter()
                .any(|r| r.item == "Extra" && r.documented.is_none())
        );
        assert!(!job.rows.iter().any(|r| r.item == "Tolerated"));

        let mut unmapped = c.clone();
        unmapped.packages.remove("Usercube.LDIF@0000001");
        let gaps = Report::join(&unmapped, &r, &Registry::new()).gaps();
        assert!(
            gaps.iter().any(|g| g.contains("Usercube.LDIF@0000001")),
            "{gaps:?}"
        );
    }

    #[test]
    fn documented_settings_unknown_to_the_schema_are_gaps() {
        let mut c = corpus(
            "",
            "ldif\tLDIFFile\tString\trequired\nldif\tNoSuch\tString\toptional\n",
        );
        c.packages
            .insert("Usercube.LDIF@0000001".into(), vec!["ldif".into()]);
        let gaps = Report::join(&c, &AttributeReads::new(), &Registry::new()).gaps();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(gaps[0].contains("Usercube.LDIF@0000001") && gaps[0].contains("NoSuch"));
    }

    #[test]
    fn a_malformed_corpus_line_is_an_error_naming_the_line() {
        let e = Corpus::parse("# c\nJob\tIdentifier\n", "", "").expect_err("two columns");
        assert!(e.contains("elements.tsv:2"), "{e}");
    }
}
