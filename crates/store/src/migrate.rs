//! Versioned migrations, per backend, compiled into the binary.
//!
//! A small ordered list rather than sqlx's `migrate!`: the store must recognise itself (the
//! `idlink_meta` marker) and refuse a foreign or newer database *before* anything runs, with
//! its own messages; the format version a refusal quotes is simply the last migration applied;
//! both backends share one list (each entry carries the SQLite and the PostgreSQL statements,
//! so they cannot drift apart in numbering); and a later migration can be plain statements or
//! Rust code without a migrations folder per backend. All pending migrations run in one
//! transaction (SQLite `BEGIN IMMEDIATE`, PostgreSQL under a transaction-scoped advisory lock),
//! so two processes opening a new store at once apply them once, and a crash leaves the
//! previous version.
//!
//! To add a migration: append an entry with the next version. Never edit an applied one.

/// One step of the store's format.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static [&'static str],
    pub postgres: &'static [&'static str],
}

/// The meta table every version has: `format`, `format_version`, `created_by`, `created_at`.
pub(crate) const META_TABLE: &str = "idlink_meta";

/// Every migration, in order. The store's format version is the last one's.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "meta, applied migrations, schema snapshots, connector locks",
        sqlite: &[
            "CREATE TABLE idlink_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
            "CREATE TABLE idlink_migrations (
            version INTEGER PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            applied_by TEXT NOT NULL)",
            // One row per connection (the identifier lower-cased: connection identifiers compare
            // case-insensitively): the last good snapshot and, when the last refresh failed, when
            // and why.
            "CREATE TABLE schema_snapshots (
            connection_key TEXT PRIMARY KEY NOT NULL,
            connection TEXT NOT NULL,
            package TEXT,
            snapshot TEXT,
            refreshed_at TEXT,
            failed_at TEXT,
            failure TEXT)",
            // Connector locks are files beside a SQLite store (see `lock`): no table.
            "PRAGMA application_id = 1229212747",
        ],
        postgres: &[
            "CREATE TABLE idlink_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
            "CREATE TABLE idlink_migrations (
            version BIGINT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL,
            applied_by TEXT NOT NULL)",
            "CREATE TABLE schema_snapshots (
            connection_key TEXT PRIMARY KEY NOT NULL,
            connection TEXT NOT NULL,
            package TEXT,
            snapshot TEXT,
            refreshed_at TIMESTAMPTZ,
            failed_at TIMESTAMPTZ,
            failure TEXT)",
            // The holder of each connector's advisory lock (the lock itself is
            // pg_try_advisory_lock(LOCK_CLASS, id), on a connection its guard holds).
            "CREATE TABLE connector_locks (
            connector TEXT PRIMARY KEY NOT NULL,
            id INTEGER GENERATED ALWAYS AS IDENTITY UNIQUE,
            pid BIGINT,
            host TEXT,
            purpose TEXT,
            since TIMESTAMPTZ)",
        ],
    },
    Migration {
        version: 2,
        name: "resources and links",
        sqlite: &[
            // A resource: one row of an entity type by its primary key; its values as one JSON
            // object (a property added or removed needs no migration) and a digest of that text.
            "CREATE TABLE resources (
            id INTEGER PRIMARY KEY,
            entity_type TEXT NOT NULL,
            key TEXT NOT NULL,
            connector TEXT NOT NULL,
            data TEXT NOT NULL,
            digest BLOB NOT NULL,
            UNIQUE (entity_type, key))",
            // A link of an association: id1 on the side of its Property1, id2 on the other. No
            // foreign keys: checking them row by row made bulk loads several times slower
            // (PostgreSQL runs a trigger per row); deleting a resource deletes its links in the
            // same statement batch (`SyncTx::delete_resources`).
            "CREATE TABLE links (
            association TEXT NOT NULL,
            id1 INTEGER NOT NULL,
            id2 INTEGER NOT NULL,
            PRIMARY KEY (association, id1, id2)) WITHOUT ROWID",
            "CREATE INDEX links_by_id1 ON links (id1)",
            "CREATE INDEX links_by_id2 ON links (id2, association, id1)",
        ],
        postgres: &[
            "CREATE TABLE resources (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            entity_type TEXT NOT NULL,
            key TEXT NOT NULL,
            connector TEXT NOT NULL,
            data TEXT NOT NULL,
            digest BYTEA NOT NULL,
            UNIQUE (entity_type, key))",
            "CREATE TABLE links (
            association TEXT NOT NULL,
            id1 BIGINT NOT NULL,
            id2 BIGINT NOT NULL,
            PRIMARY KEY (association, id1, id2))",
            "CREATE INDEX links_by_id1 ON links (id1)",
            "CREATE INDEX links_by_id2 ON links (id2, association, id1)",
        ],
    },
    Migration {
        version: 3,
        name: "users, sessions, API tokens, audit log",
        sqlite: &[
            // A person or automation that signs in to the server; the password as an argon2 PHC
            // string, never the password itself.
            "CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at TEXT NOT NULL)",
            // A signed-in browser: the SHA-256 of its cookie's token (the token itself is only
            // in the cookie) and the CSRF token its forms carry.
            "CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY NOT NULL,
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            csrf TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL)",
            // An API token for automation: its SHA-256 only.
            "CREATE TABLE api_tokens (
            token_hash TEXT PRIMARY KEY NOT NULL,
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL)",
            // Who did what and when; never a secret value.
            "CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL)",
        ],
        postgres: &[
            "CREATE TABLE users (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL)",
            "CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY NOT NULL,
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            csrf TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL)",
            "CREATE TABLE api_tokens (
            token_hash TEXT PRIMARY KEY NOT NULL,
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL)",
            "CREATE TABLE audit_log (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at TIMESTAMPTZ NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL)",
        ],
    },
    Migration {
        version: 4,
        name: "provisioning orders, assignments, job runs",
        sqlite: &[
            // One provisioning order (SPEC §6): the order as packages receive it (`body`), its
            // state and the system's last word about it.
            "CREATE TABLE orders (
            id INTEGER PRIMARY KEY,
            resource_type TEXT NOT NULL,
            connection TEXT,
            owner_key TEXT,
            target_key TEXT,
            change_type TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)",
            "CREATE INDEX orders_by_state ON orders (state, resource_type)",
            // Which target resource each owner holds, per resource type (learnt from verified
            // orders and from correlation).
            "CREATE TABLE assignments (
            resource_type TEXT NOT NULL,
            owner_key TEXT NOT NULL,
            target_key TEXT NOT NULL,
            PRIMARY KEY (resource_type, owner_key))",
            "CREATE TABLE job_runs (
            id INTEGER PRIMARY KEY,
            job TEXT NOT NULL,
            state TEXT NOT NULL,
            dry_run BOOLEAN NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            report TEXT,
            log TEXT NOT NULL)",
            "CREATE INDEX job_runs_by_job ON job_runs (job, id)",
        ],
        postgres: &[
            "CREATE TABLE orders (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            resource_type TEXT NOT NULL,
            connection TEXT,
            owner_key TEXT,
            target_key TEXT,
            change_type TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL)",
            "CREATE INDEX orders_by_state ON orders (state, resource_type)",
            "CREATE TABLE assignments (
            resource_type TEXT NOT NULL,
            owner_key TEXT NOT NULL,
            target_key TEXT NOT NULL,
            PRIMARY KEY (resource_type, owner_key))",
            "CREATE TABLE job_runs (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job TEXT NOT NULL,
            state TEXT NOT NULL,
            dry_run BOOLEAN NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            report TEXT,
            log TEXT NOT NULL)",
            "CREATE INDEX job_runs_by_job ON job_runs (job, id)",
        ],
    },
    Migration {
        version: 5,
        name: "scheduled jobs and their claimed fires",
        sqlite: &[
            // Each scheduled time of a job that a server took on: the row is the claim (the
            // primary key lets one server only insert it), so two servers on one store never
            // both run one scheduled time. Jobs are keyed by their identifier lower-cased.
            "CREATE TABLE job_fires (
            job_key TEXT NOT NULL,
            fire_at TEXT NOT NULL,
            job TEXT NOT NULL,
            claimed_by TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            PRIMARY KEY (job_key, fire_at))",
            // When the scheduler first saw each job with a crontab: runs missed while no server
            // ran are counted from the last claimed fire, or from this when there is none.
            "CREATE TABLE scheduled_jobs (
            job_key TEXT PRIMARY KEY NOT NULL,
            job TEXT NOT NULL,
            first_seen TEXT NOT NULL)",
        ],
        postgres: &[
            "CREATE TABLE job_fires (
            job_key TEXT NOT NULL,
            fire_at TIMESTAMPTZ NOT NULL,
            job TEXT NOT NULL,
            claimed_by TEXT NOT NULL,
            claimed_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (job_key, fire_at))",
            "CREATE TABLE scheduled_jobs (
            job_key TEXT PRIMARY KEY NOT NULL,
            job TEXT NOT NULL,
            first_seen TIMESTAMPTZ NOT NULL)",
        ],
    },
    Migration {
        version: 6,
        name: "agents, enrolment tokens, agent sessions, the agent work queue",
        sqlite: &[
            // One remote agent (or the embedded one when it enrols): its age public key and
            // whether an administrator approved it. Times of leases are epoch milliseconds
            // (compared exactly on both backends).
            "CREATE TABLE agents (
            agent_key TEXT PRIMARY KEY NOT NULL,
            agent TEXT NOT NULL,
            public_key TEXT NOT NULL,
            state TEXT NOT NULL,
            enrolled_at TEXT NOT NULL,
            decided_by TEXT,
            decided_at TEXT,
            last_seen TEXT)",
            "CREATE TABLE agent_enrolment_tokens (
            token_hash TEXT PRIMARY KEY NOT NULL,
            agent_key TEXT,
            created_by TEXT NOT NULL,
            expires_ms BIGINT NOT NULL,
            used_at TEXT,
            used_by TEXT)",
            "CREATE TABLE agent_sessions (
            token_hash TEXT PRIMARY KEY NOT NULL,
            agent_key TEXT NOT NULL,
            expires_ms BIGINT NOT NULL)",
            "CREATE TABLE agent_tasks (
            id INTEGER PRIMARY KEY,
            agent_key TEXT NOT NULL,
            kind TEXT NOT NULL,
            connection TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_id TEXT,
            lease_expires_ms BIGINT,
            leased_by TEXT,
            result TEXT,
            error TEXT,
            created_ms BIGINT NOT NULL,
            claimed_ms BIGINT,
            finished_ms BIGINT,
            server_ms BIGINT NOT NULL DEFAULT 0)",
            "CREATE INDEX agent_tasks_queue ON agent_tasks (agent_key, state, id)",
        ],
        postgres: &[
            "CREATE TABLE agents (
            agent_key TEXT PRIMARY KEY NOT NULL,
            agent TEXT NOT NULL,
            public_key TEXT NOT NULL,
            state TEXT NOT NULL,
            enrolled_at TIMESTAMPTZ NOT NULL,
            decided_by TEXT,
            decided_at TIMESTAMPTZ,
            last_seen TIMESTAMPTZ)",
            "CREATE TABLE agent_enrolment_tokens (
            token_hash TEXT PRIMARY KEY NOT NULL,
            agent_key TEXT,
            created_by TEXT NOT NULL,
            expires_ms BIGINT NOT NULL,
            used_at TIMESTAMPTZ,
            used_by TEXT)",
            "CREATE TABLE agent_sessions (
            token_hash TEXT PRIMARY KEY NOT NULL,
            agent_key TEXT NOT NULL,
            expires_ms BIGINT NOT NULL)",
            "CREATE TABLE agent_tasks (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            agent_key TEXT NOT NULL,
            kind TEXT NOT NULL,
            connection TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_id TEXT,
            lease_expires_ms BIGINT,
            leased_by TEXT,
            result TEXT,
            error TEXT,
            created_ms BIGINT NOT NULL,
            claimed_ms BIGINT,
            finished_ms BIGINT,
            server_ms BIGINT NOT NULL DEFAULT 0)",
            "CREATE INDEX agent_tasks_queue ON agent_tasks (agent_key, state, id)",
        ],
    },
    Migration {
        version: 7,
        name: "index snapshots of the resources; no links index on id1 alone",
        sqlite: &[
            // What a synchronization compares a table with, per entity type: (key hash, id, raw
            // digest) of every resource, 32 bytes each, in chunks (see `resources::Snapshot`).
            // Written in the synchronization's transaction; a transaction that writes an entity
            // type's resources without writing its snapshot deletes it. A later migration that
            // changes resources must delete them all.
            "CREATE TABLE resource_index_snapshots (
            entity_type TEXT NOT NULL,
            chunk INTEGER NOT NULL,
            entries INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (entity_type, chunk))",
            // Links by id1 are found through the primary key, association by association
            // (`SyncTx::delete_resources`): a third B-tree per link cost bulk loads a third more.
            "DROP INDEX links_by_id1",
        ],
        postgres: &[
            "CREATE TABLE resource_index_snapshots (
            entity_type TEXT NOT NULL,
            chunk INTEGER NOT NULL,
            entries BIGINT NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (entity_type, chunk))",
            // Hashes do not compress: PostgreSQL would try, at a cost of seconds per million.
            "ALTER TABLE resource_index_snapshots ALTER COLUMN data SET STORAGE EXTERNAL",
            "DROP INDEX links_by_id1",
        ],
    },
    Migration {
        version: 8,
        name: "the tables last synchronized whole",
        sqlite: &[
            // Per entity type: the digest of the table its resources were last synchronized
            // from, whole and with no row set aside, and of the mapping that read it (see
            // `SyncTx::save_table_digest`). A run compares the new table with the kept copy of
            // that one record by record. Kept true as the snapshots are: a transaction that writes
            // the entity type's resources without saving a new one deletes it.
            "CREATE TABLE synchronized_tables (
            entity_type TEXT PRIMARY KEY NOT NULL,
            digest BLOB NOT NULL)",
        ],
        postgres: &["CREATE TABLE synchronized_tables (
            entity_type TEXT PRIMARY KEY NOT NULL,
            digest BYTEA NOT NULL)"],
    },
    Migration {
        version: 9,
        name: "resource values as arrays in layouts",
        sqlite: &[
            // The property lists that resources' values follow (see `values`): `data` is a
            // JSON array whose first element is one of these ids, or a JSON object as before.
            "CREATE TABLE resource_layouts (
            id INTEGER PRIMARY KEY,
            entity_type TEXT NOT NULL,
            properties TEXT NOT NULL,
            UNIQUE (entity_type, properties))",
        ],
        postgres: &["CREATE TABLE resource_layouts (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            entity_type TEXT NOT NULL,
            properties TEXT NOT NULL,
            UNIQUE (entity_type, properties))"],
    },
    Migration {
        version: 10,
        name: "resources and links counted as they are written",
        sqlite: &[
            // Per entity type its resources, per association its links, kept by `SyncTx` (the
            // only writer of either) in the transaction that writes them: a run reads what it
            // starts from without counting a million rows.
            "CREATE TABLE resource_counts (
            entity_type TEXT PRIMARY KEY NOT NULL,
            n INTEGER NOT NULL)",
            "INSERT INTO resource_counts (entity_type, n)
            SELECT entity_type, COUNT(*) FROM resources GROUP BY entity_type",
            "CREATE TABLE link_counts (
            association TEXT PRIMARY KEY NOT NULL,
            n INTEGER NOT NULL)",
            "INSERT INTO link_counts (association, n)
            SELECT association, COUNT(*) FROM links GROUP BY association",
        ],
        postgres: &[
            "CREATE TABLE resource_counts (
            entity_type TEXT PRIMARY KEY NOT NULL,
            n BIGINT NOT NULL)",
            "INSERT INTO resource_counts (entity_type, n)
            SELECT entity_type, COUNT(*) FROM resources GROUP BY entity_type",
            "CREATE TABLE link_counts (
            association TEXT PRIMARY KEY NOT NULL,
            n BIGINT NOT NULL)",
            "INSERT INTO link_counts (association, n)
            SELECT association, COUNT(*) FROM links GROUP BY association",
        ],
    },
];

/// The newest format this build reads and writes.
pub const FORMAT_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Who applies a migration or creates a store: `idlink <version>`.
pub fn idlink_version() -> String {
    format!("idlink {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_each_other_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            assert!(!m.sqlite.is_empty() && !m.postgres.is_empty(), "{}", m.name);
        }
        assert_eq!(FORMAT_VERSION, MIGRATIONS.len() as i64);
    }

    #[test]
    fn the_reverse_links_index_rebuilt_after_a_bulk_load_is_the_one_migrations_create() {
        assert!(
            MIGRATIONS[1]
                .sqlite
                .contains(&crate::resources::LINKS_BY_ID2)
        );
        for m in &MIGRATIONS[2..] {
            assert!(
                !m.sqlite.iter().any(|s| s.contains("links_by_id2")),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn the_sqlite_application_id_is_the_crate_constant() {
        assert!(MIGRATIONS[0].sqlite.contains(
            &format!("PRAGMA application_id = {}", crate::SQLITE_APPLICATION_ID).as_str()
        ));
    }
}
