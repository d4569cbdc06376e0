//! Workers report themselves here, so admins can see who serves the queue.

use super::{Pool, QueueError};
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

pub async fn register_worker(pool: &Pool, name: &str, host: &str, device: &str, now: i64) -> Result<(), QueueError> {
    sqlx::query(
        "INSERT INTO workers (name, host, device, started_at, last_seen_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, \
         job_id = NULL, stopped_at = NULL",
    )
    .bind(name)
    .bind(host)
    .bind(device)
    .bind(now)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks the worker alive, running `job` (or idle).
pub async fn worker_seen(pool: &Pool, name: &str, job: Option<&str>, now: i64) -> Result<(), QueueError> {
    sqlx::query("UPDATE workers SET last_seen_at = ?, job_id = ? WHERE name = ?")
        .bind(now)
        .bind(job)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn worker_stopped(pool: &Pool, name: &str, now: i64) -> Result<(), QueueError> {
    sqlx::query("UPDATE workers SET last_seen_at = ?, stopped_at = ?, job_id = NULL WHERE name = ?")
        .bind(now)
        .bind(now)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Workers seen since `since`, most recently seen first.
pub async fn list_workers(pool: &Pool, since: i64) -> Result<Vec<WorkerRow>, QueueError> {
    Ok(sqlx::query_as(
        "SELECT name, host, device, started_at, last_seen_at, job_id, stopped_at FROM workers \
         WHERE last_seen_at >= ? ORDER BY last_seen_at DESC, name",
    )
    .bind(since)
    .fetch_all(pool)
    .await?)
}
