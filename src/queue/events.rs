//! The event log: each job's status changes and finished epochs, in order, written in the
//! same transaction as the change itself, so every process's change is there and a stream
//! that reconnects with `Last-Event-ID` (the `seq`) gets exactly what it missed.

use super::{on_db, Pool, QueueError, Tx};
use sqlx::FromRow;

/// One logged event.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub job_id: String,
    pub owner_id: i64,
    /// `status` (data: the new status) or `epoch` (data: the epoch's row as JSON).
    pub kind: String,
    pub data: String,
    pub at: i64,
}

/// Logs an event of `job_id` inside `tx` (the owner is read from the job).
pub(crate) async fn log(tx: &mut Tx, job_id: &str, kind: &str, data: &str, now: i64) -> Result<(), QueueError> {
    const SQL: &str =
        "INSERT INTO events (job_id, owner_id, kind, data, at) SELECT id, owner_id, ?, ?, ? FROM jobs WHERE id = ?";
    on_db!(Tx, tx, |t, d| sqlx::query(&d.sql(SQL))
        .bind(kind)
        .bind(data)
        .bind(now)
        .bind(job_id)
        .execute(&mut **t)
        .await?
        .rows_affected());
    Ok(())
}

/// Whose events a stream reads.
#[derive(Debug, Clone)]
pub enum Scope {
    Job(String),
    Owner(i64),
    Everyone,
}

/// The events of `scope` after `after`, oldest first, at most `limit`.
pub async fn events_after(pool: &Pool, scope: &Scope, after: i64, limit: i64) -> Result<Vec<EventRow>, QueueError> {
    const COLUMNS: &str = "seq, job_id, owner_id, kind, data, at";
    let (filter, job, owner) = match scope {
        Scope::Job(id) => ("job_id = ?", Some(id.as_str()), None),
        Scope::Owner(o) => ("owner_id = ?", None, Some(*o)),
        Scope::Everyone => ("1 = 1", None, None),
    };
    let sql = format!("SELECT {COLUMNS} FROM events WHERE {filter} AND seq > ? ORDER BY seq LIMIT ?");
    Ok(on_db!(Pool, pool, |p, d| {
        let sql = d.sql(&sql);
        let mut q = sqlx::query_as(&sql);
        if let Some(j) = job {
            q = q.bind(j);
        }
        if let Some(o) = owner {
            q = q.bind(o);
        }
        q.bind(after).bind(limit).fetch_all(p).await?
    }))
}

/// The newest event's `seq` (0 when there is none): where a stream that wants only what
/// happens from now on starts.
pub async fn last_seq(pool: &Pool) -> Result<i64, QueueError> {
    const SQL: &str = "SELECT COALESCE(MAX(seq), 0) FROM events";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_scalar(&d.sql(SQL)).fetch_one(p).await?))
}
