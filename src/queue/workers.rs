//! Workers report themselves here, so admins can see who serves the queue.

use super::{on_db, Pool, QueueError};
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct WorkerRow {
    pub name: String,
    pub host: String,
    pub device: String,
    pub started_at: i64,
    pub last_seen_at: i64,
    pub job_id: Option<String>,
    pub stopped_at: Option<i64>,
}

impl WorkerRow {
    /// `stopped`, `lost` (silent since before `live_since`: killed, or its machine gone),
    /// `busy` or `idle`.
    pub fn state(&self, live_since: i64) -> &'static str {
        match (self.stopped_at, &self.job_id) {
            (Some(_), _) => "stopped",
            (None, _) if self.last_seen_at < live_since => "lost",
            (None, Some(_)) => "busy",
            (None, None) => "idle",
        }
    }
}

pub async fn register_worker(pool: &Pool, name: &str, host: &str, device: &str, now: i64) -> Result<(), QueueError> {
    const SQL: &str = "INSERT INTO workers (name, host, device, started_at, last_seen_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, \
         job_id = NULL, stopped_at = NULL";
    on_db!(Pool, pool, |p, d| sqlx::query(&d.sql(SQL))
        .bind(name)
        .bind(host)
        .bind(device)
        .bind(now)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
    Ok(())
}

/// Marks the worker alive, running `job` (or idle).
pub async fn worker_seen(pool: &Pool, name: &str, job: Option<&str>, now: i64) -> Result<(), QueueError> {
    const SQL: &str = "UPDATE workers SET last_seen_at = ?, job_id = ? WHERE name = ?";
    on_db!(Pool, pool, |p, d| sqlx::query(&d.sql(SQL))
        .bind(now)
        .bind(job)
        .bind(name)
        .execute(p)
        .await?
        .rows_affected());
    Ok(())
}

pub async fn worker_stopped(pool: &Pool, name: &str, now: i64) -> Result<(), QueueError> {
    const SQL: &str = "UPDATE workers SET last_seen_at = ?1, stopped_at = ?1, job_id = NULL WHERE name = ?2";
    on_db!(Pool, pool, |p, d| sqlx::query(&d.sql(SQL)).bind(now).bind(name).execute(p).await?.rows_affected());
    Ok(())
}

/// Workers seen since `since`, most recently seen first.
pub async fn list_workers(pool: &Pool, since: i64) -> Result<Vec<WorkerRow>, QueueError> {
    const SQL: &str = "SELECT name, host, device, started_at, last_seen_at, job_id, stopped_at FROM workers \
         WHERE last_seen_at >= ? ORDER BY last_seen_at DESC, name";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(since).fetch_all(p).await?))
}

/// (worker, job id) of every running job: a worker training a fused group runs several.
pub async fn running_jobs(pool: &Pool) -> Result<Vec<(String, String)>, QueueError> {
    const SQL: &str = "SELECT worker, id FROM jobs WHERE status = 'running' AND worker IS NOT NULL ORDER BY seq";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).fetch_all(p).await?))
}

/// Workers not stopped and seen since `since`.
pub async fn count_live(pool: &Pool, since: i64) -> Result<i64, QueueError> {
    const SQL: &str = "SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL AND last_seen_at >= ?";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_scalar(&d.sql(SQL)).bind(since).fetch_one(p).await?))
}
