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
//! - Fair scheduling: the next job is the oldest queued job of the user with the fewest
//!   running jobs (ties: the user served longest ago); an admin's priority goes first.

pub mod sweeps;
pub mod users;
pub mod workers;

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
    /// The URL names a database this build cannot use.
    #[error("{0}")]
    Unsupported(String),
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens (creating if needed) the database and applies the migrations.
pub async fn connect(url: &str) -> Result<Pool, QueueError> {
    if !url.starts_with("sqlite:") {
        return Err(QueueError::Unsupported(format!(
            "--database {url}: only SQLite (sqlite://PATH) is supported so far; PostgreSQL is planned"
        )));
    }
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
    pub owner_id: i64,
    pub owner: String,
    pub priority: i64,
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
}

pub(crate) const JOB_COLUMNS: &str =
    "seq, id, owner_id, (SELECT name FROM users WHERE users.id = jobs.owner_id) AS owner, \
     priority, name, spec, parameters, status, epochs_total, epochs_done, attempt, worker, \
     device, lease_expires_at, error, request_hash, created_at, started_at, finished_at";

/// A job to insert.
pub struct NewJob<'a> {
    pub id: &'a str,
    pub owner_id: i64,
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

/// Inserts a job inside a transaction (a sweep's); rows inserted (0 when its
/// idempotency key was used before).
pub(crate) async fn create_job_in(conn: &mut sqlx::SqliteConnection, job: &NewJob<'_>) -> Result<u64, QueueError> {
    Ok(sqlx::query(
        "INSERT INTO jobs (id, owner_id, name, spec, parameters, status, epochs_total, idempotency_key, request_hash, created_at) \
         VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?) ON CONFLICT (owner_id, idempotency_key) DO NOTHING",
    )
    .bind(job.id)
    .bind(job.owner_id)
    .bind(job.name)
    .bind(job.spec)
    .bind(job.parameters)
    .bind(job.epochs_total)
    .bind(job.idempotency_key)
    .bind(job.request_hash)
    .bind(job.now)
    .execute(conn)
    .await?
    .rows_affected())
}

pub async fn create_job(pool: &Pool, job: NewJob<'_>) -> Result<Created, QueueError> {
    let inserted = create_job_in(&mut *pool.acquire().await?, &job).await?;
    if inserted == 1 {
        let row = get_job(pool, job.id).await?.ok_or(sqlx::Error::RowNotFound)?;
        return Ok(Created::New(row));
    }
    let key = job.idempotency_key.expect("only a key can conflict");
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE owner_id = ? AND idempotency_key = ?");
    let existing: JobRow = sqlx::query_as(&sql).bind(job.owner_id).bind(key).fetch_one(pool).await?;
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

/// Newest first, of one owner (or everyone's); `before` is the `seq` cursor of the
/// previous page's last job.
pub async fn list_jobs(
    pool: &Pool,
    owner: Option<i64>,
    status: Option<&str>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<JobRow>, QueueError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR seq < ?2) \
         AND (?4 IS NULL OR owner_id = ?4) ORDER BY seq DESC LIMIT ?3"
    );
    Ok(sqlx::query_as(&sql).bind(status).bind(before).bind(limit).bind(owner).fetch_all(pool).await?)
}

/// Sets a job's priority (higher goes first); false if there is no such job.
pub async fn set_priority(pool: &Pool, id: &str, priority: i64) -> Result<bool, QueueError> {
    let n = sqlx::query("UPDATE jobs SET priority = ? WHERE id = ?")
        .bind(priority)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n == 1)
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

/// The order in which workers take queued jobs, as an `ORDER BY` over `jobs j` and its
/// owner `u`: priority, then the owner with the fewest running jobs, then the owner served
/// longest ago, then the oldest job.
const FAIR_ORDER: &str = "j.priority DESC, \
    (SELECT COUNT(*) FROM jobs r WHERE r.owner_id = j.owner_id AND r.status = 'running') ASC, \
    COALESCE(u.last_served_at, 0) ASC, j.seq ASC";

/// Hands the next job, by the fair order, to `worker`, or nothing. Owners already running
/// `max_running` jobs are passed over (0: no limit).
pub async fn claim_next_job(
    pool: &Pool,
    worker: &str,
    device: &str,
    now: i64,
    lease_ms: i64,
    max_running: i64,
) -> Result<Option<Claimed>, QueueError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let sql = format!(
        "UPDATE jobs SET status = 'running', attempt = attempt + 1, worker = ?, device = ?, \
           lease_expires_at = ?, started_at = COALESCE(started_at, ?), error = NULL \
         WHERE seq = (SELECT j.seq FROM jobs j JOIN users u ON u.id = j.owner_id WHERE j.status = 'queued' \
           AND (?5 <= 0 OR (SELECT COUNT(*) FROM jobs r WHERE r.owner_id = j.owner_id AND r.status = 'running') < ?5) \
           ORDER BY {FAIR_ORDER} LIMIT 1) \
         RETURNING id, spec, attempt, owner_id"
    );
    let claimed: Option<(String, String, i64, i64)> = sqlx::query_as(&sql)
        .bind(worker)
        .bind(device)
        .bind(now + lease_ms)
        .bind(now)
        .bind(max_running)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((id, spec, attempt, owner)) = claimed else {
        tx.rollback().await?;
        return Ok(None);
    };
    sqlx::query("UPDATE users SET last_served_at = ? WHERE id = ?").bind(now).bind(owner).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(Claimed { id, spec, attempt }))
}

/// A queued or running job as the queue view and the estimates need it.
#[derive(Debug, Clone, FromRow)]
pub struct QueueEntry {
    pub seq: i64,
    pub id: String,
    pub owner_id: i64,
    pub owner: String,
    pub priority: i64,
    pub status: String,
    pub spec: String,
    pub epochs_total: i64,
    pub epochs_done: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub last_served_at: Option<i64>,
    /// Mean seconds per finished epoch of this job so far.
    pub epoch_seconds: Option<f64>,
}

/// Every queued and running job, running first, then queued in submission order.
pub async fn queue_entries(pool: &Pool) -> Result<Vec<QueueEntry>, QueueError> {
    Ok(sqlx::query_as(
        "SELECT j.seq, j.id, j.owner_id, u.name AS owner, j.priority, j.status, j.spec, j.epochs_total, \
           j.epochs_done, j.created_at, j.started_at, u.last_served_at, \
           (SELECT AVG(json_extract(e.metrics, '$.seconds')) FROM epochs e WHERE e.job_id = j.id) AS epoch_seconds \
         FROM jobs j JOIN users u ON u.id = j.owner_id WHERE j.status IN ('running', 'queued') \
         ORDER BY j.status = 'queued', j.seq",
    )
    .fetch_all(pool)
    .await?)
}

/// Mean seconds per epoch of past jobs, by (model, batch size): what a queued job will take.
pub async fn epoch_seconds_by_setup(pool: &Pool) -> Result<Vec<(String, i64, f64)>, QueueError> {
    Ok(sqlx::query_as(
        "SELECT json_extract(j.spec, '$.model') AS model, json_extract(j.spec, '$.batch_size') AS batch, \
           AVG(json_extract(e.metrics, '$.seconds')) AS seconds \
         FROM epochs e JOIN jobs j ON j.id = e.job_id GROUP BY model, batch",
    )
    .fetch_all(pool)
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
