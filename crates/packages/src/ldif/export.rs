//! Export: LDIF entries -> `<connection>_entries` and one link table per link attribute.

use std::collections::HashMap;

use super::parser::{Reader, Record};
use super::schema::{Scan, keep};
use super::settings::{Filter, link_attribute};
use crate::api::{MappedTable, PackageError, Progress};
use crate::output::{ExportOutput, TableId, multivalued_cell};

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
    /// The columns of `<connection>_entries` after `dn`.
    pub(crate) entries: Vec<String>,
    /// Link attributes: each is a table `<connection>_<attribute>` with columns `dn`,
    /// `<attribute>`.
    pub(crate) links: Vec<String>,
    /// Lowercased attribute -> where its values go.
    index: HashMap<String, Slot>,
}

/// Case-insensitive order, then byte order, so the order is total.
fn sort_names(names: &mut [String]) {
    names.sort_by(|a, b| {
        a.to_ascii_lowercase()
            .cmp(&b.to_ascii_lowercase())
            .then_with(|| a.cmp(b))
    });
}

/// Keeps the first of names equal ignoring case.
fn dedup_names(names: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
}

impl Layout {
    fn new(entries: Vec<String>, links: Vec<String>) -> Self {
        let mut index: HashMap<String, Slot> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            index.entry(e.to_ascii_lowercase()).or_default().entry = Some(i);
        }
        for (i, l) in links.iter().enumerate() {
            index.entry(l.to_ascii_lowercase()).or_default().link = Some(i);
        }
        Layout {
            entries,
            links,
            index,
        }
    }

    /// `Attributes` from settings (without `dn`): link attributes get their own table (spelled
    /// as the standard schema spells them), the others are columns in the order given.
    pub(crate) fn from_attributes(list: &[String]) -> Self {
        let mut entries = Vec::new();
        let mut links = Vec::new();
        for a in list {
            match link_attribute(a) {
                Some(l) => links.push(l.to_string()),
                None => entries.push(a.clone()),
            }
        }
        Layout::new(entries, links)
    }

    /// Every attribute the first pass found: columns sorted case-insensitively, link
    /// attributes as tables.
    pub(crate) fn from_scan(scan: &Scan) -> Self {
        let mut entries = Vec::new();
        let mut links = Vec::new();
        for a in &scan.attrs {
            match link_attribute(&a.name) {
                Some(l) => links.push(l.to_string()),
                None => entries.push(a.name.clone()),
            }
        }
        sort_names(&mut entries);
        sort_names(&mut links);
        Layout::new(entries, links)
    }

    /// What the configuration maps: the columns its mappings read from `<connection>_entries`
    /// (sorted case-insensitively; a link attribute read there stays a column), and the link
    /// tables it maps, spelled as it writes them.
    pub(crate) fn from_mapping(entries_table: &MappedTable, tables: &[MappedTable]) -> Self {
        let mut entries: Vec<String> = entries_table
            .columns
            .iter()
            .filter(|c| !c.eq_ignore_ascii_case("dn"))
            .cloned()
            .collect();
        dedup_names(&mut entries);
        sort_names(&mut entries);
        let mut links: Vec<String> = tables
            .iter()
            .filter_map(|t| t.suffix.as_deref())
            .filter(|s| link_attribute(s).is_some())
            .map(str::to_string)
            .collect();
        dedup_names(&mut links);
        sort_names(&mut links);
        Layout::new(entries, links)
    }

    fn slot(&self, lowercase: &str) -> Option<Slot> {
        self.index.get(lowercase).copied()
    }
}

/// Sorts values as [`multivalued_cell`] does (case-insensitively, then byte-wise) and drops
/// exact duplicates.
fn sort_values(values: &mut Vec<String>) {
    if values.len() < 2 {
        return;
    }
    values.sort_unstable();
    // Stable: equal lowercase keeps the byte order of the first sort.
    values.sort_by_cached_key(|v| v.to_lowercase());
    values.dedup();
}

/// Writes the filtered entries of `reader` to the tables of `layout`; returns the entries
/// written.
pub(crate) fn write(
    reader: &mut Reader,
    filter: Option<&Filter>,
    layout: &Layout,
    out: &mut ExportOutput,
    progress: &dyn Progress,
) -> Result<u64, PackageError> {
    let mut header = Vec::with_capacity(layout.entries.len() + 1);
    header.push("dn");
    header.extend(layout.entries.iter().map(String::as_str));
    let entries_table = out.create(Some("entries"), &header)?;
    let mut link_tables: Vec<TableId> = Vec::with_capacity(layout.links.len());
    for l in &layout.links {
        link_tables.push(out.create(Some(l), &["dn", l.as_str()])?);
    }
    let mut tables = vec![entries_table];
    tables.extend(link_tables.iter().copied());
    let mut reported = vec![0u64; tables.len()];
    let report = |out: &ExportOutput, reported: &mut [u64]| {
        for (t, done) in tables.iter().zip(reported.iter_mut()) {
            let rows = out.rows(*t);
            if rows > *done {
                progress.rows(out.name(*t), rows - *done);
                *done = rows;
            }
        }
    };

    let mut rec = Record::default();
    let mut key = String::new();
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); layout.entries.len()];
    let mut links: Vec<Vec<String>> = vec![Vec::new(); layout.links.len()];
    let mut row: Vec<String> = Vec::with_capacity(layout.entries.len() + 1);
    let mut written = 0u64;
    while reader.next_record(&mut rec)? {
        if !keep(filter, &rec) {
            continue;
        }
        for a in rec.attrs.drain(..) {
            key.clear();
            key.push_str(&a.name);
            key.make_ascii_lowercase();
            let Some(slot) = layout.slot(&key) else {
                continue;
            };
            let value = a.value.into_cell();
            match (slot.entry, slot.link) {
                (Some(e), Some(l)) => {
                    cells[e].push(value.clone());
                    links[l].push(value);
                }
                (Some(e), None) => cells[e].push(value),
                (None, Some(l)) => links[l].push(value),
                (None, None) => {}
            }
        }
        row.clear();
        row.push(std::mem::take(&mut rec.dn));
        for values in &mut cells {
            sort_values(values);
            row.push(multivalued_cell(values));
            values.clear();
        }
        out.write(entries_table, &row)?;
        let dn = &row[0];
        for (values, &table) in links.iter_mut().zip(&link_tables) {
            sort_values(values);
            for v in values.iter() {
                out.write(table, [dn.as_str(), v.as_str()])?;
            }
            values.clear();
        }
        written += 1;
        if written.is_multiple_of(PROGRESS_EVERY) {
            report(out, &mut reported);
        }
    }
    report(out, &mut reported);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sort_like_multivalued_cells_without_duplicates() {
        let mut v: Vec<String> = ["b", "A", "a", "C", "b", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sort_values(&mut v);
        assert_eq!(v, ["A", "a", "b", "C"]);
        let mut copy = v.clone();
        assert_eq!(multivalued_cell(&mut copy), "A\na\nb\nC");
    }

    #[test]
    fn attributes_split_into_columns_and_link_tables() {
        let list: Vec<String> = ["sn", "MEMBER", "cn", "Manager"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let l = Layout::from_attributes(&list);
        assert_eq!(l.entries, ["sn", "cn"]);
        assert_eq!(l.links, ["member", "manager"]);
        assert_eq!(
            l.slot("member"),
            Some(Slot {
                entry: None,
                link: Some(0)
            })
        );
    }

    #[test]
    fn mapping_keeps_its_spelling_and_drops_dn() {
        let t = |suffix: &str, columns: &[&str]| MappedTable {
            name: format!("L_{suffix}"),
            suffix: Some(suffix.to_string()),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        };
        let entries = t("Entries", &["DN", "sn", "cn", "CN", "manager"]);
        let tables = [
            entries.clone(),
            t("Member", &["dn", "Member"]),
            t("other", &[]),
        ];
        let l = Layout::from_mapping(&entries, &tables);
        assert_eq!(l.entries, ["cn", "manager", "sn"]);
        assert_eq!(l.links, ["Member"]);
    }
}
