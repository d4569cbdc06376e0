//! The job lifecycle: create, list, cancel, claim (alone or as a group), heartbeat, record,
//! finish, release and requeue. Every write a worker makes is fenced on (id, attempt).

use super::{decode, on_db, Pool, QueueError, Tx};
use crate::job::{EpochMetrics, JobStatus, Progress};
use crate::spec::Spec;
use sqlx::FromRow;

/// A job as the queue holds it, every stored value decoded.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub seq: i64,
    pub id: String,
    pub owner_id: i64,
    pub owner: String,
    pub priority: i64,
    pub name: Option<String>,
    /// Its spec; `None` when the stored spec no longer parses (the job fails at its claim,
    /// saying why).
    pub spec: Option<Spec>,
    pub parameters: i64,
    pub status: JobStatus,
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
    /// The group it trains or last trained in, and how many jobs trained in that group.
    pub group_id: Option<String>,
    pub group_size: i64,
    /// While running: where it is inside its epoch, from the heartbeat.
    pub progress: Option<Progress>,
    /// The metrics of its latest recorded epoch, if any.
    pub last_epoch: Option<EpochMetrics>,
    /// What its owner should know that did not end it (a damaged checkpoint, say).
    pub notice: Option<String>,
    /// The first epoch whose loss was not finite: the job diverged, whatever its status.
    pub diverged_at: Option<i64>,
}

/// A job row as stored (`JOB_COLUMNS`): what `JobRow` decodes.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct JobRecord {
    seq: i64,
    id: String,
    owner_id: i64,
    owner: String,
    priority: i64,
    name: Option<String>,
    spec: String,
    parameters: i64,
    status: String,
    epochs_total: i64,
    epochs_done: i64,
    attempt: i64,
    worker: Option<String>,
    device: Option<String>,
    lease_expires_at: Option<i64>,
    error: Option<String>,
    request_hash: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    group_id: Option<String>,
    group_size: i64,
    progress: Option<String>,
    last_epoch: Option<String>,
    notice: Option<String>,
    diverged_at: Option<i64>,
}

impl TryFrom<JobRecord> for JobRow {
    type Error = QueueError;

    fn try_from(r: JobRecord) -> Result<JobRow, QueueError> {
        let id = r.id;
        let status =
            r.status.parse().map_err(|reason| QueueError::Corrupt { what: format!("job {id}'s status"), reason })?;
        let progress = r.progress.as_deref().map(|t| decode(t, || format!("job {id}'s progress"))).transpose()?;
        let last_epoch =
            r.last_epoch.as_deref().map(|t| decode(t, || format!("job {id}'s latest epoch"))).transpose()?;
        Ok(JobRow {
            seq: r.seq,
            spec: Spec::from_stored(&r.spec).ok(),
            owner_id: r.owner_id,
            owner: r.owner,
            priority: r.priority,
            name: r.name,
            parameters: r.parameters,
            status,
            epochs_total: r.epochs_total,
            epochs_done: r.epochs_done,
            attempt: r.attempt,
            worker: r.worker,
            device: r.device,
            lease_expires_at: r.lease_expires_at,
            error: r.error,
            request_hash: r.request_hash,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            group_id: r.group_id,
            group_size: r.group_size,
            progress,
            last_epoch,
            notice: r.notice,
            diverged_at: r.diverged_at,
            id,
        })
    }
}

/// A spec column as decoded for a row read straight into its type: the spec, or `None`
/// when the stored text no longer parses.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpec(pub Option<Spec>);

impl From<String> for StoredSpec {
    fn from(text: String) -> StoredSpec {
        StoredSpec(Spec::from_stored(&text).ok())
    }
}

/// Decodes stored job rows.
pub(crate) fn job_rows(records: Vec<JobRecord>) -> Result<Vec<JobRow>, QueueError> {
    records.into_iter().map(JobRow::try_from).collect()
}

pub(crate) const JOB_COLUMNS: &str =
    "seq, id, owner_id, (SELECT name FROM users WHERE users.id = jobs.owner_id) AS owner, \
     priority, name, spec, parameters, status, epochs_total, epochs_done, attempt, worker, \
     device, lease_expires_at, error, request_hash, created_at, started_at, finished_at, group_id, \
     (SELECT COUNT(*) FROM jobs g WHERE g.group_id = jobs.group_id) AS group_size, progress, \
     (SELECT e.metrics FROM epochs e WHERE e.job_id = jobs.id ORDER BY e.epoch DESC LIMIT 1) AS last_epoch, notice, diverged_at";

/// A job to insert.
pub struct NewJob<'a> {
    pub id: &'a str,
    pub owner_id: i64,
    pub name: Option<&'a str>,
    pub spec: &'a str,
    pub parameters: i64,
    pub epochs_total: i64,
    /// `Spec::group_key`: jobs that share it may train as one group.
    pub group_key: &'a str,
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
    /// The owner already has this many jobs queued, the limit: nothing was queued.
    OverLimit(OverLimit),
}

/// A user's queued jobs at the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub queued: i64,
}

/// Inserts a job inside a transaction (`create_job`'s or a sweep's, which have checked its
/// idempotency key and the owner's limit under `lock_queued_count`).
pub(crate) async fn create_job_in(tx: &mut Tx, job: &NewJob<'_>) -> Result<(), QueueError> {
    const SQL: &str = "INSERT INTO jobs (id, owner_id, name, spec, parameters, status, epochs_total, group_key, \
         idempotency_key, request_hash, created_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)";
    on_db!(Tx, tx, |t, d| sqlx::query(&d.sql(SQL))
        .bind(job.id)
        .bind(job.owner_id)
        .bind(job.name)
        .bind(job.spec)
        .bind(job.parameters)
        .bind(job.epochs_total)
        .bind(job.group_key)
        .bind(job.idempotency_key)
        .bind(job.request_hash)
        .bind(job.now)
        .execute(&mut **t)
        .await?
        .rows_affected());
    super::events::log(tx, job.id, "status", "queued", job.now).await
}

/// Holds `owner`'s submissions until `tx` ends and counts their queued jobs, so a check of
/// the per-user limit and the insert after it are one step: two simultaneous submissions
/// cannot both pass at the limit. (PostgreSQL: the user's row lock; SQLite: the IMMEDIATE
/// transaction already holds the write lock.)
pub(crate) async fn lock_queued_count(tx: &mut Tx, owner: i64) -> Result<i64, QueueError> {
    on_db!(Tx, &mut *tx, |t, d| sqlx::query(&d.sql(&format!("SELECT id FROM users WHERE id = ?{}", d.for_update())))
        .bind(owner)
        .fetch_optional(&mut **t)
        .await?
        .is_some());
    const COUNT: &str = "SELECT COUNT(*) FROM jobs WHERE owner_id = ? AND status = 'queued'";
    Ok(on_db!(Tx, tx, |t, d| sqlx::query_scalar(&d.sql(COUNT)).bind(owner).fetch_one(&mut **t).await?))
}

/// Queues `job` unless its owner has `max_queued` jobs queued already. A retried request
/// (the same idempotency key) gets its job back even at the limit.
#[tracing::instrument(level = "debug", skip_all, fields(job.id = %job.id, owner = job.owner_id))]
pub async fn create_job(pool: &Pool, job: NewJob<'_>, max_queued: i64) -> Result<Created, QueueError> {
    let mut tx = pool.begin_write().await?;
    let queued = lock_queued_count(&mut tx, job.owner_id).await?;
    if let Some(key) = job.idempotency_key {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE owner_id = ? AND idempotency_key = ?");
        let existing: Option<JobRecord> = on_db!(Tx, &mut tx, |t, d| sqlx::query_as(&d.sql(&sql))
            .bind(job.owner_id)
            .bind(key)
            .fetch_optional(&mut **t)
            .await?);
        let existing = existing.map(JobRow::try_from).transpose()?;
        if let Some(existing) = existing {
            tx.rollback().await?;
            return Ok(if existing.request_hash.as_deref() == Some(job.request_hash) {
                Created::Existing(existing)
            } else {
                Created::KeyConflict
            });
        }
    }
    if queued >= max_queued {
        tx.rollback().await?;
        return Ok(Created::OverLimit(OverLimit { queued }));
    }
    create_job_in(&mut tx, &job).await?;
    tx.commit().await?;
    let row = get_job(pool, job.id).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok(Created::New(row))
}

pub async fn get_job(pool: &Pool, id: &str) -> Result<Option<JobRow>, QueueError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
    let record: Option<JobRecord> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql)).bind(id).fetch_optional(p).await?);
    record.map(JobRow::try_from).transpose()
}

/// Newest first, of one owner (or everyone's); `before` is the `seq` cursor of the
/// previous page's last job.
pub async fn list_jobs(
    pool: &Pool,
    owner: Option<i64>,
    status: Option<JobStatus>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<JobRow>, QueueError> {
    let status = status.map(JobStatus::as_str);
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR seq < ?2) \
         AND (?4 IS NULL OR owner_id = ?4) ORDER BY seq DESC LIMIT ?3"
    );
    job_rows(on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(&sql))
        .bind(status)
        .bind(before)
        .bind(limit)
        .bind(owner)
        .fetch_all(p)
        .await?))
}

/// Sets a job's priority (higher goes first); false if there is no such job.
pub async fn set_priority(pool: &Pool, id: &str, priority: i64) -> Result<bool, QueueError> {
    let n = on_db!(Pool, pool, |p, d| sqlx::query(&d.sql("UPDATE jobs SET priority = ? WHERE id = ?"))
        .bind(priority)
        .bind(id)
        .execute(p)
        .await?
        .rows_affected());
    Ok(n == 1)
}

pub enum CancelOutcome {
    /// The job is now cancelled; `was_running` tells whether a worker must be told.
    Cancelled {
        was_running: bool,
    },
    /// The job had already finished with this status.
    AlreadyFinished(JobStatus),
    NotFound,
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn cancel_job(pool: &Pool, id: &str, now: i64) -> Result<CancelOutcome, QueueError> {
    let mut tx = pool.begin_write().await?;
    let status: Option<String> = on_db!(Tx, &mut tx, |t, d| sqlx::query_scalar(
        &d.sql(&format!("SELECT status FROM jobs WHERE id = ?{}", d.for_update()))
    )
    .bind(id)
    .fetch_optional(&mut **t)
    .await?);
    let status: Option<JobStatus> = status.and_then(|s| s.parse().ok());
    let outcome = match status {
        None => CancelOutcome::NotFound,
        Some(s @ (JobStatus::Queued | JobStatus::Running)) => {
            const SQL: &str =
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, lease_expires_at = NULL WHERE id = ?";
            on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(SQL))
                .bind(now)
                .bind(id)
                .execute(&mut **t)
                .await?
                .rows_affected());
            super::events::log(&mut tx, id, "status", "cancelled", now).await?;
            CancelOutcome::Cancelled { was_running: s == JobStatus::Running }
        }
        Some(other) => CancelOutcome::AlreadyFinished(other),
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Cancels every queued job of `owner` in one statement; the ids cancelled, oldest first.
pub async fn cancel_queued(pool: &Pool, owner: i64, now: i64) -> Result<Vec<String>, QueueError> {
    const LOG: &str = "INSERT INTO events (job_id, owner_id, kind, data, at) \
         SELECT id, owner_id, 'status', 'cancelled', ? FROM jobs WHERE owner_id = ? AND status = 'queued' ORDER BY seq";
    const SQL: &str = "UPDATE jobs SET status = 'cancelled', finished_at = ? \
         WHERE owner_id = ? AND status = 'queued' RETURNING id, seq";
    let mut tx = pool.begin_write().await?;
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(LOG)).bind(now).bind(owner).execute(&mut **t).await?.rows_affected());
    let mut rows: Vec<(String, i64)> =
        on_db!(Tx, &mut tx, |t, d| sqlx::query_as(&d.sql(SQL)).bind(now).bind(owner).fetch_all(&mut **t).await?);
    tx.commit().await?;
    rows.sort_by_key(|r| r.1);
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// What a worker gets from a claim.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    /// Its spec, or why the stored spec no longer parses (the worker fails the job).
    pub spec: Result<Spec, String>,
    pub attempt: i64,
    /// What its group's members share (`Spec::group_key`); `None` for jobs queued before
    /// groups existed, which train alone.
    pub group_key: Option<String>,
    /// When it was submitted and first started (ms), for the queue-wait and duration metrics.
    pub created_at: i64,
    pub started_at: i64,
}

impl Claimed {
    /// The claim's hold on the job, which fences every write the worker makes.
    pub fn lease(&self) -> Lease {
        Lease::new(&self.id, self.attempt)
    }
}

/// The order in which workers take queued jobs, as an `ORDER BY` over `jobs j` and its
/// owner `u`: priority, then the owner with the fewest running jobs, then the owner served
/// longest ago, then the oldest job.
const FAIR_ORDER: &str = "j.priority DESC, \
    (SELECT COUNT(*) FROM jobs r WHERE r.owner_id = j.owner_id AND r.status = 'running') ASC, \
    COALESCE(u.last_served_at, 0) ASC, j.seq ASC";

/// Who claims, and on what terms.
#[derive(Clone, Copy)]
pub struct ClaimTerms<'a> {
    pub worker: &'a str,
    pub device: &'a str,
    pub now: i64,
    pub lease_ms: i64,
    /// Owners already running this many jobs are passed over (0: no limit).
    pub max_running: i64,
    /// Only jobs of these datasets are claimed (`None`: any). A worker leaves out the
    /// datasets it cannot load now, and those it does not know (a lab's import on another
    /// machine): their jobs wait, the others go on.
    pub datasets: Option<&'a [&'static str]>,
    /// Workers that share the queue's work (this process's): a new group takes at most its
    /// share of the queued jobs of its key, ⌈queued ÷ share⌉, and leaves the rest for the
    /// others. 1: no sharing (a group takes all it may).
    pub share: usize,
    /// Where workers share the queue's work, this sizes a new group instead of the even
    /// share: from its head, its cap and the queued work by key (the head not included),
    /// the most members it takes.
    pub balance: Option<&'a Balance<'a>>,
}

/// Sizes a new group from its head, its cap and the queued work (`ClaimTerms::balance`).
pub type Balance<'a> = dyn Fn(&Claimed, usize, &[QueuedKey]) -> usize + Sync + 'a;

/// The queued jobs of one group key (a job without one is a key of its own).
#[derive(Debug, Clone, FromRow)]
pub struct QueuedKey {
    pub key: String,
    pub jobs: i64,
    /// The epochs its jobs have left, in all.
    pub epochs: i64,
    /// One of its jobs' specs (the same shape for all; `None` when it does not parse).
    #[sqlx(try_from = "String")]
    pub spec: StoredSpec,
}

/// The queued work by group key.
async fn queued_keys(tx: &mut Tx) -> Result<Vec<QueuedKey>, QueueError> {
    Ok(on_db!(Tx, tx, |c, d| {
        sqlx::query_as(&d.sql(
        "SELECT COALESCE(group_key, id) AS key, COUNT(*) AS jobs, \
           CAST(SUM(CASE WHEN epochs_total > epochs_done THEN epochs_total - epochs_done ELSE 0 END) AS BIGINT) AS epochs, \
           MIN(spec) AS spec FROM jobs WHERE status = 'queued' GROUP BY COALESCE(group_key, id)"
    ))
    .fetch_all(&mut **c)
    .await?
    }))
}

/// Which job a claim takes.
#[derive(Debug, Clone, Copy)]
enum Pick<'a> {
    /// The next job by the fair order.
    Next,
    /// The next job by the fair order among those of this group key (a group's companions).
    NextOf(&'a str),
    /// The next job by the fair order, if it has this group key (a joiner: a running group
    /// takes only the job the queue would hand out next anyway).
    NextIf(&'a str),
}

/// Claims a job inside `tx` as `pick` says, and files it under `group_id`.
async fn claim_in(
    tx: &mut Tx,
    t: &ClaimTerms<'_>,
    pick: Pick<'_>,
    group_id: &str,
) -> Result<Option<Claimed>, QueueError> {
    let (among, only) = match pick {
        Pick::Next => (None, None),
        Pick::NextOf(key) => (Some(key), None),
        Pick::NextIf(key) => (None, Some(key)),
    };
    type Row = (String, String, i64, Option<String>, i64, i64, i64);
    // N.B.: dataset names hold no comma (`dataset::import::check_dataset_name`), so
    // ",a,b," holds ",a," only for a listed name.
    let datasets = t.datasets.map(|names| format!(",{},", names.join(",")));
    let claimed: Option<Row> = on_db!(Tx, &mut *tx, |c, d| {
        let dataset = format!("(',' || COALESCE({}, 'cifar10') || ',')", d.json_text("j.spec", "dataset"));
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, worker = ?1, device = ?2, \
               lease_expires_at = ?3, started_at = COALESCE(started_at, ?4), error = NULL, group_id = ?7 \
             WHERE status = 'queued' AND (?8 IS NULL OR group_key = ?8) \
               AND seq = (SELECT j.seq FROM jobs j JOIN users u ON u.id = j.owner_id \
               WHERE j.status = 'queued' AND (?6 IS NULL OR j.group_key = ?6) \
               AND (?5 <= 0 OR (SELECT COUNT(*) FROM jobs r WHERE r.owner_id = j.owner_id AND r.status = 'running') < ?5) \
               AND (?9 IS NULL OR {}) \
               ORDER BY {FAIR_ORDER} LIMIT 1{}) \
             RETURNING id, spec, attempt, group_key, owner_id, created_at, started_at",
            d.contains("?9", &dataset),
            d.skip_locked("j")
        );
        sqlx::query_as(&d.sql(&sql))
            .bind(t.worker)
            .bind(t.device)
            .bind(t.now + t.lease_ms)
            .bind(t.now)
            .bind(t.max_running)
            .bind(among)
            .bind(group_id)
            .bind(only)
            .bind(datasets.clone())
            .fetch_optional(&mut **c)
            .await?
    });
    let Some((id, spec, attempt, group_key, owner, created_at, started_at)) = claimed else { return Ok(None) };
    super::events::log(tx, &id, "status", "running", t.now).await?;
    on_db!(Tx, &mut *tx, |c, d| sqlx::query(&d.sql("UPDATE users SET last_served_at = ? WHERE id = ?"))
        .bind(t.now)
        .bind(owner)
        .execute(&mut **c)
        .await?
        .rows_affected());
    let spec = Spec::from_stored(&spec);
    Ok(Some(Claimed { id, spec, attempt, group_key, created_at, started_at }))
}

/// Claims a group in one transaction: the next job by the fair order, then queued jobs of
/// its group key, also in the fair order (so the per-owner running limit holds for each),
/// up to `max_group(&head)` in all and no more than its share (`ClaimTerms::share`) of the
/// jobs of its key that were queued. Empty when nothing can be claimed. On PostgreSQL each
/// pick skips rows another claim holds, so no job lands in two groups.
///
/// N.B.: the share keeps the box busy where fusing gains little: the assignment's seven CNN
/// batch-4 jobs as one group held one worker for twice as long as the other worker needed
/// for all the rest (BENCHMARKS.md, "Sharing a key's jobs among workers"). The rest stay
/// queued for the next free worker; those still queued when a running group of their key
/// ends its first epoch join it there (`worker::group_db`'s `join`). The count is of every
/// queued job of the key, those the claim would pass over (an owner at the running limit)
/// included, so the share errs large.
#[tracing::instrument(level = "debug", skip_all, fields(worker = %terms.worker, group.id = %group_id))]
pub async fn claim_group(
    pool: &Pool,
    terms: &ClaimTerms<'_>,
    max_group: impl Fn(&Claimed) -> usize,
    group_id: &str,
) -> Result<Vec<Claimed>, QueueError> {
    let mut tx = pool.begin_write().await?;
    let Some(head) = claim_in(&mut tx, terms, Pick::Next, group_id).await? else {
        tx.rollback().await?;
        return Ok(Vec::new());
    };
    let (key, cap) = (head.group_key.clone(), max_group(&head));
    let mut group = vec![head];
    if let Some(key) = key {
        let cap = if let (Some(balance), true) = (terms.balance, terms.share > 1 && cap > 1) {
            balance(&group[0], cap, &queued_keys(&mut tx).await?).clamp(1, cap)
        } else if terms.share > 1 && cap > 1 {
            let more: i64 = on_db!(Tx, &mut tx, |c, d| sqlx::query_scalar(
                &d.sql("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND group_key = ?")
            )
            .bind(&key)
            .fetch_one(&mut **c)
            .await?);
            let queued = usize::try_from(more).unwrap_or(0).saturating_add(1);
            cap.min(queued.div_ceil(terms.share))
        } else {
            cap
        };
        claim_while(&mut tx, terms, Pick::NextOf(&key), group_id, cap, &mut group).await?;
    }
    tx.commit().await?;
    Ok(group)
}

/// Claims jobs as `pick` says into `group` until it holds `cap` or none is left to pick.
async fn claim_while(
    tx: &mut Tx,
    terms: &ClaimTerms<'_>,
    pick: Pick<'_>,
    group_id: &str,
    cap: usize,
    group: &mut Vec<Claimed>,
) -> Result<(), QueueError> {
    while group.len() < cap {
        match claim_in(tx, terms, pick, group_id).await? {
            Some(c) => group.push(c),
            None => break,
        }
    }
    Ok(())
}

/// Claims jobs for a running group to join at an epoch boundary, in one transaction: while
/// the fair order's next job has `group_key`, it joins, up to `room`. A job of another
/// shape at the head of the queue stops the joining, so a group that keeps taking newcomers
/// never keeps anyone else waiting longer than its members already do.
#[tracing::instrument(level = "debug", skip_all, fields(worker = %terms.worker, group.id = %group_id, room))]
pub async fn claim_joiners(
    pool: &Pool,
    terms: &ClaimTerms<'_>,
    group_key: &str,
    group_id: &str,
    room: usize,
) -> Result<Vec<Claimed>, QueueError> {
    let mut tx = pool.begin_write().await?;
    let mut got = Vec::new();
    claim_while(&mut tx, terms, Pick::NextIf(group_key), group_id, room, &mut got).await?;
    tx.commit().await?;
    Ok(got)
}

/// Hands the next job, by the fair order, to `worker`, or nothing: a group of one. Owners
/// already running `max_running` jobs are passed over (0: no limit).
pub async fn claim_next_job(
    pool: &Pool,
    worker: &str,
    device: &str,
    now: i64,
    lease_ms: i64,
    max_running: i64,
) -> Result<Option<Claimed>, QueueError> {
    let terms = ClaimTerms { worker, device, now, lease_ms, max_running, datasets: None, share: 1, balance: None };
    let id = uuid::Uuid::new_v4().to_string();
    Ok(claim_group(pool, &terms, |_| 1, &id).await?.pop())
}

/// A queued or running job as the queue view and the estimates need it.
#[derive(Debug, Clone, FromRow)]
pub struct QueueEntry {
    pub seq: i64,
    pub id: String,
    pub owner_id: i64,
    pub owner: String,
    pub priority: i64,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    /// Its spec; `None` when the stored spec no longer parses.
    #[sqlx(try_from = "String")]
    pub spec: StoredSpec,
    pub epochs_total: i64,
    pub epochs_done: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub last_served_at: Option<i64>,
    /// Mean seconds per finished epoch of this job so far.
    pub epoch_seconds: Option<f64>,
    pub group_id: Option<String>,
}

/// Every queued and running job, running first, then queued in submission order.
pub async fn queue_entries(pool: &Pool) -> Result<Vec<QueueEntry>, QueueError> {
    Ok(on_db!(Pool, pool, |p, d| {
        let sql = format!(
            "SELECT j.seq, j.id, j.owner_id, u.name AS owner, j.priority, j.status, j.spec, j.epochs_total, \
               j.epochs_done, j.created_at, j.started_at, u.last_served_at, \
               (SELECT AVG({}) FROM epochs e WHERE e.job_id = j.id) AS epoch_seconds, j.group_id \
             FROM jobs j JOIN users u ON u.id = j.owner_id WHERE j.status IN ('running', 'queued') \
             ORDER BY j.status = 'queued', j.seq",
            d.json_f64("e.metrics", "seconds")
        );
        sqlx::query_as(&sql).fetch_all(p).await?
    }))
}

/// The datasets queued jobs need, each once.
pub async fn queued_datasets(pool: &Pool) -> Result<Vec<String>, QueueError> {
    Ok(on_db!(Pool, pool, |p, d| {
        let sql = format!(
            "SELECT DISTINCT COALESCE({}, 'cifar10') FROM jobs WHERE status = 'queued'",
            d.json_text("spec", "dataset")
        );
        sqlx::query_scalar(&sql).fetch_all(p).await?
    }))
}

/// Mean seconds per epoch of past jobs, by (model, batch size): what a queued job will take
/// (setups whose rows say nothing of their seconds, damaged ones, are left out).
pub async fn epoch_seconds_by_setup(pool: &Pool) -> Result<Vec<(String, i64, f64)>, QueueError> {
    Ok(on_db!(Pool, pool, |p, d| {
        let sql = format!(
            "SELECT {} AS model, {} AS batch, AVG({seconds}) AS seconds \
             FROM epochs e JOIN jobs j ON j.id = e.job_id GROUP BY 1, 2 HAVING AVG({seconds}) IS NOT NULL",
            d.json_text("j.spec", "model"),
            d.json_i64("j.spec", "batch_size"),
            seconds = d.json_f64("e.metrics", "seconds")
        );
        sqlx::query_as(&sql).fetch_all(p).await?
    }))
}

/// A worker's hold on one running job: the job and the attempt that claimed it. Every write
/// made under a lease is fenced on (id, attempt, running): once the job is cancelled,
/// requeued or claimed again, the write changes nothing and answers false, and the worker
/// must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub attempt: i64,
}

impl Lease {
    pub fn new(id: impl Into<String>, attempt: i64) -> Lease {
        Lease { id: id.into(), attempt }
    }

    /// Renews the lease until `now + lease_ms`; false when it is lost (or the job cancelled).
    pub async fn heartbeat(&self, pool: &Pool, now: i64, lease_ms: i64) -> Result<bool, QueueError> {
        Ok(renew_leases(pool, &[(self.clone(), None)], now, lease_ms).await?[0])
    }

    /// Begins a transaction in which this lease still holds its job, or `None` when it is
    /// lost. The fence is an UPDATE that also sets `set` (its `?`s bound to `values`, in
    /// order), so on PostgreSQL the job's row stays locked until commit: a cancel or a
    /// requeue cannot slip in between.
    pub(crate) async fn begin_fenced(&self, pool: &Pool, set: &str, values: &[i64]) -> Result<Option<Tx>, QueueError> {
        let fence = format!("UPDATE jobs SET {set} WHERE id = ? AND attempt = ? AND status = 'running'");
        let mut tx = pool.begin_write().await?;
        let n = on_db!(Tx, &mut tx, |t, d| {
            let sql = d.sql(&fence);
            let mut q = sqlx::query(&sql);
            for v in values {
                q = q.bind(*v);
            }
            q.bind(&self.id).bind(self.attempt).execute(&mut **t).await?.rows_affected()
        });
        if n != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(tx))
    }

    /// Upserts one epoch's metrics, advances `epochs_done` and renews the lease, fenced.
    #[tracing::instrument(level = "debug", skip_all, fields(job.id = %self.id, attempt = self.attempt, epoch))]
    pub async fn record_epoch(
        &self,
        pool: &Pool,
        epoch: i64,
        metrics: &EpochMetrics,
        now: i64,
        lease_ms: i64,
    ) -> Result<bool, QueueError> {
        let diverged = metrics.diverged;
        let metrics = &serde_json::to_string(metrics).expect("metrics always serialize");
        const UPSERT: &str = "INSERT INTO epochs (job_id, epoch, metrics) VALUES (?, ?, ?) \
             ON CONFLICT (job_id, epoch) DO UPDATE SET metrics = excluded.metrics";
        let progress = [epoch, now + lease_ms];
        let Some(mut tx) = self.begin_fenced(pool, "epochs_done = ?, lease_expires_at = ?", &progress).await? else {
            return Ok(false);
        };
        on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(UPSERT))
            .bind(&self.id)
            .bind(epoch)
            .bind(metrics)
            .execute(&mut **t)
            .await?
            .rows_affected());
        if diverged {
            const DIVERGED: &str =
                "UPDATE jobs SET diverged_at = ? WHERE id = ? AND (diverged_at IS NULL OR diverged_at > ?)";
            on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(DIVERGED))
                .bind(epoch)
                .bind(&self.id)
                .bind(epoch)
                .execute(&mut **t)
                .await?
                .rows_affected());
        }
        super::events::log(&mut tx, &self.id, "epoch", metrics, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends the attempt as `succeeded` or `failed`, fenced.
    #[tracing::instrument(level = "debug", skip_all, fields(job.id = %self.id, attempt = self.attempt, status = %status))]
    pub async fn finish(
        &self,
        pool: &Pool,
        status: JobStatus,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool, QueueError> {
        debug_assert!(status.is_finished());
        let status = status.as_str();
        const SQL: &str = "UPDATE jobs SET status = ?, error = ?, finished_at = ?, lease_expires_at = NULL, \
             progress = NULL WHERE id = ? AND attempt = ? AND status = 'running'";
        let mut tx = pool.begin_write().await?;
        let n = on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(SQL))
            .bind(status)
            .bind(error)
            .bind(now)
            .bind(&self.id)
            .bind(self.attempt)
            .execute(&mut **t)
            .await?
            .rows_affected());
        if n == 1 {
            super::events::log(&mut tx, &self.id, "status", status, now).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Sets the job's notice (what its owner should know), fenced on this attempt.
    pub async fn set_notice(&self, pool: &Pool, notice: &str) -> Result<bool, QueueError> {
        const SQL: &str = "UPDATE jobs SET notice = ? WHERE id = ? AND attempt = ? AND status = 'running'";
        let n = on_db!(Pool, pool, |p, d| sqlx::query(&d.sql(SQL))
            .bind(notice)
            .bind(&self.id)
            .bind(self.attempt)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Puts the job back in the queue at `now` without charging the attempt (a graceful
    /// shutdown, the box's trouble).
    #[tracing::instrument(level = "debug", skip_all, fields(job.id = %self.id, attempt = self.attempt))]
    pub async fn release(&self, pool: &Pool, now: i64) -> Result<bool, QueueError> {
        const SQL: &str = "UPDATE jobs SET status = 'queued', attempt = attempt - 1, worker = NULL, device = NULL, \
             lease_expires_at = NULL, progress = NULL WHERE id = ? AND attempt = ? AND status = 'running'";
        let mut tx = pool.begin_write().await?;
        let n = on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(SQL))
            .bind(&self.id)
            .bind(self.attempt)
            .execute(&mut **t)
            .await?
            .rows_affected());
        if n == 1 {
            super::events::log(&mut tx, &self.id, "status", "queued", now).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}

/// Renews every lease of a group in one transaction (one commit, however many members),
/// with each member's in-epoch progress when there is news; for
/// each, whether it is still held.
#[tracing::instrument(level = "debug", skip_all, fields(leases = leases.len()))]
pub async fn renew_leases(
    pool: &Pool,
    leases: &[(Lease, Option<Progress>)],
    now: i64,
    lease_ms: i64,
) -> Result<Vec<bool>, QueueError> {
    const SQL: &str = "UPDATE jobs SET lease_expires_at = ?, progress = COALESCE(?, progress) \
         WHERE id = ? AND attempt = ? AND status = 'running'";
    let mut held = Vec::with_capacity(leases.len());
    let mut tx = pool.begin_write().await?;
    for (l, progress) in leases {
        let progress = progress.as_ref().map(|p| serde_json::to_string(p).expect("progress always serializes"));
        let n = on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(SQL))
            .bind(now + lease_ms)
            .bind(progress.as_deref())
            .bind(&l.id)
            .bind(l.attempt)
            .execute(&mut **t)
            .await?
            .rows_affected());
        held.push(n == 1);
    }
    tx.commit().await?;
    Ok(held)
}

/// Jobs whose worker died: back to the queue (they resume from their checkpoint), or failed
/// once they used `max_attempts`. Returns (requeued, failed).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn requeue_expired(pool: &Pool, now: i64, max_attempts: i64) -> Result<(u64, u64), QueueError> {
    const FAIL: &str = "UPDATE jobs SET status = 'failed', finished_at = ?1, lease_expires_at = NULL, \
           error = 'the worker running it stopped responding ' || CAST(attempt AS TEXT) \
             || ' times (attempts are limited to ' || CAST(?2 AS TEXT) || ')' \
         WHERE status = 'running' AND lease_expires_at < ?1 AND attempt >= ?2";
    const REQUEUE: &str = "UPDATE jobs SET status = 'queued', worker = NULL, device = NULL, lease_expires_at = NULL, \
         progress = NULL WHERE status = 'running' AND lease_expires_at < ?";
    const LOG_FAIL: &str = "INSERT INTO events (job_id, owner_id, kind, data, at) \
         SELECT id, owner_id, 'status', 'failed', ?1 FROM jobs \
         WHERE status = 'running' AND lease_expires_at < ?1 AND attempt >= ?2 ORDER BY seq";
    const LOG_REQUEUE: &str = "INSERT INTO events (job_id, owner_id, kind, data, at) \
         SELECT id, owner_id, 'status', 'queued', ?1 FROM jobs WHERE status = 'running' AND lease_expires_at < ?1 ORDER BY seq";
    let mut tx = pool.begin_write().await?;
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(LOG_FAIL))
        .bind(now)
        .bind(max_attempts)
        .execute(&mut **t)
        .await?
        .rows_affected());
    let failed = on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(FAIL))
        .bind(now)
        .bind(max_attempts)
        .execute(&mut **t)
        .await?
        .rows_affected());
    on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(LOG_REQUEUE)).bind(now).execute(&mut **t).await?.rows_affected());
    let requeued =
        on_db!(Tx, &mut tx, |t, d| sqlx::query(&d.sql(REQUEUE)).bind(now).execute(&mut **t).await?.rows_affected());
    tx.commit().await?;
    Ok((requeued, failed))
}

/// The epochs after `since`, in order.
pub async fn get_metrics(pool: &Pool, id: &str, since: i64) -> Result<Vec<EpochMetrics>, QueueError> {
    const SQL: &str = "SELECT epoch, metrics FROM epochs WHERE job_id = ? AND epoch > ? ORDER BY epoch";
    let rows: Vec<(i64, String)> =
        on_db!(Pool, pool, |p, d| sqlx::query_as(&d.sql(SQL)).bind(id).bind(since).fetch_all(p).await?);
    rows.iter().map(|(epoch, m)| decode(m, || format!("job {id}'s epoch {epoch}"))).collect()
}

/// Jobs by status, the oldest queued job's submission time, and the progress of every
/// running job: the box's state for the Prometheus gauges.
pub async fn box_state(pool: &Pool) -> Result<(Vec<(String, i64)>, Option<i64>, Vec<Progress>), QueueError> {
    const COUNTS: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";
    const OLDEST: &str = "SELECT MIN(created_at) FROM jobs WHERE status = 'queued'";
    const PROGRESS: &str = "SELECT id, progress FROM jobs WHERE status = 'running' AND progress IS NOT NULL";
    let (counts, oldest, progress): (_, _, Vec<(String, String)>) = on_db!(Pool, pool, |p, d| {
        let counts = sqlx::query_as(&d.sql(COUNTS)).fetch_all(p).await?;
        let oldest = sqlx::query_scalar(&d.sql(OLDEST)).fetch_one(p).await?;
        let progress = sqlx::query_as(&d.sql(PROGRESS)).fetch_all(p).await?;
        (counts, oldest, progress)
    });
    let progress =
        progress.iter().map(|(id, p)| decode(p, || format!("job {id}'s progress"))).collect::<Result<_, _>>()?;
    Ok((counts, oldest, progress))
}
