//! The first pass over an LDIF file: which attributes its (filtered) entries have, whether any
//! entry has several values of one, whether any value is binary. Export uses it to know the
//! columns when every attribute is exported; refresh schema reports it.

use std::collections::HashMap;

use idlink_model::config::{KeyType, ValueType};

use super::export::Layout;
use super::parser::{Reader, Record};
use super::settings::{Filter, LdifSettings};
use crate::api::{ColumnSchema, ConnectionSchema, PackageError, TableSchema};

/// What the first pass learnt of one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttrStats {
    /// The spelling of its first occurrence.
    pub(crate) name: String,
    /// Some entry has more than one value.
    pub(crate) multivalued: bool,
    /// Some value is binary.
    pub(crate) binary: bool,
}

/// The attributes of a file's entries, in order of first occurrence.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    pub(crate) attrs: Vec<AttrStats>,
    /// Lowercased name -> index in `attrs`.
    index: HashMap<String, usize>,
    /// Entries kept by the filter.
    pub(crate) entries: u64,
}

impl Scan {
    /// The stats of an attribute, by name (case-insensitively).
    pub(crate) fn get(&self, name: &str) -> Option<&AttrStats> {
        self.index
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.attrs[i])
    }
}

/// Whether the filter keeps the record (no filter keeps everything).
pub(crate) fn keep(filter: Option<&Filter>, rec: &Record) -> bool {
    let Some(f) = filter else {
        return true;
    };
    if f.attribute.eq_ignore_ascii_case("dn") {
        return f.accepts(&rec.dn);
    }
    rec.attrs.iter().any(|a| {
        a.name.eq_ignore_ascii_case(&f.attribute) && a.value.as_text().is_some_and(|v| f.accepts(v))
    })
}

/// Reads the whole file once, holding one record at a time.
pub(crate) fn scan(reader: &mut Reader, filter: Option<&Filter>) -> Result<Scan, PackageError> {
    let mut scan = Scan::default();
    let mut rec = Record::default();
    let mut key = String::new();
    // Values per attribute in the current record, and which counters to reset.
    let mut counts: Vec<u32> = Vec::new();
    let mut touched: Vec<usize> = Vec::new();
    while reader.next_record(&mut rec)? {
        if !keep(filter, &rec) {
            continue;
        }
        scan.entries += 1;
        for a in &rec.attrs {
            key.clear();
            key.push_str(&a.name);
            key.make_ascii_lowercase();
            let i = match scan.index.get(&key) {
                Some(&i) => i,
                None => {
                    scan.attrs.push(AttrStats {
                        name: a.name.clone(),
                        multivalued: false,
                        binary: false,
                    });
                    counts.push(0);
                    scan.index.insert(key.clone(), scan.attrs.len() - 1);
                    scan.attrs.len() - 1
                }
            };
            let stats = &mut scan.attrs[i];
            stats.binary |= a.value.is_binary();
            if counts[i] == 0 {
                touched.push(i);
            }
            counts[i] += 1;
            if counts[i] > 1 {
                stats.multivalued = true;
            }
        }
        for i in touched.drain(..) {
            counts[i] = 0;
        }
    }
    Ok(scan)
}

/// The schema of the tables an export writes without a mapping: `<connection>_entries` (`dn`,
/// the primary key, then the attributes) and one link table per link attribute.
pub(crate) fn schema(connection: &str, settings: &LdifSettings, scan: &Scan) -> ConnectionSchema {
    let layout = match &settings.attributes {
        Some(list) => Layout::from_attributes(list),
        None => Layout::from_scan(scan),
    };
    let column = |name: &str, multivalued: bool| {
        let stats = scan.get(name);
        ColumnSchema {
            name: name.to_string(),
            value_type: if stats.is_some_and(|s| s.binary) {
                ValueType::Binary
            } else {
                ValueType::String
            },
            source_type: None,
            multivalued: multivalued && stats.is_some_and(|s| s.multivalued),
            key: KeyType::None,
        }
    };
    let mut entries = vec![ColumnSchema {
        key: KeyType::Primary,
        ..ColumnSchema::string("dn")
    }];
    entries.extend(layout.entries.iter().map(|a| column(a, true)));
    let mut tables = vec![TableSchema {
        name: format!("{connection}_entries"),
        columns: entries,
    }];
    for link in &layout.links {
        tables.push(TableSchema {
            name: format!("{connection}_{link}"),
            columns: vec![ColumnSchema::string("dn"), column(link, false)],
        });
    }
    ConnectionSchema { tables }
}
