//! The scheduler's memory: which scheduled times (fires) of which jobs a server took on, and
//! when each scheduled job was first seen.
//!
//! A fire is claimed by inserting its row (`ON CONFLICT DO NOTHING`): the primary key
//! `(job_key, fire_at)` lets exactly one insert succeed, so two servers on one PostgreSQL
//! store never both run one scheduled time. The last claimed fire of a job is where runs
//! missed while no server ran are counted from. Jobs are keyed by their identifier
//! lower-cased; the spelling claimed last is kept for display. Times are whole seconds, UTC.

use chrono::{DateTime, SubsecRound, Utc};

use crate::{Store, StoreError, on_pool};

/// One claimed scheduled time of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub job: String,
    /// The scheduled time.
    pub fire_at: DateTime<Utc>,
    /// The server that took it on.
    pub claimed_by: String,
    /// When it did.
    pub claimed_at: DateTime<Utc>,
}

fn key(job: &str) -> String {
    job.to_ascii_lowercase()
}

impl Store {
    /// Claims the scheduled time `fire_at` of `job` for `by`: true when this call inserted the
    /// claim, false when it was claimed before (by this server or another one).
    pub async fn claim_fire(
        &self,
        job: &str,
        fire_at: DateTime<Utc>,
        by: &str,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, p => sqlx::query(
            "INSERT INTO job_fires (job_key, fire_at, job, claimed_by, claimed_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (job_key, fire_at) DO NOTHING",
        )
        .bind(key(job))
        .bind(fire_at.trunc_subsecs(0))
        .bind(job)
        .bind(by)
        .bind(crate::now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("claim a scheduled run", e))?;
        Ok(done == 1)
    }

    /// The latest claimed scheduled time of `job`.
    pub async fn last_fire(&self, job: &str) -> Result<Option<Fire>, StoreError> {
        Ok(self.fires(job, 1).await?.into_iter().next())
    }

    /// The latest `limit` claimed scheduled times of `job`, newest first.
    pub async fn fires(&self, job: &str, limit: u32) -> Result<Vec<Fire>, StoreError> {
        type Row = (String, DateTime<Utc>, String, DateTime<Utc>);
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT job, fire_at, claimed_by, claimed_at FROM job_fires
             WHERE job_key = $1 ORDER BY fire_at DESC LIMIT $2",
        )
        .bind(key(job))
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)
        .map_err(|e| self.db_error("read the scheduled runs", e))?;
        Ok(rows
            .into_iter()
            .map(|(job, fire_at, claimed_by, claimed_at)| Fire {
                job,
                fire_at,
                claimed_by,
                claimed_at,
            })
            .collect())
    }

    /// When the scheduler first saw `job`: recorded as `now` the first time it is asked, then
    /// given back unchanged.
    pub async fn scheduled_job_first_seen(
        &self,
        job: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let first: DateTime<Utc> = on_pool!(self, p => {
            let inserted = sqlx::query(
                "INSERT INTO scheduled_jobs (job_key, job, first_seen) VALUES ($1, $2, $3)
                 ON CONFLICT (job_key) DO NOTHING",
            )
            .bind(key(job))
            .bind(job)
            .bind(now.trunc_subsecs(0))
            .execute(p)
            .await;
            match inserted {
                Ok(_) => {
                    sqlx::query_scalar("SELECT first_seen FROM scheduled_jobs WHERE job_key = $1")
                        .bind(key(job))
                        .fetch_one(p)
                        .await
                }
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.db_error("record a scheduled job", e))?;
        Ok(first)
    }
}
