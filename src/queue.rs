//! The job queue in SQLite: the only module that holds SQL.
//!
//! - A worker claims the next job with one conditional `UPDATE … RETURNING`; the claim bumps
//!   `attempt` and sets a lease that heartbeats renew.
//! - Every write a worker makes is fenced on (id, attempt, status = 'running'): zero rows
//!   affected means the lease was lost (expired, or the job was cancelled), and the worker
//!   must stop.
//! - Read-then-write transactions begin IMMEDIATE; the database is in WAL mode with a busy
//!   timeout, so no client sees "database is locked".
//! - "now" is passed in from Rust (milliseconds since the epoch), so tests can move the clock.

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

pub type Pool = SqlitePool;

/// Job states as stored and shown.
pub const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database failed; the cause is logged, not shown to clients.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens (creating if needed) the database and applies the migrations.
pub async fn connect(url: &str) -> Result<Pool, QueueError> {
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    if let Some(parent) = opts.get_filename().parent() {
        if !parent.as_os_str().is_empty() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A job row with its queue position (while queued).
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct JobRow {
    pub seq: i64,
    pub id: String,
    pub name: Option<String>,
    pub spec: String,
    pub parameters: i64,
    pub status: String,
    pub epochs_total: i64,
    pub epochs_done: i64,
    pub attempt: i64,
    pub worker: Option<String>,
    pub device: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub error: Option<String>,
    pub request_hash: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub queue_position: Option<i64>,
}

const JOB_COLUMNS: &str = "seq, id, name, spec, parameters, status, epochs_total, epochs_done, attempt, worker, \
     device, lease_expires_at, error, request_hash, created_at, started_at, finished_at, \
     CASE WHEN status = 'queued' THEN \
       (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.seq <= jobs.seq) END AS queue_position";

/// A job to insert.
pub struct NewJob<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub spec: &'a str,
    pub parameters: i64,
    pub epochs_total: i64,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a str,
    pub now: i64,
}

pub enum Created {
    /// A new job was queued.
    New(JobRow),
    /// The idempotency key was used before with the same request: that job.
    Existing(JobRow),
    /// The idempotency key was used before with another request.
    KeyConflict,
}

pub async fn create_job(pool: &Pool, job: NewJob<'_>) -> Result<Created, QueueError> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, name, spec, parameters, status, epochs_total, idempotency_key, request_hash, created_at) \
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(job.id)
    .bind(job.name)
    .bind(job.spec)
    .bind(job.parameters)
    .bind(job.epochs_total)
    .bind(job.idempotency_key)
    .bind(job.request_hash)
    .bind(job.now)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        let row = get_job(pool, job.id).await?.ok_or(sqlx::Error::RowNotFound)?;
        return Ok(Created::New(row));
    }
    let key = job.idempotency_key.expect("only a key can conflict");
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?");
    let existing: JobRow = sqlx::query_as(&sql).bind(key).fetch_one(pool).await?;
    Ok(if existing.request_hash.as_deref() == Some(job.request_hash) {
        Created::Existing(existing)
    } else {
        Created::KeyConflict
    })
}

pub async fn get_job(pool: &Pool, id: &str) -> Result<Option<JobRow>, QueueError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// Newest first; `before` is the `seq` cursor of the previous page's last job.
pub async fn list_jobs(
    pool: &Pool,
    status: Option<&str>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<JobRow>, QueueError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR seq < ?2) \
         ORDER BY seq DESC LIMIT ?3"
    );
    Ok(sqlx::query_as(&sql).bind(status).bind(before).bind(limit).fetch_all(pool).await?)
}

pub enum CancelOutcome {
    /// The job is now cancelled; `was_running` tells whether a worker must be told.
    Cancelled {
        was_running: bool,
    },
    /// The job had already finished with this status.
    AlreadyFinished(String),
    NotFound,
}

pub async fn cancel_job(pool: &Pool, id: &str, now: i64) -> Result<CancelOutcome, QueueError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?;
    let outcome = match status.as_deref() {
        None => CancelOutcome::NotFound,
        Some(s @ ("queued" | "running")) => {
            sqlx::query("UPDATE jobs SET status = 'cancelled', finished_at = ?, lease_expires_at = NULL WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            CancelOutcome::Cancelled { was_running: s == "running" }
        }
        Some(other) => CancelOutcome::AlreadyFinished(other.to_string()),
    };
    tx.commit().await?;
    Ok(outcome)
}

/// What a worker gets from a claim.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub id: String,
    pub spec: String,
    pub attempt: i64,
}

/// Hands the oldest queued job to `worker`, or nothing.
pub async fn claim_next_job(
    pool: &Pool,
    worker: &str,
    device: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<Claimed>, QueueError> {
    Ok(sqlx::query_as(
        "UPDATE jobs SET status = 'running', attempt = attempt + 1, worker = ?, device = ?, \
           lease_expires_at = ?, started_at = COALESCE(started_at, ?), error = NULL \
         WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1) AND status = 'queued' \
         RETURNING id, spec, attempt",
    )
    .bind(worker)
    .bind(device)
    .bind(now + lease_ms)
    .bind(now)
    .fetch_optional(pool)
    .await?)
}

/// Renews the lease; false when it is no longer this attempt's (lost or cancelled).
pub async fn heartbeat(pool: &Pool, id: &str, attempt: i64, now: i64, lease_ms: i64) -> Result<bool, QueueError> {
    let n = sqlx::query("UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempt = ? AND status = 'running'")
        .bind(now + lease_ms)
        .bind(id)
        .bind(attempt)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Upserts one epoch's metrics and advances `epochs_done`, fenced; false when the lease is lost.
pub async fn record_epoch(
    pool: &Pool,
    id: &str,
    attempt: i64,
    epoch: i64,
    metrics: &str,
    now: i64,
    lease_ms: i64,
) -> Result<bool, QueueError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let n = sqlx::query(
        "UPDATE jobs SET epochs_done = ?, lease_expires_at = ? WHERE id = ? AND attempt = ? AND status = 'running'",
    )
    .bind(epoch)
    .bind(now + lease_ms)
    .bind(id)
    .bind(attempt)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO epochs (job_id, epoch, metrics) VALUES (?, ?, ?) \
         ON CONFLICT (job_id, epoch) DO UPDATE SET metrics = excluded.metrics",
    )
    .bind(id)
    .bind(epoch)
    .bind(metrics)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Ends a running attempt as `succeeded` or `failed`, fenced.
pub async fn finish_job(
    pool: &Pool,
    id: &str,
    attempt: i64,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> Result<bool, QueueError> {
    let n = sqlx::query(
        "UPDATE jobs SET status = ?, error = ?, finished_at = ?, lease_expires_at = NULL \
         WHERE id = ? AND attempt = ? AND status = 'running'",
    )
    .bind(status)
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(attempt)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Puts a running attempt back in the queue without charging it (a graceful shutdown).
pub async fn release_job(pool: &Pool, id: &str, attempt: i64) -> Result<bool, QueueError> {
    let n = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempt = attempt - 1, worker = NULL, device = NULL, lease_expires_at = NULL \
         WHERE id = ? AND attempt = ? AND status = 'running'",
    )
    .bind(id)
    .bind(attempt)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Jobs whose worker died: back to the queue (they resume from their checkpoint), or failed
/// once they used `max_attempts`. Returns (requeued, failed).
pub async fn requeue_expired(pool: &Pool, now: i64, max_attempts: i64) -> Result<(u64, u64), QueueError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let failed = sqlx::query(
        "UPDATE jobs SET status = 'failed', finished_at = ?, lease_expires_at = NULL, \
           error = 'the worker running it stopped responding ' || attempt || ' times (attempts are limited to ' || ? || ')' \
         WHERE status = 'running' AND lease_expires_at < ? AND attempt >= ?",
    )
    .bind(now)
    .bind(max_attempts)
    .bind(now)
    .bind(max_attempts)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let requeued = sqlx::query(
        "UPDATE jobs SET status = 'queued', worker = NULL, device = NULL, lease_expires_at = NULL \
         WHERE status = 'running' AND lease_expires_at < ?",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok((requeued, failed))
}

/// The epochs after `since`, as stored JSON strings, in order.
pub async fn get_metrics(pool: &Pool, id: &str, since: i64) -> Result<Vec<String>, QueueError> {
    Ok(sqlx::query_scalar("SELECT metrics FROM epochs WHERE job_id = ? AND epoch > ? ORDER BY epoch")
        .bind(id)
        .bind(since)
        .fetch_all(pool)
        .await?)
}

/// The job's status now, if it exists.
pub async fn job_status(pool: &Pool, id: &str) -> Result<Option<String>, QueueError> {
    Ok(sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?").bind(id).fetch_optional(pool).await?)
}
