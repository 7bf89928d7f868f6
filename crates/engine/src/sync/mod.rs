//! Synchronization (SPEC §5): a connector's exported tables into the identity store.
//!
//! For each entity type mapping of the connector, [`prepare`] reads its table and diffs it
//! against the store's rows of the entity type; thresholds are checked on the counts; then the
//! changes, and the links of the connector's association mappings, are applied in one store
//! transaction, so a run killed at any instant leaves the store as before or as after it. A
//! blocked run changes nothing and says which threshold, the count and the limit.

pub mod keys;
mod last;
mod lines;
pub mod prepare;
pub mod thresholds;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use idlink_model::config::{EntityAssociationMapping, EntityTypeMapping, SyncThresholds};
use idlink_model::values::ValueFormat;
use idlink_packages::api::Progress;
use idlink_store::{SnapshotEntry, Store, SyncTx};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{Engine, EngineError, blocking};
use keys::{KeyHasher, Keyed};
pub use prepare::{Apply, BadValue, Counts, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use thresholds::{Blocked, LinkCounts};

/// How a run treats the tables (SPEC §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SyncMode {
    /// A plain load: no thresholds.
    Initial,
    /// The tables are the whole system: rows absent from them are deleted.
    Complete,
    /// The tables hold changes only (`Command` column: Insert, Update, Delete).
    Incremental,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "initial" => Ok(SyncMode::Initial),
            "complete" => Ok(SyncMode::Complete),
            "incremental" => Ok(SyncMode::Incremental),
            _ => Err(format!(
                "'{s}' is not a synchronization mode: use initial, complete or incremental"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub mode: SyncMode,
    /// Run even when a threshold is exceeded.
    pub force: bool,
}

/// What one entity type mapping did.
#[derive(Debug, Clone, Serialize)]
pub struct MappingReport {
    pub entity_type: String,
    pub table: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Resources of the entity type before the run.
    pub before: u64,
    pub bad_values: Vec<BadValue>,
    pub set_aside_files: Vec<PathBuf>,
    /// The table was compared with the one last synchronized, record by record, and only the
    /// records that differ were prepared (see `last`); else with the store's index.
    pub compared_with_last_table: bool,
}

/// What one association mapping did.
#[derive(Debug, Clone, Serialize)]
pub struct AssociationReport {
    pub association: String,
    pub table: String,
    #[serde(flatten)]
    pub counts: LinkCounts,
}

/// The run report, saved in `<work>/Reports/sync-<connector>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub connector: String,
    pub mode: SyncMode,
    pub forced: bool,
    pub mappings: Vec<MappingReport>,
    pub associations: Vec<AssociationReport>,
    /// Thresholds exceeded (with `--force`, the run went on; else nothing changed).
    pub exceeded: Vec<Blocked>,
    pub committed: bool,
    #[serde(serialize_with = "crate::secs")]
    pub duration: Duration,
    pub warnings: Vec<String>,
    /// Executed orders the committed run confirmed (Verified) or not yet (SPEC §6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::provision::verify::VerifyReport>,
}

impl Engine {
    /// Prepares and synchronizes the tables of `connector` found in `<work>/ExportOutput`.
    pub async fn sync(
        &self,
        store: &Store,
        connector: &str,
        options: &SyncOptions,
        progress: &dyn Progress,
        cancel: &CancellationToken,
    ) -> Result<SyncReport, EngineError> {
        let started = Instant::now();
        let config = &self.checked().config;
        let Some(conn) = config.connector(connector) else {
            let names = config.connectors.iter().map(|c| c.id.value.as_str());
            return Err(EngineError::UnknownConnector {
                id: connector.to_string(),
                suggestion: idlink_model::diag::did_you_mean(connector, names).map(str::to_string),
            });
        };
        let connector = conn.id.value.clone();
        let mappings: Vec<&EntityTypeMapping> = config
            .entity_type_mappings
            .iter()
            .filter(|m| m.connector.value == connector)
            .collect();
        let associations: Vec<&EntityAssociationMapping> = config
            .entity_association_mappings
            .iter()
            .filter(|m| m.connector.value == connector)
            .collect();
        if mappings.is_empty() && associations.is_empty() {
            return Err(EngineError::Data(format!(
                "connector '{connector}' has no entity type or association mapping: nothing to synchronize"
            )));
        }
        let lock = store.lock_connector(&connector, "sync").await?;
        let result = self
            .sync_locked(
                store,
                conn,
                &mappings,
                &associations,
                options,
                progress,
                cancel,
                started,
            )
            .await;
        // Released explicitly: a PostgreSQL lock dropped with its connection ends only when
        // the server notices, and the next run must not find it still held.
        let _ = lock.release().await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync_locked(
        &self,
        store: &Store,
        conn: &idlink_model::config::Connector,
        mappings: &[&EntityTypeMapping],
        associations: &[&EntityAssociationMapping],
        options: &SyncOptions,
        progress: &dyn Progress,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Result<SyncReport, EngineError> {
        let connector = conn.id.value.clone();
        let plans = mappings
            .iter()
            .map(|m| self.plan(m, mappings, associations))
            .collect::<Result<Vec<_>, _>>()?;
        let set_aside_dir = self.work_dir().join("Prepared");
        let apply = match options.mode {
            SyncMode::Incremental => Apply::Delta,
            _ => Apply::Whole,
        };
        let connector_limits = conn.thresholds.or(&SyncThresholds::CONNECTOR_DEFAULTS);
        let expected = if options.mode == SyncMode::Initial {
            crate::provision::verify::Expected::default()
        } else {
            self.expected_changes(store).await?
        };
        let mut tx = store.begin_sync(&connector).await?;
        // The store's seed: its index snapshots hold key hashes.
        let keys = KeyHasher::with_seed(tx.key_seed(KeyHasher::new().seed()).await?);
        let mut reports = Vec::new();
        let mut exceeded = Vec::new();
        let mut prepared_all = Vec::new();
        // The store's index of each entity type, kept for the next run's snapshot and for the
        // links: with the rows this run inserts, it maps every key to its id without reading
        // the table again. As a map for the entity types the links look up, else as a list
        // (a third of the memory).
        let mut indexes: HashMap<String, Kept> = HashMap::new();
        // Entity types whose index was read from their snapshot, with the entries it held.
        let mut snapshot_read: HashMap<String, u64> = HashMap::new();
        // Entity types whose table was compared with the one last synchronized (their index
        // holds only the keys of the records that differ), with their old records' carried
        // link cells, by resource id.
        let mut compared: HashMap<String, HashMap<i64, Vec<String>>> = HashMap::new();
        // Entity types whose key -> id map the links may need: the second side of every
        // association, and the first side of those its rows do not carry.
        let keyed = |et: &str| mappings.iter().any(|m| m.id.value == et);
        let carried_here = |a: &EntityAssociationMapping| {
            plans
                .iter()
                .any(|p| p.carried.iter().any(|c| c.association == a.id.value))
        };
        let mut needs_map: HashSet<String> = HashSet::new();
        for a in associations {
            let (s1, s2) = (
                &a.entity_property_mapping1.value,
                &a.entity_property_mapping2.value,
            );
            if keyed(&s1.entity_type) && !carried_here(a) {
                needs_map.insert(s1.entity_type.clone());
            }
            if keyed(&s2.entity_type) {
                needs_map.insert(s2.entity_type.clone());
            }
        }
        // A Complete run whose entity type the links need no map of compares its table with
        // the one last synchronized, when the store vouches for its copy: the tables are read
        // while the store counts its resources.
        let mut pending = Vec::with_capacity(plans.len());
        for plan in &plans {
            pending.push(
                if apply == Apply::Whole && !needs_map.contains(&plan.entity_type) {
                    let copy = last::copy_path(&set_aside_dir, &plan.entity_type);
                    last::start(&mut tx, &keys, plan, copy).await?
                } else {
                    None
                },
            );
        }
        // Resources of each mapping's entity type before the run.
        let mut sizes = Vec::with_capacity(plans.len());
        for plan in &plans {
            sizes.push(tx.count_resources(&plan.entity_type).await?);
        }
        for (k, ((plan, m), pending)) in plans.into_iter().zip(mappings).zip(pending).enumerate() {
            progress.phase(&format!("preparing {} ({})", plan.table, plan.entity_type));
            let phase = Instant::now();
            let n = sizes[k];
            let comparison = match pending {
                Some(p) if n > 0 => last::finish(&mut tx, &keys, &plan, n, p).await?,
                _ => None,
            };
            // The value digests of the resources compared (those of a comparison with the last
            // table were read with their keys).
            let mut values = None;
            let (plan, kept, mut prepared, inserted, before) = if let Some(c) = comparison {
                tracing::info!(entity_type = %plan.entity_type, unchanged = c.unchanged, differing = c.subset.lines.len(), seconds = phase.elapsed().as_secs_f64(), "compared with the table last synchronized");
                let stored = tx.snapshot_entries(&plan.entity_type).await?;
                if let Some(stored) = stored {
                    snapshot_read.insert(plan.entity_type.clone(), stored);
                }
                let (plan, index, mut prepared, inserted) = prepare_and_insert(
                    &mut tx,
                    &keys,
                    &connector,
                    plan,
                    c.index,
                    apply,
                    Some(c.subset),
                    &set_aside_dir,
                    cancel,
                )
                .await?;
                prepared.counts.rows += c.unchanged;
                prepared.counts.unchanged += c.unchanged;
                prepared.table_digest = Some(c.digest);
                compared.insert(plan.entity_type.clone(), c.old_cells);
                values = Some(c.values);
                (plan, Kept::Map(index), prepared, inserted, n)
            } else {
                // From the snapshot the last run saved, else from the resources themselves.
                let (mut index, snapshot) = snapshot_index(&mut tx, &plan.entity_type, n).await?;
                let from_snapshot = snapshot.is_some() && index.len() as u64 == n;
                if let (true, Some(entries)) = (from_snapshot, snapshot) {
                    snapshot_read.insert(plan.entity_type.clone(), entries);
                }
                if !from_snapshot {
                    if let Some(entries) = snapshot {
                        tracing::warn!(entity_type = %plan.entity_type, entries, resources = n, "the index snapshot does not match the store: reading the resources");
                    }
                    index.clear();
                    tx.each_resource(&plan.entity_type, |key, id, raw| {
                        index.insert(keys.of(key), idlink_store::IndexEntry { id, raw, mark: 0 });
                    })
                    .await?;
                }
                tracing::info!(entity_type = %plan.entity_type, rows = index.len(), from_snapshot, seconds = phase.elapsed().as_secs_f64(), "store index read");
                let before = index.len() as u64;
                let (plan, index, prepared, inserted) = prepare_and_insert(
                    &mut tx,
                    &keys,
                    &connector,
                    plan,
                    index,
                    apply,
                    None,
                    &set_aside_dir,
                    cancel,
                )
                .await?;
                // Kept as a list (a third of the memory) when the links need no map of it and
                // a large index is still to be read beside it.
                let later: u64 = sizes[k + 1..].iter().sum();
                let kept = if needs_map.contains(&plan.entity_type) || later < LIST_WHEN_LATER {
                    Kept::Map(index)
                } else {
                    Kept::List(
                        index
                            .into_iter()
                            .map(|(key_hash, e)| SnapshotEntry {
                                key_hash,
                                id: e.id,
                                raw: e.raw,
                            })
                            .collect(),
                    )
                };
                (plan, kept, prepared, inserted, before)
            };
            // Rows whose cells changed: an update only if their values did too.
            let candidates: Vec<i64> = prepared.candidates().map(|(id, _)| id).collect();
            if !candidates.is_empty() {
                let stored = match &values {
                    Some(v) => candidates
                        .iter()
                        .filter_map(|id| v.get(id).map(|d| (*id, *d)))
                        .collect(),
                    None => tx.value_digests(&candidates).await?,
                };
                prepared.settle(&stored);
            }
            indexes.insert(plan.entity_type.clone(), kept);
            tracing::info!(table = %plan.table, rows = prepared.counts.rows, seconds = phase.elapsed().as_secs_f64(), "prepared");
            if options.mode != SyncMode::Initial {
                // Changes idlink itself ordered (Executed orders) are expected: they do not count.
                let mut counted = prepared.counts.clone();
                if let Some(e) = expected.resources.get(&plan.entity_type) {
                    counted.inserted = counted.inserted.saturating_sub(e.0);
                    counted.updated = counted.updated.saturating_sub(e.1);
                    counted.deleted = counted.deleted.saturating_sub(e.2);
                }
                exceeded.extend(thresholds::check_resources(
                    &plan.entity_type,
                    &counted,
                    before,
                    &connector_limits,
                    &m.thresholds,
                ));
            }
            reports.push(MappingReport {
                entity_type: plan.entity_type.clone(),
                table: plan.table.clone(),
                counts: prepared.counts.clone(),
                before,
                bad_values: prepared.bad_values.clone(),
                set_aside_files: prepared.set_aside_files.clone(),
                compared_with_last_table: compared.contains_key(&plan.entity_type),
            });
            prepared_all.push((plan, std::sync::Arc::new(prepared), inserted));
        }
        let mut warnings = Vec::new();
        for r in &reports {
            let c = &r.counts;
            if c.set_aside() > 0 {
                warnings.push(format!(
                    "{}: {} row(s) set aside ({} without primary key, {} with a duplicate key, {} with a bad value); see {}",
                    r.table,
                    c.set_aside(),
                    c.nullpk,
                    c.duplicates,
                    c.invalid,
                    set_aside_dir.display()
                ));
            }
        }
        let blocked = !exceeded.is_empty() && !options.force;
        let report = |reports, associations, exceeded, committed, warnings| SyncReport {
            connector: connector.clone(),
            mode: options.mode,
            forced: options.force,
            mappings: reports,
            associations,
            exceeded,
            committed,
            duration: started.elapsed(),
            warnings,
            verification: None,
        };
        if blocked {
            tx.rollback().await?;
            let r = report(reports, Vec::new(), exceeded, false, warnings);
            self.save_sync_report(&r).await;
            return Err(EngineError::Blocked(Box::new(r)));
        }
        // Associations whose links the entity table's rows carry (see `prepare::Carried`) are
        // applied from the changed rows alone when the rows that did not change cannot have
        // gained a link: the other side is this connector's, found by its key, and got no new
        // resource in this run, or no row of this side is unchanged.
        let counts_of = |et: &str| {
            reports
                .iter()
                .find(|r| r.entity_type == et)
                .map(|r| r.counts.clone())
        };
        let mut from_rows: HashSet<String> = HashSet::new();
        if apply == Apply::Whole {
            for (plan, _, _) in &prepared_all {
                for c in &plan.carried {
                    let Some(a) = associations.iter().find(|a| a.id.value == c.association) else {
                        continue;
                    };
                    let side2 = &a.entity_property_mapping2.value;
                    let by_key = key_property(mappings, &side2.entity_type).as_deref()
                        == Some(side2.property.as_str());
                    let (Some(other), Some(this)) =
                        (counts_of(&side2.entity_type), counts_of(&plan.entity_type))
                    else {
                        continue;
                    };
                    if by_key && (other.inserted == 0 || this.unchanged == 0) {
                        from_rows.insert(c.association.clone());
                    }
                }
            }
        }
        // The generic link pass needs both sides' maps; the row-carried one only the other
        // side's.
        needs_map.clear();
        for a in associations {
            let (s1, s2) = (
                &a.entity_property_mapping1.value,
                &a.entity_property_mapping2.value,
            );
            if !from_rows.contains(&a.id.value) {
                needs_map.insert(s1.entity_type.clone());
            }
            needs_map.insert(s2.entity_type.clone());
        }
        let mut ids_by_key: HashMap<String, std::sync::Arc<Keyed<i64>>> = HashMap::new();
        let mut carried_cells: HashMap<String, CarriedCells> = HashMap::new();
        for (plan, prepared, inserted) in prepared_all.iter_mut() {
            progress.phase(&format!("synchronizing {}", plan.entity_type));
            let phase = Instant::now();
            let mut inserted = std::mem::take(inserted);
            let changed = apply_changes(
                &mut tx,
                &plan.entity_type,
                prepared,
                &mut inserted.carried,
                compared.get(&plan.entity_type),
                cancel,
            )
            .await?;
            for (c, cells) in plan.carried.iter().zip(inserted.carried) {
                if from_rows.contains(&c.association) {
                    carried_cells.insert(c.association.clone(), cells);
                }
            }
            // The entity type as this run leaves it: the index without the deleted rows, with
            // the new digests of the changed ones, and the rows just inserted. It is the next
            // run's index (the snapshot) and the links' key -> id map.
            let mut index = indexes
                .remove(&plan.entity_type)
                .unwrap_or(Kept::List(Vec::new()));
            let deleted: HashSet<i64> = prepared.deletes.iter().copied().collect();
            let unchanged = changed.is_empty() && deleted.is_empty() && inserted.entries.is_empty();
            let read = snapshot_read.get(&plan.entity_type).copied();
            // Resources before the run.
            let size = reports
                .iter()
                .find(|r| r.entity_type == plan.entity_type)
                .map_or(index.len() as u64, |r| r.before);
            // A table compared with the last one: its index holds the keys of the records that
            // differ alone.
            let partial = compared.contains_key(&plan.entity_type);
            if needs_map.contains(&plan.entity_type) {
                let ids: Keyed<i64> = if partial {
                    // The store's resources as this run leaves them (rare: the links needed
                    // no map of it when the run began).
                    let mut ids = Keyed::default();
                    tx.each_resource(&plan.entity_type, |key, id, _| {
                        ids.insert(keys.of(key), id);
                    })
                    .await?;
                    ids
                } else {
                    index
                        .iter()
                        .filter(|e| !deleted.contains(&e.id))
                        .map(|e| (e.key_hash, e.id))
                        .chain(inserted.entries.iter().map(|e| (e.key_hash, e.id)))
                        .collect()
                };
                ids_by_key.insert(plan.entity_type.clone(), std::sync::Arc::new(ids));
            }
            // The table is kept for the next run to compare with (see `last`): the next run
            // reads no snapshot, so none is written unless one was read (a million resources
            // are 32 MiB of snapshot). A run that cannot compare reads the resources once and
            // saves one.
            let kept_table = apply == Apply::Whole && prepared.table_to_keep().is_some();
            let changes = (changed.len() + deleted.len() + inserted.entries.len()) as u64;
            let appendable = |read: Option<u64>| {
                read.is_some_and(|stored| stored + changes <= size + (size / 4).max(SNAPSHOT_SLACK))
            };
            match read {
                // A run that changed nothing of a snapshot it read leaves it as it is.
                Some(_) if unchanged => {}
                // A few changes to a snapshot it read: appended, not the whole index again
                // (a million entries are 32 MiB, written twice by SQLite's WAL), until the
                // changes kept reach a quarter of the index.
                read if appendable(read) => {
                    let delta: Vec<SnapshotEntry> = index
                        .iter()
                        .filter_map(|e| {
                            if deleted.contains(&e.id) {
                                Some(SnapshotEntry { id: 0, raw: 0, ..e })
                            } else {
                                changed.get(&e.id).map(|&raw| SnapshotEntry { raw, ..e })
                            }
                        })
                        .chain(std::mem::take(&mut inserted.entries))
                        .collect();
                    drop((index, deleted, changed));
                    tx.append_snapshot(&plan.entity_type, delta.into_iter())
                        .await?;
                }
                // None read, and the table kept: no snapshot, and none left from before (not
                // trusted, unreadable, or not read).
                None if kept_table => tx.delete_snapshot(&plan.entity_type).await?,
                _ => {
                    if partial {
                        // The index holds the records that differed alone: the whole one is
                        // the snapshot's as it was before the run, else the store's resources
                        // as the run leaves them but for the rows it inserted (added below).
                        let (full, snapshot) =
                            snapshot_index(&mut tx, &plan.entity_type, size).await?;
                        index = if snapshot.is_some() && full.len() as u64 == size {
                            Kept::Map(full)
                        } else {
                            drop(full);
                            let new: HashSet<i64> = inserted.entries.iter().map(|e| e.id).collect();
                            let mut full = Keyed::default();
                            tx.each_resource(&plan.entity_type, |key, id, raw| {
                                if !new.contains(&id) {
                                    let e = idlink_store::IndexEntry { id, raw, mark: 0 };
                                    full.insert(keys.of(key), e);
                                }
                            })
                            .await?;
                            Kept::Map(full)
                        };
                    }
                    let entries = index
                        .into_entries()
                        .filter(move |e| !deleted.contains(&e.id))
                        .map(move |e| SnapshotEntry {
                            raw: changed.get(&e.id).copied().unwrap_or(e.raw),
                            ..e
                        })
                        .chain(std::mem::take(&mut inserted.entries));
                    tx.save_snapshot(&plan.entity_type, entries).await?;
                }
            }
            tracing::info!(entity_type = %plan.entity_type, seconds = phase.elapsed().as_secs_f64(), "resources applied");
            progress.rows(&plan.table, prepared.counts.rows);
        }
        drop(indexes);
        // Links read from an entity table skip the rows set aside from it.
        let set_aside_keys: HashMap<String, std::sync::Arc<HashSet<Box<str>>>> = prepared_all
            .iter()
            .map(|(plan, p, _)| (plan.table.clone(), std::sync::Arc::new(p.set_aside_keys())))
            .collect();
        let mut assoc_reports = Vec::new();
        for a in associations {
            progress.phase(&format!("linking {}", a.id.value));
            let phase = Instant::now();
            let (table, counts) = match carried_cells.remove(&a.id.value) {
                Some(cells) => {
                    let side2 = &a.entity_property_mapping2.value.entity_type;
                    let ids2 = ids_by_key.get(side2).cloned().unwrap_or_default();
                    let table = prepared_all
                        .iter()
                        .find(|(p, _, _)| p.carried.iter().any(|c| c.association == a.id.value))
                        .map(|(p, _, _)| p.table.clone())
                        .unwrap_or_default();
                    let counts =
                        apply_carried_links(&mut tx, &a.id.value, cells, &keys, &ids2).await?;
                    (table, counts)
                }
                None => {
                    self.apply_links(
                        &mut tx,
                        a,
                        mappings,
                        &keys,
                        &ids_by_key,
                        &set_aside_keys,
                        apply,
                        cancel,
                    )
                    .await?
                }
            };
            if options.mode != SyncMode::Initial {
                let mut counted = counts.clone();
                if let Some(e) = expected.links.get(&a.id.value) {
                    counted.added = counted.added.saturating_sub(e.0);
                    counted.removed = counted.removed.saturating_sub(e.1);
                }
                exceeded.extend(thresholds::check_links(
                    &a.id.value,
                    &counted,
                    &connector_limits,
                    &a.thresholds,
                ));
            }
            tracing::info!(association = %a.id.value, added = counts.added, removed = counts.removed, seconds = phase.elapsed().as_secs_f64(), "links applied");
            assoc_reports.push(AssociationReport {
                association: a.id.value.clone(),
                table,
                counts,
            });
        }
        if !exceeded.is_empty() && !options.force {
            tx.rollback().await?;
            let r = report(reports, assoc_reports, exceeded, false, warnings);
            self.save_sync_report(&r).await;
            return Err(EngineError::Blocked(Box::new(r)));
        }
        if cancel.is_cancelled() {
            tx.rollback().await?;
            return Err(EngineError::Cancelled {
                what: "the synchronization",
                connection: connector,
            });
        }
        // Each table now whole in the store, nothing set aside, is the next run's to compare
        // with: its digest goes in with the run, its copy is kept as the run commits.
        let mut copies = Vec::new();
        if apply == Apply::Whole {
            for (plan, prepared, _) in &prepared_all {
                let Some((bytes, size)) = prepared.table_to_keep() else {
                    continue;
                };
                let digest = last::TableDigest {
                    bytes,
                    mapping: plan.fingerprint(),
                    records: prepared.counts.rows,
                    size,
                };
                tx.save_table_digest(&plan.entity_type, &digest.to_bytes())
                    .await?;
                copies.push((
                    plan.path.clone(),
                    last::copy_path(&set_aside_dir, &plan.entity_type),
                ));
            }
        }
        let phase = Instant::now();
        // The copies are kept while the store commits (replacing the old ones frees their
        // blocks, file system work that overlaps the commit's): a commit that fails leaves the
        // store's digests those of the old copies, so the next run finds them not to match
        // and compares with the store's index instead.
        let keeping = blocking(move || {
            for (table, copy) in copies {
                last::keep_copy(&table, &copy);
            }
            Ok(())
        });
        let (committed, _) = tokio::join!(tx.commit(), keeping);
        committed?;
        tracing::info!(seconds = phase.elapsed().as_secs_f64(), "committed");
        let mut r = report(reports, assoc_reports, exceeded, true, warnings);
        // The committed resources confirm (or not yet) the orders executed into this system.
        match self.verify_orders(store, &connector).await {
            Ok(v) => r.verification = (v.checked > 0).then_some(v),
            Err(e) => r
                .warnings
                .push(format!("the executed orders could not be verified: {e}")),
        }
        self.save_sync_report(&r).await;
        Ok(r)
    }

    fn plan(
        &self,
        m: &EntityTypeMapping,
        mappings: &[&EntityTypeMapping],
        associations: &[&EntityAssociationMapping],
    ) -> Result<prepare::TablePlan, EngineError> {
        let config = &self.checked().config;
        let et = config.entity_type(&m.id.value).ok_or_else(|| {
            EngineError::Data(format!(
                "mapping '{}' has no entity type of that name",
                m.id.value
            ))
        })?;
        let mut columns = Vec::new();
        let mut pk = None;
        for p in &m.properties {
            let ty = et.property(&p.id.value).map(|x| x.ty).unwrap_or_default();
            let col = prepare::MappedColumn {
                property: p.id.value.clone(),
                column: p.connection_column.value.clone(),
                ty,
                format: ValueFormat::parse(p.format.as_deref().unwrap_or("")),
            };
            if p.is_primary_key && pk.is_none() {
                pk = Some(col);
            } else {
                columns.push(col);
            }
        }
        let Some(pk) = pk else {
            return Err(EngineError::Data(format!(
                "mapping '{}' has no primary key: mark one property IsPrimaryKey=\"true\"",
                m.id.value
            )));
        };
        // The associations whose table is this one, keyed on its primary key column: each row
        // carries its own links.
        let carried = associations
            .iter()
            .filter(|a| {
                let side1 = &a.entity_property_mapping1.value;
                side1.entity_type == m.id.value
                    && association_table(a, mappings).as_deref()
                        == Some(m.connection_table.value.as_str())
                    && key_property(mappings, &side1.entity_type).as_deref()
                        == Some(side1.property.as_str())
                    && a.column1.value.eq_ignore_ascii_case(&pk.column)
            })
            .map(|a| prepare::Carried {
                association: a.id.value.clone(),
                column: a.column2.value.clone(),
            })
            .collect();
        columns.insert(0, pk);
        Ok(prepare::TablePlan {
            entity_type: m.id.value.clone(),
            table: m.connection_table.value.clone(),
            path: self.table_path(&m.connection_table.value),
            columns,
            carried,
        })
    }

    fn table_path(&self, table: &str) -> PathBuf {
        self.work_dir()
            .join("ExportOutput")
            .join(format!("{table}.csv"))
    }

    async fn save_sync_report(&self, r: &SyncReport) {
        let dir = self.work_dir().join("Reports");
        let path = dir.join(format!("sync-{}.json", r.connector));
        let Ok(text) = serde_json::to_string_pretty(r) else {
            return;
        };
        let _ = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
            idlink_packages::output::write_atomic(&path, text.as_bytes())
                .map_err(|e| EngineError::io("write", &path, e))
        })
        .await;
    }

    /// Resolves the association mapping's table into links and applies the difference.
    #[allow(clippy::too_many_arguments)]
    async fn apply_links(
        &self,
        tx: &mut SyncTx<'_>,
        a: &EntityAssociationMapping,
        mappings: &[&EntityTypeMapping],
        keys: &KeyHasher,
        ids_by_key: &HashMap<String, std::sync::Arc<Keyed<i64>>>,
        set_aside_keys: &HashMap<String, std::sync::Arc<HashSet<Box<str>>>>,
        apply: Apply,
        cancel: &CancellationToken,
    ) -> Result<(String, LinkCounts), EngineError> {
        let side1 = &a.entity_property_mapping1.value;
        let side2 = &a.entity_property_mapping2.value;
        let table = association_table(a, mappings).ok_or_else(|| {
            EngineError::Data(format!(
                "association mapping '{}' has no ConnectionTable and entity type '{}' has no mapping in this connector",
                a.id.value, side1.entity_type
            ))
        })?;
        let path = self.table_path(&table);
        let by = |p: &idlink_model::config::PropertyRef| {
            if key_property(mappings, &p.entity_type).as_deref() == Some(p.property.as_str()) {
                None
            } else {
                Some(p.property.clone())
            }
        };
        // Resources found by key come from this run's maps; by another property, or of an
        // entity type another connector maps, from the store.
        let mut read_ids = async |p: &idlink_model::config::PropertyRef| {
            let by = by(p);
            match (&by, ids_by_key.get(&p.entity_type)) {
                (None, Some(ids)) => Ok(ids.clone()),
                _ => tx
                    .resource_ids(&p.entity_type, by.as_deref())
                    .await
                    .map(|ids| {
                        std::sync::Arc::new(
                            ids.into_iter()
                                .map(|(k, id)| (keys.of(&k), id))
                                .collect::<Keyed<i64>>(),
                        )
                    }),
            }
        };
        let ids1 = read_ids(side1).await?;
        let ids2 = if side1 == side2 {
            None
        } else {
            Some(read_ids(side2).await?)
        };
        let existing = tx.link_set(&a.id.value).await?;
        // When the table is side 1's entity table, keyed by its primary key, the rows set aside
        // from it carry no links either.
        let skip = mappings
            .iter()
            .any(|m| {
                m.id.value == side1.entity_type
                    && m.connection_table.value == table
                    && by(side1).is_none()
            })
            .then(|| set_aside_keys.get(&table).cloned())
            .flatten()
            .unwrap_or_default();
        let read = Instant::now();
        let (c1, c2) = (a.column1.value.clone(), a.column2.value.clone());
        let token = cancel.clone();
        let assoc = a.id.value.clone();
        let tname = table.clone();
        let keys = *keys;
        let (add, remove, mut counts) = blocking(move || {
            let ids2 = ids2.as_ref().unwrap_or(&ids1);
            links::diff(
                &keys,
                &assoc,
                &tname,
                &path,
                &c1,
                &c2,
                &ids1,
                ids2,
                &existing,
                &skip,
                apply,
                &|| token.is_cancelled(),
            )
        })
        .await?;
        tracing::debug!(
            seconds = read.elapsed().as_secs_f64(),
            "link table read and diffed"
        );
        let added = add.len() as u64;
        tx.insert_links(&a.id.value, add).await?;
        tx.delete_links(&a.id.value, &remove).await?;
        counts.added = added;
        counts.removed = remove.len() as u64;
        Ok((table, counts))
    }
}

/// The table of an association mapping: its own, or the first side's entity type mapping's.
fn association_table(
    a: &EntityAssociationMapping,
    mappings: &[&EntityTypeMapping],
) -> Option<String> {
    match &a.connection_table {
        Some(t) => Some(t.value.clone()),
        None => mappings
            .iter()
            .find(|m| m.id.value == a.entity_property_mapping1.value.entity_type)
            .map(|m| m.connection_table.value.clone()),
    }
}

/// The primary key property of `entity_type`'s mapping in this connector.
fn key_property(mappings: &[&EntityTypeMapping], entity_type: &str) -> Option<String> {
    mappings
        .iter()
        .find(|m| m.id.value == entity_type)
        .and_then(|m| m.properties.iter().find(|p| p.is_primary_key))
        .map(|p| p.id.value.clone())
}

/// Reads `entity_type`'s index snapshot into a map sized for `n` resources; with the entries
/// it held, or None when there is none (or it is unreadable: a snapshot is derived data, so it
/// is only not used).
async fn snapshot_index(
    tx: &mut SyncTx<'_>,
    entity_type: &str,
    n: u64,
) -> Result<(Keyed<idlink_store::IndexEntry>, Option<u64>), EngineError> {
    // Sized at once: a map that grows holds its old and new tables together.
    let mut index: Keyed<idlink_store::IndexEntry> =
        Keyed::with_capacity_and_hasher(usize::try_from(n).unwrap_or(0), Default::default());
    let snapshot = tx
        .each_snapshot_entry(entity_type, |e| {
            // Later chunks (a run's changes) overwrite earlier entries; id 0 is a resource
            // deleted.
            if e.id == 0 {
                index.remove(&e.key_hash);
            } else {
                index.insert(
                    e.key_hash,
                    idlink_store::IndexEntry {
                        id: e.id,
                        raw: e.raw,
                        mark: 0,
                    },
                );
            }
        })
        .await;
    let snapshot = match snapshot {
        Err(idlink_store::StoreError::Corrupt { message, .. }) => {
            tracing::warn!(entity_type = %entity_type, %message, "the index snapshot is unreadable: reading the resources");
            None
        }
        other => other?,
    };
    Ok((index, snapshot))
}

/// The link cells of the rows written in this run, for one row-carried association: the
/// row's resource id and its cell, the cells end to end in one text.
#[derive(Debug, Default)]
struct CarriedCells {
    ids: Vec<i64>,
    ends: Vec<usize>,
    text: String,
    /// The ids that were in the store before (updated rows): only they can have links.
    updated: Vec<i64>,
}

impl CarriedCells {
    fn push(&mut self, id: i64, cell: &str, updated: bool) {
        self.ids.push(id);
        self.text.push_str(cell);
        self.ends.push(self.text.len());
        if updated {
            self.updated.push(id);
        }
    }

    /// Keeps the rows whose id `keep` says.
    fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        let mut kept = CarriedCells::default();
        for (id, cell) in self.iter() {
            if keep(id) {
                kept.push(id, cell, false);
            }
        }
        kept.updated = self
            .updated
            .iter()
            .copied()
            .filter(|id| keep(*id))
            .collect();
        *self = kept;
    }

    fn iter(&self) -> impl Iterator<Item = (i64, &str)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.ids
            .iter()
            .zip(starts.zip(self.ends.iter()))
            .map(|(id, (a, z))| (*id, &self.text[a..*z]))
    }
}

/// What a table's inserts gave, gathered while it is read.
#[derive(Debug, Default)]
struct Inserted {
    /// Key hash, id and raw digest of each row inserted.
    entries: Vec<SnapshotEntry>,
    /// The carried link cells of the rows written, one per carried column of the plan.
    carried: Vec<CarriedCells>,
}

/// An entity type's index as read before the run, kept to the end of its preparation.
enum Kept {
    /// By key hash: the links look keys up in it.
    Map(Keyed<idlink_store::IndexEntry>),
    List(Vec<SnapshotEntry>),
}

impl Kept {
    fn len(&self) -> usize {
        match self {
            Kept::Map(m) => m.len(),
            Kept::List(l) => l.len(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = SnapshotEntry> + '_> {
        match self {
            Kept::Map(m) => Box::new(m.iter().map(|(&key_hash, e)| SnapshotEntry {
                key_hash,
                id: e.id,
                raw: e.raw,
            })),
            Kept::List(l) => Box::new(l.iter().copied()),
        }
    }

    fn into_entries(self) -> Box<dyn Iterator<Item = SnapshotEntry> + Send> {
        match self {
            Kept::Map(m) => Box::new(m.into_iter().map(|(key_hash, e)| SnapshotEntry {
                key_hash,
                id: e.id,
                raw: e.raw,
            })),
            Kept::List(l) => Box::new(l.into_iter()),
        }
    }
}

/// Resources still to be read by a run beyond which the indexes read before are kept as lists.
const LIST_WHEN_LATER: u64 = 100_000;

/// Changes a snapshot keeps appended beyond a quarter of its entries (small entity types).
const SNAPSHOT_SLACK: u64 = 1024;

/// Rows per store write at most: PostgreSQL sends each batch as one COPY.
const BATCH: usize = 10_000;
/// Bytes of values per store write at most: wide rows (photos, large groups) make batches of
/// fewer rows, so that memory follows this bound, not the rows' width times [`BATCH`].
const BATCH_BYTES: usize = 8 << 20;

/// What an item handed to a store write weighs in memory, about: its values' bytes.
pub(crate) trait Weight {
    fn weight(&self) -> usize;
}

/// Runs `produce` on a blocking thread; what it hands to its sink arrives on the receiver in
/// batches of [`BATCH`] items or [`BATCH_BYTES`] bytes, whichever comes first (a few batches
/// in flight: memory never holds the whole table, however wide its rows). When the receiver
/// is dropped (the store write failed), the sink fails and `produce` stops.
fn produce_in_batches<T: Weight + Send + 'static, R: Send + 'static>(
    produce: impl FnOnce(&mut dyn FnMut(T) -> Result<(), EngineError>) -> Result<R, EngineError>
    + Send
    + 'static,
) -> (
    tokio::sync::mpsc::Receiver<Vec<T>>,
    tokio::task::JoinHandle<Result<R, EngineError>>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<T>>(4);
    let handle = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH);
        let mut bytes = 0;
        let r = produce(&mut |item| {
            bytes += item.weight();
            batch.push(item);
            if batch.len() >= BATCH || bytes >= BATCH_BYTES {
                bytes = 0;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                sender
                    .blocking_send(full)
                    .map_err(|_| EngineError::Cancelled {
                        what: "the synchronization",
                        connection: String::new(),
                    })?;
            }
            Ok(())
        });
        if r.is_ok() && !batch.is_empty() {
            let _ = sender.blocking_send(batch);
        }
        r
    });
    (receiver, handle)
}

/// Waits for a producer thread of [`produce_in_batches`].
async fn joined<R>(
    handle: tokio::task::JoinHandle<Result<R, EngineError>>,
) -> Result<R, EngineError> {
    handle
        .await
        .map_err(|e| EngineError::Contract(format!("a background task failed: {e}")))?
}

/// Reads one table (on a blocking thread) and inserts its new rows as they come, in batches:
/// the store writes while the table is read. Afterwards, what was inserted for a key found on
/// more than one row is taken back (all its rows are set aside).
#[allow(clippy::too_many_arguments)]
async fn prepare_and_insert(
    tx: &mut SyncTx<'_>,
    keys: &KeyHasher,
    connector: &str,
    plan: prepare::TablePlan,
    index: Keyed<idlink_store::IndexEntry>,
    apply: Apply,
    subset: Option<prepare::Subset>,
    set_aside_dir: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<
    (
        prepare::TablePlan,
        Keyed<idlink_store::IndexEntry>,
        prepare::Prepared,
        Inserted,
    ),
    EngineError,
> {
    let entity_type = plan.entity_type.clone();
    let carried_columns = plan.carried.len();
    let layout = tx.data_layout(&entity_type, &plan.layout()).await?;
    let (mut receiver, reader) = {
        let (keys, dir, token) = (*keys, set_aside_dir.to_path_buf(), cancel.clone());
        produce_in_batches(move |sink| {
            let mut index = index;
            let p = prepare::prepare(
                &plan,
                &keys,
                &mut index,
                layout,
                apply,
                subset,
                &dir,
                &|| token.is_cancelled(),
                sink,
            )?;
            Ok((plan, index, p))
        })
    };
    let mut inserted = Inserted {
        entries: Vec::new(),
        carried: (0..carried_columns)
            .map(|_| CarriedCells::default())
            .collect(),
    };
    // The first id this table's inserts got (ids grow): the store's rows have smaller ones.
    let mut first_id = i64::MAX;
    while let Some(batch) = receiver.recv().await {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled {
                what: "the synchronization",
                connection: connector.to_string(),
            });
        }
        let first = tx.allocate_ids(batch.len()).await?;
        first_id = first_id.min(first);
        let mut rows = Vec::with_capacity(batch.len());
        for (id, r) in (first..).zip(&batch) {
            inserted.entries.push(SnapshotEntry {
                key_hash: r.key_hash,
                id,
                raw: r.digest.raw,
            });
            for (cell, cells) in r.carried().zip(inserted.carried.iter_mut()) {
                cells.push(id, cell, false);
            }
            rows.push(idlink_store::NewResource {
                id,
                key: r.key(),
                data: r.data(),
                digest: r.digest,
            });
        }
        tx.insert_resources(connector, &entity_type, &rows).await?;
        drop(rows);
        // This thread writes the store, the run's bottleneck: the rows' texts (allocated by
        // the reading thread) are freed on another.
        tokio::task::spawn_blocking(move || drop(batch));
    }
    let (plan, index, prepared) = joined(reader).await?;
    // Take back the rows inserted for keys found twice: the ids this run gave those keys
    // (the store held none of them before, or they would be updates).
    if !prepared.duplicated_keys().is_empty() && first_id != i64::MAX {
        let dup: Vec<&str> = prepared.duplicated_keys().iter().map(|k| &**k).collect();
        let gone: HashSet<i64> = tx
            .ids_of_keys(&entity_type, &dup)
            .await?
            .into_iter()
            .filter(|&id| id >= first_id)
            .collect();
        if !gone.is_empty() {
            let ids: Vec<i64> = gone.iter().copied().collect();
            for chunk in ids.chunks(BATCH) {
                tx.delete_resources(&entity_type, chunk).await?;
            }
            inserted.entries.retain(|e| !gone.contains(&e.id));
            for cells in &mut inserted.carried {
                cells.retain(|id| !gone.contains(&id));
            }
        }
    }
    // A load that at least doubled the resources built no indexes as it went (PostgreSQL).
    tx.index_resources().await?;
    Ok((plan, index, prepared, inserted))
}

/// Applies the spilled changes of stored rows (updates, refreshed digests) and the deletes;
/// the carried link cells of the rows changed join `carried`, but for those equal to the
/// cells the row had (`old_cells`, when known: its links are those cells'). Returns the new
/// raw digest of each row changed, by id.
async fn apply_changes(
    tx: &mut SyncTx<'_>,
    entity_type: &str,
    prepared: &std::sync::Arc<prepare::Prepared>,
    carried: &mut [CarriedCells],
    old_cells: Option<&HashMap<i64, Vec<String>>>,
    cancel: &CancellationToken,
) -> Result<HashMap<i64, u64>, EngineError> {
    let mut changed = HashMap::new();
    // The spill is read on a blocking thread.
    let carried_columns = carried.len();
    let (mut receiver, reader) = {
        let prepared = prepared.clone();
        produce_in_batches(move |sink| prepared.for_each_change(carried_columns, sink))
    };
    while let Some(batch) = receiver.recv().await {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled {
                what: "the synchronization",
                connection: String::new(),
            });
        }
        let mut updates = Vec::with_capacity(batch.len());
        for c in batch {
            let (id, data, digest, cells) = match c {
                prepare::Change::Update {
                    id,
                    data,
                    digest,
                    carried,
                } => (id, Some(data), digest, carried),
                prepare::Change::Refresh {
                    id,
                    digest,
                    carried,
                } => (id, None, digest, carried),
            };
            let old = old_cells.and_then(|o| o.get(&id));
            for (k, (cell, out)) in cells.iter().zip(carried.iter_mut()).enumerate() {
                if old.and_then(|o| o.get(k)) != Some(cell) {
                    out.push(id, cell, true);
                }
            }
            changed.insert(id, digest.raw);
            updates.push(idlink_store::ResourceUpdate { id, data, digest });
        }
        tx.update_resources(entity_type, &updates).await?;
    }
    joined(reader).await?;
    for chunk in prepared.deletes.chunks(BATCH) {
        tx.delete_resources(entity_type, chunk).await?;
    }
    Ok(changed)
}

/// Applies a row-carried association from the cells of the rows written in this run: their
/// links are what their cells say; the links of the rows that did not change stay.
async fn apply_carried_links(
    tx: &mut SyncTx<'_>,
    association: &str,
    cells: CarriedCells,
    keys: &KeyHasher,
    ids2: &Keyed<i64>,
) -> Result<LinkCounts, EngineError> {
    let mut counts = LinkCounts {
        before: tx.count_links(association).await?,
        ..LinkCounts::default()
    };
    let mut wanted: Vec<(i64, i64)> = Vec::with_capacity(cells.ids.len());
    for (id1, cell) in cells.iter() {
        for b in cell.split('\n').filter(|s| !s.is_empty()) {
            match ids2.get(&keys.of(b)) {
                Some(&id2) => wanted.push((id1, id2)),
                None => counts.unresolved += 1,
            }
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    // Only the rows that were in the store before can hold links now.
    let existing: HashSet<(i64, i64)> = tx
        .links_of(association, &cells.updated)
        .await?
        .into_iter()
        .collect();
    drop(cells);
    let remove: Vec<(i64, i64)> = if existing.is_empty() {
        Vec::new()
    } else {
        let wanted_set: HashSet<&(i64, i64)> = wanted.iter().collect();
        existing
            .iter()
            .filter(|p| !wanted_set.contains(p))
            .copied()
            .collect()
    };
    let add: Vec<(i64, i64)> = if existing.is_empty() {
        wanted
    } else {
        wanted
            .into_iter()
            .filter(|p| !existing.contains(p))
            .collect()
    };
    counts.added = add.len() as u64;
    counts.removed = remove.len() as u64;
    tx.insert_links(association, add).await?;
    tx.delete_links(association, &remove).await?;
    Ok(counts)
}

mod links {
    use super::*;

    /// Links to add, links to remove, and the counts.
    pub(super) type LinkDiff = (Vec<(i64, i64)>, Vec<(i64, i64)>, LinkCounts);

    /// Reads the link table and returns the links to add and to remove.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn diff(
        keys: &KeyHasher,
        association: &str,
        table: &str,
        path: &std::path::Path,
        column1: &str,
        column2: &str,
        ids1: &Keyed<i64>,
        ids2: &Keyed<i64>,
        existing: &HashSet<(i64, i64)>,
        skip: &HashSet<Box<str>>,
        apply: Apply,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<LinkDiff, EngineError> {
        let file = prepare::open_table(
            path,
            &format!("table '{table}' of association mapping '{association}'"),
        )?;
        let mut r = csv::Reader::from_reader(std::io::BufReader::with_capacity(1 << 16, file));
        let header = r.headers().map_err(|e| prepare::csv_err(path, e))?.clone();
        let reader = format!("association mapping '{association}'");
        let col = |name: &str| prepare::column_of(&header, name, table, path, &reader);
        let (i1, i2) = (col(column1)?, col(column2)?);
        let command = prepare::find_column(&header, "Command");
        let mut counts = LinkCounts {
            before: existing.len() as u64,
            ..LinkCounts::default()
        };
        let mut wanted: HashSet<(i64, i64)> = HashSet::new();
        let mut unwanted: HashSet<(i64, i64)> = HashSet::new();
        // Incremental without Command: the rows present describe their side-1 links whole.
        let mut touched1: HashSet<i64> = HashSet::new();
        let mut rec = csv::StringRecord::new();
        // Cells that are not UTF-8 are read with U+FFFD: such a key resolves to no resource
        // (it is counted unresolved), and elsewhere in the row it is no matter.
        let mut not_utf8 = Vec::new();
        let mut n = 0u64;
        while prepare::read_record_lossy(&mut r, &mut rec, &mut not_utf8)
            .map_err(|e| prepare::csv_err(path, e))?
        {
            n += 1;
            if n.is_multiple_of(4096) && cancelled() {
                return Err(EngineError::Cancelled {
                    what: "the synchronization",
                    connection: table.to_string(),
                });
            }
            let delete = command
                .and_then(|c| rec.get(c))
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("Delete"));
            let (v1, v2) = (rec.get(i1).unwrap_or(""), rec.get(i2).unwrap_or(""));
            for a in v1
                .split('\n')
                .filter(|s| !s.is_empty() && !skip.contains(*s))
            {
                let Some(&a_id) = ids1.get(&keys.of(a)) else {
                    if !v2.is_empty() {
                        counts.unresolved += 1;
                    }
                    continue;
                };
                if apply == Apply::Delta && command.is_none() {
                    touched1.insert(a_id);
                }
                for b in v2.split('\n').filter(|s| !s.is_empty()) {
                    let Some(&b_id) = ids2.get(&keys.of(b)) else {
                        counts.unresolved += 1;
                        continue;
                    };
                    if delete {
                        unwanted.insert((a_id, b_id));
                    } else {
                        wanted.insert((a_id, b_id));
                    }
                }
            }
        }
        let add: Vec<(i64, i64)> = wanted
            .iter()
            .filter(|p| !existing.contains(p))
            .copied()
            .collect();
        // The links of rows set aside are kept as they are.
        let kept: HashSet<i64> = skip
            .iter()
            .filter_map(|k| ids1.get(&keys.of(k)).copied())
            .collect();
        let remove: Vec<(i64, i64)> = match (apply, command.is_some()) {
            (Apply::Whole, _) => existing
                .iter()
                .filter(|p| !wanted.contains(p) && !kept.contains(&p.0))
                .copied()
                .collect(),
            (Apply::Delta, true) => unwanted
                .into_iter()
                .filter(|p| existing.contains(p))
                .collect(),
            (Apply::Delta, false) => existing
                .iter()
                .filter(|p| touched1.contains(&p.0) && !wanted.contains(p))
                .copied()
                .collect(),
        };
        Ok((add, remove, counts))
    }
}
