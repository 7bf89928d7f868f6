//! Synchronization thresholds (SPEC §5.3): the counts of a run against the connector's limits
//! (documented defaults when not written) and the mapping's (when written), absolute and in
//! percent of what the store held before; links apart. A limit of 0 is no limit. The lowest
//! applicable limit blocks.

use idlink_model::config::SyncThresholds;
use serde::Serialize;

use super::prepare::Counts;

/// Link changes of one association mapping.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LinkCounts {
    /// Links of the association before the run.
    pub before: u64,
    pub added: u64,
    pub removed: u64,
    /// Link rows naming a resource that is not in the store (not linked).
    pub unresolved: u64,
}

/// One exceeded threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Blocked {
    /// The mapping or association it applies to.
    pub scope: String,
    /// The attribute as written in XML (`MaximumDeletedLines`, `MaxPercentageUpdatedLines`, ...).
    pub threshold: &'static str,
    /// Where the limit comes from: `connector` (written or default) or `mapping`.
    pub level: &'static str,
    pub count: u64,
    /// For percentages, the count in percent of `before`.
    pub percent: Option<f64>,
    pub limit: u32,
    pub before: u64,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.percent {
            Some(_) if self.before == 0 => write!(
                f,
                "{}: {} = {}% ({}) exceeded: {} where the store holds none yet (100%)",
                self.scope, self.threshold, self.limit, self.level, self.count
            ),
            Some(p) => write!(
                f,
                "{}: {} = {}% ({}) exceeded: {} of {} is {:.1}%",
                self.scope, self.threshold, self.limit, self.level, self.count, self.before, p
            ),
            None => write!(
                f,
                "{}: {} = {} ({}) exceeded: {}",
                self.scope, self.threshold, self.limit, self.level, self.count
            ),
        }
    }
}

/// (absolute attribute, percentage attribute, count, absolute limit, percentage limit)
pub(crate) type Check = (&'static str, &'static str, u64, Option<u32>, Option<u32>);

pub(crate) fn check(
    scope: &str,
    before: u64,
    level: &'static str,
    checks: &[Check],
    out: &mut Vec<Blocked>,
) {
    for &(abs_name, pct_name, count, abs, pct) in checks {
        if count == 0 {
            continue;
        }
        if let Some(limit) = abs.filter(|&l| l > 0)
            && count > u64::from(limit)
        {
            out.push(Blocked {
                scope: scope.to_string(),
                threshold: abs_name,
                level,
                count,
                percent: None,
                limit,
                before,
            });
        }
        if let Some(limit) = pct.filter(|&l| l > 0) {
            // Against an empty store every change is 100% (Initial ignores thresholds).
            let percent = if before == 0 {
                100.0
            } else {
                count as f64 * 100.0 / before as f64
            };
            if percent > f64::from(limit) {
                out.push(Blocked {
                    scope: scope.to_string(),
                    threshold: pct_name,
                    level,
                    count,
                    percent: Some(percent),
                    limit,
                    before,
                });
            }
        }
    }
}

/// The resource thresholds of one mapping: the connector's and the mapping's own.
pub fn check_resources(
    scope: &str,
    counts: &Counts,
    before: u64,
    connector: &SyncThresholds,
    mapping: &SyncThresholds,
) -> Vec<Blocked> {
    let mut out = Vec::new();
    for (level, t) in [("connector", connector), ("mapping", mapping)] {
        let checks: [Check; 3] = [
            (
                "MaximumInsertedLines",
                "MaxPercentageInsertedLines",
                counts.inserted,
                t.max_inserted_lines,
                t.max_percentage_inserted_lines,
            ),
            (
                "MaximumUpdatedLines",
                "MaxPercentageUpdatedLines",
                counts.updated,
                t.max_updated_lines,
                t.max_percentage_updated_lines,
            ),
            (
                "MaximumDeletedLines",
                "MaxPercentageDeletedLines",
                counts.deleted,
                t.max_deleted_lines,
                t.max_percentage_deleted_lines,
            ),
        ];
        check(scope, before, level, &checks, &mut out);
    }
    out
}

/// The link thresholds of one association mapping: the connector's `MaximumLink*` and
/// `MaxLinkPercentage*`, and the association mapping's own (its page writes them
/// `MaximumInsertedLines`, `MaxPercentageDeletedLines`, ...; the `Link` forms count too).
pub fn check_links(
    scope: &str,
    counts: &LinkCounts,
    connector: &SyncThresholds,
    mapping: &SyncThresholds,
) -> Vec<Blocked> {
    let mut out = Vec::new();
    let checks: [Check; 2] = [
        (
            "MaximumLinkInsertedLines",
            "MaxLinkPercentageInsertedLines",
            counts.added,
            connector.max_link_inserted_lines,
            connector.max_link_percentage_inserted_lines,
        ),
        (
            "MaximumLinkDeletedLines",
            "MaxLinkPercentageDeletedLines",
            counts.removed,
            connector.max_link_deleted_lines,
            connector.max_link_percentage_deleted_lines,
        ),
    ];
    check(scope, counts.before, "connector", &checks, &mut out);
    let own: [Check; 4] = [
        (
            "MaximumInsertedLines",
            "MaxPercentageInsertedLines",
            counts.added,
            mapping.max_inserted_lines,
            mapping.max_percentage_inserted_lines,
        ),
        (
            "MaximumDeletedLines",
            "MaxPercentageDeletedLines",
            counts.removed,
            mapping.max_deleted_lines,
            mapping.max_percentage_deleted_lines,
        ),
        (
            "MaximumLinkInsertedLines",
            "MaxLinkPercentageInsertedLines",
            counts.added,
            mapping.max_link_inserted_lines,
            mapping.max_link_percentage_inserted_lines,
        ),
        (
            "MaximumLinkDeletedLines",
            "MaxLinkPercentageDeletedLines",
            counts.removed,
            mapping.max_link_deleted_lines,
            mapping.max_link_percentage_deleted_lines,
        ),
    ];
    check(scope, counts.before, "mapping", &own, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(inserted: u64, updated: u64, deleted: u64) -> Counts {
        Counts {
            inserted,
            updated,
            deleted,
            ..Counts::default()
        }
    }

    #[test]
    fn connector_defaults_block_above_100_or_5_percent() {
        let d = SyncThresholds::CONNECTOR_DEFAULTS;
        let none = SyncThresholds::default();
        assert!(check_resources("P", &counts(100, 0, 0), 10_000, &d, &none).is_empty());
        let b = check_resources("P", &counts(101, 0, 0), 10_000, &d, &none);
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].threshold, b[0].limit, b[0].count),
            ("MaximumInsertedLines", 100, 101)
        );
        let b = check_resources("P", &counts(0, 0, 6), 100, &d, &none);
        assert_eq!(b[0].threshold, "MaxPercentageDeletedLines");
        assert!(b[0].to_string().contains("6 of 100 is 6.0%"), "{}", b[0]);
    }

    #[test]
    fn zero_disables_and_the_mapping_limit_applies_too() {
        let off = SyncThresholds {
            max_deleted_lines: Some(0),
            max_percentage_deleted_lines: Some(0),
            ..SyncThresholds::default()
        };
        let mapping = SyncThresholds {
            max_deleted_lines: Some(2),
            ..SyncThresholds::default()
        };
        assert!(
            check_resources("P", &counts(0, 0, 50), 60, &off, &SyncThresholds::default())
                .is_empty()
        );
        let b = check_resources("P", &counts(0, 0, 3), 60, &off, &mapping);
        assert_eq!(
            (b[0].threshold, b[0].level),
            ("MaximumDeletedLines", "mapping")
        );
    }

    #[test]
    fn link_thresholds_are_apart() {
        let d = SyncThresholds::CONNECTOR_DEFAULTS;
        let c = LinkCounts {
            before: 100_000,
            added: 1001,
            removed: 0,
            unresolved: 0,
        };
        let none = SyncThresholds::default();
        let b = check_links("A", &c, &d, &none);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].threshold, "MaximumLinkInsertedLines");
        // The association mapping's own limit, as its page writes it.
        let own = SyncThresholds {
            max_deleted_lines: Some(10),
            ..SyncThresholds::default()
        };
        let c = LinkCounts {
            before: 100_000,
            added: 0,
            removed: 11,
            unresolved: 0,
        };
        let b = check_links("A", &c, &d, &own);
        assert_eq!(
            (b.len(), b[0].threshold, b[0].level),
            (1, "MaximumDeletedLines", "mapping")
        );
    }
}
