//! Problems of the box itself (its data missing or corrupt): jobs are not failed for them,
//! they wait queued, and `/readyz` and `GET /queue` say why.

use super::{on_db, Pool, QueueError};
use serde::Serialize;
use sqlx::FromRow;

#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct Problem {
    pub key: String,
    pub message: String,
    /// Since when (ms since the epoch).
    pub since: i64,
}

/// The key of a dataset's problem on a host: `data:NAME@HOST`.
pub fn data_problem_key(dataset: &str, host: &str) -> String {
    format!("data:{dataset}@{host}")
}

/// The key of a dataset's fetch under way on a host: `fetch:NAME@HOST`.
pub fn fetch_problem_key(dataset: &str, host: &str) -> String {
    format!("fetch:{dataset}@{host}")
}

impl Problem {
    /// The dataset a problem is about (`data:NAME@HOST` or `fetch:NAME@HOST`); `None` for
    /// the box's own.
    pub fn dataset(&self) -> Option<&str> {
        let rest = self.key.strip_prefix("data:").or_else(|| self.key.strip_prefix("fetch:"))?;
        rest.split('@').next()
    }

    /// True for a fetch under way (not a failure).
    pub fn is_fetch(&self) -> bool {
        self.key.starts_with("fetch:")
    }
}

/// Records (or restates) a problem; `since` keeps its first time.
pub async fn set_problem(pool: &Pool, key: &str, message: &str, now: i64) -> Result<(), QueueError> {
    const SQL: &str = "INSERT INTO problems (key, message, since) VALUES (?, ?, ?) \
         ON CONFLICT (key) DO UPDATE SET message = excluded.message";
    on_db!(Pool, pool, |p, d| sqlx::query(&d.sql(SQL))
        .bind(key)
        .bind(message)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
    Ok(())
}

/// Forgets the fetches under way on `host` (its process stopped in the middle of them).
pub async fn clear_fetches(pool: &Pool, host: &str) -> Result<(), QueueError> {
    let suffix = format!("@{host}");
    const SQL: &str =
        "DELETE FROM problems WHERE key LIKE 'fetch:%' AND substr(key, length(key) - length(?1) + 1) = ?1";
    on_db!(Pool, pool, |p, d| sqlx::query(&d.sql(SQL)).bind(&suffix).execute(p).await?.rows_affected());
    Ok(())
}

/// The problem is solved.
pub async fn clear_problem(pool: &Pool, key: &str) -> Result<(), QueueError> {
    on_db!(Pool, pool, |p, d| sqlx::query(&d.sql("DELETE FROM problems WHERE key = ?"))
        .bind(key)
        .execute(p)
        .await?
        .rows_affected());
    Ok(())
}

/// A small real write (a row made and dropped in one transaction): whether the database
/// takes writes now. A full disk fails it as it fails every other write.
pub async fn probe_write(pool: &Pool) -> Result<(), QueueError> {
    const PUT: &str = "INSERT INTO problems (key, message, since) VALUES ('(probe)', '', ?) \
         ON CONFLICT (key) DO UPDATE SET since = excluded.since";
    const DROP: &str = "DELETE FROM problems WHERE key = '(probe)'";
    let mut tx = pool.begin_write().await?;
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(PUT)).bind(super::now_ms()).execute(&mut **t).await?.rows_affected());
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(DROP)).execute(&mut **t).await?.rows_affected());
    tx.commit().await?;
    Ok(())
}

pub async fn list_problems(pool: &Pool) -> Result<Vec<Problem>, QueueError> {
    Ok(on_db!(Pool, pool, |p, _d| sqlx::query_as("SELECT key, message, since FROM problems ORDER BY key")
        .fetch_all(p)
        .await?))
}
