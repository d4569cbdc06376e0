//! The event log: each job's status changes and finished epochs, in order, written in the
//! same transaction as the change itself, so every process's change is there and a stream
//! that reconnects with `Last-Event-ID` (the `seq`) gets exactly what it missed.

use super::{decode, on_db, Pool, QueueError, Tx};
use crate::job::{EpochMetrics, JobStatus};

/// One logged event.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub job_id: String,
    pub owner_id: i64,
    pub what: Logged,
    pub at: i64,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
    /// The job's new status.
    Status(JobStatus),
    /// A finished epoch's row.
    Epoch(EpochMetrics),
}

impl Logged {
    /// The event's kind as stored and sent: `status` or `epoch`.
    pub fn kind(&self) -> &'static str {
        match self {
            Logged::Status(_) => "status",
            Logged::Epoch(_) => "epoch",
        }
    }
}

/// An event as stored: seq, job, owner, kind, data (the status, or the epoch's JSON), at.
type EventRecord = (i64, String, i64, String, String, i64);

fn event_row((seq, job_id, owner_id, kind, data, at): EventRecord) -> Result<EventRow, QueueError> {
    let what = match kind.as_str() {
        "status" => Logged::Status(
            data.parse().map_err(|reason| QueueError::Corrupt { what: format!("event {seq}'s status"), reason })?,
        ),
        "epoch" => Logged::Epoch(decode(&data, || format!("event {seq} (an epoch of job {job_id})"))?),
        other => {
            let reason = format!("no event kind {other:?}");
            return Err(QueueError::Corrupt { what: format!("event {seq}"), reason });
        }
    };
    Ok(EventRow { seq, job_id, owner_id, what, at })
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
    let records: Vec<EventRecord> = on_db!(Pool, pool, |p, d| {
        let sql = d.sql(&sql);
        let mut q = sqlx::query_as(&sql);
        if let Some(j) = job {
            q = q.bind(j);
        }
        if let Some(o) = owner {
            q = q.bind(o);
        }
        q.bind(after).bind(limit).fetch_all(p).await?
    });
    records.into_iter().map(event_row).collect()
}

/// The newest event's `seq` (0 when there is none): where a stream that wants only what
/// happens from now on starts.
pub async fn last_seq(pool: &Pool) -> Result<i64, QueueError> {
    const SQL: &str = "SELECT COALESCE(MAX(seq), 0) FROM events";
    Ok(on_db!(Pool, pool, |p, d| sqlx::query_scalar(&d.sql(SQL)).fetch_one(p).await?))
}
