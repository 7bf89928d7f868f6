//! The table last synchronized: after a Complete run that set nothing aside, the entity type's
//! resources are exactly that table's rows. Its copy is kept (`<work>/Prepared/<entity
//! type>.synchronized.csv`, a hard link to the exported file) and its digest saved in the
//! store in the run's transaction (`SyncTx::save_table_digest`). The next Complete run
//! compares the new table with the copy record by record ([`super::lines`]) and prepares only
//! the records that differ, against the store's resources of their keys: a run costs reading
//! the two tables plus the work of the rows that changed, where comparing with the store's
//! whole index costs a lookup per row.
//!
//! The copy is trusted only when everything agrees: its digest is the saved one (a copy
//! replaced, edited or left from a run rolled back differs), it holds as many records as the
//! store holds resources, the mapping is the same, and the headers are equal. A changed record
//! whose key is also on an unchanged one (a duplicate) or any other doubt: the run compares
//! with the store's index as it does without a copy.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use idlink_store::{Digest, IndexEntry, SyncTx};

use super::keys::{KeyHasher, Keyed};
use super::lines::{self, Outcome};
use super::prepare::{Subset, TablePlan, find_column};
use crate::EngineError;

/// What the store keeps of the table last synchronized: the digest of its bytes (seeded with
/// the key seed), the fingerprint of the mapping that read it, its records and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TableDigest {
    pub bytes: u128,
    pub mapping: u64,
    pub records: u64,
    pub size: u64,
}

impl TableDigest {
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.mapping.to_le_bytes());
        out.extend_from_slice(&self.records.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<TableDigest> {
        if b.len() != 40 {
            return None;
        }
        Some(TableDigest {
            bytes: u128::from_le_bytes(b[..16].try_into().ok()?),
            mapping: u64::from_le_bytes(b[16..24].try_into().ok()?),
            records: u64::from_le_bytes(b[24..32].try_into().ok()?),
            size: u64::from_le_bytes(b[32..].try_into().ok()?),
        })
    }
}

/// Where the copy of an entity type's table last synchronized is kept.
pub(super) fn copy_path(prepared_dir: &Path, entity_type: &str) -> PathBuf {
    prepared_dir.join(format!("{entity_type}.synchronized.csv"))
}

/// A table compared with the one last synchronized.
pub(super) struct Compared {
    /// The records that differ, to prepare.
    pub subset: Subset,
    /// The store's index of the keys of the records that differ, new and old.
    pub index: Keyed<IndexEntry>,
    /// The value digests of those resources, by id (what `Prepared::settle` compares).
    pub values: HashMap<i64, [u8; 16]>,
    /// Records equal to one of the last table.
    pub unchanged: u64,
    /// The carried link cells (see `prepare::Carried`) of the old records that differ, by
    /// resource id: a changed row whose cells are the same keeps its links.
    pub old_cells: HashMap<i64, Vec<String>>,
    /// The digest of the new table's bytes, and their count.
    pub digest: (u128, u64),
}

/// Records beyond which comparing with the store's index costs less: an eighth of the table.
fn limit(resources: u64) -> usize {
    usize::try_from(resources / 8 + 1024).unwrap_or(usize::MAX)
}

/// A comparison under way (on a blocking thread, while the run counts the store's resources).
pub(super) struct Pending {
    saved: TableDigest,
    started: std::time::Instant,
    diff: tokio::task::JoinHandle<Option<std::io::Result<Outcome>>>,
    /// The header, then the differing records in batches (each record ending with a line
    /// feed), as the comparison finds them.
    found: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
}

/// Differing records per batch sent while the tables are compared.
const FOUND_BATCH: usize = 256;

/// Starts comparing `plan`'s table with the copy of the one last synchronized, when the store
/// holds its digest for this mapping; None otherwise.
pub(super) async fn start(
    tx: &mut SyncTx<'_>,
    keys: &KeyHasher,
    plan: &TablePlan,
    copy: PathBuf,
) -> Result<Option<Pending>, EngineError> {
    let et = plan.entity_type.as_str();
    let Some(saved) = tx.table_digest(et).await? else {
        return Ok(None);
    };
    let Some(saved) = TableDigest::from_bytes(&saved) else {
        tracing::warn!(entity_type = %et, "the digest of the table last synchronized is unreadable: comparing with the store's index");
        return Ok(None);
    };
    if saved.mapping != plan.fingerprint() {
        return Ok(None);
    }
    let (new, seed, limit) = (plan.path.clone(), keys.seed(), limit(saved.records));
    // Unbounded, so that a comparison never waits for its run to look up (it may be the next
    // mapping's): what it holds is also in the diff, at most an eighth of the table.
    let (sender, found) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let diff = tokio::task::spawn_blocking(move || {
        // A copy gone, or no table: the run goes on as without a copy (and says why). Only a
        // plain file of the size saved is read (not a pipe, a device or a link to one).
        let plain = |m: std::fs::Metadata| m.is_file() && m.len() == saved.size;
        if !std::fs::symlink_metadata(&copy).is_ok_and(plain) {
            return None;
        }
        let (Ok(old), Ok(new)) = (std::fs::File::open(&copy), std::fs::File::open(&new)) else {
            return None;
        };
        if !old.metadata().is_ok_and(plain) {
            return None;
        }
        // Sent as found (a receiver gone only means nobody looks them up early).
        let (mut batch, mut records, mut header) = (Vec::new(), 0, true);
        let compared = std::time::Instant::now();
        let r = lines::diff(old.take(saved.size), new, seed, limit, |record| {
            if header {
                header = false;
                let _ = sender.send(record.to_vec());
                return;
            }
            batch.extend_from_slice(record);
            batch.push(b'\n');
            records += 1;
            if records == FOUND_BATCH {
                records = 0;
                let _ = sender.send(std::mem::take(&mut batch));
            }
        });
        if records > 0 {
            let _ = sender.send(batch);
        }
        // The comparison alone: the look-ups of the keys it finds go on beside it.
        tracing::debug!(
            seconds = compared.elapsed().as_secs_f64(),
            "the tables read and compared"
        );
        Some(r)
    });
    Ok(Some(Pending {
        saved,
        started: std::time::Instant::now(),
        diff,
        found,
    }))
}

/// Finishes a comparison: when everything agrees (see the module), the records that differ
/// and the store's index of their keys; None otherwise. `resources` is the store's count of
/// the entity type's resources.
pub(super) async fn finish(
    tx: &mut SyncTx<'_>,
    keys: &KeyHasher,
    plan: &TablePlan,
    resources: u64,
    pending: Pending,
) -> Result<Option<Compared>, EngineError> {
    let et = plan.entity_type.as_str();
    let Pending {
        saved,
        started,
        diff,
        mut found,
    } = pending;
    // The keys of the differing records are looked up as the comparison finds them (up to a
    // few percent of the table: past that the comparison may well give up), the rest after.
    let key_column = &plan.columns[0].column;
    let early = usize::try_from(resources / 32).unwrap_or(usize::MAX);
    let mut index: HashMap<String, (i64, Digest)> = HashMap::new();
    let mut asked: HashSet<String> = HashSet::new();
    let mut header: Option<Vec<u8>> = None;
    while let Some(batch) = found.recv().await {
        let Some(h) = &header else {
            header = Some(batch);
            continue;
        };
        if asked.len() >= early {
            continue;
        }
        let mut text = h.clone();
        text.push(b'\n');
        text.extend_from_slice(&batch);
        let Some(records) = records_of(&text, key_column, &[]) else {
            continue;
        };
        let keys: Vec<String> = records
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !k.trim().is_empty() && asked.insert(k.clone()))
            .collect();
        look_up(tx, et, &keys, &mut index).await?;
    }
    let outcome = diff
        .await
        .map_err(|e| EngineError::Contract(format!("a background task failed: {e}")))?;
    let d = match outcome {
        Some(Ok(Outcome::Diff(d))) => d,
        Some(Ok(other)) => {
            tracing::info!(entity_type = %et, outcome = ?other, "the table is compared with the store's index");
            return Ok(None);
        }
        Some(Err(e)) => {
            tracing::warn!(entity_type = %et, error = %e, "the table last synchronized could not be read: comparing with the store's index");
            return Ok(None);
        }
        None => return Ok(None),
    };
    if d.old_digest != saved.bytes || d.old_count != resources || saved.records != resources {
        tracing::warn!(entity_type = %et, "the copy of the table last synchronized is not the one the store holds: comparing with the store's index");
        return Ok(None);
    }
    let read = started.elapsed().as_secs_f64();
    let carried: Vec<&str> = plan.carried.iter().map(|c| c.column.as_str()).collect();
    let (Some(old), Some(new_keys)) = (
        records_of(&d.old_records, key_column, &carried),
        records_of(&d.new_records, key_column, &[]),
    ) else {
        return Ok(None);
    };
    let new_keys: Vec<String> = new_keys.into_iter().map(|(k, _)| k).collect();
    let (old_keys, cells): (Vec<String>, Vec<Vec<String>>) = old.into_iter().unzip();
    let old_set: HashSet<&str> = old_keys.iter().map(String::as_str).collect();
    if old_set.len() != old_keys.len() || old_set.contains("") {
        return Ok(None);
    }
    let mut wanted: Vec<&str> = old_keys.iter().map(String::as_str).collect();
    wanted.extend(
        new_keys
            .iter()
            .map(String::as_str)
            .filter(|k| !k.trim().is_empty() && !old_set.contains(k)),
    );
    let rest: Vec<String> = wanted
        .iter()
        .filter(|k| !asked.contains(**k))
        .map(|k| k.to_string())
        .collect();
    look_up(tx, et, &rest, &mut index).await?;
    // Only the keys wanted (the early look-ups may have asked for more: new keys that are
    // old ones too, or blank).
    let wanted: HashSet<&str> = wanted.into_iter().collect();
    let mut values = HashMap::new();
    let found: HashMap<String, IndexEntry> = index
        .into_iter()
        .filter(|(key, _)| wanted.contains(key.as_str()))
        .map(|(key, (id, digest))| {
            values.insert(id, digest.value);
            let entry = IndexEntry {
                id,
                raw: digest.raw,
                mark: 0,
            };
            (key, entry)
        })
        .collect();
    // Every old record is a resource; a new record's key held by a resource is that of an old
    // record that changed (else the key is also on an unchanged record: a duplicate, which
    // the whole comparison sets aside).
    if old_keys.iter().any(|k| !found.contains_key(k))
        || new_keys
            .iter()
            .any(|k| found.contains_key(k) && !old_set.contains(k.as_str()))
    {
        tracing::info!(entity_type = %et, "a key of a changed record is on an unchanged one: the table is compared with the store's index");
        return Ok(None);
    }
    let old_cells = old_keys
        .iter()
        .zip(cells)
        .filter_map(|(k, c)| found.get(k).map(|e| (e.id, c)))
        .collect();
    let index: Keyed<IndexEntry> = found.into_iter().map(|(k, e)| (keys.of(&k), e)).collect();
    tracing::debug!(entity_type = %et, read, looked_up = started.elapsed().as_secs_f64() - read, "the tables compared, the keys of the records that differ looked up");
    Ok(Some(Compared {
        subset: Subset {
            text: d.new_records,
            lines: d.new_lines,
        },
        index,
        values,
        unchanged: d.unchanged,
        old_cells,
        digest: d.new_digest,
    }))
}

/// Looks `keys` up in the store's resources of `entity_type`, into `index`.
async fn look_up(
    tx: &mut SyncTx<'_>,
    entity_type: &str,
    keys: &[String],
    index: &mut HashMap<String, (i64, Digest)>,
) -> Result<(), EngineError> {
    if keys.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    for (key, id, digest) in tx.resources_of_keys(entity_type, &keys).await? {
        index.insert(key, (id, digest));
    }
    Ok(())
}

/// The key cell and the `cells` of each record of `table` (a header and records), or None
/// when it is not readable as the prepare pass reads it (the comparison by index then says
/// why).
fn records_of(table: &[u8], key: &str, cells: &[&str]) -> Option<Vec<(String, Vec<String>)>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(table);
    let header = r.headers().ok()?.clone();
    let i = find_column(&header, key)?;
    let at: Vec<usize> = cells
        .iter()
        .map(|c| find_column(&header, c))
        .collect::<Option<_>>()?;
    let mut out = Vec::new();
    for record in r.records() {
        let record = record.ok()?;
        let cells = at
            .iter()
            .map(|&c| record.get(c).unwrap_or("").to_string())
            .collect();
        out.push((record.get(i)?.to_string(), cells));
    }
    Some(out)
}

/// Keeps `table` as the copy of the table last synchronized (a hard link, else a copy); the
/// store's digest says whether it is the right one, so a failure only costs the next run
/// its shortcut.
pub(super) fn keep_copy(table: &Path, copy: &Path) {
    let new = copy.with_extension("csv.new");
    let _ = std::fs::remove_file(&new);
    let r = std::fs::hard_link(table, &new)
        .or_else(|_| std::fs::copy(table, &new).map(|_| ()))
        .and_then(|()| std::fs::rename(&new, copy));
    if let Err(e) = r {
        let _ = std::fs::remove_file(&new);
        tracing::warn!(table = %table.display(), copy = %copy.display(), error = %e, "the table synchronized could not be kept for the next run's comparison");
    }
}
